//! What a load run was measured on: the machine, the deployment's shape and the versions of
//! its parts, printed at the top of every run so that figures from two runs can be compared.
//!
//! Everything is read from the running stack itself (HAProxy's stats CSV and metrics, NATS
//! monitoring, the database), never from configuration files, which may not be what runs.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::time::Duration;

use sqlx::Connection as _;

/// Where the parts of a deployment can be asked about themselves.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// HAProxy's stats page, such as `http://127.0.0.1:8404/`; `;csv` and `/metrics` are
    /// read from it.
    pub haproxy_stats: String,
    /// NATS monitoring, such as `http://127.0.0.1:18222`.
    pub nats_monitor: String,
    /// The projector's `/status` URL.
    pub projector_status: String,
    /// The read model's database, for its server's version.
    pub database_url: String,
}

/// One HAProxy backend as the stats CSV shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backend {
    /// Server lines in the backend.
    pub servers: usize,
    /// Distinct addresses among them: a one-instance shape names its instance twice.
    pub instances: usize,
    /// Servers whose status is UP.
    pub up: usize,
    /// The balancing algorithm, when this HAProxy reports it.
    pub algorithm: Option<String>,
}

/// The machine, shape and versions of one run. A part that could not be asked is `None` and
/// printed as unknown, so a partly broken stack still gets its figures labelled.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// Logical CPUs this process may use.
    pub cpus: usize,
    /// The first `model name` of `/proc/cpuinfo`.
    pub cpu_model: Option<String>,
    /// `MemTotal` of `/proc/meminfo`, in bytes.
    pub memory_bytes: Option<u64>,
    /// The three load averages of `/proc/loadavg`: how busy the shared CPUs were already.
    pub load_average: Option<String>,
    /// HAProxy's backends by name (`command_api`, `query_api`).
    pub backends: BTreeMap<String, Backend>,
    /// Whether the projector answered its status URL.
    pub projector_up: bool,
    /// HAProxy's version, from its metrics.
    pub haproxy: Option<String>,
    /// nats-server's version, from `/varz`.
    pub nats: Option<String>,
    /// PostgreSQL's `version()`, shortened to its first words.
    pub postgres: Option<String>,
    /// `postgis_lib_version()`.
    pub postgis: Option<String>,
}

/// How long each part gets to answer; a stack under test answers in milliseconds.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

impl Environment {
    /// Reads the machine from `/proc` (Linux; elsewhere those figures are left out) and the
    /// deployment from its endpoints.
    pub async fn describe(client: &reqwest::Client, endpoints: &Endpoints) -> Self {
        let stats = format!("{}/;csv", endpoints.haproxy_stats.trim_end_matches('/'));
        let metrics = format!("{}/metrics", endpoints.haproxy_stats.trim_end_matches('/'));
        let varz = format!("{}/varz", endpoints.nats_monitor.trim_end_matches('/'));
        let (stats, metrics, varz, projector, database) = tokio::join!(
            get_text(client, &stats),
            get_text(client, &metrics),
            get_text(client, &varz),
            get_text(client, &endpoints.projector_status),
            database_versions(&endpoints.database_url),
        );
        let (postgres, postgis) = database.unzip();
        Self {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model: proc_value("/proc/cpuinfo", "model name").map(|v| v.trim().to_owned()),
            memory_bytes: proc_value("/proc/meminfo", "MemTotal")
                .and_then(|v| v.trim().strip_suffix(" kB")?.trim().parse::<u64>().ok())
                .map(|kib| kib * 1024),
            load_average: fs::read_to_string("/proc/loadavg").ok().map(|text| {
                text.split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            backends: stats.as_deref().map(parse_backends).unwrap_or_default(),
            projector_up: projector.is_some(),
            haproxy: metrics.as_deref().and_then(haproxy_version),
            nats: varz.as_deref().and_then(nats_version),
            postgres,
            postgis,
        }
    }
}

async fn get_text(client: &reqwest::Client, url: &str) -> Option<String> {
    let response = client.get(url).timeout(ASK_TIMEOUT).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()
}

async fn database_versions(url: &str) -> Option<(String, String)> {
    let ask = async {
        let mut conn = sqlx::PgConnection::connect(url).await.ok()?;
        let (version, postgis): (String, String) =
            sqlx::query_as("SELECT version(), postgis_lib_version()")
                .fetch_one(&mut conn)
                .await
                .ok()?;
        // `PostgreSQL 15.20 (Debian 15.20-0+deb12u1) on x86_64-pc-linux-gnu, compiled by …`
        let short = version.split(" on ").next().unwrap_or(&version).to_owned();
        Some((short, postgis))
    };
    tokio::time::timeout(ASK_TIMEOUT, ask).await.ok().flatten()
}

/// The value after the first `key` line's colon in a `/proc` file of `key: value` lines.
fn proc_value(path: &str, key: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, value)| value.to_owned())
}

/// Reads HAProxy's stats CSV, whose header line names its columns (`# pxname,svname,…`);
/// columns are found by name because their number grows from release to release.
fn parse_backends(csv_text: &str) -> BTreeMap<String, Backend> {
    let mut lines = csv_text.lines();
    let Some(header) = lines.next() else {
        return BTreeMap::new();
    };
    let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let column = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(status)) = (column("pxname"), column("svname"), column("status"))
    else {
        return BTreeMap::new();
    };
    let addr = column("addr");
    let algo = column("algo");

    let mut backends: BTreeMap<String, (Backend, Vec<String>)> = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or("");
        let name = field(px);
        if !matches!(name, "command_api" | "query_api") {
            continue;
        }
        let (backend, addresses) = backends.entry(name.to_owned()).or_default();
        match field(sv) {
            "FRONTEND" => {}
            "BACKEND" => {
                backend.algorithm = algo.map(field).filter(|a| !a.is_empty()).map(str::to_owned);
            }
            _ => {
                backend.servers += 1;
                if field(status).starts_with("UP") {
                    backend.up += 1;
                }
                let address = addr.map_or("", field);
                if !address.is_empty() && !addresses.iter().any(|a| a == address) {
                    addresses.push(address.to_owned());
                }
            }
        }
    }
    backends
        .into_iter()
        .map(|(name, (mut backend, addresses))| {
            backend.instances = if addresses.is_empty() {
                backend.servers
            } else {
                addresses.len()
            };
            (name, backend)
        })
        .collect()
}

/// `haproxy_process_build_info{version="2.6.12-1+deb12u1"} 1` in the Prometheus metrics.
fn haproxy_version(metrics: &str) -> Option<String> {
    metrics
        .lines()
        .find(|line| line.starts_with("haproxy_process_build_info"))
        .and_then(|line| line.split_once("version=\""))
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(version, _)| version.to_owned())
}

fn nats_version(varz: &str) -> Option<String> {
    let varz: serde_json::Value = serde_json::from_str(varz).ok()?;
    varz.get("version")?.as_str().map(str::to_owned)
}

fn or_unknown(value: Option<&str>) -> &str {
    value.unwrap_or("unknown")
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "machine: {} CPUs", self.cpus)?;
        if let Some(model) = &self.cpu_model {
            write!(f, " ({model})")?;
        }
        if let Some(bytes) = self.memory_bytes {
            #[expect(
                clippy::cast_precision_loss,
                reason = "memory sizes stay far below 2^52 bytes"
            )]
            let gib = bytes as f64 / f64::from(1u32 << 30);
            write!(f, ", {gib:.1} GiB")?;
        }
        writeln!(
            f,
            ", load average {}",
            or_unknown(self.load_average.as_deref())
        )?;
        write!(f, "shape:")?;
        if self.backends.is_empty() {
            write!(f, " unknown (HAProxy stats unreadable)")?;
        }
        for (name, backend) in &self.backends {
            write!(
                f,
                " {name} x{} ({} of {} servers up",
                backend.instances, backend.up, backend.servers,
            )?;
            // HAProxy 2.6 leaves the column empty; later releases fill it.
            if let Some(algorithm) = &backend.algorithm {
                write!(f, ", balance {algorithm}")?;
            }
            write!(f, ");")?;
        }
        writeln!(
            f,
            " projector x1 ({}); all on this machine",
            if self.projector_up {
                "answering"
            } else {
                "not answering"
            }
        )?;
        write!(
            f,
            "versions: geoledger loadtests {}, HAProxy {}, nats-server {}, {}, PostGIS {}",
            env!("CARGO_PKG_VERSION"),
            or_unknown(self.haproxy.as_deref()),
            or_unknown(self.nats.as_deref()),
            or_unknown(self.postgres.as_deref()),
            or_unknown(self.postgis.as_deref()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATS: &str = "# pxname,svname,qcur,status,addr,algo\n\
        geoledger,FRONTEND,,OPEN,,\n\
        command_api,command-api-1,0,UP,127.0.0.1:8081,\n\
        command_api,command-api-2,0,UP,127.0.0.1:8081,\n\
        command_api,BACKEND,0,UP,,leastconn\n\
        query_api,query-api-1,0,UP,127.0.0.1:8091,\n\
        query_api,query-api-2,0,DOWN,127.0.0.1:8092,\n\
        query_api,query-api-3,0,UP 1/2,127.0.0.1:8093,\n\
        query_api,BACKEND,0,UP,,leastconn\n";

    #[test]
    fn one_instance_named_twice_counts_once() {
        let backends = parse_backends(STATS);
        let command = &backends["command_api"];
        assert_eq!((command.servers, command.instances, command.up), (2, 1, 2));
        assert_eq!(command.algorithm.as_deref(), Some("leastconn"));
    }

    #[test]
    fn servers_still_serving_count_as_up_and_down_ones_do_not() {
        let query = &parse_backends(STATS)["query_api"];
        assert_eq!((query.servers, query.instances, query.up), (3, 3, 2));
    }

    #[test]
    fn the_haproxy_version_comes_from_its_build_info_metric() {
        let metrics = "# HELP x\nhaproxy_process_build_info{version=\"2.6.12-1+deb12u1\"} 1\n";
        assert_eq!(
            haproxy_version(metrics).as_deref(),
            Some("2.6.12-1+deb12u1")
        );
    }
}
