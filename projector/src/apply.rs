//! Applying a batch of events to the read model, together with the checkpoint.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{Connection as _, PgConnection, PgPool};
use tracing::Instrument as _;
use uuid::Uuid;

use geoledger_common::event::{EventEnvelope, PointEvent};

use crate::dead_letter::{self, DeadLetters};
use crate::fold::{self, PointRow, PointState};

pub use geoledger_common::projection::{CHECKPOINT_CHANNEL, POINTS as PROJECTION};

/// One message of a batch: where it was, what it held and what could be made of it.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) sequence: u64,
    pub(crate) subject: String,
    /// The point the subject names, even when the payload is unreadable.
    pub(crate) point_id: Option<Uuid>,
    pub(crate) payload: bytes::Bytes,
    pub(crate) event: Result<(EventEnvelope, PointEvent), String>,
    /// The event's span, a child of the publish that stored it; it ends when the message is
    /// dropped, after its batch is committed and acknowledged.
    pub(crate) span: tracing::Span,
}

/// Why a batch was not committed; it is retried as a whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    #[error("the read model could not be written")]
    Database(#[from] sqlx::Error),
    #[error("a dead letter could not be stored")]
    DeadLetter(#[source] anyhow::Error),
}

/// What a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchOutcome {
    /// The checkpoint after the batch.
    pub(crate) checkpoint: u64,
    /// Events newly applied.
    pub(crate) applied: u64,
    /// Events at or below the checkpoint, or already reflected in their row.
    pub(crate) skipped: u64,
    /// Messages that are not events this build understands.
    pub(crate) undecodable: u64,
    /// Messages sent to the dead-letter stream (undecodable ones and those parked behind).
    pub(crate) dead_lettered: u64,
}

/// The stream sequence the projection has reached (0 before the first event).
///
/// # Errors
/// When the database cannot be read.
pub async fn read_checkpoint(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(checkpoint_of(pool, PROJECTION).await?.unwrap_or(0))
}

/// The checkpoint row `projection`, if there is one.
pub(crate) async fn checkpoint_of(
    executor: impl sqlx::PgExecutor<'_>,
    projection: &str,
) -> Result<Option<u64>, sqlx::Error> {
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT last_seq FROM projection_checkpoint WHERE projection = $1")
            .bind(projection)
            .fetch_optional(executor)
            .await?;
    Ok(seq.map(|s| s as u64))
}

/// Takes the lock of the checkpoint row `projection` (creating it at 0) for the transaction
/// and returns the checkpoint. On the live projection the lock serialises batches against
/// `rebuild`'s swap and `redrive`, and makes the read of the checkpoint and its update one
/// step.
pub(crate) async fn lock_checkpoint(
    tx: &mut PgConnection,
    projection: &str,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_checkpoint (projection, last_seq) VALUES ($1, 0)
         ON CONFLICT (projection) DO NOTHING",
    )
    .bind(projection)
    .execute(&mut *tx)
    .await?;
    let checkpoint: i64 = sqlx::query_scalar(
        "SELECT last_seq FROM projection_checkpoint WHERE projection = $1 FOR UPDATE",
    )
    .bind(projection)
    .fetch_one(&mut *tx)
    .await?;
    Ok(checkpoint as u64)
}

/// Moves the checkpoint row `projection` to `seq`.
pub(crate) async fn set_checkpoint(
    tx: &mut PgConnection,
    projection: &str,
    seq: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_checkpoint (projection, last_seq) VALUES ($1, $2)
         ON CONFLICT (projection) DO UPDATE SET last_seq = $2, updated_at = now()",
    )
    .bind(projection)
    .bind(seq as i64)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Announces the live checkpoint to query-api's waiting readers. Delivered only on commit, so
/// a reader waiting for its write is woken exactly when the rows it waits for are visible.
pub(crate) async fn announce(tx: &mut PgConnection, seq: u64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHECKPOINT_CHANNEL)
        .bind(seq.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The tables a projection is written to: the live read model, `rebuild`'s shadow copy of it,
/// or the table of a `replay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tables {
    /// One row per live point.
    pub(crate) points: String,
    /// Deleted points, so that a replayed creation cannot bring one back.
    pub(crate) tombstones: String,
    /// Points whose events go to the dead-letter stream.
    pub(crate) parked: String,
}

impl Tables {
    /// The read model query-api serves.
    pub(crate) fn live() -> Self {
        Self {
            points: "points".to_owned(),
            tombstones: "point_tombstones".to_owned(),
            parked: "parked_points".to_owned(),
        }
    }
}

/// Applies `batch` (in stream order) to the live read model and moves the checkpoint to its
/// last sequence, in one transaction.
#[tracing::instrument(skip_all, fields(db.rows = batch.len()), err)]
pub(crate) async fn apply_batch(
    session: &mut PgConnection,
    batch: &[Incoming],
    dead_letters: &DeadLetters,
) -> Result<BatchOutcome, ApplyError> {
    let mut tx = session.begin().await?;
    let checkpoint = lock_checkpoint(&mut tx, PROJECTION).await?;
    let (outcome, dead) = apply_events(&mut tx, &Tables::live(), batch, checkpoint, None).await?;
    if outcome.checkpoint > checkpoint {
        set_checkpoint(&mut tx, PROJECTION, outcome.checkpoint).await?;
        announce(&mut tx, outcome.checkpoint).await?;
    }
    // Dead letters are stored before the commit: if storing fails the batch is retried,
    // and if the commit fails after, their message ids keep the retry from storing twice.
    for (incoming, reason) in dead {
        dead_letters
            .send(incoming, &reason)
            .instrument(incoming.span.clone())
            .await
            .map_err(ApplyError::DeadLetter)?;
    }
    tx.commit().await?;
    Ok(outcome)
}

/// The ids a replay's tables hold a row or a tombstone for, kept in memory: most events of a
/// rebuild create points never seen, and a batch then looks up only the points it may find.
#[derive(Debug, Default)]
pub(crate) struct KnownIds(HashSet<Uuid>);

impl KnownIds {
    /// The ids `tables` hold now.
    pub(crate) async fn load(tx: &mut PgConnection, tables: &Tables) -> Result<Self, sqlx::Error> {
        let ids: Vec<Uuid> = sqlx::query_scalar(&format!(
            "SELECT id FROM {} UNION ALL SELECT id FROM {}",
            tables.points, tables.tombstones
        ))
        .fetch_all(tx)
        .await?;
        Ok(Self(ids.into_iter().collect()))
    }
}

/// A message that goes to the dead-letter stream, and why.
pub(crate) type Dead<'a> = (&'a Incoming, String);

/// The part of a batch every path shares: skips what is at or below `checkpoint`, parks the
/// points of unreadable messages (their later events follow them to the dead letters), folds
/// the rest onto the points' current states and writes the changed rows. The caller owns the
/// transaction, the checkpoint and the dead letters returned. With `known`, only the points it
/// names are looked up, and it learns the points the batch writes.
pub(crate) async fn apply_events<'a>(
    tx: &mut PgConnection,
    tables: &Tables,
    batch: &'a [Incoming],
    checkpoint: u64,
    known: Option<&mut KnownIds>,
) -> Result<(BatchOutcome, Vec<Dead<'a>>), sqlx::Error> {
    let mut parked = dead_letter::parked_among(tx, &tables.parked, batch).await?;
    let mut dead = Vec::new();
    let mut events = Vec::with_capacity(batch.len());
    let mut outcome = BatchOutcome {
        checkpoint,
        ..BatchOutcome::default()
    };
    for incoming in batch.iter().filter(|i| i.sequence > checkpoint) {
        outcome.checkpoint = outcome.checkpoint.max(incoming.sequence);
        if incoming.point_id.is_some_and(|id| parked.contains(&id)) {
            dead.push((
                incoming,
                "parked behind an earlier dead letter of this point".to_owned(),
            ));
            continue;
        }
        match &incoming.event {
            Ok((envelope, event)) => events.push((incoming.sequence, envelope, event)),
            Err(reason) => {
                outcome.undecodable += 1;
                if let Some(id) = incoming.point_id {
                    dead_letter::park(tx, &tables.parked, id, incoming.sequence, reason).await?;
                    parked.insert(id);
                }
                dead.push((incoming, reason.clone()));
            }
        }
    }
    outcome.applied = apply_decoded(tx, tables, &events, known).await?;
    outcome.dead_lettered = dead.len() as u64;
    outcome.skipped = batch.len() as u64 - outcome.applied - outcome.dead_lettered;
    Ok((outcome, dead))
}

/// Applies one event on its own (a re-driven dead letter); returns 1 if it changed a row.
pub(crate) async fn apply_one(
    tx: &mut PgConnection,
    envelope: &EventEnvelope,
    event: &PointEvent,
    sequence: u64,
) -> Result<u64, sqlx::Error> {
    apply_decoded(tx, &Tables::live(), &[(sequence, envelope, event)], None).await
}

/// Folds decoded events, in order, onto the states of their points as stored, and writes
/// back the points that changed: two reads and at most three writes per batch, whatever its
/// size. Returns how many events changed a point.
async fn apply_decoded(
    tx: &mut PgConnection,
    tables: &Tables,
    events: &[(u64, &EventEnvelope, &PointEvent)],
    known: Option<&mut KnownIds>,
) -> Result<u64, sqlx::Error> {
    if events.is_empty() {
        return Ok(0);
    }
    let mut ids: Vec<Uuid> = events.iter().map(|(_, e, _)| e.aggregate_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let stored: Vec<Uuid> = match &known {
        Some(known) => ids
            .iter()
            .filter(|id| known.0.contains(id))
            .copied()
            .collect(),
        None => ids.clone(),
    };
    let mut points = load_states(tx, tables, &ids, &stored).await?;
    let mut applied = 0;
    for (sequence, envelope, event) in events {
        let point = points
            .get_mut(&envelope.aggregate_id)
            .expect("every event's point was loaded");
        if fold::apply(&mut point.now, envelope, event, *sequence) {
            applied += 1;
        }
    }
    if let Some(known) = known {
        known.0.extend(
            points
                .iter()
                .filter(|(_, point)| point.now != PointState::Absent)
                .map(|(id, _)| *id),
        );
    }
    store_states(tx, tables, points).await?;
    Ok(applied)
}

/// A point's state as read at the start of a batch and as the batch leaves it.
struct Tracked {
    before: PointState,
    now: PointState,
}

/// The states of the points `ids`, of which only those in `stored` can have a row or a
/// tombstone.
async fn load_states(
    tx: &mut PgConnection,
    tables: &Tables,
    ids: &[Uuid],
    stored: &[Uuid],
) -> Result<HashMap<Uuid, Tracked>, sqlx::Error> {
    let mut states: HashMap<Uuid, PointState> =
        ids.iter().map(|id| (*id, PointState::Absent)).collect();
    if stored.is_empty() {
        return Ok(track(states));
    }
    let rows: Vec<PointRow> = sqlx::query_as(&format!(
        "SELECT id, name, ST_X(geom) AS longitude, ST_Y(geom) AS latitude,
                properties::text AS properties, version, last_seq, created_at, updated_at
         FROM {} WHERE id = ANY($1)",
        tables.points
    ))
    .bind(stored)
    .fetch_all(&mut *tx)
    .await?;
    for row in rows {
        states.insert(row.id, PointState::Live(row));
    }
    let tombstones: Vec<(Uuid, i64, DateTime<Utc>)> = sqlx::query_as(&format!(
        "SELECT id, version, deleted_at FROM {} WHERE id = ANY($1)",
        tables.tombstones
    ))
    .bind(stored)
    .fetch_all(&mut *tx)
    .await?;
    for (id, version, deleted_at) in tombstones {
        states.insert(
            id,
            PointState::Deleted {
                version,
                deleted_at,
            },
        );
    }
    Ok(track(states))
}

fn track(states: HashMap<Uuid, PointState>) -> HashMap<Uuid, Tracked> {
    states
        .into_iter()
        .map(|(id, state)| {
            (
                id,
                Tracked {
                    before: state.clone(),
                    now: state,
                },
            )
        })
        .collect()
}

/// Writes the points whose state changed: live rows upserted in one statement, deleted
/// points removed and tombstoned in two.
async fn store_states(
    tx: &mut PgConnection,
    tables: &Tables,
    points: HashMap<Uuid, Tracked>,
) -> Result<(), sqlx::Error> {
    let mut rows = Rows::default();
    let mut deleted: Vec<(Uuid, i64, DateTime<Utc>)> = Vec::new();
    for (id, point) in points.into_iter().filter(|(_, p)| p.now != p.before) {
        match point.now {
            PointState::Live(row) => rows.push(row),
            PointState::Deleted {
                version,
                deleted_at,
            } => deleted.push((id, version, deleted_at)),
            PointState::Absent => {}
        }
    }
    rows.upsert(tx, &tables.points).await?;
    if !deleted.is_empty() {
        let ids: Vec<Uuid> = deleted.iter().map(|d| d.0).collect();
        let versions: Vec<i64> = deleted.iter().map(|d| d.1).collect();
        let times: Vec<DateTime<Utc>> = deleted.iter().map(|d| d.2).collect();
        sqlx::query(&format!("DELETE FROM {} WHERE id = ANY($1)", tables.points))
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO {} (id, version, deleted_at)
             SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::timestamptz[])
             ON CONFLICT (id) DO NOTHING",
            tables.tombstones
        ))
        .bind(&ids)
        .bind(&versions)
        .bind(&times)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Rows to write, as one array per column: one statement per batch rather than per event.
#[derive(Default)]
struct Rows {
    ids: Vec<Uuid>,
    names: Vec<String>,
    longitudes: Vec<f64>,
    latitudes: Vec<f64>,
    properties: Vec<String>,
    versions: Vec<i64>,
    sequences: Vec<i64>,
    created: Vec<DateTime<Utc>>,
    updated: Vec<DateTime<Utc>>,
}

impl Rows {
    fn push(&mut self, row: PointRow) {
        self.ids.push(row.id);
        self.names.push(row.name);
        self.longitudes.push(row.longitude);
        self.latitudes.push(row.latitude);
        self.properties.push(row.properties);
        self.versions.push(row.version);
        self.sequences.push(row.last_seq);
        self.created.push(row.created_at);
        self.updated.push(row.updated_at);
    }

    /// Inserts new points and overwrites changed ones with their folded state.
    async fn upsert(self, tx: &mut PgConnection, table: &str) -> Result<(), sqlx::Error> {
        if self.ids.is_empty() {
            return Ok(());
        }
        sqlx::query(&format!(
            "INSERT INTO {table}
                 (id, name, geom, properties, version, last_seq, created_at, updated_at)
             SELECT id, name, ST_SetSRID(ST_MakePoint(lon, lat), 4326), props::jsonb, version,
                    seq, created, updated
             FROM UNNEST($1::uuid[], $2::text[], $3::float8[], $4::float8[], $5::text[],
                         $6::int8[], $7::int8[], $8::timestamptz[], $9::timestamptz[])
                  AS t(id, name, lon, lat, props, version, seq, created, updated)
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, geom = EXCLUDED.geom,
                 properties = EXCLUDED.properties, version = EXCLUDED.version,
                 last_seq = EXCLUDED.last_seq, updated_at = EXCLUDED.updated_at"
        ))
        .bind(&self.ids)
        .bind(&self.names)
        .bind(&self.longitudes)
        .bind(&self.latitudes)
        .bind(&self.properties)
        .bind(&self.versions)
        .bind(&self.sequences)
        .bind(&self.created)
        .bind(&self.updated)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
