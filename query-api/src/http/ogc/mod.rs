//! OGC API – Features Part 1 over the read model, for GIS clients (QGIS, GDAL/OGR, OWSLib):
//! conformance classes Core, GeoJSON and OpenAPI 3.0, with one collection, `points`.
//!
//! | path | what |
//! | --- | --- |
//! | `/` | landing page: links to the OpenAPI description, conformance and collections |
//! | `/conformance` | the conformance classes claimed |
//! | `/collections`, `/collections/points` | the collection, with its extent and CRS |
//! | `/collections/points/items` | features, a keyset page at a time (see `items`) |
//! | `/collections/points/items/{featureId}` | one feature |
//! | `/api` | the OpenAPI 3.0 description of the whole service (see `http::openapi`) |
//!
//! Every document is JSON; features are GeoJSON, labelled `application/geo+json` unless the
//! client asks for `application/json` (`f=json`, or an `Accept` that prefers it). There is no
//! HTML. Each route takes only the parameters the standard gives it; any other, a repeated
//! one, or a bad value is a 400 problem document (never 422, never ignored).
//!
//! Links are absolute, built from the host the client addressed (`Host`, and
//! `X-Forwarded-Proto: https` from a TLS-terminating proxy): `OWSLib` follows `service-desc`
//! as it stands and cannot resolve a relative one. Without a usable host they fall back to
//! host-relative links, as `/points` writes them.

mod extent;
pub(super) mod items;

use std::convert::Infallible;

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use geoledger_common::point::FieldError;

pub(crate) use self::extent::ExtentCache;
pub(crate) use self::items::{ITEM_PARAMS, ITEMS_PARAMS, OGC_LIMITS};

use super::caching::metadata_cache_control;
use super::media::{GEO_JSON, JSON, Link, OPENAPI_JSON};
use super::points::reject_unknown;
use super::{AppState, Path, Query};
use crate::error::{ApiError, ApiResult};

/// The one collection.
pub(crate) const COLLECTION_ID: &str = "points";
/// Where the collection is.
pub(crate) const COLLECTION_PATH: &str = "/collections/points";
/// Where its features are.
pub(crate) const ITEMS_PATH: &str = "/collections/points/items";

/// The coordinate reference system of every coordinate served: WGS 84, longitude first.
pub(crate) const CRS84: &str = "http://www.opengis.net/def/crs/OGC/1.3/CRS84";
/// The calendar of `updated_at` and of the temporal extent.
const GREGORIAN: &str = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian";

/// The conformance classes of OGC API – Features – Part 1 (OGC 17-069r4) this service meets.
/// HTML is not among them: clients here read JSON.
pub(crate) const CONFORMS_TO: [&str; 3] = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
];

/// The parameters of the landing page, conformance, collections and the OpenAPI description.
pub(crate) const METADATA_PARAMS: &[&str] = &["f"];

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(get_landing_page))
        .route("/conformance", get(get_conformance))
        .route("/collections", get(list_collections))
        .route("/collections/{collection_id}", get(get_collection))
        .route("/collections/{collection_id}/items", get(items::list_items))
        .route(
            "/collections/{collection_id}/items/{feature_id}",
            get(items::get_item),
        )
}

/// `scheme://host[:port]` as the client addressed the service, which absolute links start
/// with; empty when the request names no usable host, which leaves links host-relative.
pub(crate) struct BaseUrl(String);

impl BaseUrl {
    /// `path` (starting with `/`) as a link.
    pub(crate) fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }

    fn from_parts(parts: &Parts) -> Self {
        let host = parts
            .uri
            .authority()
            .map(axum::http::uri::Authority::as_str)
            .or_else(|| parts.headers.get(HOST).and_then(|v| v.to_str().ok()))
            .filter(|host| is_plain_host(host));
        let https = parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
        let scheme = if https { "https" } else { "http" };
        Self(host.map_or_else(String::new, |host| format!("{scheme}://{host}")))
    }
}

/// A host, IPv6 literal or port, and nothing that could turn a link into another URL
/// (user info, a path, a query) or break a header.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        })
}

impl<S: Send + Sync> FromRequestParts<S> for BaseUrl {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Self::from_parts(parts))
    }
}

/// The landing page.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LandingPage {
    title: &'static str,
    description: &'static str,
    links: Vec<Link>,
}

/// The conformance classes met.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Conformance {
    #[serde(rename = "conformsTo")]
    conforms_to: Vec<&'static str>,
}

/// The collections: only `points`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Collections {
    links: Vec<Link>,
    collections: Vec<Collection>,
}

/// The `points` collection.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Collection {
    id: &'static str,
    title: &'static str,
    description: &'static str,
    links: Vec<Link>,
    /// Left out while the collection is empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    extent: Option<Extent>,
    /// Always `feature`.
    #[serde(rename = "itemType")]
    item_type: &'static str,
    /// The CRS features can be had in: CRS84 only.
    crs: Vec<&'static str>,
}

/// Where and when the collection's features are.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Extent {
    #[serde(skip_serializing_if = "Option::is_none")]
    spatial: Option<SpatialExtent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temporal: Option<TemporalExtent>,
}

/// The box around every point.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SpatialExtent {
    /// One box, `[west, south, east, north]`.
    #[schema(value_type = Vec<Vec<f64>>)]
    bbox: Vec<[f64; 4]>,
    crs: &'static str,
}

/// The first and last `updated_at`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TemporalExtent {
    /// One interval, `[first, last]`, RFC 3339.
    #[schema(value_type = Vec<Vec<String>>)]
    interval: Vec<[String; 2]>,
    trs: &'static str,
}

/// The entry point: what the service is and where everything else is.
#[utoipa::path(
    get,
    path = "/",
    tag = "OGC API Features",
    operation_id = "getLandingPage",
    responses(
        (status = 200, description = "The landing page", body = LandingPage),
        (status = 400, description = "An unknown parameter, or an `f` other than `json`",
            body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_landing_page(
    base: BaseUrl,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    check_metadata_params(&pairs)?;
    Ok(document(&LandingPage {
        title: "geoledger",
        description: "Points of interest, written as events and served from a read model \
                      that follows them within milliseconds",
        links: vec![
            Link::new(base.join("/"), "self", JSON).titled("This document"),
            Link::new(base.join("/api"), "service-desc", OPENAPI_JSON)
                .titled("The API definition, OpenAPI 3.0"),
            Link::new(base.join("/conformance"), "conformance", JSON)
                .titled("The OGC API conformance classes this service meets"),
            Link::new(base.join("/collections"), "data", JSON).titled("The collections"),
        ],
    }))
}

/// The conformance classes met.
#[utoipa::path(
    get,
    path = "/conformance",
    tag = "OGC API Features",
    operation_id = "getConformance",
    responses(
        (status = 200, description = "The conformance classes", body = Conformance),
        (status = 400, description = "An unknown parameter, or an `f` other than `json`",
            body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_conformance(Query(pairs): Query<Vec<(String, String)>>) -> ApiResult<Response> {
    check_metadata_params(&pairs)?;
    Ok(document(&Conformance {
        conforms_to: CONFORMS_TO.to_vec(),
    }))
}

/// The collections.
#[utoipa::path(
    get,
    path = "/collections",
    tag = "OGC API Features",
    operation_id = "getCollections",
    responses(
        (status = 200, description = "The one collection", body = Collections),
        (status = 400, description = "An unknown parameter, or an `f` other than `json`",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database cannot answer now",
            body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_collections(
    State(state): State<AppState>,
    base: BaseUrl,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    check_metadata_params(&pairs)?;
    let collection = points_collection(&state, &base).await?;
    Ok(document(&Collections {
        links: vec![Link::new(base.join("/collections"), "self", JSON)],
        collections: vec![collection],
    }))
}

/// The `points` collection: its extent, CRS and where its features are.
#[utoipa::path(
    get,
    path = "/collections/points",
    tag = "OGC API Features",
    operation_id = "describeCollection",
    responses(
        (status = 200, description = "The collection", body = Collection),
        (status = 400, description = "An unknown parameter, or an `f` other than `json`",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database cannot answer now",
            body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_collection(
    State(state): State<AppState>,
    base: BaseUrl,
    Path(collection_id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    check_collection(&collection_id)?;
    check_metadata_params(&pairs)?;
    Ok(document(&points_collection(&state, &base).await?))
}

async fn points_collection(state: &AppState, base: &BaseUrl) -> ApiResult<Collection> {
    let data = state.extent.get(&state.pool).await?;
    let spatial = data.bbox.map(|bbox| SpatialExtent {
        bbox: vec![bbox],
        crs: CRS84,
    });
    let temporal = data.updated.map(|(first, last)| TemporalExtent {
        interval: vec![
            [first, last].map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        ],
        trs: GREGORIAN,
    });
    let extent = (spatial.is_some() || temporal.is_some()).then_some(Extent { spatial, temporal });
    Ok(Collection {
        id: COLLECTION_ID,
        title: "Points",
        description: "Every point, as last projected from the event stream; `datetime` \
                      filters on when a point last changed",
        links: vec![
            Link::new(base.join(COLLECTION_PATH), "self", JSON),
            Link::new(base.join(ITEMS_PATH), "items", GEO_JSON).titled("The points as GeoJSON"),
            Link::new(base.join(&format!("{ITEMS_PATH}?f=json")), "items", JSON)
                .titled("The points as GeoJSON labelled application/json"),
        ],
        extent,
        item_type: "feature",
        crs: vec![CRS84],
    })
}

/// A 404 unless `collection_id` names the one collection.
fn check_collection(collection_id: &str) -> ApiResult<()> {
    if collection_id == COLLECTION_ID {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "no collection is called {collection_id:?}; the only one is \"points\""
        )))
    }
}

/// Metadata documents take only `f`, and only `json`: HTML is not offered, and a client
/// that asks for it must hear so rather than receive JSON it did not ask for.
pub(super) fn check_metadata_params(pairs: &[(String, String)]) -> ApiResult<()> {
    let mut errors = reject_unknown(pairs, METADATA_PARAMS)
        .err()
        .unwrap_or_default();
    let formats: Vec<&str> = pairs
        .iter()
        .filter(|(key, _)| key == "f")
        .map(|(_, value)| value.as_str())
        .collect();
    if formats.len() > 1 {
        errors.push(FieldError {
            field: "f".to_owned(),
            reason: "must be given at most once".to_owned(),
        });
    } else if let Some(format) = formats.first().filter(|f| **f != "json") {
        errors.push(FieldError {
            field: "f".to_owned(),
            reason: format!("must be json, the only format of this document, not {format:?}"),
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// A metadata document as `application/json`, cacheable for a minute.
fn document<T: Serialize>(body: &T) -> Response {
    let mut response = (StatusCode::OK, [metadata_cache_control()], Json(body)).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn metadata_documents_take_only_f_json() {
        assert!(check_metadata_params(&pairs(&[])).is_ok());
        assert!(check_metadata_params(&pairs(&[("f", "json")])).is_ok());
        for bad in [
            &[("f", "html")][..],
            &[("f", "json"), ("f", "json")][..],
            &[("limit", "10")][..],
        ] {
            assert!(
                matches!(
                    check_metadata_params(&pairs(bad)),
                    Err(ApiError::Validation(_))
                ),
                "{bad:?}"
            );
        }
    }

    fn base_of(request: axum::http::Request<()>) -> String {
        let (parts, ()) = request.into_parts();
        BaseUrl::from_parts(&parts).join("/x")
    }

    #[test]
    fn links_start_with_the_host_the_client_addressed() {
        let plain = axum::http::Request::builder()
            .uri("/collections")
            .header(HOST, "127.0.0.1:8080")
            .body(())
            .unwrap();
        assert_eq!(base_of(plain), "http://127.0.0.1:8080/x");
        let proxied = axum::http::Request::builder()
            .uri("/collections")
            .header(HOST, "geo.example")
            .header("x-forwarded-proto", "https")
            .body(())
            .unwrap();
        assert_eq!(base_of(proxied), "https://geo.example/x");
        let absolute = axum::http::Request::builder()
            .uri("http://[::1]:9000/collections")
            .body(())
            .unwrap();
        assert_eq!(base_of(absolute), "http://[::1]:9000/x");
        for bad in ["evil.example/path", "user@evil.example", ""] {
            let request = axum::http::Request::builder()
                .uri("/collections")
                .header(HOST, bad)
                .body(())
                .unwrap();
            assert_eq!(base_of(request), "/x", "Host: {bad:?}");
        }
        let none = axum::http::Request::builder()
            .uri("/collections")
            .body(())
            .unwrap();
        assert_eq!(base_of(none), "/x");
    }

    #[test]
    fn only_the_points_collection_exists() {
        assert!(check_collection("points").is_ok());
        assert!(matches!(
            check_collection("Points"),
            Err(ApiError::NotFound(_))
        ));
    }
}
