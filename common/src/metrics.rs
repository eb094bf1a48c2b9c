//! Prometheus metrics: the registry each service serves at `GET /metrics`, the HTTP request
//! metrics both APIs share, and the connection pool gauges of the services with a database.
//!
//! Each service instance has its own registry rather than one per process, so that services
//! started side by side in one test process each report only their own numbers. Every name
//! starts with `geoledger_`.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Media type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A registry whose names all start with `geoledger_`.
#[must_use]
pub fn registry() -> Registry {
    Registry::with_prefix("geoledger")
}

/// `registry` in the Prometheus text format, as an HTTP answer.
#[must_use]
pub fn render(registry: &Registry) -> Response {
    let mut body = String::new();
    if let Err(error) = prometheus_client::encoding::prometheus_text::encode(&mut body, registry) {
        return crate::problem::Problem::internal(&error).into_response();
    }
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        body,
    )
        .into_response()
}

/// `GET /metrics` serving `registry`.
pub fn route<S>(registry: Registry) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let registry = Arc::new(registry);
    Router::new().route(
        "/metrics",
        get(move || {
            let registry = Arc::clone(&registry);
            async move { render(&registry) }
        }),
    )
}

/// Buckets for latencies, from half a millisecond to about 16 seconds, doubling.
#[must_use]
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The labels of a request: the route template (never the raw path), the method and the
/// status, all of bounded cardinality.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

/// Request counts and latencies, by route, method and status.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
}

impl HttpMetrics {
    /// Registers `http_requests_total` and `http_request_duration_seconds` in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status",
            metrics.duration.clone(),
        );
        metrics
    }
}

/// Middleware counting and timing each request; it runs inside the request's span (see
/// [`crate::telemetry::http::request_span`]) and records the status there too.
pub async fn track_requests(
    State(metrics): State<HttpMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = crate::telemetry::http::route(&request).to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let span = tracing::Span::current();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    let labels = RequestLabels {
        method,
        route,
        status: status.as_u16(),
    };
    metrics.requests.get_or_create(&labels).inc();
    metrics
        .duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The method as a label; methods outside the standard set are one label, so a client
/// inventing methods cannot grow the series without bound.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Reports a connection pool's use at each scrape.
#[derive(Debug)]
pub struct PoolCollector {
    pool: sqlx::PgPool,
}

impl PoolCollector {
    /// Registers the `db_pool_*` gauges of `pool` in `registry`.
    pub fn register(registry: &mut Registry, pool: sqlx::PgPool) {
        registry.register_collector(Box::new(Self { pool }));
    }
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let open = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        let gauges = [
            (
                "db_pool_connections_in_use",
                "Pooled database connections lent out now",
                open.saturating_sub(idle),
            ),
            (
                "db_pool_connections_idle",
                "Pooled database connections open and waiting to be used",
                idle,
            ),
            (
                "db_pool_connections_max",
                "Most connections the pool opens",
                self.pool.options().get_max_connections(),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::from(value));
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}
