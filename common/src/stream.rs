//! The JetStream stream that is geoledger's source of truth. Both command-api and the
//! projector declare it at start-up, so either may start first.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use uuid::Uuid;

/// What the point-event stream is called and which subjects it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// The stream's name.
    pub name: String,
    /// Subject prefix; one point's events are on `<prefix>.<point id>`.
    pub subject_prefix: String,
    /// How long a `Nats-Msg-Id` is remembered for de-duplication.
    pub duplicate_window: Duration,
    /// Copies JetStream keeps of each message, on as many servers.
    pub replicas: usize,
}

impl StreamSpec {
    /// The subject holding the events of one point, so its history can be read by subject.
    #[must_use]
    pub fn subject_for(&self, point_id: Uuid) -> String {
        format!("{}.{}", self.subject_prefix, point_id.as_hyphenated())
    }

    /// The wildcard matching every point's subject.
    #[must_use]
    pub fn all_subjects(&self) -> String {
        format!("{}.*", self.subject_prefix)
    }

    /// The stream configuration geoledger expects.
    #[must_use]
    pub fn config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: vec![self.all_subjects()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            duplicate_window: self.duplicate_window,
            // The stream is the system of record: nothing expires, and single events can
            // be neither deleted nor purged, so any projection can be rebuilt from it.
            max_age: Duration::ZERO,
            deny_delete: true,
            deny_purge: true,
            // Lets a point's last event be read by subject without a consumer.
            allow_direct: true,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }

    /// Creates the stream, or brings an existing one to this configuration.
    ///
    /// # Errors
    /// The JetStream API error, when NATS is unreachable or refuses the configuration.
    pub async fn ensure(
        &self,
        js: &jetstream::Context,
    ) -> Result<stream::Info, jetstream::context::CreateStreamError> {
        js.create_or_update_stream(self.config()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_points_events_share_a_subject_inside_the_streams_wildcard() {
        let spec = StreamSpec {
            name: "S".to_owned(),
            subject_prefix: "geoledger.points".to_owned(),
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
        };
        let id = Uuid::now_v7();
        let subject = spec.subject_for(id);
        assert_eq!(subject, format!("geoledger.points.{id}"));
        assert_eq!(spec.config().subjects, ["geoledger.points.*"]);
    }
}
