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
    /// The client stopped sending the body part-way.
    #[error("request body stalled")]
    BodyTimeout,
    /// The `Idempotency-Key` was used before with a different body.
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    /// No point has this id (or the id is not a UUID).
    #[error("no such point")]
    NotFound(String),
    /// The point was deleted; its id stays taken.
    #[error("point deleted")]
    Gone,
    /// `If-Match` named a version that is no longer the current one.
    #[error("precondition failed")]
    PreconditionFailed { current: u64 },
    /// The same `Idempotency-Key` is being used by a request still in flight.
    #[error("request with this idempotency key in progress")]
    InProgress,
    /// Other writers kept changing the point; the client may retry.
    #[error("too much contention on one point")]
    Contended,
    /// JetStream did not store the event; the client may retry.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// The event stream could not be read to decide on a command or list a history.
    #[error("event stream unreadable: {0}")]
    StreamUnreadable(String),
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
            Self::BodyTimeout => Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "The request body stopped arriving",
            )
            .detail("the client paused too long while sending the body; send it again"),
            Self::IdempotencyKeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused with a different request",
            )
            .detail("this key was first used with another body; use a new key for a new write"),
            Self::NotFound(detail) => Problem::not_found(detail),
            Self::Gone => Problem::new(StatusCode::GONE, "gone", "The point was deleted")
                .detail("a deleted point cannot be changed or deleted again"),
            Self::PreconditionFailed { current } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                "The point changed since the version in If-Match",
            )
            .detail(format!(
                "the current version is \"{current}\"; read it and decide again"
            ))
            .extension("current_etag", format!("\"{current}\"")),
            Self::InProgress => Problem::new(
                StatusCode::CONFLICT,
                "idempotency-key-in-progress",
                "A request with this Idempotency-Key is still being processed",
            )
            .detail("retry shortly to get its result")
            .retry_after(1),
            Self::Contended => Problem::new(
                StatusCode::CONFLICT,
                "contended",
                "Other writes to this point kept getting in first",
            )
            .detail("retry the request"),
            // A publish whose ack timed out may still have been stored, so the client is
            // told only that it is not known to be: retrying with the same key is safe. The
            // detail is the NATS client's message, which was logged where it arose and is not
            // the client's to read.
            Self::Unavailable(_) => Problem::unavailable(
                "the write is not known to be stored; \
                 retry with the same Idempotency-Key, which makes the retry safe",
            ),
            Self::StreamUnreadable(_) => {
                Problem::unavailable("the event stream could not be read; retry shortly")
            }
            Self::Internal(error) => Problem::internal(error.as_ref()),
        };
        problem.into_response()
    }
}
