//! A read carrying a write's consistency token sees that write, waiting for the projection
//! if it must, and says so plainly when the projection does not get there in time.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Accepted, PointDto, spawn_app, start_projector};

#[tokio::test]
async fn a_read_with_the_token_waits_for_a_paused_projector_and_then_sees_the_write() {
    let mut app = spawn_app().await;
    app.projector.stop().await;
    let written = app
        .post_point(&json!({"longitude": 151.20732, "latitude": -33.86785, "name": "Sydney"}))
        .await;
    let token = written.headers()["consistency-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let written: Accepted = written.json().await.unwrap();
    assert_eq!(token, written.sequence.to_string());

    let url = app.query.url(&format!("/points/{}", written.id));
    let read = app
        .http
        .get(&url)
        .header("consistency-token", &token)
        .send();
    let resume = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        start_projector(&app.nats, &app.projector_config(2)).await
    };
    let start = Instant::now();
    let (read, projector) = tokio::join!(read, resume);
    app.projector = projector;
    let read = read.unwrap();
    assert_eq!(read.status(), 200, "the first read already sees the write");
    assert!(
        start.elapsed() >= Duration::from_millis(1400),
        "it waited for the projection"
    );
    let point: PointDto = read.json().await.unwrap();
    assert_eq!(point.name, "Sydney");

    // The same through the query parameter, on a list with other parameters.
    let listed: Vec<PointDto> = app
        .http
        .get(
            app.query
                .url(&format!("/points?limit=5&consistency_token={token}")),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn with_the_projector_stopped_a_read_with_the_token_times_out_with_503() {
    let mut app = spawn_app().await;
    app.projector.stop().await;
    let written: Accepted = app
        .post_point(&json!({"longitude": -70.64827, "latitude": -33.45694, "name": "Santiago"}))
        .await
        .json()
        .await
        .unwrap();
    let start = Instant::now();
    let read = app
        .http
        .get(app.query.url(&format!("/points/{}", written.id)))
        .header("consistency-token", written.sequence.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 503);
    assert!(read.headers().contains_key("retry-after"));
    assert!(
        start.elapsed() >= Duration::from_secs(4),
        "the read waited its bound first"
    );
    let problem: Value = read.json().await.unwrap();
    assert_eq!(problem["type"], "urn:geoledger:problem:not-yet-projected");
    assert_eq!(problem["consistency_token"], written.sequence);

    let bad = app
        .http
        .get(app.query.url("/points?consistency_token=soon"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}
