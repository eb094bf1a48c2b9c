//! What one request may cost: how large its body may be, how long it may stall while sending
//! it, and how long the whole request may take. Each limit answers with a problem document.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use futures::StreamExt as _;
use tower_http::timeout::TimeoutBody;

use geoledger_common::problem::Problem;

use crate::error::ApiError;
use crate::http::batch::MAX_BATCH_BYTES;

/// Longest a request may take; above the ack timeout so a slow ack still gets its 503.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of an oversized body read and thrown away before answering 413. Above it the
/// answer goes out at once and the connection is closed with the body unread, which the
/// kernel turns into a reset that can overtake the answer; HAProxy refuses such bodies
/// before they reach command-api.
const MAX_DRAINED_BYTES: u64 = 16 * 1024 * 1024;

/// How much a request may send, and how slowly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest body of a single-point request, in bytes.
    pub(crate) body: usize,
    /// Longest pause between two pieces of a body before the request is answered 408.
    pub(crate) body_timeout: Duration,
}

/// Gives the body a timeout between two of its pieces; the body extractor turns its error
/// into a 408.
pub(super) async fn body_timeout(
    State(timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    next.run(request.map(|body| Body::new(TimeoutBody::new(timeout, body))))
        .await
}

/// Answers 413 to a body whose declared length is over the route's limit, without running
/// the handler.
///
/// The body is read and thrown away first (up to [`MAX_DRAINED_BYTES`]): a server that
/// answers and closes with a body still arriving makes the kernel reset the connection, and
/// the reset can reach the client, or HAProxy, before the answer does, which then sees an
/// empty reply. A client that sent `Expect: 100-continue` has not sent the body and gets the
/// answer at once.
///
/// # Limitations
/// A chunked body declares no length: it is cut off by the body extractor at the limit, and
/// the rest is not drained.
pub(super) async fn refuse_oversized(
    State(limits): State<Limits>,
    request: Request,
    next: Next,
) -> Response {
    let limit = if request.method() == Method::POST && request.uri().path() == "/points" {
        MAX_BATCH_BYTES
    } else {
        limits.body
    };
    let length = match content_length(request.headers()) {
        Some(length) if length > limit as u64 => length,
        _ => return next.run(request).await,
    };
    let mut response = ApiError::PayloadTooLarge.into_response();
    if expects_continue(request.headers()) {
        return response;
    }
    if length > MAX_DRAINED_BYTES {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    let mut body = request.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        if chunk.is_err() {
            break;
        }
    }
    response
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Answers 503 with a problem document when a request outlives [`REQUEST_TIMEOUT`], where
/// tower-http's timeout layer would send an empty body.
pub(super) async fn time_limit(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::unavailable(format!(
            "the request took longer than {} s; if it was a write, retry it with the same \
             Idempotency-Key",
            REQUEST_TIMEOUT.as_secs()
        ))
        .into_response(),
    }
}
