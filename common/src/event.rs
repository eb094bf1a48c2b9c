//! The event schema: the contract between command-api, which writes events, and every
//! projection that reads them, including projections built years from now by replaying the
//! stream. Envelopes are JSON; `data` is decoded according to `event_type` and
//! `schema_version`, so a new version of an event can be added without rewriting old ones.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::point::{Latitude, Longitude, NewPoint, PointName};

/// The envelope every event travels in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// Unique id of this event (UUIDv7, so ids sort by creation time).
    pub event_id: Uuid,
    /// Which event this is, for example `PointCreated`.
    pub event_type: String,
    /// Version of the `data` schema for this `event_type`, starting at 1.
    pub schema_version: u32,
    /// The point this event belongs to (UUIDv7).
    pub aggregate_id: Uuid,
    /// The point's version after this event: 1 for its creation, one more for each later event.
    pub aggregate_version: u64,
    /// When command-api accepted the command.
    pub occurred_at: DateTime<Utc>,
    /// The event's payload; its shape is given by `event_type` and `schema_version`.
    pub data: serde_json::Value,
    /// Where the event came from.
    pub metadata: Metadata,
}

/// Request context carried with each event, for tracing and auditing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Ties the event to the HTTP request that caused it (the `X-Request-Id`).
    pub correlation_id: String,
    /// W3C trace context of the request, when one was present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// W3C trace state accompanying `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    /// The client's `Idempotency-Key`, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// `data` of a `PointCreated` event, schema version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointCreatedV1 {
    /// The name as validated.
    pub name: PointName,
    /// Longitude in degrees, WGS 84.
    pub longitude: Longitude,
    /// Latitude in degrees, WGS 84.
    pub latitude: Latitude,
}

/// A decoded event, at the newest schema version of its type.
#[derive(Debug, Clone, PartialEq)]
pub enum PointEvent {
    /// A point came into being.
    Created(PointCreatedV1),
}

/// Name of the `PointCreated` event type.
pub const POINT_CREATED: &str = "PointCreated";

/// Why an envelope could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a JSON envelope.
    #[error("the payload is not an event envelope")]
    Envelope(#[source] serde_json::Error),
    /// The envelope is fine but its type and version are not known to this build.
    #[error("unknown event {event_type} v{schema_version}")]
    UnknownType {
        /// The envelope's `event_type`.
        event_type: String,
        /// The envelope's `schema_version`.
        schema_version: u32,
    },
    /// The `data` does not match the schema its type and version announce.
    #[error("{event_type} v{schema_version} data does not match its schema")]
    Data {
        /// The envelope's `event_type`.
        event_type: String,
        /// The envelope's `schema_version`.
        schema_version: u32,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

impl EventEnvelope {
    /// Wraps a new point's creation in an envelope with fresh ids.
    #[must_use]
    pub fn point_created(point_id: Uuid, point: &NewPoint, metadata: Metadata) -> Self {
        let data = PointCreatedV1 {
            name: point.name.clone(),
            longitude: point.longitude,
            latitude: point.latitude,
        };
        Self {
            event_id: Uuid::now_v7(),
            event_type: POINT_CREATED.to_owned(),
            schema_version: 1,
            aggregate_id: point_id,
            aggregate_version: 1,
            occurred_at: Utc::now(),
            data: serde_json::to_value(data).expect("PointCreatedV1 has only string keys"),
            metadata,
        }
    }

    /// Reads an envelope from a message payload.
    ///
    /// # Errors
    /// [`DecodeError::Envelope`] when the bytes are not an envelope.
    pub fn from_slice(payload: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(payload).map_err(DecodeError::Envelope)
    }

    /// Encodes the envelope as it is stored in the stream.
    #[must_use]
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope serialises: all its keys are strings")
    }

    /// Decodes `data` into the newest version of its event.
    ///
    /// # Errors
    /// [`DecodeError::UnknownType`] or [`DecodeError::Data`].
    pub fn decode(&self) -> Result<PointEvent, DecodeError> {
        match (self.event_type.as_str(), self.schema_version) {
            (POINT_CREATED, 1) => serde_json::from_value(self.data.clone())
                .map(PointEvent::Created)
                .map_err(|source| self.data_error(source)),
            _ => Err(DecodeError::UnknownType {
                event_type: self.event_type.clone(),
                schema_version: self.schema_version,
            }),
        }
    }

    fn data_error(&self, source: serde_json::Error) -> DecodeError {
        DecodeError::Data {
            event_type: self.event_type.clone(),
            schema_version: self.schema_version,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris() -> NewPoint {
        NewPoint::from_json(br#"{"longitude": 2.3522, "latitude": 48.8566, "name": "Paris"}"#)
            .unwrap()
    }

    #[test]
    fn an_envelope_survives_its_own_encoding() {
        let id = Uuid::now_v7();
        let env = EventEnvelope::point_created(id, &paris(), Metadata::default());
        let back = EventEnvelope::from_slice(&env.to_vec()).unwrap();
        assert_eq!(back, env);
        let PointEvent::Created(c) = back.decode().unwrap();
        assert_eq!(c.name.as_str(), "Paris");
        assert_eq!(c.longitude.degrees().to_bits(), 2.3522_f64.to_bits());
    }

    #[test]
    fn a_stored_v1_envelope_still_decodes() {
        let stored = include_bytes!("../fixtures/point-created-v1.json");
        let env = EventEnvelope::from_slice(stored).unwrap();
        assert_eq!(env.aggregate_version, 1);
        let PointEvent::Created(c) = env.decode().unwrap();
        assert_eq!(c.name.as_str(), "Kraków");
    }

    #[test]
    fn data_that_breaks_the_rules_does_not_decode() {
        let mut env = EventEnvelope::point_created(Uuid::now_v7(), &paris(), Metadata::default());
        env.data["latitude"] = serde_json::json!(91.0);
        assert!(matches!(env.decode(), Err(DecodeError::Data { .. })));
        env.event_type = "PointTeleported".to_owned();
        assert!(matches!(env.decode(), Err(DecodeError::UnknownType { .. })));
    }
}
