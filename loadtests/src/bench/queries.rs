//! The reads the benchmark times: each as the request a client sends, and as the SQL
//! query-api runs for it, mirrored here so that its plan can be shown.

use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

/// Points per timed page: query-api's default.
pub const PAGE: u32 = 100;

/// Paris and its inner suburbs, about 18 × 11 km.
const CITY_BOX: [f64; 4] = [2.22, 48.81, 2.47, 48.91];
/// Western and central Europe, which holds about a quarter of the places.
const CONTINENT_BOX: [f64; 4] = [-10.0, 35.0, 30.0, 60.0];
/// Paris, Hôtel de Ville.
const CENTRE: (f64, f64) = (2.3522, 48.8566);
/// Metres around [`CENTRE`].
const RADIUS_METRES: f64 = 10_000.0;

/// One of the timed reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadQuery {
    /// The newest points: `GET /points?limit=100`.
    FirstPage,
    /// A page among the oldest points, through a cursor near the end of the walk.
    DeepPage,
    /// A city-sized box.
    CityBox,
    /// A continent-sized box, where most points match and the primary key order wins.
    ContinentBox,
    /// The nearest points within 10 km of a city centre.
    Radius,
}

impl ReadQuery {
    /// Every read, in the order they are timed and reported.
    pub const ALL: [Self; 5] = [
        Self::FirstPage,
        Self::DeepPage,
        Self::CityBox,
        Self::ContinentBox,
        Self::Radius,
    ];

    /// A short name for tables.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::FirstPage => "first page",
            Self::DeepPage => "deep page",
            Self::CityBox => "bbox Paris",
            Self::ContinentBox => "bbox Europe",
            Self::Radius => "10 km radius",
        }
    }

    /// The path and query of the request. `cursor` is where [`ReadQuery::DeepPage`] starts.
    #[must_use]
    pub fn path(self, cursor: &str) -> String {
        let query = match self {
            Self::FirstPage => String::new(),
            Self::DeepPage => format!("&cursor={cursor}"),
            Self::CityBox => format!("&bbox={}", join(&CITY_BOX)),
            Self::ContinentBox => format!("&bbox={}", join(&CONTINENT_BOX)),
            Self::Radius => format!("&near={},{}&radius={RADIUS_METRES}", CENTRE.0, CENTRE.1),
        };
        format!("/points?limit={PAGE}{query}")
    }

    /// The statement query-api runs for [`ReadQuery::path`], with the same binds: the page
    /// plus one row that only tells whether a next page exists. `after` is the id the deep
    /// page's cursor holds.
    ///
    /// This mirrors `page_query` in query-api's `src/http/points/select.rs`, which is private
    /// to that crate. The benchmark compares the ids this statement returns with those of the
    /// HTTP answer, so a mirror that falls out of step is reported rather than trusted.
    #[must_use]
    pub fn sql(self, after: Uuid) -> QueryBuilder<'static, Postgres> {
        self.statement("", after)
    }

    /// [`ReadQuery::sql`] under `EXPLAIN (ANALYZE, BUFFERS)`.
    #[must_use]
    pub fn explained(self, after: Uuid) -> QueryBuilder<'static, Postgres> {
        self.statement("EXPLAIN (ANALYZE, BUFFERS) ", after)
    }

    fn statement(self, head: &str, after: Uuid) -> QueryBuilder<'static, Postgres> {
        let mut sql = QueryBuilder::new(head);
        sql.push("SELECT id, name, ST_X(geom) AS longitude, ST_Y(geom) AS latitude, updated_at, ");
        if self == Self::Radius {
            push_distance(&mut sql);
        } else {
            sql.push("NULL::float8");
        }
        sql.push(" AS distance FROM points WHERE TRUE");
        match self {
            Self::FirstPage => {}
            Self::DeepPage => {
                sql.push(" AND id < ").push_bind(after);
            }
            Self::CityBox => push_box(&mut sql, CITY_BOX),
            Self::ContinentBox => push_box(&mut sql, CONTINENT_BOX),
            Self::Radius => {
                sql.push(" AND ST_DWithin(geom::geography, ");
                push_centre(&mut sql);
                sql.push(", ").push_bind(RADIUS_METRES).push(", true)");
            }
        }
        if self == Self::Radius {
            sql.push(" ORDER BY distance, id");
        } else {
            sql.push(" ORDER BY id DESC");
        }
        sql.push(" LIMIT ").push_bind(i64::from(PAGE) + 1);
        sql
    }
}

fn join(values: &[f64]) -> String {
    values
        .iter()
        .map(f64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn push_distance(sql: &mut QueryBuilder<'static, Postgres>) {
    sql.push("ST_Distance(geom::geography, ");
    push_centre(sql);
    sql.push(", true)");
}

fn push_centre(sql: &mut QueryBuilder<'static, Postgres>) {
    sql.push("ST_SetSRID(ST_MakePoint(")
        .push_bind(CENTRE.0)
        .push(", ")
        .push_bind(CENTRE.1)
        .push("), 4326)::geography");
}

fn push_box(sql: &mut QueryBuilder<'static, Postgres>, [west, south, east, north]: [f64; 4]) {
    sql.push(" AND ST_Intersects(geom, ST_SetSRID(ST_Envelope(ST_MakeLine(ST_MakePoint(")
        .push_bind(west)
        .push(", ")
        .push_bind(south)
        .push("), ST_MakePoint(")
        .push_bind(east)
        .push(", ")
        .push_bind(north)
        .push("))), 4326))");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paths_carry_the_filters_query_api_takes() {
        assert_eq!(ReadQuery::FirstPage.path("c"), "/points?limit=100");
        assert_eq!(
            ReadQuery::DeepPage.path("ab"),
            "/points?limit=100&cursor=ab"
        );
        assert_eq!(
            ReadQuery::CityBox.path(""),
            "/points?limit=100&bbox=2.22,48.81,2.47,48.91"
        );
        assert_eq!(
            ReadQuery::Radius.path(""),
            "/points?limit=100&near=2.3522,48.8566&radius=10000"
        );
    }

    #[test]
    fn only_the_radius_search_orders_by_distance() {
        for query in ReadQuery::ALL {
            let text = query.sql(Uuid::nil()).into_sql();
            let by_distance = text.contains("ORDER BY distance, id LIMIT");
            assert_eq!(by_distance, query == ReadQuery::Radius, "{text}");
        }
    }
}
