//! The client-visible outcomes of a failed command, each rendered as a problem document.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use geoledger_common::point::FieldError;
use geoledger_common::problem::Problem;

/// Why a command was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The body or a header broke a rule; nothing was published.
    #[error("invalid request")]
    Validation(Vec<FieldError>),
    /// The body is not a JSON object at all.
    #[error("malformed body: {0}")]
    MalformedBody(String),
    /// The body is not JSON by its declared type.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// The body is larger than the configured limit.
    #[error("body too large")]
    PayloadTooLarge,
    /// The `Idempotency-Key` was used before with a different body.
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    /// JetStream did not store the event; the client may retry.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// Anything nobody planned for.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match self {
            Self::Validation(errors) => Problem::validation(errors),
            Self::MalformedBody(detail) => Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-body",
                "Malformed request body",
            )
            .detail(detail),
            Self::UnsupportedMediaType => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            )
            .detail("send the body as Content-Type: application/json"),
            Self::PayloadTooLarge => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Body too large",
            )
            .detail("the request body exceeds the configured limit"),
            Self::IdempotencyKeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused with a different request",
            )
            .detail("this key was first used with another body; use a new key for a new write"),
            Self::Unavailable(detail) => Problem::unavailable(format!(
                "the event was not stored ({detail}); retry with the same Idempotency-Key"
            )),
            Self::Internal(error) => Problem::internal(error.as_ref()),
        };
        problem.into_response()
    }
}
