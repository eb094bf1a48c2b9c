//! `load-places`: posts every place of a CSV file to geoledger, prints what it measured,
//! and optionally waits until the projector has applied them all.
#![expect(
    clippy::print_stdout,
    reason = "the printed report is this tool's output"
)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;

use loadtests::load::{Config, post_places};
use loadtests::places::read_places_file;
use loadtests::projection::wait_until_projected;

/// Posts the places of a CSV file (`name,longitude,latitude,country`) to `<base>/point` and
/// prints accepted and failed counts, throughput and latency percentiles. Exits non-zero if
/// any place failed or projection did not finish in time.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The places CSV file.
    csv: PathBuf,
    /// Where the API is: HAProxy, or one command-api instance.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// Requests in flight at once.
    #[arg(long, short = 'c', default_value_t = 32)]
    concurrency: usize,
    /// Sends `Idempotency-Key: <PREFIX>-<row>` with each place, so that re-running the same
    /// file with the same prefix within command-api's duplicate window adds nothing.
    #[arg(long, value_name = "PREFIX")]
    idempotency_prefix: Option<String>,
    /// Sends only the first N places.
    #[arg(long)]
    limit: Option<usize>,
    /// Gives up on a single request after this many seconds.
    #[arg(long, default_value_t = 10)]
    request_timeout_secs: u64,
    /// The projector's status URL, such as `http://127.0.0.1:8070/status`; when given, waits
    /// until its checkpoint reaches the highest sequence command-api returned.
    #[arg(long, value_name = "URL")]
    wait_projected: Option<String>,
    /// Bearer token for writes, when the API wants one.
    #[arg(long, env = "GEOLEDGER_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Gives up waiting for the projector after this many seconds.
    #[arg(long, default_value_t = 120)]
    projection_timeout_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let places = read_places_file(&args.csv, args.limit)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.request_timeout_secs))
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .context("building the HTTP client")?;

    println!(
        "posting {} places from {} to {} with {} in flight",
        places.len(),
        args.csv.display(),
        args.base_url,
        args.concurrency
    );
    let config = Config {
        base_url: args.base_url.clone(),
        concurrency: args.concurrency,
        idempotency_prefix: args.idempotency_prefix.clone(),
        token: loadtests::given_token(args.token.clone()),
    };
    let report = post_places(&client, &config, &places).await;
    println!("{report}");

    let mut failed = Vec::new();
    if report.failed > 0 {
        failed.push(format!(
            "{} of {} places were not accepted",
            report.failed, report.sent
        ));
    }
    if let (Some(status_url), Some(sequence)) = (&args.wait_projected, report.max_sequence) {
        let timeout = Duration::from_secs(args.projection_timeout_secs);
        match wait_until_projected(&client, status_url, sequence, timeout).await {
            Ok(waited) => println!(
                "projected up to sequence {sequence} {:.2} s after the last answer ({:.2} s after the first request)",
                waited.as_secs_f64(),
                (report.elapsed + waited).as_secs_f64()
            ),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    if !failed.is_empty() {
        bail!(failed.join("; "));
    }
    Ok(())
}
