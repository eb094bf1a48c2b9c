//! Configuration pieces shared by the binaries. Each binary has one `Config` built by clap
//! from flags and `GEOLEDGER_*` environment variables; the pieces here are flattened into it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::stream::StreamSpec;

/// A connection string that never shows its password in `Debug` or logs.
#[derive(Clone)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The full string, password included: only for handing to a driver.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for SecretUrl {
    /// Prints the URL with any password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return f.write_str("***");
        };
        match rest.split_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                write!(f, "{scheme}://{user}:***@{host}")
            }
            None => write!(f, "{scheme}://{rest}"),
        }
    }
}

/// Where NATS is and which stream holds the point events.
#[derive(Clone, clap::Args)]
pub struct NatsConfig {
    /// NATS server URL(s), comma-separated.
    #[arg(
        id = "nats_url",
        long = "nats-url",
        env = "GEOLEDGER_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub url: String,
    /// JetStream stream that holds the point events.
    #[arg(
        long = "stream",
        env = "GEOLEDGER_STREAM",
        default_value = "GEOLEDGER_POINTS"
    )]
    pub stream: String,
    /// Subject prefix; each point's events go to `<prefix>.<point id>`.
    #[arg(
        long = "subject-prefix",
        env = "GEOLEDGER_SUBJECT_PREFIX",
        default_value = "geoledger.points"
    )]
    pub subject_prefix: String,
    /// How long JetStream remembers a `Nats-Msg-Id` to drop a duplicate publish, in seconds.
    #[arg(
        long = "duplicate-window-secs",
        env = "GEOLEDGER_DUPLICATE_WINDOW_SECS",
        default_value_t = 120
    )]
    pub duplicate_window_secs: u64,
    /// Copies JetStream keeps of the stream, the dead letters and the idempotency keys: 1 on
    /// a single server, 3 on a cluster of three or more so that one server can be lost.
    /// Applied whenever a service starts, so every service must be given the same number.
    #[arg(
        long = "stream-replicas",
        env = "GEOLEDGER_STREAM_REPLICAS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u8).range(1..=5)
    )]
    pub stream_replicas: u8,
}

impl fmt::Debug for NatsConfig {
    /// As derived, with any password in the URLs replaced by `***`: the start-up log shows
    /// this.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self
            .url
            .split(',')
            .map(|url| SecretUrl(url.trim().to_owned()).to_string())
            .collect();
        f.debug_struct("NatsConfig")
            .field("url", &urls.join(","))
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .field("duplicate_window_secs", &self.duplicate_window_secs)
            .field("stream_replicas", &self.stream_replicas)
            .finish()
    }
}

impl NatsConfig {
    /// The stream this configuration names.
    #[must_use]
    pub fn stream_spec(&self) -> StreamSpec {
        StreamSpec {
            name: self.stream.clone(),
            subject_prefix: self.subject_prefix.clone(),
            duplicate_window: Duration::from_secs(self.duplicate_window_secs),
            replicas: usize::from(self.stream_replicas),
        }
    }
}

/// Where PostgreSQL is.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseConfig {
    /// PostgreSQL connection URL.
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "GEOLEDGER_DATABASE_URL",
        default_value = "postgres://geoledger@127.0.0.1:5432/geoledger"
    )]
    pub url: SecretUrl,
    /// Largest number of pooled connections.
    #[arg(
        long = "database-max-connections",
        env = "GEOLEDGER_DATABASE_MAX_CONNECTIONS",
        default_value_t = 10
    )]
    pub max_connections: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        nats: NatsConfig,
    }

    #[test]
    fn stream_replicas_reach_the_stream_spec_and_stay_within_what_jetstream_allows() {
        use clap::Parser as _;
        let cli = Cli::try_parse_from(["t", "--stream-replicas", "3"]).unwrap();
        assert_eq!(cli.nats.stream_spec().replicas, 3);
        assert_eq!(cli.nats.stream_spec().config().num_replicas, 3);
        for refused in ["0", "6"] {
            let parsed = Cli::try_parse_from(["t", "--stream-replicas", refused]);
            assert!(parsed.is_err(), "{refused} replicas should be refused");
        }
    }

    #[test]
    fn a_password_never_reaches_the_log() {
        let url: SecretUrl = "postgres://app:hunter2@db:5432/x".parse().unwrap();
        assert_eq!(format!("{url:?}"), "postgres://app:***@db:5432/x");
        assert_eq!(url.expose(), "postgres://app:hunter2@db:5432/x");
    }

    #[test]
    fn a_nats_password_never_reaches_the_log_either() {
        let config = NatsConfig {
            url: "nats://app:s3cret@a:4222, nats://b:4222".to_owned(),
            stream: "S".to_owned(),
            subject_prefix: "p".to_owned(),
            duplicate_window_secs: 120,
            stream_replicas: 1,
        };
        let logged = format!("{config:?}");
        assert!(!logged.contains("s3cret"), "{logged}");
        assert!(
            logged.contains("nats://app:***@a:4222,nats://b:4222"),
            "{logged}"
        );
    }
}
