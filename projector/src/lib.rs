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
mod feed;
mod fold;
mod inspect;
mod leader;
mod metrics;
mod progress;
mod rebuild;
mod replay;
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

use geoledger_common::config::{DatabaseConfig, NatsConfig, SecretUrl};
use geoledger_common::telemetry::LogFormat;

pub use crate::apply::{CHECKPOINT_CHANNEL, PROJECTION, read_checkpoint};
pub use crate::consume::Progress;
pub use crate::dead_letter::DeadLetter;
pub use crate::inspect::{ProjectionState, StatusReport, StreamState};
pub use crate::rebuild::{
    CLUSTER_INDEX, INDEX_BUILD_MEMORY, RebuildArgs, RebuildReport, SHADOW_CHECKPOINT,
    build_indexes, index_statement,
};
pub use crate::replay::{ReplayArgs, ReplayReport};

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
    /// PostgreSQL connection URL of the role that owns the read model's tables, for what
    /// needs DDL: migrations, `rebuild` and `replay`. Unset, `--database-url` does all of it,
    /// which then needs the owner's role. Set, the running projector connects with
    /// `--database-url` (a member of `geoledger_projector` is enough) and uses this one only
    /// when a migration is pending; the commands use this one throughout.
    #[arg(long, env = "GEOLEDGER_MIGRATE_DATABASE_URL")]
    pub migrate_database_url: Option<SecretUrl>,
    /// Address to serve `/status` and `/metrics` on.
    #[arg(long, env = "GEOLEDGER_LISTEN", default_value = "127.0.0.1:8070")]
    pub listen: SocketAddr,
    /// Probe the running instance's `GET /status` on the listen address and exit: 0 when it
    /// answers 200. For container health checks, as the image has no HTTP client.
    #[arg(long)]
    pub healthcheck: bool,
    /// Log line format.
    #[arg(long, env = "GEOLEDGER_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// Name of the durable JetStream consumer.
    #[arg(long, env = "GEOLEDGER_CONSUMER", default_value = "points-projector")]
    pub consumer: String,
    /// Most events applied in one transaction.
    #[arg(long, env = "GEOLEDGER_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: usize,
    /// Milliseconds to wait, once an event has arrived, for more to fill its batch before
    /// applying it. Every commit moves the checkpoint, which sends every cached page of
    /// query-api back to PostgreSQL; a short wait under a steady write rate turns a hundred
    /// small commits a second into a few dozen larger ones, for that much more delay until
    /// a write is readable. 0 applies whatever one fetch returns at once.
    #[arg(long, env = "GEOLEDGER_BATCH_LINGER_MS", default_value_t = DEFAULT_BATCH_LINGER_MS)]
    pub batch_linger_ms: u64,
}

/// The batch's wait for company. On 2 CPUs running the whole stack, the 80/20 list mix went
/// from 5,263 to 5,735 requests/s (p95 88 to 91 ms) without it to 7,351 to 8,433 (p95 51 to
/// 57 ms) with 20 ms, while a write at 2,000 a second became readable after 27 ms instead of
/// 6 ms at the median and 65 ms instead of 26 ms at p99 (`loadtests/README.md`).
pub const DEFAULT_BATCH_LINGER_MS: u64 = 20;

/// What the projector binary can be asked to do besides running.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Apply the database migrations and exit.
    Migrate,
    /// Show the stream's extent, each projection's checkpoint, pending events, lag and dead
    /// letters.
    Status {
        /// Print one JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Build the read model anew from the first event into shadow tables, then swap them in.
    ///
    /// The live tables keep serving reads, and a running projector keeps projecting, until
    /// the shadow has caught up with the stream; the swap is one transaction, after which the
    /// projector carries on from the new checkpoint. Interrupted (Ctrl-C, a crash), the next
    /// run resumes where this one stopped.
    Rebuild(RebuildArgs),
    /// Replay part of the stream into a table of its own, leaving the read model alone.
    ///
    /// The table holds the points as they were at a sequence (--to-seq) or at a moment
    /// (--as-of), with the columns of `points`.
    Replay(ReplayArgs),
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
            migrate_database_url: None,
            listen,
            healthcheck: false,
            log_format: LogFormat::Text,
            consumer: "points-projector".to_owned(),
            batch_size: 500,
            batch_linger_ms: DEFAULT_BATCH_LINGER_MS,
        }
    }
}

/// Connects lazily, so the projector starts (and reports 503) while PostgreSQL is down.
fn pool(config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    pool_at(&config.url, config.max_connections)
}

/// Settings of every session the projector opens.
///
/// `plan_cache_mode`: each batch looks its points up with `id = ANY($1)`, a prepared statement.
/// After five runs PostgreSQL may settle on one generic plan and keep it until the table's
/// statistics change. On a new read model that took a large first batch (the places a stack
/// loads), it settled on a sequential scan of the then small table, and kept it while bursts
/// of writes grew the table to 45,000 rows before autovacuum analysed it: 4,000 scans in 20 s
/// took 60 % of a CPU in PostgreSQL. A plan made for each run measures the table as it is and
/// takes the primary key; planning these few statements per batch costs tens of microseconds.
pub const SESSION_OPTIONS: [(&str, &str); 1] = [("plan_cache_mode", "force_custom_plan")];

fn pool_at(url: &SecretUrl, max_connections: u32) -> anyhow::Result<PgPool> {
    let options: sqlx::postgres::PgConnectOptions =
        url.expose().parse().context("parsing the database URL")?;
    let options = options.options(SESSION_OPTIONS);
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options))
}

/// The pool of the tables' owner, for the commands: `--migrate-database-url` when given.
fn owner_pool(config: &Config) -> anyhow::Result<PgPool> {
    match &config.migrate_database_url {
        Some(url) => pool_at(url, config.database.max_connections),
        None => pool(&config.database),
    }
}

/// Applies the migrations in `migrations/`, which are compiled into the binary.
///
/// # Errors
/// When the database is unreachable or a migration fails.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    // Through a pool of one connection of its own, closed afterwards however the run ends.
    // The migrator holds a session-level advisory lock while it works and returns without
    // releasing it when a migration fails (say, a role without the right to create tables).
    // Run on `pool`, the connection went back holding the lock, and the projector's next
    // attempt, on the pool's other connection, waited for it for good.
    let own = PgPoolOptions::new()
        .max_connections(1)
        .connect_with((*pool.connect_options()).clone())
        .await
        .context("connecting to apply migrations")?;
    let applied = sqlx::migrate!("../migrations").run(&own).await;
    own.close().await;
    applied.context("applying migrations")?;
    tracing::info!("migrations applied");
    Ok(())
}

/// Whether every migration compiled into the binary is applied, asked through `pool`, which
/// needs no more than SELECT on `_sqlx_migrations`; false when that table is missing.
async fn fully_migrated(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let applied: Vec<i64> =
        match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
        {
            Ok(applied) => applied,
            // 42P01 undefined_table: a database no migration has touched yet.
            Err(error)
                if error
                    .as_database_error()
                    .and_then(sqlx::error::DatabaseError::code)
                    .is_some_and(|code| code == "42P01") =>
            {
                return Ok(false);
            }
            Err(error) => return Err(error),
        };
    Ok(sqlx::migrate!("../migrations")
        .iter()
        .all(|migration| applied.contains(&migration.version)))
}

/// Applies the pending migrations through `owner` (or `pool` when there is no separate
/// owner), after checking through `pool` that any are pending: the running projector's own
/// role may read `_sqlx_migrations` but not create or alter anything.
///
/// # Errors
/// When the database is unreachable, or a migration is pending and the role that would apply
/// it may not.
pub(crate) async fn migrate_if_pending(
    pool: &PgPool,
    owner: Option<&PgPool>,
) -> anyhow::Result<()> {
    if fully_migrated(pool)
        .await
        .context("reading which migrations are applied")?
    {
        return Ok(());
    }
    migrate(owner.unwrap_or(pool)).await.context(
        "a migration is pending and needs the tables' owner: run `projector migrate` with \
         the owner's URL, or give the projector --migrate-database-url",
    )
}

/// The `migrate` command.
///
/// # Errors
/// As [`migrate`].
pub async fn migrate_only(config: &Config) -> anyhow::Result<()> {
    migrate(&owner_pool(config)?).await
}

/// A NATS connection for the commands, with the configured credentials.
async fn nats_client(config: &Config) -> anyhow::Result<async_nats::Client> {
    config
        .nats
        .connect_options()
        .await
        .context("preparing the NATS credentials")?
        .name("geoledger-projector-command")
        .connect(config.nats.url.as_str())
        .await
        .with_context(|| format!("connecting to NATS at {}", config.nats.url))
}

async fn jetstream(config: &Config) -> anyhow::Result<jetstream::Context> {
    Ok(jetstream::new(nats_client(config).await?))
}

/// A stop flag that turns true when `stop` resolves.
fn stop_flag(
    stop: impl Future<Output = ()> + Send + 'static,
) -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        let _ = tx.send(true);
    });
    rx
}

/// The `status` command.
///
/// # Errors
/// When NATS or PostgreSQL is unreachable, or the stream does not exist.
pub async fn status(config: &Config) -> anyhow::Result<StatusReport> {
    let pool = owner_pool(config)?;
    let js = jetstream(config).await?;
    inspect::status(&pool, &js, &config.nats.stream_spec()).await
}

/// The `rebuild` command (see [`Command::Rebuild`]). When `stop` resolves first, the batch in
/// flight is committed and the report says the rebuild was not swapped in; running it again
/// resumes.
///
/// # Errors
/// When another rebuild runs, the stream does not exist, NATS or PostgreSQL fails, or the live
/// tables' columns changed since the shadow was started.
pub async fn rebuild(
    config: &Config,
    args: &RebuildArgs,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<RebuildReport> {
    let pool = owner_pool(config)?;
    migrate(&pool).await?;
    let js = jetstream(config).await?;
    let stop = stop_flag(stop);
    rebuild::rebuild(&pool, &js, &config.nats.stream_spec(), args, &stop).await
}

/// The `replay` command (see [`Command::Replay`]).
///
/// # Errors
/// When the table name is not allowed or the table exists (without `replace`), or NATS or
/// PostgreSQL fails.
pub async fn replay(
    config: &Config,
    args: &ReplayArgs,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ReplayReport> {
    let pool = owner_pool(config)?;
    migrate(&pool).await?;
    let js = jetstream(config).await?;
    let conn = pool.acquire().await?.detach();
    let stop = stop_flag(stop);
    replay::replay(conn, &js, &config.nats.stream_spec(), args, &stop).await
}

async fn dead_letter_handle(config: &Config) -> anyhow::Result<dead_letter::DeadLetters> {
    let letters =
        dead_letter::DeadLetters::new(jetstream(config).await?, config.nats.stream_spec());
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
    let pool = owner_pool(config)?;
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
    /// The tables' owner, when it is another role than `pool`'s: for pending migrations.
    owner: Option<PgPool>,
    progress: Arc<Progress>,
}

impl App {
    /// Binds the status port and prepares the pool; connecting happens in `run_until`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = pool(&config.database)?;
        // One connection is enough for migrating; the pool is lazy, so one never needed is
        // never opened.
        let owner = config
            .migrate_database_url
            .as_ref()
            .map(|url| pool_at(url, 1))
            .transpose()?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Ok(Self {
            listener,
            config,
            pool,
            owner,
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
        let stop_rx = stop_flag(shutdown);

        let client = self
            .config
            .nats
            .connect_options()
            .await
            .context("preparing the NATS credentials")?
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
            owner: self.owner,
            spec: self.config.nats.stream_spec(),
            consumer: self.config.consumer,
            batch_size: self.config.batch_size,
            batch_linger: Duration::from_millis(self.config.batch_linger_ms),
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
