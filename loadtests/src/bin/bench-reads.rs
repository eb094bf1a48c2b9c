//! `bench-reads`: times `GET /points` on a read model of a thousand points and of a million,
//! and prints the medians side by side with the plans PostgreSQL chose.
#![expect(
    clippy::print_stdout,
    reason = "the printed report is this tool's output"
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

use loadtests::bench::database::{self, Layout, parse_database_name};
use loadtests::bench::http::{Server, deep_cursor, time_get};
use loadtests::bench::plans::{access_paths, explain, statement_ids};
use loadtests::bench::queries::{CENTRE, PAGE, ReadQuery};
use loadtests::bench::report::{Comparison, Machine, SizeFigures, millis, size_label};
use loadtests::bench::synthetic::{Generator, JITTER_DEGREES};
use loadtests::places::read_places_file;

/// Creates a benchmark database, and for each size loads that many points made from real
/// places, serves them with an embedded query-api and times a few reads over HTTP.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// A PostgreSQL server with PostGIS, as the URL of a database on it that the user can
    /// connect to; the benchmark database is created beside it, so the user needs CREATEDB.
    #[arg(
        long,
        env = "GEOLEDGER_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:25432/postgres"
    )]
    database_url: String,
    /// Name of the benchmark database, dropped and created again at every run.
    #[arg(long, default_value = "geoledger_bench", value_parser = parse_database_name)]
    database: String,
    /// The places CSV the points are made from.
    #[arg(
        long,
        env = "GEOLEDGER_PLACES",
        default_value = "../shared/data/places.csv"
    )]
    places: PathBuf,
    /// Table sizes, comma-separated; the table compares the smallest with the largest. Each
    /// needs more than two pages of points, so that the deep page lies past the first.
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = [1_000_u64, 1_000_000],
        value_parser = clap::value_parser!(u64).range(2 * u64::from(PAGE) + 1..),
    )]
    sizes: Vec<u64>,
    /// How the rows lie on disk, comma-separated; every size is loaded and timed in each.
    #[arg(long, value_delimiter = ',', default_values = ["rebuilt", "arrival"])]
    layouts: Vec<Layout>,
    /// Untimed requests before each read is timed.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    warmup: u64,
    /// Timed requests per read and size.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    repeat: u64,
    /// Seed of the coordinates' jitter and the ids' random bits.
    #[arg(long, default_value_t = 20_261_204)]
    seed: u64,
    /// Leaves the benchmark database in place after the run, to look at with psql.
    #[arg(long)]
    keep_database: bool,
}

/// What every size is measured with.
struct Bench<'a> {
    url: String,
    pool: sqlx::PgPool,
    client: reqwest::Client,
    generator: Generator<'a>,
    warmup: usize,
    repeat: usize,
}

/// A read's plan at one size, with the request it stands for.
struct Plan {
    query: ReadQuery,
    path: String,
    lines: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run_started = Instant::now();
    let places = read_places_file(&args.places, None)?;
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();

    database::recreate(&args.database_url, &args.database).await?;
    let url = database::database_url(&args.database_url, &args.database)?;
    let pool = database::pool(&url).await?;
    projector::migrate(&pool).await?;
    let bench = Bench {
        url,
        pool,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?,
        generator: Generator::new(&places, args.seed)?,
        warmup: usize::try_from(args.warmup).context("--warmup is too large")?,
        repeat: usize::try_from(args.repeat).context("--repeat is too large")?,
    };
    println!("{}", Machine::describe(&bench.pool).await?);
    println!(
        "{} places from {}, cycled with up to ±{JITTER_DEGREES}° of jitter; \
         {} warm-up and {} timed requests per read, one at a time",
        places.len(),
        args.places.display(),
        bench.warmup,
        bench.repeat,
    );

    let largest = sizes.last().copied().unwrap_or_default();
    let mut layouts = args.layouts.clone();
    layouts.dedup();
    let mut results = Vec::new();
    for &layout in &layouts {
        println!("\n# layout: {}", layout.label());
        let mut figures = Vec::new();
        let mut plans = Vec::new();
        for &size in &sizes {
            let (measured, explained) = bench_size(&bench, size, largest, layout).await?;
            figures.push(measured);
            plans = explained;
        }
        results.push((layout, figures, plans));
    }

    for (layout, figures, plans) in &results {
        let (Some(small), Some(large)) = (figures.first(), figures.last()) else {
            continue;
        };
        println!("\n# {}", layout.label());
        if small.size != large.size {
            print!("{}", Comparison { small, large });
        }
        println!(
            "\nplans at {} points (EXPLAIN (ANALYZE, BUFFERS) of the SQL query-api runs):",
            size_label(large.size)
        );
        for plan in plans {
            println!("\n{}: GET {}", plan.query.label(), plan.path);
            for line in &plan.lines {
                println!("  {line}");
            }
        }
    }

    bench.pool.close().await;
    if !args.keep_database {
        database::drop_database(&args.database_url, &args.database).await?;
    }
    println!("\nwhole run: {:.0} s", run_started.elapsed().as_secs_f64());
    Ok(())
}

/// Loads `size` points, times every read on them and explains each.
///
/// The largest table is the first `size` generated points, spread over the world. A smaller
/// one is the `size` points of the largest that lie nearest Paris, where the city box and
/// the radius are drawn: spread over the world, a thousand points leave both empty, and an
/// empty answer against a full page would compare the cost of the answer, not of the
/// table's size. Each read then returns a full page at every size.
async fn bench_size(
    bench: &Bench<'_>,
    size: u64,
    largest: u64,
    layout: Layout,
) -> anyhow::Result<(SizeFigures, Vec<Plan>)> {
    let indexes: Vec<u64> = if size < largest {
        println!(
            "\n{} points: the ones nearest Paris among the {} of the largest table",
            size_label(size),
            size_label(largest)
        );
        let count = usize::try_from(size).context("--sizes holds a size too large")?;
        bench.generator.nearest(CENTRE, count, largest)
    } else {
        println!("\n{} points", size_label(size));
        (0..size).collect()
    };
    let load = database::load(&bench.url, &bench.generator, &indexes, layout).await?;
    #[expect(
        clippy::cast_precision_loss,
        reason = "a table size in MiB needs no more than f64's 52 bits"
    )]
    let mib = load.total_bytes as f64 / 1_048_576.0;
    println!(
        "  loaded: COPY {:.1} s, index builds {:.1} s, spatial order {:.1} s, \
         VACUUM ANALYZE {:.1} s; {mib:.0} MiB with indexes",
        load.copy.as_secs_f64(),
        load.indexes.as_secs_f64(),
        load.cluster.as_secs_f64(),
        load.vacuum.as_secs_f64(),
    );

    let server = Server::start(&bench.url).await?;
    let deep = deep_cursor(&bench.client, &server, size - 2 * u64::from(PAGE)).await?;
    println!(
        "  deep page cursor: {} pages walked in {:.1} s (not timed)",
        deep.pages,
        deep.elapsed.as_secs_f64()
    );
    let (mut reads, mut access, mut plans) = (Vec::new(), Vec::new(), Vec::new());
    for query in ReadQuery::ALL {
        let path = query.path(&deep.cursor);
        let timed = time_get(&bench.client, &server, &path, bench.warmup, bench.repeat).await?;
        if statement_ids(&bench.pool, query, &deep.cursor).await? != timed.ids {
            println!(
                "  warning: the statement explained for {} lists other points than \
                 query-api did; its plan below may not be the one query-api gets",
                query.label()
            );
        }
        let lines = explain(&bench.pool, query, &deep.cursor).await?;
        access.push(access_paths(&lines));
        println!(
            "  {:<13} {:>4} rows  min {}  median {}  p95 {}  max {}",
            query.label(),
            timed.rows,
            millis(timed.fastest),
            millis(timed.latency.p50),
            millis(timed.latency.p95),
            millis(timed.latency.max),
        );
        plans.push(Plan { query, path, lines });
        reads.push((query, timed));
    }
    server.stop().await?;
    let figures = SizeFigures {
        size,
        reads,
        access,
    };
    Ok((figures, plans))
}
