//! Replay tooling: `rebuild` builds a read model identical to the live one beside it and swaps
//! it in while readers read and the live projector projects; `replay --as-of` gives the points
//! as they were at a moment; `status` says where everything is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use geoledger_common::event::{EventEnvelope, Metadata, PointEvent, PointMoved, PointRenamed};
use geoledger_common::point::{NewPoint, PointName};

use crate::helpers::{Accepted, Place, PointDto, TestApp, sample_places, spawn_app};

/// A small deterministic generator, so a failing history can be replayed exactly.
struct Dice(u64);

impl Dice {
    fn next(&mut self, below: usize) -> usize {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % below
    }
}

/// Publishes, straight to the test's stream, a creation for each place and then `changes`
/// renames, moves and deletes (about 1 in 20) of random live points, each with the right
/// version; a few creations are published twice, as a republishing tool would. Returns the
/// last sequence.
async fn publish_history(app: &TestApp, places: &[Place], changes: usize, seed: u64) -> u64 {
    let mut dice = Dice(seed);
    let mut points: Vec<(Uuid, u64)> = Vec::with_capacity(places.len());
    let mut events: Vec<(Uuid, EventEnvelope)> = Vec::with_capacity(places.len() + changes);
    for place in places {
        let point = NewPoint::from_json(place.to_json().to_string().as_bytes())
            .expect("a sample place is a valid point");
        let id = Uuid::now_v7();
        let envelope = EventEnvelope::point_created(id, &point, Metadata::default());
        if dice.next(100) == 0 {
            events.push((id, envelope.clone()));
        }
        events.push((id, envelope));
        points.push((id, 1));
    }
    let mut made = 0;
    while made < changes && !points.is_empty() {
        let i = dice.next(points.len());
        let other = &places[dice.next(places.len())];
        let (id, version) = points[i];
        let event = match dice.next(20) {
            0 => PointEvent::Deleted,
            1..=9 => PointEvent::Renamed(PointRenamed {
                name: PointName::parse(&format!("{} {made}", other.name)).unwrap_or_else(|_| {
                    PointName::parse(&other.name).expect("a sample name is valid")
                }),
            }),
            _ => PointEvent::Moved(PointMoved {
                longitude: other.longitude.try_into().expect("a sample longitude"),
                latitude: other.latitude.try_into().expect("a sample latitude"),
            }),
        };
        let deleted = event == PointEvent::Deleted;
        events.push((
            id,
            EventEnvelope::new(&event, id, version + 1, Metadata::default()),
        ));
        if deleted {
            points.swap_remove(i);
        } else {
            points[i].1 += 1;
        }
        made += 1;
    }
    let spec = app.spec();
    let mut last = 0;
    for chunk in events.chunks(500) {
        let mut acks = Vec::with_capacity(chunk.len());
        for (id, envelope) in chunk {
            acks.push(
                app.js
                    .publish(spec.subject_for(*id), envelope.to_vec().into())
                    .await
                    .expect("the event is sent"),
            );
        }
        for ack in acks {
            last = ack.await.expect("JetStream stores the event").sequence;
        }
    }
    last
}

/// A digest of every row of the read model's tables, in id order, every column included.
async fn checksum(app: &TestApp) -> (i64, String, String) {
    let (rows, points): (i64, String) = sqlx::query_as(
        "SELECT count(*), md5(COALESCE(string_agg(concat_ws('|', id, name,
                    encode(ST_AsEWKB(geom), 'hex'), properties::text, version, last_seq,
                    created_at, updated_at), E'\\n' ORDER BY id), ''))
         FROM points",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the points are readable");
    let tombstones: String = sqlx::query_scalar(
        "SELECT md5(COALESCE(string_agg(concat_ws('|', id, version, deleted_at), E'\\n'
                    ORDER BY id), ''))
         FROM point_tombstones",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the tombstones are readable");
    (rows, points, tombstones)
}

/// The length, in planar degrees, of the path through every point of `points` in the order
/// its rows are stored: short when neighbours share pages, long when rows lie in arrival order.
async fn storage_tour(app: &TestApp) -> f64 {
    sqlx::query_scalar(
        "SELECT sum(ST_Distance(geom, before)) FROM \
         (SELECT geom, lag(geom) OVER (ORDER BY ctid) AS before FROM points) AS walk",
    )
    .fetch_one(&app.pool)
    .await
    .expect("points can be walked in storage order")
}

fn rebuild_args(batch_size: usize) -> projector::RebuildArgs {
    projector::RebuildArgs {
        batch_size,
        restart: false,
    }
}

#[tokio::test]
async fn a_rebuild_after_10000_events_is_identical_to_the_live_projection_and_stays_live() {
    let app = spawn_app().await;
    let places = sample_places();
    let last = publish_history(&app, &places, 9_000, 0x5eed).await;
    assert!(last >= 10_000, "10,000 events or more: {last}");
    app.wait_projected(last).await;
    let live = checksum(&app).await;
    assert!(live.0 > 500, "most points survive the deletes: {}", live.0);
    let arrival_tour = storage_tour(&app).await;

    let config = app.owner_projector_config(4);
    let report = projector::rebuild(&config, &rebuild_args(1_000), std::future::pending())
        .await
        .expect("the rebuild runs to its swap");
    assert!(report.swapped);
    assert_eq!(report.resumed_from, 0);
    assert_eq!(report.events, last, "every event was read once");
    assert_eq!(report.checkpoint, last);
    assert_eq!(report.points, live.0 as u64);
    assert_eq!(
        checksum(&app).await,
        live,
        "the rebuilt tables are the live ones, row for row"
    );
    let leftovers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_rebuild' AND relkind IN ('r', 'i')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        leftovers, 0,
        "the shadow tables and indexes took the live names"
    );
    let geom_target: i32 = sqlx::query_scalar(
        "SELECT attstattarget::int4 FROM pg_attribute \
         WHERE attrelid = 'points'::regclass AND attname = 'geom'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        geom_target, 20,
        "the rebuilt geom keeps its statistics target"
    );
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'points' ORDER BY 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "points_geog_gist",
            "points_geom_gist",
            "points_geom_newest",
            "points_pkey",
            "points_updated_at"
        ]
    );
    // The rows were rewritten in the spatial index's order: walked in storage order, the
    // rebuilt table hops between neighbours, where the live one jumped around the world.
    let clustered_on: Option<String> = sqlx::query_scalar(
        "SELECT i.indexrelid::regclass::text FROM pg_index i \
         WHERE i.indrelid = 'points'::regclass AND i.indisclustered",
    )
    .fetch_optional(&app.pool)
    .await
    .unwrap();
    assert_eq!(clustered_on.as_deref(), Some(projector::CLUSTER_INDEX));
    let rebuilt_tour = storage_tour(&app).await;
    assert!(
        rebuilt_tour * 4.0 < arrival_tour,
        "storage order follows space: {rebuilt_tour:.0}° against {arrival_tour:.0}° in \
         arrival order"
    );

    // The live projector carries on into the new tables, and query-api reads them.
    let accepted: Accepted = app
        .post_point(&json!({"longitude": 18.06858, "latitude": 59.32938, "name": "Stockholm"}))
        .await
        .json()
        .await
        .unwrap();
    app.wait_projected(accepted.sequence).await;
    let point: PointDto = app
        .get_point(&app.query.url(""), accepted.id)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(point.name, "Stockholm");

    let status = projector::status(&config).await.expect("status answers");
    assert_eq!(status.stream.last_seq, accepted.sequence);
    let points = status
        .projections
        .iter()
        .find(|p| p.projection == "points")
        .expect("the live projection is listed");
    assert_eq!(points.checkpoint, accepted.sequence);
    assert_eq!(points.pending, 0);
    assert_eq!(status.projections.len(), 1, "no shadow is left behind");
}

#[tokio::test]
async fn a_reader_looping_on_get_points_during_a_rebuild_never_sees_an_error_or_a_partial_table() {
    let app = spawn_app().await;
    let places = sample_places();
    let last = publish_history(&app, &places, 4_000, 0xfeed).await;
    app.wait_projected(last).await;
    let expected: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM points ORDER BY id DESC")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(expected.len() < 1000, "one page holds them all");

    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (done, reads) = (Arc::clone(&done), Arc::clone(&reads));
        let (http, url) = (app.http.clone(), app.query.url("/points?limit=1000"));
        let expected = expected.clone();
        tokio::spawn(async move {
            // Runs until a little after the swap, so reads on the new tables are seen too.
            let mut after_done = 0;
            while after_done < 20 {
                if done.load(Ordering::Relaxed) {
                    after_done += 1;
                }
                let response = http.get(&url).send().await.expect("query-api answers");
                assert_eq!(response.status(), 200, "{:?}", response.text().await);
                let page: Vec<PointDto> = response.json().await.expect("a JSON page");
                let ids: Vec<Uuid> = page.into_iter().map(|p| p.id).collect();
                assert_eq!(ids, expected, "every read sees the whole projection");
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Small batches make the rebuild take long enough for many reads to overlap it.
    let report = projector::rebuild(
        &app.owner_projector_config(4),
        &rebuild_args(100),
        std::future::pending(),
    )
    .await
    .expect("the rebuild runs to its swap");
    let during = reads.load(Ordering::Relaxed);
    done.store(true, Ordering::Relaxed);
    reader.await.expect("the reader saw nothing wrong");
    assert!(report.swapped);
    assert!(during >= 10, "reads overlapped the rebuild: {during}");
}

#[tokio::test]
async fn a_replay_as_of_a_time_between_two_moves_gives_the_earlier_position() {
    let app = spawn_app().await;
    let patch = |id: Uuid, body: serde_json::Value| {
        let request = app
            .http
            .patch(app.command.url(&format!("/points/{id}")))
            .json(&body);
        async move {
            let response = request.send().await.expect("command-api answers");
            assert_eq!(response.status(), 202);
            response
                .json::<Accepted>()
                .await
                .expect("an accepted change")
        }
    };
    let created: Accepted = app
        .post_point(&json!({"longitude": 4.89973, "latitude": 52.37403, "name": "Amsterdam"}))
        .await
        .json()
        .await
        .unwrap();
    let first = patch(
        created.id,
        json!({"longitude": 4.47917, "latitude": 51.9225}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = patch(
        created.id,
        json!({"longitude": 5.12142, "latitude": 52.09083}),
    )
    .await;
    assert!(second.sequence > first.sequence);

    let config = app.owner_projector_config(4);
    let replay = |table: &str, to_seq: Option<u64>, as_of| projector::ReplayArgs {
        into: table.to_owned(),
        from_seq: 1,
        to_seq,
        as_of,
        replace: false,
        batch_size: 100,
    };
    let position = |table: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_as::<_, (f64, f64, i64)>(&format!(
                "SELECT ST_X(geom), ST_Y(geom), version FROM {table} WHERE id = $1"
            ))
            .bind(created.id)
            .fetch_one(&pool)
            .await
            .expect("the replayed point is there")
        }
    };

    let report = projector::replay(
        &config,
        &replay("amsterdam_between", None, Some(between)),
        std::future::pending(),
    )
    .await
    .expect("the replay runs");
    assert_eq!(report.last_seq, first.sequence);
    assert_eq!(report.points, 1);
    assert_eq!(
        position("amsterdam_between").await,
        (4.47917, 51.9225, 2),
        "Rotterdam, where the first move put it"
    );

    projector::replay(
        &config,
        &replay("amsterdam_created", Some(created.sequence), None),
        std::future::pending(),
    )
    .await
    .expect("the replay runs");
    assert_eq!(position("amsterdam_created").await, (4.89973, 52.37403, 1));

    projector::replay(
        &config,
        &replay("amsterdam_now", None, None),
        std::future::pending(),
    )
    .await
    .expect("the replay runs");
    assert_eq!(position("amsterdam_now").await, (5.12142, 52.09083, 3));

    let again = projector::replay(
        &config,
        &replay("amsterdam_now", None, None),
        std::future::pending(),
    )
    .await;
    assert!(again.is_err(), "an existing table is kept unless --replace");
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM points")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    app.wait_projected(second.sequence).await;
    assert!(live <= 1, "replays leave the read model alone");
}

#[tokio::test]
async fn points_written_while_a_rebuild_runs_are_all_in_the_tables_it_swaps_in() {
    let app = spawn_app().await;
    let places = sample_places();
    let last = publish_history(&app, &places[..500], 3_000, 0xbead).await;
    app.wait_projected(last).await;

    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = Arc::clone(&done);
        let (http, url) = (app.http.clone(), app.command.url("/point"));
        let places = places[500..].to_vec();
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            // Keeps writing a little after the swap, so both sides of it are covered.
            let mut after_done = 0;
            for place in &places {
                if done.load(Ordering::Relaxed) {
                    after_done += 1;
                    if after_done > 20 {
                        break;
                    }
                }
                let response = http
                    .post(&url)
                    .json(&place.to_json())
                    .send()
                    .await
                    .expect("command-api answers");
                assert_eq!(response.status(), 202);
                accepted.push(response.json::<Accepted>().await.expect("an id"));
            }
            accepted
        })
    };
    let config = app.owner_projector_config(4);
    let report = projector::rebuild(&config, &rebuild_args(100), std::future::pending())
        .await
        .expect("the rebuild runs to its swap");
    done.store(true, Ordering::Relaxed);
    let accepted = writer.await.expect("the writer ran");
    assert!(report.swapped);
    let newest = accepted
        .iter()
        .map(|a| a.sequence)
        .max()
        .expect("writes were made");
    assert!(
        newest > report.checkpoint,
        "some writes came after the swap"
    );
    app.wait_projected(newest).await;

    let ids: Vec<Uuid> = accepted.iter().map(|a| a.id).collect();
    let found: i64 = sqlx::query_scalar("SELECT count(*) FROM points WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(found, ids.len() as i64, "no write was lost across the swap");

    // A replay of the whole stream is what the live tables must now hold.
    projector::replay(
        &config,
        &projector::ReplayArgs {
            into: "everything".to_owned(),
            from_seq: 1,
            to_seq: Some(newest),
            as_of: None,
            replace: false,
            batch_size: 1_000,
        },
        std::future::pending(),
    )
    .await
    .expect("the replay runs");
    let differing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
             (SELECT id, name, geom, properties, version, last_seq, created_at, updated_at
              FROM points EXCEPT
              SELECT id, name, geom, properties, version, last_seq, created_at, updated_at
              FROM everything)
             UNION ALL
             (SELECT id, name, geom, properties, version, last_seq, created_at, updated_at
              FROM everything EXCEPT
              SELECT id, name, geom, properties, version, last_seq, created_at, updated_at
              FROM points)) d",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(differing, 0, "the live tables equal a replay of the stream");
}
