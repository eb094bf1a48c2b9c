//! HTTP routing and the layers every request passes through.

mod batch;
mod extract;
mod limits;
mod points;
mod request_id;
mod status;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use geoledger_common::auth::{self, Authenticator};
use geoledger_common::metrics::{self, HttpMetrics};
use geoledger_common::problem;
use geoledger_common::telemetry::http::{ensure_trace_context, request_span};

use crate::publish::Publisher;

pub(crate) use geoledger_common::telemetry::http::REQUEST_ID;

pub(crate) use self::limits::Limits;

pub(crate) fn router(publisher: Publisher, limits: Limits, auth: Authenticator) -> Router {
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
        .layer(DefaultBodyLimit::max(limits.body))
        // Inside the body timeout, so that draining a refused body cannot stall for ever.
        .layer(axum::middleware::from_fn_with_state(
            limits,
            limits::refuse_oversized,
        ))
        .layer(axum::middleware::from_fn_with_state(
            limits.body_timeout,
            limits::body_timeout,
        ))
        // Before any body is read: an unauthenticated client cannot make the service buffer
        // one.
        .layer(axum::middleware::from_fn_with_state(auth, auth::require))
        .layer(axum::middleware::from_fn(limits::time_limit))
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
