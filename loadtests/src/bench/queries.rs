//! The reads the benchmark times: each as the request a client sends, and as the SQL
//! query-api runs for it, so that its plan can be shown.

use anyhow::{Context as _, anyhow};
use sqlx::{Postgres, QueryBuilder};

/// Points per timed page: query-api's default.
pub const PAGE: u32 = 100;

/// Paris and its inner suburbs, about 18 × 11 km.
const CITY_BOX: [f64; 4] = [2.22, 48.81, 2.47, 48.91];
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

    /// The statement query-api runs for [`ReadQuery::path`], with the same binds, after
    /// `head`: the page plus one row that only tells whether a next page exists. It comes from
    /// query-api itself ([`query_api::page_statement`]), so the plan shown is the one it gets.
    ///
    /// # Errors
    /// When query-api would refuse the request (a cursor it cannot read, say).
    pub fn statement(
        self,
        head: &str,
        cursor: &str,
    ) -> anyhow::Result<QueryBuilder<'static, Postgres>> {
        let url = reqwest::Url::parse("http://bench.invalid")?.join(&self.path(cursor))?;
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let limits = query_api::Limits::new(query_api::DEFAULT_LIMIT, query_api::MAX_LIMIT)
            .context("query-api's default limits")?;
        query_api::page_statement(head, &pairs, limits)
            .map_err(|reasons| anyhow!("query-api refuses {}: {reasons}", self.path(cursor)))
    }
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
            let text = query.statement("", "").unwrap().into_sql();
            let by_distance = text.contains("ORDER BY distance, id LIMIT");
            assert_eq!(by_distance, query == ReadQuery::Radius, "{text}");
        }
        assert!(ReadQuery::DeepPage.statement("", "not-a-cursor").is_err());
    }
}
