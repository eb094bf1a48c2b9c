//! Logs and traces, set up alike by the three binaries.
//!
//! Logs go to stderr through `tracing`: human-readable lines (see [`text`]), coloured only when
//! stderr is a terminal, or with `GEOLEDGER_LOG_FORMAT=json` one flat JSON object a line (see
//! [`json`]), whose members include the `trace_id`, `request.id` and `point.id` of the spans
//! it was written in.
//!
//! Spans are exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or its traces-only
//! variant) is set, following the standard `OTEL_*` variables: `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SDK_DISABLED`. Without an endpoint no OpenTelemetry
//! layer is installed at all, so a span costs what it costs without one; log lines then take
//! their trace id from the request's `traceparent`, made up when it had none (see
//! [`propagation`]).
//!
//! The exporter is wired here, in the shared crate, rather than in each binary: the three
//! set-ups would be the same lines three times, and drift apart.
//!
//! # Limitations
//! OTLP goes over plain HTTP with protobuf bodies, to a collector or agent such as the one a
//! tracing back end ships (port 4318). gRPC and `https` endpoints are not built in: a TLS
//! stack would double the build for a hop that usually stays on the host.

pub mod http;
pub mod json;
pub mod propagation;
pub mod text;

/// A log sink the formatters' tests read back.
#[cfg(test)]
mod test_buffer {
    use std::io;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub(crate) struct Buffer(pub(crate) Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}

use std::io::IsTerminal as _;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::SecretUrl;

/// Spans waiting to be exported before new ones are dropped: about 16 MB at most.
const MAX_QUEUED_SPANS: usize = 16 * 1024;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object a line, for log collectors.
    Json,
    /// Human-readable lines.
    #[default]
    Text,
}

/// Where spans are exported, read from the standard OpenTelemetry variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Export {
    /// Base URL of an OTLP/HTTP receiver (`/v1/traces` is appended); `None` exports nothing.
    pub endpoint: Option<String>,
    /// Full URL spans are sent to, when given on its own (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
    pub traces_endpoint: Option<String>,
    /// The `service.name` of the spans, unless `OTEL_SERVICE_NAME` says otherwise.
    pub service_name: String,
}

impl Export {
    /// The export the environment asks for; `service_name` is the binary's name.
    #[must_use]
    pub fn from_env(service_name: &str) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Self {
            endpoint: var("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|_| !disabled),
            traces_endpoint: var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").filter(|_| !disabled),
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| service_name.to_owned()),
        }
    }

    /// No export: logs only.
    #[must_use]
    pub fn none(service_name: &str) -> Self {
        Self {
            service_name: service_name.to_owned(),
            ..Self::default()
        }
    }

    /// The URL spans are posted to, if any.
    fn url(&self) -> Option<String> {
        self.traces_endpoint.clone().or_else(|| {
            self.endpoint
                .as_deref()
                .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
        })
    }
}

/// Keeps the span exporter alive; dropping it sends the spans still buffered.
#[must_use = "dropping the guard stops exporting spans"]
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are being exported.
    #[must_use]
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans that have ended so far, now rather than at the next batch; blocks
    /// until the receiver answered. For tests.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(error) = provider.force_flush()
        {
            tracing::warn!(error.message = %error, "spans could not be exported");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(error.message = %error, "spans still buffered were not exported");
        }
    }
}

/// Installs the global subscriber writing to stderr, exporting spans as `export` says.
/// `RUST_LOG` overrides `default_filter`.
pub fn init(format: LogFormat, default_filter: &str, export: &Export) -> Telemetry {
    let ansi = std::io::stderr().is_terminal();
    install(format, default_filter, export, std::io::stderr, ansi)
}

/// As [`init`], with the writer chosen by the caller (tests pass a sink) and no colours.
pub fn init_with_writer<W>(
    format: LogFormat,
    default_filter: &str,
    export: &Export,
    writer: W,
) -> Telemetry
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    install(format, default_filter, export, writer, false)
}

fn install<W>(
    format: LogFormat,
    default_filter: &str,
    export: &Export,
    writer: W,
    ansi: bool,
) -> Telemetry
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let (provider, export_error) = match export.url() {
        Some(url) => match tracer_provider(&url, &export.service_name) {
            Ok(provider) => (Some(provider), None),
            Err(error) => (None, Some(error)),
        },
        None => (None, None),
    };
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("geoledger"))
            // Busy and idle times per span are extra attributes nobody asked for, and
            // measuring them costs a clock read on every enter and exit.
            .with_tracked_inactivity(false)
    });
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let installed = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(json::FlatJson)
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(text::HumanFields)
                    .with_ansi(ansi)
                    .with_writer(writer),
            )
            .try_init(),
    };
    // A second call (several services in one test process) keeps the first subscriber, and
    // with it the first call's exporter.
    if installed.is_err() {
        if let Some(provider) = provider {
            let _ = provider.shutdown();
        }
        return Telemetry { provider: None };
    }
    if let Some(error) = export_error {
        tracing::warn!(
            error.message = %error,
            "the OTLP exporter could not be built; spans are not exported"
        );
    }
    if let (Some(url), Some(_)) = (export.url(), &provider) {
        propagation::set_exporting();
        let Ok(url) = url.parse::<SecretUrl>();
        tracing::info!(
            otel.endpoint = %url,
            otel.service_name = %export.service_name,
            "exporting spans over OTLP"
        );
    }
    Telemetry { provider }
}

fn tracer_provider(
    url: &str,
    service_name: &str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()?;
    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    // The sampler comes from OTEL_TRACES_SAMPLER, the batch limits from OTEL_BSP_*. The
    // queue is larger than the SDK's 2,048 spans unless set there: one `POST /points` of
    // 1,000 items ends 1,000 publish spans at once, and a full queue drops spans.
    let mut batch = BatchConfigBuilder::default();
    if std::env::var_os("OTEL_BSP_MAX_QUEUE_SIZE").is_none() {
        batch = batch.with_max_queue_size(MAX_QUEUED_SPANS);
    }
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch.build())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generic_endpoint_gets_the_traces_path_and_the_specific_one_wins() {
        let mut export = Export {
            endpoint: Some("http://127.0.0.1:4318/".to_owned()),
            traces_endpoint: None,
            service_name: "x".to_owned(),
        };
        assert_eq!(
            export.url().as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        export.traces_endpoint = Some("http://collector:9999/spans".to_owned());
        assert_eq!(export.url().as_deref(), Some("http://collector:9999/spans"));
        assert_eq!(Export::none("x").url(), None);
    }
}
