//! Applying a batch of events to the read model, together with the checkpoint.

use chrono::{DateTime, Utc};
use sqlx::{Connection as _, PgConnection, PgPool, Postgres, Transaction};
use tracing::Instrument as _;
use uuid::Uuid;

use geoledger_common::event::{EventEnvelope, PointCreated, PointEvent};

use crate::dead_letter::{self, DeadLetters};

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
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT last_seq FROM projection_checkpoint WHERE projection = $1")
            .bind(PROJECTION)
            .fetch_optional(pool)
            .await?;
    Ok(seq.unwrap_or(0) as u64)
}

/// Empties the read model and rewinds the checkpoint, atomically.
pub(crate) async fn reset(session: &mut PgConnection) -> Result<(), sqlx::Error> {
    let mut tx = session.begin().await?;
    sqlx::query("TRUNCATE points, point_tombstones, parked_points")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO projection_checkpoint (projection, last_seq) VALUES ($1, 0)
         ON CONFLICT (projection) DO UPDATE SET last_seq = 0, updated_at = now()",
    )
    .bind(PROJECTION)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Applies `batch` (in stream order) and moves the checkpoint to its last sequence, in one
/// transaction.
#[tracing::instrument(skip_all, fields(db.rows = batch.len()), err)]
pub(crate) async fn apply_batch(
    session: &mut PgConnection,
    batch: &[Incoming],
    dead_letters: &DeadLetters,
) -> Result<BatchOutcome, ApplyError> {
    let mut tx = session.begin().await?;
    let checkpoint = lock_checkpoint(&mut tx).await?;
    let mut parked = dead_letter::parked_among(&mut tx, batch).await?;
    let mut dead = Vec::new();

    let mut outcome = BatchOutcome {
        checkpoint,
        ..BatchOutcome::default()
    };
    let mut creations = Creations::default();
    for incoming in batch.iter().filter(|i| i.sequence > checkpoint) {
        outcome.checkpoint = outcome.checkpoint.max(incoming.sequence);
        if incoming.point_id.is_some_and(|id| parked.contains(&id)) {
            dead.push((
                incoming,
                "parked behind an earlier dead letter of this point".to_owned(),
            ));
            continue;
        }
        let (envelope, event) = match &incoming.event {
            Ok(decoded) => decoded,
            Err(reason) => {
                outcome.undecodable += 1;
                if let Some(id) = incoming.point_id {
                    dead_letter::park(&mut tx, id, incoming.sequence, reason).await?;
                    parked.insert(id);
                }
                dead.push((incoming, reason.clone()));
                continue;
            }
        };
        if let PointEvent::Created(created) = event {
            creations.push(envelope, created, incoming.sequence);
            continue;
        }
        // A later event may concern a point created earlier in this batch: the creations
        // gathered so far go in first, so stream order is kept.
        outcome.applied += std::mem::take(&mut creations).insert(&mut tx).await?;
        outcome.applied += apply_change(&mut tx, envelope, event, incoming.sequence)
            .instrument(incoming.span.clone())
            .await?;
    }
    outcome.applied += creations.insert(&mut tx).await?;
    outcome.dead_lettered = dead.len() as u64;
    outcome.skipped = batch.len() as u64 - outcome.applied - outcome.dead_lettered;

    if outcome.checkpoint > checkpoint {
        sqlx::query(
            "UPDATE projection_checkpoint SET last_seq = $2, updated_at = now()
             WHERE projection = $1",
        )
        .bind(PROJECTION)
        .bind(outcome.checkpoint as i64)
        .execute(&mut *tx)
        .await?;
        // Delivered only on commit, so a reader waiting for its write is woken exactly when
        // the rows it waits for are visible.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHECKPOINT_CHANNEL)
            .bind(outcome.checkpoint.to_string())
            .execute(&mut *tx)
            .await?;
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

/// Takes the checkpoint row's lock for the transaction and returns the checkpoint. The lock
/// serialises batches against `rebuild` and `redrive`, and makes the read of the checkpoint
/// and its update one step.
pub(crate) async fn lock_checkpoint(
    tx: &mut Transaction<'_, Postgres>,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_checkpoint (projection, last_seq) VALUES ($1, 0)
         ON CONFLICT (projection) DO NOTHING",
    )
    .bind(PROJECTION)
    .execute(&mut **tx)
    .await?;
    let checkpoint: i64 = sqlx::query_scalar(
        "SELECT last_seq FROM projection_checkpoint WHERE projection = $1 FOR UPDATE",
    )
    .bind(PROJECTION)
    .fetch_one(&mut **tx)
    .await?;
    Ok(checkpoint as u64)
}

/// Applies one event on its own (a re-driven dead letter); returns 1 if it changed a row.
pub(crate) async fn apply_one(
    tx: &mut Transaction<'_, Postgres>,
    envelope: &EventEnvelope,
    event: &PointEvent,
    sequence: u64,
) -> Result<u64, sqlx::Error> {
    if let PointEvent::Created(created) = event {
        let mut creation = Creations::default();
        creation.push(envelope, created, sequence);
        return creation.insert(tx).await;
    }
    apply_change(tx, envelope, event, sequence).await
}

/// Applies a rename, move or delete if the row is older than the event; returns 1 if it did.
///
/// A change whose point has no row (its creation was undecodable, or it is already deleted)
/// changes nothing; the version guard makes a redelivered change a no-op too.
async fn apply_change(
    tx: &mut Transaction<'_, Postgres>,
    envelope: &EventEnvelope,
    event: &PointEvent,
    sequence: u64,
) -> Result<u64, sqlx::Error> {
    let id = envelope.aggregate_id;
    let version = envelope.aggregate_version as i64;
    let at = envelope.occurred_at;
    let result = match event {
        PointEvent::Created(_) => return Ok(0),
        PointEvent::Renamed(renamed) => {
            sqlx::query(
                "UPDATE points SET name = $2, version = $3, last_seq = $4, updated_at = $5
                 WHERE id = $1 AND version < $3",
            )
            .bind(id)
            .bind(renamed.name.as_str())
            .bind(version)
            .bind(sequence as i64)
            .bind(at)
            .execute(&mut **tx)
            .await?
        }
        PointEvent::Moved(moved) => {
            sqlx::query(
                "UPDATE points SET geom = ST_SetSRID(ST_MakePoint($2, $3), 4326), version = $4,
                        last_seq = $5, updated_at = $6
                 WHERE id = $1 AND version < $4",
            )
            .bind(id)
            .bind(moved.longitude.degrees())
            .bind(moved.latitude.degrees())
            .bind(version)
            .bind(sequence as i64)
            .bind(at)
            .execute(&mut **tx)
            .await?
        }
        PointEvent::Deleted => {
            sqlx::query(
                "INSERT INTO point_tombstones (id, version, deleted_at) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(version)
            .bind(at)
            .execute(&mut **tx)
            .await?;
            sqlx::query("DELETE FROM points WHERE id = $1 AND version < $2")
                .bind(id)
                .bind(version)
                .execute(&mut **tx)
                .await?
        }
    };
    if result.rows_affected() == 0 {
        tracing::debug!(point.id = %id, event.version = version, "change already applied");
    }
    Ok(result.rows_affected())
}

/// New points of a batch, inserted with one statement: one round trip per batch rather than
/// per event.
#[derive(Default)]
struct Creations {
    ids: Vec<Uuid>,
    names: Vec<String>,
    longitudes: Vec<f64>,
    latitudes: Vec<f64>,
    properties: Vec<String>,
    versions: Vec<i64>,
    sequences: Vec<i64>,
    times: Vec<DateTime<Utc>>,
}

impl Creations {
    fn push(&mut self, envelope: &EventEnvelope, created: &PointCreated, sequence: u64) {
        self.ids.push(envelope.aggregate_id);
        self.names.push(created.name.as_str().to_owned());
        self.longitudes.push(created.longitude.degrees());
        self.latitudes.push(created.latitude.degrees());
        self.properties
            .push(serde_json::Value::Object(created.properties.clone()).to_string());
        self.versions.push(envelope.aggregate_version as i64);
        self.sequences.push(sequence as i64);
        self.times.push(envelope.occurred_at);
    }

    /// Inserts the points; a point that already exists (a redelivered or re-published
    /// creation) or was deleted is left as it is. Returns how many rows were new.
    async fn insert(self, tx: &mut Transaction<'_, Postgres>) -> Result<u64, sqlx::Error> {
        if self.ids.is_empty() {
            return Ok(0);
        }
        let result = sqlx::query(
            "INSERT INTO points
                 (id, name, geom, properties, version, last_seq, created_at, updated_at)
             SELECT id, name, ST_SetSRID(ST_MakePoint(lon, lat), 4326), props::jsonb, version,
                    seq, at, at
             FROM UNNEST($1::uuid[], $2::text[], $3::float8[], $4::float8[], $5::text[],
                         $6::int8[], $7::int8[], $8::timestamptz[])
                  AS t(id, name, lon, lat, props, version, seq, at)
             WHERE NOT EXISTS (SELECT 1 FROM point_tombstones d WHERE d.id = t.id)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&self.ids)
        .bind(&self.names)
        .bind(&self.longitudes)
        .bind(&self.latitudes)
        .bind(&self.properties)
        .bind(&self.versions)
        .bind(&self.sequences)
        .bind(&self.times)
        .execute(&mut **tx)
        .await?;
        Ok(result.rows_affected())
    }
}
