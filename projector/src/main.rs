#![expect(
    clippy::print_stdout,
    reason = "the dead-letters command prints its listing"
)]

use clap::Parser;

use geoledger_common::shutdown;
use geoledger_common::telemetry::{self, Export};
use projector::{App, Command, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    // Held to the end: dropping it sends the spans still buffered.
    let _telemetry = telemetry::init(
        config.log_format,
        "info,projector=info,sqlx=warn",
        &Export::from_env("projector"),
    );
    tracing::info!(config = ?config, "starting projector");
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
        Some(Command::Rebuild) => {
            projector::reset_projection(&config).await?;
            App::build(config)
                .await?
                .run_until(shutdown::signal())
                .await
        }
        None => {
            App::build(config)
                .await?
                .run_until(shutdown::signal())
                .await
        }
    }
}
