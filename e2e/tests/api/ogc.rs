//! OGC API – Features over real places loaded straight into the read model: the documents a
//! GIS client reads first, paging, filters, problems, validators, the OpenAPI description,
//! and two real clients, GDAL's OAPIF driver (as QGIS users run it) and `OWSLib`, also
//! through HAProxy in front of two instances.
//!
//! Coordinates are compared bit for bit after JSON; see `reads` for why that is sound.

use std::collections::{HashMap, HashSet};
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    Accepted, OwnHaproxy, Place, TestApp, all_places, client_program, copy_places, loopback_only,
    sample_places, spawn_app, start_command_api, start_query_api,
};

const GEO_JSON: &str = "application/geo+json";
const JSON: &str = "application/json";
const OPENAPI_JSON: &str = "application/vnd.oai.openapi+json;version=3.0";
const PROBLEM_JSON: &str = "application/problem+json";
const ITEMS: &str = "/collections/points/items";

/// Longest a client program may run before the test gives up on it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

async fn get(app: &TestApp, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let url = if url.starts_with("http") {
        url.to_owned()
    } else {
        app.query.url(url)
    };
    let mut request = app.http.get(&url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("query-api answers")
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| {
            v.to_str()
                .expect("query-api writes ASCII headers")
                .to_owned()
        })
        .unwrap_or_default()
}

/// A feature's id, or an id member of a summary.
fn uuid_of(value: &Value) -> Uuid {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("{value} is a UUID"))
}

/// The `features` of a feature collection.
fn features_of(document: &Value) -> &Vec<Value> {
    document["features"]
        .as_array()
        .unwrap_or_else(|| panic!("a feature collection: {document}"))
}

/// The link of `document` with relation `rel`.
fn link<'a>(document: &'a Value, rel: &str) -> Option<&'a Value> {
    document["links"]
        .as_array()?
        .iter()
        .find(|link| link["rel"] == rel)
}

/// Every place of one country of `places.csv`.
fn places_in(country: &str) -> Vec<Place> {
    all_places()
        .into_iter()
        .filter(|place| place.country == country)
        .collect()
}

async fn reference_ids(app: &TestApp, condition: &str) -> HashSet<Uuid> {
    sqlx::query_scalar(&format!("SELECT id FROM points WHERE {condition}"))
        .fetch_all(&app.pool)
        .await
        .expect("the reference query runs")
        .into_iter()
        .collect()
}

/// The features of `ITEMS?{query}`, following `next` links to the end, and the pages read.
async fn walk(app: &TestApp, query: &str) -> (Vec<Value>, Vec<Value>) {
    let mut target = Some(app.query.url(&format!("{ITEMS}?{query}")));
    let (mut features, mut pages) = (Vec::new(), Vec::new());
    while let Some(url) = target {
        let response = get(app, &url, &[]).await;
        assert_eq!(response.status(), 200, "GET {url}");
        assert_eq!(header(&response, "content-type"), GEO_JSON, "GET {url}");
        let link_header = header(&response, "link");
        let page: Value = response.json().await.expect("a page is JSON");
        let returned = features_of(&page).len();
        assert_eq!(page["numberReturned"], returned, "GET {url}");
        target = link(&page, "next").map(|next| {
            assert_eq!(next["type"], GEO_JSON);
            let href = next["href"]
                .as_str()
                .expect("a link has an href")
                .to_owned();
            assert!(link_header.contains(&format!("<{href}>")), "{link_header}");
            href
        });
        features.extend(features_of(&page).iter().cloned());
        pages.push(page);
        assert!(pages.len() < 10_000, "the next links never end");
    }
    (features, pages)
}

fn feature_ids(features: &[Value]) -> HashSet<Uuid> {
    let ids: HashSet<Uuid> = features.iter().map(|f| uuid_of(&f["id"])).collect();
    assert_eq!(ids.len(), features.len(), "a feature came twice");
    ids
}

#[tokio::test]
async fn the_landing_page_links_the_description_the_conformance_and_the_collections() {
    let app = spawn_app().await;
    let response = get(&app, "/", &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), JSON);
    let landing: Value = response.json().await.unwrap();
    assert!(landing["title"].is_string() && landing["description"].is_string());
    for link in landing["links"].as_array().unwrap() {
        assert!(link["type"].is_string(), "every link has a type: {link}");
    }
    for (rel, media_type, path) in [
        ("self", JSON, "/"),
        ("service-desc", OPENAPI_JSON, "/api"),
        ("conformance", JSON, "/conformance"),
        ("data", JSON, "/collections"),
    ] {
        let link = link(&landing, rel).unwrap_or_else(|| panic!("a {rel} link"));
        assert_eq!(link["type"], media_type, "{rel}");
        assert_eq!(link["href"], app.query.url(path), "{rel} is absolute");
        let target = get(&app, link["href"].as_str().unwrap(), &[]).await;
        assert_eq!(target.status(), 200, "{rel}");
        assert_eq!(header(&target, "content-type"), media_type, "{rel}");
    }
}

#[tokio::test]
async fn conformance_claims_core_geojson_and_openapi_3_0() {
    let app = spawn_app().await;
    let conformance: Value = get(&app, "/conformance", &[]).await.json().await.unwrap();
    let claimed: HashSet<&str> = conformance["conformsTo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for class in ["core", "geojson", "oas30"] {
        let uri = format!("http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/{class}");
        assert!(claimed.contains(uri.as_str()), "{uri}");
    }
}

#[tokio::test]
async fn the_collection_extent_is_exactly_the_box_and_time_span_of_the_points() {
    let app = spawn_app().await;
    copy_places(&app.pool, &sample_places()).await;
    sqlx::query(
        "UPDATE points SET updated_at = '2026-02-01T00:00:00Z'::timestamptz \
         + (ascii(name) * interval '1 second')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let (west, south, east, north, first, last): (f64, f64, f64, f64, String, String) =
        sqlx::query_as(
            "SELECT min(ST_X(geom)), min(ST_Y(geom)), max(ST_X(geom)), max(ST_Y(geom)), \
             to_char(min(updated_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
             to_char(max(updated_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
             FROM points",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();

    let response = get(&app, "/collections/points", &[]).await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "cache-control").contains("max-age"));
    let collection: Value = response.json().await.unwrap();
    assert_eq!(collection["id"], "points");
    assert_eq!(collection["itemType"], "feature");
    let crs84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84";
    assert_eq!(collection["crs"], json!([crs84]));
    assert_eq!(collection["extent"]["spatial"]["crs"], crs84);
    assert_eq!(
        collection["extent"]["spatial"]["bbox"],
        json!([[west, south, east, north]])
    );
    assert_eq!(
        collection["extent"]["temporal"]["interval"],
        json!([[first, last]])
    );
    let items = collection["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rel"] == "items" && l["type"] == GEO_JSON)
        .expect("an items link to GeoJSON");
    assert_eq!(items["href"], app.query.url(ITEMS));

    let collections: Value = get(&app, "/collections", &[]).await.json().await.unwrap();
    assert_eq!(collections["collections"], json!([collection]));
}

#[tokio::test]
async fn following_next_links_visits_every_point_once_newest_first() {
    let app = spawn_app().await;
    let places: Vec<Place> = all_places().into_iter().take(3_000).collect();
    let loaded: HashSet<Uuid> = copy_places(&app.pool, &places).await.into_iter().collect();

    let (features, pages) = walk(&app, "limit=250").await;
    assert_eq!(pages.len(), 12);
    assert_eq!(feature_ids(&features), loaded);
    let ids: Vec<Uuid> = features
        .iter()
        .map(|f| f["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] > pair[1]), "newest first");
    assert!(
        pages.iter().all(|p| p.get("numberMatched").is_none()),
        "no count is given where it would have to be counted"
    );
    for rel in ["self", "alternate", "collection"] {
        assert!(link(&pages[0], rel).is_some(), "{rel}");
    }
    assert_eq!(link(&pages[0], "alternate").unwrap()["type"], JSON);

    let everything: Value = get(&app, &format!("{ITEMS}?limit=5000"), &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(everything["numberMatched"], 3_000);
    assert_eq!(everything["numberReturned"], 3_000);
    assert!(link(&everything, "next").is_none());

    let clamped: Value = get(&app, &format!("{ITEMS}?limit=1000000"), &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        clamped["numberReturned"], 3_000,
        "a limit above the maximum is lowered"
    );
}

#[tokio::test]
async fn a_bbox_lists_exactly_the_points_postgis_finds_in_it() {
    let app = spawn_app().await;
    copy_places(&app.pool, &places_in("AT")).await;
    let (features, pages) = walk(&app, "bbox=15.53,47.61,17.17,48.59&limit=100").await;
    let reference = reference_ids(
        &app,
        "ST_Intersects(geom, ST_MakeEnvelope(15.53, 47.61, 17.17, 48.59, 4326))",
    )
    .await;
    assert!(reference.len() > 300, "{} places", reference.len());
    assert_eq!(pages.len(), reference.len().div_ceil(100));
    assert_eq!(feature_ids(&features), reference);
}

#[tokio::test]
async fn datetime_selects_points_by_their_last_update() {
    let app = spawn_app().await;
    copy_places(&app.pool, &sample_places()).await;
    // One point a minute from midnight, in id order.
    sqlx::query(
        "UPDATE points p SET updated_at = '2026-03-01T00:00:00Z'::timestamptz \
         + s.n * interval '1 minute' \
         FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM points) s \
         WHERE p.id = s.id",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let rows = [
        (
            "2026-03-01T05:00:00Z",
            "updated_at = '2026-03-01T05:00:00Z'",
        ),
        (
            "2026-03-01T01:00:00Z/2026-03-01T02:00:00Z",
            "updated_at BETWEEN '2026-03-01T01:00:00Z' AND '2026-03-01T02:00:00Z'",
        ),
        (
            "../2026-03-01T00:10:00Z",
            "updated_at <= '2026-03-01T00:10:00Z'",
        ),
        (
            "2026-03-01T16:00:00Z/..",
            "updated_at >= '2026-03-01T16:00:00Z'",
        ),
        (
            "2026-03-01T16:00:00Z/",
            "updated_at >= '2026-03-01T16:00:00Z'",
        ),
        (
            "2026-03-01T03:00:00%2B02:00/2026-03-01T01:30:00Z",
            "updated_at BETWEEN '2026-03-01T01:00:00Z' AND '2026-03-01T01:30:00Z'",
        ),
        ("2027-01-01T00:00:00Z/..", "FALSE"),
    ];
    for (datetime, condition) in rows {
        let (features, _) = walk(&app, &format!("datetime={datetime}&limit=40")).await;
        let reference = reference_ids(&app, condition).await;
        assert_eq!(feature_ids(&features), reference, "datetime={datetime}");
        for feature in &features {
            assert!(feature["properties"]["updated_at"].is_string());
        }
    }
    let (features, _) = walk(&app, "datetime=2026-03-01T00:00:00Z/..&bbox=-10,35,30,60").await;
    let reference = reference_ids(
        &app,
        "ST_Intersects(geom, ST_MakeEnvelope(-10, 35, 30, 60, 4326))",
    )
    .await;
    assert_eq!(feature_ids(&features), reference, "datetime with bbox");
}

#[tokio::test]
async fn bad_parameters_are_400_problem_documents_naming_the_parameter() {
    let app = spawn_app().await;
    let some_id = Uuid::now_v7();
    let rows = [
        (
            format!("{ITEMS}?bboxx=1,2,3,4"),
            "bboxx",
            "an unknown parameter",
        ),
        (
            format!("{ITEMS}?bbox=1,2,3"),
            "bbox",
            "a bbox of three numbers",
        ),
        (
            format!("{ITEMS}?bbox=1,2,0,3,4,5"),
            "bbox",
            "a bbox with heights",
        ),
        (format!("{ITEMS}?bbox=0,0,1,91"), "bbox", "a latitude of 91"),
        (format!("{ITEMS}?limit=-1"), "limit", "a negative limit"),
        (format!("{ITEMS}?limit=0"), "limit", "a zero limit"),
        (
            format!("{ITEMS}?limit=abc"),
            "limit",
            "a limit that is no number",
        ),
        (format!("{ITEMS}?limit=2.5"), "limit", "a fractional limit"),
        (
            format!("{ITEMS}?limit=5&limit=6"),
            "limit",
            "a repeated limit",
        ),
        (
            format!("{ITEMS}?datetime=yesterday"),
            "datetime",
            "a datetime that is no date",
        ),
        (
            format!("{ITEMS}?datetime=2026-01-01"),
            "datetime",
            "a date without a time",
        ),
        (
            format!("{ITEMS}?datetime=2026-02-01T00:00:00Z/2026-01-01T00:00:00Z"),
            "datetime",
            "an interval that ends before it starts",
        ),
        (
            format!("{ITEMS}?cursor=garbage"),
            "cursor",
            "a cursor this service never issued",
        ),
        (format!("{ITEMS}?f=html"), "f", "HTML, which is not offered"),
        (
            format!("{ITEMS}/{some_id}?limit=1"),
            "limit",
            "a feature takes no limit",
        ),
        (
            "/collections/points?bbox=1,2,3,4".to_owned(),
            "bbox",
            "the collection takes no bbox",
        ),
        ("/?f=html".to_owned(), "f", "an HTML landing page"),
        ("/conformance?f=xml".to_owned(), "f", "XML conformance"),
        ("/api?f=yaml".to_owned(), "f", "a YAML description"),
    ];
    for (path, field, description) in rows {
        let response = get(&app, &path, &[]).await;
        assert_eq!(response.status(), 400, "{description}: {path}");
        assert_eq!(
            header(&response, "content-type"),
            PROBLEM_JSON,
            "{description}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(
            problem["type"], "urn:geoledger:problem:validation",
            "{description}"
        );
        assert_eq!(problem["status"], 400, "{description}");
        assert_eq!(
            problem["errors"][0]["field"], field,
            "{description}: {problem}"
        );
    }

    // A cursor issued for one box does not continue another.
    copy_places(&app.pool, &sample_places()).await;
    let page: Value = get(&app, &format!("{ITEMS}?bbox=-10,35,30,60&limit=5"), &[])
        .await
        .json()
        .await
        .unwrap();
    let next = link(&page, "next").unwrap()["href"].as_str().unwrap();
    let moved = next.replace("bbox=-10,35,30,60", "bbox=-10,35,30,61");
    let response = get(&app, &moved, &[]).await;
    assert_eq!(response.status(), 400);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "cursor");
}

#[tokio::test]
async fn a_feature_read_alone_has_its_path_id_and_links_back_to_the_collection() {
    let app = spawn_app().await;
    let ids = copy_places(&app.pool, &sample_places()[..10]).await;
    let id = ids[3];
    let response = get(&app, &format!("{ITEMS}/{id}"), &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), GEO_JSON);
    let feature: Value = response.json().await.unwrap();
    assert_eq!(feature["type"], "Feature");
    assert_eq!(feature["id"], id.to_string());
    assert_eq!(
        link(&feature, "self").unwrap()["href"],
        app.query.url(&format!("{ITEMS}/{id}?f=geojson"))
    );
    assert_eq!(
        link(&feature, "collection").unwrap()["href"],
        app.query.url("/collections/points")
    );
    let place = &sample_places()[3];
    assert_eq!(
        feature["geometry"]["coordinates"],
        json!([place.longitude, place.latitude])
    );
    assert_eq!(feature["properties"]["name"], place.name.as_str());

    let as_json = get(&app, &format!("{ITEMS}/{id}"), &[("accept", JSON)]).await;
    assert_eq!(header(&as_json, "content-type"), JSON);

    for (path, what) in [
        (format!("{ITEMS}/{}", Uuid::now_v7()), "an unknown id"),
        (format!("{ITEMS}/paris"), "an id that is no UUID"),
        (
            format!("/collections/roads/items/{id}"),
            "an unknown collection",
        ),
        ("/collections/roads".to_owned(), "an unknown collection"),
    ] {
        let response = get(&app, &path, &[]).await;
        assert_eq!(response.status(), 404, "{what}");
        assert_eq!(header(&response, "content-type"), PROBLEM_JSON, "{what}");
    }
}

#[tokio::test]
async fn a_page_is_not_modified_until_a_new_point_is_projected() {
    let app = spawn_app().await;
    let ids = copy_places(&app.pool, &sample_places()[..100]).await;
    let page_url = format!("{ITEMS}?limit=10");

    let first = get(&app, &page_url, &[]).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "cache-control"), "no-cache");
    let tag = header(&first, "etag");
    assert!(
        tag.starts_with('"') && tag.ends_with('"'),
        "a strong tag: {tag}"
    );
    assert_eq!(
        header(&get(&app, &page_url, &[]).await, "etag"),
        tag,
        "stable"
    );
    let other = get(&app, &format!("{ITEMS}?limit=11"), &[]).await;
    assert_ne!(header(&other, "etag"), tag, "another request, another tag");

    let again = get(&app, &page_url, &[("if-none-match", &tag)]).await;
    assert_eq!(again.status(), 304);
    assert_eq!(header(&again, "etag"), tag);
    assert!(again.bytes().await.unwrap().is_empty());

    let item_url = format!("{ITEMS}/{}", ids[0]);
    let item_tag = header(&get(&app, &item_url, &[]).await, "etag");
    let item_again = get(&app, &item_url, &[("if-none-match", &item_tag)]).await;
    assert_eq!(item_again.status(), 304);
    let points_tag = header(&get(&app, "/points?limit=10", &[]).await, "etag");
    let points_again = get(&app, "/points?limit=10", &[("if-none-match", &points_tag)]).await;
    assert_eq!(points_again.status(), 304);

    let accepted: Accepted = app
        .post_point(&json!({"longitude": 9.19, "latitude": 45.4642, "name": "Milano"}))
        .await
        .json()
        .await
        .unwrap();
    app.wait_projected(accepted.sequence).await;

    // With its write's token, as a client that must see its own write sends it: query-api
    // answers once it has heard the projector announce that sequence, and not from a page
    // held for the checkpoint before (the announcement trails the commit by a moment).
    let token = accepted.sequence.to_string();
    let changed = get(
        &app,
        &page_url,
        &[("if-none-match", &tag), ("consistency-token", &token)],
    )
    .await;
    assert_eq!(changed.status(), 200);
    assert_ne!(header(&changed, "etag"), tag);
    let page: Value = changed.json().await.unwrap();
    assert_eq!(
        page["features"][0]["id"],
        accepted.id.to_string(),
        "newest first"
    );
    assert!(
        page["timeStamp"].is_string(),
        "the instant the projection reached this state: {page}"
    );
    let points_changed = get(&app, "/points?limit=10", &[("if-none-match", &points_tag)]).await;
    assert_eq!(points_changed.status(), 200);

    // A point's own tag is its version, the tag command-api gave the write.
    let point = app.get_point(&app.query.url(""), accepted.id).await;
    assert_eq!(header(&point, "etag"), format!("\"{}\"", accepted.sequence));
    let version_again = get(
        &app,
        &format!("/points/{}", accepted.id),
        &[("if-none-match", &format!("\"{}\"", accepted.sequence))],
    )
    .await;
    assert_eq!(version_again.status(), 304);
}

#[tokio::test]
async fn the_api_description_is_openapi_3_0_and_declares_limit_and_bbox_as_part_1_does() {
    let app = spawn_app().await;
    let response = get(&app, "/api", &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), OPENAPI_JSON);
    let description: Value = response.json().await.expect("the description is JSON");
    assert!(
        description["openapi"].as_str().unwrap().starts_with("3.0"),
        "{}",
        description["openapi"]
    );
    let parameters = description["paths"][ITEMS]["get"]["parameters"]
        .as_array()
        .expect("the items declare parameters");
    let parameter = |name: &str| {
        parameters
            .iter()
            .find(|p| p["name"] == name && p["in"] == "query")
            .unwrap_or_else(|| panic!("{name} is declared"))
    };
    let limit = parameter("limit");
    assert_eq!(limit["schema"]["type"], "integer");
    assert_eq!(limit["schema"]["minimum"], 1.0);
    assert!(limit["schema"]["maximum"].as_f64().unwrap() >= 1000.0);
    let bbox = parameter("bbox");
    assert_eq!(bbox["style"], "form");
    assert_eq!(bbox["explode"], false);
    assert_eq!(bbox["schema"]["type"], "array");
    assert_eq!(bbox["schema"]["minItems"], 4);
    assert_eq!(bbox["schema"]["maxItems"], 6);
    for name in ["datetime", "f", "cursor"] {
        parameter(name);
    }
    assert!(
        description["paths"]["/point"]["post"].is_object(),
        "writes too"
    );
    assert!(description["paths"]["/points"]["get"].is_object());

    let plain = get(&app, "/api", &[("accept", JSON)]).await;
    assert_eq!(header(&plain, "content-type"), JSON);
}

/// Runs a client program against the test's own services only: no proxy, short HTTP
/// timeouts, no PROJ downloads.
async fn run_client(program: &str, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env("GDAL_HTTP_TIMEOUT", "20")
        .env("GDAL_HTTP_CONNECTTIMEOUT", "5")
        .env("GDAL_HTTP_MAX_RETRY", "0")
        .env("PROJ_NETWORK", "OFF")
        .kill_on_drop(true);
    loopback_only(&mut command);
    // Awaited, not blocked on: the services answering the client run on this runtime.
    let output = tokio::time::timeout(CLIENT_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{program} did not finish in {CLIENT_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{program} could not be started: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The features of a GeoJSON file ogr2ogr wrote, by the `id` property.
fn exported(path: &std::path::Path) -> HashMap<Uuid, (f64, f64)> {
    let document: Value =
        serde_json::from_slice(&std::fs::read(path).expect("ogr2ogr wrote its output"))
            .expect("ogr2ogr wrote JSON");
    let features = features_of(&document);
    let by_id: HashMap<Uuid, (f64, f64)> = features
        .iter()
        .map(|f| {
            let at = &f["geometry"]["coordinates"];
            let coordinate = |i: usize| {
                at[i]
                    .as_f64()
                    .unwrap_or_else(|| panic!("a point has two coordinates: {f}"))
            };
            (
                uuid_of(&f["properties"]["id"]),
                (coordinate(0), coordinate(1)),
            )
        })
        .collect();
    assert_eq!(by_id.len(), features.len(), "a feature was exported twice");
    by_id
}

#[tokio::test]
async fn gdal_opens_the_layer_and_exports_every_point_across_pages() {
    let app = spawn_app().await;
    copy_places(&app.pool, &places_in("AT")).await;
    let stored: HashMap<Uuid, (f64, f64)> =
        sqlx::query_as::<_, (Uuid, f64, f64)>("SELECT id, ST_X(geom), ST_Y(geom) FROM points")
            .fetch_all(&app.pool)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, x, y)| (id, (x, y)))
            .collect();
    assert!(stored.len() > 3_000, "{} places in Austria", stored.len());
    let source = format!("OAPIF:{}", app.query.url("/collections/points"));
    let ogrinfo = client_program("GEOLEDGER_TEST_OGRINFO", "ogrinfo");
    let ogr2ogr = client_program("GEOLEDGER_TEST_OGR2OGR", "ogr2ogr");

    // GDAL counts by reading every page, as no page but a last one says numberMatched.
    let info = run_client(
        &ogrinfo,
        &["-ro", "-so", "-al", "-oo", "PAGE_SIZE=1000", &source],
    )
    .await;
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("Layer name: points"), "{info}");
    assert!(info.contains("Geometry: Point"), "{info}");
    assert!(
        info.contains(&format!("Feature Count: {}", stored.len())),
        "{info}"
    );

    // A page size well below the count makes GDAL follow next links for seven pages.
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.json");
    run_client(
        &ogr2ogr,
        &[
            "-f",
            "GeoJSON",
            all.to_str().unwrap(),
            &source,
            "-oo",
            "PAGE_SIZE=500",
        ],
    )
    .await;
    assert_eq!(
        exported(&all),
        stored,
        "every point, at its exact coordinates"
    );

    let inside = dir.path().join("inside.json");
    run_client(
        &ogr2ogr,
        &[
            "-f",
            "GeoJSON",
            inside.to_str().unwrap(),
            &source,
            "-oo",
            "PAGE_SIZE=100",
            "-spat",
            "15.53",
            "47.61",
            "17.17",
            "48.59",
        ],
    )
    .await;
    let reference = reference_ids(
        &app,
        "ST_Intersects(geom, ST_MakeEnvelope(15.53, 47.61, 17.17, 48.59, 4326))",
    )
    .await;
    assert!(reference.len() > 300);
    let exported_ids: HashSet<Uuid> = exported(&inside).into_keys().collect();
    assert_eq!(
        exported_ids, reference,
        "-spat gives the points inside the box"
    );
}

#[tokio::test]
async fn owslib_lists_the_collection_and_pages_through_a_box_to_its_end() {
    let app = spawn_app().await;
    copy_places(&app.pool, &places_in("JP")).await;
    let bbox = "138.5,34.8,140.9,36.9";
    let reference = reference_ids(
        &app,
        "ST_Intersects(geom, ST_MakeEnvelope(138.5, 34.8, 140.9, 36.9, 4326))",
    )
    .await;
    assert!(
        reference.len() > 200,
        "{} places around Tokyo",
        reference.len()
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/owslib_check.py");
    let python = client_program("GEOLEDGER_TEST_PYTHON", "python3");
    let expected = reference.len().to_string();
    let base = app.query.url("/");
    let output = run_client(
        &python,
        &[
            script,
            &base,
            "--bbox",
            bbox,
            "--limit",
            "50",
            "--expect-total",
            &expected,
        ],
    )
    .await;
    let summary: Value = serde_json::from_slice(&output.stdout).expect("a JSON summary");
    assert_eq!(summary["problems"], json!([]));
    assert!(summary["openapi"].as_str().unwrap().starts_with("3.0"));
    assert_eq!(summary["feature_collections"], json!(["points"]));
    assert_eq!(summary["collection"]["item_type"], "feature");
    assert_eq!(summary["pages"], reference.len().div_ceil(50));
    let ids: HashSet<Uuid> = summary["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(summary["total"], reference.len());
    assert_eq!(ids, reference);
}

#[tokio::test]
async fn gis_clients_page_through_haproxy_with_links_that_stay_behind_it() {
    let app = spawn_app().await;
    let second_command = start_command_api(&app.nats).await;
    let second_query = start_query_api(&app.reader_config(2)).await;
    let haproxy = OwnHaproxy::start(
        [app.command.addr, second_command.addr],
        [app.query.addr, second_query.addr],
    )
    .await;
    copy_places(&app.pool, &places_in("LU")).await;
    let stored = reference_ids(&app, "TRUE").await;
    assert!(stored.len() > 100, "{} places in Luxembourg", stored.len());

    // Every link a client follows must point at HAProxy, not at the instance that answered.
    let landing: Value = get(&app, &format!("{}/", haproxy.url()), &[])
        .await
        .json()
        .await
        .unwrap();
    for rel in ["self", "service-desc", "conformance", "data"] {
        let href = link(&landing, rel).unwrap_or_else(|| panic!("{rel}: {landing}"))["href"]
            .as_str()
            .unwrap();
        assert!(href.starts_with(&haproxy.url()), "{rel}: {href}");
    }
    let api = get(&app, &format!("{}/api", haproxy.url()), &[]).await;
    assert_eq!(api.status(), 200);
    assert_eq!(header(&api, "content-type"), OPENAPI_JSON);

    let mut target = Some(format!("{}{ITEMS}?limit=40", haproxy.url()));
    let mut features = Vec::new();
    while let Some(url) = target {
        assert!(url.starts_with(&haproxy.url()), "{url}");
        let response = get(&app, &url, &[]).await;
        assert_eq!(response.status(), 200, "GET {url}");
        assert_eq!(header(&response, "content-type"), GEO_JSON, "GET {url}");
        let page: Value = response.json().await.unwrap();
        features.extend(features_of(&page).iter().cloned());
        target = link(&page, "next").map(|next| next["href"].as_str().unwrap().to_owned());
    }
    assert_eq!(feature_ids(&features), stored);

    let source = format!("OAPIF:{}/collections/points", haproxy.url());
    let ogrinfo = client_program("GEOLEDGER_TEST_OGRINFO", "ogrinfo");
    let info = run_client(
        &ogrinfo,
        &["-ro", "-so", "-al", "-oo", "PAGE_SIZE=50", &source],
    )
    .await;
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains(&format!("Feature Count: {}", stored.len())),
        "{info}"
    );
    haproxy.stop().await;
}
