use clap::Parser;

use geoledger_common::{health, shutdown, telemetry};
use query_api::{App, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    if config.healthcheck {
        return Ok(health::probe_status(config.listen)?);
    }
    telemetry::init(config.log_format, "info,query_api=info,tower_http=info");
    tracing::info!(config = ?config, "starting query-api");
    let app = App::build(config).await?;
    app.run_until(shutdown::signal()).await
}
