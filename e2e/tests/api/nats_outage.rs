//! With NATS gone, writes answer 503 quickly; when it returns, they succeed again without a
//! restart of command-api, and the projector carries on where it stopped.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Accepted, Options, OwnNats, spawn_app_with};

#[tokio::test]
async fn writes_fail_fast_while_nats_is_down_and_recover_when_it_returns() {
    let mut nats = OwnNats::start().await;
    let app = spawn_app_with(Options {
        nats_url: Some(nats.url()),
        ..Options::default()
    })
    .await;
    let body = json!({"longitude": -43.17290, "latitude": -22.90642, "name": "Rio de Janeiro"});
    let before: Accepted = app.post_point(&body).await.json().await.unwrap();

    nats.stop().await;
    let start = Instant::now();
    let response = app.post_point(&body).await;
    assert_eq!(response.status(), 503);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the 503 took {:?}",
        start.elapsed()
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(response.headers().contains_key("retry-after"));
    // The NATS client's own words stay in the log: the body says what the client can do.
    let keyed = app
        .http
        .post(app.command.url("/point"))
        .header("idempotency-key", "nats-outage-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 503);
    for problem in [
        response.json::<Value>().await.unwrap(),
        keyed.json().await.unwrap(),
    ] {
        let detail = problem["detail"].as_str().unwrap().to_ascii_lowercase();
        assert!(
            !detail.contains("nats") && !detail.contains("error"),
            "a client library's message in the body: {detail}"
        );
    }
    let status = app
        .http
        .get(app.command.url("/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status.status(),
        503,
        "the load balancer is told to look elsewhere"
    );

    nats.resume().await;
    let start = Instant::now();
    let after = loop {
        let response = app.post_point(&body).await;
        if response.status() == 202 {
            break response.json::<Accepted>().await.unwrap();
        }
        assert_eq!(response.status(), 503);
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "writes never recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(after.sequence > before.sequence);

    app.wait_projected(after.sequence).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM points")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 2, "exactly the two acknowledged writes are projected");
}
