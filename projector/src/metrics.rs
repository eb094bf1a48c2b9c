//! The projector's metrics, served at `/metrics` beside `/status`: how much it applied, how
//! far behind it is, how big and slow its batches are, and what it dead-lettered.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use geoledger_common::metrics::latency_histogram;

use crate::consume::Progress;

/// What the consuming loop records; cheap to clone, each clone updating the same metrics.
#[derive(Debug, Clone)]
pub(crate) struct ProjectorMetrics {
    /// Messages per committed batch.
    pub(crate) batch_size: Histogram,
    /// Time of a batch's transaction, from `BEGIN` to `COMMIT`.
    pub(crate) apply_duration: Histogram,
    /// Seconds between the last applied event's `occurred_at` and its batch's commit.
    pub(crate) lag_seconds: Gauge<f64, AtomicU64>,
    /// Messages the consumer has not had acknowledged, read from JetStream at each scrape.
    pub(crate) pending: Gauge,
}

impl ProjectorMetrics {
    /// Registers the projector's metrics, including the counters kept in `progress`.
    pub(crate) fn register(registry: &mut Registry, progress: Arc<Progress>) -> Self {
        let metrics = Self {
            // 1 to 1024 and beyond: the default batch of 500 falls in the 512 bucket.
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            apply_duration: latency_histogram(),
            lag_seconds: Gauge::default(),
            pending: Gauge::default(),
        };
        registry.register(
            "projector_batch_size",
            "Messages in each committed batch",
            metrics.batch_size.clone(),
        );
        registry.register(
            "projector_apply_duration_seconds",
            "Time of each batch's transaction, events, checkpoint and dead letters included",
            metrics.apply_duration.clone(),
        );
        registry.register(
            "projector_lag_seconds",
            "Commit time of the last batch minus the occurred_at of its last event; \
             measured at each commit, so it stays put while nothing arrives",
            metrics.lag_seconds.clone(),
        );
        registry.register(
            "projector_pending_messages",
            "Messages in the stream the projector has not yet had acknowledged",
            metrics.pending.clone(),
        );
        registry.register_collector(Box::new(ProgressCollector(progress)));
        metrics
    }
}

/// The counters `/status` shows too, read from [`Progress`] at each scrape so that they are
/// kept in one place.
#[derive(Debug)]
struct ProgressCollector(Arc<Progress>);

impl Collector for ProgressCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let progress = &self.0;
        let counters = [
            (
                "projector_events_applied",
                "Events that changed the read model",
                &progress.applied,
            ),
            (
                "projector_events_undecodable",
                "Messages that were not events this build can read",
                &progress.undecodable,
            ),
            (
                "projector_dead_letters",
                "Messages sent to the dead-letter stream (undecodable ones and those parked \
                 behind them)",
                &progress.dead_lettered,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let checkpoint = ConstGauge::new(
            i64::try_from(progress.checkpoint.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        );
        let metric = encoder.encode_descriptor(
            "projector_checkpoint",
            "Last stream sequence this process committed to the read model",
            None,
            checkpoint.metric_type(),
        )?;
        checkpoint.encode(metric)
    }
}
