//! W3C trace context across process boundaries: read from HTTP requests, NATS messages and
//! stored events, and written into the NATS messages command-api publishes, so that one trace
//! runs from a `POST` through JetStream to the projector.
//!
//! Root spans (an HTTP request, a projected event) declare a `trace_id` field, which
//! [`continue_trace`] fills: log lines written inside them carry it whether or not spans are
//! exported. When they are not, nothing builds OpenTelemetry spans, so the trace id is the one
//! the caller sent; a request without one gets a made-up, unsampled context (see
//! [`super::http::ensure_trace_context`]) that travels on with its events all the same.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::event::Metadata;

/// The W3C header carrying the trace id, the parent span id and the sampling flag.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header carrying vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";

/// Set once spans are exported; from then on trace ids are OpenTelemetry's own.
static EXPORTING: AtomicBool = AtomicBool::new(false);

pub(super) fn set_exporting() {
    EXPORTING.store(true, Ordering::Release);
}

/// Whether this process exports spans.
#[must_use]
pub fn is_exporting() -> bool {
    EXPORTING.load(Ordering::Acquire)
}

/// A trace context as its two W3C header values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeaders {
    /// `version-traceid-parentid-flags`.
    pub traceparent: String,
    /// Vendor state, when there is any.
    pub tracestate: Option<String>,
}

/// Reads a trace context from HTTP headers.
pub struct HttpHeaders<'a>(pub &'a http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Reads a trace context from NATS message headers.
pub struct NatsHeaders<'a>(pub &'a async_nats::HeaderMap);

impl Extractor for NatsHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(async_nats::HeaderValue::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

/// Reads the trace context an event's metadata recorded when it was written.
impl Extractor for Metadata {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent.as_deref(),
            TRACESTATE => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// The remote context `carrier` holds; an empty context when it holds none or a malformed one.
#[must_use]
pub fn extract(carrier: &dyn Extractor) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(carrier)
}

/// The trace id of a context, if it has a valid one.
#[must_use]
pub fn trace_id(cx: &opentelemetry::Context) -> Option<TraceId> {
    let id = cx.span().span_context().trace_id();
    (id != TraceId::INVALID).then_some(id)
}

/// Makes `span` a continuation of `parent` (a remote context) and records the trace id in its
/// `trace_id` field. With spans exported, `parent` becomes the span's OpenTelemetry parent, or
/// a new trace starts when it is empty; otherwise the field simply takes `parent`'s trace id.
pub fn continue_trace(span: &tracing::Span, parent: opentelemetry::Context) {
    let remote = trace_id(&parent);
    let id = if is_exporting() {
        // Fails only for a span the filter disabled, which has no trace to join.
        let _ = span.set_parent(parent);
        trace_id(&span.context()).or(remote)
    } else {
        remote
    };
    if let Some(id) = id {
        span.record("trace_id", tracing::field::display(id));
    }
}

/// The context of `span` as W3C headers, for a message sent on its behalf; `None` when spans
/// are not exported (the caller then passes on the context it received) or `span` has none.
#[must_use]
pub fn headers_of(span: &tracing::Span) -> Option<TraceHeaders> {
    if !is_exporting() {
        return None;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = Carrier::default();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    Some(TraceHeaders {
        traceparent: carrier.0.remove(TRACEPARENT)?,
        tracestate: carrier.0.remove(TRACESTATE).filter(|s| !s.is_empty()),
    })
}

#[derive(Default)]
struct Carrier(HashMap<String, String>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_yields_its_trace_id_and_a_malformed_one_none() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let id = trace_id(&extract(&HttpHeaders(&headers))).unwrap();
        assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");

        headers.insert(TRACEPARENT, "00-not-a-trace-01".parse().unwrap());
        assert_eq!(trace_id(&extract(&HttpHeaders(&headers))), None);
    }

    #[test]
    fn the_metadata_of_a_stored_event_is_a_trace_carrier() {
        let metadata = Metadata {
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned()),
            ..Metadata::default()
        };
        let id = trace_id(&extract(&metadata)).unwrap();
        assert_eq!(id.to_string(), "0af7651916cd43dd8448eb211c80319c");
    }
}
