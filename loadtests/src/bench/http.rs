//! query-api started in this process, and the timed requests sent to it over loopback HTTP.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Deserialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::stats::LatencySummary;

/// The most points one page may hold in query-api's default configuration, used to walk to
/// the deep page in as few requests as possible.
const WALK_PAGE: u64 = 1000;

/// A query-api serving the benchmark database on a free loopback port.
#[derive(Debug)]
pub struct Server {
    base_url: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Builds query-api exactly as tests embed it (its own small pool, default limits) and
    /// serves it on a spawned task, without its page cache: every timed request repeats one
    /// URL at one checkpoint, so with the cache all but the first would be answered from
    /// memory, and the benchmark is about how the database's work grows with the table.
    pub async fn start(database_url: &str) -> anyhow::Result<Self> {
        let mut config = query_api::Config::for_tests(
            database_url,
            "127.0.0.1:0".parse().expect("a literal socket address"),
        );
        config.page_cache_ttl_ms = 0;
        let app = query_api::App::build(config).await?;
        let base_url = format!("http://{}", app.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            // A dropped sender stops the server too.
            stopped.await.ok();
        }));
        Ok(Self {
            base_url,
            stop,
            task,
        })
    }

    /// The absolute URL of `path_and_query`.
    #[must_use]
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base_url)
    }

    /// Stops serving and waits until the server has finished.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.send(()).ok();
        self.task.await.context("the query-api task panicked")?
    }
}

/// The part of a listed point the benchmark reads.
#[derive(Debug, Deserialize)]
struct Listed {
    id: Uuid,
}

/// Where the deep page starts.
#[derive(Debug, Clone)]
pub struct DeepCursor {
    /// The opaque cursor from a `next` link.
    pub cursor: String,
    /// Requests the walk took.
    pub pages: u64,
    /// Time the walk took.
    pub elapsed: Duration,
}

/// Walks newest first, through the next links, past the `skip` newest points and returns the
/// cursor that resumes after them. Pages hold up to 1000 points, so a million points take a
/// thousand requests; their timing is not part of any figure.
pub async fn deep_cursor(
    client: &reqwest::Client,
    server: &Server,
    skip: u64,
) -> anyhow::Result<DeepCursor> {
    let started = Instant::now();
    let (mut cursor, mut pages) = (None::<String>, 0);
    let mut remaining = skip;
    while remaining > 0 {
        let limit = remaining.min(WALK_PAGE);
        let path = match &cursor {
            Some(cursor) => format!("/points?limit={limit}&cursor={cursor}"),
            None => format!("/points?limit={limit}"),
        };
        let response = get_ok(client, &server.url(&path)).await?;
        let next = next_cursor(response.headers());
        let page: Vec<Listed> = response.json().await.context("reading a page of points")?;
        pages += 1;
        let (Some(next), false) = (next, page.is_empty()) else {
            bail!("the walk ended after {pages} pages, before passing {skip} points");
        };
        remaining = remaining.saturating_sub(page.len() as u64);
        cursor = Some(next);
    }
    let Some(cursor) = cursor else {
        bail!("the deep page must start after at least one point");
    };
    Ok(DeepCursor {
        cursor,
        pages,
        elapsed: started.elapsed(),
    })
}

/// The latencies of one read, and what it answered.
#[derive(Debug, Clone)]
pub struct Timed {
    /// Points in the answer.
    pub rows: usize,
    /// Their ids, in the order listed.
    pub ids: Vec<Uuid>,
    /// Over the timed requests, from sending to the whole body read.
    pub latency: LatencySummary,
    /// The fastest timed request: what the read costs when nothing else competes for the
    /// CPUs, which the median only shows on a quiet machine.
    pub fastest: Duration,
}

/// Sends `GET path` `warmup` times untimed, then `repeat` times timed, one request at a time.
/// The warm-up fills PostgreSQL's buffers and the pool's connections, so the figures describe
/// a server in use rather than its first request.
pub async fn time_get(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    warmup: usize,
    repeat: usize,
) -> anyhow::Result<Timed> {
    let url = server.url(path);
    let first = get_ok(client, &url).await?;
    let page: Vec<Listed> = first.json().await.context("reading a page of points")?;
    for _ in 1..warmup {
        get_ok(client, &url).await?.bytes().await?;
    }
    let mut latencies = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let started = Instant::now();
        let body = get_ok(client, &url).await?.bytes().await?;
        latencies.push(started.elapsed());
        drop(body);
    }
    let fastest = latencies.iter().copied().min().unwrap_or_default();
    let latency = LatencySummary::new(latencies).context("at least one timed request")?;
    Ok(Timed {
        rows: page.len(),
        ids: page.into_iter().map(|point| point.id).collect(),
        latency,
        fastest,
    })
}

async fn get_ok(client: &reqwest::Client, url: &str) -> anyhow::Result<reqwest::Response> {
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    bail!("GET {url} answered {status}: {body}");
}

/// The `cursor` of the `Link: <…>; rel="next"` header, if the answer has one.
fn next_cursor(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    let (target, params) = link.strip_prefix('<')?.split_once('>')?;
    if !params.contains("rel=\"next\"") {
        return None;
    }
    let (_, query) = target.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("cursor="))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderMap, HeaderValue, LINK};

    use super::*;

    #[test]
    fn the_cursor_is_read_from_the_next_link_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(next_cursor(&headers), None);
        headers.insert(
            LINK,
            HeaderValue::from_static("</points?bbox=1,2,3,4&limit=10&cursor=01ab>; rel=\"next\""),
        );
        assert_eq!(next_cursor(&headers).as_deref(), Some("01ab"));
        headers.insert(
            LINK,
            HeaderValue::from_static("</points?cursor=01ab>; rel=\"prev\""),
        );
        assert_eq!(next_cursor(&headers), None);
    }
}
