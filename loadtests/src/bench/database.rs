//! The benchmark's database: created afresh on the server it is given, migrated by the
//! projector's own migrations, and filled with generated points through COPY.

use std::str::FromStr as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use reqwest::Url;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection, PgPool};

use super::synthetic::{Generator, push_copy_line};

/// Rows per COPY message: about 1.3 MB of text, large enough that the round trips vanish
/// next to the parsing, small enough to keep the memory of a 1M-row load flat.
const COPY_CHUNK: usize = 10_000;

/// Checks that `name` can be used as a database name without quoting surprises.
///
/// # Errors
/// Anything but a lowercase letter or `_` followed by lowercase letters, digits or `_`.
pub fn parse_database_name(name: &str) -> Result<String, String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        Ok(name.to_owned())
    } else {
        Err("a database name here is [a-z_][a-z0-9_]*".to_owned())
    }
}

/// The URL of database `name` on the server `server_url` points to.
///
/// # Errors
/// When `server_url` is not a URL.
pub fn database_url(server_url: &str, name: &str) -> anyhow::Result<String> {
    let mut url = Url::parse(server_url).context("parsing the database URL")?;
    url.set_path(&format!("/{name}"));
    Ok(url.into())
}

/// Drops database `name` if it exists, disconnecting whoever uses it, and creates it empty.
/// `server_url` names any database on the same server that the user can connect to.
pub async fn recreate(server_url: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(server_url)
        .await
        .context("connecting to PostgreSQL to create the benchmark database")?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .with_context(|| format!("dropping the database {name}"))?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .with_context(|| format!("creating the database {name}"))?;
    admin.close().await.ok();
    Ok(())
}

/// Drops database `name`, disconnecting whoever uses it.
pub async fn drop_database(server_url: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(server_url)
        .await
        .context("connecting to PostgreSQL to drop the benchmark database")?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .with_context(|| format!("dropping the database {name}"))?;
    Ok(())
}

/// Options for a connection to the benchmark database, set as query-api sets its own so
/// that the plans shown are the plans it gets.
pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)
        .context("parsing the database URL")?
        .application_name("bench-reads")
        // The session query-api's own would be, so that the plans explained are its plans.
        .options(query_api::SESSION_OPTIONS))
}

/// A pool of one connection on the benchmark database. One, so that the statements checked
/// against query-api's answers run in the backend that then explains them: PostGIS sets up its
/// geodesic caches on a backend's first geography call (tens of milliseconds), which would
/// otherwise show up in the first plan as if the query cost it.
pub async fn pool(url: &str) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(1)
        .connect_with(connect_options(url)?)
        .await
        .context("connecting to the benchmark database")
}

/// How the rows of `points` lie on disk, which decides how many pages a spatial read visits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// As `projector rebuild` leaves the table: rewritten in the order of its planar spatial
    /// index ([`projector::CLUSTER_INDEX`]), so that neighbours share pages.
    Rebuilt,
    /// As the live projector grows it: rows in the order they arrived, which for points
    /// written around the world is no spatial order at all.
    Arrival,
}

impl Layout {
    /// How the report names it.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Rebuilt => "rebuilt (rows in spatial order, as `projector rebuild` leaves them)",
            Self::Arrival => "arrival order (as the live projector grows the table)",
        }
    }
}

/// What loading one size took.
#[derive(Debug, Clone, Copy)]
pub struct LoadTimings {
    /// Rows loaded.
    pub rows: u64,
    /// Generating the rows and copying them in, with the secondary indexes dropped.
    pub copy: Duration,
    /// Rebuilding the secondary indexes.
    pub indexes: Duration,
    /// Rewriting the table in spatial order (zero in arrival order).
    pub cluster: Duration,
    /// `VACUUM (ANALYZE)`.
    pub vacuum: Duration,
    /// The table with its indexes and TOAST, in bytes.
    pub total_bytes: i64,
}

/// Empties `points` and loads the generator's points numbered `points` into it, in that
/// order (ascending, so ids ascend as the primary key likes), then rebuilds the
/// secondary indexes, lays the rows out as `layout` says, and vacuums and analyses the
/// table.
///
/// The secondary indexes are dropped for the copy and rebuilt from their own definitions
/// afterwards, which is several times faster than growing two spatial indexes row by row and
/// leaves them as compact as a freshly built index is. The primary key stays: ids arrive in
/// ascending order, so its B-tree only ever appends.
///
/// `VACUUM` rather than a bare `ANALYZE`: it also sets the hint bits and the visibility map
/// that autovacuum would set on a table in service, so the first timed reads do not pay for
/// writing them.
pub async fn load(
    url: &str,
    generator: &Generator<'_>,
    points: &[u64],
    layout: Layout,
) -> anyhow::Result<LoadTimings> {
    let rows = points.len() as u64;
    let mut connection = PgConnection::connect_with(&connect_options(url)?)
        .await
        .context("connecting to the benchmark database")?;
    let started = Instant::now();
    sqlx::query("TRUNCATE points")
        .execute(&mut connection)
        .await
        .context("emptying points")?;
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes \
         WHERE schemaname = current_schema() AND tablename = 'points' \
         AND indexname NOT IN (SELECT conname FROM pg_constraint \
         WHERE conrelid = 'points'::regclass) ORDER BY indexname",
    )
    .fetch_all(&mut connection)
    .await
    .context("listing the indexes of points")?;
    for (name, _) in &indexes {
        sqlx::query(&format!("DROP INDEX \"{name}\""))
            .execute(&mut connection)
            .await
            .with_context(|| format!("dropping the index {name}"))?;
    }

    let mut copy = connection
        .copy_in_raw(
            "COPY points (id, name, geom, version, last_seq, created_at, updated_at) FROM STDIN",
        )
        .await
        .context("starting COPY into points")?;
    for chunk in points.chunks(COPY_CHUNK) {
        let mut text = String::with_capacity(130 * COPY_CHUNK);
        for &index in chunk {
            push_copy_line(&mut text, &generator.point(index));
        }
        copy.send(text.into_bytes())
            .await
            .context("sending rows to COPY")?;
    }
    let copied = copy.finish().await.context("finishing COPY into points")?;
    if copied != rows {
        bail!("COPY stored {copied} rows of {rows}");
    }
    let copy_time = started.elapsed();

    // As `projector rebuild` does it, with the same function: in the rebuilt layout the
    // clustering index first and the rows rewritten in its order, then the other indexes.
    let started = Instant::now();
    let cluster_on = (layout == Layout::Rebuilt).then_some(projector::CLUSTER_INDEX);
    let cluster = projector::build_indexes(&mut connection, "points", indexes, cluster_on)
        .await
        .context("rebuilding the indexes of points")?;
    let index_time = started.elapsed().saturating_sub(cluster);

    let started = Instant::now();
    sqlx::query("VACUUM (ANALYZE) points")
        .execute(&mut connection)
        .await
        .context("vacuuming and analysing points")?;
    let vacuum = started.elapsed();
    let total_bytes = sqlx::query_scalar("SELECT pg_total_relation_size('points')")
        .fetch_one(&mut connection)
        .await
        .context("measuring points")?;
    connection.close().await.ok();
    Ok(LoadTimings {
        rows,
        copy: copy_time,
        indexes: index_time,
        cluster,
        vacuum,
        total_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_lowercase_names_are_accepted() {
        for good in ["geoledger_bench", "_b", "b2"] {
            assert!(parse_database_name(good).is_ok(), "{good}");
        }
        for bad in ["", "2b", "Bench", "a-b", "a\"b", "a b"] {
            assert!(parse_database_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_database_url_keeps_the_server_and_names_the_database() {
        let url = database_url(
            "postgres://postgres@127.0.0.1:25432/postgres?sslmode=disable",
            "b",
        )
        .unwrap();
        assert_eq!(url, "postgres://postgres@127.0.0.1:25432/b?sslmode=disable");
    }
}
