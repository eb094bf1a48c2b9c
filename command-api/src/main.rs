use clap::Parser;

use command_api::{App, Config};
use geoledger_common::shutdown;
use geoledger_common::telemetry::{self, Export};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    // Held to the end: dropping it sends the spans still buffered.
    let _telemetry = telemetry::init(
        config.log_format,
        "info,command_api=info,tower_http=info",
        &Export::from_env("command-api"),
    );
    tracing::info!(config = ?config, "starting command-api");
    let app = App::build(config).await?;
    app.run_until(shutdown::signal()).await
}
