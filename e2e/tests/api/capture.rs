//! What the services in this test process log and trace, kept for the tests to read.
//!
//! The services run in-process, so they share one global subscriber; [`install`] sets it up
//! once, the way a binary does with `GEOLEDGER_LOG_FORMAT=json` and an OTLP endpoint: JSON log
//! lines go to a buffer (and to stderr as well when `TEST_LOG` is set), and spans go over
//! OTLP/HTTP to a receiver in this process. Tests of other things ignore both; the
//! observability tests find their own lines and spans by trace id or point id.

use std::collections::HashMap;
use std::io;
use std::sync::{Mutex, OnceLock};

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;

use geoledger_common::telemetry::{self, Export, LogFormat, Telemetry};

/// Debug for the services, so that per-request lines (which are debug) are there to check.
const FILTER: &str = "info,command_api=debug,projector=debug,query_api=debug,tower_http=debug";

static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static SPANS: Mutex<Vec<ReceivedSpan>> = Mutex::new(Vec::new());

/// A span as the OTLP receiver got it, ids in lowercase hex.
#[derive(Debug, Clone)]
pub(crate) struct ReceivedSpan {
    pub(crate) trace_id: String,
    pub(crate) span_id: String,
    /// Empty for a root span.
    pub(crate) parent_span_id: String,
    pub(crate) name: String,
    /// OTLP's `SpanKind`: 2 server, 4 producer, 5 consumer.
    pub(crate) kind: i32,
    /// String and integer attributes, as text.
    pub(crate) attributes: HashMap<String, String>,
}

impl ReceivedSpan {
    pub(crate) fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// Installs the process's subscriber and OTLP receiver, once.
pub(crate) fn install() {
    TELEMETRY.get_or_init(|| {
        let endpoint = start_receiver();
        let export = Export {
            endpoint: Some(endpoint),
            traces_endpoint: None,
            service_name: "geoledger-e2e".to_owned(),
        };
        let telemetry = telemetry::init_with_writer(LogFormat::Json, FILTER, &export, || {
            LineWriter { line: Vec::new() }
        });
        assert!(
            telemetry.exporting(),
            "the test process exports its spans to its own receiver"
        );
        telemetry
    });
}

/// The spans received so far that `wanted` picks, after asking for the ended ones to be sent
/// now. The spans of every test in the process are kept, so they are filtered under the lock
/// and only the picked ones copied.
pub(crate) fn spans_where(wanted: impl Fn(&ReceivedSpan) -> bool) -> Vec<ReceivedSpan> {
    if let Some(telemetry) = TELEMETRY.get() {
        telemetry.flush();
    }
    SPANS
        .lock()
        .expect("no test panics holding the spans")
        .iter()
        .filter(|span| wanted(span))
        .cloned()
        .collect()
}

/// The log lines written so far that contain `text`, filtered under the lock.
pub(crate) fn lines_containing(text: &str) -> Vec<String> {
    LINES
        .lock()
        .expect("no test panics holding the lines")
        .iter()
        .filter(|line| line.contains(text))
        .cloned()
        .collect()
}

/// Every log line written so far.
pub(crate) fn lines() -> Vec<String> {
    LINES
        .lock()
        .expect("no test panics holding the lines")
        .clone()
}

/// Collects one write's bytes into whole lines.
struct LineWriter {
    line: Vec<u8>,
}

impl io::Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    /// The formatter writes one event per writer, so a dropped writer holds whole lines.
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.line).into_owned();
        if std::env::var_os("TEST_LOG").is_some() {
            eprint!("{text}");
        }
        let mut lines = LINES.lock().expect("no test panics holding the lines");
        lines.extend(text.lines().map(str::to_owned));
    }
}

/// Starts the OTLP/HTTP receiver on a thread and runtime of its own, which outlive every
/// test's runtime, and returns its base URL.
fn start_receiver() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    listener
        .set_nonblocking(true)
        .expect("the listener can be made non-blocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the receiver");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)
                .expect("tokio takes the bound listener");
            let app = axum::Router::new().route("/v1/traces", axum::routing::post(receive));
            axum::serve(listener, app)
                .await
                .expect("the receiver serves");
        });
    });
    format!("http://{addr}")
}

async fn receive(body: Bytes) -> impl IntoResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain")],
        );
    };
    let mut received = Vec::new();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            for span in scope.spans {
                let attributes = span
                    .attributes
                    .into_iter()
                    .filter_map(|kv| {
                        let value = match kv.value?.value? {
                            AnyValue::StringValue(s) => s,
                            AnyValue::IntValue(i) => i.to_string(),
                            AnyValue::BoolValue(b) => b.to_string(),
                            AnyValue::DoubleValue(d) => d.to_string(),
                            _ => return None,
                        };
                        Some((kv.key, value))
                    })
                    .collect();
                received.push(ReceivedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    attributes,
                });
            }
        }
    }
    SPANS
        .lock()
        .expect("no test panics holding the spans")
        .extend(received);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
    )
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        write!(s, "{b:02x}").expect("a String takes any text");
        s
    })
}
