//! The plans PostgreSQL picks for the timed reads, and a check that the statement explained
//! answers what query-api answered over HTTP.

use sqlx::{PgPool, Row as _};
use uuid::Uuid;

use super::queries::{PAGE, ReadQuery};

/// The ids the statement returns, without the extra row that only signals a next page: what
/// the HTTP answer lists, unless the table changed or the session differs from query-api's.
pub async fn statement_ids(
    pool: &PgPool,
    query: ReadQuery,
    cursor: &str,
) -> anyhow::Result<Vec<Uuid>> {
    let scan = query.box_scan(pool, cursor).await?;
    let mut sql = query.statement("", cursor, scan)?;
    let rows = sql.build().persistent(false).fetch_all(pool).await?;
    // The statement leads with the checkpoint; an empty page is one row without an id.
    let ids: Vec<Option<Uuid>> = rows
        .iter()
        .map(|row| row.try_get("id"))
        .collect::<Result<_, _>>()?;
    Ok(ids.into_iter().flatten().take(PAGE as usize).collect())
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of the statement, one line per element. It is sent
/// unprepared with its binds, as query-api sends it, so the plan is made for these values.
pub async fn explain(pool: &PgPool, query: ReadQuery, cursor: &str) -> anyhow::Result<Vec<String>> {
    let scan = query.box_scan(pool, cursor).await?;
    Ok(query
        .statement("EXPLAIN (ANALYZE, BUFFERS) ", cursor, scan)?
        .build_query_scalar()
        .persistent(false)
        .fetch_all(pool)
        .await?)
}

/// The indexes a plan reads, in order of appearance, or `seq scan` when it reads the table
/// whole: the column of the figures table that says which index serves each read.
#[must_use]
pub fn access_paths(plan: &[String]) -> String {
    let mut found: Vec<String> = Vec::new();
    for line in plan {
        // Every page reads the one-row checkpoint beside it; only the points' paths tell.
        if line.contains("projection_checkpoint") {
            continue;
        }
        let path = if let Some((_, rest)) = line.split_once(" using ") {
            rest.split_whitespace().next()
        } else if line.contains("Bitmap Index Scan on ") || line.contains("Seq Scan on ") {
            line.split_once(" on ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
        } else {
            None
        };
        let Some(name) = path else { continue };
        let name = if line.contains("Seq Scan") {
            format!("seq scan {name}")
        } else {
            name.to_owned()
        };
        if !found.contains(&name) {
            found.push(name);
        }
    }
    if found.is_empty() {
        "-".to_owned()
    } else {
        found.join(" + ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_names_are_read_from_the_scan_lines() {
        let plan: Vec<String> = [
            "Limit  (cost=0.42..5.21 rows=101 width=52)",
            "  ->  Index Scan Backward using points_pkey on points  (cost=0.42..47343.43 rows=1000000)",
            "        Filter: st_intersects(geom, '0103…'::geometry)",
            "  ->  Bitmap Index Scan on points_geom_gist  (cost=0.00..4.5 rows=10)",
            "  ->  Bitmap Index Scan on points_geom_gist  (cost=0.00..4.5 rows=10)",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(access_paths(&plan), "points_pkey + points_geom_gist");
        let checkpoint = vec![
            "  ->  Seq Scan on projection_checkpoint  (cost=0.00..1.01 rows=1)".to_owned(),
            "  ->  Index Scan using points_pkey on points  (cost=0.42..8.44 rows=1)".to_owned(),
        ];
        assert_eq!(access_paths(&checkpoint), "points_pkey");
        let seq = vec!["  ->  Seq Scan on points  (cost=0.00..1.1 rows=1)".to_owned()];
        assert_eq!(access_paths(&seq), "seq scan points");
        assert_eq!(access_paths(&[]), "-");
    }
}
