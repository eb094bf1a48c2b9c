//! Throughput at a fixed concurrency: a number of clients, each with one keep-alive
//! connection of its own, each sending its next request as soon as the last answer is read
//! (a closed loop), for a fixed time.
//!
//! The clients speak HTTP/1.1 over hyper's connection API directly, so that each holds
//! exactly one connection for the whole run and the generator spends as little CPU as it
//! can: on a small machine it shares the CPUs with the servers it measures.
//!
//! # Limitations
//!
//! A closed loop measures the latency of the requests it manages to send. When the servers
//! slow down the clients send less, so a stall shows as lower throughput rather than as
//! requests queued behind it (the write-latency benchmark, [`crate::write_latency`], keeps
//! its rate instead).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::places::Place;
use crate::stats::LatencySummary;

/// Half the side of a box drawn around a place, in degrees: a region of about 110 km, like
/// the Locust users' boxes.
const BOX_HALF_SIDE: f64 = 0.5;

/// How many boxes and bodies are prepared; enough variety that no cache serves a repeat,
/// few enough to build in a moment.
const PREPARED: usize = 4096;

/// How many failures are kept word for word; the rest are only counted.
const KEPT_FAILURES: usize = 5;

/// One kind of request the generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `GET /points?limit=100`: the newest hundred points.
    FirstPage,
    /// `GET /points?bbox=…&limit=100` around a real place.
    Bbox,
    /// `POST /point` with a real place.
    Post,
}

impl Kind {
    fn expected(self) -> StatusCode {
        match self {
            Self::FirstPage | Self::Bbox => StatusCode::OK,
            Self::Post => StatusCode::ACCEPTED,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that the report can line the kinds up in a column.
        f.pad(match self {
            Self::FirstPage => "GET /points",
            Self::Bbox => "GET /points?bbox",
            Self::Post => "POST /point",
        })
    }
}

/// What the clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Only the first page.
    FirstPage,
    /// Only boxes.
    Bbox,
    /// Only writes.
    Post,
    /// Four reads (first page and box in turn) for each write.
    Mix,
    /// Four first pages for each write: the guide's user, who lists points and adds them,
    /// without map windows.
    ListMix,
}

impl Scenario {
    /// The kind of a client's `n`th request.
    fn pick(self, n: usize) -> Kind {
        match self {
            Self::FirstPage => Kind::FirstPage,
            Self::Bbox => Kind::Bbox,
            Self::Post => Kind::Post,
            Self::Mix => match n % 5 {
                4 => Kind::Post,
                1 | 3 => Kind::Bbox,
                _ => Kind::FirstPage,
            },
            Self::ListMix => match n % 5 {
                4 => Kind::Post,
                _ => Kind::FirstPage,
            },
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FirstPage => "first page (GET /points?limit=100)",
            Self::Bbox => "bbox (GET /points?bbox=<1 degree around a place>&limit=100)",
            Self::Post => "POST /point (real places)",
            Self::Mix => "80/20 mix (first page and bbox in turn, one POST /point in five)",
            Self::ListMix => "80/20 list mix (first page, one POST /point in five)",
        })
    }
}

/// Where the clients connect and for how long.
#[derive(Debug, Clone)]
pub struct Config {
    /// `host:port` of the API (HAProxy), connected to directly.
    pub authority: String,
    /// Clients, and so connections, at once.
    pub connections: usize,
    /// Requests answered in this time after the warm-up are counted.
    pub duration: Duration,
    /// Requests answered before this are sent but not counted: connections open, caches
    /// fill, and the servers' pools grow.
    pub warmup: Duration,
    /// Every request says `Accept-Encoding: gzip`.
    pub gzip: bool,
}

/// The request targets and bodies, made once from the places.
#[derive(Debug)]
pub struct Prepared {
    boxes: Vec<String>,
    bodies: Vec<Bytes>,
    /// `Authorization` of the writes, when the API wants a token.
    authorization: Option<http::HeaderValue>,
}

impl Prepared {
    /// Boxes around and bodies of places picked evenly through the file (which is sorted by
    /// country), so they spread over the world.
    pub fn from_places(places: &[Place]) -> anyhow::Result<Self> {
        anyhow::ensure!(!places.is_empty(), "no places to build requests from");
        let stride = (places.len() / PREPARED).max(1);
        let picked: Vec<&Place> = places.iter().step_by(stride).take(PREPARED).collect();
        let boxes = picked
            .iter()
            .map(|p| {
                let west = wrap_longitude(p.longitude - BOX_HALF_SIDE);
                let east = wrap_longitude(p.longitude + BOX_HALF_SIDE);
                let south = (p.latitude - BOX_HALF_SIDE).max(-90.0);
                let north = (p.latitude + BOX_HALF_SIDE).min(90.0);
                format!("/points?bbox={west:.5},{south:.5},{east:.5},{north:.5}&limit=100")
            })
            .collect();
        let bodies = picked
            .iter()
            .map(|p| {
                serde_json::to_vec(&serde_json::json!({
                    "longitude": p.longitude,
                    "latitude": p.latitude,
                    "name": p.name,
                }))
                .map(Bytes::from)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            boxes,
            bodies,
            authorization: None,
        })
    }

    /// Sends `token` as a bearer token with every write.
    pub fn with_token(mut self, token: Option<&str>) -> anyhow::Result<Self> {
        self.authorization = crate::bearer(token)?;
        Ok(self)
    }

    fn request(&self, kind: Kind, n: usize, config: &Config) -> Request<Full<Bytes>> {
        let mut builder = Request::builder().header(header::HOST, config.authority.as_str());
        if config.gzip {
            builder = builder.header(header::ACCEPT_ENCODING, "gzip");
        }
        let built = match kind {
            Kind::FirstPage => builder
                .uri("/points?limit=100")
                .body(Full::new(Bytes::new())),
            Kind::Bbox => builder
                .uri(self.boxes[n % self.boxes.len()].as_str())
                .body(Full::new(Bytes::new())),
            Kind::Post => match &self.authorization {
                Some(value) => builder.header(header::AUTHORIZATION, value.clone()),
                None => builder,
            }
            .method(Method::POST)
            .uri("/point")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(self.bodies[n % self.bodies.len()].clone())),
        };
        built.expect("a request built from a fixed path and prepared parts is valid")
    }
}

/// Folds a longitude pushed past ±180 back in; a box that then has west > east crosses the
/// antimeridian, which the API reads as such.
fn wrap_longitude(longitude: f64) -> f64 {
    if longitude > 180.0 {
        longitude - 360.0
    } else if longitude < -180.0 {
        longitude + 360.0
    } else {
        longitude
    }
}

/// What one client saw.
#[derive(Debug, Default)]
struct Tally {
    latencies: BTreeMap<Kind, Vec<Duration>>,
    /// Answers with another status than the one expected, by status.
    statuses: BTreeMap<u16, u64>,
    /// Connections refused, reset or closed mid-request.
    connection_errors: u64,
    failures: Vec<String>,
}

impl Tally {
    fn fail(&mut self, failure: impl FnOnce() -> String) {
        if self.failures.len() < KEPT_FAILURES {
            self.failures.push(failure());
        }
    }

    fn merge(&mut self, other: Self) {
        for (kind, latencies) in other.latencies {
            self.latencies.entry(kind).or_default().extend(latencies);
        }
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.connection_errors += other.connection_errors;
        for failure in other.failures {
            self.fail(|| failure);
        }
    }
}

/// What a run amounted to.
#[derive(Debug)]
pub struct Report {
    /// What was sent.
    pub scenario: Scenario,
    /// Clients at once.
    pub connections: usize,
    /// The counted time.
    pub measured: Duration,
    /// Answers with the expected status within the counted time.
    pub ok: usize,
    /// Latency of those answers, all kinds together.
    pub latency: Option<LatencySummary>,
    /// The same by kind of request, with their counts.
    pub by_kind: Vec<(Kind, LatencySummary)>,
    /// Answers with another status, by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer.
    pub connection_errors: u64,
    /// The first few failures in words.
    pub failures: Vec<String>,
}

impl Report {
    /// Expected answers per second of the counted time.
    #[must_use]
    pub fn throughput(&self) -> f64 {
        #[expect(
            clippy::cast_precision_loss,
            reason = "request counts stay far below 2^52"
        )]
        let ok = self.ok as f64;
        ok / self.measured.as_secs_f64().max(f64::EPSILON)
    }

    /// Requests that did not get the expected answer.
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.connection_errors
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} connections, {:.1} s counted",
            self.scenario,
            self.connections,
            self.measured.as_secs_f64()
        )?;
        write!(
            f,
            "  {:.0} requests/s ({} answered as expected), errors {}",
            self.throughput(),
            self.ok,
            self.errors()
        )?;
        if self.errors() > 0 {
            write!(f, " (connection {}", self.connection_errors)?;
            for (status, count) in &self.statuses {
                write!(f, ", HTTP {status} x{count}")?;
            }
            write!(f, ")")?;
        }
        match &self.latency {
            Some(latency) => write!(f, "\n  latency: {latency}")?,
            None => write!(f, "\n  latency: no expected answer")?,
        }
        if self.by_kind.len() > 1 {
            for (kind, latency) in &self.by_kind {
                write!(f, "\n    {kind:<17} {:>8} ok, {latency}", latency.count)?;
            }
        }
        for failure in &self.failures {
            write!(f, "\n  failed: {failure}")?;
        }
        Ok(())
    }
}

/// Runs `config.connections` clients sending `scenario` for the warm-up and the counted
/// time, and reports what was answered within the counted time.
pub async fn run(
    config: &Config,
    scenario: Scenario,
    prepared: Arc<Prepared>,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let counted_from = started + config.warmup;
    let until = counted_from + config.duration;
    let clients: Vec<_> = (0..config.connections.max(1))
        .map(|id| {
            let prepared = Arc::clone(&prepared);
            let config = config.clone();
            tokio::spawn(async move {
                client(id, &config, scenario, &prepared, counted_from, until).await
            })
        })
        .collect();
    let mut total = Tally::default();
    for client in clients {
        total.merge(client.await.context("a client task panicked")?);
    }
    let mut all = Vec::new();
    let mut by_kind = Vec::new();
    for (kind, latencies) in total.latencies {
        all.extend_from_slice(&latencies);
        if let Some(summary) = LatencySummary::new(latencies) {
            by_kind.push((kind, summary));
        }
    }
    Ok(Report {
        scenario,
        connections: config.connections.max(1),
        measured: config.duration,
        ok: all.len(),
        latency: LatencySummary::new(all),
        by_kind,
        statuses: total.statuses,
        connection_errors: total.connection_errors,
        failures: total.failures,
    })
}

/// One client: a connection, requests one after the other, a new connection if the old one
/// breaks. Only answers received between `counted_from` and `until` are counted.
async fn client(
    id: usize,
    config: &Config,
    scenario: Scenario,
    prepared: &Prepared,
    counted_from: Instant,
    until: Instant,
) -> Tally {
    let mut tally = Tally::default();
    // Clients start at different places in the prepared lists, so they do not all post the
    // same place at the same moment.
    let mut n = id.wrapping_mul(7919);
    while Instant::now() < until {
        let mut sender = match connect(&config.authority).await {
            Ok(sender) => sender,
            Err(e) => {
                if Instant::now() >= counted_from {
                    tally.connection_errors += 1;
                    tally.fail(|| format!("connecting: {e:#}"));
                }
                // Not a hot loop against a port nobody listens on.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while Instant::now() < until {
            let kind = scenario.pick(n);
            let request = prepared.request(kind, n, config);
            n = n.wrapping_add(1);
            let sent = Instant::now();
            let outcome = exchange(&mut sender, request).await;
            let answered = Instant::now();
            let counted = sent >= counted_from && answered <= until;
            match outcome {
                Ok(status) if counted && status == kind.expected() => {
                    tally
                        .latencies
                        .entry(kind)
                        .or_default()
                        .push(answered - sent);
                }
                Ok(status) if counted && status != kind.expected() => {
                    *tally.statuses.entry(status.as_u16()).or_default() += 1;
                    tally.fail(|| format!("{kind}: HTTP {status}"));
                }
                Ok(_) => {}
                Err(e) => {
                    if counted {
                        tally.connection_errors += 1;
                        tally.fail(|| format!("{kind}: {e:#}"));
                    }
                    break;
                }
            }
        }
    }
    tally
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(authority: &str) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(authority).await?;
    // Requests are small and written whole; Nagle's algorithm would only hold them back.
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // Drives the connection until either side closes it; a failure shows up at the sender.
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends one request and reads the whole answer, so the time includes the body.
async fn exchange(
    sender: &mut Sender,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<StatusCode> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_four_reads_to_one_write() {
        let kinds: Vec<Kind> = (0..1000).map(|n| Scenario::Mix.pick(n)).collect();
        let writes = kinds.iter().filter(|k| **k == Kind::Post).count();
        let boxes = kinds.iter().filter(|k| **k == Kind::Bbox).count();
        assert_eq!(
            (writes, boxes, kinds.len() - writes - boxes),
            (200, 400, 400)
        );
    }

    #[test]
    fn the_list_mix_is_four_first_pages_to_one_write() {
        let kinds: Vec<Kind> = (0..1000).map(|n| Scenario::ListMix.pick(n)).collect();
        let writes = kinds.iter().filter(|k| **k == Kind::Post).count();
        let pages = kinds.iter().filter(|k| **k == Kind::FirstPage).count();
        assert_eq!((writes, pages), (200, 800));
    }

    #[test]
    fn a_box_over_the_antimeridian_keeps_west_greater_than_east() {
        let place = Place {
            name: "Taveuni".to_owned(),
            longitude: 179.9,
            latitude: -16.8,
            country: "FJ".to_owned(),
        };
        let prepared = Prepared::from_places(&[place]).unwrap();
        assert_eq!(
            prepared.boxes[0],
            "/points?bbox=179.40000,-17.30000,-179.60000,-16.30000&limit=100"
        );
    }

    #[test]
    fn a_post_body_carries_the_place() {
        let place = Place {
            name: "Vila".to_owned(),
            longitude: 1.56654,
            latitude: 42.53176,
            country: "AD".to_owned(),
        };
        let prepared = Prepared::from_places(&[place]).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&prepared.bodies[0]).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"longitude": 1.56654, "latitude": 42.53176, "name": "Vila"})
        );
    }
}
