//! `Idempotency-Key` makes a retried write safe.

use serde_json::json;

use crate::helpers::{Accepted, spawn_app};

#[tokio::test]
async fn a_retry_with_the_same_key_returns_the_same_point_and_stores_one_event() {
    let app = spawn_app().await;
    let body = json!({"longitude": 174.77557, "latitude": -41.28664, "name": "Wellington"});
    let key = uuid::Uuid::new_v4().to_string();

    let mut answers = Vec::new();
    for _ in 0..2 {
        let response = app
            .http
            .post(app.command.url("/point"))
            .header("idempotency-key", &key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let replayed = response.headers().get("idempotent-replayed").is_some();
        answers.push((response.json::<Accepted>().await.unwrap(), replayed));
    }
    let (first, first_replayed) = &answers[0];
    let (second, second_replayed) = &answers[1];
    assert_eq!(first.id, second.id);
    assert_eq!(first.sequence, second.sequence);
    assert!(!first_replayed);
    assert!(
        second_replayed,
        "the retry is marked as answered from the first attempt"
    );
    assert_eq!(app.stream_messages().await, 1);

    app.wait_projected(first.sequence).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM points")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn reusing_a_key_for_a_different_write_is_refused() {
    let app = spawn_app().await;
    let key = "order-7781";
    let post = |name: &'static str| {
        app.http
            .post(app.command.url("/point"))
            .header("idempotency-key", key)
            .json(&json!({"longitude": 10.0, "latitude": 10.0, "name": name}))
            .send()
    };
    assert_eq!(post("first").await.unwrap().status(), 202);
    let second = post("second").await.unwrap();
    assert_eq!(second.status(), 422);
    assert_eq!(second.headers()["content-type"], "application/problem+json");
    assert_eq!(app.stream_messages().await, 1);
}

#[tokio::test]
async fn writes_without_a_key_are_distinct_points() {
    let app = spawn_app().await;
    let body = json!({"longitude": 10.0, "latitude": 10.0, "name": "twin"});
    let a: Accepted = app.post_point(&body).await.json().await.unwrap();
    let b: Accepted = app.post_point(&body).await.json().await.unwrap();
    assert_ne!(a.id, b.id, "two places may share a name and coordinates");
    assert_eq!(app.stream_messages().await, 2);
}
