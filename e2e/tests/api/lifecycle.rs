//! A point's whole life: created, renamed, moved, deleted, with its history read from the
//! stream; optimistic concurrency through `If-Match`; batches; old event versions.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use geoledger_common::event::{EventEnvelope, Metadata, PointEvent};

use crate::helpers::{Accepted, Place, PointDto, TestApp, sample_places, spawn_app};

async fn patch(app: &TestApp, id: Uuid, body: Value, if_match: Option<&str>) -> reqwest::Response {
    let mut request = app
        .http
        .patch(app.command.url(&format!("/points/{id}")))
        .json(&body);
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    request.send().await.expect("command-api answers")
}

async fn delete(app: &TestApp, id: Uuid) -> reqwest::Response {
    app.http
        .delete(app.command.url(&format!("/points/{id}")))
        .send()
        .await
        .expect("command-api answers")
}

/// Reads the point once the projection has reached `sequence`.
async fn read_at(app: &TestApp, id: Uuid, sequence: u64) -> reqwest::Response {
    app.wait_projected(sequence).await;
    app.get_point(&app.query.url(""), id).await
}

#[tokio::test]
async fn a_point_is_created_renamed_moved_and_deleted_and_its_history_shows_each_step() {
    let app = spawn_app().await;
    let created = app
        .post_point(&json!({"longitude": 21.01178, "latitude": 52.22977, "name": "Warszawa"}))
        .await;
    assert_eq!(created.status(), 202);
    let etag = created.headers()["etag"].to_str().unwrap().to_owned();
    let created: Accepted = created.json().await.unwrap();
    assert_eq!(etag, format!("\"{}\"", created.sequence));
    let id = created.id;

    let renamed = patch(&app, id, json!({"name": "Warsaw"}), Some(&etag)).await;
    assert_eq!(renamed.status(), 202);
    let renamed: Accepted = renamed.json().await.unwrap();
    assert_eq!(renamed.version, 2);
    let point: PointDto = read_at(&app, id, renamed.sequence)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(point.name, "Warsaw");

    let moved = patch(
        &app,
        id,
        json!({"longitude": 19.93658, "latitude": 50.06143}),
        None,
    )
    .await;
    assert_eq!(moved.status(), 202);
    let moved: Accepted = moved.json().await.unwrap();
    assert_eq!(moved.version, 3);
    let point: PointDto = read_at(&app, id, moved.sequence)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((point.longitude, point.latitude), (19.93658, 50.06143));
    assert_eq!(point.name, "Warsaw", "a move keeps the name");

    let deleted = delete(&app, id).await;
    assert_eq!(deleted.status(), 202);
    let deleted: Accepted = deleted.json().await.unwrap();
    assert_eq!(deleted.version, 4);
    assert_eq!(read_at(&app, id, deleted.sequence).await.status(), 404);
    let listed: Vec<PointDto> = app
        .http
        .get(app.query.url("/points"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listed.is_empty(),
        "a deleted point disappears from lists too"
    );

    assert_eq!(
        delete(&app, id).await.status(),
        410,
        "a second delete is Gone"
    );
    assert_eq!(
        patch(&app, id, json!({"name": "x"}), None).await.status(),
        410
    );
    assert_eq!(delete(&app, Uuid::now_v7()).await.status(), 404);

    let history: Value = app
        .http
        .get(app.command.url(&format!("/points/{id}/history")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = history["events"].as_array().unwrap();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["PointCreated", "PointRenamed", "PointMoved", "PointDeleted"]
    );
    let versions: Vec<u64> = events
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4]);
    assert_eq!(events[1]["data"]["name"], "Warsaw");
    assert!(events.iter().all(|e| e["occurred_at"].is_string()));
}

#[tokio::test]
async fn of_two_racing_patches_with_the_same_if_match_exactly_one_wins() {
    let app = spawn_app().await;
    let created = app
        .post_point(&json!({"longitude": -0.1277, "latitude": 51.50735, "name": "London"}))
        .await;
    let etag = created.headers()["etag"].to_str().unwrap().to_owned();
    let created: Accepted = created.json().await.unwrap();
    let before = app.stream_messages().await;

    let (a, b) = tokio::join!(
        patch(&app, created.id, json!({"name": "Londres"}), Some(&etag)),
        patch(&app, created.id, json!({"name": "Londra"}), Some(&etag)),
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [202, 412]);
    let loser = if a.status() == 412 { a } else { b };
    assert_eq!(loser.headers()["content-type"], "application/problem+json");
    let problem: Value = loser.json().await.unwrap();
    assert_ne!(
        problem["current_etag"], etag,
        "the loser learns the version that won"
    );
    assert_eq!(
        app.stream_messages().await,
        before + 1,
        "exactly one new event"
    );

    let stale = patch(&app, created.id, json!({"name": "Lundenwic"}), Some(&etag)).await;
    assert_eq!(stale.status(), 412, "a stale If-Match stays refused");
}

#[tokio::test]
async fn patches_without_if_match_all_apply_in_order() {
    let app = spawn_app().await;
    let created: Accepted = app
        .post_point(&json!({"longitude": 2.3522, "latitude": 48.8566, "name": "Paris"}))
        .await
        .json()
        .await
        .unwrap();
    let names = ["P1", "P2", "P3", "P4", "P5", "P6"];
    let answers = futures::future::join_all(
        names
            .iter()
            .map(|n| patch(&app, created.id, json!({"name": n}), None)),
    )
    .await;
    let mut last = 0;
    for answer in answers {
        assert_eq!(answer.status(), 202);
        last = last.max(answer.json::<Accepted>().await.unwrap().sequence);
    }
    let row: (i64,) = {
        app.wait_projected(last).await;
        sqlx::query_as("SELECT version FROM points WHERE id = $1")
            .bind(created.id)
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    assert_eq!(
        row.0,
        1 + names.len() as i64,
        "every rename got its own version"
    );
}

#[tokio::test]
async fn a_batch_of_500_places_with_5_bad_items_stores_495_in_one_request() {
    let app = spawn_app().await;
    let places = sample_places();
    let mut items: Vec<Value> = places[..495].iter().map(Place::to_json).collect();
    let bad = [
        json!({"longitude": 181, "latitude": 0, "name": "too far east"}),
        json!({"longitude": 0, "latitude": -91, "name": "too far south"}),
        json!({"longitude": 0, "latitude": 0, "name": ""}),
        json!({"longitude": "0", "latitude": 0, "name": "string"}),
        json!([1, 2]),
    ];
    let bad_at = [3, 100, 250, 400, 499];
    for (at, item) in bad_at.iter().zip(bad) {
        items.insert(*at, item);
    }
    assert_eq!(items.len(), 500);

    let response = app
        .http
        .post(app.command.url("/points"))
        .json(&items)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["accepted"], 495);
    assert_eq!(answer["refused"], 5);
    let results = answer["items"].as_array().unwrap();
    assert_eq!(results.len(), 500);
    for (index, item) in results.iter().enumerate() {
        assert_eq!(item["index"], index);
        assert_eq!(
            item.get("errors").is_some(),
            bad_at.contains(&index),
            "item {index}: {item}"
        );
    }
    assert_eq!(app.stream_messages().await, 495);
    let last = results
        .iter()
        .filter_map(|i| i["sequence"].as_u64())
        .max()
        .unwrap();
    app.wait_projected(last).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM points")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 495);
}

#[tokio::test]
async fn a_geojson_feature_collection_is_a_batch_and_keeps_its_properties() {
    let app = spawn_app().await;
    let body = json!({
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [178.41667, -18.13333]},
             "properties": {"name": "Suva", "country": "FJ"}},
            {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
             "properties": {"name": "not a point"}},
        ]
    });
    let response = app
        .http
        .post(app.command.url("/points"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        (answer["accepted"].as_u64(), answer["refused"].as_u64()),
        (Some(1), Some(1))
    );
    let sequence = answer["items"][0]["sequence"].as_u64().unwrap();
    app.wait_projected(sequence).await;
    let row: (String, Value) = sqlx::query_as("SELECT name, properties FROM points")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(row, ("Suva".to_owned(), json!({"country": "FJ"})));
}

#[tokio::test]
async fn a_v1_event_and_a_v2_event_project_to_the_same_row_shape() {
    let app = spawn_app().await;
    let v1 = EventEnvelope::from_slice(include_bytes!(
        "../../../common/fixtures/point-created-v1.json"
    ))
    .unwrap();
    let mut v2 = EventEnvelope::from_slice(include_bytes!(
        "../../../common/fixtures/point-created-v2.json"
    ))
    .unwrap();
    v2.aggregate_id = Uuid::now_v7();
    assert_eq!(v1.schema_version, 1);
    assert_eq!(v2.schema_version, 2);
    let mut last = 0;
    for envelope in [&v1, &v2] {
        let subject = app.spec().subject_for(envelope.aggregate_id);
        last = app
            .js
            .publish(subject, envelope.to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap()
            .sequence;
    }
    app.wait_projected(last).await;
    let rows: Vec<(String, f64, f64, Value, i64)> = sqlx::query_as(
        "SELECT name, ST_X(geom), ST_Y(geom), properties, version FROM points ORDER BY last_seq",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], rows[1]);
    assert_eq!(rows[0].0, "Kraków");
}

#[tokio::test]
async fn a_creation_replayed_after_a_delete_does_not_bring_the_point_back() {
    let app = spawn_app().await;
    let created: Accepted = app
        .post_point(&json!({"longitude": 12.49637, "latitude": 41.90278, "name": "Roma"}))
        .await
        .json()
        .await
        .unwrap();
    let deleted: Accepted = delete(&app, created.id).await.json().await.unwrap();
    app.wait_projected(deleted.sequence).await;

    // Re-publish the original creation, as a replaying tool might.
    let history: Value = app
        .http
        .get(app.command.url(&format!("/points/{}/history", created.id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = &history["events"][0];
    let creation = EventEnvelope::new(
        &PointEvent::Created(serde_json::from_value(first["data"].clone()).unwrap()),
        created.id,
        1,
        Metadata::default(),
    );
    let subject = app.spec().subject_for(created.id);
    let again = app
        .js
        .publish(subject, creation.to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
    app.wait_projected(again.sequence).await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(200) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.get_point(&app.query.url(""), created.id).await.status(),
        404
    );
}
