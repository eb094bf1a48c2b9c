//! Commands on single points: `POST /point` creates one, `PATCH /points/{id}` renames or
//! moves it, `DELETE /points/{id}` deletes it, and `GET /points/{id}/history` lists its
//! events. Decisions (does the point exist, which version is current) are taken from the last
//! event on the point's subject in JetStream, never from the read model, which may lag.
//!
//! A deleted point answers 410 Gone to every later command; an unknown id answers 404.

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use geoledger_common::event::{
    EventEnvelope, Metadata, POINT_DELETED, PointEvent, PointMoved, PointRenamed,
};
use geoledger_common::point::{NewPoint, NewPointError, PointPatch};
use geoledger_common::problem::cause_chain;
use geoledger_common::projection::CONSISTENCY_TOKEN;

use crate::error::ApiError;
use crate::http::extract::{JsonBody, PathId, etag, idempotency_key, if_match, metadata};
use crate::idempotency::{Claim, Claimed, StoreUnavailable};
use crate::publish::{PublishFailure, Published, Publisher, ReadFailure};

/// Response header telling a client its retry was answered from the first attempt.
const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// Attempts at an unconditional change before answering 409: each failed attempt means
/// another write to the same point landed in between, so with N concurrent writers the last
/// needs N attempts. Beyond this many, the point is too hot to be worth more waiting.
const MAX_ATTEMPTS: u32 = 20;

pub(super) fn router() -> Router<Publisher> {
    Router::new()
        .route("/point", post(create_point))
        .route(
            "/points",
            post(super::batch::create_points)
                .layer(DefaultBodyLimit::max(super::batch::MAX_BATCH_BYTES)),
        )
        .route("/points/{id}", patch(patch_point).delete(delete_point))
        .route("/points/{id}/history", get(get_history))
}

/// What a client learns about an accepted write.
#[derive(Debug, Serialize)]
pub(super) struct Accepted {
    /// The point's id; `GET /points/{id}` reads it once projected.
    pub(super) id: Uuid,
    /// The stream sequence of the write's last event: the point is readable at this version
    /// once the projection reaches it, and it is the point's `ETag`.
    pub(super) sequence: u64,
    /// The point's version after this write.
    pub(super) version: u64,
}

impl Accepted {
    fn into_response(self, replayed: bool) -> Response {
        let location = HeaderValue::try_from(format!("/points/{}", self.id))
            .expect("a path made of a UUID is a valid header value");
        let mut response = (
            StatusCode::ACCEPTED,
            [
                (header::LOCATION, location),
                (header::ETAG, etag(self.sequence)),
                (
                    HeaderName::from_static(CONSISTENCY_TOKEN),
                    HeaderValue::from(self.sequence),
                ),
            ],
            axum::Json(&self),
        )
            .into_response();
        if replayed {
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        }
        response
    }
}

#[tracing::instrument(skip_all, fields(point.id, nats.stream_seq))]
async fn create_point(
    State(publisher): State<Publisher>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let point = NewPoint::from_json(&body).map_err(validation)?;
    let envelope =
        EventEnvelope::point_created(Uuid::now_v7(), &point, metadata(&headers, key.as_deref()));
    // Known now, so that every line of the request names it; a replayed key may change it.
    record_point(envelope.aggregate_id);
    let (accepted, replayed) = match key.as_deref() {
        None => {
            let message_id = envelope.event_id.to_string();
            (
                publish_creation(&publisher, &envelope, &message_id).await?,
                false,
            )
        }
        Some(key) => create_once(&publisher, envelope, key).await?,
    };
    record(&accepted);
    Ok(accepted.into_response(replayed))
}

/// Creates the point unless `key` was used before, in which case the first result is
/// returned (or a 422 if the first use was a different write).
///
/// The key is claimed in the idempotency bucket before publishing, so it holds beyond the
/// stream's duplicate window; the message id still carries the key, so a publish retried
/// within the window is also dropped by JetStream itself.
async fn create_once(
    publisher: &Publisher,
    mut envelope: EventEnvelope,
    key: &str,
) -> Result<(Accepted, bool), ApiError> {
    let store = &publisher.idempotency;
    let message_id = format!("idempotency:{key}");
    let mut claim = Claim {
        point_id: envelope.aggregate_id,
        event_type: envelope.event_type.clone(),
        data: envelope.data.clone(),
        sequence: None,
        version: None,
        claimed_at: Utc::now(),
    };
    let revision = match store.claim(key, &claim).await.map_err(store_unavailable)? {
        Claimed::New(revision) => revision,
        Claimed::Existing(first, revision) => {
            // The key promises the same outcome for the same request, not for any request.
            if first.event_type != claim.event_type || first.data != claim.data {
                return Err(ApiError::IdempotencyKeyReused);
            }
            if let Some(sequence) = first.sequence {
                return Ok((
                    Accepted {
                        id: first.point_id,
                        sequence,
                        version: 1,
                    },
                    true,
                ));
            }
            if !first.is_stale() {
                return Err(ApiError::InProgress);
            }
            // The first request died after claiming. Its event may have been stored all the
            // same; otherwise this request writes it, under the point id already promised.
            if let Some((sequence, _)) = publisher
                .last_event(first.point_id)
                .await
                .map_err(read_failure)?
            {
                let done = Claim {
                    sequence: Some(sequence),
                    ..first.clone()
                };
                let _ = store.update(key, &done, revision).await;
                return Ok((
                    Accepted {
                        id: first.point_id,
                        sequence,
                        version: 1,
                    },
                    true,
                ));
            }
            envelope.aggregate_id = first.point_id;
            claim.point_id = first.point_id;
            store
                .update(key, &claim, revision)
                .await
                .map_err(|_| ApiError::InProgress)?
        }
    };

    let accepted = match publish_creation(publisher, &envelope, &message_id).await {
        Ok(accepted) => accepted,
        Err(error) => {
            store.release(key).await;
            return Err(error);
        }
    };
    claim.sequence = Some(accepted.sequence);
    claim.version = Some(accepted.version);
    if let Err(error) = store.update(key, &claim, revision).await {
        // The event is stored; only a retry after the duplicate window would miss it, and
        // the stale-claim path finds the event on the point's subject then.
        tracing::warn!(error.message = %error, "idempotency claim not completed");
    }
    Ok((accepted, false))
}

/// Publishes a creation; a duplicate (same message id within the window) answers with the
/// first event's id.
async fn publish_creation(
    publisher: &Publisher,
    envelope: &EventEnvelope,
    message_id: &str,
) -> Result<Accepted, ApiError> {
    let outcome = publisher
        .publish(envelope, message_id, None)
        .await
        .map_err(|failure| unavailable(&failure))?;
    match outcome {
        Published::Stored { sequence } => Ok(Accepted {
            id: envelope.aggregate_id,
            sequence,
            version: envelope.aggregate_version,
        }),
        Published::Duplicate { sequence } => {
            let first = publisher
                .stored_event(sequence)
                .await
                .map_err(ApiError::Internal)?;
            if !same_write(&first, envelope) {
                return Err(ApiError::IdempotencyKeyReused);
            }
            Ok(Accepted {
                id: first.aggregate_id,
                sequence,
                version: first.aggregate_version,
            })
        }
    }
}

#[tracing::instrument(skip_all, fields(point.id, nats.stream_seq))]
async fn patch_point(
    State(publisher): State<Publisher>,
    PathId(id): PathId,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    record_point(id);
    let key = idempotency_key(&headers)?;
    let precondition = if_match(&headers)?;
    let change = PointPatch::from_json(&body).map_err(validation)?;
    let mut events = Vec::new();
    if let Some(name) = change.name {
        events.push(PointEvent::Renamed(PointRenamed { name }));
    }
    if let Some((longitude, latitude)) = change.position {
        events.push(PointEvent::Moved(PointMoved {
            longitude,
            latitude,
        }));
    }
    let meta = metadata(&headers, key.as_deref());
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let (accepted, replayed) =
        change_once(&publisher, key.as_deref(), id, "PATCH", request, || {
            change_point(&publisher, id, precondition, &events, &meta, key.as_deref())
        })
        .await?;
    record(&accepted);
    Ok(accepted.into_response(replayed))
}

#[tracing::instrument(skip_all, fields(point.id, nats.stream_seq))]
async fn delete_point(
    State(publisher): State<Publisher>,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    record_point(id);
    let key = idempotency_key(&headers)?;
    let precondition = if_match(&headers)?;
    let meta = metadata(&headers, key.as_deref());
    let (accepted, replayed) = change_once(
        &publisher,
        key.as_deref(),
        id,
        "DELETE",
        serde_json::Value::Null,
        || {
            change_point(
                &publisher,
                id,
                precondition,
                &[PointEvent::Deleted],
                &meta,
                key.as_deref(),
            )
        },
    )
    .await?;
    record(&accepted);
    Ok(accepted.into_response(replayed))
}

/// One event of a point's history.
#[derive(Debug, Serialize)]
struct HistoryEntry {
    sequence: u64,
    event_id: Uuid,
    event_type: String,
    schema_version: u32,
    version: u64,
    occurred_at: DateTime<Utc>,
    data: serde_json::Value,
}

#[derive(Debug, Serialize)]
struct History {
    id: Uuid,
    events: Vec<HistoryEntry>,
}

#[tracing::instrument(skip_all, fields(point.id))]
async fn get_history(
    State(publisher): State<Publisher>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    record_point(id);
    let events = publisher.history(id).await.map_err(read_failure)?;
    if events.is_empty() {
        return Err(ApiError::NotFound(format!("no point has the id {id}")));
    }
    let last = events.last().map_or(0, |(sequence, _)| *sequence);
    let events = events
        .into_iter()
        .map(|(sequence, e)| HistoryEntry {
            sequence,
            event_id: e.event_id,
            event_type: e.event_type,
            schema_version: e.schema_version,
            version: e.aggregate_version,
            occurred_at: e.occurred_at,
            data: e.data,
        })
        .collect();
    Ok((
        [(header::ETAG, etag(last))],
        axum::Json(History { id, events }),
    )
        .into_response())
}

/// Publishes `events` for an existing point, each conditional on the one before, so that
/// versions stay consecutive and no concurrent write is overwritten unseen.
///
/// With a specific `If-Match`, a point that moved on is a 412. Without one, a write that
/// lost a race is retried on the new version, up to [`MAX_ATTEMPTS`] times.
///
/// # Limitations
/// A rename and a move in one request are two events. If another write lands between
/// them, the rename stands and the request answers 409; the client re-sends the move.
async fn change_point(
    publisher: &Publisher,
    id: Uuid,
    expected_tag: Option<u64>,
    events: &[PointEvent],
    meta: &Metadata,
    key: Option<&str>,
) -> Result<(Accepted, bool), ApiError> {
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            // Racing writers that all retry at once would collide again; a short pause that
            // differs per request spreads them out.
            let jitter = u64::from(Uuid::now_v7().as_bytes()[15] % 8);
            tokio::time::sleep(Duration::from_millis(u64::from(attempt) + jitter)).await;
        }
        let (mut sequence, mut version) = current(publisher, id).await?;
        if let Some(expected) = expected_tag
            && expected != sequence
        {
            return Err(ApiError::PreconditionFailed { current: sequence });
        }
        let mut replayed = false;
        let mut raced = false;
        for (n, event) in events.iter().enumerate() {
            let envelope = EventEnvelope::new(event, id, version + 1, meta.clone());
            let message_id = key.map_or_else(
                || envelope.event_id.to_string(),
                |key| format!("idempotency:{key}#{n}"),
            );
            match publisher
                .publish(&envelope, &message_id, Some(sequence))
                .await
            {
                Ok(Published::Stored { sequence: stored }) => {
                    sequence = stored;
                    version += 1;
                }
                Ok(Published::Duplicate { sequence: stored }) => {
                    let first = publisher
                        .stored_event(stored)
                        .await
                        .map_err(ApiError::Internal)?;
                    if !same_write(&first, &envelope) {
                        return Err(ApiError::IdempotencyKeyReused);
                    }
                    sequence = stored;
                    version = first.aggregate_version;
                    replayed = true;
                }
                Err(PublishFailure::Conflict { .. }) if n == 0 && expected_tag.is_none() => {
                    raced = true;
                    break;
                }
                Err(PublishFailure::Conflict { .. }) if n == 0 => {
                    let (current, _) = current(publisher, id).await?;
                    return Err(ApiError::PreconditionFailed { current });
                }
                Err(PublishFailure::Conflict { .. }) => return Err(ApiError::Contended),
                Err(failure) => return Err(unavailable(&failure)),
            }
        }
        if !raced {
            return Ok((
                Accepted {
                    id,
                    sequence,
                    version,
                },
                replayed,
            ));
        }
    }
    Err(ApiError::Contended)
}

/// Runs a change at most once per `Idempotency-Key` within the idempotency TTL: a retry
/// gets the first result back; the same key with another request is a 422.
///
/// # Limitations
/// A claim abandoned by a crashed request is taken over after a while and the change made
/// again: a rename or move then lands twice (same values, one more version), a delete
/// answers 410.
async fn change_once<F, Fut>(
    publisher: &Publisher,
    key: Option<&str>,
    point_id: Uuid,
    kind: &str,
    request: serde_json::Value,
    change: F,
) -> Result<(Accepted, bool), ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(Accepted, bool), ApiError>>,
{
    let Some(key) = key else {
        return change().await;
    };
    let store = &publisher.idempotency;
    let mut claim = Claim {
        point_id,
        event_type: kind.to_owned(),
        data: request,
        sequence: None,
        version: None,
        claimed_at: Utc::now(),
    };
    let revision = match store.claim(key, &claim).await.map_err(store_unavailable)? {
        Claimed::New(revision) => revision,
        Claimed::Existing(first, revision) => {
            if first.point_id != point_id || first.event_type != kind || first.data != claim.data {
                return Err(ApiError::IdempotencyKeyReused);
            }
            if let (Some(sequence), Some(version)) = (first.sequence, first.version) {
                return Ok((
                    Accepted {
                        id: point_id,
                        sequence,
                        version,
                    },
                    true,
                ));
            }
            if !first.is_stale() {
                return Err(ApiError::InProgress);
            }
            store
                .update(key, &claim, revision)
                .await
                .map_err(|_| ApiError::InProgress)?
        }
    };
    match change().await {
        Ok((accepted, replayed)) => {
            claim.sequence = Some(accepted.sequence);
            claim.version = Some(accepted.version);
            if let Err(error) = store.update(key, &claim, revision).await {
                tracing::warn!(error.message = %error, "idempotency claim not completed");
            }
            Ok((accepted, replayed))
        }
        Err(error) => {
            store.release(key).await;
            Err(error)
        }
    }
}

/// The point's last stream sequence and version, or why commands cannot apply to it.
async fn current(publisher: &Publisher, id: Uuid) -> Result<(u64, u64), ApiError> {
    match publisher.last_event(id).await.map_err(read_failure)? {
        None => Err(ApiError::NotFound(format!("no point has the id {id}"))),
        Some((_, last)) if last.event_type == POINT_DELETED => Err(ApiError::Gone),
        Some((sequence, last)) => Ok((sequence, last.aggregate_version)),
    }
}

/// Whether a stored event is the write a retry asks for again: an idempotency key promises
/// the same outcome for the same request, not for any request.
fn same_write(first: &EventEnvelope, retry: &EventEnvelope) -> bool {
    first.event_type == retry.event_type && first.data == retry.data
}

pub(super) fn validation(error: NewPointError) -> ApiError {
    match error {
        NewPointError::NotAnObject(detail) => ApiError::MalformedBody(detail),
        NewPointError::Fields(errors) => ApiError::Validation(errors),
    }
}

pub(super) fn unavailable(failure: &PublishFailure) -> ApiError {
    tracing::warn!(
        error.message = %failure,
        error.cause_chain = ?cause_chain(failure),
        "write not stored"
    );
    ApiError::Unavailable(failure.to_string())
}

fn store_unavailable(error: StoreUnavailable) -> ApiError {
    let error = error.0;
    tracing::warn!(error.message = %error, "idempotency store unavailable");
    ApiError::Unavailable(error)
}

fn read_failure(failure: ReadFailure) -> ApiError {
    match failure {
        ReadFailure::Unavailable(detail) => {
            tracing::warn!(error.message = %detail, "event stream unreadable");
            ApiError::StreamUnreadable(detail)
        }
        undecodable @ ReadFailure::Undecodable { .. } => {
            ApiError::Internal(anyhow::Error::new(undecodable))
        }
    }
}

fn record_point(id: Uuid) {
    tracing::Span::current().record("point.id", tracing::field::display(id));
}

fn record(accepted: &Accepted) {
    let span = tracing::Span::current();
    span.record("point.id", tracing::field::display(accepted.id));
    span.record("nats.stream_seq", accepted.sequence);
}
