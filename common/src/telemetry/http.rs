//! The span of an HTTP request, the same in both APIs: named after the route template (never
//! the path, which holds ids), tagged with the request id, and continuing the trace of the
//! caller's `traceparent`.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderName;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator};

use super::propagation::{self, HttpHeaders, TRACEPARENT};

/// `tracing::span!` at a level chosen at run time (the macro wants a constant).
macro_rules! dynamic_span {
    ($level:expr, $($rest:tt)+) => {
        if $level == tracing::Level::DEBUG {
            tracing::debug_span!($($rest)+)
        } else {
            tracing::info_span!($($rest)+)
        }
    };
}

/// The header carrying a request's id, from HAProxy or made by the service.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The span every request of an API runs in (for `TraceLayer::make_span_with`).
///
/// Its status code is recorded by [`crate::metrics::track_requests`], which runs inside it.
pub fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let route = route(request);
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // Health checks and scrapes arrive every few seconds from each checker; at info they
    // would fill the trace store with spans nobody looks for.
    let level = if matches!(route, "/status" | "/metrics") {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let span = dynamic_span!(
        level,
        "http.request",
        otel.name = format!("{} {route}", request.method()),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %request.method(),
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        request.id = request_id,
        trace_id = tracing::field::Empty,
    );
    propagation::continue_trace(&span, propagation::extract(&HttpHeaders(request.headers())));
    span
}

/// The route template a request matched, or `unmatched`: a label of bounded cardinality.
pub fn route<B>(request: &Request<B>) -> &str {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
}

/// Gives a request without a valid `traceparent` one of its own, unsampled, when spans are not
/// exported (an exporter starts its own traces). Its log lines and those of the events it
/// causes then share a trace id all the same. Runs before the request's span is made, as
/// `axum::middleware::map_request(ensure_trace_context)`.
#[expect(
    clippy::unused_async,
    reason = "axum's map_request takes an async function"
)]
pub async fn ensure_trace_context(mut request: Request) -> Request {
    if propagation::is_exporting()
        || propagation::trace_id(&propagation::extract(&HttpHeaders(request.headers()))).is_some()
    {
        return request;
    }
    let ids = RandomIdGenerator::default();
    let traceparent = unsampled_traceparent(ids.new_trace_id(), ids.new_span_id());
    request.headers_mut().insert(
        TRACEPARENT,
        traceparent
            .parse()
            .expect("a traceparent is made of hex digits and dashes"),
    );
    request
}

fn unsampled_traceparent(trace_id: TraceId, span_id: SpanId) -> String {
    format!("00-{trace_id}-{span_id}-00")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_without_a_trace_gets_a_valid_one_and_a_traced_one_keeps_its_own() {
        let request = Request::new(axum::body::Body::empty());
        let request = ensure_trace_context(request).await;
        let made = propagation::trace_id(&propagation::extract(&HttpHeaders(request.headers())));
        assert!(made.is_some(), "{:?}", request.headers());

        let mut request = Request::new(axum::body::Body::empty());
        let theirs = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        request
            .headers_mut()
            .insert(TRACEPARENT, theirs.parse().unwrap());
        let request = ensure_trace_context(request).await;
        assert_eq!(request.headers()[TRACEPARENT], theirs);
    }
}
