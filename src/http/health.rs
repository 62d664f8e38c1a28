//! Probes and metrics: `/healthz` (the process answers), `/readyz` (every dependency answers),
//! `/metrics` (Prometheus text format). Unauthenticated by design: load balancers and scrapers
//! call them; they reveal no data beyond dependency names and process figures.

use std::time::Duration;

use axum::{
    Router,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use serde::Serialize;

use super::extract::Json;
use crate::{state::AppState, telemetry};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
}

async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[derive(Serialize)]
struct Check {
    name: &'static str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    latency_ms: u64,
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    /// Names of the failing dependencies (empty when ready).
    failing: Vec<&'static str>,
    checks: Vec<Check>,
}

/// Each probe gets this long; a stalled dependency is as unready as a dead one.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

async fn probe<F, E>(name: &'static str, fut: F) -> Check
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let start = std::time::Instant::now();
    let result = tokio::time::timeout(PROBE_TIMEOUT, fut).await;
    let latency_ms = start.elapsed().as_millis() as u64;
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
    };
    if let Some(e) = &error {
        tracing::warn!(dependency = name, error = %e, "readiness check failed");
    }
    Check {
        name,
        status: if error.is_none() { "ok" } else { "failing" },
        error,
        latency_ms,
    }
}

async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    let gstreamer = async {
        if state.missing_elements.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "missing GStreamer elements: {} (run `wemaster doctor`)",
                state.missing_elements.join(", ")
            ))
        }
    };
    let (pg, redis, storage, gst) = tokio::join!(
        probe("postgres", crate::db::ping(&state.db)),
        probe("redis", state.redis.ping()),
        probe("storage", state.storage.check()),
        probe("gstreamer", gstreamer),
    );
    let checks = vec![pg, redis, storage, gst];
    let failing: Vec<&'static str> = checks
        .iter()
        .filter(|c| c.error.is_some())
        .map(|c| c.name)
        .collect();
    let ready = failing.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(Readiness {
            status: if ready { "ok" } else { "unavailable" },
            failing,
            checks,
        }),
    )
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        telemetry::render_metrics(),
    )
}
