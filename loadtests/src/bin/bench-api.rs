//! `bench-api`: drives a running geoledger through HAProxy at a high rate and prints what it
//! measured, starting with the machine, the deployment's shape and the versions.
#![expect(
    clippy::print_stdout,
    reason = "the printed report is this tool's output"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use loadtests::environment::{Endpoints, Environment};
use loadtests::places::read_places_file;
use loadtests::throughput::{self, Prepared, Scenario};
use loadtests::write_latency;

/// What the 80/20 mix is held to, on two shared cores with every part on the same machine.
const TARGET_MIX_RPS: f64 = 10_000.0;
const TARGET_MIX_P95: Duration = Duration::from_millis(50);
const TARGET_MIX_CONNECTIONS: usize = 256;
/// The end-to-end write latency target: p99 at 2,000 writes/s.
const TARGET_E2E_P99: Duration = Duration::from_millis(250);
const TARGET_E2E_RATE: u32 = 2_000;

/// High-rate benchmarks of geoledger's HTTP API. Every command first prints the machine, the
/// deployment's shape (read from HAProxy) and the versions of its parts.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The API (HAProxy).
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// HAProxy's stats page, for the deployment's shape and HAProxy's version.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8404/")]
    haproxy_stats: String,
    /// NATS monitoring, for its version and the stream's last sequence.
    #[arg(long, global = true, default_value = "http://127.0.0.1:18222")]
    nats_monitor: String,
    /// The projector's status URL.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8070/status")]
    projector_status: String,
    /// The read model's database, for the PostgreSQL and PostGIS versions.
    #[arg(
        long,
        global = true,
        default_value = "postgres://geoledger@127.0.0.1:15432/geoledger"
    )]
    database_url: String,
    /// The places the written points and the boxes are taken from.
    #[arg(
        long,
        global = true,
        env = "GEOLEDGER_PLACES",
        default_value = "../shared/data/places.csv"
    )]
    places: PathBuf,
    /// Bearer token for writes, when the API wants one.
    #[arg(
        long,
        global = true,
        env = "GEOLEDGER_API_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints the machine, the shape and the versions, and nothing else.
    Describe,
    /// Requests/s and latency at a fixed number of keep-alive connections, each sending its
    /// next request as soon as the last is answered.
    Throughput {
        /// What to send; repeat the flag for several, run one after the other. Default: all.
        #[arg(long, value_enum)]
        scenario: Vec<Scenario>,
        /// Connections (clients) at once.
        #[arg(long, short = 'c', default_value_t = TARGET_MIX_CONNECTIONS)]
        connections: usize,
        /// Seconds counted per scenario.
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Seconds sent but not counted before each scenario.
        #[arg(long, default_value_t = 2)]
        warmup_secs: u64,
        /// Send `Accept-Encoding: gzip` with every request, as browsers, Python's requests
        /// (and so Locust) and GDAL do. The answers are counted, not decompressed.
        #[arg(long)]
        gzip: bool,
    },
    /// Time from sending POST /point until the point is readable from query-api, at a fixed
    /// rate of writes, and the projector's rate meanwhile.
    WriteLatency {
        /// Writes started per second.
        #[arg(long, default_value_t = TARGET_E2E_RATE)]
        rate: u32,
        /// Seconds counted.
        #[arg(long, default_value_t = 20)]
        duration_secs: u64,
        /// Seconds written but not counted first.
        #[arg(long, default_value_t = 2)]
        warmup_secs: u64,
        /// Writes in flight at most; a write due beyond it is skipped and counted.
        #[arg(long, default_value_t = 2048)]
        max_in_flight: usize,
        /// Reads back one write in this many (1: every write). Each read is a request to
        /// query-api, which on a small machine saturates long before the write path does.
        #[arg(long, default_value_t = 10)]
        read_every: u32,
    },
    /// Waits for the projector to apply everything in the stream and prints its rate: run it
    /// after writing while the projector was stopped, then starting it.
    ProjectorDrain {
        /// The point stream.
        #[arg(long, default_value = "GEOLEDGER_POINTS")]
        stream: String,
        /// Gives up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    args.token = loadtests::given_token(args.token);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(4096)
        .build()
        .context("building the HTTP client")?;
    let endpoints = Endpoints {
        haproxy_stats: args.haproxy_stats.clone(),
        nats_monitor: args.nats_monitor.clone(),
        projector_status: args.projector_status.clone(),
        database_url: args.database_url.clone(),
    };
    println!("{}", Environment::describe(&client, &endpoints).await);

    match args.command {
        Command::Describe => Ok(()),
        Command::Throughput {
            scenario,
            connections,
            duration_secs,
            warmup_secs,
            gzip,
        } => {
            let config = throughput::Config {
                authority: authority(&args.base_url)?,
                connections,
                duration: Duration::from_secs(duration_secs),
                warmup: Duration::from_secs(warmup_secs),
                gzip,
            };
            println!("through {} from {}", args.base_url, args.places.display());
            run_throughput(&config, scenario, &args.places, args.token.as_deref()).await
        }
        Command::WriteLatency {
            rate,
            duration_secs,
            warmup_secs,
            max_in_flight,
            read_every,
        } => {
            let config = write_latency::Config {
                base_url: args.base_url.clone(),
                projector_status: args.projector_status.clone(),
                rate,
                duration: Duration::from_secs(duration_secs),
                warmup: Duration::from_secs(warmup_secs),
                max_in_flight,
                read_every,
                token: args.token.clone(),
            };
            run_write_latency(&client, &config, &args.places).await
        }
        Command::ProjectorDrain {
            stream,
            timeout_secs,
        } => {
            let target =
                write_latency::stream_last_sequence(&client, &args.nats_monitor, &stream).await?;
            println!("waiting for the projector to reach sequence {target}");
            let drain = write_latency::drain(
                &client,
                &args.projector_status,
                target,
                Duration::from_secs(timeout_secs),
            )
            .await?;
            println!("{drain}");
            Ok(())
        }
    }
}

async fn run_throughput(
    config: &throughput::Config,
    scenarios: Vec<Scenario>,
    places: &Path,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let scenarios = if scenarios.is_empty() {
        vec![
            Scenario::FirstPage,
            Scenario::Bbox,
            Scenario::Post,
            Scenario::Mix,
            Scenario::ListMix,
        ]
    } else {
        scenarios
    };
    let prepared =
        Arc::new(Prepared::from_places(&read_places_file(places, None)?)?.with_token(token)?);
    for scenario in scenarios {
        let report = throughput::run(config, scenario, Arc::clone(&prepared)).await?;
        println!("\n{report}");
        // The target is the spatial mix's; the list mix is printed for comparison.
        if scenario == Scenario::Mix && config.connections == TARGET_MIX_CONNECTIONS {
            let met = report.throughput() > TARGET_MIX_RPS
                && report.latency.is_some_and(|l| l.p95 < TARGET_MIX_P95)
                && report.errors() == 0;
            println!(
                "  target: above {TARGET_MIX_RPS:.0} requests/s with p95 under {} ms and no \
                 errors at {TARGET_MIX_CONNECTIONS} connections: {}",
                TARGET_MIX_P95.as_millis(),
                if met { "met" } else { "NOT met" }
            );
        }
    }
    Ok(())
}

async fn run_write_latency(
    client: &reqwest::Client,
    config: &write_latency::Config,
    places: &Path,
) -> anyhow::Result<()> {
    let places = Arc::new(read_places_file(places, None)?);
    let report = write_latency::run(client, config, places).await?;
    println!("{report}");
    if config.rate >= TARGET_E2E_RATE {
        let met = report.readable.is_some_and(|l| l.p99 < TARGET_E2E_P99)
            && report.failed == 0
            && report.skipped == 0
            && report.achieved_rate() >= f64::from(TARGET_E2E_RATE) * 0.98;
        println!(
            "  target: readable p99 under {} ms at {TARGET_E2E_RATE} writes/s, nothing failed \
             or skipped: {}",
            TARGET_E2E_P99.as_millis(),
            if met { "met" } else { "NOT met" }
        );
    }
    Ok(())
}

/// `host:port` of an `http://` base URL, which the throughput clients connect to directly.
fn authority(base_url: &str) -> anyhow::Result<String> {
    let uri: http::Uri = base_url.parse().context("parsing --base-url")?;
    anyhow::ensure!(
        uri.scheme_str() == Some("http"),
        "--base-url must be http://, the benchmark speaks plain HTTP/1.1"
    );
    let host = uri.host().context("--base-url has no host")?;
    Ok(format!("{host}:{}", uri.port_u16().unwrap_or(80)))
}
