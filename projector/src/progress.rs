//! How far a `rebuild` or `replay` has got: a bar with rate and ETA on a terminal, a log line
//! every few seconds otherwise (a CI log or a file has no use for redrawn bars).

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a log line reports progress when there is no terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Reports the stream sequence a replay has reached against the one it is heading for.
pub(crate) struct Meter {
    what: &'static str,
    bar: Option<ProgressBar>,
    start: Instant,
    from: u64,
    target: u64,
    last_log: Instant,
}

impl Meter {
    /// A meter for `what` ("rebuild", "replay"), going from sequence `from` to `target`.
    pub(crate) fn new(what: &'static str, from: u64, target: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(
                Some(target.saturating_sub(from)),
                ProgressDrawTarget::stderr_with_hz(4),
            );
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:32}] {human_pos}/{human_len} events, {rate}, ETA {eta} {msg}",
                )
                .expect("the template is well-formed")
                .with_key(
                    "rate",
                    |state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write| {
                        let _ = write!(out, "{:.0}/s", state.per_sec());
                    },
                )
                .progress_chars("=> "),
            );
            bar.set_prefix(what);
            bar
        });
        Self {
            what,
            bar,
            start: Instant::now(),
            from,
            target,
            last_log: Instant::now(),
        }
    }

    /// The target moved (the stream grew while the replay ran).
    pub(crate) fn retarget(&mut self, target: u64) {
        self.target = self.target.max(target);
        if let Some(bar) = &self.bar {
            bar.set_length(self.target.saturating_sub(self.from));
        }
    }

    /// The replay has applied everything up to `position`.
    pub(crate) fn advance(&mut self, position: u64) {
        let done = position.saturating_sub(self.from);
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        if self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            let rate = rate(done, self.start.elapsed());
            let left = self.target.saturating_sub(position);
            tracing::info!(
                replay.what = self.what,
                replay.position = position,
                replay.target = self.target,
                replay.events_per_sec = whole(rate),
                replay.eta_secs = eta_secs(left, rate),
                "replaying"
            );
        }
    }

    /// A phase without a count (building indexes, swapping).
    pub(crate) fn phase(&self, message: &'static str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message);
        } else {
            tracing::info!(replay.what = self.what, replay.phase = message, "replaying");
        }
    }

    /// Removes the bar; the caller logs the outcome.
    pub(crate) fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Events per second.
#[expect(
    clippy::cast_precision_loss,
    reason = "a count of events is far below 2^52, where f64 starts rounding"
)]
pub(crate) fn rate(events: u64, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64().max(1e-3)
}

/// A rate or a duration in seconds, rounded for display.
#[expect(
    clippy::cast_possible_truncation,
    reason = "the value is non-negative and saturates at u64::MAX, which is fine for display"
)]
pub(crate) fn whole(value: f64) -> u64 {
    value.round().max(0.0) as u64
}

#[expect(
    clippy::cast_precision_loss,
    reason = "a count of events is far below 2^52, where f64 starts rounding"
)]
fn eta_secs(left: u64, rate: f64) -> u64 {
    if rate <= 0.0 {
        return 0;
    }
    whole((left as f64 / rate).ceil())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_is_what_is_left_at_the_current_rate() {
        let r = rate(1000, Duration::from_secs(2));
        assert!((r - 500.0).abs() < f64::EPSILON);
        assert_eq!(eta_secs(1500, r), 3);
        assert_eq!(eta_secs(10, 0.0), 0);
    }
}
