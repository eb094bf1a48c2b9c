//! command-api: the write side. It validates commands, turns each into an event and answers
//! only once JetStream has stored that event. It keeps no state of its own; any number of
//! instances can run behind a load balancer.

mod error;
mod http;
mod idempotency;
mod publish;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use geoledger_common::auth::{AuthConfig, Authenticator};
use geoledger_common::config::NatsConfig;
use geoledger_common::telemetry::LogFormat;

pub use crate::publish::Publisher;

/// Everything command-api can be told, from flags or `GEOLEDGER_*` variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "command-api", version, about = "geoledger's write side")]
pub struct Config {
    /// Where NATS is and which stream to write.
    #[command(flatten)]
    pub nats: NatsConfig,
    /// Address to serve HTTP on.
    #[arg(long, env = "GEOLEDGER_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Probe the running instance's `GET /status` on the listen address and exit: 0 when it
    /// answers 200. For container health checks, as the image has no HTTP client.
    #[arg(long)]
    pub healthcheck: bool,
    /// Log line format.
    #[arg(long, env = "GEOLEDGER_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// How long to wait for JetStream to acknowledge an event before answering 503, in ms.
    #[arg(long, env = "GEOLEDGER_ACK_TIMEOUT_MS", default_value_t = 3000)]
    pub ack_timeout_ms: u64,
    /// How long an `Idempotency-Key` of `POST /point` keeps its first result, in seconds.
    #[arg(long, env = "GEOLEDGER_IDEMPOTENCY_TTL_SECS", default_value_t = 24 * 60 * 60)]
    pub idempotency_ttl_secs: u64,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "GEOLEDGER_BODY_LIMIT", default_value_t = 64 * 1024)]
    pub body_limit: usize,
    /// Longest a request body may stall between two pieces before the request is answered
    /// 408, in seconds. Below the 10 s request timeout, so a stalled upload gets its 408.
    #[arg(
        long,
        env = "GEOLEDGER_BODY_TIMEOUT_SECS",
        default_value_t = DEFAULT_BODY_TIMEOUT_SECS,
        value_parser = clap::value_parser!(u64).range(1..10),
    )]
    pub body_timeout_secs: u64,
    /// Who may write.
    #[command(flatten)]
    pub auth: AuthConfig,
}

/// Seconds a request body may stall before the request is answered 408.
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 5;

impl Config {
    /// Defaults with the given NATS settings, listening on `listen`: for tests and tools that
    /// embed command-api rather than parse a command line.
    #[must_use]
    pub fn new(nats: NatsConfig, listen: SocketAddr) -> Self {
        Self {
            nats,
            listen,
            healthcheck: false,
            log_format: LogFormat::Text,
            ack_timeout_ms: 3000,
            idempotency_ttl_secs: 24 * 60 * 60,
            body_limit: 64 * 1024,
            body_timeout_secs: DEFAULT_BODY_TIMEOUT_SECS,
            auth: AuthConfig::default(),
        }
    }
}

/// A command-api bound to its port and connected (or connecting) to NATS.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    publisher: Publisher,
}

impl App {
    /// Binds the listener and starts connecting to NATS. NATS being down does not stop the
    /// service from starting: `/status` reports 503 and writes answer 503 until it is up.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let auth = Authenticator::from_config(&config.auth).context("setting up authentication")?;
        if auth.enabled() {
            tracing::info!(auth = ?auth, "writes need a bearer token");
        } else {
            tracing::warn!(
                hint = "set GEOLEDGER_AUTH_TOKENS_FILE or a GEOLEDGER_AUTH_JWT_* key",
                "writes are open to anyone who reaches this port: no authentication configured"
            );
        }
        let publisher = Publisher::connect(
            &config.nats,
            Duration::from_millis(config.ack_timeout_ms),
            Duration::from_secs(config.idempotency_ttl_secs),
        )
        .await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let router = http::router(
            publisher.clone(),
            http::Limits {
                body: config.body_limit,
                body_timeout: Duration::from_secs(config.body_timeout_secs),
            },
            auth,
        );
        Ok(Self {
            listener,
            router,
            publisher,
        })
    }

    /// The address actually bound (useful with port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// The publisher this app writes through.
    #[must_use]
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(http.addr = %self.local_addr(), "listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP")?;
        self.publisher.flush().await;
        Ok(())
    }
}

#[cfg(test)]
mod config_tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::Config;

    #[test]
    fn the_command_line_is_well_formed_and_every_setting_has_a_default() {
        Config::command().debug_assert();
        Config::try_parse_from(["command-api"]).expect("no flag is required");
    }
}
