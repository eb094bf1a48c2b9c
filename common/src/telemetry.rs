//! Logging set-up shared by the binaries.
//!
//! # Limitations
//! Traces are not exported over OTLP yet: the `traceparent` of a request is carried into each
//! event's metadata, but spans only reach the log. Until an exporter is wired in, following one
//! write across services means searching the logs for its correlation id.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object a line, for log collectors.
    Json,
    /// Human-readable lines.
    #[default]
    Text,
}

/// Installs the global subscriber writing to stderr. `RUST_LOG` overrides `default_filter`.
pub fn init(format: LogFormat, default_filter: &str) {
    init_with_writer(format, default_filter, std::io::stderr);
}

/// As [`init`], with the writer chosen by the caller (tests pass a sink).
pub fn init_with_writer<W>(format: LogFormat, default_filter: &str, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    // A second call (several tests in one process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
