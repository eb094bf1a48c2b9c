//! `bench-rebuild`: publishes a million events, times `projector rebuild` on them, and prints
//! its rate beside the rate of a plain PostgreSQL COPY of the same final rows, the practical
//! limit of loading them on this machine.
#![expect(
    clippy::print_stdout,
    reason = "the printed report is this tool's output"
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

use geoledger_common::config::{DatabaseConfig, NatsConfig};
use geoledger_common::event::{EventEnvelope, Metadata, PointEvent, PointMoved, PointRenamed};
use geoledger_common::point::{NewPoint, PointName};
use loadtests::bench::database::{self, parse_database_name};
use loadtests::bench::synthetic::Generator;
use loadtests::places::read_places_file;

/// Publishes `--events` events to a fresh stream, rebuilds the read model from them with the
/// projector's own code, then loads the resulting rows again with COPY for comparison.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// A PostgreSQL server with PostGIS, as the URL of a database on it; the benchmark
    /// database is created beside it.
    #[arg(
        long,
        env = "GEOLEDGER_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:26433/postgres"
    )]
    database_url: String,
    /// Name of the benchmark database, dropped and created again at every run.
    #[arg(long, default_value = "geoledger_rebuild_bench", value_parser = parse_database_name)]
    database: String,
    /// A NATS server with JetStream; the benchmark creates a stream of its own on it.
    #[arg(
        long,
        env = "GEOLEDGER_BENCH_NATS_URL",
        default_value = "nats://127.0.0.1:26423"
    )]
    nats_url: String,
    /// The places CSV the points are made from.
    #[arg(
        long,
        env = "GEOLEDGER_PLACES",
        default_value = "../shared/data/places.csv"
    )]
    places: PathBuf,
    /// Events to publish.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Events per transaction of the rebuild.
    #[arg(long, default_value_t = 10_000)]
    batch_size: usize,
}

/// Share of the events that change an existing point, in percent; the rest create points. Of
/// the changes, a half move a point, a third rename one and a sixth delete one.
const CHANGE_PERCENT: u64 = 15;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let places = read_places_file(&args.places, None)?;
    database::recreate(&args.database_url, &args.database).await?;
    let database_url = database::database_url(&args.database_url, &args.database)?;

    let tag = Uuid::now_v7().simple().to_string();
    let nats = NatsConfig {
        url: args.nats_url.clone(),
        stream: format!("BENCH_{tag}"),
        subject_prefix: format!("bench{tag}.points"),
        duplicate_window_secs: 120,
        stream_replicas: 1,
        auth: geoledger_common::config::NatsAuth::default(),
    };
    let published = Instant::now();
    let last = publish(&nats, &places, args.events).await?;
    let published = published.elapsed();
    println!(
        "published {} events in {:.1} s ({:.0} events/s), last sequence {last}",
        args.events,
        published.as_secs_f64(),
        per_sec(args.events, published)
    );

    let config = projector::Config::new(
        nats,
        DatabaseConfig {
            url: database_url.parse().context("the database URL")?,
            max_connections: 4,
        },
        "127.0.0.1:0".parse().context("a literal address")?,
    );
    let report = projector::rebuild(
        &config,
        &projector::RebuildArgs {
            batch_size: args.batch_size,
            restart: true,
        },
        std::future::pending(),
    )
    .await?;
    anyhow::ensure!(report.swapped, "the rebuild did not finish");

    let mut conn = PgConnection::connect(&database_url).await?;
    let (copy_indexed, copy_then_index) = copy_baselines(&mut conn).await?;
    let rows = report.points;
    println!();
    println!(
        "{:<44} {:>10} {:>14} {:>14}",
        "", "seconds", "events/s", "rows/s"
    );
    println!(
        "{:<44} {:>10.1} {:>14.0} {:>14.0}",
        "rebuild (events to swapped, indexed tables)",
        report.elapsed.as_secs_f64(),
        report.events_per_sec(),
        per_sec(rows, report.elapsed)
    );
    println!(
        "{:<44} {:>10.1} {:>14} {:>14}",
        "  of which building the secondary indexes",
        report.indexing.as_secs_f64(),
        "",
        ""
    );
    println!(
        "{:<44} {:>10.1} {:>14} {:>14.0}",
        "COPY final rows into an indexed table",
        copy_indexed.as_secs_f64(),
        "",
        per_sec(rows, copy_indexed)
    );
    println!(
        "{:<44} {:>10.1} {:>14} {:>14.0}",
        "COPY final rows, then build the indexes",
        copy_then_index.as_secs_f64(),
        "",
        per_sec(rows, copy_then_index)
    );
    println!();
    println!(
        "{} events became {rows} rows. Rebuild takes {:.2}x the time of COPY into an indexed \
         table and {:.2}x that of COPY then index (target: at most 2x, i.e. half the rate).",
        report.events,
        report.elapsed.as_secs_f64() / copy_indexed.as_secs_f64(),
        report.elapsed.as_secs_f64() / copy_then_index.as_secs_f64()
    );
    Ok(())
}

#[expect(
    clippy::cast_precision_loss,
    reason = "counts here are far below 2^52, where f64 starts rounding"
)]
fn per_sec(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-3)
}

/// Publishes `events` events: creations of generated points, with changes of random earlier
/// points mixed in ([`CHANGE_PERCENT`]), each at the point's next version. Returns the last
/// stream sequence.
async fn publish(
    nats: &NatsConfig,
    places: &[loadtests::places::Place],
    events: u64,
) -> anyhow::Result<u64> {
    /// Publishes in flight at once: enough to keep the server busy, few enough to bound memory.
    const IN_FLIGHT: usize = 2_000;
    let client = async_nats::connect(&nats.url)
        .await
        .with_context(|| format!("connecting to {}", nats.url))?;
    let js = async_nats::jetstream::new(client);
    let spec = nats.stream_spec();
    spec.ensure(&js).await.context("creating the stream")?;
    let generator = Generator::new(places, 0x00c0_ffee)?;
    let mut dice = generator.point(u64::MAX / 3).created_millis;
    let mut roll = |below: u64| {
        dice ^= dice << 13;
        dice ^= dice >> 7;
        dice ^= dice << 17;
        dice % below
    };
    let mut live: Vec<(Uuid, u64)> = Vec::new();
    let mut created = 0_u64;
    let mut acks = Vec::with_capacity(IN_FLIGHT);
    let mut last = 0;
    for _ in 0..events {
        let envelope = if live.is_empty() || roll(100) >= CHANGE_PERCENT {
            let point = generator.point(created);
            created += 1;
            let body = serde_json::json!({
                "longitude": point.longitude, "latitude": point.latitude, "name": point.name
            });
            let new = NewPoint::from_json(body.to_string().as_bytes())
                .map_err(|e| anyhow::anyhow!("a generated point is invalid: {e:?}"))?;
            live.push((point.id, 1));
            EventEnvelope::point_created(point.id, &new, Metadata::default())
        } else {
            let i = usize::try_from(roll(live.len() as u64)).context("an index")?;
            let other = generator.point(roll(created));
            let (id, version) = live[i];
            let event = match roll(6) {
                0 => PointEvent::Deleted,
                1 | 2 => PointEvent::Renamed(PointRenamed {
                    name: PointName::parse(other.name)
                        .map_err(|e| anyhow::anyhow!("a place name is invalid: {e:?}"))?,
                }),
                _ => PointEvent::Moved(PointMoved {
                    longitude: other
                        .longitude
                        .try_into()
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?,
                    latitude: other
                        .latitude
                        .try_into()
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?,
                }),
            };
            if event == PointEvent::Deleted {
                live.swap_remove(i);
            } else {
                live[i].1 += 1;
            }
            EventEnvelope::new(&event, id, version + 1, Metadata::default())
        };
        acks.push(
            js.publish(
                spec.subject_for(envelope.aggregate_id),
                envelope.to_vec().into(),
            )
            .await
            .context("publishing")?,
        );
        if acks.len() == IN_FLIGHT {
            for ack in acks.drain(..) {
                last = ack.await.context("awaiting an ack")?.sequence;
            }
        }
    }
    for ack in acks {
        last = ack.await.context("awaiting an ack")?.sequence;
    }
    Ok(last)
}

/// Copies the rebuilt `points` out, then times loading them back with COPY two ways: into an
/// empty table that already has every index of `points`, and into a bare table whose indexes
/// are built afterwards (as the rebuild builds them, but without its rewrite of the rows in
/// spatial order: the baseline is the plainest load of the same rows).
async fn copy_baselines(conn: &mut PgConnection) -> anyhow::Result<(Duration, Duration)> {
    const COLUMNS: &str = "id, name, geom, properties, version, last_seq, created_at, updated_at";
    let mut out = conn
        .copy_out_raw(&format!("COPY (SELECT {COLUMNS} FROM points) TO STDOUT"))
        .await?;
    let mut chunks = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut out).await {
        chunks.push(chunk?);
    }
    drop(out);
    sqlx::query(&format!(
        "SET maintenance_work_mem = '{}'",
        projector::INDEX_BUILD_MEMORY
    ))
    .execute(&mut *conn)
    .await?;

    sqlx::query("CREATE TABLE copy_indexed (LIKE points INCLUDING ALL)")
        .execute(&mut *conn)
        .await?;
    let started = Instant::now();
    copy_in(conn, "copy_indexed", COLUMNS, &chunks).await?;
    let indexed = started.elapsed();

    sqlx::query(
        "CREATE TABLE copy_bare (LIKE points INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                                 INCLUDING STORAGE)",
    )
    .execute(&mut *conn)
    .await?;
    let definitions: Vec<String> = sqlx::query_scalar(
        "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'points'::regclass",
    )
    .fetch_all(&mut *conn)
    .await?;
    let started = Instant::now();
    copy_in(conn, "copy_bare", COLUMNS, &chunks).await?;
    for (n, definition) in definitions.iter().enumerate() {
        let statement =
            projector::index_statement(definition, &format!("copy_bare_{n}"), "copy_bare")
                .context("an index definition")?;
        sqlx::query(&statement).execute(&mut *conn).await?;
    }
    let then_index = started.elapsed();
    for table in ["copy_indexed", "copy_bare"] {
        sqlx::query(&format!("DROP TABLE {table}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok((indexed, then_index))
}

async fn copy_in(
    conn: &mut PgConnection,
    table: &str,
    columns: &str,
    chunks: &[bytes::Bytes],
) -> anyhow::Result<u64> {
    let mut copy = conn
        .copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN"))
        .await?;
    for chunk in chunks {
        copy.send(chunk.as_ref()).await?;
    }
    Ok(copy.finish().await?)
}
