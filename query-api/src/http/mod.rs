//! HTTP routing, the layers every request passes through, and the extractors whose rejections
//! are problem documents rather than axum's plain text.

mod caching;
mod consistency;
mod media;
mod ogc;
mod openapi;
mod points;
mod status;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::extract::rejection::PathRejection;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LINK};
use axum::http::request::Parts;
use axum::http::{HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{Any, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use geoledger_common::auth::{self, Authenticator};
use geoledger_common::metrics::{self, HttpMetrics};
use geoledger_common::point::FieldError;
use geoledger_common::problem::{self, Problem};
use geoledger_common::projection::CONSISTENCY_TOKEN;
use geoledger_common::telemetry::http::{REQUEST_ID, ensure_trace_context, request_span};

use crate::error::ApiError;

pub use self::points::{BoxScan, INDEXED_BOX_SHARE, Limits, page_box_scan, page_statement};

/// What every handler can reach.
#[derive(Debug, Clone)]
struct AppState {
    pool: PgPool,
    /// One connection of its own for `/status`, so that the health check does not queue
    /// behind the requests waiting for `pool`: under overload an instance is slow, not
    /// broken, and a load balancer that took it out of rotation for that would turn the slow
    /// answers into refusals (seen with a single instance behind HAProxy: 15 s of 503s).
    probe_pool: PgPool,
    /// The checkpoint as the projector announces it, which keys the page cache.
    announced: consistency::Checkpoint,
    /// Pages read at the announced checkpoint, for the next reader of the same page.
    pages: points::PageCache,
    /// The limits of `GET /points`; the OGC items have their own.
    limits: Limits,
    /// The collection's extent, read at most every few seconds.
    extent: ogc::ExtentCache,
    /// `/api`, serialised once: it depends only on the build and the limits.
    api_description: Arc<String>,
}

/// The whole service: routes, fallbacks and middleware, over `pool`. Tests drive it directly;
/// [`crate::App`] serves it.
pub fn router(
    pool: PgPool,
    limits: Limits,
    request_timeout: Duration,
    page_cache_ttl: Duration,
    auth: Authenticator,
) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD])
        .allow_headers([IF_NONE_MATCH, HeaderName::from_static(CONSISTENCY_TOKEN)])
        .expose_headers([LINK, ETAG, REQUEST_ID]);
    let api_description = serde_json::to_string(&openapi::document(limits))
        .expect("an OpenAPI document of strings, numbers and maps serialises");
    let announced = consistency::Checkpoint::follow(pool.clone());
    let mut registry = metrics::registry();
    let http_metrics = HttpMetrics::register(&mut registry);
    metrics::PoolCollector::register(&mut registry, pool.clone());
    let probe_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(status::PROBE_TIMEOUT)
        .connect_lazy_with((*pool.connect_options()).clone());
    let state = AppState {
        pool,
        probe_pool,
        announced: announced.clone(),
        pages: points::PageCache::new(&mut registry, page_cache_ttl),
        limits,
        extent: ogc::ExtentCache::default(),
        api_description: Arc::new(api_description),
    };
    Router::new()
        .merge(ogc::router())
        .merge(openapi::router())
        .merge(points::router())
        .merge(status::router())
        .merge(metrics::route(registry))
        .fallback(problem::route_not_found)
        .method_not_allowed_fallback(|| async { problem::method_not_allowed() })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            announced,
            consistency::wait_for_token,
        ))
        // Before waiting for a consistency token: an unauthenticated read waits for nothing.
        .layer(axum::middleware::from_fn_with_state(auth, auth::require_read))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, request_timeout))
        .layer(axum::middleware::map_response(bare_errors_as_problems))
        .layer(cors)
        .layer(CompressionLayer::new())
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        // Inside the request's span, so that it can record the status there.
        .layer(axum::middleware::from_fn_with_state(http_metrics, metrics::track_requests))
        // 5xx answers are logged where they arise (see `ApiError`), so the layer's own
        // failure log would report each one a second time.
        .layer(TraceLayer::new_for_http().make_span_with(request_span).on_failure(()))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::map_request(ensure_trace_context))
}

/// Gives an error answer made by a layer rather than a handler (the request timeout, chiefly)
/// the problem-document body every other error has.
async fn bare_errors_as_problems(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.headers().contains_key(CONTENT_TYPE)
    {
        return response;
    }
    // In this stack only the timeout layer answers 503 without a body.
    let problem = if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!("request timed out; a slow query or an overloaded database is likely");
        Problem::new(status, "timeout", "The request took too long")
            .detail("the request did not finish within the time limit")
            .retry_after(1)
    } else {
        Problem::new(
            status,
            "http",
            status.canonical_reason().unwrap_or("HTTP error"),
        )
    };
    // Headers the layer set (Allow, say) stay; the problem's own replace any of the same name.
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    let (problem_parts, body) = problem.into_response().into_parts();
    parts.headers.extend(problem_parts.headers);
    Response::from_parts(parts, body)
}

/// Query parameters deserialised into `T`; a query string that does not fit is a 400 problem.
pub(crate) struct Query<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| {
                ApiError::Validation(vec![FieldError {
                    field: "query".to_owned(),
                    reason: rejection.body_text(),
                }])
            })
    }
}

/// Path parameters deserialised into `T`; a segment that does not fit names no resource, so
/// it is a 404 problem.
pub(crate) struct Path<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                Err(ApiError::NotFound(e.body_text()))
            }
            Err(other) => Err(ApiError::Internal(Box::new(other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use axum::http::header::{ALLOW, RETRY_AFTER};
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use tower::ServiceExt as _;

    use super::*;

    /// A router whose database is a port nobody listens on.
    fn app_without_database() -> Router {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(port)
            .username("nobody");
        let pool = PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy_with(options);
        router(
            pool,
            Limits::new(100, 1000).unwrap(),
            Duration::from_secs(10),
            Duration::from_secs(1),
            Authenticator::open(),
        )
    }

    async fn send(
        method: Method,
        uri: &str,
    ) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let response = app_without_database().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = to_bytes(body, usize::MAX).await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, json)
    }

    fn assert_problem(headers: &axum::http::HeaderMap, body: &serde_json::Value, kind: &str) {
        assert_eq!(headers[CONTENT_TYPE], problem::PROBLEM_JSON);
        assert_eq!(
            body["type"],
            format!("urn:geoledger:problem:{kind}"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_bad_limit_is_a_validation_problem_naming_limit() {
        for uri in [
            "/points?limit=-1",
            "/points?limit=0",
            "/points?limit=abc",
            "/points?limit=1.5",
        ] {
            let (status, headers, body) = send(Method::GET, uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert_problem(&headers, &body, "validation");
            assert_eq!(body["errors"][0]["field"], "limit", "{uri}");
        }
    }

    #[tokio::test]
    async fn a_bad_filter_or_cursor_is_a_validation_problem_naming_it() {
        for (uri, field) in [
            ("/points?bbox=1,2,3", "bbox"),
            ("/points?bbox=0,0,1,91", "bbox"),
            ("/points?near=2,48", "radius"),
            ("/points?near=2,48&radius=-1", "radius"),
            ("/points?near=2,x&radius=10", "near"),
            ("/points?f=xml", "f"),
            ("/points?cursor=garbage", "cursor"),
        ] {
            let (status, headers, body) = send(Method::GET, uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert_problem(&headers, &body, "validation");
            assert_eq!(body["errors"][0]["field"], field, "{uri}");
        }
    }

    #[tokio::test]
    async fn an_unknown_query_parameter_is_a_validation_problem() {
        for uri in [
            "/points?bboxx=1,2,3,4",
            "/points/0190a7a0-0000-7000-8000-000000000000?x=1",
        ] {
            let (status, headers, body) = send(Method::GET, uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert_problem(&headers, &body, "validation");
        }
    }

    #[tokio::test]
    async fn an_id_that_is_not_a_uuid_is_not_found() {
        let (status, headers, body) = send(Method::GET, "/points/paris").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_problem(&headers, &body, "not-found");
    }

    #[tokio::test]
    async fn an_unknown_route_and_a_wrong_method_are_problems() {
        let (status, headers, body) = send(Method::GET, "/nowhere").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_problem(&headers, &body, "not-found");

        let (status, headers, body) = send(Method::POST, "/points").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_problem(&headers, &body, "method-not-allowed");
        assert!(headers[ALLOW].to_str().unwrap().contains("GET"));
    }

    #[tokio::test]
    async fn status_is_503_with_retry_after_while_the_database_is_down() {
        let (status, headers, body) = send(Method::GET, "/status").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_problem(&headers, &body, "unavailable");
        assert!(headers.contains_key(RETRY_AFTER));
    }

    #[tokio::test]
    async fn the_ogc_documents_that_need_no_data_are_served_without_a_database() {
        for (uri, media_type) in [
            ("/", "application/json"),
            ("/conformance", "application/json"),
            ("/api", "application/vnd.oai.openapi+json;version=3.0"),
        ] {
            let (status, headers, body) = send(Method::GET, uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            assert_eq!(headers[CONTENT_TYPE], media_type, "{uri}");
            assert!(body.is_object(), "{uri}");
        }
    }

    #[tokio::test]
    async fn bad_ogc_parameters_are_refused_before_the_database_is_asked() {
        for (uri, field) in [
            ("/collections/points/items?limit=0", "limit"),
            ("/collections/points/items?limit=x", "limit"),
            ("/collections/points/items?bbox=1,2,3", "bbox"),
            ("/collections/points/items?datetime=now", "datetime"),
            ("/collections/points/items?f=html", "f"),
            ("/collections/points/items?sortby=name", "sortby"),
            ("/collections/points?f=html", "f"),
            ("/?limit=1", "limit"),
        ] {
            let (status, headers, body) = send(Method::GET, uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert_problem(&headers, &body, "validation");
            assert_eq!(body["errors"][0]["field"], field, "{uri}");
        }
        let (status, headers, body) = send(Method::GET, "/collections/roads/items").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_problem(&headers, &body, "not-found");
    }

    #[tokio::test]
    async fn every_answer_carries_a_request_id() {
        let (_, headers, _) = send(Method::GET, "/nowhere").await;
        assert!(headers.contains_key(REQUEST_ID));
    }

    #[tokio::test]
    async fn a_timeout_from_a_layer_becomes_a_problem() {
        let bare = StatusCode::SERVICE_UNAVAILABLE.into_response();
        let response = bare_errors_as_problems(bare).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let (parts, body) = response.into_parts();
        let body: serde_json::Value =
            serde_json::from_slice(&to_bytes(body, usize::MAX).await.unwrap()).unwrap();
        assert_problem(&parts.headers, &body, "timeout");
        assert!(parts.headers.contains_key(RETRY_AFTER));
    }
}
