//! projector: keeps the PostGIS read model in step with the event stream.
//!
//! It pulls events in batches from a durable JetStream consumer, applies each batch and
//! advances its checkpoint in one database transaction, and only then acknowledges the
//! messages. A crash anywhere in between leaves either the whole batch applied with its
//! checkpoint, or none of it; redelivered events at or below the checkpoint are skipped, and
//! row versions make a repeated event a no-op even above it.
//!
//! Only one projector writes a projection at a time (see `leader`); more instances stand by.

mod apply;
mod consume;
mod dead_letter;
mod leader;
mod metrics;
mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;

use geoledger_common::config::{DatabaseConfig, NatsConfig};
use geoledger_common::telemetry::LogFormat;

pub use crate::apply::{CHECKPOINT_CHANNEL, PROJECTION, read_checkpoint};
pub use crate::consume::Progress;
pub use crate::dead_letter::DeadLetter;

/// Everything the projector can be told, from flags or `GEOLEDGER_*` variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "projector",
    version,
    about = "geoledger's projector: events into PostGIS"
)]
pub struct Config {
    /// What to do; without a command the projector runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Where NATS is and which stream to read.
    #[command(flatten)]
    pub nats: NatsConfig,
    /// Where the read model lives.
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// Address to serve `/status` and `/metrics` on.
    #[arg(long, env = "GEOLEDGER_LISTEN", default_value = "127.0.0.1:8070")]
    pub listen: SocketAddr,
    /// Log line format.
    #[arg(long, env = "GEOLEDGER_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// Name of the durable JetStream consumer.
    #[arg(long, env = "GEOLEDGER_CONSUMER", default_value = "points-projector")]
    pub consumer: String,
    /// Most events applied in one transaction.
    #[arg(long, env = "GEOLEDGER_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: usize,
}

/// What the projector binary can be asked to do besides running.
#[derive(Debug, Clone, Copy, clap::Subcommand)]
pub enum Command {
    /// Apply the database migrations and exit.
    Migrate,
    /// Empty the read model and its checkpoint, then run: every event is replayed from the
    /// start of the stream. Stop any running projector first.
    Rebuild,
    /// Print the dead letters, one JSON object a line, oldest first.
    DeadLetters,
    /// Apply a parked point's dead letters in order and unpark it.
    Redrive {
        /// The parked point.
        point: uuid::Uuid,
        /// Skip dead letters that still do not decode instead of refusing.
        #[arg(long)]
        skip_undecodable: bool,
    },
}

impl Config {
    /// Defaults with the given connections, listening on `listen`: for tests and tools.
    #[must_use]
    pub fn new(nats: NatsConfig, database: DatabaseConfig, listen: SocketAddr) -> Self {
        Self {
            command: None,
            nats,
            database,
            listen,
            log_format: LogFormat::Text,
            consumer: "points-projector".to_owned(),
            batch_size: 500,
        }
    }
}

/// Connects lazily, so the projector starts (and reports 503) while PostgreSQL is down.
fn pool(config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    let options = config
        .url
        .expose()
        .parse()
        .context("parsing the database URL")?;
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options))
}

/// Applies the migrations in `migrations/`, which are compiled into the binary.
///
/// # Errors
/// When the database is unreachable or a migration fails.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("../migrations")
        .run(pool)
        .await
        .context("applying migrations")?;
    tracing::info!("migrations applied");
    Ok(())
}

/// The `migrate` command.
///
/// # Errors
/// As [`migrate`].
pub async fn migrate_only(config: &Config) -> anyhow::Result<()> {
    migrate(&pool(&config.database)?).await
}

/// The first half of the `rebuild` command: empties the read model and resets the checkpoint
/// in one transaction, so readers see either the old projection or an empty one.
///
/// # Errors
/// When the database is unreachable.
pub async fn reset_projection(config: &Config) -> anyhow::Result<()> {
    let pool = pool(&config.database)?;
    migrate(&pool).await?;
    let Some(mut session) = leader::try_lead(&pool).await? else {
        anyhow::bail!("a projector is running against this database; stop it before rebuilding");
    };
    apply::reset(&mut session).await?;
    tracing::info!(
        projection = PROJECTION,
        "projection reset; replaying from the first event"
    );
    Ok(())
}

async fn dead_letter_handle(config: &Config) -> anyhow::Result<dead_letter::DeadLetters> {
    let client = async_nats::connect(config.nats.url.as_str())
        .await
        .with_context(|| format!("connecting to NATS at {}", config.nats.url))?;
    let letters = dead_letter::DeadLetters::new(jetstream::new(client), config.nats.stream_spec());
    letters.ensure().await?;
    Ok(letters)
}

/// The dead letters of the configured stream, oldest first.
///
/// # Errors
/// When NATS is unreachable.
pub async fn dead_letters(config: &Config) -> anyhow::Result<Vec<DeadLetter>> {
    dead_letter_handle(config).await?.list(None).await
}

/// The `redrive` command: applies a parked point's dead letters in stream order and unparks
/// it. Returns how many events changed the read model.
///
/// # Errors
/// When a dead letter still does not decode (unless `skip_undecodable`), or NATS or
/// PostgreSQL fails; nothing is applied then.
pub async fn redrive(
    config: &Config,
    point: uuid::Uuid,
    skip_undecodable: bool,
) -> anyhow::Result<u64> {
    let pool = pool(&config.database)?;
    dead_letter_handle(config)
        .await?
        .redrive(&pool, point, skip_undecodable)
        .await
}

/// A projector bound to its status port.
pub struct App {
    listener: TcpListener,
    config: Config,
    pool: PgPool,
    progress: Arc<Progress>,
}

impl App {
    /// Binds the status port and prepares the pool; connecting happens in `run_until`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = pool(&config.database)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Ok(Self {
            listener,
            config,
            pool,
            progress: Arc::new(Progress::default()),
        })
    }

    /// The address `/status` is served on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// Counters the running projector updates.
    #[must_use]
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    /// Migrates, then projects until `shutdown` resolves. The batch in flight is finished and
    /// acknowledged before returning.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });

        let client = async_nats::ConnectOptions::new()
            .name("geoledger-projector")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|attempts| {
                (Duration::from_millis(100) * u32::try_from(attempts).unwrap_or(u32::MAX))
                    .min(Duration::from_secs(2))
            })
            .connect(self.config.nats.url.as_str())
            .await
            .with_context(|| format!("connecting to NATS at {}", self.config.nats.url))?;

        let mut registry = geoledger_common::metrics::registry();
        let metrics =
            metrics::ProjectorMetrics::register(&mut registry, Arc::clone(&self.progress));
        geoledger_common::metrics::PoolCollector::register(&mut registry, self.pool.clone());
        let status = status::router(status::StatusState {
            pool: self.pool.clone(),
            client: client.clone(),
            spec: self.config.nats.stream_spec(),
            consumer: self.config.consumer.clone(),
            progress: Arc::clone(&self.progress),
            registry: Arc::new(registry),
            metrics: metrics.clone(),
        });
        tracing::info!(http.addr = %self.local_addr(), "status listening");
        let mut http_stop = stop_rx.clone();
        let http = tokio::spawn(
            axum::serve(self.listener, status)
                .with_graceful_shutdown(async move {
                    let _ = http_stop.wait_for(|stop| *stop).await;
                })
                .into_future(),
        );

        let worker = consume::Worker {
            client,
            pool: self.pool,
            spec: self.config.nats.stream_spec(),
            consumer: self.config.consumer,
            batch_size: self.config.batch_size,
            progress: self.progress,
            metrics,
        };
        worker.run(stop_rx).await;
        http.await
            .context("joining the status server")?
            .context("serving /status")?;
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
        Config::try_parse_from(["projector"]).expect("no flag is required");
    }
}
