use clap::Parser;

use geoledger_common::telemetry::{self, Export};
use geoledger_common::{health, shutdown};
use query_api::{App, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    if config.healthcheck {
        return Ok(health::probe_status(config.listen)?);
    }
    // Held to the end: dropping it sends the spans still buffered.
    let _telemetry = telemetry::init(
        config.log_format,
        "info,query_api=info,tower_http=info",
        &Export::from_env("query-api"),
    );
    tracing::info!(config = ?config, "starting query-api");
    let app = App::build(config).await?;
    app.run_until(shutdown::signal()).await
}
