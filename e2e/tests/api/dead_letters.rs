//! A message the projector cannot read goes to the dead-letter stream without stalling other
//! points; later events of its point are parked behind it, in order, until re-driven.

use serde_json::json;
use uuid::Uuid;

use geoledger_common::event::{EventEnvelope, Metadata};
use geoledger_common::point::NewPoint;

use crate::helpers::{TestApp, spawn_app};

fn creation(point: Uuid, name: &str) -> Vec<u8> {
    let body = json!({"longitude": 10.75, "latitude": 59.91, "name": name}).to_string();
    let point_data = NewPoint::from_json(body.as_bytes()).expect("a valid point");
    EventEnvelope::point_created(point, &point_data, Metadata::default()).to_vec()
}

async fn rows(app: &TestApp, id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM points WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("the test database answers")
}

#[tokio::test]
async fn garbage_is_dead_lettered_its_point_parked_and_other_points_carry_on() {
    let app = spawn_app().await;
    let poisoned = Uuid::now_v7();
    let healthy = Uuid::now_v7();

    app.publish_raw(poisoned, b"{\"this is\": not an event".to_vec())
        .await;
    app.publish_raw(healthy, creation(healthy, "Oslo")).await;
    let last = app
        .publish_raw(poisoned, creation(poisoned, "Bergen"))
        .await;
    app.wait_projected(last).await;

    assert_eq!(
        rows(&app, healthy).await,
        1,
        "another point's event is not blocked"
    );
    assert_eq!(
        rows(&app, poisoned).await,
        0,
        "the later event of the point is parked"
    );
    let letters = projector::dead_letters(&app.owner_projector_config(2))
        .await
        .unwrap();
    assert_eq!(letters.len(), 2);
    assert!(
        letters[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("not an event envelope"))
    );
    assert!(
        letters[1]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("parked"))
    );
    assert_eq!(letters[0].original_sequence, Some(1));
    let status: serde_json::Value = app
        .http
        .get(app.projector.url("/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["dead_lettered_events"], 2);

    // Without permission to skip, the unreadable letter blocks the re-drive and nothing moves.
    assert!(
        projector::redrive(&app.owner_projector_config(2), poisoned, false)
            .await
            .is_err()
    );
    assert_eq!(rows(&app, poisoned).await, 0);

    let applied = projector::redrive(&app.owner_projector_config(2), poisoned, true)
        .await
        .unwrap();
    assert_eq!(applied, 1);
    assert_eq!(
        rows(&app, poisoned).await,
        1,
        "the parked creation is applied"
    );
    assert!(
        projector::dead_letters(&app.owner_projector_config(2))
            .await
            .unwrap()
            .is_empty()
    );

    // Unparked, the point's next events flow normally again.
    let rename = EventEnvelope::new(
        &geoledger_common::event::PointEvent::Renamed(geoledger_common::event::PointRenamed {
            name: geoledger_common::point::PointName::parse("Bjørgvin").unwrap(),
        }),
        poisoned,
        2,
        Metadata::default(),
    );
    let last = app.publish_raw(poisoned, rename.to_vec()).await;
    app.wait_projected(last).await;
    let name: String = sqlx::query_scalar("SELECT name FROM points WHERE id = $1")
        .bind(poisoned)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(name, "Bjørgvin");
}

/// A creation whose properties hold U+0000 is valid JSON that PostgreSQL's `jsonb` cannot
/// store: command-api refuses it, and one already in the stream (an older build's, another
/// tool's) is dead-lettered instead of failing the projector's batch forever.
#[tokio::test]
async fn a_creation_the_read_model_cannot_store_is_refused_and_dead_lettered() {
    let app = spawn_app().await;
    let body = json!({"longitude": 10.75, "latitude": 59.91, "name": "Oslo",
                      "properties": {"note": "a\u{0}b"}});
    let refused = app.post_point(&body).await;
    assert_eq!(refused.status(), 400);
    assert_eq!(app.stream_messages().await, 0, "nothing is published");

    let poisoned = Uuid::now_v7();
    let mut stored: serde_json::Value =
        serde_json::from_slice(&creation(poisoned, "Bergen")).unwrap();
    stored["data"]["properties"] = json!({"note": "a\u{0}b"});
    app.publish_raw(poisoned, serde_json::to_vec(&stored).unwrap())
        .await;
    let healthy = Uuid::now_v7();
    let last = app.publish_raw(healthy, creation(healthy, "Oslo")).await;

    app.wait_projected(last).await;
    assert_eq!(rows(&app, healthy).await, 1, "the stream moves on past it");
    assert_eq!(rows(&app, poisoned).await, 0);
    let letters = projector::dead_letters(&app.owner_projector_config(2))
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
}

/// An envelope whose version the read model cannot hold (0, beyond a `bigint`) is
/// dead-lettered; before, the projector retried its batch forever on the check constraint.
#[tokio::test]
async fn an_event_with_a_version_out_of_range_is_dead_lettered() {
    let app = spawn_app().await;
    for version in [json!(0), json!(u64::MAX)] {
        let poisoned = Uuid::now_v7();
        let mut stored: serde_json::Value =
            serde_json::from_slice(&creation(poisoned, "Bergen")).unwrap();
        stored["aggregate_version"] = version;
        app.publish_raw(poisoned, serde_json::to_vec(&stored).unwrap())
            .await;
    }
    let healthy = Uuid::now_v7();
    let last = app.publish_raw(healthy, creation(healthy, "Oslo")).await;

    app.wait_projected(last).await;
    assert_eq!(
        rows(&app, healthy).await,
        1,
        "the stream moves on past them"
    );
    let letters = projector::dead_letters(&app.owner_projector_config(2))
        .await
        .unwrap();
    assert_eq!(letters.len(), 2);
}
