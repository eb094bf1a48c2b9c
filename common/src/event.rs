//! The event schema: the contract between command-api, which writes events, and every
//! projection that reads them, including projections built years from now by replaying the
//! stream. Envelopes are JSON; `data` is decoded according to `event_type` and
//! `schema_version`, so a new version of an event can be added without rewriting old ones.

use chrono::{DateTime, Datelike as _, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::point::{Latitude, Longitude, NewPoint, PointName, nul_in_properties};

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

/// `data` of a `PointCreated` event, schema version 1: what the first releases wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointCreatedV1 {
    /// The name as validated.
    pub name: PointName,
    /// Longitude in degrees, WGS 84.
    pub longitude: Longitude,
    /// Latitude in degrees, WGS 84.
    pub latitude: Latitude,
}

/// `data` of a `PointCreated` event, schema version 2: version 1 plus free-form properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointCreated {
    /// The name as validated.
    pub name: PointName,
    /// Longitude in degrees, WGS 84.
    pub longitude: Longitude,
    /// Latitude in degrees, WGS 84.
    pub latitude: Latitude,
    /// Client-supplied attributes (a JSON object), empty when none were given.
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
}

impl From<PointCreatedV1> for PointCreated {
    /// The upcaster: a version 1 creation is a version 2 creation without properties.
    fn from(v1: PointCreatedV1) -> Self {
        Self {
            name: v1.name,
            longitude: v1.longitude,
            latitude: v1.latitude,
            properties: serde_json::Map::new(),
        }
    }
}

/// `data` of a `PointRenamed` event, schema version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointRenamed {
    /// The new name.
    pub name: PointName,
}

/// `data` of a `PointMoved` event, schema version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointMoved {
    /// The new longitude.
    pub longitude: Longitude,
    /// The new latitude.
    pub latitude: Latitude,
}

/// A decoded event, upcast to the newest schema version of its type.
#[derive(Debug, Clone, PartialEq)]
pub enum PointEvent {
    /// A point came into being.
    Created(PointCreated),
    /// A point got a new name.
    Renamed(PointRenamed),
    /// A point got new coordinates.
    Moved(PointMoved),
    /// A point ceased to exist; later commands on it are refused.
    Deleted,
}

/// Name of the `PointCreated` event type.
pub const POINT_CREATED: &str = "PointCreated";
/// Name of the `PointRenamed` event type.
pub const POINT_RENAMED: &str = "PointRenamed";
/// Name of the `PointMoved` event type.
pub const POINT_MOVED: &str = "PointMoved";
/// Name of the `PointDeleted` event type.
pub const POINT_DELETED: &str = "PointDeleted";

impl PointEvent {
    /// The event type name, as written in envelopes.
    #[must_use]
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Created(_) => POINT_CREATED,
            Self::Renamed(_) => POINT_RENAMED,
            Self::Moved(_) => POINT_MOVED,
            Self::Deleted => POINT_DELETED,
        }
    }

    /// The schema version new events of this type are written with.
    #[must_use]
    pub fn schema_version(&self) -> u32 {
        match self {
            Self::Created(_) => 2,
            Self::Renamed(_) | Self::Moved(_) | Self::Deleted => 1,
        }
    }

    fn data(&self) -> serde_json::Value {
        let value = match self {
            Self::Created(c) => serde_json::to_value(c),
            Self::Renamed(r) => serde_json::to_value(r),
            Self::Moved(m) => serde_json::to_value(m),
            Self::Deleted => Ok(serde_json::Value::Object(serde_json::Map::new())),
        };
        value.expect("event data has only string keys")
    }
}

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
    /// Wraps `event`, at the newest schema version of its type, in an envelope with a fresh
    /// event id, for the point `aggregate_id` at `aggregate_version`.
    #[must_use]
    pub fn new(
        event: &PointEvent,
        aggregate_id: Uuid,
        aggregate_version: u64,
        metadata: Metadata,
    ) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            aggregate_id,
            aggregate_version,
            occurred_at: Utc::now(),
            data: event.data(),
            metadata,
        }
    }

    /// Wraps a new point's creation in an envelope with fresh ids.
    #[must_use]
    pub fn point_created(point_id: Uuid, point: &NewPoint, metadata: Metadata) -> Self {
        let event = PointEvent::Created(PointCreated {
            name: point.name.clone(),
            longitude: point.longitude,
            latitude: point.latitude,
            properties: point.properties.clone(),
        });
        Self::new(&event, point_id, 1, metadata)
    }

    /// Reads an envelope from a message payload.
    ///
    /// Besides its shape, the envelope must fit the read model: `aggregate_version` from 1 to
    /// `i64::MAX` (a `bigint` that is at least 1) and `occurred_at` in the years 1 to 9999
    /// (RFC 3339's range, well within `timestamptz`'s). An envelope outside them, which
    /// command-api never writes, could never be stored, and a projector retrying it would
    /// hold up every event behind it; refused here, it is dead-lettered instead.
    ///
    /// # Errors
    /// [`DecodeError::Envelope`] when the bytes are not an envelope, or one out of range.
    pub fn from_slice(payload: &[u8]) -> Result<Self, DecodeError> {
        let envelope: Self = serde_json::from_slice(payload).map_err(DecodeError::Envelope)?;
        let out_of_range = |reason: String| {
            DecodeError::Envelope(<serde_json::Error as serde::de::Error>::custom(reason))
        };
        if !(1..=i64::MAX as u64).contains(&envelope.aggregate_version) {
            return Err(out_of_range(format!(
                "aggregate_version {} is not from 1 to {}",
                envelope.aggregate_version,
                i64::MAX
            )));
        }
        if !(1..=9999).contains(&envelope.occurred_at.year()) {
            return Err(out_of_range(format!(
                "occurred_at {} is not in the years 1 to 9999",
                envelope.occurred_at
            )));
        }
        Ok(envelope)
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
            (POINT_CREATED, 1) => self
                .data_as::<PointCreatedV1>()
                .map(|v1| PointEvent::Created(v1.into())),
            (POINT_CREATED, 2) => {
                let created: PointCreated = self.data_as()?;
                // Written by an older build or another tool: the read model could never store
                // it, so it must not decode, and is dead-lettered rather than retried forever.
                if let Some(reason) = nul_in_properties(&created.properties) {
                    let reason = format!("properties {reason}");
                    return Err(self.data_error(serde::de::Error::custom(reason)));
                }
                Ok(PointEvent::Created(created))
            }
            (POINT_RENAMED, 1) => self.data_as().map(PointEvent::Renamed),
            (POINT_MOVED, 1) => self.data_as().map(PointEvent::Moved),
            (POINT_DELETED, 1) => Ok(PointEvent::Deleted),
            _ => Err(DecodeError::UnknownType {
                event_type: self.event_type.clone(),
                schema_version: self.schema_version,
            }),
        }
    }

    fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, DecodeError> {
        T::deserialize(&self.data).map_err(|source| self.data_error(source))
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
        let PointEvent::Created(c) = back.decode().unwrap() else {
            panic!("a creation")
        };
        assert_eq!(c.name.as_str(), "Paris");
        assert_eq!(c.longitude.degrees().to_bits(), 2.3522_f64.to_bits());
    }

    #[test]
    fn a_stored_v1_envelope_still_decodes() {
        let stored = include_bytes!("../fixtures/point-created-v1.json");
        let env = EventEnvelope::from_slice(stored).unwrap();
        assert_eq!(env.aggregate_version, 1);
        let PointEvent::Created(c) = env.decode().unwrap() else {
            panic!("a creation")
        };
        assert_eq!(c.name.as_str(), "Kraków");
        assert!(
            c.properties.is_empty(),
            "v1 had no properties; the upcaster adds none"
        );
    }

    #[test]
    fn a_v1_and_a_v2_creation_of_the_same_point_decode_alike() {
        let v1 =
            EventEnvelope::from_slice(include_bytes!("../fixtures/point-created-v1.json")).unwrap();
        let v2 =
            EventEnvelope::from_slice(include_bytes!("../fixtures/point-created-v2.json")).unwrap();
        assert_eq!((v1.schema_version, v2.schema_version), (1, 2));
        assert_eq!(v1.decode().unwrap(), v2.decode().unwrap());
    }

    #[test]
    fn every_event_type_survives_its_own_encoding() {
        let events = [
            PointEvent::Renamed(PointRenamed {
                name: PointName::parse("Kraków").unwrap(),
            }),
            PointEvent::Moved(PointMoved {
                longitude: Longitude::try_from(19.93658).unwrap(),
                latitude: Latitude::try_from(50.06143).unwrap(),
            }),
            PointEvent::Deleted,
        ];
        for event in events {
            let env = EventEnvelope::new(&event, Uuid::now_v7(), 2, Metadata::default());
            let back = EventEnvelope::from_slice(&env.to_vec()).unwrap();
            assert_eq!(back.decode().unwrap(), event);
        }
    }

    #[test]
    fn an_envelope_the_read_model_cannot_hold_does_not_read() {
        let env = EventEnvelope::point_created(Uuid::now_v7(), &paris(), Metadata::default());
        let with = |member: &str, value: serde_json::Value| {
            let mut document = serde_json::to_value(&env).unwrap();
            document[member] = value;
            EventEnvelope::from_slice(&serde_json::to_vec(&document).unwrap())
        };
        for version in [serde_json::json!(0), serde_json::json!(1_u64 << 63)] {
            assert!(matches!(
                with("aggregate_version", version),
                Err(DecodeError::Envelope(_))
            ));
        }
        assert!(with("aggregate_version", serde_json::json!(i64::MAX)).is_ok());
        assert!(with("occurred_at", serde_json::json!("+10000-01-01T00:00:00Z")).is_err());
        assert!(with("occurred_at", serde_json::json!("0000-12-31T23:59:59Z")).is_err());
        assert!(with("occurred_at", serde_json::json!("0001-01-01T00:00:00Z")).is_ok());
    }

    #[test]
    fn a_creation_whose_properties_hold_nul_does_not_decode() {
        let mut env = EventEnvelope::point_created(Uuid::now_v7(), &paris(), Metadata::default());
        env.data["properties"] = serde_json::json!({"note": "a\u{0}b"});
        assert!(matches!(env.decode(), Err(DecodeError::Data { .. })));
    }

    #[test]
    fn data_that_breaks_the_rules_does_not_decode() {
        let mut env = EventEnvelope::point_created(Uuid::now_v7(), &paris(), Metadata::default());
        env.data["latitude"] = serde_json::json!(91.0);
        assert!(matches!(env.decode(), Err(DecodeError::Data { .. })));
        env.event_type = "PointTeleported".to_owned();
        assert!(matches!(env.decode(), Err(DecodeError::UnknownType { .. })));
    }

    /// The decoder meets whatever another tool may publish on a point's subject. `cargo fuzz`
    /// needs a nightly toolchain, which this project does not use, so this is its proptest
    /// equivalent: arbitrary bytes, and valid events bit-flipped, truncated, padded or with a
    /// member replaced, none of which may panic; whatever decodes re-encodes to itself.
    mod decoder_fuzz {
        use proptest::prelude::*;
        use serde_json::{Value, json};

        use super::*;

        /// Cases per property unless `PROPTEST_CASES` says otherwise: a second or two here.
        fn config() -> ProptestConfig {
            let cases = std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2_000);
            ProptestConfig {
                cases,
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        fn event() -> impl Strategy<Value = PointEvent> {
            let name = "\\PC{1,20}".prop_filter_map("a valid name", |s| PointName::parse(&s).ok());
            let longitude = (-180.0_f64..=180.0).prop_map(|v| Longitude::try_from(v).unwrap());
            let latitude = (-90.0_f64..=90.0).prop_map(|v| Latitude::try_from(v).unwrap());
            let properties = prop::collection::btree_map("[a-z]{1,5}", any::<i32>(), 0..3)
                .prop_map(|m| m.into_iter().map(|(k, v)| (k, json!(v))).collect());
            prop_oneof![
                (
                    name.clone(),
                    longitude.clone(),
                    latitude.clone(),
                    properties
                )
                    .prop_map(|(name, longitude, latitude, properties)| {
                        PointEvent::Created(PointCreated {
                            name,
                            longitude,
                            latitude,
                            properties,
                        })
                    }),
                name.prop_map(|name| PointEvent::Renamed(PointRenamed { name })),
                (longitude, latitude).prop_map(|(longitude, latitude)| {
                    PointEvent::Moved(PointMoved {
                        longitude,
                        latitude,
                    })
                }),
                Just(PointEvent::Deleted),
            ]
        }

        fn envelope() -> impl Strategy<Value = EventEnvelope> {
            (event(), 1_u64..1_000).prop_map(|(event, version)| {
                EventEnvelope::new(&event, Uuid::now_v7(), version, Metadata::default())
            })
        }

        /// Values that sit where another value belongs: wrong types, edges, hostile text.
        fn odd_value() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                Just(json!(-1)),
                Just(json!(0)),
                Just(json!(2)),
                Just(json!(u64::MAX)),
                Just(json!(1e308)),
                Just(json!(-0.0)),
                Just(json!(180.000_000_000_000_03)),
                Just(json!("")),
                Just(json!("\u{0}")),
                Just(json!("\u{202e}x")),
                Just(json!("PointCreated")),
                Just(json!("PointDeleted")),
                Just(json!("2026-12-04T12:00:00Z")),
                Just(json!("9999-12-31T23:59:60.999999999+23:59")),
                Just(json!([])),
                Just(json!({})),
                Just(json!({"name": "x", "longitude": 1, "latitude": 1})),
                any::<String>().prop_map(Value::String),
                any::<i64>().prop_map(Value::from),
            ]
        }

        /// Where a member can be replaced: the envelope's own and those of its data.
        const PATHS: &[&[&str]] = &[
            &["event_id"],
            &["event_type"],
            &["schema_version"],
            &["aggregate_id"],
            &["aggregate_version"],
            &["occurred_at"],
            &["data"],
            &["metadata"],
            &["metadata", "correlation_id"],
            &["metadata", "traceparent"],
            &["data", "name"],
            &["data", "longitude"],
            &["data", "latitude"],
            &["data", "properties"],
        ];

        /// A valid envelope's bytes, changed in one of several ways.
        fn mutated() -> impl Strategy<Value = Vec<u8>> {
            (
                envelope(),
                0_u8..5,
                any::<prop::sample::Index>(),
                any::<u8>(),
                odd_value(),
                prop::sample::select(PATHS),
            )
                .prop_map(|(envelope, how, at, byte, value, path)| {
                    let mut bytes = envelope.to_vec();
                    let at = at.index(bytes.len());
                    match how {
                        0 => bytes[at] ^= 1 << (byte % 8),
                        1 => bytes.truncate(at),
                        2 => bytes.insert(at, byte),
                        3 => {
                            let mut document: Value = serde_json::from_slice(&bytes).unwrap();
                            let (last, parents) = path.split_last().unwrap();
                            let mut parent = &mut document;
                            for key in parents {
                                parent = &mut parent[*key];
                            }
                            if let Some(object) = parent.as_object_mut() {
                                if value.is_null() && byte % 2 == 0 {
                                    object.remove(*last);
                                } else {
                                    object.insert((*last).to_owned(), value);
                                }
                            }
                            bytes = serde_json::to_vec(&document).unwrap();
                        }
                        _ => {
                            // A member named twice: which one a reader keeps is up to it.
                            let text = String::from_utf8(bytes).unwrap();
                            bytes = text
                                .replacen('{', &format!("{{\"{}\":{value},", path[0]), 1)
                                .into_bytes();
                        }
                    }
                    bytes
                })
        }

        /// Decoding never panics; an envelope that reads re-encodes to one that reads the
        /// same, and an event that decodes re-encodes to data that decodes to it again.
        fn decodes_stably(bytes: &[u8]) -> Result<(), TestCaseError> {
            let Ok(envelope) = EventEnvelope::from_slice(bytes) else {
                return Ok(());
            };
            let again = EventEnvelope::from_slice(&envelope.to_vec())
                .map_err(|e| TestCaseError::fail(format!("re-encoding broke it: {e}")))?;
            prop_assert_eq!(&again, &envelope);
            let Ok(event) = envelope.decode() else {
                return Ok(());
            };
            let written = EventEnvelope::new(
                &event,
                envelope.aggregate_id,
                envelope.aggregate_version,
                envelope.metadata.clone(),
            );
            let reread = EventEnvelope::from_slice(&written.to_vec())
                .map_err(|e| TestCaseError::fail(format!("a decoded event re-encodes: {e}")))?;
            prop_assert_eq!(reread.decode().ok(), Some(event));
            Ok(())
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
                decodes_stably(&bytes)?;
            }

            #[test]
            fn mutated_events_never_panic_and_what_decodes_round_trips(bytes in mutated()) {
                decodes_stably(&bytes)?;
            }

            #[test]
            fn valid_events_always_decode(envelope in envelope()) {
                let back = EventEnvelope::from_slice(&envelope.to_vec()).unwrap();
                prop_assert!(back.decode().is_ok());
            }
        }
    }
}
