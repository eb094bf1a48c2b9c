//! `Idempotency-Key` makes a retried write safe.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Accepted, Options, spawn_app, spawn_app_with};

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

#[tokio::test]
async fn a_retry_after_the_duplicate_window_still_gets_the_original_point() {
    let app = spawn_app_with(Options {
        duplicate_window_secs: Some(1),
        ..Options::default()
    })
    .await;
    let body = json!({"longitude": -149.5585, "latitude": -17.53733, "name": "Papeete"});
    let post = || {
        app.http
            .post(app.command.url("/point"))
            .header("idempotency-key", "retry-after-the-window")
            .json(&body)
            .send()
    };
    let first: Accepted = post().await.unwrap().json().await.unwrap();
    // Past the window JetStream alone would store the retry as a new event.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let retry = post().await.unwrap();
    assert_eq!(retry.status(), 202);
    assert!(retry.headers().contains_key("idempotent-replayed"));
    let retry: Accepted = retry.json().await.unwrap();
    assert_eq!((retry.id, retry.sequence), (first.id, first.sequence));
    assert_eq!(app.stream_messages().await, 1, "nothing new was stored");
}

#[tokio::test]
async fn many_concurrent_requests_with_one_key_store_one_point() {
    let app = spawn_app().await;
    let body = json!({"longitude": 139.69171, "latitude": 35.6895, "name": "Tokyo"});
    let answers = futures::future::join_all((0..20).map(|_| {
        app.http
            .post(app.command.url("/point"))
            .header("idempotency-key", "tokyo-once")
            .json(&body)
            .send()
    }))
    .await;
    let mut ids = std::collections::HashSet::new();
    for answer in answers {
        let answer = answer.unwrap();
        match answer.status().as_u16() {
            202 => {
                ids.insert(answer.json::<Accepted>().await.unwrap().id);
            }
            409 => assert!(answer.headers().contains_key("retry-after")),
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ids.len(), 1, "every accepted answer names the same point");
    assert_eq!(app.stream_messages().await, 1);
}

#[tokio::test]
async fn a_rename_retried_after_the_duplicate_window_is_not_applied_twice() {
    let app = spawn_app_with(Options {
        duplicate_window_secs: Some(1),
        ..Options::default()
    })
    .await;
    let created: Accepted = app
        .post_point(&json!({"longitude": 30.52, "latitude": 50.45, "name": "Kiev"}))
        .await
        .json()
        .await
        .unwrap();
    let rename = || {
        app.http
            .patch(app.command.url(&format!("/points/{}", created.id)))
            .header("idempotency-key", "rename-kyiv")
            .json(&json!({"name": "Kyiv"}))
            .send()
    };
    let first: Accepted = rename().await.unwrap().json().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let retry = rename().await.unwrap();
    assert_eq!(retry.status(), 202);
    assert!(retry.headers().contains_key("idempotent-replayed"));
    let retry: Accepted = retry.json().await.unwrap();
    assert_eq!((retry.sequence, retry.version), (first.sequence, 2));
    assert_eq!(
        app.stream_messages().await,
        2,
        "the creation and one rename"
    );
}

/// A batch sent again under its key with another body at some place is not answered with the
/// first batch's point there: that point holds another body.
#[tokio::test]
async fn a_batch_key_reused_with_another_item_refuses_that_item() {
    let app = spawn_app().await;
    let key = uuid::Uuid::new_v4().to_string();
    let send = |items: serde_json::Value| {
        app.http
            .post(app.command.url("/points"))
            .header("idempotency-key", &key)
            .json(&items)
            .send()
    };
    let oslo = json!({"longitude": 10.75, "latitude": 59.91, "name": "Oslo"});
    let bergen = json!({"longitude": 5.32, "latitude": 60.39, "name": "Bergen"});
    let tromso = json!({"longitude": 18.96, "latitude": 69.65, "name": "Tromsø"});

    let first = send(json!([oslo, bergen])).await.unwrap();
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await.unwrap();

    // Same first item, another second one.
    let second = send(json!([oslo, tromso])).await.unwrap();
    assert_eq!(second.status(), 202, "the first item is still a replay");
    let second: serde_json::Value = second.json().await.unwrap();
    assert_eq!(second["items"][0]["id"], first["items"][0]["id"]);
    assert_eq!(second["items"][1]["errors"][0]["field"], "Idempotency-Key");
    assert!(second["items"][1].get("id").is_none(), "{second}");

    // Nothing of it the same: the whole batch is refused as a reused key.
    let third = send(json!([tromso])).await.unwrap();
    assert_eq!(third.status(), 422);
    let problem: serde_json::Value = third.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "urn:geoledger:problem:idempotency-key-reused"
    );
    assert_eq!(
        app.stream_messages().await,
        2,
        "no event beyond the first batch's"
    );
}
