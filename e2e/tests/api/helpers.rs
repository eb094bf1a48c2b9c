//! `spawn_app()` and the `TestApp` every test drives.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use geoledger_common::config::{DatabaseConfig, NatsAuth, NatsConfig};
use geoledger_common::stream::StreamSpec;

/// How long a test waits for the projection to catch up before failing.
pub(crate) const PROJECTION_WAIT: Duration = Duration::from_secs(30);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `make test`, which starts their servers")
    })
}

/// A running service task and the means to stop it.
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    fn spawn<F>(addr: SocketAddr, run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(stopped));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Asks the service to shut down gracefully and waits for it.
    pub(crate) async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("service task panicked")
                .expect("service failed");
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Options for [`spawn_app_with`].
#[derive(Default)]
pub(crate) struct Options {
    /// NATS to use instead of the shared test server.
    pub(crate) nats_url: Option<String>,
    /// Duplicate window of the test's stream, in seconds.
    pub(crate) duplicate_window_secs: Option<u64>,
    /// The tag naming the test's stream (`T_<tag>`) and subjects (`t<tag>.points`), when the
    /// test must know them before the services start.
    pub(crate) tag: Option<String>,
    /// NATS users the services connect as, for a server with authorization.
    pub(crate) nats_users: Option<NatsUsers>,
}

/// Who connects to a NATS server with authorization or TLS: each service as its own user,
/// the test itself as admin.
#[derive(Clone)]
pub(crate) struct NatsUsers {
    pub(crate) command: NatsAuth,
    pub(crate) projector: NatsAuth,
    pub(crate) admin: NatsAuth,
}

pub(crate) struct TestApp {
    pub(crate) command: Running,
    pub(crate) query: Running,
    pub(crate) projector: Running,
    pub(crate) pool: PgPool,
    pub(crate) database_url: String,
    pub(crate) nats: NatsConfig,
    pub(crate) js: async_nats::jetstream::Context,
    pub(crate) http: reqwest::Client,
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub(crate) async fn spawn_app_with(options: Options) -> TestApp {
    init_logs();
    let (database_url, pool) = fresh_database().await;
    projector::migrate(&pool)
        .await
        .expect("migrations apply to a fresh database");

    let tag = options
        .tag
        .unwrap_or_else(|| Uuid::now_v7().simple().to_string());
    let nats = NatsConfig {
        url: options
            .nats_url
            .unwrap_or_else(|| env("GEOLEDGER_TEST_NATS_URL")),
        stream: format!("T_{tag}"),
        subject_prefix: format!("t{tag}.points"),
        duplicate_window_secs: options.duplicate_window_secs.unwrap_or(120),
        stream_replicas: 1,
        auth: NatsAuth::default(),
    };
    ensure_login_roles(&pool).await;

    // The services connect as their own restricted roles, as deployed; the test keeps the
    // owner's pool for arranging and inspecting.
    let (command_nats, projector_nats) = match &options.nats_users {
        Some(users) => (
            NatsConfig {
                auth: users.command.clone(),
                ..nats.clone()
            },
            NatsConfig {
                auth: users.projector.clone(),
                ..nats.clone()
            },
        ),
        None => (nats.clone(), nats.clone()),
    };
    let command = start_command_api(&command_nats).await;
    let projector = start_projector(
        &projector_nats,
        &as_login(&database_url, PROJECTOR_LOGIN, 5),
    )
    .await;
    let query = start_query_api(&as_login(&database_url, READER_LOGIN, 5)).await;

    let test_nats = NatsConfig {
        auth: options
            .nats_users
            .as_ref()
            .map(|users| users.admin.clone())
            .unwrap_or_default(),
        ..nats.clone()
    };
    let client = test_nats
        .connect_options()
        .await
        .expect("the test's NATS options")
        .retry_on_initial_connect()
        .connect(test_nats.url.as_str())
        .await
        .expect("the test connects to NATS");
    let js = async_nats::jetstream::new(client);
    let app = TestApp {
        command,
        query,
        projector,
        pool,
        database_url,
        nats,
        js,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("a plain HTTP client builds"),
    };
    app.wait_until_ready().await;
    app
}

/// Logs and spans are captured for the observability tests; `TEST_LOG=1` also prints the
/// log lines.
fn init_logs() {
    crate::capture::install();
}

pub(crate) fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("a literal socket address")
}

pub(crate) async fn start_command_api(nats: &NatsConfig) -> Running {
    start_command_api_with(command_api::Config::new(nats.clone(), loopback())).await
}

/// A command-api with settings of the test's choosing; `config.listen` should be port 0.
pub(crate) async fn start_command_api_with(config: command_api::Config) -> Running {
    let app = command_api::App::build(config)
        .await
        .expect("command-api builds");
    Running::spawn(app.local_addr(), |stop| {
        app.run_until(async {
            let _ = stop.await;
        })
    })
}

pub(crate) async fn start_projector(nats: &NatsConfig, database: &DatabaseConfig) -> Running {
    start_projector_with(projector::Config::new(
        nats.clone(),
        database.clone(),
        loopback(),
    ))
    .await
}

pub(crate) async fn start_projector_with(config: projector::Config) -> Running {
    let app = projector::App::build(config)
        .await
        .expect("projector builds");
    Running::spawn(app.local_addr(), |stop| {
        app.run_until(async {
            let _ = stop.await;
        })
    })
}

pub(crate) async fn start_query_api(database: &DatabaseConfig) -> Running {
    start_query_api_with(query_api::Config::for_tests(
        database.url.expose(),
        loopback(),
    ))
    .await
}

/// A query-api with settings of the test's choosing; `config.listen` should be port 0.
pub(crate) async fn start_query_api_with(config: query_api::Config) -> Running {
    let app = query_api::App::build(config)
        .await
        .expect("query-api builds");
    Running::spawn(app.local_addr(), |stop| {
        app.run_until(async {
            let _ = stop.await;
        })
    })
}

/// The login role query-api connects as in the tests: a member of `geoledger_reader`.
pub(crate) const READER_LOGIN: &str = "geoledger_query_login";
/// The login role the running projector connects as in the tests: a member of
/// `geoledger_projector`.
pub(crate) const PROJECTOR_LOGIN: &str = "geoledger_projector_login";

/// Creates the tests' login roles, members of the group roles the migrations made, unless
/// they exist. Roles are shared by every test database of the cluster and many tests start
/// at once, so a concurrent creator's win is expected and ignored. The test cluster trusts
/// loopback connections, so the roles need no password.
async fn ensure_login_roles(pool: &PgPool) {
    for (login, group) in [
        (READER_LOGIN, "geoledger_reader"),
        (PROJECTOR_LOGIN, "geoledger_projector"),
    ] {
        sqlx::query(&format!(
            "DO $$ BEGIN CREATE ROLE {login} LOGIN IN ROLE {group};
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        ))
        .execute(pool)
        .await
        .expect("the test cluster's superuser creates roles");
    }
}

/// `url` with its user replaced by `login`, as a service's database configuration.
pub(crate) fn as_login(url: &str, login: &str, max_connections: u32) -> DatabaseConfig {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let host = rest.split_once('@').map_or(rest, |(_user, host)| host);
    DatabaseConfig {
        url: format!("{scheme}://{login}@{host}")
            .parse()
            .expect("any text is a URL to keep"),
        max_connections,
    }
}

/// A new database, named after a fresh UUID, on the test cluster.
pub(crate) async fn fresh_database() -> (String, PgPool) {
    let admin_url = env("GEOLEDGER_TEST_DATABASE_URL");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await
        .expect("the test cluster accepts connections");
    let name = format!("t_{}", Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("the test role may create databases");
    admin.close().await;
    let url = match admin_url.rsplit_once('/') {
        Some((server, _db)) => format!("{server}/{name}"),
        None => panic!("GEOLEDGER_TEST_DATABASE_URL has no database part"),
    };
    let pool = PgPoolOptions::new()
        .max_connections(5)
        .connect(&url)
        .await
        .expect("the fresh database accepts connections");
    (url, pool)
}

/// What command-api says about an accepted write.
#[derive(Debug, Deserialize)]
pub(crate) struct Accepted {
    pub(crate) id: Uuid,
    pub(crate) sequence: u64,
    pub(crate) version: u64,
}

/// A point as query-api returns it.
#[derive(Debug, Deserialize, PartialEq)]
pub(crate) struct PointDto {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) longitude: f64,
    pub(crate) latitude: f64,
}

impl TestApp {
    /// The test's database as the tables' owner, for the commands that need DDL (rebuild,
    /// replay) and for arranging what a test needs.
    pub(crate) fn database_config(&self, max_connections: u32) -> DatabaseConfig {
        DatabaseConfig {
            url: self
                .database_url
                .parse()
                .expect("any text is a URL to keep"),
            max_connections,
        }
    }

    /// The test's database as query-api's role sees it.
    pub(crate) fn reader_config(&self, max_connections: u32) -> DatabaseConfig {
        as_login(&self.database_url, READER_LOGIN, max_connections)
    }

    /// The test's database as the running projector's role sees it.
    pub(crate) fn projector_config(&self, max_connections: u32) -> DatabaseConfig {
        as_login(&self.database_url, PROJECTOR_LOGIN, max_connections)
    }

    /// A projector configuration on the test's stream and database as the tables' owner, for
    /// the projector's commands (rebuild, replay, dead letters); listens on a free port.
    pub(crate) fn owner_projector_config(&self, max_connections: u32) -> projector::Config {
        projector::Config::new(
            self.nats.clone(),
            self.database_config(max_connections),
            loopback(),
        )
    }

    pub(crate) fn spec(&self) -> StreamSpec {
        self.nats.stream_spec()
    }

    async fn wait_until_ready(&self) {
        for service in [&self.command, &self.projector, &self.query] {
            wait_for_status(&self.http, &service.url("/status")).await;
        }
    }

    /// POSTs raw bytes to `/point` on `base` with the given content type.
    pub(crate) async fn post_raw(
        &self,
        base: &str,
        body: impl Into<reqwest::Body>,
        content_type: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.http.post(format!("{base}/point")).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        request.send().await.expect("command-api answers")
    }

    /// POSTs a point as JSON to command-api directly.
    pub(crate) async fn post_point(&self, point: &Value) -> reqwest::Response {
        self.post_point_to(&self.command.url(""), point).await
    }

    /// POSTs a point as JSON to command-api, which must accept it, and returns the acceptance.
    pub(crate) async fn create_point(&self, point: &Value) -> Accepted {
        let response = self.post_point(point).await;
        assert_eq!(response.status(), 202, "{point} is accepted");
        response.json().await.expect("an accepted write's body")
    }

    pub(crate) async fn post_point_to(&self, base: &str, point: &Value) -> reqwest::Response {
        self.http
            .post(format!("{base}/point"))
            .json(point)
            .send()
            .await
            .expect("the write side answers")
    }

    /// Number of messages in the test's stream (0 if it does not exist yet).
    pub(crate) async fn stream_messages(&self) -> u64 {
        self.stream_state().await.0
    }

    /// The test stream's message count and last sequence ((0, 0) if it does not exist yet).
    pub(crate) async fn stream_state(&self) -> (u64, u64) {
        match self.js.get_stream(&self.nats.stream).await {
            Ok(mut stream) => {
                let info = stream.info().await.expect("stream info");
                (info.state.messages, info.state.last_sequence)
            }
            Err(_) => (0, 0),
        }
    }

    /// Publishes `payload` as it is, unchecked, on the subject of `point` in the test's stream,
    /// and returns the sequence JetStream stored it at.
    pub(crate) async fn publish_raw(&self, point: Uuid, payload: Vec<u8>) -> u64 {
        self.js
            .publish(self.spec().subject_for(point), payload.into())
            .await
            .expect("NATS takes the message")
            .await
            .expect("JetStream stores the message")
            .sequence
    }

    pub(crate) async fn checkpoint(&self) -> u64 {
        projector::read_checkpoint(&self.pool)
            .await
            .expect("the checkpoint is readable")
    }

    /// Waits until the projection has applied everything up to `sequence`.
    pub(crate) async fn wait_projected(&self, sequence: u64) {
        if let Err(stuck) = self.try_wait_projected(sequence, PROJECTION_WAIT).await {
            panic!("{stuck}");
        }
    }

    /// Waits up to `limit` for the projection to apply everything up to `sequence`; says
    /// where it is stuck otherwise, for a caller that fails in its own way (a property test's
    /// case rather than a panic).
    pub(crate) async fn try_wait_projected(
        &self,
        sequence: u64,
        limit: Duration,
    ) -> Result<(), String> {
        let start = Instant::now();
        while self.checkpoint().await < sequence {
            if start.elapsed() >= limit {
                return Err(format!(
                    "the projection is stuck at {} below {sequence}",
                    self.checkpoint().await
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// GETs one point through `base` (a query-api or HAProxy).
    pub(crate) async fn get_point(&self, base: &str, id: Uuid) -> reqwest::Response {
        self.http
            .get(format!("{base}/points/{id}"))
            .send()
            .await
            .expect("the read side answers")
    }
}

/// Polls a `/status` until it answers 200.
pub(crate) async fn wait_for_status(http: &reqwest::Client, url: &str) {
    let start = Instant::now();
    loop {
        if let Ok(response) = http.get(url).send().await
            && response.status() == 200
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{url} never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("the OS hands out a loopback port")
        .port()
}

/// A nats-server of the test's own, which the test may stop and start again.
pub(crate) struct OwnNats {
    pub(crate) port: u16,
    store: tempfile::TempDir,
    /// A configuration file (`-c`), and then the server logs to `nats.log` in the store.
    config: Option<PathBuf>,
    child: Option<Child>,
}

impl OwnNats {
    pub(crate) async fn start() -> Self {
        let mut nats = Self {
            port: free_port(),
            store: tempfile::tempdir().expect("a temporary directory"),
            config: None,
            child: None,
        };
        nats.resume().await;
        nats
    }

    /// A server with the local stack's authorization for the stream `T_<tag>` and subjects
    /// `t<tag>.points` (infra/local/nats-auth.sh, fresh passwords), and the users to connect
    /// as.
    pub(crate) async fn start_with_auth(tag: &str) -> (Self, NatsUsers) {
        let store = tempfile::tempdir().expect("a temporary directory");
        let [command, projector, admin] =
            ["command", "projector", "admin"].map(|_| Uuid::new_v4().simple().to_string());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/local/nats-auth.sh");
        let output = std::process::Command::new("bash")
            .arg(&script)
            .args([format!("T_{tag}"), format!("t{tag}.points")])
            .env("GEOLEDGER_NATS_COMMAND_PASSWORD", &command)
            .env("GEOLEDGER_NATS_PROJECTOR_PASSWORD", &projector)
            .env("GEOLEDGER_NATS_ADMIN_PASSWORD", &admin)
            .output()
            .expect("nats-auth.sh runs");
        assert!(
            output.status.success(),
            "nats-auth.sh: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let config = store.path().join("auth.conf");
        std::fs::write(&config, &output.stdout).expect("the configuration is written");
        let mut nats = Self {
            port: free_port(),
            store,
            config: Some(config),
            child: None,
        };
        nats.resume().await;
        let user = |name: &str, password: String| NatsAuth {
            user: Some(name.to_owned()),
            password: Some(password.parse().expect("infallible")),
            ..NatsAuth::default()
        };
        let users = NatsUsers {
            command: user("command-api", command),
            projector: user("projector", projector),
            admin: user("admin", admin),
        };
        (nats, users)
    }

    /// A server that speaks only TLS and requires a client certificate, with a certificate
    /// authority, server and client certificates made by `openssl` for the test; every user
    /// is given the CA and the client certificate.
    pub(crate) async fn start_with_tls() -> (Self, NatsUsers) {
        let store = tempfile::tempdir().expect("a temporary directory");
        let dir = store.path();
        let made = std::process::Command::new("bash")
            .current_dir(dir)
            .args(["-euc", MAKE_TEST_CERTIFICATES])
            .output()
            .expect("bash runs");
        assert!(
            made.status.success(),
            "openssl made no certificates: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let config = dir.join("tls.conf");
        std::fs::write(
            &config,
            format!(
                "tls {{\n  cert_file: \"{}\"\
                 \n  key_file: \"{}\"\
                 \n  ca_file: \"{}\"\
                 \n  verify: true\n}}\n",
                dir.join("server.pem").display(),
                dir.join("server.key").display(),
                dir.join("ca.pem").display(),
            ),
        )
        .expect("the configuration is written");
        let tls = NatsAuth {
            tls_ca_file: Some(dir.join("ca.pem")),
            tls_cert_file: Some(dir.join("client.pem")),
            tls_key_file: Some(dir.join("client.key")),
            tls_required: true,
            ..NatsAuth::default()
        };
        let mut nats = Self {
            port: free_port(),
            store,
            config: Some(config),
            child: None,
        };
        nats.resume().await;
        let users = NatsUsers {
            command: tls.clone(),
            projector: tls.clone(),
            admin: tls,
        };
        (nats, users)
    }

    /// Where the test's certificate files are (`ca.pem`, `client.pem`, `client.key`).
    pub(crate) fn dir(&self) -> &Path {
        self.store.path()
    }

    /// The server's log; kept only for a server started with a configuration.
    pub(crate) fn log(&self) -> String {
        let log = std::fs::read_to_string(self.store.path().join("nats.log"))
            .expect("a server started with a configuration logs to nats.log");
        assert!(
            log.contains("Server is ready"),
            "not the server's log:\n{log}"
        );
        log
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port and store.
    pub(crate) async fn resume(&mut self) {
        let child = Command::new(env("GEOLEDGER_TEST_NATS_SERVER"))
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .args(self.config.iter().flat_map(|config| {
                [
                    "-c".into(),
                    config.as_os_str().to_owned(),
                    "-l".into(),
                    self.store.path().join("nats.log").into_os_string(),
                ]
            }))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        wait_for_port(self.port).await;
    }

    /// Kills the server (by its own PID) and waits for it to be gone.
    pub(crate) async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child
                .kill()
                .await
                .expect("the test's own nats-server can be killed");
        }
    }
}

/// A throwaway certificate authority, a server certificate for 127.0.0.1 and a client
/// certificate, each valid for a day.
const MAKE_TEST_CERTIFICATES: &str = "
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1 2>/dev/null; }
key ca.key; key server.key; key client.key
openssl req -x509 -new -key ca.key -out ca.pem -days 1 -subj /CN=geoledger-test-ca
openssl req -new -key server.key -out server.csr -subj /CN=127.0.0.1
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1   \
    -out server.pem -extfile <(printf 'subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth')
openssl req -new -key client.key -out client.csr -subj /CN=geoledger-test-client
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1   \
    -out client.pem -extfile <(printf 'extendedKeyUsage=clientAuth')
";

async fn wait_for_port(port: u16) {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "port {port} never opened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// HAProxy with the project's own configuration, in front of the given services.
pub(crate) struct OwnHaproxy {
    pub(crate) port: u16,
    /// The stats page and HAProxy's own Prometheus `/metrics`.
    pub(crate) stats_port: u16,
    child: Child,
}

impl OwnHaproxy {
    /// Ports are picked free, then bound by HAProxy a moment later; another test (or another
    /// suite on the machine) can take one in between. HAProxy then exits at once for want of
    /// its port, and the start is tried again on new ports; a port answering for someone else
    /// is caught by [`OwnHaproxy::wait_until_backends_up`] reading query-api's JSON.
    pub(crate) async fn start(commands: [SocketAddr; 2], queries: [SocketAddr; 2]) -> Self {
        Self::start_with(commands, queries, &[]).await
    }

    /// As [`OwnHaproxy::start`], with more `GEOLEDGER_HAPROXY_*` settings.
    pub(crate) async fn start_with(
        commands: [SocketAddr; 2],
        queries: [SocketAddr; 2],
        settings: &[(&str, &str)],
    ) -> Self {
        for _ in 0..5 {
            let port = free_port();
            let stats_port = free_port();
            let mut child = Command::new(env("GEOLEDGER_TEST_HAPROXY"))
                .args(["-db", "-f", &env("GEOLEDGER_TEST_HAPROXY_CFG")])
                .env("GEOLEDGER_HAPROXY_BIND", format!("127.0.0.1:{port}"))
                .env(
                    "GEOLEDGER_HAPROXY_STATS_BIND",
                    format!("127.0.0.1:{stats_port}"),
                )
                .env("GEOLEDGER_CMD_1", commands[0].to_string())
                .env("GEOLEDGER_CMD_2", commands[1].to_string())
                .env("GEOLEDGER_QUERY_1", queries[0].to_string())
                .env("GEOLEDGER_QUERY_2", queries[1].to_string())
                // The suite runs dozens of services on two cores, where a /status answer can
                // miss the 2 s check timeout twice in a row; that would take a healthy instance
                // out of rotation and turn a test's write into HAProxy's 503.
                .env("GEOLEDGER_HAPROXY_CHECK_FALL", "5")
                // The readiness probes below would count against a rate limit; a test of the
                // limit sets one of its own.
                .env("GEOLEDGER_HAPROXY_RATE_LIMIT", "0")
                .envs(settings.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("haproxy starts");
            wait_for_port(port).await;
            // A refused bind ends HAProxy within milliseconds of starting.
            tokio::time::sleep(Duration::from_millis(200)).await;
            if child
                .try_wait()
                .expect("haproxy can be waited on")
                .is_some()
            {
                continue;
            }
            let haproxy = Self {
                port,
                stats_port,
                child,
            };
            if haproxy.wait_until_backends_up().await {
                return haproxy;
            }
        }
        panic!("HAProxy could not be started on free ports in five tries");
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Health checks need a couple of rounds before HAProxy sends traffic; a read answered
    /// by query-api and a write refused by command-api (not by HAProxy's 503; a 401 when
    /// command-api wants a token) show both sides are in rotation. False when the port
    /// answers with something else than JSON, i.e. is not this HAProxy in front of these
    /// services.
    async fn wait_until_backends_up(&self) -> bool {
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            let read = http.get(format!("{}/status", self.url())).send().await;
            let write = http.post(format!("{}/point", self.url())).send().await;
            let json = |r: &reqwest::Response| {
                r.headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("json"))
            };
            if let Ok(r) = &read
                && r.status() == 200
                && !json(r)
            {
                return false;
            }
            let up = |r: &Result<reqwest::Response, reqwest::Error>, ok: &[u16]| {
                r.as_ref().is_ok_and(|r| ok.contains(&r.status().as_u16()))
            };
            if up(&read, &[200]) && up(&write, &[400, 401, 415]) {
                return true;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "HAProxy never saw its backends up"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(crate) async fn stop(mut self) {
        self.child
            .kill()
            .await
            .expect("the test's own haproxy can be killed");
    }
}

/// One row of a places CSV.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Place {
    pub(crate) name: String,
    pub(crate) longitude: f64,
    pub(crate) latitude: f64,
    pub(crate) country: String,
}

/// The 1,000 real places of the sample file.
pub(crate) fn sample_places() -> Vec<Place> {
    read_places(Path::new(&env("GEOLEDGER_SAMPLE_PLACES")))
}

pub(crate) fn read_places(path: &Path) -> Vec<Place> {
    let mut reader = csv::Reader::from_path(PathBuf::from(path)).expect("the places file opens");
    reader
        .deserialize()
        .map(|r| r.expect("a well-formed place row"))
        .collect()
}

impl Place {
    pub(crate) fn to_json(&self) -> Value {
        serde_json::json!({ "longitude": self.longitude, "latitude": self.latitude, "name": self.name })
    }
}

/// Every place of `places.csv` (234,908 of them).
pub(crate) fn all_places() -> Vec<Place> {
    read_places(Path::new(&env("GEOLEDGER_PLACES")))
}

/// Writes `places` straight into the read model's `points` with fresh UUIDv7 ids, bypassing
/// command-api, JetStream and the projector, and returns the ids in the order of `places`.
/// For read-side tests that need more points than the write path moves in a test's time. The
/// geometry goes in as hex EWKB, so the stored doubles are the parsed ones bit for bit, and
/// the table is analysed afterwards so that the planner sees it as it is.
///
/// The secondary indexes are dropped for the load and rebuilt from their own definitions:
/// growing the two spatial indexes row by row took 8 s for all of `places.csv`, building them
/// afterwards about 3 s.
pub(crate) async fn copy_places(pool: &PgPool, places: &[Place]) -> Vec<Uuid> {
    /// Rows per `send`: keeps each COPY message around a megabyte.
    const CHUNK: usize = 10_000;
    use std::fmt::Write as _;
    let ids: Vec<Uuid> = places.iter().map(|_| Uuid::now_v7()).collect();
    let mut connection = pool.acquire().await.expect("a pooled connection");
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes \
         WHERE schemaname = current_schema() AND tablename = 'points' \
         AND indexname NOT IN (SELECT conname FROM pg_constraint \
         WHERE conrelid = 'points'::regclass)",
    )
    .fetch_all(&mut *connection)
    .await
    .expect("the indexes of points are listed");
    for (name, _) in &indexes {
        sqlx::query(&format!("DROP INDEX {name}"))
            .execute(&mut *connection)
            .await
            .expect("a secondary index of points can be dropped");
    }
    let mut copy = connection
        .copy_in_raw(
            "COPY points (id, name, geom, version, last_seq, created_at, updated_at) \
             FROM STDIN",
        )
        .await
        .expect("COPY into points starts");
    for (chunk, chunk_ids) in places.chunks(CHUNK).zip(ids.chunks(CHUNK)) {
        let mut text = String::with_capacity(chunk.len() * 120);
        for (place, id) in chunk.iter().zip(chunk_ids) {
            writeln!(
                text,
                "{id}\t{}\t{}\t1\t0\t2026-01-01 00:00:00+00\t2026-01-01 00:00:00+00",
                copy_text(&place.name),
                hex_ewkb_point(place.longitude, place.latitude)
            )
            .expect("a String takes any text");
        }
        copy.send(text.into_bytes())
            .await
            .expect("COPY data is accepted");
    }
    let rows = copy.finish().await.expect("COPY into points finishes");
    assert_eq!(rows, places.len() as u64);
    for (_, definition) in &indexes {
        sqlx::query(definition)
            .execute(&mut *connection)
            .await
            .expect("a dropped index is rebuilt from its definition");
    }
    sqlx::query("ANALYZE points")
        .execute(&mut *connection)
        .await
        .expect("ANALYZE runs");
    ids
}

/// A WGS 84 point as PostGIS's hex EWKB: little-endian, type Point with the SRID flag, SRID
/// 4326, then the two doubles.
fn hex_ewkb_point(longitude: f64, latitude: f64) -> String {
    use std::fmt::Write as _;
    let mut hex = String::from("0101000020E6100000");
    for byte in longitude
        .to_le_bytes()
        .into_iter()
        .chain(latitude.to_le_bytes())
    {
        write!(hex, "{byte:02X}").expect("a String takes any text");
    }
    hex
}

/// A value escaped for COPY's text format.
fn copy_text(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// An outside client program a test drives (GDAL's tools, the venv's python): the path in
/// `var`, which `make test` exports, or else `program` as found on PATH.
pub(crate) fn client_program(var: &str, program: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| program.to_owned())
}

/// Keeps an outside client program's HTTP on loopback: whatever proxy the environment names,
/// the test's servers are reached directly.
pub(crate) fn loopback_only(command: &mut Command) {
    command
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    for proxy in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ] {
        command.env_remove(proxy);
    }
}

/// One sample of a Prometheus text exposition.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// Parses the Prometheus text format (0.0.4) strictly: every line is a `# HELP`, a `# TYPE`
/// naming a known type, another comment, or a sample of a family whose type was declared,
/// with well-formed labels and a number; no series appears twice.
fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut seen = HashSet::new();
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let fail = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match words.next() {
                Some("TYPE") => {
                    let name = words.next().ok_or_else(|| fail("TYPE without a name"))?;
                    let kind = words.next().ok_or_else(|| fail("TYPE without a type"))?;
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(fail("unknown type"));
                    }
                    if !valid_name(name) || types.insert(name.to_owned(), kind.to_owned()).is_some()
                    {
                        return Err(fail("bad or repeated TYPE"));
                    }
                }
                Some("HELP") => {
                    let name = words.next().ok_or_else(|| fail("HELP without a name"))?;
                    if !valid_name(name) {
                        return Err(fail("bad metric name"));
                    }
                }
                _ => {}
            }
            continue;
        }
        let (series, rest) = match line.find('{') {
            Some(_) => {
                let close = line.rfind('}').ok_or_else(|| fail("unclosed labels"))?;
                (&line[..=close], &line[close + 1..])
            }
            None => line.split_once(' ').ok_or_else(|| fail("no value"))?,
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, parse_labels(&labels[..labels.len() - 1])?),
            None => (series, BTreeMap::new()),
        };
        if !valid_name(name) {
            return Err(fail("bad metric name"));
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|t| t != "counter"))
            })
            .unwrap_or(name);
        if !types.contains_key(family) {
            return Err(fail("sample of a family without TYPE"));
        }
        let mut fields = rest.split_whitespace();
        let value = match fields.next().ok_or_else(|| fail("no value"))? {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            number => number.parse().map_err(|_| fail("value is not a number"))?,
        };
        if let Some(timestamp) = fields.next() {
            timestamp
                .parse::<i64>()
                .map_err(|_| fail("bad timestamp"))?;
        }
        if fields.next().is_some() {
            return Err(fail("trailing text"));
        }
        if !seen.insert((name.to_owned(), labels.clone())) {
            return Err(fail("series repeated"));
        }
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(samples)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_labels(mut text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    while !text.is_empty() {
        let (key, rest) = text
            .split_once("=\"")
            .ok_or_else(|| format!("label without a quoted value in {text:?}"))?;
        if !valid_name(key) {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err(format!("bad escape in {rest:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in {rest:?}")),
            }
        };
        labels.insert(key.to_owned(), value);
        text = &rest[end + 1..];
        text = text.strip_prefix(',').unwrap_or(text);
        if !text.is_empty() && text.starts_with(',') {
            return Err("empty label".to_owned());
        }
    }
    Ok(labels)
}

/// The value of the one sample called `name` whose labels include `labels`.
pub(crate) fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(
        matching.len() <= 1,
        "{name} {labels:?} names several series"
    );
    matching.first().map(|s| s.value)
}

/// The value of query-api's series `name` with `labels`, scraped now; 0 while it has not
/// appeared.
pub(crate) async fn query_metric(app: &TestApp, name: &str, labels: &[(&str, &str)]) -> f64 {
    let samples = scrape(&app.http, &app.query.url("/metrics")).await;
    value(&samples, name, labels).unwrap_or(0.0)
}

/// The samples of the Prometheus text at `url`, which must answer 200 as `text/plain` and
/// parse strictly.
pub(crate) async fn scrape(http: &reqwest::Client, url: &str) -> Vec<Sample> {
    let response = http.get(url).send().await.expect("/metrics answers");
    assert_eq!(response.status(), 200, "{url}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("an ASCII content type")
        .to_owned();
    assert!(
        content_type.starts_with("text/plain"),
        "{url}: {content_type}"
    );
    let text = response.text().await.expect("a text body");
    parse_prometheus(&text).unwrap_or_else(|error| panic!("{url} is not Prometheus text: {error}"))
}
