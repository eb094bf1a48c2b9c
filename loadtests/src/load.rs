//! Posting places to command-api with a bounded number of requests in flight.

use std::fmt;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::places::Place;
use crate::stats::LatencySummary;

/// How many failures are kept word for word; the rest are only counted.
const KEPT_FAILURES: usize = 10;

/// How often a long run reports its progress on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The body of `POST /point`.
#[derive(Debug, Serialize)]
struct NewPoint<'a> {
    longitude: f64,
    latitude: f64,
    name: &'a str,
}

/// The part of a 202 answer the loader relies on; other members are ignored.
#[derive(Debug, Deserialize)]
struct Accepted {
    #[expect(
        dead_code,
        reason = "parsed only to check the answer carries a valid point id"
    )]
    id: Uuid,
    sequence: u64,
}

/// What one run of posts amounted to.
#[derive(Debug)]
pub struct LoadReport {
    /// Requests sent, one per place.
    pub sent: usize,
    /// Places command-api accepted (a 2xx answer with an id and a stream sequence).
    pub accepted: usize,
    /// Places that got any other outcome.
    pub failed: usize,
    /// The first few failures, each naming its place.
    pub failures: Vec<String>,
    /// From the first request sent to the last answer received.
    pub elapsed: Duration,
    /// Latencies of the accepted requests, from sending to the whole answer read.
    pub latency: Option<LatencySummary>,
    /// The highest stream sequence among the accepted places: once the projector's
    /// checkpoint reaches it, every accepted place is in the read model.
    pub max_sequence: Option<u64>,
}

impl LoadReport {
    /// Accepted places per second of the run.
    #[must_use]
    pub fn throughput(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            #[expect(
                clippy::cast_precision_loss,
                reason = "place counts stay far below 2^52"
            )]
            let accepted = self.accepted as f64;
            accepted / seconds
        } else {
            0.0
        }
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sent {}: accepted {}, failed {} in {:.2} s ({:.0} accepted/s)",
            self.sent,
            self.accepted,
            self.failed,
            self.elapsed.as_secs_f64(),
            self.throughput()
        )?;
        match &self.latency {
            Some(latency) => write!(f, "latency of accepted requests: {latency}")?,
            None => write!(f, "latency: no request was accepted")?,
        }
        for failure in &self.failures {
            write!(f, "\nfailed: {failure}")?;
        }
        if self.failed > self.failures.len() {
            write!(
                f,
                "\n... and {} more failures",
                self.failed - self.failures.len()
            )?;
        }
        Ok(())
    }
}

/// Where and how to post.
#[derive(Debug, Clone)]
pub struct Config {
    /// The API's base URL; places go to `<base_url>/point`.
    pub base_url: String,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// When set, each request carries `Idempotency-Key: <prefix>-<row>`, so re-running the
    /// same file with the same prefix inside command-api's duplicate window adds nothing.
    pub idempotency_prefix: Option<String>,
    /// Bearer token sent with every request, when the API wants one.
    pub token: Option<String>,
}

/// Posts every place to `<base_url>/point`, at most `concurrency` at a time, and reports
/// the outcome. Failures are counted, not retried: a retry would hide the very errors a
/// load run is meant to show.
pub async fn post_places(
    client: &reqwest::Client,
    config: &Config,
    places: &[Place],
) -> LoadReport {
    let url = format!("{}/point", config.base_url.trim_end_matches('/'));
    let started = Instant::now();
    let mut outcomes = futures::stream::iter(places.iter().enumerate())
        .map(|(index, place)| {
            let key = config
                .idempotency_prefix
                .as_ref()
                .map(|prefix| format!("{prefix}-{}", index + 1));
            post_place(client, &url, config.token.as_deref(), key, index, place)
        })
        .buffer_unordered(config.concurrency.max(1));

    let mut report = LoadReport {
        sent: places.len(),
        accepted: 0,
        failed: 0,
        failures: Vec::new(),
        elapsed: Duration::ZERO,
        latency: None,
        max_sequence: None,
    };
    let mut latencies = Vec::with_capacity(places.len());
    let mut next_progress = started + PROGRESS_EVERY;
    let mut done = 0_usize;
    while let Some((outcome, latency)) = outcomes.next().await {
        done += 1;
        match outcome {
            Ok(sequence) => {
                report.accepted += 1;
                latencies.push(latency);
                report.max_sequence = report.max_sequence.max(Some(sequence));
            }
            Err(failure) => {
                report.failed += 1;
                if report.failures.len() < KEPT_FAILURES {
                    report.failures.push(failure);
                }
            }
        }
        if Instant::now() >= next_progress {
            eprintln!(
                "load-places: {done}/{} answered, {} failed",
                places.len(),
                report.failed
            );
            next_progress += PROGRESS_EVERY;
        }
    }
    report.elapsed = started.elapsed();
    report.latency = LatencySummary::new(latencies);
    report
}

/// Posts one place; on success yields its stream sequence, on failure a line naming the
/// place (its 1-based data row, name and country) and what went wrong.
async fn post_place(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    idempotency_key: Option<String>,
    index: usize,
    place: &Place,
) -> (Result<u64, String>, Duration) {
    let body = NewPoint {
        longitude: place.longitude,
        latitude: place.latitude,
        name: &place.name,
    };
    let started = Instant::now();
    let mut request = client.post(url).json(&body);
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let result = send(request).await;
    let latency = started.elapsed();
    let result = result.map_err(|reason| {
        format!(
            "row {} {:?} ({}): {reason}",
            index + 1,
            place.name,
            place.country
        )
    });
    (result, latency)
}

async fn send(request: reqwest::RequestBuilder) -> Result<u64, String> {
    let response = request.send().await.map_err(|e| error_chain(&e))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| error_chain(&e))?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", truncate(&text, 300)));
    }
    serde_json::from_str::<Accepted>(&text)
        .map(|accepted| accepted.sequence)
        .map_err(|e| {
            format!(
                "HTTP {status} with an unexpected body ({e}): {}",
                truncate(&text, 300)
            )
        })
}

/// The error and its sources on one line: reqwest's own message alone rarely says whether
/// the connection was refused or timed out.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

fn truncate(text: &str, max_chars: usize) -> &str {
    text.char_indices()
        .nth(max_chars)
        .map_or(text, |(end, _)| &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_body_carries_the_coordinates_as_the_file_wrote_them() {
        let body = NewPoint {
            longitude: "-179.11838".parse().unwrap(),
            latitude: "0.5".parse().unwrap(),
            name: "Tubou",
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"longitude":-179.11838,"latitude":0.5,"name":"Tubou"}"#
        );
    }

    #[test]
    fn truncation_never_splits_a_character() {
        assert_eq!(truncate("Zürich", 2), "Zü");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
