//! A rebuild killed with SIGKILL half-way resumes from its own checkpoint on the next run and
//! ends with the same rows as the live projection. The rebuild runs as the real binary in a
//! process of its own, so the kill is a real one: no destructor, no last commit.

use std::process::Stdio;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::process::Command;
use uuid::Uuid;

use geoledger_common::config::{DatabaseConfig, NatsConfig};
use geoledger_common::event::{EventEnvelope, Metadata, PointEvent, PointMoved, PointRenamed};
use geoledger_common::point::{NewPoint, PointName};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `make test`, which starts their servers")
    })
}

async fn fresh_database() -> (String, PgPool) {
    let admin_url = env("GEOLEDGER_TEST_DATABASE_URL");
    let admin = PgPool::connect(&admin_url).await.expect("the test cluster");
    let name = format!("t_{}", Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("the test role may create databases");
    admin.close().await;
    let (server, _) = admin_url.rsplit_once('/').expect("a database part");
    let url = format!("{server}/{name}");
    let pool = PgPoolOptions::new()
        .max_connections(3)
        .connect(&url)
        .await
        .expect("the fresh database accepts connections");
    (url, pool)
}

/// The sample places' names and coordinates.
fn sample_places() -> Vec<(String, f64, f64)> {
    let mut reader = csv::Reader::from_path(env("GEOLEDGER_SAMPLE_PLACES")).expect("the sample");
    reader
        .deserialize::<(String, f64, f64, String)>()
        .map(|row| {
            let (name, longitude, latitude, _) = row.expect("a well-formed place row");
            (name, longitude, latitude)
        })
        .collect()
}

/// Publishes a creation per place, then `changes` moves and renames in turn; returns the last
/// sequence.
async fn publish(js: &async_nats::jetstream::Context, nats: &NatsConfig, changes: usize) -> u64 {
    let spec = nats.stream_spec();
    spec.ensure(js).await.expect("the stream is declared");
    let places = sample_places();
    let mut events = Vec::new();
    let mut points = Vec::new();
    for (name, longitude, latitude) in &places {
        let body = serde_json::json!({"longitude": longitude, "latitude": latitude, "name": name});
        let point = NewPoint::from_json(body.to_string().as_bytes()).expect("a valid place");
        let id = Uuid::now_v7();
        events.push(EventEnvelope::point_created(
            id,
            &point,
            Metadata::default(),
        ));
        points.push((id, 1_u64));
    }
    for n in 0..changes {
        let (id, version) = &mut points[n * 7 % places.len()];
        let (name, longitude, latitude) = &places[n * 13 % places.len()];
        let event = if n % 2 == 0 {
            PointEvent::Moved(PointMoved {
                longitude: (*longitude).try_into().expect("a sample longitude"),
                latitude: (*latitude).try_into().expect("a sample latitude"),
            })
        } else {
            PointEvent::Renamed(PointRenamed {
                name: PointName::parse(name).expect("a sample name"),
            })
        };
        *version += 1;
        events.push(EventEnvelope::new(
            &event,
            *id,
            *version,
            Metadata::default(),
        ));
    }
    let mut last = 0;
    for chunk in events.chunks(500) {
        let mut acks = Vec::new();
        for envelope in chunk {
            acks.push(
                js.publish(
                    spec.subject_for(envelope.aggregate_id),
                    envelope.to_vec().into(),
                )
                .await
                .expect("sent"),
            );
        }
        for ack in acks {
            last = ack.await.expect("stored").sequence;
        }
    }
    last
}

async fn checksum(pool: &PgPool) -> (i64, String) {
    sqlx::query_as(
        "SELECT count(*), md5(string_agg(concat_ws('|', id, name, encode(ST_AsEWKB(geom), 'hex'),
                    properties::text, version, last_seq, created_at, updated_at), E'\\n'
                    ORDER BY id))
         FROM points",
    )
    .fetch_one(pool)
    .await
    .expect("the points are readable")
}

async fn shadow_checkpoint(pool: &PgPool) -> Option<i64> {
    sqlx::query_scalar("SELECT last_seq FROM projection_checkpoint WHERE projection = $1")
        .bind(projector::SHADOW_CHECKPOINT)
        .fetch_optional(pool)
        .await
        .expect("the checkpoints are readable")
}

fn rebuild_command(nats: &NatsConfig, database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_projector"));
    command
        .args(["rebuild", "--batch-size", "100"])
        .env("GEOLEDGER_NATS_URL", &nats.url)
        .env("GEOLEDGER_STREAM", &nats.stream)
        .env("GEOLEDGER_SUBJECT_PREFIX", &nats.subject_prefix)
        .env("GEOLEDGER_DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn a_rebuild_killed_half_way_resumes_from_its_checkpoint_and_ends_identical() {
    let (database_url, pool) = fresh_database().await;
    projector::migrate(&pool).await.expect("migrations apply");
    let tag = Uuid::now_v7().simple().to_string();
    let nats = NatsConfig {
        url: env("GEOLEDGER_TEST_NATS_URL"),
        stream: format!("T_{tag}"),
        subject_prefix: format!("t{tag}.points"),
        duplicate_window_secs: 120,
        stream_replicas: 1,
        auth: geoledger_common::config::NatsAuth::default(),
    };
    let client = async_nats::connect(&nats.url).await.expect("NATS");
    let js = async_nats::jetstream::new(client);
    let last = publish(&js, &nats, 14_000).await;

    // The live projection to compare with.
    let database = DatabaseConfig {
        url: database_url.parse().expect("any text"),
        max_connections: 3,
    };
    let live = projector::App::build(projector::Config::new(
        nats.clone(),
        database,
        "127.0.0.1:0".parse().expect("a literal address"),
    ))
    .await
    .expect("the projector builds");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let live = tokio::spawn(live.run_until(async {
        let _ = stopped.await;
    }));
    let start = Instant::now();
    while projector::read_checkpoint(&pool).await.expect("checkpoint") < last {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "projection stuck"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let expected = checksum(&pool).await;

    let mut first = rebuild_command(&nats, &database_url)
        .stdout(Stdio::null())
        .spawn()
        .expect("the projector binary starts");
    let start = Instant::now();
    let killed_at = loop {
        if let Some(seq) = shadow_checkpoint(&pool).await
            && seq >= 3_000
        {
            break seq;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the rebuild never got going"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    first.kill().await.expect("SIGKILL to our own child");
    let resume_at = shadow_checkpoint(&pool)
        .await
        .expect("the shadow's checkpoint survives the kill");
    assert!(resume_at >= killed_at);
    assert!(
        (resume_at as u64) < last,
        "killed half-way ({resume_at} of {last}); a slower rebuild would be needed"
    );
    assert_eq!(
        checksum(&pool).await,
        expected,
        "the live tables were not touched"
    );

    let second = rebuild_command(&nats, &database_url)
        .output()
        .await
        .expect("the projector binary runs");
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        second.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(
        stdout.contains(&format!("resumed from sequence {resume_at}")),
        "{stdout}"
    );
    assert_eq!(
        checksum(&pool).await,
        expected,
        "the swapped tables equal the live ones"
    );
    assert_eq!(shadow_checkpoint(&pool).await, None);
    let _ = stop.send(());
    live.await
        .expect("the projector task")
        .expect("the projector stops cleanly");
}
