#![expect(
    clippy::print_stdout,
    reason = "the commands print their listings and reports"
)]

use clap::Parser;

use geoledger_common::telemetry::{self, Export};
use geoledger_common::{health, shutdown};
use projector::{App, Command, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    if config.healthcheck {
        return Ok(health::probe_status(config.listen)?);
    }
    // A command's output is its report; the libraries' connection chatter would bury it.
    let filter = if config.command.is_none() {
        "info,projector=info,sqlx=warn"
    } else {
        "warn,projector=info"
    };
    // Held to the end: dropping it sends the spans still buffered.
    let _telemetry = telemetry::init(config.log_format, filter, &Export::from_env("projector"));
    if config.command.is_none() {
        tracing::info!(config = ?config, "starting projector");
    }
    match config.command {
        Some(Command::Migrate) => projector::migrate_only(&config).await,
        Some(Command::DeadLetters) => {
            for letter in projector::dead_letters(&config).await? {
                println!("{}", serde_json::to_string(&letter)?);
            }
            Ok(())
        }
        Some(Command::Redrive {
            point,
            skip_undecodable,
        }) => {
            let applied = projector::redrive(&config, point, skip_undecodable).await?;
            tracing::info!(point.id = %point, applied, "point re-driven and unparked");
            Ok(())
        }
        Some(Command::Status { json }) => {
            let report = projector::status(&config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            Ok(())
        }
        Some(Command::Rebuild(ref args)) => {
            let report = projector::rebuild(&config, args, shutdown::signal()).await?;
            if report.swapped && report.resumed_from > 0 {
                println!("resumed from sequence {}", report.resumed_from);
            }
            if report.swapped {
                println!(
                    "rebuilt: {} points at checkpoint {}, {} events in {:.1} s ({:.0} events/s; \
                     indexes {:.1} s)",
                    report.points,
                    report.checkpoint,
                    report.events,
                    report.elapsed.as_secs_f64(),
                    report.events_per_sec(),
                    report.indexing.as_secs_f64()
                );
            } else {
                println!(
                    "interrupted at sequence {}; run `projector rebuild` again to resume",
                    report.checkpoint
                );
            }
            Ok(())
        }
        Some(Command::Replay(ref args)) => {
            let report = projector::replay(&config, args, shutdown::signal()).await?;
            println!(
                "{}{}: {} points from {} events, up to sequence {}{} in {:.1} s",
                report.table,
                if report.interrupted {
                    " (interrupted)"
                } else {
                    ""
                },
                report.points,
                report.events,
                report.last_seq,
                if report.undecodable_or_parked > 0 {
                    format!(", {} events not projectable", report.undecodable_or_parked)
                } else {
                    String::new()
                },
                report.elapsed.as_secs_f64()
            );
            Ok(())
        }
        None => {
            App::build(config)
                .await?
                .run_until(shutdown::signal())
                .await
        }
    }
}
