//! `/points`: pages of points, filtered by a box or a radius, as a JSON array or GeoJSON; and
//! one point by id, in the shape the Flask service that query-api replaces returned.
//!
//! # `GET /points`
//!
//! | parameter | meaning |
//! | --- | --- |
//! | `limit` | points per page: a positive integer, by default [`crate::DEFAULT_LIMIT`]; above the maximum ([`crate::MAX_LIMIT`] unless configured otherwise) it is lowered to it |
//! | `bbox` | `minLon,minLat,maxLon,maxLat` in CRS84, longitude first; points on an edge are inside; `minLon > maxLon` crosses the antimeridian |
//! | `near`, `radius` | `lon,lat` and metres, only together: points within that geodesic distance, nearest first, each with its `distance` |
//! | `f` | `json` (the array) or `geojson`; without it, `Accept: application/geo+json` asks for GeoJSON |
//! | `cursor` | opaque, from a `next` link |
//!
//! Any other parameter, and any parameter given twice, is a 400 problem naming it, so that
//! a misspelt filter never silently returns unfiltered points.
//!
//! Distances are measured on the WGS 84 spheroid (`ST_Distance` and `ST_DWithin` on
//! geography with `use_spheroid`), the datum the coordinates are in, so a radius means the
//! same on the equator and near a pole, and a search circle crosses the antimeridian and the
//! poles. On the sphere a page would cost about 30 % less and distances would be up to 0.5 %
//! off. `radius` is capped at [`crate::MAX_RADIUS_METRES`] because every page sorts all
//! points within the radius: on GeoNames' cities500 the densest 1,000 km disc (central
//! Europe) holds about 63,000 of them, which costs about 0.4 s per page (0.3 s with parallel
//! workers). `bbox` and `near` may be combined; a point must then satisfy both.
//!
//! # Paging
//!
//! Pages are keyset pages, never offsets. Without `near` they run newest first by id
//! (UUIDv7, so creation time); with `near`, by distance and then id. While more points
//! follow, the answer has a `Link: <…>; rel="next"` header (and a `next` link in GeoJSON)
//! whose URL repeats `bbox`, `near`, `radius`, `limit` and `f` and adds a `cursor`. A
//! cursor that does not decode, or that was issued for other filters, is a 400 problem;
//! `limit` and `f` may change from page to page.
//!
//! Newest first, following the links visits every point that existed when the first page
//! was read exactly once, whatever is written meanwhile: new points get greater ids and
//! sort before the first page.
//!
//! # Limitations
//!
//! - Newest first, "new" means newer id, not later projection: a point whose event reaches
//!   the projector after a newer one (two command-api instances, a redelivery) can land
//!   behind a walk already past its id, and shows up in the next walk only.
//! - Nearest first, a point written during the walk shows up if it sorts after the current
//!   page. The read model does not yet move points; once it does, a point moved across the
//!   current position during a walk may be seen twice or not at all.
//! - `bbox` takes longitudes literally: a point stored at -180 is not in a box whose east
//!   edge is 180, nor the other way round. `near` has no such seam.

mod cursor;
mod params;
mod render;
mod select;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use self::cursor::{Cursor, Position};
use self::params::{Order, list_params, reject_unknown};
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
struct ListedPoint {
    id: Uuid,
    name: String,
    longitude: f64,
    latitude: f64,
    /// Metres from the `near` centre; only in radius searches.
    #[serde(skip_serializing_if = "Option::is_none")]
    distance: Option<f64>,
}

/// One point as its own resource: its place plus its history counters.
#[derive(Debug, Serialize, sqlx::FromRow)]
struct PointDetail {
    id: Uuid,
    name: String,
    longitude: f64,
    latitude: f64,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const GET_POINT: &str = "SELECT id, name, ST_X(geom) AS longitude, ST_Y(geom) AS latitude, \
     version, created_at, updated_at FROM points WHERE id = $1";

#[tracing::instrument(
    skip_all,
    fields(query.limit, query.order, query.bbox, query.cursor, db.rows)
)]
async fn list_points(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let params = list_params(&pairs, state.limits).map_err(ApiError::Validation)?;
    let format = render::negotiate(params.format, &headers);
    let order = params.filters.order();
    let span = tracing::Span::current();
    span.record("query.limit", params.limit);
    span.record(
        "query.order",
        match order {
            Order::Newest => "newest",
            Order::Nearest => "nearest",
        },
    );
    span.record("query.bbox", params.filters.bbox.is_some());
    span.record("query.cursor", params.after.is_some());

    let mut points =
        select::select_page(&state.pool, &params.filters, params.after, params.limit).await?;
    span.record("db.rows", points.len());
    let limit = usize::try_from(params.limit).unwrap_or(usize::MAX);
    let next = if points.len() > limit {
        points.truncate(limit);
        points.last().map(|last| {
            let position = match order {
                Order::Newest => Position::Newest { last_id: last.id },
                Order::Nearest => Position::Nearest {
                    last_distance: last
                        .distance
                        .expect("a radius search selects a distance for every point"),
                    last_id: last.id,
                },
            };
            render::next_link(&params, &Cursor::new(&params.filters, position))
        })
    } else {
        None
    };
    Ok(render::page(format, points, next.as_deref()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_must_lie_between_one_and_the_maximum() {
        assert_eq!(
            Limits::new(100, 1000),
            Some(Limits {
                default: 100,
                max: 1000
            })
        );
        assert_eq!(Limits::new(5, 5), Some(Limits { default: 5, max: 5 }));
        assert_eq!(Limits::new(0, 1000), None);
        assert_eq!(Limits::new(1001, 1000), None);
    }

    #[test]
    fn a_list_item_has_exactly_the_four_members_clients_expect() {
        let point = ListedPoint {
            id: Uuid::nil(),
            name: "Kraków".to_owned(),
            longitude: 19.93658,
            latitude: 50.06143,
            distance: None,
        };
        let json = serde_json::to_string(&point).unwrap();
        assert_eq!(
            json,
            r#"{"id":"00000000-0000-0000-0000-000000000000","name":"Kraków","longitude":19.93658,"latitude":50.06143}"#
        );
    }

    #[test]
    fn a_list_item_of_a_radius_search_adds_its_distance() {
        let point = ListedPoint {
            id: Uuid::nil(),
            name: "Paris".to_owned(),
            longitude: 2.3488,
            latitude: 48.85341,
            distance: Some(433.705_664_27),
        };
        let json = serde_json::to_value(&point).unwrap();
        assert_eq!(json["distance"], 433.705_664_27);
        assert_eq!(json.as_object().unwrap().len(), 5);
    }
}
