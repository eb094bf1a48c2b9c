//! The reads the benchmark times: each as the request a client sends, and as the SQL
//! query-api runs for it, so that its plan can be shown.

use anyhow::{Context as _, anyhow};
use query_api::BoxScan;
use sqlx::{PgExecutor, Postgres, QueryBuilder};

/// Points per timed page: query-api's default.
pub const PAGE: u32 = 100;

/// Paris and its inner suburbs, about 18 × 11 km.
const CITY_BOX: [f64; 4] = [2.22, 48.81, 2.47, 48.91];
/// One degree around Paris: the size of the load test's map windows, with thousands of points
/// at a million but a small share of them, which the walk of `points_geom_newest` serves.
const REGION_BOX: [f64; 4] = [1.85, 48.35, 2.85, 49.35];
/// Western and central Europe, which holds about a quarter of the places.
const CONTINENT_BOX: [f64; 4] = [-10.0, 35.0, 30.0, 60.0];
/// Paris, Hôtel de Ville: the centre of the radius read, and of the small table.
pub const CENTRE: (f64, f64) = (2.3522, 48.8566);
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
    /// A box one degree wide, with thousands of points at a million.
    RegionBox,
    /// A continent-sized box, where most points match and the primary key order wins.
    ContinentBox,
    /// The nearest points within 10 km of a city centre.
    Radius,
}

impl ReadQuery {
    /// Every read, in the order they are timed and reported.
    pub const ALL: [Self; 6] = [
        Self::FirstPage,
        Self::DeepPage,
        Self::CityBox,
        Self::RegionBox,
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
            Self::RegionBox => "bbox 1 degree",
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
            Self::RegionBox => format!("&bbox={}", join(&REGION_BOX)),
            Self::ContinentBox => format!("&bbox={}", join(&CONTINENT_BOX)),
            Self::Radius => format!("&near={},{}&radius={RADIUS_METRES}", CENTRE.0, CENTRE.1),
        };
        format!("/points?limit={PAGE}{query}")
    }

    /// The statement query-api runs for [`ReadQuery::path`], with the same binds, after
    /// `head`: the page plus one row that only tells whether a next page exists. It comes from
    /// query-api itself ([`query_api::page_statement`]), so the plan shown is the one it gets
    /// when it reads the box as `scan` says ([`ReadQuery::box_scan`]).
    ///
    /// # Errors
    /// When query-api would refuse the request (a cursor it cannot read, say).
    pub fn statement(
        self,
        head: &str,
        cursor: &str,
        scan: BoxScan,
    ) -> anyhow::Result<QueryBuilder<'static, Postgres>> {
        query_api::page_statement(head, &self.pairs(cursor)?, limits()?, scan)
            .map_err(|reasons| anyhow!("query-api refuses {}: {reasons}", self.path(cursor)))
    }

    /// How query-api reads this page from the database behind `executor` now.
    ///
    /// # Errors
    /// When query-api would refuse the request, or the database fails.
    pub async fn box_scan(
        self,
        executor: impl PgExecutor<'_>,
        cursor: &str,
    ) -> anyhow::Result<BoxScan> {
        query_api::page_box_scan(executor, &self.pairs(cursor)?, limits()?)
            .await
            .map_err(|reasons| anyhow!("{}: {reasons}", self.path(cursor)))
    }

    fn pairs(self, cursor: &str) -> anyhow::Result<Vec<(String, String)>> {
        let url = reqwest::Url::parse("http://bench.invalid")?.join(&self.path(cursor))?;
        Ok(url.query_pairs().into_owned().collect())
    }
}

fn limits() -> anyhow::Result<query_api::Limits> {
    query_api::Limits::new(query_api::DEFAULT_LIMIT, query_api::MAX_LIMIT)
        .context("query-api's default limits")
}

fn join(values: &[f64]) -> String {
    values
        .iter()
        .map(f64::to_string)
        .collect::<Vec<_>>()
        .join(",")
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
        for query in [
            ReadQuery::FirstPage,
            ReadQuery::CityBox,
            ReadQuery::ContinentBox,
            ReadQuery::Radius,
        ] {
            let text = query
                .statement("", "", BoxScan::Planned)
                .unwrap()
                .into_sql();
            let by_distance = text.contains("distance, id LIMIT");
            assert_eq!(by_distance, query == ReadQuery::Radius, "{text}");
        }
        assert!(
            ReadQuery::DeepPage
                .statement("", "not-a-cursor", BoxScan::Planned)
                .is_err()
        );
    }
}
