//! query-api keeps each page it read for the checkpoint it read it at: the same page asked
//! again before the projection moves comes from memory, a write that moves the projection is
//! seen by the next read of it, and nothing is served from memory for more than a second.

use std::time::{Duration, Instant};

use crate::helpers::{PointDto, TestApp, query_metric, sample_places, spawn_app};

/// `geoledger_query_page_reads_total{source="<source>"}`, 0 while it has not appeared.
async fn page_reads(app: &TestApp, source: &str) -> f64 {
    query_metric(
        app,
        "geoledger_query_page_reads_total",
        &[("source", source)],
    )
    .await
}

async fn newest(app: &TestApp, query: &str) -> Vec<PointDto> {
    let response = app
        .http
        .get(app.query.url(&format!("/points?limit=5{query}")))
        .send()
        .await
        .expect("query-api answers");
    assert_eq!(response.status(), 200);
    response.json().await.expect("a JSON array")
}

#[tokio::test]
async fn a_page_asked_again_comes_from_memory_until_a_write_moves_the_projection() {
    let app = spawn_app().await;
    let places = sample_places();
    let first = app.create_point(&places[0].to_json()).await;
    app.wait_projected(first.sequence).await;

    // query-api hears the projector's announcements on a connection of its own, set up in
    // the background; until it listens, every read goes to the database.
    let start = Instant::now();
    let from_memory = page_reads(&app, "memory").await;
    loop {
        let listed = newest(&app, "").await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, first.id);
        if page_reads(&app, "memory").await > from_memory {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the same page asked again and again never came from memory"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A write moves the checkpoint: the page read with its token is the new page, at once.
    let second = app.create_point(&places[1].to_json()).await;
    let listed = newest(&app, &format!("&consistency_token={}", second.sequence)).await;
    let ids: Vec<_> = listed.iter().map(|p| p.id).collect();
    assert_eq!(ids, [second.id, first.id]);
    assert!(page_reads(&app, "database").await > 0.0);
}

/// Rows changed without the checkpoint moving (a manual fix, a rebuild swapped in onto the
/// same checkpoint) are the one case the key cannot see; the time-to-live bounds it.
#[tokio::test]
async fn a_row_changed_behind_the_projectors_back_shows_within_a_second() {
    let app = spawn_app().await;
    let places = sample_places();
    let first = app.create_point(&places[0].to_json()).await;
    app.wait_projected(first.sequence).await;
    assert_eq!(newest(&app, "").await.len(), 1);

    sqlx::query("UPDATE points SET name = 'renamed by hand' WHERE id = $1")
        .bind(first.id)
        .execute(&app.pool)
        .await
        .expect("the test may write the read model");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(newest(&app, "").await[0].name, "renamed by hand");
}

/// `GET url` with one request header set.
async fn get_with(app: &TestApp, url: &str, header: &str, value: &str) -> reqwest::Response {
    app.http
        .get(url)
        .header(header, value)
        .send()
        .await
        .expect("query-api answers")
}

/// The body of `GET /points?limit=2<query>` with `accept`, and its `Link` header.
async fn page_text(app: &TestApp, query: &str, accept: &str) -> (String, String) {
    let url = app.query.url(&format!("/points?limit=2{query}"));
    let response = get_with(app, &url, "Accept", accept).await;
    assert_eq!(response.status(), 200);
    let link = response.headers()["link"]
        .to_str()
        .expect("a next link in ASCII")
        .to_owned();
    (link, response.text().await.expect("a body"))
}

#[tokio::test]
async fn a_page_in_memory_answers_each_representation_with_its_own_links() {
    let app = spawn_app().await;
    let places = sample_places();
    let mut last = 0;
    for place in &places[..3] {
        last = app.create_point(&place.to_json()).await.sequence;
    }
    app.wait_projected(last).await;
    let start = Instant::now();
    let from_memory = page_reads(&app, "memory").await;
    while page_reads(&app, "memory").await <= from_memory {
        page_text(&app, "", "application/json").await;
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never from memory"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The same page four ways: the array, GeoJSON asked by name (whose next link repeats
    // `f`) and by Accept (whose link does not), and the array by name.
    let asks = [
        ("", "application/json"),
        ("&f=geojson", "*/*"),
        ("", "application/geo+json"),
        ("&f=json", "application/geo+json"),
    ];
    let mut first = Vec::new();
    for (query, accept) in asks {
        first.push(page_text(&app, query, accept).await);
    }
    let named: serde_json::Value = serde_json::from_str(&first[1].1).unwrap();
    let negotiated: serde_json::Value = serde_json::from_str(&first[2].1).unwrap();
    let named_next = named["links"][0]["href"].as_str().unwrap();
    let negotiated_next = negotiated["links"][0]["href"].as_str().unwrap();
    assert!(named_next.contains("f=geojson"), "{named_next}");
    assert!(!negotiated_next.contains("f="), "{negotiated_next}");
    assert!(first[1].0.contains("f=geojson") && !first[2].0.contains("f="));
    assert_eq!(
        first[0].1, first[3].1,
        "the array whether asked by name or not"
    );
    let array: Vec<PointDto> = serde_json::from_str(&first[0].1).unwrap();
    assert_eq!(array.len(), 2);

    // Asked again, in the opposite order, each comes from memory with the same bytes.
    let before = page_reads(&app, "memory").await;
    for (i, (query, accept)) in asks.iter().enumerate().rev() {
        assert_eq!(
            page_text(&app, query, accept).await,
            first[i],
            "{query} {accept}"
        );
    }
    assert!(page_reads(&app, "memory").await >= before + 4.0);
}

#[tokio::test]
async fn a_client_that_accepts_gzip_gets_the_cached_page_compressed() {
    let app = spawn_app().await;
    let places = sample_places();
    let mut last = 0;
    for place in &places[..30] {
        last = app.create_point(&place.to_json()).await.sequence;
    }
    app.wait_projected(last).await;
    let url = app.query.url("/points?limit=25&f=geojson");
    let plain = app.http.get(&url).send().await.expect("query-api answers");
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.expect("a body");

    let mut answers = Vec::new();
    let from_memory = page_reads(&app, "memory").await;
    for accept_encoding in ["gzip", "br;q=1, gzip;q=0.5", "*", "gzip", "x-gzip"] {
        let response = get_with(&app, &url, "Accept-Encoding", accept_encoding).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-encoding"], "gzip");
        assert_eq!(response.headers()["vary"], "accept, accept-encoding");
        answers.push(response.bytes().await.expect("a body"));
    }
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&answers[0][..]),
        &mut unzipped,
    )
    .expect("a gzip stream");
    assert_eq!(unzipped, plain, "the same page, compressed");
    assert!(answers[0].len() * 3 < plain.len(), "compressed well");
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "the same bytes each time"
    );
    // query-api hears the projector's announcements in the background; once it does, the
    // compressed answers are served from the page in memory.
    if page_reads(&app, "memory").await > from_memory {
        let before = page_reads(&app, "memory").await;
        let again = get_with(&app, &url, "Accept-Encoding", "gzip").await;
        assert_eq!(again.bytes().await.expect("a body"), answers[0]);
        assert!(page_reads(&app, "memory").await > before);
    }

    for refused in ["gzip;q=0", "identity", "br", "*;q=0"] {
        let response = get_with(&app, &url, "Accept-Encoding", refused).await;
        assert!(
            response.headers().get("content-encoding").is_none(),
            "{refused}"
        );
        assert_eq!(response.bytes().await.expect("a body"), plain, "{refused}");
    }
}
