#!/usr/bin/env python3
"""Reads geoledger's OGC API - Features with OWSLib, as a Python GIS script would, and prints
what it saw as one JSON object on standard output.

    owslib_check.py BASE_URL [--collection ID] [--bbox W,S,E,N] [--limit N]
                    [--expect-total N] [--max-pages N]

Through OWSLib it opens the landing page, reads the conformance classes, the OpenAPI
description (found by the landing page's service-desc link) and the feature collections,
then asks for the items with bbox and limit. From that first page it follows the `next`
links to the end, with OWSLib's own HTTP helper, since OWSLib does not page by itself.

The summary names every feature id seen, in order, so a caller can compare them with its
own reference. The exit status is 0 when the walk looks sound, 1 when a feature came twice,
a page was not GeoJSON, or --expect-total was given and another number of features came,
and 2 on a usage error (argparse's own code).

Only the standard library and OWSLib (pinned in infra/local/versions.env) are needed.
"""

import argparse
import json
import sys
from urllib.parse import urljoin

from owslib.ogcapi.features import Features
from owslib.util import http_get

TIMEOUT_SECONDS = 20


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_url", help="where the landing page is, e.g. http://127.0.0.1:8080/")
    parser.add_argument("--collection", default="points")
    parser.add_argument("--bbox", help="W,S,E,N in CRS84")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--expect-total", type=int)
    parser.add_argument(
        "--max-pages",
        type=int,
        default=100_000,
        help="stop following next links after this many pages, as a guard against a loop",
    )
    return parser.parse_args()


def next_href(page, page_url):
    """The page's `next` link, made absolute against the page's own URL."""
    for link in page.get("links", []):
        if link.get("rel") == "next":
            return urljoin(page_url, link["href"])
    return None


def main():
    args = parse_args()
    base = args.base_url if args.base_url.endswith("/") else args.base_url + "/"
    api = Features(base, timeout=TIMEOUT_SECONDS)
    problems = []

    description = api.api()
    conformance = api.conformance().get("conformsTo", [])
    feature_collections = api.feature_collections()
    collection = api.collection(args.collection)

    query = {"limit": args.limit}
    if args.bbox:
        query["bbox"] = [float(v) for v in args.bbox.split(",")]
    first = api.collection_items(args.collection, **query)
    page_url = api.request

    pages = [first]
    while len(pages) < args.max_pages:
        href = next_href(pages[-1], page_url)
        if href is None:
            break
        response = http_get(href, headers={"Accept": "application/geo+json"}, timeout=TIMEOUT_SECONDS)
        if response.status_code != 200:
            problems.append(f"{href} answered {response.status_code}: {response.text[:200]}")
            break
        content_type = response.headers.get("Content-Type", "")
        if not content_type.startswith("application/geo+json"):
            problems.append(f"{href} answered {content_type!r}, not GeoJSON")
        page_url = href
        pages.append(response.json())
    else:
        problems.append(f"still more pages after {args.max_pages}")

    ids = [feature["id"] for page in pages for feature in page.get("features", [])]
    if len(set(ids)) != len(ids):
        problems.append(f"{len(ids) - len(set(ids))} features came more than once")
    if args.expect_total is not None and len(ids) != args.expect_total:
        problems.append(f"{len(ids)} features, expected {args.expect_total}")
    for number, page in enumerate(pages):
        returned = page.get("numberReturned")
        if returned != len(page.get("features", [])):
            problems.append(f"page {number} says numberReturned {returned}")

    summary = {
        "openapi": description.get("openapi"),
        "conformance": conformance,
        "feature_collections": feature_collections,
        "collection": {
            "id": collection.get("id"),
            "item_type": collection.get("itemType"),
            "bbox": collection.get("extent", {}).get("spatial", {}).get("bbox"),
        },
        "pages": len(pages),
        "page_sizes": [len(page.get("features", [])) for page in pages],
        "first_page_number_matched": first.get("numberMatched"),
        "total": len(ids),
        "ids": ids,
        "problems": problems,
    }
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
