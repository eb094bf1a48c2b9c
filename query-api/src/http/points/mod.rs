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
//! Distances are great-circle distances on the sphere PostGIS uses for geography (radius
//! 6,371,008.8 m, the WGS 84 mean), computed by `<->` on `geography`: the operator PostGIS's
//! nearest-neighbour index scan orders by, so a page reads about as many index entries as it
//! lists, however many points the radius holds (about 1 ms for the first page of a 10 km
//! radius around Paris at a million points, where sorting every candidate by its spheroid
//! distance took 7 ms, and 1.5 s for a 1,000 km radius). The price is accuracy: the sphere is
//! up to 0.5 % off the WGS 84 spheroid (at 10 km, up to 50 m), and a point that close to the
//! edge of the radius may be in or out where a spheroid computation would say otherwise.
//! The circle still crosses the antimeridian and the poles. A later page re-reads the points
//! of the earlier ones to skip them, so page `k` of a walk costs about `k` first pages: at a
//! million points, the page after the 50,000 nearest points of Paris took 0.43 s. `radius`
//! is capped at [`crate::MAX_RADIUS_METRES`], which bounds how deep such a walk can go in the
//! densest regions (a 1,000 km disc over central Europe holds about a quarter of GeoNames'
//! places). `bbox` and `near` may be combined; a point must then satisfy both.
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
//! # Caching
//!
//! A page carries a strong `ETag` derived from the projection checkpoint, a point its own
//! version `"<sequence of its last event>"`, which is command-api's tag and so serves as its
//! `If-Match`; both say `Cache-Control: no-cache` and answer `If-None-Match` with 304 (see
//! `http::caching`).
//!
//! The list machinery here (parameters, cursor, SQL, GeoJSON) also serves the OGC items in
//! `http::ogc`, which add `datetime`.
//!
//! # Limitations
//!
//! - Newest first, "new" means newer id, not later projection: a point whose event reaches
//!   the projector after a newer one (two command-api instances, a redelivery) can land
//!   behind a walk already past its id, and shows up in the next walk only.
//! - Nearest first, a point written during the walk shows up if it sorts after the current
//!   page, and a point moved across the current position during a walk is seen twice or not
//!   at all.
//! - `bbox` takes longitudes literally: a point stored at -180 is not in a box whose east
//!   edge is 180, nor the other way round. `near` has no such seam.

mod cache;
mod cursor;
mod datetime;
mod params;
mod render;
mod select;
mod sphere;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

pub(crate) use self::cache::PageCache;
pub(crate) use self::cursor::Cursor;
pub(crate) use self::params::{
    Format, ListParams, POINTS_PARAMS, fnv1a, list_params, reject_unknown,
};
pub(crate) use self::render::{
    Feature, FeatureCollection, Geometry, Members, Properties, link_header, list_href,
};

use self::cache::{ReadPage, Rendition};
use self::cursor::Position;
use self::params::Order;
use self::select::NearestPath;
pub use self::select::{BoxScan, INDEXED_BOX_SHARE};
use super::caching::{
    Checkpoint, Versioned, entity_tag, list_not_modified, not_modified, version_tag,
    with_validators,
};
use super::{AppState, Path, Query};
use crate::error::{ApiError, ApiResult};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/points", get(list_points))
        .route("/points/{id}", get(get_point))
}

/// How many points a list returns: `default` when the request names no `limit`, and never
/// more than `max`.
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

    /// The `limit` of a request that names none.
    pub(crate) fn default_limit(self) -> u32 {
        self.default
    }

    /// The largest `limit` honoured; a larger one is lowered to it.
    pub(crate) fn max_limit(self) -> u32 {
        self.max
    }

    /// Limits fixed when compiling; a pair that breaks `1 <= default <= max` fails the build.
    pub(crate) const fn new_const(default: u32, max: u32) -> Self {
        assert!(1 <= default && default <= max, "1 <= default <= max");
        Self { default, max }
    }
}

/// The statement `GET /points?<pairs>` sends for its page, after `head` (say, `EXPLAIN …`),
/// with its binds, under `limits`: the checkpoint's `checkpoint_seq` and `checkpoint_at`,
/// then the points' columns (`id` first), one row per point and a single row with a null
/// `id` for an empty page. It is public for the read benchmark, which explains and
/// checks exactly the SQL query-api runs rather than a copy that could drift from it. Run it
/// unprepared, as query-api does, so that it is planned for its actual values.
///
/// # Errors
/// The parameters' problems, as `field: reason` lines, when the request would be a 400.
pub fn page_statement(
    head: &str,
    pairs: &[(String, String)],
    limits: Limits,
    scan: BoxScan,
) -> Result<sqlx::QueryBuilder<'static, sqlx::Postgres>, String> {
    let params = bench_params(pairs, limits)?;
    Ok(select::page_at_query(
        head,
        &params.filters,
        scan,
        params.after,
        params.limit,
    ))
}

/// How query-api would read the page of `GET /points?<pairs>` from the database behind
/// `executor` now: the [`BoxScan`] to give [`page_statement`].
///
/// # Errors
/// The parameters' problems as [`page_statement`] gives them, or the database's error.
pub async fn page_box_scan(
    executor: impl sqlx::PgExecutor<'_>,
    pairs: &[(String, String)],
    limits: Limits,
) -> Result<BoxScan, String> {
    let params = bench_params(pairs, limits)?;
    select::box_scan(executor, &params.filters)
        .await
        .map_err(|e| format!("estimating the box's share: {e}"))
}

fn bench_params(pairs: &[(String, String)], limits: Limits) -> Result<ListParams, String> {
    list_params(pairs, POINTS_PARAMS, limits).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.reason))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// One point as a list shows it. Coordinates are the stored doubles, which `serde_json` writes
/// as the shortest text that reads back to the same double, so a client gets back exactly the
/// number it wrote.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
#[schema(as = ListedPoint)]
pub(crate) struct ListedPoint {
    id: Uuid,
    name: String,
    longitude: f64,
    latitude: f64,
    /// Metres from the `near` centre; only in radius searches.
    #[serde(skip_serializing_if = "Option::is_none")]
    distance: Option<f64>,
    /// When the point last changed; the OGC features show it, the array does not.
    #[serde(skip)]
    updated_at: DateTime<Utc>,
}

impl ListedPoint {
    pub(crate) fn id(&self) -> Uuid {
        self.id
    }

    pub(crate) fn distance(&self) -> Option<f64> {
        self.distance
    }
}

/// One point as its own resource: its place plus its history counters.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
#[schema(as = PointDetail)]
pub(super) struct PointDetail {
    id: Uuid,
    name: String,
    longitude: f64,
    latitude: f64,
    /// 1 once created, one more for every later change.
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const GET_POINT: &str = "SELECT last_seq AS version_seq, id, name, ST_X(geom) AS longitude, \
     ST_Y(geom) AS latitude, version, created_at, updated_at FROM points WHERE id = $1";

/// The same in the shape of a list entry, for the OGC feature.
pub(crate) const GET_LISTED_POINT: &str = "SELECT last_seq AS version_seq, id, name, \
     ST_X(geom) AS longitude, ST_Y(geom) AS latitude, NULL::float8 AS distance, updated_at \
     FROM points WHERE id = $1";

/// A page of a list: at most `limit` points, and where the next page starts when more follow.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) points: Vec<ListedPoint>,
    pub(crate) next: Option<Cursor>,
}

/// Reads the page `params` asks for, with the checkpoint it is the page of, and for a radius
/// search how it was found.
pub(crate) async fn read_page(
    pool: &sqlx::PgPool,
    params: &ListParams,
) -> sqlx::Result<(Checkpoint, Page, Option<NearestPath>)> {
    let mut connection = pool.acquire().await?;
    let selected =
        select::select_page_at(&mut connection, &params.filters, params.after, params.limit)
            .await?;
    Ok((
        selected.checkpoint,
        paginate(selected.points, params),
        selected.nearest,
    ))
}

/// Cuts the extra point that `select_page_at` reads off, and makes it the next page's start.
fn paginate(mut points: Vec<ListedPoint>, params: &ListParams) -> Page {
    tracing::Span::current().record("db.rows", points.len());
    let limit = usize::try_from(params.limit).unwrap_or(usize::MAX);
    if points.len() <= limit {
        return Page { points, next: None };
    }
    points.truncate(limit);
    let next = points.last().map(|last| {
        let position = match params.filters.order() {
            Order::Newest => Position::Newest { last_id: last.id },
            Order::Nearest => Position::Nearest {
                last_distance: last
                    .distance
                    .expect("a radius search selects a distance for every point"),
                last_id: last.id,
            },
        };
        Cursor::new(&params.filters, position)
    });
    Page { points, next }
}

/// What a list request gets before rendering: the page a 200 serves, with its tag, or the 304.
pub(crate) enum Listing {
    /// The page as read (from memory or the database) and its tag.
    Page { read: ReadPage, tag: String },
    /// `If-None-Match` holds the tag of the page a 200 would serve now.
    NotModified(Response),
}

/// The page `params` asks for, tagged for `request` (the canonical description of the route,
/// the parameters and the representation; see `caching::entity_tag`), or the 304 when
/// `If-None-Match` holds that very tag.
///
/// While the page cache is serving, the tag is that of the page it holds or loads, so a 304
/// confirms exactly the page a 200 would give, and a conditional request whose page is in
/// memory costs no statement at all. While it is not (turned off, or not hearing the
/// projector's announcements), the checkpoint is read alone first, so that a current tag
/// costs one indexed read, not the page.
pub(crate) async fn read_listing(
    state: &AppState,
    headers: &HeaderMap,
    params: &ListParams,
    request: &str,
) -> ApiResult<Listing> {
    if !state.pages.serving(&state.announced)
        && let Some(response) = list_not_modified(&state.pool, headers, request).await?
    {
        return Ok(Listing::NotModified(response));
    }
    let read = state
        .pages
        .read(&state.announced, &state.pool, params)
        .await?;
    let tag = entity_tag(read.checkpoint.seq, request);
    Ok(match not_modified(headers, &tag) {
        Some(response) => Listing::NotModified(response),
        None => Listing::Page { read, tag },
    })
}

/// The cursor a request came with, for links and tags that must repeat it.
pub(crate) fn current_cursor(params: &ListParams) -> Option<Cursor> {
    params
        .after
        .map(|position| Cursor::new(&params.filters, position))
}

/// Lists points, newest first or nearest first, a keyset page at a time.
#[utoipa::path(
    get,
    path = "/points",
    tag = "points",
    operation_id = "listPoints",
    responses(
        (status = 200, description = "A page of points, with a `Link: rel=\"next\"` header \
            while more follow",
            content(
                ("application/json" = Vec<ListedPoint>),
                ("application/geo+json" = FeatureCollection),
            )),
        (status = 304, description = "`If-None-Match` holds the current tag"),
        (status = 400, description = "An unknown, repeated or invalid parameter",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database cannot answer now",
            body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(
    skip_all,
    fields(query.limit, query.order, query.bbox, query.cursor, db.rows)
)]
async fn list_points(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let params = list_params(&pairs, POINTS_PARAMS, state.limits).map_err(ApiError::Validation)?;
    let format = render::negotiate(params.format, &headers);
    let span = tracing::Span::current();
    span.record("query.limit", params.limit);
    span.record(
        "query.order",
        match params.filters.order() {
            Order::Newest => "newest",
            Order::Nearest => "nearest",
        },
    );
    span.record("query.bbox", params.filters.bbox.is_some());
    span.record("query.cursor", params.after.is_some());

    let request = list_href(
        "/points",
        &params,
        Some(format),
        current_cursor(&params).as_ref(),
    );
    let (read, tag) = match read_listing(&state, &headers, &params, &request).await? {
        Listing::Page { read, tag } => (read, tag),
        Listing::NotModified(response) => return Ok(response),
    };
    let next = read
        .page
        .next
        .map(|cursor| render::next_link(&params, &cursor));
    let coding = render::coding(&headers);
    let body = read.body(Rendition::of(format, params.format), coding, |page| {
        render::page_body(format, &page.points, next.as_deref())
    });
    Ok(with_validators(
        render::page(format, body, next.as_deref(), coding),
        &tag,
    ))
}

/// Reads one point with its version and timestamps.
#[utoipa::path(
    get,
    path = "/points/{id}",
    tag = "points",
    operation_id = "getPoint",
    params(("id" = Uuid, Path, description = "The point's id, a UUID")),
    responses(
        (status = 200, description = "The point", body = PointDetail),
        (status = 304, description = "`If-None-Match` holds the current tag"),
        (status = 400, description = "A query parameter was given; none is taken",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No point has this id (yet: the projection may lag)",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database cannot answer now",
            body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(point.id))]
async fn get_point(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    reject_unknown(&pairs, &[]).map_err(ApiError::Validation)?;
    let id = Uuid::try_parse(&raw_id)
        .map_err(|_| ApiError::NotFound("the id is not a UUID, so no point has it".to_owned()))?;
    tracing::Span::current().record("point.id", tracing::field::display(id));
    let Versioned { seq, row } = sqlx::query_as::<_, Versioned<PointDetail>>(GET_POINT)
        .bind(id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no point has the id {id}")))?;
    let tag = version_tag(seq);
    if let Some(not_modified) = not_modified(&headers, &tag) {
        return Ok(not_modified);
    }
    Ok(with_validators(Json(row).into_response(), &tag))
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
            updated_at: DateTime::UNIX_EPOCH,
        };
        let json = serde_json::to_string(&point).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"id":"00000000-0000-0000-0000-000000000000","name":"Kraków","#,
                r#""longitude":19.93658,"latitude":50.06143}"#
            )
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
            updated_at: DateTime::UNIX_EPOCH,
        };
        let json = serde_json::to_value(&point).unwrap();
        assert_eq!(json["distance"], 433.705_664_27);
        assert_eq!(json.as_object().unwrap().len(), 5);
    }
}
