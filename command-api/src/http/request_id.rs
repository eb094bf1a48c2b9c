//! Request ids: kept from the load balancer when it sent one, made here otherwise, and put on
//! the request's span (`geoledger_common::telemetry::http::request_span`) so every log line
//! of a request can be found together.

use axum::http::Request;
use tower_http::request_id::{MakeRequestId, RequestId};
use uuid::Uuid;

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
