//! Request ids: kept from the load balancer when it sent one, made here otherwise, and put on
//! the request's span so every log line of a request can be found together.

use axum::extract::MatchedPath;
use axum::http::Request;
use tower_http::request_id::{MakeRequestId, RequestId};
use uuid::Uuid;

use super::REQUEST_ID;

#[derive(Debug, Clone, Copy)]
pub(crate) struct MakeRequestUuidV7;

impl MakeRequestId for MakeRequestUuidV7 {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let id = Uuid::now_v7().to_string();
        Some(RequestId::new(
            id.parse().expect("a UUID is a valid header value"),
        ))
    }
}

pub(crate) fn make_span<B>(request: &Request<B>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "http.request",
        http.method = %request.method(),
        http.route = route,
        request.id = request_id,
    )
}
