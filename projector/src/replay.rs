//! Replaying the stream into tables other than the live read model: the loop `rebuild` and
//! `replay` share, and the `replay` command itself (the points as they were at a sequence or a
//! moment, in a table of their own).
//!
//! Batches are large (thousands of events a transaction) and the rows go through the same
//! [`apply_events`] as the live projector's: only the batch size and the tables differ.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use chrono::{DateTime, Utc};
use sqlx::{Connection as _, PgConnection};
use tokio::sync::watch;
use uuid::Uuid;

use geoledger_common::stream::StreamSpec;

use crate::apply::{self, Dead, KnownIds, Tables, apply_events};
use crate::dead_letter::DeadLetters;
use crate::feed::{self, Feed};
use crate::progress::Meter;

/// What happens to messages a replay cannot project.
pub(crate) enum Letters {
    /// Sent to the dead-letter stream unless a letter for the same message is there already
    /// (the live projector sent it): the sequences already there are remembered per point.
    Publish(Box<(DeadLetters, HashMap<Uuid, HashSet<u64>>)>),
    /// Only counted: a `replay` writes nothing outside its table.
    Count,
}

/// How a run towards a target ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Run {
    /// The checkpoint reached the target.
    Reached,
    /// The stop signal came; the last batch was committed.
    Stopped,
    /// The deadline passed first; the last batch was committed.
    TimedOut,
    /// The replay reached its last sequence or its moment, before the target.
    Ended,
}

/// Applies the stream, batch by batch, to a set of tables on one connection.
pub(crate) struct Replayer {
    pub(crate) conn: PgConnection,
    tables: Tables,
    /// The checkpoint row kept with the tables, if any (a `replay` keeps none).
    checkpoint_key: Option<String>,
    feed: Feed,
    batch_size: usize,
    letters: Letters,
    known: KnownIds,
    /// The last sequence applied.
    pub(crate) checkpoint: u64,
    /// Events read and events that changed a point.
    pub(crate) events: u64,
    pub(crate) applied: u64,
    /// Messages that went (or would have gone) to the dead letters.
    pub(crate) dead_lettered: u64,
    /// Events stored after this moment are not applied.
    pub(crate) cutoff: Option<DateTime<Utc>>,
    /// Events after this sequence are not applied.
    pub(crate) last: u64,
}

/// Where a replayer reads from and writes to.
pub(crate) struct Source<'a> {
    pub(crate) js: &'a jetstream::Context,
    pub(crate) spec: &'a StreamSpec,
    pub(crate) batch_size: usize,
}

impl Replayer {
    pub(crate) async fn open(
        conn: PgConnection,
        tables: Tables,
        checkpoint_key: Option<String>,
        checkpoint: u64,
        source: &Source<'_>,
        letters: Letters,
    ) -> anyhow::Result<Self> {
        let mut conn = conn;
        let known = KnownIds::load(&mut conn, &tables).await?;
        let feed = Feed::open(source.js, source.spec, checkpoint, source.batch_size).await?;
        Ok(Self {
            known,
            conn,
            tables,
            checkpoint_key,
            feed,
            batch_size: source.batch_size,
            letters,
            checkpoint,
            events: 0,
            applied: 0,
            dead_lettered: 0,
            cutoff: None,
            last: u64::MAX,
        })
    }

    /// Applies batches until the checkpoint reaches `target`, the stop signal comes, or the
    /// replay's end (its last sequence or moment) is met.
    pub(crate) async fn run_to(
        &mut self,
        target: u64,
        meter: &mut Meter,
        stop: &watch::Receiver<bool>,
    ) -> anyhow::Result<Run> {
        self.run_until(target, None, meter, stop).await
    }

    /// As [`Self::run_to`], giving up between batches once `deadline` has passed. A batch is
    /// never cut short: its messages are already taken from the stream.
    pub(crate) async fn run_until(
        &mut self,
        target: u64,
        deadline: Option<Instant>,
        meter: &mut Meter,
        stop: &watch::Receiver<bool>,
    ) -> anyhow::Result<Run> {
        while self.checkpoint < target {
            if *stop.borrow() {
                return Ok(Run::Stopped);
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Ok(Run::TimedOut);
            }
            if self.step(target).await? {
                return Ok(Run::Ended);
            }
            meter.advance(self.checkpoint);
        }
        Ok(Run::Reached)
    }

    /// One batch, in one transaction with the checkpoint. Returns whether the replay's end
    /// was met.
    async fn step(&mut self, target: u64) -> anyhow::Result<bool> {
        let mut batch = self
            .feed
            .next_batch(self.batch_size, target.min(self.last))
            .await?;
        let mut ended = false;
        if let Some(cut) = batch.iter().position(|stored| {
            stored.incoming.sequence > self.last
                || self.cutoff.is_some_and(|cutoff| stored.stored_at > cutoff)
        }) {
            batch.truncate(cut);
            ended = true;
        }
        if batch.is_empty() {
            return Ok(ended || self.feed.position >= self.last);
        }
        let incoming: Vec<apply::Incoming> = batch.into_iter().map(|s| s.incoming).collect();
        let mut tx = self.conn.begin().await?;
        let checkpoint = match &self.checkpoint_key {
            Some(key) => apply::lock_checkpoint(&mut tx, key).await?,
            None => self.checkpoint,
        };
        let (outcome, dead) = apply_events(
            &mut tx,
            &self.tables,
            &incoming,
            checkpoint,
            Some(&mut self.known),
        )
        .await?;
        if let Some(key) = &self.checkpoint_key {
            apply::set_checkpoint(&mut tx, key, outcome.checkpoint).await?;
        }
        self.dead_lettered += dead.len() as u64;
        send_letters(&mut self.letters, dead).await?;
        tx.commit().await?;
        self.checkpoint = outcome.checkpoint;
        self.events += incoming.len() as u64;
        self.applied += outcome.applied;
        Ok(ended || self.checkpoint >= self.last)
    }
}

async fn send_letters(letters: &mut Letters, dead: Vec<Dead<'_>>) -> anyhow::Result<()> {
    let Letters::Publish(publish) = letters else {
        return Ok(());
    };
    let (stream, known) = &mut **publish;
    for (incoming, reason) in dead {
        if let Some(point) = incoming.point_id {
            let present = match known.entry(point) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => entry.insert(
                    stream
                        .list(Some(point))
                        .await?
                        .into_iter()
                        .filter_map(|letter| letter.original_sequence)
                        .collect(),
                ),
            };
            if present.contains(&incoming.sequence) {
                continue;
            }
        }
        stream.send(incoming, &reason).await?;
    }
    Ok(())
}

/// What `replay` is asked for.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Table to write the points into; it gets the columns and primary key of `points`.
    #[arg(long, value_name = "TABLE")]
    pub into: String,
    /// First stream sequence to apply. Points created before it are not in the result.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub from_seq: u64,
    /// Last stream sequence to apply (default: the stream's last when the replay starts).
    #[arg(long, value_name = "M")]
    pub to_seq: Option<u64>,
    /// Apply only the events the stream had stored by this moment (RFC 3339, for example
    /// 2026-12-04T12:00:00Z): the points as they were then.
    #[arg(long, value_name = "TIMESTAMP")]
    pub as_of: Option<DateTime<Utc>>,
    /// Drop the table first if it exists.
    #[arg(long)]
    pub replace: bool,
    /// Events per transaction.
    #[arg(long, default_value_t = 10_000)]
    pub batch_size: usize,
}

/// What a `replay` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// The table written.
    pub table: String,
    /// The last sequence applied (0 if none).
    pub last_seq: u64,
    /// Events read, and how many of them changed a point.
    pub events: u64,
    /// Events that changed a point.
    pub applied: u64,
    /// Points in the table.
    pub points: u64,
    /// Messages that could not be projected (their points are left out).
    pub undecodable_or_parked: u64,
    /// Whether the stop signal cut the replay short.
    pub interrupted: bool,
    /// How long it took.
    pub elapsed: Duration,
}

/// Names a replay may not write to: the projection's own tables and PostGIS's.
const RESERVED: [&str; 6] = [
    "points",
    "point_tombstones",
    "parked_points",
    "projection_checkpoint",
    "spatial_ref_sys",
    "_sqlx_migrations",
];

/// Checks a table name: a plain lower-case SQL identifier, not one the projection uses.
pub(crate) fn check_table_name(name: &str) -> anyhow::Result<()> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    anyhow::ensure!(
        plain,
        "`{name}` is not a plain table name (lower-case letters, digits and _, at most 63)"
    );
    anyhow::ensure!(
        !RESERVED.contains(&name) && !name.ends_with(crate::rebuild::SUFFIX),
        "`{name}` belongs to the projection; choose another table"
    );
    Ok(())
}

/// The `replay` command: the points as the events from `from_seq` to `to_seq`, stored by
/// `as_of`, leave them, in the table `into`.
pub(crate) async fn replay(
    conn: PgConnection,
    js: &jetstream::Context,
    spec: &StreamSpec,
    args: &ReplayArgs,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<ReplayReport> {
    let started = Instant::now();
    check_table_name(&args.into)?;
    anyhow::ensure!(args.from_seq >= 1, "--from-seq starts at 1");
    let mut conn = conn;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&args.into)
        .fetch_one(&mut conn)
        .await?;
    if exists && !args.replace {
        anyhow::bail!("table {} exists; pass --replace to overwrite it", args.into);
    }
    let tables = Tables {
        points: args.into.clone(),
        tombstones: "pg_temp.replay_tombstones".to_owned(),
        parked: "pg_temp.replay_parked".to_owned(),
    };
    let mut tx = conn.begin().await?;
    sqlx::query(&format!("DROP TABLE IF EXISTS {}", args.into))
        .execute(&mut *tx)
        .await?;
    crate::rebuild::create_like(&mut tx, "points", &args.into, &format!("_{}", args.into)).await?;
    // Session-local: a replay's tombstones and parked points matter only while it runs.
    for (temp, like) in [
        (&tables.tombstones, "point_tombstones"),
        (&tables.parked, "parked_points"),
    ] {
        sqlx::query(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {like} INCLUDING ALL)",
            temp.trim_start_matches("pg_temp.")
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await.context("creating the replay's table")?;

    let head = feed::head(js, spec).await?;
    let last = args.to_seq.unwrap_or(head).min(head);
    let source = Source {
        js,
        spec,
        batch_size: args.batch_size,
    };
    let mut replayer = Replayer::open(
        conn,
        tables,
        None,
        args.from_seq - 1,
        &source,
        Letters::Count,
    )
    .await?;
    replayer.last = last;
    replayer.cutoff = args.as_of;
    tracing::info!(
        replay.table = %args.into,
        replay.from = args.from_seq,
        replay.to = last,
        replay.as_of = ?args.as_of,
        "replay started"
    );
    let mut meter = Meter::new("replay", args.from_seq - 1, last);
    let run = if last >= args.from_seq {
        replayer.run_to(last, &mut meter, stop).await?
    } else {
        Run::Reached
    };
    meter.finish();
    let points: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", args.into))
        .fetch_one(&mut replayer.conn)
        .await?;
    sqlx::query(&format!("ANALYZE {}", args.into))
        .execute(&mut replayer.conn)
        .await?;
    Ok(ReplayReport {
        table: args.into.clone(),
        last_seq: replayer.checkpoint,
        events: replayer.events,
        applied: replayer.applied,
        points: points as u64,
        undecodable_or_parked: replayer.dead_lettered,
        interrupted: run == Run::Stopped,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::check_table_name;

    #[test]
    fn a_replay_writes_only_to_a_plain_table_of_its_own() {
        for good in ["points_at_noon", "_scratch", "replay2"] {
            assert!(check_table_name(good).is_ok(), "{good}");
        }
        for bad in [
            "points",
            "parked_points",
            "points_rebuild",
            "Points",
            "points; DROP TABLE points",
            "1st",
            "",
        ] {
            assert!(check_table_name(bad).is_err(), "{bad:?}");
        }
    }
}
