//! The fault run (`make faults`): writes and reads through HAProxy while the stack is broken
//! and healed one fault at a time, then proves from the read model that every accepted write
//! is there exactly once, bit for bit, and that nothing else is.
//!
//! The faults themselves are done by a script (`loadtests/faults.sh inject FAULT break|heal`)
//! because they act on real processes the script started: `kill -9`, `pg_ctl stop`, starting
//! them again. This module only decides when, and counts.
//!
//! Each write is a real place with a run-unique suffix on its name (`Windhoek #17`), so a
//! row in `points` names the write it came from: two rows with one name are a write stored
//! twice, a row whose name was never sent was invented.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Deserialize;
use sqlx::Connection as _;
use uuid::Uuid;

use crate::places::Place;
use crate::projection::wait_until_projected;

/// Longest name kept from a place, leaving room for the ` #N` suffix within the API's 100
/// characters.
const NAME_CHARS: usize = 80;

/// Most attempts at one write. With the pause between attempts growing to a second, the
/// per-write deadline in `Config` is what usually ends a hopeless write first.
const MAX_ATTEMPTS: u32 = 200;

/// Longest pause a `Retry-After` may impose, so a generous server hint cannot stall a writer
/// past the fault's recovery.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(2);

/// One fault the run injects; on the `faults` command line, by its name in lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// `kill -9` the projector, start it again.
    Projector,
    /// Stop PostgreSQL in immediate mode (a crash as far as it knows), start it again.
    Postgres,
    /// `kill -9` nats-server, start it again on the same store directory.
    Nats,
    /// `kill -9` one command-api and one query-api behind HAProxy, start them again.
    Instances,
}

impl Fault {
    /// Every fault, in the order the run injects them.
    pub const ALL: [Self; 4] = [Self::Projector, Self::Postgres, Self::Nats, Self::Instances];

    /// The name `faults.sh inject` takes.
    fn script_name(self) -> &'static str {
        match self {
            Self::Projector => "projector",
            Self::Postgres => "postgres",
            Self::Nats => "nats",
            Self::Instances => "instances",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Projector => "kill -9 projector",
            Self::Postgres => "restart postgresql",
            Self::Nats => "kill -9 nats-server",
            Self::Instances => "kill -9 cmd-1 + query-1",
        }
    }

    /// Whether a query-api instance with its database stays healthy throughout, so that
    /// every read through HAProxy must succeed. Without PostgreSQL no instance can answer.
    fn reads_must_succeed(self) -> bool {
        self != Self::Postgres
    }
}

/// How the run is driven.
#[derive(Debug, Clone)]
pub struct Config {
    /// HAProxy's public address, such as `http://127.0.0.1:8080`.
    pub base_url: String,
    /// The read model, checked after each fault.
    pub database_url: String,
    /// The projector's `GET /status`, polled to wait for the projection to catch up and
    /// recorded during each fault.
    pub projector_status: String,
    /// `faults.sh`, called as `<inject> inject FAULT break|heal`.
    pub inject: PathBuf,
    /// The places written, in order, starting again at the first when all were used.
    pub places: Vec<Place>,
    /// The faults to inject, in order.
    pub faults: Vec<Fault>,
    /// Writers, each with one write in flight at a time.
    pub writers: usize,
    /// Readers, each with one read in flight at a time.
    pub readers: usize,
    /// Writes flowing before each fault is injected.
    pub steady: Duration,
    /// How long each fault lasts before it is healed.
    pub down: Duration,
    /// Writes flowing after each fault is healed, before they stop for the check.
    pub recovery: Duration,
    /// How long one write keeps retrying before it counts as unanswered.
    pub write_deadline: Duration,
    /// How long the projection may take to catch up after a fault.
    pub catch_up: Duration,
    /// Bearer token sent with every request, when the stack wants one for writes.
    pub token: Option<String>,
}

/// How one write ended.
#[derive(Debug, Clone)]
enum Outcome {
    /// A 2xx: the promise to check.
    Accepted { id: Uuid, sequence: u64 },
    /// A 4xx other than 409: a definite no, so the write must never be projected.
    Refused(u16),
    /// Out of attempts or time without a definite answer.
    Unanswered(String),
}

/// One write as the client saw it.
#[derive(Debug, Clone)]
struct Write {
    name: String,
    longitude: f64,
    latitude: f64,
    phase: usize,
    outcome: Outcome,
}

/// The answer body of an accepted write.
#[derive(Debug, Deserialize)]
struct Accepted {
    id: Uuid,
    sequence: u64,
}

/// Counters of one fault's phase, from its first steady write to its check.
#[derive(Debug, Default)]
struct PhaseCounters {
    reads: AtomicU64,
    read_errors: AtomicU64,
    read_errors_in_window: AtomicU64,
    write_retries: AtomicU64,
    /// Every answer but a 2xx that writers got, by kind (`503 problem`, `connection`).
    write_answers: Mutex<BTreeMap<String, u64>>,
    /// Every kind of failed read, by kind.
    read_failures: Mutex<BTreeMap<String, u64>>,
    /// The projector's `/status` codes seen while the fault lasted.
    projector_status: Mutex<BTreeMap<String, u64>>,
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, kind: String) {
    *map.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(kind)
        .or_default() += 1;
}

/// What the writers, readers and the conductor share.
struct Shared {
    config: Config,
    client: reqwest::Client,
    run_id: String,
    phase: AtomicUsize,
    /// New writes may start.
    writing: AtomicBool,
    /// Writes started and not yet recorded.
    in_flight: AtomicUsize,
    /// The fault is in effect (from `break` to the end of `heal`).
    in_window: AtomicBool,
    stop: AtomicBool,
    next: AtomicUsize,
    writes: Mutex<Vec<Write>>,
    phases: Vec<PhaseCounters>,
}

impl Shared {
    fn counters(&self) -> &PhaseCounters {
        &self.phases[self.phase.load(Ordering::SeqCst)]
    }
}

/// What the check of the read model found for a set of writes.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Writes answered 2xx.
    pub accepted: usize,
    /// Accepted writes found exactly once with their id, name and coordinates.
    pub projected: usize,
    /// Extra rows beyond the first for one write.
    pub duplicates: usize,
    /// Accepted writes with no row.
    pub lost: usize,
    /// Accepted writes whose row has another id or other coordinates.
    pub altered: usize,
    /// Writes that got a definite refusal and still have a row.
    pub refused_but_projected: usize,
    /// Writes without a definite answer after all their attempts.
    pub unanswered: usize,
    /// The first few broken promises, each naming its write, for the report.
    pub examples: Vec<String>,
}

/// Broken promises named in the report, per check; the counts hold the rest.
const EXAMPLES: usize = 5;

impl Tally {
    fn note(&mut self, example: impl FnOnce() -> String) {
        if self.examples.len() < EXAMPLES {
            self.examples.push(example());
        }
    }

    fn failed(&self) -> bool {
        self.duplicates + self.lost + self.altered + self.refused_but_projected + self.unanswered
            > 0
    }
}

/// One fault's row of the report.
#[derive(Debug)]
pub struct PhaseReport {
    /// The fault.
    pub fault: Fault,
    /// This phase's writes, as the check after the fault found them.
    pub tally: Tally,
    /// Reads through HAProxy during the phase.
    pub reads: u64,
    /// Failed reads during the phase.
    pub read_errors: u64,
    /// Failed reads while the fault was in effect.
    pub read_errors_in_window: u64,
    /// Write attempts beyond each write's first.
    pub write_retries: u64,
    /// How long `heal` took (servers back and healthy).
    pub heal: Duration,
    /// How long the projection took to catch up after the writes stopped.
    pub catch_up: Result<Duration, String>,
    /// The healing script failed: a process exited that should have survived.
    pub heal_error: Option<String>,
    write_answers: BTreeMap<String, u64>,
    read_failures: BTreeMap<String, u64>,
    projector_status: BTreeMap<String, u64>,
}

impl PhaseReport {
    /// No write of the phase was accepted (every one refused, say for want of a token), so
    /// there was no promise for the fault to break: a pass would be hollow.
    fn proved_nothing(&self) -> bool {
        self.tally.accepted == 0
    }

    fn failed(&self) -> bool {
        self.tally.failed()
            || self.proved_nothing()
            || self.catch_up.is_err()
            || self.heal_error.is_some()
            || (self.fault.reads_must_succeed() && self.read_errors > 0)
    }
}

/// The whole run's findings.
#[derive(Debug)]
pub struct Report {
    /// One row per fault.
    pub phases: Vec<PhaseReport>,
    /// Every write of the run, checked once more at the end.
    pub total: Tally,
    /// Rows of `points` whose name no write of this run carried.
    pub unknown_rows: usize,
    /// How long the run took, from the first write to the final check.
    pub elapsed: Duration,
}

impl Report {
    /// Whether any promise was broken: a lost, doubled or altered write, a refused write
    /// projected, a write never answered, an invented row, a process that died of a fault it
    /// should have survived, or a failed read while a query-api instance stayed healthy.
    #[must_use]
    pub fn failed(&self) -> bool {
        self.phases.iter().any(PhaseReport::failed) || self.total.failed() || self.unknown_rows > 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "| fault | writes accepted | writes projected | duplicates | lost \
             | read errors (in fault window) | write retries |"
        )?;
        writeln!(f, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")?;
        for phase in &self.phases {
            let t = &phase.tally;
            writeln!(
                f,
                "| {} | {} | {} | {} | {} | {} of {} ({}) | {} |",
                phase.fault.label(),
                t.accepted,
                t.projected,
                t.duplicates,
                t.lost,
                phase.read_errors,
                phase.reads,
                phase.read_errors_in_window,
                phase.write_retries,
            )?;
        }
        let t = &self.total;
        let reads: u64 = self.phases.iter().map(|p| p.reads).sum();
        let errors: u64 = self.phases.iter().map(|p| p.read_errors).sum();
        let window: u64 = self.phases.iter().map(|p| p.read_errors_in_window).sum();
        let retries: u64 = self.phases.iter().map(|p| p.write_retries).sum();
        writeln!(
            f,
            "| all (final check) | {} | {} | {} | {} \
             | {errors} of {reads} ({window}) | {retries} |",
            t.accepted, t.projected, t.duplicates, t.lost,
        )?;
        writeln!(f)?;
        for phase in &self.phases {
            writeln!(f, "{}:", phase.fault.label())?;
            if phase.proved_nothing() {
                writeln!(
                    f,
                    "  NO WRITE WAS ACCEPTED: the fault had nothing to lose, so it proved nothing"
                )?;
            }
            writeln!(
                f,
                "  healed in {:.1} s; projection caught up {}",
                phase.heal.as_secs_f64(),
                match &phase.catch_up {
                    Ok(d) => format!("{:.1} s after the writes stopped", d.as_secs_f64()),
                    Err(e) => format!("NEVER: {e}"),
                }
            )?;
            writeln!(
                f,
                "  write answers other than 2xx: {}",
                kinds(&phase.write_answers)
            )?;
            writeln!(f, "  failed reads: {}", kinds(&phase.read_failures))?;
            writeln!(
                f,
                "  projector /status during the fault: {}",
                kinds(&phase.projector_status)
            )?;
            let t = &phase.tally;
            if t.altered + t.refused_but_projected + t.unanswered > 0 {
                writeln!(
                    f,
                    "  altered {}, refused but projected {}, unanswered {}",
                    t.altered, t.refused_but_projected, t.unanswered
                )?;
            }
            for example in &t.examples {
                writeln!(f, "  {example}")?;
            }
            if let Some(error) = &phase.heal_error {
                writeln!(f, "  HEAL FAILED: {error}")?;
            }
            if phase.fault.reads_must_succeed() && phase.read_errors > 0 {
                writeln!(
                    f,
                    "  READS FAILED although a query-api instance and PostgreSQL stayed up"
                )?;
            }
        }
        for example in &t.examples {
            writeln!(f, "final check: {example}")?;
        }
        writeln!(
            f,
            "\nfinal check: {} writes accepted, {} refused but projected, {} unanswered, {} rows \
             of unknown writes; {:.0} s in all",
            t.accepted,
            t.refused_but_projected,
            t.unanswered,
            self.unknown_rows,
            self.elapsed.as_secs_f64()
        )
    }
}

fn kinds(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".to_owned();
    }
    map.iter()
        .map(|(kind, n)| format!("{kind} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs every configured fault in turn under writes and reads, checking the read model after
/// each, and once more at the end.
pub async fn run(config: Config) -> anyhow::Result<Report> {
    if config.places.is_empty() {
        bail!("no places to write");
    }
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(value) = crate::bearer(config.token.as_deref())? {
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .default_headers(headers)
        .build()
        .context("building the HTTP client")?;
    let shared = Arc::new(Shared {
        phases: config
            .faults
            .iter()
            .map(|_| PhaseCounters::default())
            .collect(),
        config,
        client,
        run_id: Uuid::now_v7().simple().to_string(),
        phase: AtomicUsize::new(0),
        writing: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        in_window: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        next: AtomicUsize::new(0),
        writes: Mutex::new(Vec::new()),
    });
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..shared.config.writers {
        tasks.push(tokio::spawn(writer(Arc::clone(&shared))));
    }
    for n in 0..shared.config.readers {
        tasks.push(tokio::spawn(reader(Arc::clone(&shared), n)));
    }

    let mut phases = Vec::new();
    let faults = shared.config.faults.clone();
    for (index, fault) in faults.into_iter().enumerate() {
        phases.push(run_fault(&shared, index, fault).await?);
    }
    shared.stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.context("a writer or reader panicked")?;
    }

    let writes = shared
        .writes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let (total, unknown_rows) = check(&shared.config.database_url, &writes, None).await?;
    Ok(Report {
        phases,
        total,
        unknown_rows,
        elapsed: started.elapsed(),
    })
}

async fn run_fault(
    shared: &Arc<Shared>,
    index: usize,
    fault: Fault,
) -> anyhow::Result<PhaseReport> {
    let config = &shared.config;
    shared.phase.store(index, Ordering::SeqCst);
    shared.writing.store(true, Ordering::SeqCst);
    eprintln!("faults: {}: writing and reading", fault.label());
    tokio::time::sleep(config.steady).await;

    shared.in_window.store(true, Ordering::SeqCst);
    let watch = tokio::spawn(watch_projector(Arc::clone(shared)));
    inject(&config.inject, fault, "break")
        .await
        .with_context(|| format!("breaking: {}", fault.label()))?;
    tokio::time::sleep(config.down).await;
    let healing = Instant::now();
    let heal_error = inject(&config.inject, fault, "heal").await.err();
    let heal = healing.elapsed();
    shared.in_window.store(false, Ordering::SeqCst);
    watch.abort();
    if let Some(error) = &heal_error {
        eprintln!("faults: {}: healing failed: {error:#}", fault.label());
    }
    tokio::time::sleep(config.recovery).await;

    // No new write starts; those in flight finish their retries, bounded by their deadline.
    shared.writing.store(false, Ordering::SeqCst);
    while shared.in_flight.load(Ordering::SeqCst) > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let writes = shared
        .writes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let last_sequence = writes
        .iter()
        .filter_map(|w| match w.outcome {
            Outcome::Accepted { sequence, .. } => Some(sequence),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let catch_up = wait_until_projected(
        &shared.client,
        &config.projector_status,
        last_sequence,
        config.catch_up,
    )
    .await
    .map_err(|e| format!("{e:#}"));
    let (tally, _) = check(&config.database_url, &writes, Some(index)).await?;
    let counters = &shared.phases[index];
    let take = |map: &Mutex<BTreeMap<String, u64>>| {
        map.lock().unwrap_or_else(PoisonError::into_inner).clone()
    };
    let report = PhaseReport {
        fault,
        tally,
        reads: counters.reads.load(Ordering::SeqCst),
        read_errors: counters.read_errors.load(Ordering::SeqCst),
        read_errors_in_window: counters.read_errors_in_window.load(Ordering::SeqCst),
        write_retries: counters.write_retries.load(Ordering::SeqCst),
        heal,
        catch_up,
        heal_error: heal_error.map(|e| format!("{e:#}")),
        write_answers: take(&counters.write_answers),
        read_failures: take(&counters.read_failures),
        projector_status: take(&counters.projector_status),
    };
    eprintln!(
        "faults: {}: {} accepted, {} projected, {} lost, {} duplicated",
        fault.label(),
        report.tally.accepted,
        report.tally.projected,
        report.tally.lost,
        report.tally.duplicates
    );
    Ok(report)
}

async fn inject(script: &PathBuf, fault: Fault, phase: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new(script)
        .args(["inject", fault.script_name(), phase])
        .status()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!(
            "{} inject {} {phase}: {status}",
            script.display(),
            fault.script_name()
        );
    }
    Ok(())
}

/// Records the projector's `/status` codes while a fault lasts: whether it says it is
/// unhealthy, and whether it answers at all.
async fn watch_projector(shared: Arc<Shared>) {
    loop {
        let kind = match shared
            .client
            .get(&shared.config.projector_status)
            .send()
            .await
        {
            Ok(response) => response.status().as_u16().to_string(),
            Err(e) if e.is_connect() => "refused".to_owned(),
            Err(_) => "no answer".to_owned(),
        };
        bump(&shared.counters().projector_status, kind);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn writer(shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        // Counted before `writing` is read, so that the conductor, which clears `writing`
        // and then waits for zero, never misses a write that is just starting.
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        if !shared.writing.load(Ordering::SeqCst) {
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let n = shared.next.fetch_add(1, Ordering::SeqCst);
        let write = write_place(&shared, n).await;
        shared
            .writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(write);
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Posts the `n`th write with its own key until a 2xx or a definite refusal, retrying with
/// the same key on 5xx, 409 (the key is in flight elsewhere) and connection errors.
async fn write_place(shared: &Shared, n: usize) -> Write {
    let place = &shared.config.places[n % shared.config.places.len()];
    let base: String = place.name.trim().chars().take(NAME_CHARS).collect();
    let name = format!("{} #{n}", base.trim_end());
    let key = format!("faults-{}-{n}", shared.run_id);
    let body = serde_json::json!({
        "longitude": place.longitude,
        "latitude": place.latitude,
        "name": name,
    });
    let phase = shared.phase.load(Ordering::SeqCst);
    let counters = &shared.phases[phase];
    let url = format!("{}/point", shared.config.base_url);
    let deadline = Instant::now() + shared.config.write_deadline;
    let mut last = String::new();
    let mut outcome = None;
    for attempt in 1..=MAX_ATTEMPTS {
        if attempt > 1 {
            counters.write_retries.fetch_add(1, Ordering::Relaxed);
        }
        let mut pause = Duration::from_millis(100 * u64::from(attempt.min(10)));
        match shared
            .client
            .post(&url)
            .header("Idempotency-Key", &key)
            .json(&body)
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => {
                match response.json::<Accepted>().await {
                    Ok(a) => {
                        outcome = Some(Outcome::Accepted {
                            id: a.id,
                            sequence: a.sequence,
                        });
                        break;
                    }
                    // The answer was cut off: whether it was stored is unknown, so ask again.
                    Err(e) => last = format!("2xx with an unreadable body: {e}"),
                }
            }
            Ok(response) => {
                let status = response.status();
                let problem = response
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .is_some_and(|v| v == "application/problem+json");
                let kind = format!(
                    "{} {}",
                    status.as_u16(),
                    if problem { "problem" } else { "other" }
                );
                bump(&counters.write_answers, kind.clone());
                if status.is_client_error() && status != 409 && status != 429 {
                    outcome = Some(Outcome::Refused(status.as_u16()));
                    break;
                }
                if let Some(after) = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    pause = Duration::from_secs(after).min(MAX_RETRY_AFTER);
                }
                last = kind;
            }
            Err(e) => {
                let kind = transport_failure(&e);
                bump(&counters.write_answers, kind.clone());
                last = kind;
            }
        }
        if Instant::now() + pause > deadline {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    Write {
        name,
        longitude: place.longitude,
        latitude: place.latitude,
        phase,
        outcome: outcome.unwrap_or(Outcome::Unanswered(last)),
    }
}

/// A request that got no HTTP answer, named by its deepest cause (`connection reset by
/// peer`, `connection closed before message completed`), which says who gave up.
fn transport_failure(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timeout".to_owned();
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    format!("no answer ({cause})")
}

async fn reader(shared: Arc<Shared>, n: usize) {
    // The full page keeps a read in flight most of the time, so that killing a query-api
    // cuts some off mid-answer: the case HAProxy must retry for the client.
    let paths = [
        "/points?limit=1000",
        "/points?bbox=-10,35,30,60&limit=20",
        "/collections/points/items?limit=10",
    ];
    let mut i = n;
    while !shared.stop.load(Ordering::SeqCst) {
        let url = format!("{}{}", shared.config.base_url, paths[i % paths.len()]);
        i += 1;
        let failure = match shared.client.get(&url).send().await {
            Ok(response) if response.status() == 200 => match response.bytes().await {
                Ok(_) => None,
                Err(_) => Some("body cut off".to_owned()),
            },
            Ok(response) => Some(response.status().as_u16().to_string()),
            Err(e) => Some(transport_failure(&e)),
        };
        let counters = shared.counters();
        counters.reads.fetch_add(1, Ordering::Relaxed);
        if let Some(kind) = failure {
            counters.read_errors.fetch_add(1, Ordering::Relaxed);
            if shared.in_window.load(Ordering::SeqCst) {
                counters
                    .read_errors_in_window
                    .fetch_add(1, Ordering::Relaxed);
            }
            bump(&counters.read_failures, kind);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Compares `writes` (those of `phase`, or all) with the rows of `points`, and counts the
/// rows no write of the run carried.
async fn check(
    database_url: &str,
    writes: &[Write],
    phase: Option<usize>,
) -> anyhow::Result<(Tally, usize)> {
    let mut connection = sqlx::PgConnection::connect(database_url)
        .await
        .context("connecting to the read model")?;
    let rows: Vec<Row> = sqlx::query_as("SELECT id, name, ST_X(geom), ST_Y(geom) FROM points")
        .fetch_all(&mut connection)
        .await
        .context("reading the points")?;
    Ok(compare(&rows, writes, phase))
}

/// A row of `points`: id, name, longitude, latitude.
type Row = (Uuid, String, f64, f64);

/// The comparison of [`check`], apart from the database.
fn compare(rows: &[Row], writes: &[Write], phase: Option<usize>) -> (Tally, usize) {
    let mut by_name: HashMap<&str, Vec<&Row>> = HashMap::new();
    for row in rows {
        by_name.entry(row.1.as_str()).or_default().push(row);
    }
    let sent: HashSet<&str> = writes.iter().map(|w| w.name.as_str()).collect();
    let unknown_rows = rows.iter().filter(|r| !sent.contains(r.1.as_str())).count();

    let mut tally = Tally::default();
    for write in writes.iter().filter(|w| phase.is_none_or(|p| w.phase == p)) {
        let found = by_name
            .get(write.name.as_str())
            .map_or(&[][..], Vec::as_slice);
        match &write.outcome {
            Outcome::Accepted { id, .. } => {
                tally.accepted += 1;
                match found {
                    [] => {
                        tally.lost += 1;
                        tally.note(|| format!("lost: {:?} ({id})", write.name));
                    }
                    [row, rest @ ..] => {
                        tally.duplicates += rest.len();
                        if !rest.is_empty() {
                            tally.note(|| format!("{} rows: {:?}", found.len(), write.name));
                        }
                        // Bits, not values: a coordinate rounded anywhere on the way differs.
                        let exact = row.0 == *id
                            && row.2.to_bits() == write.longitude.to_bits()
                            && row.3.to_bits() == write.latitude.to_bits();
                        if exact && rest.is_empty() {
                            tally.projected += 1;
                        } else if !exact {
                            tally.altered += 1;
                            tally.note(|| {
                                format!(
                                    "altered: {:?} sent {id} ({}, {}), found {} ({}, {})",
                                    write.name,
                                    write.longitude,
                                    write.latitude,
                                    row.0,
                                    row.2,
                                    row.3
                                )
                            });
                        }
                    }
                }
            }
            Outcome::Refused(status) => {
                if !found.is_empty() {
                    tally.refused_but_projected += 1;
                    tally.note(|| format!("refused {status} but projected: {:?}", write.name));
                }
            }
            Outcome::Unanswered(last) => {
                tally.unanswered += 1;
                tally.note(|| format!("unanswered: {:?}, last: {last}", write.name));
            }
        }
    }
    (tally, unknown_rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, longitude: f64, outcome: Outcome) -> Write {
        Write {
            name: name.to_owned(),
            longitude,
            latitude: 48.8566,
            phase: 0,
            outcome,
        }
    }

    fn accepted(id: Uuid) -> Outcome {
        Outcome::Accepted { id, sequence: 1 }
    }

    fn phase(tally: Tally) -> PhaseReport {
        PhaseReport {
            fault: Fault::ALL[0],
            tally,
            reads: 10,
            read_errors: 0,
            read_errors_in_window: 0,
            write_retries: 0,
            heal: Duration::from_secs(1),
            catch_up: Ok(Duration::ZERO),
            heal_error: None,
            write_answers: BTreeMap::new(),
            read_failures: BTreeMap::new(),
            projector_status: BTreeMap::new(),
        }
    }

    #[test]
    fn a_fault_under_which_no_write_was_accepted_fails_the_run() {
        let id = Uuid::now_v7();
        let rows = [(id, "Paris #0".to_owned(), 2.3522, 48.8566)];
        let (kept, _) = compare(&rows, &[write("Paris #0", 2.3522, accepted(id))], None);
        let (refused, _) = compare(
            &[],
            &[write("Paris #0", 2.3522, Outcome::Refused(401))],
            None,
        );
        let report = |tally| Report {
            phases: vec![phase(tally)],
            total: Tally::default(),
            unknown_rows: 0,
            elapsed: Duration::from_secs(1),
        };
        assert!(!report(kept).failed());
        let hollow = report(refused);
        assert!(hollow.failed(), "every write refused must not pass");
        assert!(hollow.to_string().contains("NO WRITE WAS ACCEPTED"));
    }

    #[test]
    fn a_write_found_once_with_its_id_and_exact_coordinates_is_projected() {
        let id = Uuid::now_v7();
        let rows = [(id, "Paris #0".to_owned(), 2.3522, 48.8566)];
        let (tally, unknown) = compare(&rows, &[write("Paris #0", 2.3522, accepted(id))], None);
        assert_eq!((tally.accepted, tally.projected, unknown), (1, 1, 0));
        assert!(!tally.failed());
    }

    #[test]
    fn lost_doubled_and_altered_writes_each_fail_the_check() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let nudged = f64::from_bits(2.3522_f64.to_bits() + 1);
        let rows = [
            (b, "B #1".to_owned(), 2.3522, 48.8566),
            (Uuid::now_v7(), "B #1".to_owned(), 2.3522, 48.8566),
            (c, "C #2".to_owned(), nudged, 48.8566),
        ];
        let writes = [
            write("A #0", 2.3522, accepted(a)),
            write("B #1", 2.3522, accepted(b)),
            write("C #2", 2.3522, accepted(c)),
        ];
        let (tally, _) = compare(&rows, &writes, None);
        assert_eq!(tally.lost, 1);
        assert_eq!(tally.duplicates, 1);
        assert_eq!(
            tally.altered, 1,
            "one ulp off is not the written coordinate"
        );
        assert_eq!(tally.projected, 0);
        assert!(tally.failed());
    }

    #[test]
    fn a_refused_write_with_a_row_and_a_row_nobody_sent_are_caught() {
        let rows = [
            (Uuid::now_v7(), "R #0".to_owned(), 2.3522, 48.8566),
            (Uuid::now_v7(), "Nobody #9".to_owned(), 2.3522, 48.8566),
        ];
        let writes = [
            write("R #0", 2.3522, Outcome::Refused(422)),
            write("U #1", 2.3522, Outcome::Unanswered("timeout".to_owned())),
        ];
        let (tally, unknown) = compare(&rows, &writes, None);
        assert_eq!(tally.refused_but_projected, 1);
        assert_eq!(tally.unanswered, 1);
        assert_eq!(unknown, 1);
    }

    #[test]
    fn a_phase_check_counts_only_that_phase_writes() {
        let id = Uuid::now_v7();
        let mut later = write("L #1", 2.3522, accepted(Uuid::now_v7()));
        later.phase = 1;
        let rows = [(id, "E #0".to_owned(), 2.3522, 48.8566)];
        let (tally, _) = compare(
            &rows,
            &[write("E #0", 2.3522, accepted(id)), later],
            Some(0),
        );
        assert_eq!((tally.accepted, tally.lost), (1, 0));
    }
}
