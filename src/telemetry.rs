//! Logs and metrics.
//!
//! Logs go through `tracing`: readable in a terminal (`log.format = "pretty"`) or one JSON
//! object per line (`"json"`). Every HTTP request runs inside a span carrying its
//! `request_id`, so each line logged while serving it names the request.
//!
//! Metrics use the `metrics` facade with a Prometheus recorder installed once per process;
//! `/metrics` renders it. Process metrics (CPU, RSS, fds) are collected at render time.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::{LogFormat, LogSettings};

/// Install the global tracing subscriber. `RUST_LOG` wins over `log.level`.
/// A second call (tests build several apps in one process) is a no-op.
pub fn init_tracing(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match settings.format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().with_target(false)).try_init(),
    };
    drop(result);
}

/// Seconds buckets for HTTP latency: 1 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("static bucket list is non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may exist in tests that link other code; ours still renders.
            drop(metrics::set_global_recorder(recorder));
            metrics_process::Collector::default().describe();
            metrics::describe_counter!(
                "http_requests_total",
                "HTTP requests served, by method, route and status"
            );
            metrics::describe_histogram!(
                "http_request_duration_seconds",
                metrics::Unit::Seconds,
                "HTTP request latency, by method, route and status"
            );
            metrics::describe_gauge!(
                "wemaster_build_info",
                "Build information; the value is always 1"
            );
            metrics::gauge!("wemaster_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

/// Render every metric in the Prometheus text format, refreshing process metrics first.
pub fn render_metrics() -> String {
    let handle = metrics_handle();
    metrics_process::Collector::default().collect();
    crate::recordings::recorder::refresh_queue_metrics();
    handle.render()
}
