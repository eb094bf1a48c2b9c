//! Reading the stream for a replay: an ephemeral pull consumer without acknowledgements, pulling
//! large batches, from a given sequence on. The replay's own checkpoint in PostgreSQL says where
//! to start again, so nothing needs to be acknowledged to NATS.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, Message};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;

use geoledger_common::stream::StreamSpec;

use crate::apply::Incoming;
use crate::consume::decode;

/// How long a batch waits for one more message once the stream has nothing to give.
const IDLE: Duration = Duration::from_millis(250);

/// The stream from one sequence on, in order.
pub(crate) struct Feed {
    messages: pull::Stream,
    /// Consumer sequence of the last message, to notice a message lost on the way.
    delivered: u64,
    /// Stream sequence of the last message.
    pub(crate) position: u64,
}

/// A message with the time the stream stored it.
pub(crate) struct Stored {
    pub(crate) incoming: Incoming,
    pub(crate) stored_at: DateTime<Utc>,
}

/// The stream's newest sequence (0 when empty).
pub(crate) async fn head(js: &jetstream::Context, spec: &StreamSpec) -> anyhow::Result<u64> {
    let mut stream = js
        .get_stream(&spec.name)
        .await
        .with_context(|| format!("opening the stream {}", spec.name))?;
    Ok(stream
        .info()
        .await
        .context("reading the stream's state")?
        .state
        .last_sequence)
}

impl Feed {
    /// Starts reading after `after`, pulling `batch` messages a request.
    pub(crate) async fn open(
        js: &jetstream::Context,
        spec: &StreamSpec,
        after: u64,
        batch: usize,
    ) -> anyhow::Result<Self> {
        let stream = js
            .get_stream_no_info(&spec.name)
            .await
            .with_context(|| format!("opening the stream {}", spec.name))?;
        let consumer = stream
            .create_consumer(pull::Config {
                description: Some("geoledger replay".to_owned()),
                filter_subject: spec.all_subjects(),
                ack_policy: AckPolicy::None,
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                // An interrupted replay's consumer goes away by itself.
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .context("creating the replay consumer")?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(batch)
            .messages()
            .await
            .context("pulling from the replay consumer")?;
        Ok(Self {
            messages,
            delivered: 0,
            position: after,
        })
    }

    /// Up to `max` messages: fewer when one at or past `until` arrives, or when the stream
    /// has had nothing more for a moment.
    pub(crate) async fn next_batch(
        &mut self,
        max: usize,
        until: u64,
    ) -> anyhow::Result<Vec<Stored>> {
        let mut batch = Vec::with_capacity(max.min(65_536));
        while batch.len() < max && self.position < until {
            let wait = if batch.is_empty() { IDLE * 8 } else { IDLE };
            let Ok(next) = tokio::time::timeout(wait, self.messages.next()).await else {
                break;
            };
            let message = next
                .context("the replay consumer ended")?
                .map_err(|e| anyhow::anyhow!(e))
                .context("pulling from the replay consumer")?;
            batch.push(self.accept(&message)?);
        }
        Ok(batch)
    }

    fn accept(&mut self, message: &Message) -> anyhow::Result<Stored> {
        let info = message
            .info()
            .map_err(|e| anyhow::anyhow!("message without JetStream info: {e}"))?;
        // Without acknowledgements nothing is redelivered: a message missing on the way would
        // be missing from the projection, so a gap ends the run (it resumes from its checkpoint).
        anyhow::ensure!(
            info.consumer_sequence == self.delivered + 1,
            "replay consumer skipped from {} to {}; run again to resume",
            self.delivered,
            info.consumer_sequence
        );
        self.delivered = info.consumer_sequence;
        self.position = info.stream_sequence;
        Ok(Stored {
            incoming: decode(message)?,
            stored_at: to_chrono(info.published),
        })
    }
}

/// A JetStream timestamp as the rest of the code keeps time.
pub(crate) fn to_chrono(time: async_nats::datetime::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(i64::try_from(time.unix_timestamp_nanos()).unwrap_or(i64::MAX))
}
