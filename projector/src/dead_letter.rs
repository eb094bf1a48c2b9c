//! The dead-letter stream: where an event the projector cannot project goes, with the reason,
//! instead of stalling every other point behind it.
//!
//! A message that does not decode (a malformed payload published by some other tool, an event
//! type this build does not know) is deterministic trouble: delivering it again gives the same
//! result, so it is dead-lettered on its first delivery. Its point is then parked: every later
//! event of that point is dead-lettered too, in order, so the point's history is never applied
//! out of order. `projector redrive <point id>` applies a parked point's dead letters in order
//! once a build can read them (or skips the unreadable ones when asked) and unparks it.

use std::collections::HashSet;

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::stream::DirectGetErrorKind;
use async_nats::jetstream::{self, stream};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use geoledger_common::event::EventEnvelope;
use geoledger_common::stream::StreamSpec;

use crate::apply::{self, Incoming};

const REASON: &str = "Geoledger-Dead-Letter-Reason";
const ORIGINAL_SUBJECT: &str = "Geoledger-Original-Subject";
const ORIGINAL_SEQUENCE: &str = "Geoledger-Original-Sequence";

/// Publishes to and reads from the dead-letter stream of one event stream.
#[derive(Clone)]
pub(crate) struct DeadLetters {
    js: jetstream::Context,
    spec: StreamSpec,
}

/// One dead letter, as listed for an operator.
#[derive(Debug, Serialize)]
pub struct DeadLetter {
    /// Sequence in the dead-letter stream.
    pub sequence: u64,
    /// Sequence of the original message in the event stream.
    pub original_sequence: Option<u64>,
    /// Subject the original message was published on.
    pub original_subject: Option<String>,
    /// Why it was not projected.
    pub reason: Option<String>,
    /// The original payload, as text (lossy for binary payloads).
    pub payload: String,
}

impl DeadLetters {
    pub(crate) fn new(js: jetstream::Context, spec: StreamSpec) -> Self {
        Self { js, spec }
    }

    fn name(&self) -> String {
        format!("{}_DLQ", self.spec.name)
    }

    fn subject_for(&self, original_subject: &str) -> String {
        let tail = original_subject.rsplit('.').next().unwrap_or("unknown");
        format!("deadletter.{}.{tail}", self.spec.subject_prefix)
    }

    /// Creates the dead-letter stream or brings it to this configuration.
    pub(crate) async fn ensure(&self) -> anyhow::Result<()> {
        self.js
            .create_or_update_stream(stream::Config {
                name: self.name(),
                subjects: vec![format!("deadletter.{}.*", self.spec.subject_prefix)],
                storage: stream::StorageType::File,
                allow_direct: true,
                num_replicas: self.spec.replicas,
                ..Default::default()
            })
            .await
            .context("declaring the dead-letter stream")?;
        Ok(())
    }

    /// Stores one dead letter and waits for JetStream's ack. The message id makes a batch
    /// retried after a failed commit store each dead letter once.
    pub(crate) async fn send(&self, incoming: &Incoming, reason: &str) -> anyhow::Result<()> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("dlq-{}", incoming.sequence).as_str());
        headers.insert(REASON, reason);
        headers.insert(ORIGINAL_SUBJECT, incoming.subject.as_str());
        headers.insert(ORIGINAL_SEQUENCE, incoming.sequence.to_string().as_str());
        self.js
            .publish_with_headers(
                self.subject_for(&incoming.subject),
                headers,
                incoming.payload.clone(),
            )
            .await
            .context("publishing a dead letter")?
            .await
            .context("awaiting the dead letter's ack")?;
        tracing::warn!(
            nats.subject = %incoming.subject,
            nats.stream_seq = incoming.sequence,
            reason,
            "event dead-lettered; run `projector dead-letters` to inspect"
        );
        Ok(())
    }

    /// How many dead letters there are (0 when the stream does not exist yet).
    pub(crate) async fn count(&self) -> anyhow::Result<u64> {
        match self.js.get_stream(self.name()).await {
            Ok(mut stream) => Ok(stream
                .info()
                .await
                .context("reading the DLQ")?
                .state
                .messages),
            Err(_) => Ok(0),
        }
    }

    /// Every dead letter, or those of one point, oldest first.
    pub(crate) async fn list(&self, point: Option<Uuid>) -> anyhow::Result<Vec<DeadLetter>> {
        let stream = self
            .js
            .get_stream_no_info(self.name())
            .await
            .context("opening the DLQ")?;
        let subject = match point {
            Some(id) => format!("deadletter.{}.{id}", self.spec.subject_prefix),
            None => format!("deadletter.{}.*", self.spec.subject_prefix),
        };
        let mut letters = Vec::new();
        let mut from = 1;
        loop {
            match stream
                .direct_get_next_for_subject(subject.clone(), Some(from))
                .await
            {
                Ok(message) => {
                    let header =
                        |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
                    letters.push(DeadLetter {
                        sequence: message.sequence,
                        original_sequence: header(ORIGINAL_SEQUENCE).and_then(|s| s.parse().ok()),
                        original_subject: header(ORIGINAL_SUBJECT),
                        reason: header(REASON),
                        payload: String::from_utf8_lossy(&message.payload).into_owned(),
                    });
                    from = message.sequence + 1;
                }
                Err(error) if error.kind() == DirectGetErrorKind::NotFound => return Ok(letters),
                Err(error) => return Err(error).context("reading the DLQ"),
            }
        }
    }

    /// Applies a parked point's dead letters in order and unparks it, in one transaction that
    /// holds the checkpoint lock, so the projector cannot interleave a newer event of the
    /// point. Returns how many events were applied.
    ///
    /// # Errors
    /// When a dead letter still does not decode and `skip_undecodable` is false (nothing is
    /// applied then), or when NATS or the database fails.
    pub(crate) async fn redrive(
        &self,
        pool: &PgPool,
        point: Uuid,
        skip_undecodable: bool,
    ) -> anyhow::Result<u64> {
        let letters = self.list(Some(point)).await?;
        let mut tx = pool.begin().await?;
        apply::lock_checkpoint(&mut tx, apply::PROJECTION).await?;
        let mut applied = 0;
        for letter in &letters {
            let decoded = EventEnvelope::from_slice(letter.payload.as_bytes())
                .and_then(|envelope| envelope.decode().map(|event| (envelope, event)));
            match decoded {
                Ok((envelope, event)) => {
                    let sequence = letter.original_sequence.unwrap_or(0);
                    applied += apply::apply_one(&mut tx, &envelope, &event, sequence).await?;
                }
                Err(error) if skip_undecodable => {
                    tracing::warn!(dlq.seq = letter.sequence, error.message = %error, "skipped");
                }
                Err(error) => {
                    anyhow::bail!(
                        "dead letter {} still does not decode: {error}",
                        letter.sequence
                    )
                }
            }
        }
        sqlx::query("DELETE FROM parked_points WHERE id = $1")
            .bind(point)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let stream = self
            .js
            .get_stream(self.name())
            .await
            .context("opening the DLQ")?;
        stream
            .purge()
            .filter(format!("deadletter.{}.{point}", self.spec.subject_prefix))
            .await
            .context("removing re-driven dead letters")?;
        Ok(applied)
    }
}

/// The points of `batch` that are parked already.
pub(crate) async fn parked_among(
    tx: &mut PgConnection,
    table: &str,
    batch: &[Incoming],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    let ids: Vec<Uuid> = batch.iter().filter_map(|i| i.point_id).collect();
    let parked: Vec<Uuid> =
        sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE id = ANY($1)"))
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
    Ok(parked.into_iter().collect())
}

/// Parks a point behind the dead letter at `sequence`.
pub(crate) async fn park(
    tx: &mut PgConnection,
    table: &str,
    point: Uuid,
    sequence: u64,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO {table} (id, first_seq, reason) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO NOTHING"
    ))
    .bind(point)
    .bind(sequence as i64)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
