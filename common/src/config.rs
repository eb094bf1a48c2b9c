//! Configuration pieces shared by the binaries. Each binary has one `Config` built by clap
//! from flags and `GEOLEDGER_*` environment variables; the pieces here are flattened into it.

use std::fmt;
use std::path::PathBuf;
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

/// A password or token that never shows in `Debug` or logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret itself: only for handing to a client library.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How a service proves who it is to NATS, and how the connection is encrypted. At most one
/// way of authenticating is taken; a user and password may also ride in the URL. `Debug`
/// shows which settings are given, the password and token as `***` (see [`Secret`]).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct NatsAuth {
    /// NATS user name; needs `--nats-password`.
    #[arg(
        long = "nats-user",
        env = "GEOLEDGER_NATS_USER",
        requires = "nats_password"
    )]
    pub user: Option<String>,
    /// NATS password of `--nats-user`.
    #[arg(
        id = "nats_password",
        long = "nats-password",
        env = "GEOLEDGER_NATS_PASSWORD",
        requires = "user",
        hide_env_values = true
    )]
    pub password: Option<Secret>,
    /// NATS authentication token.
    #[arg(
        long = "nats-token",
        env = "GEOLEDGER_NATS_TOKEN",
        conflicts_with_all = ["user", "nkey_seed_file", "creds_file"],
        hide_env_values = true
    )]
    pub token: Option<Secret>,
    /// File holding the `NKey` seed (`SU…`) the service signs the server's challenge with.
    #[arg(
        long = "nats-nkey-seed-file",
        env = "GEOLEDGER_NATS_NKEY_SEED_FILE",
        conflicts_with_all = ["user", "creds_file"]
    )]
    pub nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (user JWT and `NKey` seed), for servers run with accounts in operator
    /// mode.
    #[arg(
        long = "nats-creds-file",
        env = "GEOLEDGER_NATS_CREDS_FILE",
        conflicts_with = "user"
    )]
    pub creds_file: Option<PathBuf>,
    /// PEM file of the certificate authorities to trust for the server's certificate, besides
    /// the system's; implies TLS.
    #[arg(long = "nats-tls-ca-file", env = "GEOLEDGER_NATS_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that verify clients (`verify: true`); needs
    /// `--nats-tls-key-file`.
    #[arg(
        long = "nats-tls-cert-file",
        env = "GEOLEDGER_NATS_TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `--nats-tls-cert-file`.
    #[arg(
        long = "nats-tls-key-file",
        env = "GEOLEDGER_NATS_TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    pub tls_key_file: Option<PathBuf>,
    /// Refuse to connect without TLS (`tls://` URLs require it too).
    #[arg(long = "nats-tls-required", env = "GEOLEDGER_NATS_TLS_REQUIRED")]
    pub tls_required: bool,
}

impl NatsAuth {
    /// Client options carrying these credentials and TLS settings, for the caller to add its
    /// own (name, timeouts) to.
    ///
    /// # Errors
    /// When the `NKey` seed file or the `.creds` file cannot be read; a seed that is not one
    /// shows only when connecting.
    pub async fn connect_options(&self) -> std::io::Result<async_nats::ConnectOptions> {
        let mut options = async_nats::ConnectOptions::new();
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.expose().to_owned());
        }
        if let Some(token) = &self.token {
            options = options.token(token.expose().to_owned());
        }
        if let Some(path) = &self.nkey_seed_file {
            // Read once at start-up, a few bytes: not worth a blocking-pool hop.
            let seed = std::fs::read_to_string(path).map_err(|error| {
                std::io::Error::new(
                    error.kind(),
                    format!("reading the NKey seed file {}: {error}", path.display()),
                )
            })?;
            options = options.nkey(seed.trim().to_owned());
        }
        if let Some(path) = &self.creds_file {
            options = options.credentials_file(path).await.map_err(|error| {
                std::io::Error::new(
                    error.kind(),
                    format!("reading the credentials file {}: {error}", path.display()),
                )
            })?;
        }
        if let Some(ca) = &self.tls_ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if self.tls_required {
            options = options.require_tls(true);
        }
        Ok(options)
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
    /// Credentials and TLS.
    #[command(flatten)]
    pub auth: NatsAuth,
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
            .field("auth", &self.auth)
            .finish()
    }
}

impl NatsConfig {
    /// Client options with this configuration's credentials and TLS settings.
    ///
    /// # Errors
    /// As [`NatsAuth::connect_options`].
    pub async fn connect_options(&self) -> std::io::Result<async_nats::ConnectOptions> {
        self.auth_with_url_credentials().connect_options().await
    }

    /// `auth`, or, when it names no way of authenticating, the user and password of the first
    /// URL that carries them (percent-decoded): async-nats parses them out of a URL but never
    /// sends them.
    fn auth_with_url_credentials(&self) -> NatsAuth {
        let auth = &self.auth;
        if auth.user.is_some()
            || auth.token.is_some()
            || auth.nkey_seed_file.is_some()
            || auth.creds_file.is_some()
        {
            return auth.clone();
        }
        let from_url = self.url.split(',').find_map(|url| {
            let server: async_nats::ServerAddr = url.trim().parse().ok()?;
            Some((
                percent_decode(server.username()?),
                percent_decode(server.password()?),
            ))
        });
        match from_url {
            Some((user, password)) => NatsAuth {
                user: Some(user),
                password: Some(Secret(password)),
                ..auth.clone()
            },
            None => auth.clone(),
        }
    }

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

/// `%XX` escapes turned back into the bytes they stand for; anything not a valid escape (as
/// `%zz` or `%+1`) is kept as written, and so is the whole text when it is not UTF-8 once
/// decoded.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map_or_else(|_| text.to_owned(), std::borrow::Cow::into_owned)
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
    fn nats_credentials_come_one_way_at_a_time_and_a_user_needs_a_password() {
        use clap::Parser as _;
        let cli = Cli::try_parse_from(["t", "--nats-user", "u", "--nats-password", "p"]).unwrap();
        assert_eq!(cli.nats.auth.user.as_deref(), Some("u"));
        for refused in [
            &["t", "--nats-user", "u"][..],
            &["t", "--nats-password", "p"],
            &[
                "t",
                "--nats-user",
                "u",
                "--nats-password",
                "p",
                "--nats-token",
                "x",
            ],
            &["t", "--nats-token", "x", "--nats-creds-file", "c"],
            &["t", "--nats-tls-cert-file", "c"],
        ] {
            assert!(
                Cli::try_parse_from(refused).is_err(),
                "{refused:?} is refused"
            );
        }
    }

    #[test]
    fn a_user_and_password_in_the_url_are_sent_unless_credentials_are_given_apart() {
        use clap::Parser as _;
        let mut config =
            Cli::try_parse_from(["t", "--nats-url", "nats://a:4222,nats://cmd:pw@b:4222"])
                .unwrap()
                .nats;
        let auth = config.auth_with_url_credentials();
        assert_eq!(auth.user.as_deref(), Some("cmd"));
        assert_eq!(auth.password.as_ref().map(Secret::expose), Some("pw"));
        config.auth.token = Some("t".parse().unwrap());
        assert_eq!(config.auth_with_url_credentials().user, None);

        config = Cli::try_parse_from(["t", "--nats-url", "nats://c%40md:p%3Aw%2F%zz%+1@b:4222"])
            .unwrap()
            .nats;
        let auth = config.auth_with_url_credentials();
        assert_eq!(auth.user.as_deref(), Some("c@md"));
        assert_eq!(
            auth.password.as_ref().map(Secret::expose),
            Some("p:w/%zz%+1")
        );
    }

    #[test]
    fn escapes_that_decode_to_no_utf_8_leave_the_text_as_written() {
        assert_eq!(percent_decode("p%C3%A4ss"), "päss");
        assert_eq!(percent_decode("p%ffss"), "p%ffss");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[tokio::test]
    async fn a_missing_seed_file_is_named_before_connecting() {
        let auth = NatsAuth {
            nkey_seed_file: Some("/nonexistent/geoledger.nk".into()),
            ..NatsAuth::default()
        };
        let error = auth.connect_options().await.expect_err("refused");
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
        assert!(
            error.to_string().contains("/nonexistent/geoledger.nk"),
            "{error}"
        );
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
            auth: NatsAuth {
                user: Some("command-api".to_owned()),
                password: Some("pa55word".parse().unwrap()),
                token: Some("t0ken".parse().unwrap()),
                ..NatsAuth::default()
            },
        };
        let logged = format!("{config:?}");
        assert!(!logged.contains("s3cret"), "{logged}");
        assert!(!logged.contains("pa55word"), "{logged}");
        assert!(!logged.contains("t0ken"), "{logged}");
        assert!(logged.contains("command-api"), "{logged}");
        assert!(
            logged.contains("nats://app:***@a:4222,nats://b:4222"),
            "{logged}"
        );
    }
}
