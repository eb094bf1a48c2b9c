//! Latency figures over a run.

use std::fmt;
use std::time::Duration;

/// Percentiles of a set of request latencies, by the nearest-rank method: p95 is the
/// smallest latency that at least 95 % of the requests did not exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySummary {
    /// How many latencies were summarised.
    pub count: usize,
    /// The median.
    pub p50: Duration,
    /// The 95th percentile.
    pub p95: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The slowest request.
    pub max: Duration,
}

impl LatencySummary {
    /// Summarises `latencies`, or `None` when there are none.
    #[must_use]
    pub fn new(mut latencies: Vec<Duration>) -> Option<Self> {
        latencies.sort_unstable();
        let max = *latencies.last()?;
        Some(Self {
            count: latencies.len(),
            p50: nearest_rank(&latencies, 500),
            p95: nearest_rank(&latencies, 950),
            p99: nearest_rank(&latencies, 990),
            max,
        })
    }
}

/// The nearest-rank percentile of sorted, non-empty values, in per mille so that the
/// arithmetic stays in integers.
fn nearest_rank(sorted: &[Duration], per_mille: usize) -> Duration {
    let rank = (sorted.len() * per_mille).div_ceil(1000).max(1);
    sorted[rank - 1]
}

impl fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
            millis(self.p50),
            millis(self.p95),
            millis(self.p99),
            millis(self.max)
        )
    }
}

/// Milliseconds with one decimal, enough to tell loopback latencies apart.
fn millis(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn percentiles_of_one_to_a_hundred_are_their_own_ranks() {
        let summary = LatencySummary::new(ms((1..=100).rev())).unwrap();
        assert_eq!(summary.count, 100);
        assert_eq!(summary.p50, Duration::from_millis(50));
        assert_eq!(summary.p95, Duration::from_millis(95));
        assert_eq!(summary.p99, Duration::from_millis(99));
        assert_eq!(summary.max, Duration::from_millis(100));
    }

    #[test]
    fn a_single_request_is_every_percentile() {
        let summary = LatencySummary::new(ms([7])).unwrap();
        assert_eq!(
            (summary.p50, summary.p99),
            (Duration::from_millis(7), Duration::from_millis(7))
        );
    }

    #[test]
    fn no_requests_give_no_summary() {
        assert_eq!(LatencySummary::new(Vec::new()), None);
    }
}
