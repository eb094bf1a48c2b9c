//! `POST /points`: many new points in one request, as a GeoJSON `FeatureCollection` of Point
//! features (the name in `properties.name`, other properties kept) or as a JSON array of
//! `POST /point` bodies.
//!
//! Every item is validated on its own; the valid ones are published with their acks in
//! flight together (one round trip for the batch, not one per item) and the answer lists,
//! in request order, each item's id and sequence or why it was refused. Valid items are
//! stored even when others are refused. At most [`MAX_ITEMS`] items per request.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use geoledger_common::event::EventEnvelope;
use geoledger_common::point::{FieldError, Members, NewPoint, NewPointError, is_duplicate_member};
use geoledger_common::problem::Problem;
use geoledger_common::projection::CONSISTENCY_TOKEN;

use crate::error::ApiError;
use crate::http::extract::{JsonBody, idempotency_key, metadata};
use crate::publish::Publisher;

/// Most items in one batch. Bounded so that one request cannot hold thousands of acks in
/// flight or take longer than the request timeout.
pub(crate) const MAX_ITEMS: usize = 1000;

/// Largest batch body: room for [`MAX_ITEMS`] features with modest properties.
pub(crate) const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// One item's outcome.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ItemResult {
    Stored {
        index: usize,
        id: Uuid,
        sequence: u64,
    },
    Refused {
        index: usize,
        errors: Vec<FieldError>,
    },
    NotStored {
        index: usize,
        error: String,
    },
}

#[derive(Debug, Serialize)]
struct BatchAnswer {
    accepted: usize,
    refused: usize,
    items: Vec<ItemResult>,
}

#[derive(Deserialize)]
struct FeatureCollection<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(borrow)]
    features: Vec<&'a RawValue>,
}

#[tracing::instrument(skip_all, fields(batch.items))]
pub(super) async fn create_points(
    State(publisher): State<Publisher>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let items = split(&body)?;
    tracing::Span::current().record("batch.items", items.len());
    if items.len() > MAX_ITEMS {
        return Err(ApiError::Validation(vec![FieldError {
            field: "body".to_owned(),
            reason: format!(
                "holds {} items; at most {MAX_ITEMS} are accepted",
                items.len()
            ),
        }]));
    }

    let meta = metadata(&headers, key.as_deref());
    let mut results: Vec<Option<ItemResult>> = (0..items.len()).map(|_| None).collect();
    let mut pending = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let point = match item {
            Ok(point) => point,
            Err(errors) => {
                results[index] = Some(ItemResult::Refused { index, errors });
                continue;
            }
        };
        let envelope = EventEnvelope::point_created(Uuid::now_v7(), &point, meta.clone());
        let message_id = key.as_deref().map_or_else(
            || envelope.event_id.to_string(),
            |key| format!("idempotency:{key}@{index}"),
        );
        match publisher.send(&envelope, &message_id, None).await {
            Ok(ack) => pending.push((index, envelope, ack)),
            Err(failure) => results[index] = Some(not_stored(index, &failure.to_string())),
        }
    }

    let acks = futures::future::join_all(
        pending
            .into_iter()
            .map(|(index, envelope, ack)| async move { (index, envelope, ack.await) }),
    )
    .await;
    for (index, envelope, ack) in acks {
        let result = match ack {
            Ok(ack) if ack.duplicate => match publisher.stored_event(ack.sequence).await {
                // The key promises the same outcome for the same item, not for any item: an
                // item sent again under a key at the same place in the batch must be the one
                // stored then, or the answer would name a point that holds another body.
                Ok(first)
                    if first.event_type != envelope.event_type || first.data != envelope.data =>
                {
                    reused_key(index)
                }
                Ok(first) => ItemResult::Stored {
                    index,
                    id: first.aggregate_id,
                    sequence: ack.sequence,
                },
                Err(error) => not_stored(index, &format!("{error:#}")),
            },
            Ok(ack) => ItemResult::Stored {
                index,
                id: envelope.aggregate_id,
                sequence: ack.sequence,
            },
            Err(error) => not_stored(index, &error.to_string()),
        };
        results[index] = Some(result);
    }

    let items: Vec<ItemResult> = results.into_iter().flatten().collect();
    Ok(respond(items))
}

/// 202 with the itemised answer when anything was stored; otherwise a problem document that
/// still lists every item.
fn respond(items: Vec<ItemResult>) -> Response {
    let accepted = items
        .iter()
        .filter(|i| matches!(i, ItemResult::Stored { .. }))
        .count();
    let refused = items
        .iter()
        .filter(|i| matches!(i, ItemResult::Refused { .. }))
        .count();
    let answer = BatchAnswer {
        accepted,
        refused,
        items,
    };
    if accepted > 0 {
        // Reading at the batch's highest sequence sees every item of it.
        let highest = answer
            .items
            .iter()
            .filter_map(|i| match i {
                ItemResult::Stored { sequence, .. } => Some(*sequence),
                _ => None,
            })
            .max()
            .unwrap_or_default();
        let token = [(CONSISTENCY_TOKEN, HeaderValue::from(highest))];
        return (StatusCode::ACCEPTED, token, Json(answer)).into_response();
    }
    let problem = if !answer.items.is_empty() && answer.items.iter().all(ItemResult::is_reused_key)
    {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency-Key reused with a different request",
        )
        .detail(
            "this key was first used with other items at these places in the batch; use a new \
             key for new writes",
        )
    } else if refused == answer.items.len() {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "validation",
            "The request has invalid fields",
        )
        .detail("no item of the batch is valid; each item's errors are listed")
    } else {
        Problem::unavailable("no item of the batch was stored; retry with the same Idempotency-Key")
    };
    let items = serde_json::to_value(&answer.items).expect("item results serialise");
    problem.extension("items", items).into_response()
}

/// Field of the error given to an item refused because its key was used for another item.
const KEY_FIELD: &str = "Idempotency-Key";

impl ItemResult {
    fn is_reused_key(&self) -> bool {
        matches!(self, Self::Refused { errors, .. }
            if errors.len() == 1 && errors[0].field == KEY_FIELD)
    }
}

fn reused_key(index: usize) -> ItemResult {
    ItemResult::Refused {
        index,
        errors: vec![field_error(
            KEY_FIELD,
            "was used before with another item at this place in the batch; nothing was stored",
        )],
    }
}

fn not_stored(index: usize, reason: &str) -> ItemResult {
    tracing::warn!(
        batch.index = index,
        error.message = reason,
        "batch item not stored"
    );
    // The reason is the NATS client's message: logged above, not sent.
    ItemResult::NotStored {
        index,
        error: "not known to be stored; retry with the same Idempotency-Key".to_owned(),
    }
}

/// The batch's items, each validated: a JSON array of point bodies, or a `FeatureCollection`.
fn split(body: &[u8]) -> Result<Vec<Result<NewPoint, Vec<FieldError>>>, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let items: Vec<&RawValue> = serde_json::from_slice(body)
            .map_err(|e| ApiError::MalformedBody(format!("not a JSON array: {e}")))?;
        return Ok(items.into_iter().map(array_item).collect());
    }
    let collection: FeatureCollection<'_> = serde_json::from_slice(body).map_err(|e| {
        ApiError::MalformedBody(format!(
            "expected a JSON array of points or a GeoJSON FeatureCollection: {e}"
        ))
    })?;
    if collection.kind != "FeatureCollection" {
        return Err(ApiError::MalformedBody(format!(
            "a GeoJSON body must be a FeatureCollection, not {:?}",
            collection.kind
        )));
    }
    Ok(collection.features.into_iter().map(feature_item).collect())
}

fn array_item(item: &RawValue) -> Result<NewPoint, Vec<FieldError>> {
    let Members(members) = serde_json::from_str(item.get()).map_err(|e| {
        let reason = if is_duplicate_member(&e) {
            e.to_string()
        } else {
            "must be a JSON object".to_owned()
        };
        vec![field_error("item", &reason)]
    })?;
    NewPoint::from_members(&members).map_err(field_errors)
}

#[derive(Deserialize)]
struct Feature<'a> {
    #[serde(rename = "type")]
    kind: String,
    geometry: Option<Geometry<'a>>,
    #[serde(borrow, default)]
    properties: Option<Members<'a>>,
}

#[derive(Deserialize)]
struct Geometry<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(borrow)]
    coordinates: Vec<&'a RawValue>,
}

/// Maps a Point feature onto the members `NewPoint` validates, so that a bad coordinate is
/// reported exactly as it would be for `POST /point`.
fn feature_item(item: &RawValue) -> Result<NewPoint, Vec<FieldError>> {
    let feature: Feature<'_> = serde_json::from_str(item.get()).map_err(|e| {
        vec![field_error(
            "feature",
            &format!("is not a GeoJSON Feature: {e}"),
        )]
    })?;
    if feature.kind != "Feature" {
        return Err(vec![field_error("type", "must be \"Feature\"")]);
    }
    let Some(geometry) = feature.geometry.filter(|g| g.kind == "Point") else {
        return Err(vec![field_error("geometry", "must be a GeoJSON Point")]);
    };
    if geometry.coordinates.len() != 2 {
        return Err(vec![field_error(
            "geometry.coordinates",
            "must be [longitude, latitude]",
        )]);
    }
    let Members(mut properties) = feature.properties.unwrap_or_default();
    let mut members: BTreeMap<String, &RawValue> = BTreeMap::new();
    members.insert("longitude".to_owned(), geometry.coordinates[0]);
    members.insert("latitude".to_owned(), geometry.coordinates[1]);
    if let Some(name) = properties.remove("name") {
        members.insert("name".to_owned(), name);
    }
    let extra = serde_json::to_string(&properties).expect("raw JSON values re-serialise");
    let extra = RawValue::from_string(extra).expect("serde_json wrote valid JSON");
    members.insert("properties".to_owned(), &extra);
    NewPoint::from_members(&members).map_err(field_errors)
}

fn field_errors(error: NewPointError) -> Vec<FieldError> {
    match error {
        NewPointError::Fields(errors) => errors,
        NewPointError::NotAnObject(detail) => vec![field_error("item", &detail)],
    }
}

fn field_error(field: &str, reason: &str) -> FieldError {
    FieldError {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}
