//! What an event does to a point, decided in memory: the one place where the projection's
//! rules live. The live projector, `rebuild` and `replay` all fold events with [`apply`]; they
//! differ only in how many events they fold per transaction and where the rows go.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use geoledger_common::event::{EventEnvelope, PointEvent};

/// A point's row in the read model.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub(crate) struct PointRow {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) longitude: f64,
    pub(crate) latitude: f64,
    /// The `properties` object as JSON text.
    pub(crate) properties: String,
    pub(crate) version: i64,
    pub(crate) last_seq: i64,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

/// What the read model knows of one point.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PointState {
    /// No event of the point has been applied (or its creation could not be read).
    Absent,
    /// The point exists: its row.
    Live(PointRow),
    /// The point was deleted at `version`; its tombstone keeps a replayed creation out.
    Deleted {
        version: i64,
        deleted_at: DateTime<Utc>,
    },
}

/// Applies one event at stream `sequence` to `state`; returns whether it changed anything.
///
/// The rules make every event idempotent, so a redelivered or re-published event is a no-op:
/// a creation applies only to a point never seen (a deleted point stays deleted); a rename,
/// move or delete applies only to a live point whose version is older than the event's. A
/// change to a point without a row (its creation was unreadable, or it was deleted) changes
/// nothing, except that a delete still leaves its tombstone.
pub(crate) fn apply(
    state: &mut PointState,
    envelope: &EventEnvelope,
    event: &PointEvent,
    sequence: u64,
) -> bool {
    let version = envelope.aggregate_version as i64;
    let at = envelope.occurred_at;
    match (event, &mut *state) {
        (PointEvent::Created(created), PointState::Absent) => {
            *state = PointState::Live(PointRow {
                id: envelope.aggregate_id,
                name: created.name.as_str().to_owned(),
                longitude: created.longitude.degrees(),
                latitude: created.latitude.degrees(),
                properties: serde_json::Value::Object(created.properties.clone()).to_string(),
                version,
                last_seq: sequence as i64,
                created_at: at,
                updated_at: at,
            });
            true
        }
        (PointEvent::Renamed(renamed), PointState::Live(row)) if row.version < version => {
            renamed.name.as_str().clone_into(&mut row.name);
            row.touch(version, sequence, at);
            true
        }
        (PointEvent::Moved(moved), PointState::Live(row)) if row.version < version => {
            row.longitude = moved.longitude.degrees();
            row.latitude = moved.latitude.degrees();
            row.touch(version, sequence, at);
            true
        }
        (PointEvent::Deleted, PointState::Live(row)) if row.version < version => {
            *state = PointState::Deleted {
                version,
                deleted_at: at,
            };
            true
        }
        // Nothing to remove, but the tombstone still keeps a later copy of the creation out.
        (PointEvent::Deleted, PointState::Absent) => {
            *state = PointState::Deleted {
                version,
                deleted_at: at,
            };
            false
        }
        _ => false,
    }
}

impl PointRow {
    fn touch(&mut self, version: i64, sequence: u64, at: DateTime<Utc>) {
        self.version = version;
        self.last_seq = sequence as i64;
        self.updated_at = at;
    }
}

#[cfg(test)]
mod tests {
    use geoledger_common::event::{Metadata, PointMoved, PointRenamed};
    use geoledger_common::point::{NewPoint, PointName};

    use super::*;

    fn created(id: Uuid) -> (EventEnvelope, PointEvent) {
        let point = NewPoint::from_json(
            br#"{"longitude": 174.77557, "latitude": -41.28664, "name": "Wellington"}"#,
        )
        .unwrap();
        let envelope = EventEnvelope::point_created(id, &point, Metadata::default());
        let event = envelope.decode().unwrap();
        (envelope, event)
    }

    fn change(id: Uuid, version: u64, event: PointEvent) -> (EventEnvelope, PointEvent) {
        let envelope = EventEnvelope::new(&event, id, version, Metadata::default());
        (envelope, event)
    }

    fn moved(longitude: f64, latitude: f64) -> PointEvent {
        PointEvent::Moved(PointMoved {
            longitude: longitude.try_into().unwrap(),
            latitude: latitude.try_into().unwrap(),
        })
    }

    #[test]
    fn a_history_folds_to_its_last_state_and_replaying_it_changes_nothing() {
        let id = Uuid::now_v7();
        let history = [
            created(id),
            change(
                id,
                2,
                PointEvent::Renamed(PointRenamed {
                    name: PointName::parse("Te Whanganui-a-Tara").unwrap(),
                }),
            ),
            change(id, 3, moved(174.78, -41.29)),
        ];
        let mut state = PointState::Absent;
        for (seq, (envelope, event)) in history.iter().enumerate() {
            assert!(apply(&mut state, envelope, event, seq as u64 + 10));
        }
        let PointState::Live(row) = &state else {
            panic!("the point exists: {state:?}")
        };
        assert_eq!(row.name, "Te Whanganui-a-Tara");
        assert_eq!((row.longitude, row.latitude), (174.78, -41.29));
        assert_eq!((row.version, row.last_seq), (3, 12));

        let before = state.clone();
        for (seq, (envelope, event)) in history.iter().enumerate() {
            assert!(!apply(&mut state, envelope, event, seq as u64 + 20));
        }
        assert_eq!(state, before, "a second delivery of the history is a no-op");
    }

    #[test]
    fn a_deleted_point_is_not_brought_back_by_a_late_copy_of_its_creation() {
        let id = Uuid::now_v7();
        let (c_env, c_event) = created(id);
        let (d_env, d_event) = change(id, 2, PointEvent::Deleted);
        let mut state = PointState::Absent;
        assert!(apply(&mut state, &c_env, &c_event, 1));
        assert!(apply(&mut state, &d_env, &d_event, 2));
        assert!(!apply(&mut state, &c_env, &c_event, 3));
        assert!(matches!(state, PointState::Deleted { version: 2, .. }));
    }

    #[test]
    fn an_older_change_does_not_overwrite_a_newer_one() {
        let id = Uuid::now_v7();
        let (c_env, c_event) = created(id);
        let (m3_env, m3) = change(id, 3, moved(1.0, 2.0));
        let (m2_env, m2) = change(id, 2, moved(3.0, 4.0));
        let mut state = PointState::Absent;
        apply(&mut state, &c_env, &c_event, 1);
        assert!(apply(&mut state, &m3_env, &m3, 3));
        assert!(!apply(&mut state, &m2_env, &m2, 4));
        let PointState::Live(row) = state else {
            panic!("the point exists")
        };
        assert_eq!((row.longitude, row.latitude), (1.0, 2.0));
    }
}
