//! Generated messages on the points' subjects, as another tool or a damaged producer might
//! publish them: valid events of every type, and events with bits flipped, cut short or a
//! member replaced. Whatever arrives, the projector must not stall or crash: it applies what
//! it can read and dead-letters the rest, and the next healthy event is projected.

use std::sync::atomic::Ordering;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};
use uuid::Uuid;

use geoledger_common::event::{EventEnvelope, Metadata, PointEvent, PointMoved, PointRenamed};
use geoledger_common::point::{Latitude, Longitude, NewPoint, PointName};

use super::{block_on, runner};
use crate::helpers::{TestApp, spawn_app};

/// How a valid event is damaged before it is published.
#[derive(Debug, Clone)]
enum Damage {
    None,
    FlipBit(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
    Replace(&'static [&'static str], Value),
}

fn damage() -> impl Strategy<Value = Damage> {
    let odd = prop_oneof![
        Just(Value::Null),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(u64::MAX)),
        Just(json!(9_223_372_036_854_775_808_u64)),
        Just(json!(1e308)),
        Just(json!("")),
        Just(json!("PointCreated")),
        Just(json!("PointDeleted")),
        Just(json!("0000-01-01T00:00:00Z")),
        Just(json!("9999-12-31T23:59:59Z")),
        Just(json!("+262142-12-31T23:59:59Z")),
        Just(json!("-262143-01-01T00:00:00Z")),
        Just(json!({})),
        Just(json!({"\u{0}": "\u{0}"})),
        Just(json!(180.000_000_000_000_03)),
        any::<i64>().prop_map(Value::from),
    ];
    let path = prop::sample::select(vec![
        &["schema_version"][..],
        &["event_type"],
        &["aggregate_id"],
        &["aggregate_version"],
        &["occurred_at"],
        &["metadata"],
        &["data"],
        &["data", "name"],
        &["data", "longitude"],
        &["data", "properties"],
    ]);
    prop_oneof![
        3 => Just(Damage::None),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Damage::FlipBit(i, b)),
        1 => any::<prop::sample::Index>().prop_map(Damage::Truncate),
        3 => (path, odd).prop_map(|(path, value)| Damage::Replace(path, value)),
    ]
}

/// One message: which of the case's points it concerns, what it says, how it is damaged.
#[derive(Debug, Clone)]
struct Message {
    point: usize,
    kind: u8,
    version: u64,
    damage: Damage,
}

fn message() -> impl Strategy<Value = Message> {
    (0_usize..3, 0_u8..4, 1_u64..4, damage()).prop_map(|(point, kind, version, damage)| Message {
        point,
        kind,
        version,
        damage,
    })
}

fn envelope(point: Uuid, kind: u8, version: u64) -> EventEnvelope {
    let name = PointName::parse("Ålesund").expect("a valid name");
    let event = match kind {
        0 => {
            let body = json!({"longitude": 6.15, "latitude": 62.47, "name": "Ålesund"});
            let created = NewPoint::from_json(body.to_string().as_bytes()).expect("valid");
            return EventEnvelope::point_created(point, &created, Metadata::default());
        }
        1 => PointEvent::Renamed(PointRenamed { name }),
        2 => PointEvent::Moved(PointMoved {
            longitude: Longitude::try_from(6.2).expect("in range"),
            latitude: Latitude::try_from(62.5).expect("in range"),
        }),
        _ => PointEvent::Deleted,
    };
    EventEnvelope::new(&event, point, version, Metadata::default())
}

fn payload(envelope: &EventEnvelope, damage: &Damage) -> Vec<u8> {
    let mut bytes = envelope.to_vec();
    match damage {
        Damage::None => {}
        Damage::FlipBit(at, bit) => {
            let at = at.index(bytes.len());
            bytes[at] ^= 1 << (bit % 8);
        }
        Damage::Truncate(at) => bytes.truncate(at.index(bytes.len())),
        Damage::Replace(path, value) => {
            let mut document: Value = serde_json::from_slice(&bytes).expect("an envelope");
            let (last, parents) = path.split_last().expect("a path has a member");
            let mut parent = &mut document;
            for key in parents {
                parent = &mut parent[*key];
            }
            if let Some(object) = parent.as_object_mut() {
                object.insert((*last).to_owned(), value.clone());
            }
            bytes = serde_json::to_vec(&document).expect("JSON serialises");
        }
    }
    bytes
}

async fn check(app: &TestApp, messages: &[Message]) -> Result<(), TestCaseError> {
    let points = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    for message in messages {
        let point = points[message.point];
        let bytes = payload(
            &envelope(point, message.kind, message.version),
            &message.damage,
        );
        app.publish_raw(point, bytes).await;
    }
    // A healthy point after them must be projected: nothing before it may hold the stream up.
    let healthy = Uuid::now_v7();
    let last = app
        .publish_raw(healthy, envelope(healthy, 0, 1).to_vec())
        .await;
    app.try_wait_projected(last, Duration::from_secs(10))
        .await
        .map_err(TestCaseError::fail)?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM points WHERE id = $1")
        .bind(healthy)
        .fetch_one(&app.pool)
        .await
        .expect("the read model answers");
    prop_assert_eq!(rows, 1, "the healthy point is projected");
    let status = app
        .http
        .get(app.projector.url("/status"))
        .send()
        .await
        .expect("the projector answers");
    prop_assert_eq!(status.status().as_u16(), 200, "the projector is healthy");
    Ok(())
}

/// Generated and damaged events never stall the projector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_generated_message_stalls_the_projector() {
    let app = spawn_app().await;
    let tried_before = super::TRIED.load(Ordering::Relaxed);
    let result = runner().run(&prop::collection::vec(message(), 1..6), |messages| {
        block_on(check(&app, &messages))
    });
    let tried = super::TRIED.load(Ordering::Relaxed) - tried_before;
    eprintln!("generated message sequences tried: {tried}");
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
