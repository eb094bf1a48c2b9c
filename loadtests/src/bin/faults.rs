//! `faults`: the driver of `make faults` (loadtests/faults.sh), which starts the stack it
//! breaks. Prints the fault table and exits non-zero when an accepted write was lost,
//! doubled or altered, a write got no answer, or a read failed while it should not have.
#![expect(
    clippy::print_stdout,
    reason = "the printed table is this tool's output"
)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use loadtests::faults::{self, Fault};
use loadtests::places::read_places_file;

/// Writes real places through HAProxy with idempotency keys and retries, reads meanwhile,
/// and injects each fault in turn through `<inject> inject FAULT break|heal`; after each,
/// checks the read model against every accepted write.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// HAProxy's public address.
    #[arg(long)]
    base_url: String,
    /// The read model's database.
    #[arg(long)]
    database_url: String,
    /// The projector's `GET /status` URL.
    #[arg(long)]
    projector_status: String,
    /// The places CSV (`name,longitude,latitude,country`).
    #[arg(long)]
    places: PathBuf,
    /// The script that breaks and heals the stack (loadtests/faults.sh).
    #[arg(long)]
    inject: PathBuf,
    /// Injects only these faults (projector, postgres, nats, instances), in the order
    /// given; all four by default.
    #[arg(long = "fault", value_name = "FAULT")]
    faults: Vec<Fault>,
    /// Concurrent writers.
    #[arg(long, default_value_t = 6)]
    writers: usize,
    /// Concurrent readers.
    #[arg(long, default_value_t = 2)]
    readers: usize,
    /// Seconds of writes before each fault.
    #[arg(long, default_value_t = 3)]
    steady_secs: u64,
    /// Seconds each fault lasts before it is healed. Above HAProxy's 4 s to take a dead
    /// instance out of rotation, so that reads meet both the dead instance and its absence.
    #[arg(long, default_value_t = 5)]
    down_secs: u64,
    /// Seconds of writes after each fault is healed.
    #[arg(long, default_value_t = 3)]
    recovery_secs: u64,
    /// Seconds one write keeps retrying. Above command-api's 30 s after which a claim left
    /// by a request that died is taken over, since until then a retry is answered 409.
    #[arg(long, default_value_t = 75)]
    write_deadline_secs: u64,
    /// Seconds the projection may take to catch up after each fault.
    #[arg(long, default_value_t = 60)]
    catch_up_secs: u64,
    /// Bearer token for the writes, when the stack wants one.
    #[arg(long, env = "GEOLEDGER_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    // Enough for the run many times over; the whole file can hold millions.
    let places = read_places_file(&args.places, Some(100_000))?;
    let report = faults::run(faults::Config {
        base_url: args.base_url,
        database_url: args.database_url,
        projector_status: args.projector_status,
        inject: args.inject,
        places,
        faults: if args.faults.is_empty() {
            Fault::ALL.to_vec()
        } else {
            args.faults
        },
        writers: args.writers,
        readers: args.readers,
        steady: Duration::from_secs(args.steady_secs),
        down: Duration::from_secs(args.down_secs),
        recovery: Duration::from_secs(args.recovery_secs),
        write_deadline: Duration::from_secs(args.write_deadline_secs),
        catch_up: Duration::from_secs(args.catch_up_secs),
        token: loadtests::given_token(args.token),
    })
    .await?;
    println!("{report}");
    if report.failed() {
        println!("faults: FAILED");
        return Ok(ExitCode::FAILURE);
    }
    println!("faults: passed");
    Ok(ExitCode::SUCCESS)
}
