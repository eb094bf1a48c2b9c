use clap::Parser;

use command_api::{App, Config};
use geoledger_common::{shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(config.log_format, "info,command_api=info,tower_http=info");
    tracing::info!(config = ?config, "starting command-api");
    let app = App::build(config).await?;
    app.run_until(shutdown::signal()).await
}
