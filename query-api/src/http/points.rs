//! `/points`: the newest points, and one point by id, in the shapes the Flask service that
//! query-api replaces returned.
//!
//! `GET /points` takes one query parameter, `limit`: a positive integer, by default
//! [`crate::DEFAULT_LIMIT`]; a value above the maximum ([`crate::MAX_LIMIT`] unless
//! configured otherwise) is lowered to it rather than refused. Any other parameter is a 400,
//! so that a misspelt or not-yet-supported filter never silently returns unfiltered points.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use geoledger_common::point::FieldError;

use super::{AppState, Path, Query};
use crate::error::{ApiError, ApiResult};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/points", get(list_points))
        .route("/points/{id}", get(get_point))
}

/// How many points `GET /points` returns: `default` when the request names no `limit`, and
/// never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    default: u32,
    max: u32,
}

impl Limits {
    /// The pair, or `None` unless `1 <= default <= max`.
    #[must_use]
    pub fn new(default: u32, max: u32) -> Option<Self> {
        (1..=max)
            .contains(&default)
            .then_some(Self { default, max })
    }
}

/// One point as a list shows it. Coordinates are the stored doubles, which `serde_json` writes
/// as the shortest text that reads back to the same double, so a client gets back exactly the
/// number it wrote.
#[derive(Debug, Serialize, sqlx::FromRow)]
struct PointSummary {
    id: Uuid,
    name: String,
    longitude: f64,
    latitude: f64,
}

/// One point as its own resource: the summary plus its history counters.
#[derive(Debug, Serialize, sqlx::FromRow)]
struct PointDetail {
    #[serde(flatten)]
    #[sqlx(flatten)]
    point: PointSummary,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Parameters of `GET /points`, checked.
#[derive(Debug, PartialEq, Eq)]
struct ListParams {
    limit: u32,
}

/// UUIDv7 ids grow with creation time, so ordering by the primary key gives newest first
/// without a sort.
const LIST_POINTS: &str = "SELECT id, name, ST_X(geom) AS longitude, ST_Y(geom) AS latitude \
     FROM points ORDER BY id DESC LIMIT $1";

const GET_POINT: &str = "SELECT id, name, ST_X(geom) AS longitude, ST_Y(geom) AS latitude, \
     version, created_at, updated_at FROM points WHERE id = $1";

#[tracing::instrument(skip_all, fields(query.limit, db.rows))]
async fn list_points(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Vec<PointSummary>>> {
    let params = list_params(&pairs, state.limits).map_err(ApiError::Validation)?;
    tracing::Span::current().record("query.limit", params.limit);
    let points: Vec<PointSummary> = sqlx::query_as(LIST_POINTS)
        .bind(i64::from(params.limit))
        .fetch_all(&state.pool)
        .await?;
    tracing::Span::current().record("db.rows", points.len());
    Ok(Json(points))
}

#[tracing::instrument(skip_all, fields(point.id))]
async fn get_point(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Json<PointDetail>> {
    reject_unknown(&pairs, &[]).map_err(ApiError::Validation)?;
    let id = Uuid::try_parse(&raw_id)
        .map_err(|_| ApiError::NotFound("the id is not a UUID, so no point has it".to_owned()))?;
    tracing::Span::current().record("point.id", tracing::field::display(id));
    sqlx::query_as(GET_POINT)
        .bind(id)
        .fetch_optional(&state.pool)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no point has the id {id}")))
}

/// Checks the query of `GET /points`, reporting every bad parameter at once.
fn list_params(pairs: &[(String, String)], limits: Limits) -> Result<ListParams, Vec<FieldError>> {
    let mut errors = reject_unknown(pairs, &["limit"]).err().unwrap_or_default();
    let mut limit = None;
    for (_, value) in pairs.iter().filter(|(key, _)| key == "limit") {
        let outcome = if limit.is_some() {
            Err("must be given at most once")
        } else {
            parse_limit(value, limits)
        };
        match outcome {
            Ok(parsed) => limit = Some(parsed),
            Err(reason) => errors.push(FieldError {
                field: "limit".to_owned(),
                reason: reason.to_owned(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(ListParams {
            limit: limit.unwrap_or(limits.default),
        })
    } else {
        Err(errors)
    }
}

/// Reads a `limit`: ASCII digits only (no sign, space or fraction), at least 1; anything above
/// the maximum, however large, becomes the maximum.
fn parse_limit(raw: &str, limits: Limits) -> Result<u32, &'static str> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be a positive integer");
    }
    // Only digits are left, so parsing fails only on overflow: a request for more than any
    // maximum.
    let requested = raw.parse::<u64>().unwrap_or(u64::MAX);
    if requested == 0 {
        return Err("must be a positive integer");
    }
    Ok(u32::try_from(requested).map_or(limits.max, |n| n.min(limits.max)))
}

/// One field error per parameter whose name is not in `known`.
fn reject_unknown(pairs: &[(String, String)], known: &[&str]) -> Result<(), Vec<FieldError>> {
    let errors: Vec<FieldError> = pairs
        .iter()
        .filter(|(key, _)| !known.contains(&key.as_str()))
        .map(|(key, _)| FieldError {
            field: key.clone(),
            reason: "is not a known query parameter".to_owned(),
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        default: 100,
        max: 1000,
    };

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn limit_of(pairs: &[(&str, &str)]) -> u32 {
        list_params(&query(pairs), LIMITS).unwrap().limit
    }

    fn bad_fields(pairs: &[(&str, &str)]) -> Vec<String> {
        list_params(&query(pairs), LIMITS)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn no_limit_means_the_default() {
        assert_eq!(limit_of(&[]), 100);
    }

    #[test]
    fn a_limit_within_bounds_is_taken_as_given() {
        for (raw, expected) in [("1", 1), ("42", 42), ("007", 7), ("1000", 1000)] {
            assert_eq!(limit_of(&[("limit", raw)]), expected, "limit={raw}");
        }
    }

    #[test]
    fn a_limit_above_the_maximum_is_lowered_to_it() {
        for raw in ["1001", "4294967296", "99999999999999999999999999"] {
            assert_eq!(limit_of(&[("limit", raw)]), 1000, "limit={raw}");
        }
    }

    #[test]
    fn a_limit_that_is_not_a_positive_integer_is_refused_by_name() {
        let rows = [
            ("-1", "negative"),
            ("0", "zero"),
            ("000", "zero with padding"),
            ("abc", "not a number"),
            ("1.5", "a fraction"),
            ("1e3", "an exponent"),
            ("+5", "a sign"),
            (" 5", "a space"),
            ("", "empty"),
        ];
        for (raw, description) in rows {
            assert_eq!(
                bad_fields(&[("limit", raw)]),
                ["limit"],
                "{description}: limit={raw:?}"
            );
        }
    }

    #[test]
    fn a_repeated_limit_is_refused() {
        assert_eq!(bad_fields(&[("limit", "5"), ("limit", "6")]), ["limit"]);
    }

    #[test]
    fn unknown_parameters_are_refused_by_name_alongside_a_bad_limit() {
        assert_eq!(bad_fields(&[("bbox", "1,2,3,4")]), ["bbox"]);
        assert_eq!(
            bad_fields(&[("Limit", "5"), ("limit", "x")]),
            ["Limit", "limit"]
        );
    }

    #[test]
    fn the_default_must_lie_between_one_and_the_maximum() {
        assert_eq!(Limits::new(100, 1000), Some(LIMITS));
        assert_eq!(Limits::new(5, 5), Some(Limits { default: 5, max: 5 }));
        assert_eq!(Limits::new(0, 1000), None);
        assert_eq!(Limits::new(1001, 1000), None);
    }

    #[test]
    fn a_list_item_has_exactly_the_four_members_clients_expect() {
        let point = PointSummary {
            id: Uuid::nil(),
            name: "Kraków".to_owned(),
            longitude: 19.93658,
            latitude: 50.06143,
        };
        let json = serde_json::to_string(&point).unwrap();
        assert_eq!(
            json,
            r#"{"id":"00000000-0000-0000-0000-000000000000","name":"Kraków","longitude":19.93658,"latitude":50.06143}"#
        );
    }
}
