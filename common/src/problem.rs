//! RFC 9457 problem documents: the one shape every 4xx and 5xx of geoledger's HTTP services
//! takes, so that clients parse errors the same way whichever service answered.

use std::error::Error as StdError;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::point::FieldError;

/// Media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem document about to be sent.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI naming the kind of problem; stable, so clients can match on it.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem, the same for every occurrence.
    pub title: &'static str,
    /// The HTTP status, repeated for clients that only keep the body.
    pub status: u16,
    /// What went wrong this time, for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// One entry per bad field, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Extra members that belong to this kind of problem (a current version, say).
    #[serde(flatten, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extensions: serde_json::Map<String, serde_json::Value>,
    #[serde(skip)]
    retry_after: Option<u32>,
}

impl Problem {
    /// A problem of kind `slug` (which becomes `urn:geoledger:problem:<slug>`).
    #[must_use]
    pub fn new(status: StatusCode, slug: &str, title: &'static str) -> Self {
        Self {
            kind: format!("urn:geoledger:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail: None,
            errors: Vec::new(),
            extensions: serde_json::Map::new(),
            retry_after: None,
        }
    }

    /// Adds the occurrence-specific explanation.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds the per-field errors.
    #[must_use]
    pub fn errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// Adds one extension member.
    #[must_use]
    pub fn extension(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    /// Asks the client to wait this many seconds before retrying.
    #[must_use]
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 400 for a request whose fields are wrong.
    #[must_use]
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{} {}", e.field, e.reason))
            .collect::<Vec<_>>()
            .join("; ");
        Self::new(
            StatusCode::BAD_REQUEST,
            "validation",
            "The request has invalid fields",
        )
        .detail(detail)
        .errors(errors)
    }

    /// 404 for something that does not exist.
    #[must_use]
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "No such resource").detail(detail)
    }

    /// 503 for a dependency that is down; the client may retry.
    #[must_use]
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "A service this request needs is unavailable",
        )
        .detail(detail)
        .retry_after(1)
    }

    /// 500 for an error nobody planned for. The cause is logged here, once, inside the
    /// request's span, and never sent to the client.
    #[must_use]
    pub fn internal(error: &(dyn StdError + 'static)) -> Self {
        tracing::error!(
            error.message = %error,
            error.cause_chain = ?cause_chain(error),
            "request failed"
        );
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        )
        .detail("the error was logged; retrying may help")
    }

    /// The HTTP status.
    #[must_use]
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// Every message in an error's source chain, outermost first.
#[must_use]
pub fn cause_chain(error: &(dyn StdError + 'static)) -> Vec<String> {
    std::iter::successors(Some(error), |e| (*e).source())
        .map(ToString::to_string)
        .collect()
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let retry_after = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Answers any route nobody defined, in the same format as every other error.
#[expect(
    clippy::unused_async,
    reason = "axum takes fallbacks as async handlers"
)]
pub async fn route_not_found() -> Problem {
    Problem::not_found("no route matches this path")
}

/// Answers a known path asked with a method it does not support.
#[must_use]
pub fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
    )
}
