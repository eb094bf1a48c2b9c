//! The `status` command: where the stream is, where each projection is, and what is stuck.

use std::fmt;

use anyhow::Context as _;
use async_nats::jetstream;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use geoledger_common::stream::StreamSpec;

use crate::dead_letter::DeadLetters;
use crate::feed::to_chrono;

/// What `projector status` prints.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// The event stream.
    pub stream: StreamState,
    /// Each checkpoint row: the live projection (`points`) and an unfinished rebuild's shadow.
    pub projections: Vec<ProjectionState>,
    /// Messages in the dead-letter stream.
    pub dead_letters: u64,
    /// Points whose events wait in the dead-letter stream.
    pub parked_points: u64,
}

/// The event stream's extent.
#[derive(Debug, Serialize)]
pub struct StreamState {
    /// Its name.
    pub name: String,
    /// Its first and last sequences (0 when empty).
    pub first_seq: u64,
    /// The newest sequence.
    pub last_seq: u64,
    /// When the newest event was stored.
    pub last_at: Option<DateTime<Utc>>,
    /// How many events it holds.
    pub events: u64,
}

/// How far one projection is behind the stream.
#[derive(Debug, Serialize)]
pub struct ProjectionState {
    /// The checkpoint row's name.
    pub projection: String,
    /// The last sequence it applied.
    pub checkpoint: u64,
    /// When it last moved.
    pub updated_at: DateTime<Utc>,
    /// Events in the stream after the checkpoint.
    pub pending: u64,
    /// How long the oldest pending event has been waiting (0 when none is).
    pub lag_secs: f64,
}

pub(crate) async fn status(
    pool: &PgPool,
    js: &jetstream::Context,
    spec: &StreamSpec,
) -> anyhow::Result<StatusReport> {
    let mut stream = js
        .get_stream(&spec.name)
        .await
        .with_context(|| format!("opening the stream {}", spec.name))?;
    let state = stream
        .info()
        .await
        .context("reading the stream")?
        .state
        .clone();
    let rows: Vec<(String, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT projection, last_seq, updated_at FROM projection_checkpoint ORDER BY projection",
    )
    .fetch_all(pool)
    .await
    .context("reading the checkpoints")?;
    let now = Utc::now();
    let mut projections = Vec::with_capacity(rows.len());
    for (projection, checkpoint, updated_at) in rows {
        let checkpoint = checkpoint as u64;
        let pending = state.last_sequence.saturating_sub(checkpoint);
        let lag_secs = if pending == 0 {
            0.0
        } else {
            // The oldest pending event is the one right after the checkpoint.
            match stream
                .direct_get(checkpoint.max(state.first_sequence - 1) + 1)
                .await
            {
                Ok(message) => (now - to_chrono(message.time)).as_seconds_f64().max(0.0),
                Err(_) => f64::NAN,
            }
        };
        projections.push(ProjectionState {
            projection,
            checkpoint,
            updated_at,
            pending,
            lag_secs,
        });
    }
    let dead_letters = DeadLetters::new(js.clone(), spec.clone()).count().await?;
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM parked_points")
        .fetch_one(pool)
        .await?;
    Ok(StatusReport {
        stream: StreamState {
            name: spec.name.clone(),
            first_seq: state.first_sequence,
            last_seq: state.last_sequence,
            last_at: (state.messages > 0).then(|| to_chrono(state.last_timestamp)),
            events: state.messages,
        },
        projections,
        dead_letters,
        parked_points: parked as u64,
    })
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stream;
        writeln!(
            f,
            "stream {}: {} events, sequences {}..{}{}",
            s.name,
            s.events,
            s.first_seq,
            s.last_seq,
            s.last_at
                .map(|t| format!(", last stored {}", t.to_rfc3339()))
                .unwrap_or_default()
        )?;
        writeln!(
            f,
            "{:<24} {:>12} {:>10} {:>10}  updated",
            "projection", "checkpoint", "pending", "lag (s)"
        )?;
        for p in &self.projections {
            writeln!(
                f,
                "{:<24} {:>12} {:>10} {:>10.1}  {}",
                p.projection,
                p.checkpoint,
                p.pending,
                p.lag_secs,
                p.updated_at.to_rfc3339()
            )?;
        }
        write!(
            f,
            "dead letters: {} (points parked: {})",
            self.dead_letters, self.parked_points
        )
    }
}
