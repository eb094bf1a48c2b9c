"""Users of geoledger, for Locust: what a person with a map client does, at a person's pace.

Four kinds of user, each a class that can be picked on Locust's command line:

- ``GuideUser`` lists the newest points and adds a point, as often as each other.
- ``ReadHeavyUser`` lists nine times for each point it adds.
- ``WriteHeavyUser`` adds nine points for each list.
- ``SpatialUser`` asks for the points in a box and the points around a place.

Every point added is a real place (name and coordinates) from the places CSV, and every box
and circle is drawn around one, so the queries land where the data is. Each user waits a
think time between two requests (``GEOLEDGER_THINK_SECS``, ``min,max`` seconds, default
``0.5,1.5``).

A request fails when its answer is not the one the API promises: another status, or a body
that does not hold what a client reads from it. Nothing is retried.

Environment:

- ``GEOLEDGER_PLACES``: the places CSV (default ``../shared/data/places.csv`` beside the
  repository).
- ``GEOLEDGER_THINK_SECS``: think time range, as above.
- ``GEOLEDGER_API_TOKEN``: bearer token sent with every write, when the stack wants one.
"""

import csv
import os
import random
from pathlib import Path

from locust import FastHttpUser, between, task

REPO_ROOT = Path(__file__).resolve().parents[2]
PLACES_FILE = Path(
    os.environ.get("GEOLEDGER_PLACES", REPO_ROOT.parent / "shared" / "data" / "places.csv")
)

# Half the side of a box drawn around a place, in degrees: about 110 km north to south,
# a region rather than a city, so most boxes hold a page of points on a loaded stack.
BOX_HALF_SIDE = 0.5
# Radii of the circle queries, in metres: a town, a city with its suburbs, a region.
RADII = (5_000, 20_000, 50_000)

# Writes carry this bearer token when the stack wants one; run.sh and smoke.sh read it from
# the stack's state folder.
API_TOKEN = os.environ.get("GEOLEDGER_API_TOKEN")
WRITE_HEADERS = {"Authorization": f"Bearer {API_TOKEN}"} if API_TOKEN else {}


def load_places(path):
    """Reads every row of the places CSV as (name, longitude, latitude). A float prints back
    in its shortest round-trip form, which is how the file writes it, so the API receives
    the numbers the file holds."""
    with open(path, newline="", encoding="utf-8") as f:
        return [
            (row["name"], float(row["longitude"]), float(row["latitude"]))
            for row in csv.DictReader(f)
        ]


def think_time():
    low, high = (float(s) for s in os.environ.get("GEOLEDGER_THINK_SECS", "0.5,1.5").split(","))
    return between(low, high)


# Read once per process, before the first user starts: 234,908 rows take about a second.
PLACES = load_places(PLACES_FILE)


def clamp(value, low, high):
    return max(low, min(high, value))


class GeoledgerUser(FastHttpUser):
    """What all four users share: the think time and the requests themselves."""

    abstract = True
    wait_time = think_time()

    def list_points(self):
        with self.client.get(
            "/points?limit=100", name="GET /points", catch_response=True
        ) as response:
            expect_json_array(response)

    def add_point(self):
        name, longitude, latitude = random.choice(PLACES)
        body = {"longitude": longitude, "latitude": latitude, "name": name}
        with self.client.post(
            "/point", json=body, headers=WRITE_HEADERS, name="POST /point", catch_response=True
        ) as response:
            if response.status_code != 202:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            elif "sequence" not in (response.json() or {}):
                response.failure(f"a 202 without a stream sequence: {response.text[:200]}")

    def points_in_box(self):
        _, longitude, latitude = random.choice(PLACES)
        # A box is not allowed to cross a pole; one crossing the antimeridian is folded
        # back into [-180, 180] and asked for as such (minLon > maxLon), which the API takes.
        west = wrap_longitude(longitude - BOX_HALF_SIDE)
        east = wrap_longitude(longitude + BOX_HALF_SIDE)
        south = clamp(latitude - BOX_HALF_SIDE, -90, 90)
        north = clamp(latitude + BOX_HALF_SIDE, -90, 90)
        with self.client.get(
            f"/points?bbox={west:.5f},{south:.5f},{east:.5f},{north:.5f}&limit=100",
            name="GET /points?bbox",
            catch_response=True,
        ) as response:
            expect_json_array(response)

    def points_near(self):
        _, longitude, latitude = random.choice(PLACES)
        radius = random.choice(RADII)
        with self.client.get(
            f"/points?near={longitude},{latitude}&radius={radius}&limit=100",
            name="GET /points?near",
            catch_response=True,
        ) as response:
            expect_json_array(response)


def wrap_longitude(longitude):
    if longitude > 180:
        return longitude - 360
    if longitude < -180:
        return longitude + 360
    return longitude


def expect_json_array(response):
    """A list answer is a 200 whose body opens a JSON array. Only the first byte is looked
    at: decoding a page of a hundred points in Python would cost the load generator more
    CPU than the server spends making it, and a truncated body already fails the request
    in the HTTP client."""
    if response.status_code != 200:
        response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
    elif not response.content.lstrip().startswith(b"["):
        response.failure(f"not a JSON array: {response.text[:200]}")


class GuideUser(GeoledgerUser):
    """Lists the newest points and adds one, as often as each other."""

    @task
    def list(self):
        self.list_points()

    @task
    def add(self):
        self.add_point()


class ReadHeavyUser(GeoledgerUser):
    """Nine lists for each point added."""

    @task(9)
    def list(self):
        self.list_points()

    @task(1)
    def add(self):
        self.add_point()


class WriteHeavyUser(GeoledgerUser):
    """Nine points added for each list."""

    @task(1)
    def list(self):
        self.list_points()

    @task(9)
    def add(self):
        self.add_point()


class SpatialUser(GeoledgerUser):
    """Boxes and circles around real places, as a map client panning and searching."""

    @task(1)
    def box(self):
        self.points_in_box()

    @task(1)
    def near(self):
        self.points_near()

