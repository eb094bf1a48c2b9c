//! The read side's filters and paging over real places loaded straight into the read model:
//! keyset pages while points are being written, boxes (across the antimeridian too), radius
//! searches, GeoJSON, and the problems bad parameters get.
//!
//! Coordinates and distances are compared bit for bit after a trip through JSON. That holds
//! because every value here has at most 17 significant digits with an integer part below
//! 2^53 once the point is dropped, which `serde_json` parses exactly even without its
//! `float_roundtrip` feature: places have at most 5 decimals and PostGIS rounds distances to
//! 1e-8 m.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{
    Place, TestApp, all_places, copy_places, query_metric, sample_places, spawn_app,
};

/// A point as a page of `GET /points` lists it.
#[derive(Debug, Deserialize)]
struct Listed {
    id: Uuid,
    name: String,
    longitude: f64,
    latitude: f64,
    distance: Option<f64>,
}

async fn get(app: &TestApp, path_and_query: &str, accept: Option<&str>) -> reqwest::Response {
    let mut request = app.http.get(app.query.url(path_and_query));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    request.send().await.expect("query-api answers")
}

/// The target of a `Link: <…>; rel="next"` header.
fn next_link(response: &reqwest::Response) -> Option<String> {
    let value = response.headers().get("link")?.to_str().ok()?;
    let (target, params) = value.strip_prefix('<')?.split_once('>')?;
    params.contains("rel=\"next\"").then(|| target.to_owned())
}

/// Everything `GET /points?{query}` lists, following the next links to the end, and the
/// number of pages it took.
async fn walk(app: &TestApp, query: &str) -> (Vec<Listed>, usize) {
    let mut link = Some(format!("/points?{query}"));
    let (mut points, mut pages) = (Vec::new(), 0);
    while let Some(target) = link {
        let response = get(app, &target, None).await;
        assert_eq!(response.status(), 200, "GET {target}");
        link = next_link(&response);
        if let Some(next) = &link {
            assert!(next.starts_with("/points?"), "a relative next link: {next}");
        }
        let page: Vec<Listed> = response.json().await.expect("a page is a JSON array");
        points.extend(page);
        pages += 1;
        assert!(pages < 10_000, "the next links never end");
    }
    (points, pages)
}

/// The ids of `points`, which must all differ.
fn unique_ids(points: &[Listed]) -> HashSet<Uuid> {
    let ids: HashSet<Uuid> = points.iter().map(|p| p.id).collect();
    assert_eq!(ids.len(), points.len(), "a point was listed twice");
    ids
}

fn assert_same_ids(listed: &HashSet<Uuid>, reference: &HashSet<Uuid>, what: &str) {
    let missing: Vec<_> = reference.difference(listed).take(5).collect();
    let extra: Vec<_> = listed.difference(reference).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} of PostGIS's {} missing (e.g. {missing:?}), {} extra (e.g. {extra:?})",
        reference.difference(listed).count(),
        reference.len(),
        listed.difference(reference).count(),
    );
}

async fn reference_ids(pool: &PgPool, condition: &str) -> HashSet<Uuid> {
    sqlx::query_scalar(&format!("SELECT id FROM points WHERE {condition}"))
        .fetch_all(pool)
        .await
        .expect("the reference query runs")
        .into_iter()
        .collect()
}

fn place(name: &str, longitude: f64, latitude: f64) -> Place {
    Place {
        name: name.to_owned(),
        longitude,
        latitude,
        country: "ZZ".to_owned(),
    }
}

async fn app_with_all_places() -> TestApp {
    let app = spawn_app().await;
    copy_places(&app.pool, &all_places()).await;
    app
}

#[tokio::test]
async fn paging_newest_first_sees_every_existing_point_once_while_points_are_written() {
    let app = spawn_app().await;
    let places: Vec<Place> = all_places().into_iter().take(3_000).collect();
    let existing = copy_places(&app.pool, &places).await;

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn({
        let (pool, stop, written) = (app.pool.clone(), stop.clone(), written.clone());
        async move {
            let mut ids = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let id = Uuid::now_v7();
                sqlx::query(
                    "INSERT INTO points (id, name, geom, version, last_seq, created_at, \
                     updated_at) VALUES ($1, 'written meanwhile', \
                     ST_SetSRID(ST_MakePoint(0, 0), 4326), 1, 0, now(), now())",
                )
                .bind(id)
                .execute(&pool)
                .await
                .expect("the writer inserts");
                ids.push(id);
                written.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            ids
        }
    });

    let mut link = Some("/points?limit=50".to_owned());
    let mut seen: Vec<Listed> = Vec::new();
    let mut written_after_first_page = None;
    while let Some(target) = link {
        let response = get(&app, &target, None).await;
        assert_eq!(response.status(), 200, "GET {target}");
        link = next_link(&response);
        let page: Vec<Listed> = response.json().await.unwrap();
        assert!(page.len() <= 50);
        seen.extend(page);
        written_after_first_page.get_or_insert(written.load(Ordering::Relaxed));
    }
    stop.store(true, Ordering::Relaxed);
    let written_ids: HashSet<Uuid> = writer.await.unwrap().into_iter().collect();
    assert!(
        written_ids.len() > written_after_first_page.unwrap(),
        "the writer inserted while the pages were read"
    );

    let ids = unique_ids(&seen);
    assert!(
        seen.windows(2).all(|pair| pair[0].id > pair[1].id),
        "the walk runs strictly newest first"
    );
    let missing = existing.iter().filter(|id| !ids.contains(id)).count();
    assert_eq!(
        missing,
        0,
        "of {} points there before the walk",
        existing.len()
    );
    assert!(
        ids.iter()
            .all(|id| existing.contains(id) || written_ids.contains(id)),
        "only loaded or written points are listed"
    );
}

#[tokio::test]
async fn a_bbox_over_europe_lists_exactly_the_places_postgis_finds_in_it() {
    let app = app_with_all_places().await;
    let (points, pages) = walk(&app, "bbox=-10,35,30,60&limit=1000").await;
    let reference = reference_ids(
        &app.pool,
        "ST_Intersects(geom, ST_MakeEnvelope(-10, 35, 30, 60, 4326))",
    )
    .await;
    assert!(reference.len() > 50_000, "Europe holds many places");
    assert_eq!(pages, reference.len().div_ceil(1000));
    assert_same_ids(&unique_ids(&points), &reference, "bbox over Europe");
    assert!(
        points
            .iter()
            .all(|p| (-10.0..=30.0).contains(&p.longitude) && (35.0..=60.0).contains(&p.latitude))
    );
}

#[tokio::test]
async fn a_bbox_across_the_antimeridian_lists_places_on_both_sides_and_none_between() {
    let app = app_with_all_places().await;
    let (points, _) = walk(&app, "bbox=170,-20,-170,-10&limit=50").await;
    let reference = reference_ids(
        &app.pool,
        "ST_Intersects(geom, ST_MakeEnvelope(170, -20, 180, -10, 4326)) \
         OR ST_Intersects(geom, ST_MakeEnvelope(-180, -20, -170, -10, 4326))",
    )
    .await;
    assert_same_ids(
        &unique_ids(&points),
        &reference,
        "bbox across the antimeridian",
    );
    let east = points.iter().filter(|p| p.longitude > 170.0).count();
    let west = points.iter().filter(|p| p.longitude < -170.0).count();
    assert!(
        east > 0 && west > 0,
        "{east} east of 170, {west} west of -170"
    );
    assert_eq!(east + west, points.len(), "nothing between -170 and 170");
    assert!(points.iter().all(|p| (-20.0..=-10.0).contains(&p.latitude)));
}

#[tokio::test]
async fn points_on_the_edge_of_a_box_are_inside_and_points_a_hair_outside_are_not() {
    let app = spawn_app().await;
    // Each point is named after its coordinates. The "hair" is 1e-5 degrees: below the
    // precision of the single-precision boxes in the spatial index, so only the exact test
    // keeps those points out.
    let coordinates = [
        (160.0, -1.0),
        (170.0, 1.0),
        (165.0, 0.0),
        (170.0, 0.5),
        (170.00001, 0.0),
        (165.0, 1.000_000_1),
        (159.99999, 0.0),
        (2.0, 48.0),
        (2.00001, 48.0),
        (2.0, 48.5),
        (2.0, 49.0),
        (2.000_001, 48.5),
        (180.0, 0.0),
        (-180.0, 0.0),
        (179.5, 0.0),
        (-179.5, 0.0),
        (179.0, 1.0),
        (-179.0, -1.0),
        (178.99999, 0.0),
        (-178.99999, 0.0),
    ];
    let places: Vec<Place> = coordinates
        .iter()
        .map(|&(lon, lat)| place(&format!("{lon} {lat}"), lon, lat))
        .collect();
    copy_places(&app.pool, &places).await;
    let rows: [(&str, &[&str], &str); 4] = [
        (
            "160,-1,170,1",
            &["160 -1", "170 1", "165 0", "170 0.5"],
            "corners and edges",
        ),
        ("2,48,2,48", &["2 48"], "a box shrunk to a point"),
        (
            "2,48,2,49",
            &["2 48", "2 48.5", "2 49"],
            "a box shrunk to a line",
        ),
        (
            "179,-1,-179,1",
            &["180 0", "-180 0", "179.5 0", "-179.5 0", "179 1", "-179 -1"],
            "across the antimeridian",
        ),
    ];
    for (bbox, inside, description) in rows {
        let (points, _) = walk(&app, &format!("bbox={bbox}")).await;
        let mut listed: Vec<&str> = points.iter().map(|p| p.name.as_str()).collect();
        let mut expected = inside.to_vec();
        listed.sort_unstable();
        expected.sort_unstable();
        assert_eq!(listed, expected, "{description}: bbox={bbox}");
    }
    let (points, _) = walk(&app, "bbox=-180,-90,180,90").await;
    assert_eq!(
        points.len(),
        places.len(),
        "the whole world holds every point"
    );
}

#[tokio::test]
async fn near_paris_lists_the_places_within_50_km_nearest_first() {
    let app = app_with_all_places().await;
    let (points, pages) = walk(&app, "near=2.3522,48.8566&radius=50000&limit=100").await;
    let centre = "ST_SetSRID(ST_MakePoint(2.3522, 48.8566), 4326)::geography";
    let reference = reference_ids(
        &app.pool,
        &format!("ST_DWithin(geom::geography, {centre}, 50000, false)"),
    )
    .await;
    assert!(pages > 1, "the radius holds several pages");
    assert_same_ids(&unique_ids(&points), &reference, "near Paris");

    assert!(points[0].name.contains("Paris"), "{:?}", points[0]);
    let distances: Vec<f64> = points
        .iter()
        .map(|p| p.distance.expect("a radius search lists distances"))
        .collect();
    assert!(distances[0] < 1_000.0, "{:?}", points[0]);
    assert!(distances.windows(2).all(|d| d[0] <= d[1]), "nearest first");
    assert!(distances.iter().all(|&d| d <= 50_000.0));

    // The listed distance is `<->`'s, to the bit (the page is ordered by it), and that is the
    // great-circle distance on PostGIS's sphere, which `ST_Distance` computes along another
    // path: the two agree to rounding, while the spheroid would differ by up to 0.5 %.
    let reference: HashMap<Uuid, (f64, f64, f64)> =
        sqlx::query_as::<_, (Uuid, f64, f64, f64)>(&format!(
            "SELECT id, geom::geography <-> {centre}, ST_Distance(geom::geography, {centre}, false), \
             ST_Distance(geom::geography, {centre}, true) FROM points \
             WHERE ST_DWithin(geom::geography, {centre}, 50000, false)"
        ))
        .fetch_all(&app.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, knn, sphere, spheroid)| (id, (knn, sphere, spheroid)))
        .collect();
    let mut spheroid_differs = false;
    for point in &points {
        let (knn, sphere, spheroid) = reference[&point.id];
        let listed = point.distance.expect("a radius search lists distances");
        assert_eq!(
            listed.to_bits(),
            knn.to_bits(),
            "the `<->` distance of {point:?}"
        );
        assert!(
            (listed - sphere).abs() <= 1e-9 * sphere.max(1.0),
            "the sphere distance of {point:?}: {sphere}"
        );
        spheroid_differs |= (listed - spheroid).abs() > 1e-6 * spheroid;
    }
    assert!(spheroid_differs, "the sphere, not the spheroid");
}

#[tokio::test]
async fn a_radius_search_reaches_across_the_antimeridian_and_over_a_pole() {
    let app = spawn_app().await;
    let mut places = sample_places();
    places.extend([
        place("east of the antimeridian", 179.999, 0.0),
        place("west of the antimeridian", -179.999, 0.0),
        place("near the pole, Greenwich side", 0.0, 89.999),
        place("near the pole, far side", 180.0, 89.999),
    ]);
    copy_places(&app.pool, &places).await;

    // Fiji: Suva and Nausori lie west of 180, Tubou in the Lau group east of it.
    let (points, _) = walk(&app, "near=179.9,-18&radius=200000").await;
    let reference = reference_ids(
        &app.pool,
        "ST_DWithin(geom::geography, \
         ST_SetSRID(ST_MakePoint(179.9, -18), 4326)::geography, 200000, false)",
    )
    .await;
    assert_same_ids(&unique_ids(&points), &reference, "near Fiji");
    assert!(points.iter().any(|p| p.longitude < -178.0), "{points:?}");
    assert!(points.iter().any(|p| p.longitude > 178.0), "{points:?}");

    let rows = [
        (
            "near=179.9995,0&radius=1000",
            ["east of the antimeridian", "west of the antimeridian"],
        ),
        (
            "near=0,89.999&radius=500",
            ["near the pole, Greenwich side", "near the pole, far side"],
        ),
    ];
    for (query, nearest_first) in rows {
        let (points, _) = walk(&app, query).await;
        let names: Vec<&str> = points.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, nearest_first, "{query}");
    }
}

#[tokio::test]
async fn points_at_the_same_distance_are_paged_by_id_and_each_listed_once() {
    let app = spawn_app().await;
    // Two crowds of 30 points each at one spot: every page boundary falls inside a tie.
    let places: Vec<Place> = (0..60)
        .map(|i| {
            let longitude = if i % 2 == 0 { 10.0 } else { 10.001 };
            place(&format!("crowd member {i}"), longitude, 10.0)
        })
        .collect();
    let ids: HashSet<Uuid> = copy_places(&app.pool, &places).await.into_iter().collect();
    let (points, pages) = walk(&app, "near=10,10&radius=1000&limit=7").await;
    assert_eq!(pages, 9);
    assert_eq!(unique_ids(&points), ids);
    let keys: Vec<(f64, Uuid)> = points.iter().map(|p| (p.distance.unwrap(), p.id)).collect();
    assert!(
        keys.windows(2).all(|pair| pair[0] < pair[1]),
        "ordered by distance, then id"
    );
}

#[tokio::test]
async fn bad_parameters_are_400_problems_naming_the_parameter() {
    let app = spawn_app().await;
    copy_places(&app.pool, &[place("one", 1.0, 1.0), place("two", 2.0, 2.0)]).await;
    let first = get(&app, "/points?limit=1", None).await;
    let next = next_link(&first).expect("two points fill more than a page of one");
    let cursor = next
        .split('&')
        .find_map(|pair| pair.strip_prefix("cursor="))
        .expect("the next link carries a cursor")
        .to_owned();

    let rows = [
        ("bbox=1,2,3".to_owned(), "bbox", "a bbox of three numbers"),
        ("bbox=0,0,1,91".to_owned(), "bbox", "a bbox latitude of 91"),
        ("bbox=0,10,1,5".to_owned(), "bbox", "a bbox upside down"),
        (
            "bbox=0,0,1,x".to_owned(),
            "bbox",
            "a bbox that is not numbers",
        ),
        ("limit=-1".to_owned(), "limit", "a negative limit"),
        (
            "limit=abc".to_owned(),
            "limit",
            "a limit that is not a number",
        ),
        (
            "near=2,48&radius=-5".to_owned(),
            "radius",
            "a negative radius",
        ),
        ("near=2,48&radius=0".to_owned(), "radius", "a zero radius"),
        (
            "near=2,48&radius=2000001".to_owned(),
            "radius",
            "a radius above the maximum",
        ),
        ("near=2,48".to_owned(), "radius", "near without radius"),
        ("radius=10".to_owned(), "radius", "radius without near"),
        (
            "near=2&radius=10".to_owned(),
            "near",
            "a near of one number",
        ),
        ("f=xml".to_owned(), "f", "an unknown format"),
        ("cursor=garbage".to_owned(), "cursor", "a garbage cursor"),
        (
            format!("cursor={cursor}&bbox=0,0,3,3"),
            "cursor",
            "a cursor for other filters",
        ),
        ("colour=red".to_owned(), "colour", "an unknown parameter"),
    ];
    for (query, field, description) in rows {
        let response = get(&app, &format!("/points?{query}"), None).await;
        assert_eq!(response.status(), 400, "{description}: {query}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{description}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(
            problem["type"], "urn:geoledger:problem:validation",
            "{description}"
        );
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .expect("a validation problem lists its errors")
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert_eq!(fields, [field], "{description}: {query}");
    }

    let response = get(&app, &next, None).await;
    assert_eq!(response.status(), 200, "the cursor itself is good: {next}");
}

#[tokio::test]
async fn geojson_is_a_feature_collection_with_the_stored_doubles_bit_for_bit() {
    let app = spawn_app().await;
    let places = sample_places();
    let ids = copy_places(&app.pool, &places).await;
    let loaded: HashMap<Uuid, &Place> = ids.iter().copied().zip(&places).collect();
    let stored: HashMap<Uuid, (String, f64, f64)> = sqlx::query_as::<_, (Uuid, String, f64, f64)>(
        "SELECT id, name, ST_X(geom), ST_Y(geom) FROM points",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(id, name, x, y)| (id, (name, x, y)))
    .collect();

    let response = get(&app, "/points?limit=1000", Some("application/geo+json")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/geo+json");
    assert!(
        next_link(&response).is_none(),
        "1,000 points fit one page of 1,000"
    );
    let collection: Value = response.json().await.unwrap();
    assert_eq!(collection["type"], "FeatureCollection");
    assert_eq!(collection["links"], serde_json::json!([]));
    let features = collection["features"].as_array().unwrap();
    assert_eq!(features.len(), places.len());
    let mut seen = HashSet::new();
    for feature in features {
        assert_eq!(feature["type"], "Feature");
        assert_eq!(feature["geometry"]["type"], "Point");
        let id: Uuid = feature["id"].as_str().unwrap().parse().unwrap();
        assert!(seen.insert(id), "{id} listed twice");
        let (name, x, y) = &stored[&id];
        let coordinates = feature["geometry"]["coordinates"].as_array().unwrap();
        let lon = coordinates[0].as_f64().unwrap();
        let lat = coordinates[1].as_f64().unwrap();
        assert_eq!(lon.to_bits(), x.to_bits(), "{name}");
        assert_eq!(lat.to_bits(), y.to_bits(), "{name}");
        assert_eq!(lon.to_bits(), loaded[&id].longitude.to_bits(), "{name}");
        assert_eq!(lat.to_bits(), loaded[&id].latitude.to_bits(), "{name}");
        assert_eq!(feature["properties"]["name"], name.as_str());
        assert_eq!(feature["properties"].as_object().unwrap().len(), 1);
    }

    // Paged with `f`, the next link sits both in the header and in the collection.
    let mut link = Some("/points?f=geojson&limit=300".to_owned());
    let (mut pages, mut ids_seen) = (0, HashSet::new());
    while let Some(target) = link {
        let response = get(&app, &target, None).await;
        assert_eq!(response.headers()["content-type"], "application/geo+json");
        let header = next_link(&response);
        let body: Value = response.json().await.unwrap();
        let in_body = body["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["rel"] == "next")
            .map(|l| l["href"].as_str().unwrap().to_owned());
        assert_eq!(header, in_body);
        for feature in body["features"].as_array().unwrap() {
            assert!(ids_seen.insert(feature["id"].as_str().unwrap().to_owned()));
        }
        link = header;
        pages += 1;
    }
    assert_eq!((pages, ids_seen.len()), (4, places.len()));

    // `f=json` beats the Accept header.
    let response = get(&app, "/points?f=json&limit=1", Some("application/geo+json")).await;
    assert_eq!(response.headers()["content-type"], "application/json");
    let array: Vec<Listed> = response.json().await.unwrap();
    assert_eq!(array.len(), 1);
}

/// A box holding a small share of the points is read through `points_geom_newest`, whose key
/// keeps only 63 bits of the id. Points whose ids share those bits tie on the key; a walk with
/// pages that end inside such a tie must still list every point of the box once, newest first.
#[tokio::test]
async fn a_box_walk_through_the_spatial_key_index_lists_tied_points_once_newest_first() {
    let app = app_with_all_places().await;
    // Ids above every UUIDv7 of today that agree in their first 64 bits: one key for all.
    let tied = |i: u32| Uuid::parse_str(&format!("7fffffff-ffff-7fff-8000-{i:012x}")).unwrap();
    for i in 0..60 {
        // Around Vienna, and every sixth one far outside the box.
        let (longitude, latitude) = if i % 6 == 0 {
            (-70.0, -30.0)
        } else {
            (16.2 + f64::from(i) * 0.01, 48.2)
        };
        sqlx::query(
            "INSERT INTO points (id, name, geom, version, last_seq, created_at, updated_at) \
             VALUES ($1, 'tied', ST_SetSRID(ST_MakePoint($2, $3), 4326), 1, 0, now(), now())",
        )
        .bind(tied(i))
        .bind(longitude)
        .bind(latitude)
        .execute(&app.pool)
        .await
        .expect("a tied point is inserted");
    }

    let query = "bbox=15.53,47.61,17.17,48.59&limit=7";
    let pairs: Vec<(String, String)> = vec![
        ("bbox".to_owned(), "15.53,47.61,17.17,48.59".to_owned()),
        ("limit".to_owned(), "7".to_owned()),
    ];
    let limits = query_api::Limits::new(query_api::DEFAULT_LIMIT, query_api::MAX_LIMIT).unwrap();
    assert_eq!(
        query_api::page_box_scan(&app.pool, &pairs, limits).await,
        Ok(query_api::BoxScan::Newest),
        "a box around Vienna holds under {} of the places",
        query_api::INDEXED_BOX_SHARE
    );

    let (points, pages) = walk(&app, query).await;
    let reference = reference_ids(
        &app.pool,
        "ST_Intersects(geom, ST_MakeEnvelope(15.53, 47.61, 17.17, 48.59, 4326))",
    )
    .await;
    assert!(
        reference.len() > 300,
        "{} places in the box",
        reference.len()
    );
    assert_same_ids(&unique_ids(&points), &reference, "walk of the Vienna box");
    assert_eq!(pages, reference.len().div_ceil(7));
    assert!(
        points.windows(2).all(|pair| pair[0].id > pair[1].id),
        "the walk runs strictly newest first"
    );
    let inside_tied: Vec<Uuid> = (0..60).filter(|i| i % 6 != 0).map(tied).rev().collect();
    let listed_first: Vec<Uuid> = points.iter().take(50).map(|p| p.id).collect();
    assert_eq!(
        listed_first, inside_tied,
        "the tied points come first, by id"
    );
}

/// `geoledger_query_nearest_pages_total{path="<path>"}`, 0 while it has not appeared.
async fn nearest_pages(app: &TestApp, path: &str) -> f64 {
    query_metric(
        app,
        "geoledger_query_nearest_pages_total",
        &[("path", path)],
    )
    .await
}

/// The ids within `radius` metres of the centre in PostGIS's own order: `<->` on geography,
/// then id.
async fn reference_nearest(pool: &PgPool, longitude: f64, latitude: f64, radius: f64) -> Vec<Uuid> {
    let centre = format!("ST_SetSRID(ST_MakePoint({longitude}, {latitude}), 4326)::geography");
    sqlx::query_scalar(&format!(
        "SELECT id FROM points WHERE geom::geography <-> {centre} <= {radius} \
         ORDER BY geom::geography <-> {centre}, id"
    ))
    .fetch_all(pool)
    .await
    .expect("the reference query runs")
}

#[tokio::test]
async fn radius_searches_around_real_places_list_postgis_own_order_through_the_planar_index() {
    let app = app_with_all_places().await;
    let places = all_places();
    // Every 4,001st place: about 60 centres from every inhabited latitude, in and out of
    // crowded regions; three radii, and page sizes that put many page boundaries in each.
    for (i, centre) in places.iter().step_by(4_001).enumerate() {
        let (radius, limit) = [(5_000.0, 3), (30_000.0, 20), (120_000.0, 150)][i % 3];
        let query = format!(
            "near={},{}&radius={radius}&limit={limit}",
            centre.longitude, centre.latitude
        );
        let (points, _) = walk(&app, &query).await;
        let listed: Vec<Uuid> = points.iter().map(|p| p.id).collect();
        let reference =
            reference_nearest(&app.pool, centre.longitude, centre.latitude, radius).await;
        assert!(
            !reference.is_empty(),
            "{query}: the centre itself is a place"
        );
        assert_eq!(listed, reference, "{query} ({})", centre.name);
    }
    // Each first page came from the planar walk, bar a few the bound did not settle (none of
    // these circles crosses the antimeridian or comes near a pole); later pages, from the
    // geography index.
    let centres = f64::from(u32::try_from(places.len().div_ceil(4_001)).unwrap());
    let planar = nearest_pages(&app, "planar").await;
    let fallback = nearest_pages(&app, "planar_then_sphere").await;
    assert!(
        (planar + fallback - centres).abs() < 0.5,
        "{planar} + {fallback} first pages"
    );
    assert!(planar >= 0.9 * centres, "{fallback} of {centres} fell back");
    assert!(
        nearest_pages(&app, "sphere").await > 100.0,
        "the later pages"
    );
}

#[tokio::test]
async fn a_planar_walk_that_cannot_prove_its_page_gives_way_to_the_geography_index() {
    let app = spawn_app().await;
    // At 60° north a degree of longitude is half a degree of latitude on the sphere. Sixteen
    // points 0.1° north or south of the centre (11 km) are nearer in the plane than two
    // points 0.15° east and west (8.3 km), which are nearer on the sphere. A walk for a page
    // of one reads 13 points, all from the first group, and cannot rule out the second.
    let mut places: Vec<Place> = (0..16)
        .map(|i| {
            let north = if i % 2 == 0 { 0.1 } else { -0.1 };
            place(
                &format!("row {i}"),
                10.0 + f64::from(i) * 1e-4,
                60.0 + north,
            )
        })
        .collect();
    places.push(place("east", 10.15, 60.0));
    places.push(place("west", 9.85, 60.0));
    copy_places(&app.pool, &places).await;

    let (points, pages) = walk(&app, "near=10,60&radius=20000&limit=1").await;
    assert_eq!(pages, 18);
    let names: Vec<&str> = points.iter().take(2).map(|p| p.name.as_str()).collect();
    assert!(
        names.contains(&"east") && names.contains(&"west"),
        "the two nearest on the sphere first: {names:?}"
    );
    let listed: Vec<Uuid> = points.iter().map(|p| p.id).collect();
    assert_eq!(
        listed,
        reference_nearest(&app.pool, 10.0, 60.0, 20_000.0).await
    );
    assert!(nearest_pages(&app, "planar_then_sphere").await >= 1.0);
}

#[tokio::test]
async fn points_that_postgis_puts_at_distance_zero_are_all_listed_and_never_break_a_read() {
    let app = spawn_app().await;
    // Thirteen points within 1.3e-12 degrees of a centre in Paris, where `<->` gives 0 for
    // every one: they tie, so they list by id. Written farthest first, the point farthest in
    // the plane has the smallest id and comes first, although a planar walk reaches it last.
    let mut places: Vec<Place> = (1..=13)
        .rev()
        .map(|k| place(&format!("zero {k}"), 2.3522 + f64::from(k) * 1e-13, 48.8566))
        .collect();
    // Where the geography index's estimate exceeds a distance that rounds to 0, PostgreSQL
    // stops its nearest-neighbour scan: on the antimeridian, and on the equator.
    places.push(place("on the antimeridian", 180.0, 0.0));
    places.extend((0..12).map(|i| place(&format!("equator {i}"), 10.0, 0.0)));
    places.push(place("equator, a hair north", 10.0, 1e-13));
    copy_places(&app.pool, &places).await;

    for (longitude, latitude, radius, limit, count) in [
        (2.3522, 48.8566, 10.0, 1, 13),
        (2.3522, 48.8566, 10.0, 5, 13),
        (-180.0, 0.0, 1.0, 10, 1),
        (10.0, 0.0, 1.0, 1, 13),
    ] {
        let query = format!("near={longitude},{latitude}&radius={radius}&limit={limit}");
        let (points, _) = walk(&app, &query).await;
        let listed: Vec<Uuid> = points.iter().map(|p| p.id).collect();
        let reference = reference_nearest(&app.pool, longitude, latitude, radius).await;
        assert_eq!(reference.len(), count, "{query}: the reference");
        assert_eq!(listed, reference, "{query}");
    }
}

#[tokio::test]
async fn a_box_a_few_nanometres_wide_lists_every_point_inside_it() {
    let app = spawn_app().await;
    // Nine points 1e-14 degrees apart on a diagonal, in a box 1e-13 degrees square, and one
    // just outside it; `ST_Intersects` alone lists the first row it tests and drops the rest.
    let mut places: Vec<Place> = (1..=9)
        .map(|k| {
            let offset = f64::from(k) * 1e-14;
            place(&format!("inside {k}"), 2.35 + offset, 48.1 + offset)
        })
        .collect();
    places.push(place("outside", 2.35 + 2e-13, 48.1 + 5e-14));
    copy_places(&app.pool, &places).await;

    let west_south_east_north = [2.35, 48.1, 2.35 + 1e-13, 48.1 + 1e-13];
    let [west, south, east, north] = west_south_east_north;
    for extra in ["", "&near=2.35,48.1&radius=1"] {
        for limit in [1, 4, 100] {
            let query = format!("bbox={west},{south},{east},{north}&limit={limit}{extra}");
            let (points, _) = walk(&app, &query).await;
            let mut names: Vec<&str> = points.iter().map(|p| p.name.as_str()).collect();
            names.sort_unstable();
            let expected: Vec<String> = (1..=9).map(|k| format!("inside {k}")).collect();
            assert_eq!(names, expected, "{query}");
        }
    }
}
