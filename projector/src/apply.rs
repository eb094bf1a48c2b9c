//! Applying a batch of events to the read model, together with the checkpoint.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use geoledger_common::event::{EventEnvelope, PointEvent};

/// The checkpoint row this projector owns.
pub const PROJECTION: &str = "points";

/// One message of a batch: its stream sequence and what could be made of its payload.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) sequence: u64,
    pub(crate) event: Result<(EventEnvelope, PointEvent), String>,
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
pub(crate) async fn reset(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("TRUNCATE points").execute(&mut *tx).await?;
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
    pool: &PgPool,
    batch: &[Incoming],
) -> Result<BatchOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The row lock serialises batches against a concurrent `rebuild` and makes the read of
    // the checkpoint and its update one step.
    sqlx::query(
        "INSERT INTO projection_checkpoint (projection, last_seq) VALUES ($1, 0)
         ON CONFLICT (projection) DO NOTHING",
    )
    .bind(PROJECTION)
    .execute(&mut *tx)
    .await?;
    let checkpoint: i64 = sqlx::query_scalar(
        "SELECT last_seq FROM projection_checkpoint WHERE projection = $1 FOR UPDATE",
    )
    .bind(PROJECTION)
    .fetch_one(&mut *tx)
    .await?;
    let checkpoint = checkpoint as u64;

    let mut outcome = BatchOutcome {
        checkpoint,
        ..BatchOutcome::default()
    };
    let mut creations = Creations::default();
    for incoming in batch.iter().filter(|i| i.sequence > checkpoint) {
        match &incoming.event {
            Ok((envelope, PointEvent::Created(created))) => creations.push(
                envelope.aggregate_id,
                created.name.as_str(),
                created.longitude.degrees(),
                created.latitude.degrees(),
                envelope.aggregate_version,
                incoming.sequence,
                envelope.occurred_at,
            ),
            Err(_) => outcome.undecodable += 1,
        }
        outcome.checkpoint = outcome.checkpoint.max(incoming.sequence);
    }
    outcome.applied = creations.insert(&mut tx).await?;
    outcome.skipped = batch.len() as u64 - outcome.applied - outcome.undecodable;

    if outcome.checkpoint > checkpoint {
        sqlx::query(
            "UPDATE projection_checkpoint SET last_seq = $2, updated_at = now()
             WHERE projection = $1",
        )
        .bind(PROJECTION)
        .bind(outcome.checkpoint as i64)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(outcome)
}

/// New points of a batch, inserted with one statement: one round trip per batch rather than
/// per event.
#[derive(Default)]
struct Creations {
    ids: Vec<Uuid>,
    names: Vec<String>,
    longitudes: Vec<f64>,
    latitudes: Vec<f64>,
    versions: Vec<i64>,
    sequences: Vec<i64>,
    times: Vec<DateTime<Utc>>,
}

impl Creations {
    #[expect(
        clippy::too_many_arguments,
        reason = "one column each, pushed side by side"
    )]
    fn push(
        &mut self,
        id: Uuid,
        name: &str,
        longitude: f64,
        latitude: f64,
        version: u64,
        sequence: u64,
        at: DateTime<Utc>,
    ) {
        self.ids.push(id);
        self.names.push(name.to_owned());
        self.longitudes.push(longitude);
        self.latitudes.push(latitude);
        self.versions.push(version as i64);
        self.sequences.push(sequence as i64);
        self.times.push(at);
    }

    /// Inserts the points; a point that already exists (a redelivered or re-published
    /// creation) is left as it is. Returns how many rows were new.
    async fn insert(self, tx: &mut Transaction<'_, Postgres>) -> Result<u64, sqlx::Error> {
        if self.ids.is_empty() {
            return Ok(0);
        }
        let result = sqlx::query(
            "INSERT INTO points (id, name, geom, version, last_seq, created_at, updated_at)
             SELECT id, name, ST_SetSRID(ST_MakePoint(lon, lat), 4326), version, seq, at, at
             FROM UNNEST($1::uuid[], $2::text[], $3::float8[], $4::float8[], $5::int8[],
                         $6::int8[], $7::timestamptz[]) AS t(id, name, lon, lat, version, seq, at)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&self.ids)
        .bind(&self.names)
        .bind(&self.longitudes)
        .bind(&self.latitudes)
        .bind(&self.versions)
        .bind(&self.sequences)
        .bind(&self.times)
        .execute(&mut **tx)
        .await?;
        Ok(result.rows_affected())
    }
}
