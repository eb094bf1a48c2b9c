//! What the read benchmark prints: the machine it ran on, and the figures side by side for the
//! smallest and the largest size.

use std::fmt;
use std::fs;
use std::time::Duration;

use sqlx::PgPool;

use super::http::Timed;
use super::queries::ReadQuery;

/// The figure each read is held to: its median at the largest size may be at most this many
/// times its median at the smallest. A read served by an index grows with the depth of the
/// index, not with the table, so a million points should cost little more than a thousand.
pub const TARGET_RATIO: f64 = 1.5;

/// Where the figures were measured.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Logical CPUs this process may use.
    pub cpus: usize,
    /// The first `model name` of `/proc/cpuinfo`.
    pub cpu_model: Option<String>,
    /// `MemTotal` of `/proc/meminfo`, in bytes.
    pub memory_bytes: Option<u64>,
    /// `SELECT version()`.
    pub postgres: String,
    /// `postgis_lib_version()`.
    pub postgis: String,
    /// The server's `shared_buffers`.
    pub shared_buffers: String,
}

impl Machine {
    /// Reads the machine from `/proc` (Linux; elsewhere those figures are left out) and the
    /// server from the benchmark database.
    pub async fn describe(pool: &PgPool) -> sqlx::Result<Self> {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let cpu_model = fs::read_to_string("/proc/cpuinfo").ok().and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        });
        let memory_bytes = fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.trim().strip_suffix(" kB"))
                .and_then(|kib| kib.trim().parse::<u64>().ok())
                .map(|kib| kib * 1024)
        });
        let (postgres, postgis, shared_buffers) = sqlx::query_as(
            "SELECT version(), postgis_lib_version(), current_setting('shared_buffers')",
        )
        .fetch_one(pool)
        .await?;
        Ok(Self {
            cpus,
            cpu_model,
            memory_bytes,
            postgres,
            postgis,
            shared_buffers,
        })
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "machine: {} CPUs", self.cpus)?;
        if let Some(model) = &self.cpu_model {
            write!(f, " ({model})")?;
        }
        if let Some(bytes) = self.memory_bytes {
            write!(f, ", {:.1} GiB memory", gib(bytes))?;
        }
        write!(
            f,
            "\nserver: {}; PostGIS {}; shared_buffers {}",
            self.postgres, self.postgis, self.shared_buffers
        )
    }
}

fn gib(bytes: u64) -> f64 {
    let mib = u32::try_from(bytes >> 20).unwrap_or(u32::MAX);
    f64::from(mib) / 1024.0
}

/// Everything measured at one size.
#[derive(Debug, Clone)]
pub struct SizeFigures {
    /// Points in the table.
    pub size: u64,
    /// Each read's figures, in [`ReadQuery::ALL`] order.
    pub reads: Vec<(ReadQuery, Timed)>,
    /// The indexes each read's plan used at this size, in the same order.
    pub access: Vec<String>,
}

impl SizeFigures {
    fn read(&self, query: ReadQuery) -> Option<(&Timed, &str)> {
        let at = self.reads.iter().position(|(q, _)| *q == query)?;
        Some((
            &self.reads[at].1,
            self.access.get(at).map_or("-", String::as_str),
        ))
    }
}

/// The table of medians at the smallest size against the largest.
#[derive(Debug)]
pub struct Comparison<'a> {
    /// The smallest size's figures.
    pub small: &'a SizeFigures,
    /// The largest size's figures.
    pub large: &'a SizeFigures,
}

impl fmt::Display for Comparison<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (small, large) = (size_label(self.small.size), size_label(self.large.size));
        let headers = [
            "query".to_owned(),
            format!("rows {small}"),
            format!("median {small}"),
            format!("p95 {small}"),
            format!("rows {large}"),
            format!("median {large}"),
            format!("p95 {large}"),
            "ratio".to_owned(),
            "target".to_owned(),
            "met".to_owned(),
            format!("index at {large}"),
        ];
        let mut rows = vec![headers.to_vec()];
        for query in ReadQuery::ALL {
            let (Some((a, _)), Some((b, access))) =
                (self.small.read(query), self.large.read(query))
            else {
                continue;
            };
            let ratio = b.latency.p50.as_secs_f64() / a.latency.p50.as_secs_f64();
            rows.push(vec![
                query.label().to_owned(),
                a.rows.to_string(),
                millis(a.latency.p50),
                millis(a.latency.p95),
                b.rows.to_string(),
                millis(b.latency.p50),
                millis(b.latency.p95),
                format!("{ratio:.2}x"),
                format!("<= {TARGET_RATIO}x"),
                if ratio <= TARGET_RATIO { "yes" } else { "NO" }.to_owned(),
                access.to_owned(),
            ]);
        }
        let widths: Vec<usize> = (0..headers.len())
            .map(|column| {
                rows.iter()
                    .map(|row| row[column].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(column, (cell, &width))| {
                    // Text columns read best flush left, figures flush right.
                    if column == 0 || column + 1 == row.len() {
                        format!("{cell:<width$}")
                    } else {
                        format!("{cell:>width$}")
                    }
                })
                .collect();
            writeln!(f, "{}", cells.join("  ").trim_end())?;
        }
        Ok(())
    }
}

/// `1k`, `1M` or the plain number.
#[must_use]
pub fn size_label(size: u64) -> String {
    match size {
        s if s >= 1_000_000 && s % 1_000_000 == 0 => format!("{}M", s / 1_000_000),
        s if s >= 1_000 && s % 1_000 == 0 => format!("{}k", s / 1_000),
        s => s.to_string(),
    }
}

/// Milliseconds with two decimals: loopback reads take well under a millisecond to a few.
#[must_use]
pub fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use crate::stats::LatencySummary;

    use super::*;

    fn figures(size: u64, median_ms: u64) -> SizeFigures {
        let latency = LatencySummary::new(vec![Duration::from_millis(median_ms)]).unwrap();
        let timed = Timed {
            rows: 100,
            ids: Vec::new(),
            latency,
            fastest: Duration::ZERO,
        };
        SizeFigures {
            size,
            reads: ReadQuery::ALL.map(|q| (q, timed.clone())).to_vec(),
            access: ReadQuery::ALL.map(|_| "points_pkey".to_owned()).to_vec(),
        }
    }

    #[test]
    fn sizes_read_as_thousands_and_millions() {
        assert_eq!(size_label(1_000), "1k");
        assert_eq!(size_label(1_000_000), "1M");
        assert_eq!(size_label(1_500), "1500");
    }

    #[test]
    fn a_ratio_above_the_target_is_flagged() {
        let (small, fast, slow) = (
            figures(1_000, 2),
            figures(1_000_000, 3),
            figures(1_000_000, 4),
        );
        let met = Comparison {
            small: &small,
            large: &fast,
        }
        .to_string();
        assert!(
            met.lines().nth(1).unwrap().contains("1.50x  <= 1.5x  yes"),
            "{met}"
        );
        let missed = Comparison {
            small: &small,
            large: &slow,
        }
        .to_string();
        assert!(
            missed
                .lines()
                .nth(1)
                .unwrap()
                .contains("2.00x  <= 1.5x   NO"),
            "{missed}"
        );
    }
}
