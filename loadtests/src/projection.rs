//! Waiting for the projector to catch up with what was written.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Deserialize;

/// How often the projector's status is asked; small next to a projection of a thousand
/// events, large enough not to load the projector.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// The part of the projector's `GET /status` the loader relies on.
#[derive(Debug, Deserialize)]
struct ProjectorStatus {
    /// The last stream sequence applied to the read model.
    checkpoint: u64,
}

/// Polls the projector's status URL until its checkpoint reaches `sequence`, and returns how
/// long that took. The body is read whatever the HTTP status, since a projector that is
/// behind may report itself unhealthy while still making progress.
pub async fn wait_until_projected(
    client: &reqwest::Client,
    status_url: &str,
    sequence: u64,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let last_seen = match checkpoint(client, status_url).await {
            Ok(checkpoint) if checkpoint >= sequence => return Ok(started.elapsed()),
            Ok(checkpoint) => format!("checkpoint {checkpoint}"),
            Err(e) => format!("{e:#}"),
        };
        if started.elapsed() >= timeout {
            bail!(
                "the projector did not reach sequence {sequence} within {} s (last seen: {last_seen})",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

async fn checkpoint(client: &reqwest::Client, status_url: &str) -> anyhow::Result<u64> {
    let status: ProjectorStatus = client.get(status_url).send().await?.json().await?;
    Ok(status.checkpoint)
}
