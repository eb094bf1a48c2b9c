//! The fields of human-readable log lines: as `tracing`'s default, without the `otel.*`
//! fields, which only steer the exported spans (their names and kinds) and would make every
//! request's line longer for nothing a person reads.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// Formats fields as `name=value`, the message bare, skipping `otel.*`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HumanFields;

impl<'w> FormatFields<'w> for HumanFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = Visitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("otel.") {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = if name == "message" {
            write!(self.writer, "{separator}{value:?}")
        } else {
            write!(self.writer, "{separator}{name}={value:?}")
        };
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;
    use crate::telemetry::test_buffer::Buffer;

    #[test]
    fn a_line_shows_the_fields_a_person_reads_and_no_colour_codes() {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(HumanFields)
                .with_ansi(false)
                .with_writer(move || sink.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "http.request",
                otel.name = "POST /point",
                http.route = "/point",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            let _entered = span.enter();
            tracing::info!(point.id = "p-1", "accepted");
        });
        let line = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(
            line.contains(
                "http.request{http.route=\"/point\" trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"}"
            ),
            "{line}"
        );
        assert!(line.contains("accepted point.id=\"p-1\""), "{line}");
        assert!(!line.contains("otel."), "{line}");
        assert!(!line.contains('\u{1b}'), "{line}");
    }
}
