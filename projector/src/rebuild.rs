//! `rebuild`: a new read model built beside the live one, then swapped in.
//!
//! The stream is replayed from its first event into shadow tables (`points_rebuild` and its
//! companions, with their own checkpoint row `points/rebuild`) while query-api keeps reading
//! `points` and the live projector keeps writing it. The shadow is bulk-loaded with only its
//! primary key; the secondary indexes (the spatial ones above all) are built once the load is
//! done, which is far cheaper than growing them row by row. Before the others, the planar
//! spatial index is built and `points` rewritten in its order ([`CLUSTER_INDEX`]), so that a
//! rebuilt table keeps neighbouring points on the same pages.
//!
//! The swap is one transaction that holds the live checkpoint row's lock, so the live
//! projector cannot commit a batch meanwhile:
//!
//! 1. lock the live checkpoint row and read it (C);
//! 2. bring the shadow up to C at least (it usually is already), in committed batches;
//! 3. take the live tables' exclusive locks, grant on each shadow table what its live table
//!    grants (the services' roles would be locked out otherwise), drop the live tables and
//!    rename the shadow tables and their indexes to the live names;
//! 4. set the live checkpoint to the shadow's, which is C or later, and commit.
//!
//! Every event the live projector applied is in the shadow by then, and the live projector's
//! next batch, once the lock is released, skips what is at or below the new checkpoint: its
//! consumer carries on from there. A reader sees the old tables or the new ones, never a half
//! of each. If a reader holds the old tables too long, taking their locks times out, the
//! transaction is abandoned (readers queued behind it go on) and the swap is tried again.
//!
//! Interrupted (Ctrl-C, kill -9), a rebuild leaves its shadow and checkpoint as of its last
//! committed batch, and the next `rebuild` resumes from there.
//!
//! # Limitations
//!
//! - A reader whose transaction took its snapshot before the shadow's last batch committed and
//!   reads `points` only after the swap sees the new table without that batch: a complete
//!   projection, a few events older than the one it read a moment before. query-api's
//!   transactions are a few milliseconds long, so this needs a reader stalled across the swap.
//! - The shadow is built from the live tables' definitions when the rebuild starts. A
//!   migration applied meanwhile makes the swap refuse (the columns differ); `--restart` then
//!   starts again from the new definitions.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use sqlx::{Connection as _, PgConnection, PgPool};
use tokio::sync::watch;

use geoledger_common::stream::StreamSpec;

use crate::apply::{self, PROJECTION, Tables};
use crate::dead_letter::DeadLetters;
use crate::feed;
use crate::progress::{self, Meter};
use crate::replay::{Letters, Replayer, Run, Source};

/// The shadow tables' names are the live ones with this suffix, and so are their indexes'.
pub(crate) const SUFFIX: &str = "_rebuild";

/// The shadow's checkpoint row in `projection_checkpoint`.
pub const SHADOW_CHECKPOINT: &str = "points/rebuild";

/// The advisory lock one rebuild at a time holds (the live projector holds another).
const REBUILD_LOCK_KEY: i64 = 0x6765_6f6c_7265_6275;

/// Longest the swap holds the live projector back while the shadow catches up with it; past
/// it the swap steps back, the shadow catches up unhindered, and the swap is tried again.
const SWAP_CATCH_UP_LIMIT: Duration = Duration::from_secs(10);

/// How long the swap waits for a lock before giving way to the readers and trying again.
const SWAP_LOCK_TIMEOUT: &str = "2s";

/// Memory for each index build. The default 64 MB makes the spatial index builds of a million
/// points spill to disk; 256 MB keeps them in memory.
pub const INDEX_BUILD_MEMORY: &str = "256MB";

/// The index of `points` whose order a rebuilt table is laid out in: the planar `GiST` index on
/// `geom`. PostgreSQL builds it by sorting the points along a space-filling curve, so its
/// leaves, and the rows rewritten in their order, keep neighbours together.
///
/// Why: a table grown by the live projector holds its rows in arrival order, so the hundred
/// rows of a city's box or of a radius lie on a hundred different pages, and the geography
/// index, grown row by row in that order, has boxes that overlap widely. At a million points,
/// rewriting the rows in this order took a 10 km radius page from 0.95 ms to 0.45 ms in the
/// database and a Paris box from 300 pages read to 19 (`make bench` prints both layouts). A
/// rebuild is thus also the way to restore that layout on a table that has grown out of it,
/// without the exclusive lock a `CLUSTER` of the live table would hold for its whole run.
pub const CLUSTER_INDEX: &str = "points_geom_gist";

/// A statement building the index `definition` describes (as `pg_get_indexdef` gives it), but
/// named `name` and on `table`, unless an index of that name is there already; `None` when
/// the definition does not have the expected shape.
#[must_use]
pub fn index_statement(definition: &str, name: &str, table: &str) -> Option<String> {
    // pg_get_indexdef gives `CREATE [UNIQUE] INDEX name ON table USING method (...)`.
    let (head, method) = definition.split_once(" USING ")?;
    let unique = if head.starts_with("CREATE UNIQUE") {
        "UNIQUE "
    } else {
        ""
    };
    Some(format!(
        "CREATE {unique}INDEX IF NOT EXISTS {name} ON {table} USING {method}"
    ))
}

/// Runs `statements` (index name, `CREATE INDEX` statement) on `table`, with
/// [`INDEX_BUILD_MEMORY`] for each build. When `cluster_on` names one of them, that one is
/// built first and the table rewritten in its order (`CLUSTER`, unless the table already is
/// clustered on it, as after an interrupted rebuild), so that the others are built once, over
/// the rewritten rows: `CLUSTER` rebuilds every index the table has at the time. Returns the
/// time the rewrite took.
///
/// `CLUSTER` holds an exclusive lock on `table` throughout: for a shadow table or a
/// benchmark's, never for the live one.
///
/// # Errors
/// The first statement that fails, named.
pub async fn build_indexes(
    conn: &mut PgConnection,
    table: &str,
    mut statements: Vec<(String, String)>,
    cluster_on: Option<&str>,
) -> anyhow::Result<Duration> {
    sqlx::query(&format!(
        "SET maintenance_work_mem = '{INDEX_BUILD_MEMORY}'"
    ))
    .execute(&mut *conn)
    .await?;
    let first = cluster_on.and_then(|index| statements.iter().position(|(name, _)| name == index));
    let mut rewrite = Duration::ZERO;
    if let Some(at) = first {
        let (index, statement) = statements.remove(at);
        build_index(conn, &index, &statement).await?;
        let clustered: bool = sqlx::query_scalar(
            "SELECT indisclustered FROM pg_index WHERE indexrelid = to_regclass($1)",
        )
        .bind(&index)
        .fetch_one(&mut *conn)
        .await?;
        if !clustered {
            let started = Instant::now();
            sqlx::query(&format!("CLUSTER {table} USING {index}"))
                .execute(&mut *conn)
                .await
                .with_context(|| format!("rewriting {table} in the order of {index}"))?;
            rewrite = started.elapsed();
            tracing::debug!(
                elapsed_secs = rewrite.as_secs_f64(),
                "{table} laid out in the order of {index}"
            );
        }
    }
    for (index, statement) in statements {
        build_index(conn, &index, &statement).await?;
    }
    Ok(rewrite)
}

async fn build_index(conn: &mut PgConnection, index: &str, statement: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    sqlx::query(statement)
        .execute(&mut *conn)
        .await
        .with_context(|| format!("building {index}"))?;
    tracing::debug!(
        db.index = %index,
        elapsed_secs = started.elapsed().as_secs_f64(),
        "index built"
    );
    Ok(())
}

/// Each live table of the projection with its shadow, in the order they are locked.
fn table_pairs() -> [(String, String); 3] {
    let (live, shadow) = (Tables::live(), shadow_tables());
    [
        (live.points, shadow.points),
        (live.tombstones, shadow.tombstones),
        (live.parked, shadow.parked),
    ]
}

/// What `rebuild` is asked for.
#[derive(Debug, Clone, clap::Args)]
pub struct RebuildArgs {
    /// Events per transaction while loading the shadow tables.
    #[arg(long, default_value_t = 10_000)]
    pub batch_size: usize,
    /// Throw away an interrupted rebuild's shadow tables and start from the first event.
    #[arg(long)]
    pub restart: bool,
}

/// What a `rebuild` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    /// The sequence the shadow started from (0, or where an interrupted rebuild stopped).
    pub resumed_from: u64,
    /// The live checkpoint after the swap, or the shadow's if interrupted.
    pub checkpoint: u64,
    /// Events read by this run.
    pub events: u64,
    /// Points in the new read model (0 if interrupted).
    pub points: u64,
    /// Whether the new tables are live; false when the stop signal came first.
    pub swapped: bool,
    /// How long this run took, and the part spent building indexes.
    pub elapsed: Duration,
    /// Time spent building the secondary indexes.
    pub indexing: Duration,
}

impl RebuildReport {
    /// Events read per second of the whole run, index building included.
    #[must_use]
    pub fn events_per_sec(&self) -> f64 {
        progress::rate(self.events, self.elapsed)
    }
}

fn shadow_tables() -> Tables {
    let live = Tables::live();
    Tables {
        points: format!("{}{SUFFIX}", live.points),
        tombstones: format!("{}{SUFFIX}", live.tombstones),
        parked: format!("{}{SUFFIX}", live.parked),
    }
}

/// Runs a rebuild to its swap, or until `stop` turns true.
pub(crate) async fn rebuild(
    pool: &PgPool,
    js: &jetstream::Context,
    spec: &StreamSpec,
    args: &RebuildArgs,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<RebuildReport> {
    let started = Instant::now();
    let mut conn = pool.acquire().await?.detach();
    let alone: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(REBUILD_LOCK_KEY)
        .fetch_one(&mut conn)
        .await?;
    anyhow::ensure!(alone, "another rebuild is running against this database");
    if args.restart {
        drop_shadow(&mut conn).await?;
    }
    let resumed_from = prepare_shadow(&mut conn).await?;
    // The checkpoint before the head: the live projector keeps projecting meanwhile, and a
    // checkpoint read after the head could be past it without being from another stream.
    let live = apply::checkpoint_of(&mut conn, PROJECTION)
        .await?
        .unwrap_or(0);
    let head = feed::head(js, spec).await?;
    // The shadow could never catch up with such a checkpoint, and the swap would wait for it
    // holding the live projector back.
    anyhow::ensure!(
        live <= head,
        "the read model is at sequence {live} but the stream {} ends at {head}: \
         it was projected from another stream",
        spec.name
    );
    if resumed_from > 0 {
        tracing::info!(
            rebuild.from = resumed_from,
            rebuild.target = head,
            "rebuild resumed"
        );
    } else {
        tracing::info!(rebuild.target = head, "rebuild started");
    }

    let letters = DeadLetters::new(js.clone(), spec.clone());
    letters.ensure().await?;
    let source = Source {
        js,
        spec,
        batch_size: args.batch_size,
    };
    let mut replayer = Replayer::open(
        conn,
        shadow_tables(),
        Some(SHADOW_CHECKPOINT.to_owned()),
        resumed_from,
        &source,
        Letters::Publish(Box::new((letters, std::collections::HashMap::new()))),
    )
    .await?;
    let mut meter = Meter::new("rebuild", resumed_from, head);
    let interrupted = |replayer: &Replayer, meter: Meter| {
        meter.finish();
        Ok(RebuildReport {
            resumed_from,
            checkpoint: replayer.checkpoint,
            events: replayer.events,
            points: 0,
            swapped: false,
            elapsed: started.elapsed(),
            indexing: Duration::ZERO,
        })
    };

    if replayer.run_to(head, &mut meter, stop).await? == Run::Stopped {
        return interrupted(&replayer, meter);
    }
    meter.phase("building indexes");
    let indexing = Instant::now();
    build_shadow_indexes(&mut replayer.conn).await?;
    let indexing = indexing.elapsed();

    let Some(checkpoint) =
        catch_up_and_swap(pool, js, spec, &mut replayer, &mut meter, stop).await?
    else {
        return interrupted(&replayer, meter);
    };
    meter.finish();
    let points: i64 = sqlx::query_scalar("SELECT count(*) FROM points")
        .fetch_one(&mut replayer.conn)
        .await?;
    let elapsed = started.elapsed();
    tracing::info!(
        checkpoint,
        rebuild.events = replayer.events,
        rebuild.points = points,
        rebuild.events_per_sec = progress::whole(progress::rate(replayer.events, elapsed)),
        rebuild.indexing_secs = indexing.as_secs_f64(),
        "rebuild swapped in"
    );
    Ok(RebuildReport {
        resumed_from,
        checkpoint,
        events: replayer.events,
        points: points as u64,
        swapped: true,
        elapsed,
        indexing,
    })
}

/// Catches the shadow up with the stream and swaps it in, trying again while the swap gives
/// way; returns the new live checkpoint, or `None` when the stop signal came first.
async fn catch_up_and_swap(
    pool: &PgPool,
    js: &jetstream::Context,
    spec: &StreamSpec,
    replayer: &mut Replayer,
    meter: &mut Meter,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Option<u64>> {
    loop {
        // Whatever arrived while the indexes were built (or while a swap waited) first, so
        // the swap itself has little or nothing left to apply.
        let head = feed::head(js, spec).await?;
        meter.retarget(head);
        if replayer.run_to(head, meter, stop).await? == Run::Stopped {
            return Ok(None);
        }
        meter.phase("swapping");
        match swap(pool, replayer, meter, stop).await? {
            Swap::Done(checkpoint) => return Ok(Some(checkpoint)),
            Swap::Stopped => return Ok(None),
            Swap::Busy => {
                tracing::warn!(
                    "the swap could not take its locks or catch up in time; trying again"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

enum Swap {
    Done(u64),
    Busy,
    Stopped,
}

/// The swap transaction (see the module's documentation).
async fn swap(
    pool: &PgPool,
    replayer: &mut Replayer,
    meter: &mut Meter,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Swap> {
    let mut live = pool.begin().await?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'"))
        .execute(&mut *live)
        .await?;
    let live_checkpoint = match apply::lock_checkpoint(&mut live, PROJECTION).await {
        Ok(seq) => seq,
        Err(error) if is_lock_timeout(&error) => return Ok(Swap::Busy),
        Err(error) => return Err(error).context("locking the live checkpoint"),
    };
    // The live projector is held at `live_checkpoint` from here on, so not for long.
    meter.retarget(live_checkpoint);
    let deadline = Instant::now() + SWAP_CATCH_UP_LIMIT;
    match replayer
        .run_until(live_checkpoint, Some(deadline), meter, stop)
        .await?
    {
        Run::Stopped => return Ok(Swap::Stopped),
        Run::TimedOut => return Ok(Swap::Busy),
        Run::Reached | Run::Ended => {}
    }
    for (live_table, shadow_table) in &table_pairs() {
        let (a, b) = (
            columns(&mut live, live_table).await?,
            columns(&mut live, shadow_table).await?,
        );
        anyhow::ensure!(
            a == b,
            "{live_table} changed since the rebuild started ({a} became {b}); \
             run `projector rebuild --restart`"
        );
    }
    if let Err(error) = sqlx::query(&format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        table_pairs().map(|(live, _)| live).join(", ")
    ))
    .execute(&mut *live)
    .await
    {
        if is_lock_timeout(&error) {
            return Ok(Swap::Busy);
        }
        return Err(error).context("locking the live tables");
    }
    for (live_table, shadow_table) in &table_pairs() {
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT indexname::text FROM pg_indexes
             WHERE schemaname = current_schema() AND tablename = $1",
        )
        .bind(shadow_table)
        .fetch_all(&mut *live)
        .await?;
        copy_grants(&mut live, live_table, shadow_table)
            .await
            .with_context(|| format!("granting on {shadow_table} what {live_table} grants"))?;
        sqlx::query(&format!("DROP TABLE {live_table}"))
            .execute(&mut *live)
            .await?;
        sqlx::query(&format!(
            "ALTER TABLE {shadow_table} RENAME TO {live_table}"
        ))
        .execute(&mut *live)
        .await?;
        for index in indexes {
            if let Some(name) = index.strip_suffix(SUFFIX) {
                sqlx::query(&format!("ALTER INDEX {index} RENAME TO {name}"))
                    .execute(&mut *live)
                    .await?;
            }
        }
    }
    let checkpoint = replayer.checkpoint.max(live_checkpoint);
    apply::set_checkpoint(&mut live, PROJECTION, checkpoint).await?;
    sqlx::query("DELETE FROM projection_checkpoint WHERE projection = $1")
        .bind(SHADOW_CHECKPOINT)
        .execute(&mut *live)
        .await?;
    apply::announce(&mut live, checkpoint).await?;
    live.commit().await.context("committing the swap")?;
    Ok(Swap::Done(checkpoint))
}

fn is_lock_timeout(error: &sqlx::Error) -> bool {
    // 55P03 lock_not_available: what lock_timeout raises.
    error
        .as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .is_some_and(|code| code == "55P03")
}

/// Grants on `to` every privilege `from` grants to roles other than its owner. A new table
/// carries no grants of its own (the migrations set no default privileges), so without this
/// the services' roles (`geoledger_reader`, `geoledger_projector`) would meet "permission
/// denied" on the tables swapped in. Copied at the swap rather than when the shadow is made,
/// so a grant given while a rebuild ran, or a shadow made before grants existed, is carried
/// over too.
async fn copy_grants(conn: &mut PgConnection, from: &str, to: &str) -> Result<(), sqlx::Error> {
    let grants: Vec<String> = sqlx::query_scalar(
        "SELECT format('GRANT %s ON %I TO %s%s', a.privilege_type, $2::text,
                       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END,
                       CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
         FROM pg_class c
         CROSS JOIN LATERAL aclexplode(c.relacl) a
         LEFT JOIN pg_roles r ON r.oid = a.grantee
         WHERE c.oid = to_regclass($1) AND a.grantee <> c.relowner
         ORDER BY 1",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    for grant in grants {
        sqlx::query(&grant).execute(&mut *conn).await?;
    }
    Ok(())
}

/// A table's columns with their types, in order: what a swap must keep the same.
async fn columns(conn: &mut PgConnection, table: &str) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', '
                           ORDER BY attnum)
         FROM pg_attribute
         WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
    )
    .bind(table)
    .fetch_one(conn)
    .await
}

/// Creates the shadow tables and their checkpoint if they are not there; returns the
/// shadow's checkpoint. Leftovers without a checkpoint (a crash while creating them) are
/// dropped first.
async fn prepare_shadow(conn: &mut PgConnection) -> anyhow::Result<u64> {
    if let Some(seq) = apply::checkpoint_of(&mut *conn, SHADOW_CHECKPOINT).await? {
        return Ok(seq);
    }
    drop_shadow(conn).await?;
    let mut tx = conn.begin().await?;
    for (live, shadow) in &table_pairs() {
        create_like(&mut tx, live, shadow, SUFFIX).await?;
    }
    apply::set_checkpoint(&mut tx, SHADOW_CHECKPOINT, 0).await?;
    tx.commit().await.context("creating the shadow tables")?;
    Ok(0)
}

async fn drop_shadow(conn: &mut PgConnection) -> anyhow::Result<()> {
    let shadow = shadow_tables();
    let mut tx = conn.begin().await?;
    sqlx::query(&format!(
        "DROP TABLE IF EXISTS {}, {}, {}",
        shadow.points, shadow.tombstones, shadow.parked
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM projection_checkpoint WHERE projection = $1")
        .bind(SHADOW_CHECKPOINT)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Creates `table` with the columns, defaults, checks and statistics targets of `like`, and
/// its primary and unique keys (named as `like`'s plus `suffix`), but none of its other
/// indexes.
pub(crate) async fn create_like(
    conn: &mut PgConnection,
    like: &str,
    table: &str,
    suffix: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "CREATE TABLE {table} (LIKE {like} INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                               INCLUDING STORAGE INCLUDING COMMENTS)"
    ))
    .execute(&mut *conn)
    .await?;
    // LIKE leaves out the per-column statistics targets, and query-api's box pages rely on
    // the small target of `geom` (migration 8) for cheap planning; the keys are named anew.
    let statements: Vec<String> = sqlx::query_scalar(
        "SELECT format('ALTER TABLE %s ALTER COLUMN %I SET STATISTICS %s',
                       $2::text, attname, attstattarget)
         FROM pg_attribute
         WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
           AND attstattarget >= 0
         UNION ALL
         SELECT format('ALTER TABLE %s ADD CONSTRAINT %s %s',
                       $2::text, conname || $3::text, pg_get_constraintdef(oid))
         FROM pg_constraint
         WHERE conrelid = to_regclass($1) AND contype IN ('p', 'u')",
    )
    .bind(like)
    .bind(table)
    .bind(suffix)
    .fetch_all(&mut *conn)
    .await?;
    for statement in statements {
        sqlx::query(&statement).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Builds on each shadow table the secondary indexes its live table has, from their own
/// definitions, `points` laid out in the order of [`CLUSTER_INDEX`], then refreshes the
/// planner's statistics. An index already there (a rebuild interrupted after building it) is
/// kept.
async fn build_shadow_indexes(conn: &mut PgConnection) -> anyhow::Result<()> {
    for (live, shadow) in &table_pairs() {
        let indexes: Vec<(String, String)> = sqlx::query_as(
            "SELECT i.relname::text, pg_get_indexdef(i.oid)
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
             WHERE x.indrelid = to_regclass($1)
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)
             ORDER BY i.relname",
        )
        .bind(live)
        .fetch_all(&mut *conn)
        .await?;
        let statements = indexes
            .into_iter()
            .map(|(name, definition)| {
                let name = format!("{name}{SUFFIX}");
                index_statement(&definition, &name, shadow)
                    .map(|statement| (name, statement))
                    .with_context(|| format!("unexpected index definition: {definition}"))
            })
            .collect::<anyhow::Result<_>>()?;
        let cluster_on = format!("{CLUSTER_INDEX}{SUFFIX}");
        build_indexes(conn, shadow, statements, Some(&cluster_on)).await?;
        sqlx::query(&format!("ANALYZE {shadow}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::index_statement;

    #[test]
    fn an_index_definition_is_renamed_and_moved_keeping_its_kind_and_method() {
        assert_eq!(
            index_statement(
                "CREATE UNIQUE INDEX points_pkey ON public.points USING btree (id)",
                "copy_0",
                "copy_bare"
            )
            .as_deref(),
            Some("CREATE UNIQUE INDEX IF NOT EXISTS copy_0 ON copy_bare USING btree (id)")
        );
        assert_eq!(
            index_statement(
                "CREATE INDEX points_geog_gist ON public.points USING gist (((geom)::geography))",
                "points_geog_gist_rebuild",
                "points_rebuild"
            )
            .as_deref(),
            Some(
                "CREATE INDEX IF NOT EXISTS points_geog_gist_rebuild ON points_rebuild \
                 USING gist (((geom)::geography))"
            )
        );
        assert_eq!(index_statement("CREATE INDEX x ON t (a)", "y", "u"), None);
    }
}
