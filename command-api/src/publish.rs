//! Publishing events to JetStream and reading back what an earlier publish stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::connection::State;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::DirectGetErrorKind;
use async_nats::jetstream::{self, message::PublishMessage};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing::Instrument as _;
use uuid::Uuid;

use geoledger_common::config::NatsConfig;
use geoledger_common::event::EventEnvelope;
use geoledger_common::metrics::latency_histogram;
use geoledger_common::stream::StreamSpec;
use geoledger_common::telemetry::propagation::{self, TRACEPARENT, TRACESTATE};

use crate::idempotency::IdempotencyStore;

/// Header naming the event type, so tools can filter without decoding payloads.
const EVENT_TYPE_HEADER: &str = "Geoledger-Event-Type";

/// Longest pause between reconnection attempts: a returning NATS is used within this bound.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// How long `/status` waits for JetStream to describe the stream.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// What a publish produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Published {
    /// The event is stored at this stream sequence.
    Stored { sequence: u64 },
    /// An event with the same message id was stored earlier, at this sequence; this one was
    /// dropped by JetStream's de-duplication.
    Duplicate { sequence: u64 },
}

/// Why an event was not stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishFailure {
    /// NATS is not connected: nothing was sent.
    #[error("not connected to NATS")]
    NotConnected,
    /// JetStream refused the event because the point's subject has moved on since the
    /// expected sequence: another write got there first.
    #[error("the point changed since sequence {expected}")]
    Conflict { expected: u64 },
    /// Sent, but JetStream did not confirm in time or refused it.
    #[error("JetStream did not acknowledge the event on {subject}")]
    NotAcknowledged {
        subject: String,
        #[source]
        source: PublishError,
    },
}

/// Why a point's events could not be read back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadFailure {
    /// NATS is down or did not answer.
    #[error("the event stream could not be read: {0}")]
    Unavailable(String),
    /// A stored message is not an event this build can read.
    #[error("the event at stream sequence {sequence} is not readable")]
    Undecodable {
        sequence: u64,
        #[source]
        source: geoledger_common::event::DecodeError,
    },
}

/// JetStream's answer to one publish, still to come.
pub(crate) type AckFuture = BoxFuture<'static, Result<PublishAck, PublishError>>;

/// How a publish ended, as a metric label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Why a publish failed, as a metric label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Publish latencies (send to ack) by outcome, and failures by reason.
#[derive(Debug, Clone)]
struct PublishMetrics {
    duration: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    failures: Family<ReasonLabels, Counter>,
}

impl Default for PublishMetrics {
    fn default() -> Self {
        Self {
            duration: Family::new_with_constructor(latency_histogram),
            failures: Family::default(),
        }
    }
}

impl PublishMetrics {
    fn failed(&self, reason: &'static str) {
        self.failures.get_or_create(&ReasonLabels { reason }).inc();
    }
}

/// A bounded label for why JetStream refused or did not confirm a publish.
fn failure_label(kind: PublishErrorKind) -> &'static str {
    match kind {
        PublishErrorKind::WrongLastSequence => "conflict",
        PublishErrorKind::TimedOut => "timeout",
        PublishErrorKind::StreamNotFound => "stream_not_found",
        PublishErrorKind::BrokenPipe => "broken_pipe",
        _ => "other",
    }
}

fn decode_stored(sequence: u64, payload: &[u8]) -> Result<EventEnvelope, ReadFailure> {
    EventEnvelope::from_slice(payload)
        .map_err(|source| ReadFailure::Undecodable { sequence, source })
}

/// A cheap-to-clone handle publishing point events.
#[derive(Clone)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    spec: StreamSpec,
    stream_ready: Arc<AtomicBool>,
    /// Claims of `Idempotency-Key`s, kept longer than the stream's duplicate window.
    pub(crate) idempotency: IdempotencyStore,
    metrics: PublishMetrics,
}

impl Publisher {
    /// Starts connecting to NATS and declaring the stream, in the background, retrying until
    /// both succeed.
    ///
    /// # Errors
    /// Only when the NATS URL cannot be parsed; an unreachable server is retried.
    pub async fn connect(
        config: &NatsConfig,
        ack_timeout: Duration,
        idempotency_ttl: Duration,
    ) -> anyhow::Result<Self> {
        let client = config
            .connect_options()
            .await
            .context("preparing the NATS credentials")?
            .name("geoledger-command-api")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|attempts| {
                (Duration::from_millis(100) * u32::try_from(attempts).unwrap_or(u32::MAX))
                    .min(MAX_RECONNECT_DELAY)
            })
            .connect(config.url.as_str())
            .await
            .with_context(|| format!("connecting to NATS at {}", config.url))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(ack_timeout);
        let publisher = Self {
            client,
            js,
            spec: config.stream_spec(),
            stream_ready: Arc::new(AtomicBool::new(false)),
            idempotency: IdempotencyStore::new(
                &config.stream,
                idempotency_ttl,
                usize::from(config.stream_replicas),
            ),
            metrics: PublishMetrics::default(),
        };
        tokio::spawn(publisher.clone().declare_stream());
        Ok(publisher)
    }

    /// The stream this publisher writes to.
    #[must_use]
    pub fn spec(&self) -> &StreamSpec {
        &self.spec
    }

    /// Registers `publish_duration_seconds` and `publish_failures_total` in `registry`.
    pub(crate) fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "publish_duration_seconds",
            "Time from sending an event to JetStream's ack, by outcome (stored, duplicate, \
             failed)",
            self.metrics.duration.clone(),
        );
        registry.register(
            "publish_failures",
            "Events not stored, by reason (not_connected, conflict, timeout, \
             stream_not_found, broken_pipe, other)",
            self.metrics.failures.clone(),
        );
    }

    async fn declare_stream(self) {
        let mut delay = Duration::from_millis(100);
        loop {
            let declared = match self.spec.ensure(&self.js).await {
                Ok(info) => self
                    .idempotency
                    .declare(&self.js)
                    .await
                    .map(|()| info)
                    .map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match declared {
                Ok(info) => {
                    tracing::info!(
                        nats.stream = %info.config.name,
                        nats.messages = info.state.messages,
                        "stream ready"
                    );
                    self.stream_ready.store(true, Ordering::Release);
                    return;
                }
                Err(error) => {
                    tracing::warn!(
                        nats.stream = %self.spec.name,
                        error.message = %error,
                        "stream not declared yet; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_RECONNECT_DELAY);
                }
            }
        }
    }

    /// Publishes one envelope on its point's subject and waits for JetStream's ack.
    ///
    /// `message_id` feeds JetStream's de-duplication: the same id within the stream's
    /// duplicate window stores nothing new and reports the first copy's sequence.
    ///
    /// With `expected`, JetStream stores the event only if the last message on the point's
    /// subject is at that stream sequence (0: no message yet), which makes the write
    /// conditional without any lock.
    pub(crate) async fn publish(
        &self,
        envelope: &EventEnvelope,
        message_id: &str,
        expected: Option<u64>,
    ) -> Result<Published, PublishFailure> {
        match self.publish_once(envelope, message_id, expected).await {
            // A NATS that lost its store (or a stream deleted by an operator) answers "no
            // responders"; declaring the stream again and retrying is safe because the
            // message id de-duplicates a publish that did land.
            Err(failure) if failure.stream_missing() => {
                tracing::warn!(nats.stream = %self.spec.name, "stream missing; declaring it again");
                if let Err(error) = self.spec.ensure(&self.js).await {
                    tracing::warn!(error.message = %error, "declaring the stream failed");
                    return Err(failure);
                }
                self.publish_once(envelope, message_id, expected).await
            }
            other => other,
        }
    }

    async fn publish_once(
        &self,
        envelope: &EventEnvelope,
        message_id: &str,
        expected: Option<u64>,
    ) -> Result<Published, PublishFailure> {
        let ack = self
            .send(envelope, message_id, expected)
            .await?
            .await
            .map_err(|source| self.failure(envelope, expected, source))?;
        Ok(if ack.duplicate {
            Published::Duplicate {
                sequence: ack.sequence,
            }
        } else {
            Published::Stored {
                sequence: ack.sequence,
            }
        })
    }

    /// Sends an event without waiting for its ack, so that a batch can have many acks in
    /// flight at once; the returned future resolves to the ack.
    ///
    /// The publish has a span of its own, from sending to the ack, whose trace context rides
    /// in the message's `traceparent` and `tracestate` headers and in the event's metadata:
    /// the projector's span for the event is its child. When spans are not exported, the
    /// context the request came with is passed on unchanged.
    pub(crate) async fn send(
        &self,
        envelope: &EventEnvelope,
        message_id: &str,
        expected: Option<u64>,
    ) -> Result<AckFuture, PublishFailure> {
        // A publish made while disconnected would sit in the client's buffer and might be
        // sent after the caller has been told it failed; refusing up front keeps a 503
        // meaning "not stored" in all but the narrow race of a connection dropping now.
        if self.client.connection_state() != State::Connected {
            self.metrics.failed("not_connected");
            return Err(PublishFailure::NotConnected);
        }
        let subject = self.spec.subject_for(envelope.aggregate_id);
        let span = tracing::info_span!(
            "nats.publish",
            otel.name = format!("publish {}", self.spec.name),
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "nats",
            messaging.destination.name = %self.spec.name,
            point.id = %envelope.aggregate_id,
            event.id = %envelope.event_id,
            event.type = %envelope.event_type,
            nats.stream_seq = tracing::field::Empty,
        );
        let traced = propagation::headers_of(&span).map(|trace| {
            let mut traced = envelope.clone();
            traced.metadata.traceparent = Some(trace.traceparent);
            traced.metadata.tracestate = trace.tracestate;
            traced
        });
        let stored = traced.as_ref().unwrap_or(envelope);
        let mut message = PublishMessage::build()
            .payload(stored.to_vec().into())
            .message_id(message_id)
            .header(EVENT_TYPE_HEADER, envelope.event_type.as_str());
        if let Some(traceparent) = &stored.metadata.traceparent {
            message = message.header(TRACEPARENT, traceparent.as_str());
        }
        if let Some(tracestate) = &stored.metadata.tracestate {
            message = message.header(TRACESTATE, tracestate.as_str());
        }
        if let Some(sequence) = expected {
            message = message.expected_last_subject_sequence(sequence);
        }
        let started = Instant::now();
        let ack = match self
            .js
            .send_publish(subject, message)
            .instrument(span.clone())
            .await
        {
            Ok(ack) => ack,
            Err(source) => {
                self.metrics.failed(failure_label(source.kind()));
                span.record("otel.status_code", "error");
                return Err(self.failure(envelope, expected, source));
            }
        };
        let metrics = self.metrics.clone();
        Ok(async move {
            let result = ack.await;
            let outcome = match &result {
                Ok(ack) => {
                    tracing::Span::current().record("nats.stream_seq", ack.sequence);
                    tracing::debug!(nats.duplicate = ack.duplicate, "event acknowledged");
                    if ack.duplicate { "duplicate" } else { "stored" }
                }
                Err(error) => {
                    metrics.failed(failure_label(error.kind()));
                    tracing::Span::current().record("otel.status_code", "error");
                    "failed"
                }
            };
            metrics
                .duration
                .get_or_create(&OutcomeLabels { outcome })
                .observe(started.elapsed().as_secs_f64());
            result
        }
        .instrument(span)
        .boxed())
    }

    fn failure(
        &self,
        envelope: &EventEnvelope,
        expected: Option<u64>,
        source: PublishError,
    ) -> PublishFailure {
        match (source.kind(), expected) {
            (PublishErrorKind::WrongLastSequence, Some(expected)) => {
                PublishFailure::Conflict { expected }
            }
            _ => PublishFailure::NotAcknowledged {
                subject: self.spec.subject_for(envelope.aggregate_id),
                source,
            },
        }
    }

    /// The last event on a point's subject with its stream sequence, or `None` when the point
    /// has no events. This, not the read model, is what commands decide on: it is never
    /// behind.
    pub(crate) async fn last_event(
        &self,
        point_id: Uuid,
    ) -> Result<Option<(u64, EventEnvelope)>, ReadFailure> {
        let stream = self.stream().await?;
        match stream
            .direct_get_last_for_subject(self.spec.subject_for(point_id))
            .await
        {
            Ok(message) => Ok(Some((
                message.sequence,
                decode_stored(message.sequence, &message.payload)?,
            ))),
            Err(error) if error.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(error) => Err(ReadFailure::Unavailable(error.to_string())),
        }
    }

    /// Every event of a point, oldest first, with its stream sequence and storage time.
    pub(crate) async fn history(
        &self,
        point_id: Uuid,
    ) -> Result<Vec<(u64, EventEnvelope)>, ReadFailure> {
        let stream = self.stream().await?;
        let subject = self.spec.subject_for(point_id);
        let mut events = Vec::new();
        let mut from = 1;
        loop {
            match stream
                .direct_get_next_for_subject(subject.clone(), Some(from))
                .await
            {
                Ok(message) => {
                    events.push((
                        message.sequence,
                        decode_stored(message.sequence, &message.payload)?,
                    ));
                    from = message.sequence + 1;
                }
                Err(error) if error.kind() == DirectGetErrorKind::NotFound => return Ok(events),
                Err(error) => return Err(ReadFailure::Unavailable(error.to_string())),
            }
        }
    }

    async fn stream(&self) -> Result<jetstream::stream::Stream<()>, ReadFailure> {
        if self.client.connection_state() != State::Connected {
            return Err(ReadFailure::Unavailable("not connected to NATS".to_owned()));
        }
        self.js
            .get_stream_no_info(&self.spec.name)
            .await
            .map_err(|e| ReadFailure::Unavailable(e.to_string()))
    }

    /// Reads the event stored at `sequence`.
    pub(crate) async fn stored_event(&self, sequence: u64) -> anyhow::Result<EventEnvelope> {
        let stream = self.stream().await?;
        let message = stream
            .get_raw_message(sequence)
            .await
            .with_context(|| format!("reading stream sequence {sequence}"))?;
        EventEnvelope::from_slice(&message.payload)
            .with_context(|| format!("decoding the event at stream sequence {sequence}"))
    }

    /// `Ok(stream name)` when an event could be published now, else why not.
    pub(crate) async fn check(&self) -> Result<String, String> {
        if self.client.connection_state() != State::Connected {
            return Err("not connected to NATS".to_owned());
        }
        if !self.stream_ready.load(Ordering::Acquire) || !self.idempotency.is_ready() {
            return Err("the event stream is not declared yet".to_owned());
        }
        match tokio::time::timeout(STATUS_TIMEOUT, self.js.get_stream(&self.spec.name)).await {
            Ok(Ok(_)) => Ok(self.spec.name.clone()),
            Ok(Err(error)) => Err(format!(
                "stream {} is not available: {error}",
                self.spec.name
            )),
            Err(_) => Err("JetStream did not answer in time".to_owned()),
        }
    }

    /// Sends what the client still buffers, so a graceful stop loses no ack in flight.
    pub(crate) async fn flush(&self) {
        if let Err(error) = self.client.flush().await {
            tracing::warn!(error.message = %error, "flushing NATS on shutdown failed");
        }
    }
}

impl PublishFailure {
    /// True when the failure says the stream itself is missing (deleted, or a new NATS).
    fn stream_missing(&self) -> bool {
        matches!(self, Self::NotAcknowledged { source, .. }
            if source.kind() == PublishErrorKind::StreamNotFound)
    }
}
