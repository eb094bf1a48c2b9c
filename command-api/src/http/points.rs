//! Commands on points: `POST /point` creates one.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use uuid::Uuid;

use geoledger_common::event::{EventEnvelope, Metadata};
use geoledger_common::point::{FieldError, NewPoint, NewPointError};

use crate::error::ApiError;
use crate::http::REQUEST_ID;
use crate::publish::{Published, Publisher};

/// Longest accepted `Idempotency-Key`, in bytes.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Response header telling a client its retry was answered from the first attempt.
const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

pub(super) fn router() -> Router<Publisher> {
    Router::new().route("/point", post(create_point))
}

/// What a client learns about an accepted write.
#[derive(Debug, Serialize)]
struct Accepted {
    /// The point's id; `GET /points/{id}` reads it once projected.
    id: Uuid,
    /// The event's stream sequence: the point is readable once the projection reaches it.
    sequence: u64,
    /// The point's version after this write.
    version: u64,
}

#[tracing::instrument(skip_all, fields(point.id, nats.stream_seq))]
async fn create_point(
    State(publisher): State<Publisher>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    let point = NewPoint::from_json(&body).map_err(|e| match e {
        NewPointError::NotAnObject(detail) => ApiError::MalformedBody(detail),
        NewPointError::Fields(errors) => ApiError::Validation(errors),
    })?;

    let metadata = Metadata {
        correlation_id: header_str(&headers, REQUEST_ID.as_str())
            .unwrap_or_default()
            .to_owned(),
        traceparent: header_str(&headers, "traceparent").map(str::to_owned),
        tracestate: header_str(&headers, "tracestate").map(str::to_owned),
        idempotency_key: idempotency_key.clone(),
    };
    let envelope = EventEnvelope::point_created(Uuid::now_v7(), &point, metadata);
    let message_id = idempotency_key.as_deref().map_or_else(
        || envelope.event_id.to_string(),
        |key| format!("idempotency:{key}"),
    );

    let outcome = publisher
        .publish(
            &envelope,
            &message_id,
            envelope.metadata.traceparent.as_deref(),
        )
        .await
        .map_err(|failure| {
            tracing::warn!(error.message = %failure, "write not stored");
            ApiError::Unavailable(failure.to_string())
        })?;

    let (accepted, replayed) = match outcome {
        Published::Stored { sequence } => (
            Accepted {
                id: envelope.aggregate_id,
                sequence,
                version: envelope.aggregate_version,
            },
            false,
        ),
        Published::Duplicate { sequence } => {
            let first = publisher
                .stored_event(sequence)
                .await
                .map_err(ApiError::Internal)?;
            // The key promises the same outcome for the same request, not for any request.
            if first.event_type != envelope.event_type || first.data != envelope.data {
                return Err(ApiError::IdempotencyKeyReused);
            }
            (
                Accepted {
                    id: first.aggregate_id,
                    sequence,
                    version: first.aggregate_version,
                },
                true,
            )
        }
    };
    let span = tracing::Span::current();
    span.record("point.id", tracing::field::display(accepted.id));
    span.record("nats.stream_seq", accepted.sequence);

    let location = HeaderValue::try_from(format!("/points/{}", accepted.id))
        .expect("a path made of a UUID is a valid header value");
    let mut response = (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        axum::Json(&accepted),
    )
        .into_response();
    if replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The `Idempotency-Key` header, if sent: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let valid = !raw.is_empty()
        && raw.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && raw.as_bytes().iter().all(u8::is_ascii_graphic);
    if !valid {
        return Err(ApiError::Validation(vec![FieldError {
            field: "Idempotency-Key".to_owned(),
            reason: format!(
                "must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters (a UUID is ideal)"
            ),
        }]));
    }
    let key = raw
        .to_str()
        .expect("visible ASCII is valid header text")
        .to_owned();
    Ok(Some(key))
}

/// A request body declared as JSON, not yet parsed: parsing is the validator's job, so that a
/// wrong type in one field is reported by name rather than as a generic syntax error.
struct JsonBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::MalformedBody(body_error(&rejection))
            }
        })?;
        Ok(Self(bytes))
    }
}

fn body_error(rejection: &BytesRejection) -> String {
    format!("the body could not be read: {}", rejection.body_text())
}

/// `application/json`, or any `application/*+json`, with or without parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn json_content_types_are_recognised_with_parameters_and_suffixes() {
        assert!(is_json(&headers(&[("content-type", "application/json")])));
        assert!(is_json(&headers(&[(
            "content-type",
            "Application/JSON; charset=utf-8"
        )])));
        assert!(is_json(&headers(&[(
            "content-type",
            "application/geo+json"
        )])));
        assert!(!is_json(&headers(&[("content-type", "text/plain")])));
        assert!(!is_json(&headers(&[(
            "content-type",
            "application/x-www-form-urlencoded"
        )])));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn idempotency_keys_must_be_visible_ascii_of_bounded_length() {
        assert_eq!(idempotency_key(&HeaderMap::new()).unwrap(), None);
        assert_eq!(
            idempotency_key(&headers(&[("idempotency-key", "abc-123")]))
                .unwrap()
                .as_deref(),
            Some("abc-123")
        );
        assert!(idempotency_key(&headers(&[("idempotency-key", "has space")])).is_err());
        let long = "k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1);
        assert!(idempotency_key(&headers(&[("idempotency-key", &long)])).is_err());
    }
}
