//! The projector applies every event exactly once: under load, on redelivery, across its own
//! restart and across a database outage.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt as _;
use uuid::Uuid;

use geoledger_common::event::{EventEnvelope, Metadata};
use geoledger_common::point::NewPoint;

use crate::helpers::{
    Accepted, PointDto, sample_places, scrape, spawn_app, start_projector, start_projector_with,
    value,
};

#[tokio::test]
async fn all_sample_places_are_projected_once_with_names_and_coordinates_intact() {
    let app = spawn_app().await;
    let places = sample_places();
    assert_eq!(places.len(), 1000);
    assert!(
        places.iter().any(|p| p.country == "NA"),
        "Namibia is a country, not a missing value"
    );

    let accepted: Vec<(Accepted, usize)> = futures::stream::iter(places.iter().enumerate())
        .map(|(i, place)| {
            let app = &app;
            async move {
                let response = app.post_point(&place.to_json()).await;
                assert_eq!(response.status(), 202, "{}", place.name);
                (response.json::<Accepted>().await.unwrap(), i)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let last = accepted.iter().map(|(a, _)| a.sequence).max().unwrap();
    app.wait_projected(last).await;

    let rows: Vec<(Uuid, String, f64, f64, i64)> =
        sqlx::query_as("SELECT id, name, ST_X(geom), ST_Y(geom), version FROM points")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1000);
    let by_id: HashMap<Uuid, _> = rows.into_iter().map(|r| (r.0, r)).collect();
    for (a, i) in &accepted {
        let place = &places[*i];
        let row = &by_id[&a.id];
        assert_eq!(row.1, place.name);
        assert_eq!(row.2.to_bits(), place.longitude.to_bits(), "{}", place.name);
        assert_eq!(row.3.to_bits(), place.latitude.to_bits(), "{}", place.name);
        assert_eq!(row.4, 1);
    }

    // The read API gives back the same text, including the scripts and apostrophes.
    let listed: Vec<PointDto> = app
        .http
        .get(app.query.url("/points?limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1000);
    for point in listed {
        let row = &by_id[&point.id];
        assert_eq!(point.name, row.1);
        assert_eq!(point.longitude.to_bits(), row.2.to_bits());
    }
    for tricky in ["城郊", "Nuku‘alofa", "Kakaʻako", "Sha'biyyat Milе̄hah"] {
        assert!(
            places.iter().any(|p| p.name == tricky),
            "the sample holds {tricky}"
        );
        assert!(
            by_id.values().any(|r| r.1 == tricky),
            "{tricky} is stored byte for byte"
        );
    }
}

#[tokio::test]
async fn an_event_published_twice_leaves_one_row_at_version_one() {
    let app = spawn_app().await;
    let point = NewPoint::from_json(
        r#"{"longitude": -68.30295, "latitude": -54.81084, "name": "Ushuaia"}"#.as_bytes(),
    )
    .unwrap();
    let id = Uuid::now_v7();
    let envelope = EventEnvelope::point_created(id, &point, Metadata::default());
    let subject = app.spec().subject_for(id);
    let mut last = 0;
    // Two different message ids, so JetStream stores both copies: what the projector sees
    // on a redelivery or a replay from a republishing tool.
    for _ in 0..2 {
        let ack = app
            .js
            .publish(subject.clone(), envelope.to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
        last = ack.sequence;
    }
    app.wait_projected(last).await;
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT version, last_seq FROM points WHERE id = $1")
            .bind(id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![(1, (last - 1) as i64)],
        "one row, from the first copy"
    );
}

#[tokio::test]
async fn a_restarted_projector_picks_up_exactly_where_it_stopped() {
    let mut app = spawn_app().await;
    let places = sample_places();
    let mut last = 0;
    for place in &places[..20] {
        last = app
            .post_point(&place.to_json())
            .await
            .json::<Accepted>()
            .await
            .unwrap()
            .sequence;
    }
    app.wait_projected(last).await;
    app.projector.stop().await;

    for place in &places[20..50] {
        last = app
            .post_point(&place.to_json())
            .await
            .json::<Accepted>()
            .await
            .unwrap()
            .sequence;
    }
    app.projector = start_projector(&app.nats, &app.projector_config(2)).await;
    app.wait_projected(last).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM points")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 50);
}

#[tokio::test]
async fn events_written_while_the_database_refuses_connections_are_projected_after() {
    let app = spawn_app().await;
    let database = app.database_url.rsplit('/').next().unwrap().to_owned();
    let admin = sqlx::PgPool::connect(&std::env::var("GEOLEDGER_TEST_DATABASE_URL").unwrap())
        .await
        .unwrap();

    // Cut this test's database off (the cluster is shared with other tests, so it is not
    // stopped): new connections are refused and existing ones are terminated.
    sqlx::query(&format!(
        "ALTER DATABASE {database} ALLOW_CONNECTIONS false"
    ))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&database)
        .execute(&admin)
        .await
        .unwrap();

    let places = sample_places();
    let mut last = 0;
    for place in &places[..30] {
        let response = app.post_point(&place.to_json()).await;
        assert_eq!(
            response.status(),
            202,
            "writes do not depend on the read model"
        );
        last = response.json::<Accepted>().await.unwrap().sequence;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = app
        .http
        .get(app.projector.url("/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status.status(),
        503,
        "the projector reports the database outage"
    );

    sqlx::query(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"))
        .execute(&admin)
        .await
        .unwrap();
    app.wait_projected(last).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM points")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 30);
}

#[tokio::test]
async fn each_committed_checkpoint_is_announced_to_listeners() {
    let app = spawn_app().await;
    let mut listener = sqlx::postgres::PgListener::connect(&app.database_url)
        .await
        .unwrap();
    listener
        .listen(projector::CHECKPOINT_CHANNEL)
        .await
        .unwrap();
    let accepted: Accepted = app
        .post_point(
            &serde_json::json!({"longitude": 24.93545, "latitude": 60.16952, "name": "Helsinki"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let notification = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification arrives")
        .unwrap();
    let announced: u64 = notification.payload().parse().unwrap();
    assert_eq!(announced, accepted.sequence);
    // The announcement comes after the commit: the row is visible to the listener's reader.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM points WHERE last_seq <= $1")
        .bind(announced as i64)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn a_second_projector_stands_by_and_takes_over_without_losing_events() {
    let mut app = spawn_app().await;
    let mut standby = start_projector(&app.nats, &app.projector_config(2)).await;
    let places = sample_places();
    let mut last = 0;
    for place in &places[..100] {
        last = app
            .post_point(&place.to_json())
            .await
            .json::<Accepted>()
            .await
            .unwrap()
            .sequence;
    }
    app.wait_projected(last).await;

    app.projector.stop().await;
    for place in &places[100..150] {
        last = app
            .post_point(&place.to_json())
            .await
            .json::<Accepted>()
            .await
            .unwrap()
            .sequence;
    }
    app.wait_projected(last).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM points")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        rows, 150,
        "the standby took over and every event was applied once"
    );
    standby.stop().await;
}

/// The projector looks each batch's points up with a prepared `id = ANY($1)`. After large
/// first batches on a new, never analysed read model (a stack's places, a backlog after an
/// outage), PostgreSQL used to settle on one generic plan for it, a sequential scan of the
/// then small table, and keep it for every later batch while the table grew. The projector's
/// sessions plan each run for the table as it is, so later batches use the primary key.
#[tokio::test]
async fn batches_after_large_first_ones_look_points_up_by_the_primary_key() {
    let mut app = spawn_app().await;
    app.projector.stop().await;
    let places = crate::helpers::all_places();
    let (backlog, singles) = (6_000, 150);
    let last = futures::stream::iter(&places[..backlog])
        .map(|place| {
            let app = &app;
            async move { app.create_point(&place.to_json()).await.sequence }
        })
        .buffer_unordered(32)
        .fold(0, |last, sequence| async move { last.max(sequence) })
        .await;
    // Drained from one backlog, the batches are the projector's largest (500 events). For
    // those, reading the small table whole can be the right plan.
    app.projector = start_projector(&app.nats, &app.projector_config(2)).await;
    app.wait_projected(last).await;
    let after_backlog = table_scans(&app, backlog).await;

    for place in &places[backlog..backlog + singles] {
        let sequence = app.create_point(&place.to_json()).await.sequence;
        app.wait_projected(sequence).await;
    }
    let scans = table_scans(&app, backlog + singles).await - after_backlog;
    assert!(
        scans < 5,
        "{scans} scans of the whole table for {singles} batches of one point"
    );
}

/// Sequential scans of `points` so far, once the statistics count `inserted` rows: each
/// session hands its counters over within about a second of going idle.
async fn table_scans(app: &crate::helpers::TestApp, inserted: usize) -> i64 {
    let inserted = i64::try_from(inserted).expect("a test's count fits a bigint");
    for _ in 0..100 {
        let (counted, scans): (i64, i64) = sqlx::query_as(
            "SELECT n_tup_ins, seq_scan FROM pg_stat_user_tables WHERE relname = 'points'",
        )
        .fetch_one(&app.pool)
        .await
        .expect("the table statistics are readable");
        if counted >= inserted {
            return scans;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the statistics never counted {inserted} inserts into points");
}

#[tokio::test]
async fn a_batch_waits_its_linger_for_the_events_close_behind_its_first() {
    let mut app = spawn_app().await;
    app.projector.stop().await;
    let linger = Duration::from_millis(600);
    let mut config = projector::Config::new(
        app.nats.clone(),
        app.projector_config(2),
        crate::helpers::loopback(),
    );
    config.batch_linger_ms = u64::try_from(linger.as_millis()).unwrap();
    app.projector = start_projector_with(config).await;
    let metrics = app.projector.url("/metrics");
    let batches = async || {
        value(
            &scrape(&app.http, &metrics).await,
            "geoledger_projector_batch_size_count",
            &[],
        )
        .unwrap_or(0.0)
    };
    let before = batches().await;

    // The second write comes well inside the first one's linger: one batch holds both.
    let places = sample_places();
    let first = app.create_point(&places[0].to_json()).await;
    tokio::time::sleep(linger / 4).await;
    let second = app.create_point(&places[1].to_json()).await;
    app.wait_projected(second.sequence).await;
    assert!(second.sequence > first.sequence);
    let committed = batches().await - before;
    assert!(
        (committed - 1.0).abs() < 0.5,
        "both events were applied in a single transaction, not {committed}"
    );
}
