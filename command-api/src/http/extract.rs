//! What every command handler takes from a request: the point's id from the path, the JSON
//! body (unparsed, so the validators can name bad fields), the `Idempotency-Key`, the event
//! metadata and the `If-Match` precondition.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use uuid::Uuid;

use geoledger_common::event::Metadata;
use geoledger_common::point::FieldError;

use crate::error::ApiError;
use crate::http::REQUEST_ID;

/// Longest accepted `Idempotency-Key`, in bytes.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The `Idempotency-Key` header, if sent: 1 to 255 visible ASCII characters.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
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

/// The `{id}` segment of a point's path, read as a UUID. A segment that is not one, or that
/// does not even decode to text (`%80`), names no point: a 404 problem, not axum's
/// plain-text 400.
pub(crate) struct PathId(pub(crate) Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(raw)) => Uuid::parse_str(&raw).map(Self).map_err(|_| {
                ApiError::NotFound(format!("no point has the id {raw:?}: it is not a UUID"))
            }),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::NotFound(
                format!("no point has this id: {}", e.body_text()),
            )),
            Err(other) => Err(ApiError::Internal(anyhow::Error::new(other))),
        }
    }
}

/// A request body declared as JSON, not yet parsed: parsing is the validator's job, so that a
/// wrong type in one field is reported by name rather than as a generic syntax error.
pub(crate) struct JsonBody(pub(crate) Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else if stalled(&rejection) {
                ApiError::BodyTimeout
            } else {
                ApiError::MalformedBody(body_error(&rejection))
            }
        })?;
        Ok(Self(bytes))
    }
}

/// Whether reading the body failed because the client stopped sending it.
fn stalled(rejection: &BytesRejection) -> bool {
    let mut error: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(e) = error {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        error = e.source();
    }
    false
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

/// The metadata every event of this request carries. Its trace context is the request's;
/// when spans are exported, publishing replaces it with the publish span's (see
/// `Publisher::send`).
pub(crate) fn metadata(headers: &HeaderMap, idempotency_key: Option<&str>) -> Metadata {
    Metadata {
        correlation_id: header_str(headers, REQUEST_ID.as_str())
            .unwrap_or_default()
            .to_owned(),
        traceparent: header_str(headers, "traceparent").map(str::to_owned),
        tracestate: header_str(headers, "tracestate").map(str::to_owned),
        idempotency_key: idempotency_key.map(str::to_owned),
    }
}

/// A point's version as an entity tag: the stream sequence of its last event, which is
/// exactly what JetStream's expected-last-subject-sequence compares.
pub(crate) fn etag(sequence: u64) -> HeaderValue {
    HeaderValue::try_from(format!("\"{sequence}\"")).expect("a quoted number is a valid header")
}

/// The `If-Match` precondition: the entity tag the client expects, or `None` when absent or
/// `*` (which only asks that the point exist, as every change does anyway).
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(raw) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = raw.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|t| t.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::Validation(vec![FieldError {
                field: "If-Match".to_owned(),
                reason: "must be an ETag this API returned, such as \"42\", or *".to_owned(),
            }])
        })
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
    fn if_match_takes_our_tags_and_the_wildcard() {
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
        assert_eq!(
            if_match(&headers(&[("if-match", "\"42\"")])).unwrap(),
            Some(42)
        );
        assert_eq!(if_match(&headers(&[("if-match", "*")])).unwrap(), None);
        assert!(if_match(&headers(&[("if-match", "W/\"42\"")])).is_err());
        assert!(if_match(&headers(&[("if-match", "42")])).is_err());
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
