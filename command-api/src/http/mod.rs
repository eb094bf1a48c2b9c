//! HTTP routing and the layers every request passes through.

mod batch;
mod extract;
mod points;
mod request_id;
mod status;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, StatusCode};
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use geoledger_common::metrics::{self, HttpMetrics};
use geoledger_common::problem;
use geoledger_common::telemetry::http::{ensure_trace_context, request_span};

use crate::publish::Publisher;

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest a request may take; above the ack timeout so a slow ack still gets its 503.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn router(publisher: Publisher, body_limit: usize) -> Router {
    let mut registry = metrics::registry();
    let http_metrics = HttpMetrics::register(&mut registry);
    publisher.register_metrics(&mut registry);
    Router::new()
        .merge(points::router())
        .merge(status::router())
        .merge(metrics::route(registry))
        .fallback(problem::route_not_found)
        .method_not_allowed_fallback(|| async { problem::method_not_allowed() })
        .with_state(publisher)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        // Inside the request's span, so that it can record the status there.
        .layer(axum::middleware::from_fn_with_state(
            http_metrics,
            metrics::track_requests,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::new(
            REQUEST_ID,
            request_id::MakeRequestUuidV7,
        ))
        .layer(axum::middleware::map_request(ensure_trace_context))
}
