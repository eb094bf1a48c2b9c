//! End-to-end write latency: from sending `POST /point` until the point can be read from
//! query-api, at a steady rate of writes, and what the projector applied meanwhile.
//!
//! Each write is followed by `GET /points/{id}` carrying the write's `Consistency-Token`;
//! query-api answers it as soon as the projection has reached that token (it waits on the
//! projector's notifications, at most 5 s), so the answer's arrival is the moment the point
//! became readable, without a polling interval blurring it.
//!
//! Only one write in [`Config::read_every`] is read back: a read per write would add as many
//! reads a second as writes, and on a small machine the read side, not the projection, would
//! then set the latency. The sampled writes are chosen by position, not by outcome, so their
//! latencies stand for all of them.
//!
//! Writes are started on a fixed schedule whatever the answers do (an open loop): a slow
//! answer does not delay the next write, so a stall shows in the latencies instead of
//! quietly lowering the rate.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::places::Place;
use crate::stats::LatencySummary;

/// How many failures are kept word for word; the rest are only counted.
const KEPT_FAILURES: usize = 5;

/// How often the projector's status is sampled for its rate.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Where to write and read, and how fast.
#[derive(Debug, Clone)]
pub struct Config {
    /// The API's base URL (HAProxy): writes go to command-api, reads to query-api.
    pub base_url: String,
    /// The projector's `/status` URL.
    pub projector_status: String,
    /// Writes started per second.
    pub rate: u32,
    /// How long writes are started; the last ones are then waited for.
    pub duration: Duration,
    /// Writes started before this are sent but not counted.
    pub warmup: Duration,
    /// Writes in flight at most; a write due while this many are open is skipped and
    /// counted, rather than queued, so the generator's own backlog cannot grow unbounded.
    pub max_in_flight: usize,
    /// One write in this many is read back to time its visibility; 1 reads every write.
    pub read_every: u32,
    /// Bearer token sent with every write, when the API wants one.
    pub token: Option<String>,
}

/// The part of a 202 the benchmark reads.
#[derive(Debug, Deserialize)]
struct Accepted {
    id: Uuid,
    sequence: u64,
}

/// The part of the projector's `/status` the benchmark reads.
#[derive(Debug, Deserialize)]
struct ProjectorStatus {
    checkpoint: u64,
    pending: u64,
}

/// One counted write.
#[derive(Debug)]
enum Outcome {
    /// Accepted after the first duration, and readable after the second if it was read back.
    Readable(Duration, Option<Duration>),
    Failed(String),
}

/// What a run amounted to.
#[derive(Debug)]
pub struct Report {
    /// The rate asked for.
    pub rate: u32,
    /// The counted time over which writes were started.
    pub measured: Duration,
    /// Writes started within the counted time.
    pub started: usize,
    /// Writes due while `max_in_flight` were open, never sent.
    pub skipped: usize,
    /// From sending to the 202.
    pub accepted: Option<LatencySummary>,
    /// From sending until the read answered 200 with the point, over the writes read back.
    pub readable: Option<LatencySummary>,
    /// One write in this many was read back.
    pub read_every: u32,
    /// Writes that were not accepted, or not readable.
    pub failed: usize,
    /// The first few failures in words.
    pub failures: Vec<String>,
    /// Events the projector applied per second over the counted time, if its status could be
    /// read at both ends.
    pub projector_rate: Option<f64>,
    /// The largest backlog (`pending`) the projector reported while sampled.
    pub projector_max_pending: Option<u64>,
}

impl Report {
    /// Writes started per second of the counted time.
    #[must_use]
    pub fn achieved_rate(&self) -> f64 {
        #[expect(
            clippy::cast_precision_loss,
            reason = "write counts stay far below 2^52"
        )]
        let started = self.started as f64;
        started / self.measured.as_secs_f64().max(f64::EPSILON)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "end-to-end writes at {} writes/s asked, {:.0} started per second over {:.1} s \
             ({} started, {} skipped at the in-flight limit, {} failed)",
            self.rate,
            self.achieved_rate(),
            self.measured.as_secs_f64(),
            self.started,
            self.skipped,
            self.failed
        )?;
        match &self.accepted {
            Some(l) => writeln!(f, "  POST /point answered 202:       {l}")?,
            None => writeln!(f, "  POST /point answered 202:       never")?,
        }
        match &self.readable {
            Some(l) => write!(
                f,
                "  readable from query-api after:  {l} ({} writes read back, one in {})",
                l.count, self.read_every
            )?,
            None => write!(f, "  readable from query-api after:  never")?,
        }
        match (self.projector_rate, self.projector_max_pending) {
            (Some(rate), Some(pending)) => write!(
                f,
                "\n  projector applied {rate:.0} events/s meanwhile; \
                 largest backlog {pending} events"
            )?,
            _ => write!(f, "\n  projector: status not readable")?,
        }
        for failure in &self.failures {
            write!(f, "\n  failed: {failure}")?;
        }
        Ok(())
    }
}

/// Starts `config.rate` writes a second for the warm-up and the counted time, following
/// each with a read of the point, and reports the writes started in the counted time.
pub async fn run(
    client: &reqwest::Client,
    config: &Config,
    places: Arc<Vec<Place>>,
) -> anyhow::Result<Report> {
    anyhow::ensure!(!places.is_empty(), "no places to write");
    anyhow::ensure!(
        config.rate > 0,
        "the rate must be at least one write a second"
    );
    let base = config.base_url.trim_end_matches('/').to_owned();
    let period = Duration::from_secs(1) / config.rate;
    let started = Instant::now();
    let counted_from = started + config.warmup;
    let until = counted_from + config.duration;

    let sampler = tokio::spawn(sample_projector(
        client.clone(),
        config.projector_status.clone(),
        counted_from,
        until,
    ));

    let (tx, mut rx) = mpsc::unbounded_channel();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut report = Report {
        rate: config.rate,
        measured: config.duration,
        started: 0,
        skipped: 0,
        accepted: None,
        readable: None,
        read_every: config.read_every.max(1),
        failed: 0,
        failures: Vec::new(),
        projector_rate: None,
        projector_max_pending: None,
    };
    // Due times are computed from the start, never from the last wake-up, so the timer's
    // millisecond granularity bunches writes without lowering their rate.
    for i in 0_u32.. {
        let due = started + period * i;
        if due >= until {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let counted = due >= counted_from;
        if in_flight.load(Ordering::Relaxed) >= config.max_in_flight {
            if counted {
                report.skipped += 1;
            }
            continue;
        }
        if counted {
            report.started += 1;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (client, base, token, places, tx, in_flight) = (
            client.clone(),
            base.clone(),
            config.token.clone(),
            Arc::clone(&places),
            tx.clone(),
            Arc::clone(&in_flight),
        );
        let read_back = i % config.read_every.max(1) == 0;
        tokio::spawn(async move {
            let place = &places[i as usize * 7919 % places.len()];
            let outcome = write_then_read(&client, &base, token.as_deref(), place, read_back).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            if counted {
                // The receiver lives until every sender is dropped.
                let _ = tx.send(outcome);
            }
        });
    }
    drop(tx);

    let (mut accepted, mut readable) = (Vec::new(), Vec::new());
    while let Some(outcome) = rx.recv().await {
        match outcome {
            Outcome::Readable(ack, visible) => {
                accepted.push(ack);
                readable.extend(visible);
            }
            Outcome::Failed(failure) => {
                report.failed += 1;
                if report.failures.len() < KEPT_FAILURES {
                    report.failures.push(failure);
                }
            }
        }
    }
    report.accepted = LatencySummary::new(accepted);
    report.readable = LatencySummary::new(readable);
    if let Ok(Some((rate, pending))) = sampler.await {
        report.projector_rate = Some(rate);
        report.projector_max_pending = Some(pending);
    }
    Ok(report)
}

async fn write_then_read(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    place: &Place,
    read_back: bool,
) -> Outcome {
    let body = serde_json::json!({
        "longitude": place.longitude,
        "latitude": place.latitude,
        "name": place.name,
    });
    let sent = Instant::now();
    let written = async {
        let mut request = client.post(format!("{base}/point")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("POST /point: {e}"))?;
        let status = response.status();
        if status != reqwest::StatusCode::ACCEPTED {
            return Err(format!("POST /point: HTTP {status}"));
        }
        response
            .json::<Accepted>()
            .await
            .map_err(|e| format!("POST /point: an unexpected body: {e}"))
    }
    .await;
    let accepted = match written {
        Ok(accepted) => accepted,
        Err(failure) => return Outcome::Failed(failure),
    };
    let ack = sent.elapsed();
    if !read_back {
        return Outcome::Readable(ack, None);
    }
    let read = client
        .get(format!("{base}/points/{}", accepted.id))
        .header("Consistency-Token", accepted.sequence.to_string())
        .send()
        .await;
    match read {
        Ok(response) if response.status() == reqwest::StatusCode::OK => {
            // The point is readable once its body has arrived.
            match response.bytes().await {
                Ok(_) => Outcome::Readable(ack, Some(sent.elapsed())),
                Err(e) => Outcome::Failed(format!("GET /points/{{id}}: {e}")),
            }
        }
        Ok(response) => Outcome::Failed(format!(
            "GET /points/{{id}} with token {}: HTTP {}",
            accepted.sequence,
            response.status()
        )),
        Err(e) => Outcome::Failed(format!("GET /points/{{id}}: {e}")),
    }
}

/// Samples the projector's status every second from `from` to `until` and returns its rate
/// between the first and last sample and the largest backlog seen.
async fn sample_projector(
    client: reqwest::Client,
    url: String,
    from: Instant,
    until: Instant,
) -> Option<(f64, u64)> {
    tokio::time::sleep_until(from.into()).await;
    let mut first: Option<(Instant, u64)> = None;
    let mut last: Option<(Instant, u64)> = None;
    let mut max_pending = 0;
    loop {
        if let Ok(status) = projector_status(&client, &url).await {
            let now = Instant::now();
            first.get_or_insert((now, status.checkpoint));
            last = Some((now, status.checkpoint));
            max_pending = max_pending.max(status.pending);
        }
        if Instant::now() >= until {
            break;
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    let ((t0, c0), (t1, c1)) = (first?, last?);
    let seconds = (t1 - t0).as_secs_f64();
    #[expect(
        clippy::cast_precision_loss,
        reason = "sequence differences stay far below 2^52"
    )]
    let applied = c1.saturating_sub(c0) as f64;
    (seconds > 0.0).then(|| (applied / seconds, max_pending))
}

async fn projector_status(client: &reqwest::Client, url: &str) -> anyhow::Result<ProjectorStatus> {
    Ok(client.get(url).send().await?.json().await?)
}

/// How fast the projector works through a backlog.
#[derive(Debug)]
pub struct Drain {
    /// Events applied from the first advance seen to the catch-up.
    pub events: u64,
    /// The time that took.
    pub elapsed: Duration,
}

impl fmt::Display for Drain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        #[expect(
            clippy::cast_precision_loss,
            reason = "event counts stay far below 2^52"
        )]
        let rate = self.events as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON);
        write!(
            f,
            "projector drained {} events in {:.2} s: {rate:.0} events/s",
            self.events,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Polls the projector until its checkpoint reaches `target` (the stream's last sequence),
/// timing from the first advance it sees, so the time it took to start is left out.
pub async fn drain(
    client: &reqwest::Client,
    status_url: &str,
    target: u64,
    timeout: Duration,
) -> anyhow::Result<Drain> {
    let deadline = Instant::now() + timeout;
    // The sample before the first advance: the advance happened after it, so timing from
    // it errs towards a lower rate, never a higher one.
    let mut start: Option<(Instant, u64)> = None;
    let mut previous: Option<(Instant, u64)> = None;
    loop {
        if let Ok(status) = projector_status(client, status_url).await {
            let now = Instant::now();
            if start.is_none() && previous.is_some_and(|(_, p)| status.checkpoint > p) {
                start = previous;
            }
            if status.checkpoint >= target {
                let (since, from) = start.unwrap_or((now, status.checkpoint));
                return Ok(Drain {
                    events: status.checkpoint - from,
                    elapsed: now - since,
                });
            }
            previous = Some((now, status.checkpoint));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the projector did not reach sequence {target} within {} s (last at {:?})",
            timeout.as_secs(),
            previous.map(|(_, p)| p)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last sequence of `stream`, from NATS monitoring (`/jsz?streams=true`).
pub async fn stream_last_sequence(
    client: &reqwest::Client,
    nats_monitor: &str,
    stream: &str,
) -> anyhow::Result<u64> {
    let url = format!("{}/jsz?streams=true", nats_monitor.trim_end_matches('/'));
    let jsz: serde_json::Value = client.get(url).send().await?.json().await?;
    jsz["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|account| account["stream_detail"].as_array().into_iter().flatten())
        .find(|s| s["name"] == stream)
        .and_then(|s| s["state"]["last_seq"].as_u64())
        .ok_or_else(|| anyhow::anyhow!("stream {stream} not found in {nats_monitor}/jsz"))
}
