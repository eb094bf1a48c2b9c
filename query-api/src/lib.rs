//! query-api: the read side. It answers reads from the PostGIS read model that the projector
//! keeps, and never changes that model or its schema (the projector runs the migrations). Any
//! number of instances can run against one database.
//!
//! It serves `/points` (plain JSON or GeoJSON), OGC API – Features Part 1 for GIS clients
//! (`/`, `/conformance`, `/collections/points/items`, …) and, at `/api`, an OpenAPI 3.0
//! description of both services.

mod error;
mod http;

use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::TcpListener;

use geoledger_common::auth::{AuthConfig, Authenticator};
use geoledger_common::config::{DatabaseConfig, SecretUrl};
use geoledger_common::telemetry::LogFormat;

pub use crate::http::{BoxScan, INDEXED_BOX_SHARE, Limits, page_box_scan, page_statement, router};

/// Settings of every database session query-api opens, public so that the read benchmark
/// explains its statements under the same ones.
///
/// PostGIS declares its functions expensive, so a radius search of a few hundred kilometres
/// is estimated above `jit_above_cost`; compiling it then took longer (0.6-0.9 s) than running
/// it. Reads here are short, so JIT never pays off. Parallel workers likewise: a large bbox
/// page walks the primary key for 0.4 ms, but starting two workers for it took 50-120 ms (the
/// read benchmark at 1M rows).
pub const SESSION_OPTIONS: [(&str, &str); 2] =
    [("jit", "off"), ("max_parallel_workers_per_gather", "0")];

/// Points `GET /points` returns when the request names no `limit`.
pub const DEFAULT_LIMIT: u32 = 100;
/// Most points one `GET /points` returns; a larger `limit` is lowered to this.
pub const MAX_LIMIT: u32 = 1000;
/// Largest `radius` of `GET /points?near=…`, in metres. A page of a radius search re-reads
/// the points of the pages before it, so the cap bounds how much work the deepest page of a
/// walk can ask for; see the `/points` module for the measured cost.
pub const MAX_RADIUS_METRES: f64 = 1_000_000.0;
/// Longest a request may take before it is answered 503, in seconds.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 10;
/// How long a page read from the database is answered again from memory, at most, in
/// milliseconds.
pub const DEFAULT_PAGE_CACHE_TTL_MS: u64 = 1000;

/// How long a request waits for a pooled connection before it is answered 503. Short, so
/// that a database outage turns into quick 503s rather than requests piling up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything query-api can be told, from flags or `GEOLEDGER_*` variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "query-api", version, about = "geoledger's read side")]
pub struct Config {
    /// Where the read model is.
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// Address to serve HTTP on.
    #[arg(long, env = "GEOLEDGER_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Probe the running instance's `GET /status` on the listen address and exit: 0 when it
    /// answers 200. For container health checks, as the image has no HTTP client.
    #[arg(long)]
    pub healthcheck: bool,
    /// Log line format.
    #[arg(long, env = "GEOLEDGER_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// Points `GET /points` returns when the request names no `limit`.
    #[arg(
        long,
        env = "GEOLEDGER_DEFAULT_LIMIT",
        default_value_t = DEFAULT_LIMIT,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub default_limit: u32,
    /// Most points one `GET /points` returns; a larger `limit` is lowered to this.
    #[arg(
        long,
        env = "GEOLEDGER_MAX_LIMIT",
        default_value_t = MAX_LIMIT,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub max_limit: u32,
    /// Longest a request may take before it is answered 503, in seconds.
    #[arg(
        long,
        env = "GEOLEDGER_REQUEST_TIMEOUT_SECS",
        default_value_t = DEFAULT_REQUEST_TIMEOUT_SECS,
        value_parser = clap::value_parser!(u64).range(1..),
    )]
    pub request_timeout_secs: u64,
    /// How long a page of `GET /points` or the OGC items, once read from the database, may be
    /// answered again from memory while the projection has not moved, in milliseconds: the
    /// most a reader can lag a change the checkpoint does not show. 0 turns the cache off.
    #[arg(
        long,
        env = "GEOLEDGER_PAGE_CACHE_TTL_MS",
        default_value_t = DEFAULT_PAGE_CACHE_TTL_MS
    )]
    pub page_cache_ttl_ms: u64,
    /// Who may read: only with `--auth-reads` do reads need a token (the write settings are
    /// accepted and ignored, so that both APIs can be given the same environment).
    #[command(flatten)]
    pub auth: AuthConfig,
}

impl Config {
    /// Defaults with the given database, listening on `listen`: for tools that embed
    /// query-api rather than parse a command line.
    #[must_use]
    pub fn new(database: DatabaseConfig, listen: SocketAddr) -> Self {
        Self {
            database,
            listen,
            healthcheck: false,
            log_format: LogFormat::Text,
            default_limit: DEFAULT_LIMIT,
            max_limit: MAX_LIMIT,
            request_timeout_secs: DEFAULT_REQUEST_TIMEOUT_SECS,
            page_cache_ttl_ms: DEFAULT_PAGE_CACHE_TTL_MS,
            auth: AuthConfig::default(),
        }
    }

    /// Defaults with the read model at `database_url` and a small pool, listening on `listen`
    /// (port 0 picks a free port): for tests that start one instance per test database.
    #[must_use]
    pub fn for_tests(database_url: &str, listen: SocketAddr) -> Self {
        let Ok(url) = SecretUrl::from_str(database_url);
        Self::new(
            DatabaseConfig {
                url,
                max_connections: 4,
            },
            listen,
        )
    }
}

/// A query-api bound to its port, with a pool that connects on first use.
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    pool: PgPool,
}

impl App {
    /// Checks the configuration, binds the listener and sets up the connection pool. The pool
    /// connects lazily, so the service starts while PostgreSQL is down and answers 503 until
    /// it is up.
    ///
    /// # Errors
    /// An inconsistent limit pair, a database URL that does not parse, or a listen address
    /// that cannot be bound.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let limits = Limits::new(config.default_limit, config.max_limit)
            .context("the default limit must not exceed the maximum limit")?;
        let auth = Authenticator::from_config(&config.auth).context("setting up authentication")?;
        if auth.enabled() && config.auth.auth_reads {
            tracing::info!(auth = ?auth, "reads need a bearer token");
        }
        let connect_options = PgConnectOptions::from_str(config.database.url.expose())
            .context("parsing the database URL")?
            .application_name("query-api")
            .options(SESSION_OPTIONS);
        let pool = PgPoolOptions::new()
            .max_connections(config.database.max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(connect_options);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        let request_timeout = Duration::from_secs(config.request_timeout_secs);
        let page_cache_ttl = Duration::from_millis(config.page_cache_ttl_ms);
        let router = router(pool.clone(), limits, request_timeout, page_cache_ttl, auth);
        Ok(Self {
            listener,
            local_addr,
            router,
            pool,
        })
    }

    /// The address actually bound (useful with port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight (each bounded by
    /// the request timeout) and closes the pool.
    ///
    /// # Errors
    /// An I/O error of the HTTP server.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(http.addr = %self.local_addr, "listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP")?;
        self.pool.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn a_zero_limit_on_the_command_line_is_refused() {
        let parsed = Config::try_parse_from(["query-api", "--max-limit", "0"]);
        assert!(parsed.is_err());
    }

    #[tokio::test]
    async fn a_default_above_the_maximum_stops_the_start() {
        let mut config =
            Config::for_tests("postgres://x@127.0.0.1:1/x", "127.0.0.1:0".parse().unwrap());
        config.default_limit = 50;
        config.max_limit = 10;
        assert!(App::build(config).await.is_err());
    }

    #[tokio::test]
    async fn the_service_starts_on_a_free_port_without_a_database() {
        let config =
            Config::for_tests("postgres://x@127.0.0.1:1/x", "127.0.0.1:0".parse().unwrap());
        let app = App::build(config).await.unwrap();
        assert_ne!(app.local_addr().port(), 0);
    }
}

#[cfg(test)]
mod config_tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::Config;

    #[test]
    fn the_command_line_is_well_formed_and_every_setting_has_a_default() {
        Config::command().debug_assert();
        Config::try_parse_from(["query-api"]).expect("no flag is required");
    }
}
