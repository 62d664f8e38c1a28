//! `/api/v1/admin/system/*` (admins and ops): this node's key metrics over the last hour, kept by
//! the server (src/metric_history.rs), for the console's System page.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    error::{ApiError, Problem},
    extract::{AuthUser, Json},
};
use crate::{metric_history::MetricSample, state::AppState, users::Role};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metric_history))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MetricHistoryResponse {
    /// The node that answered (host name and process id): behind a load balancer each node
    /// keeps its own history.
    node: String,
    /// Seconds between two samples.
    interval_s: u64,
    /// Oldest first.
    samples: Vec<MetricSample>,
}

/// This node's key metrics over the last hour (by default: a sample every 10 s): live sessions,
/// HLS segments/s, recording upload backlog, chat connections, requests/s, the share of 5xx
/// answers and resident memory. Admins and ops.
#[utoipa::path(get, path = "/admin/system/metrics", tag = "admin",
    security(("bearer" = ["admin", "ops"])),
    responses((status = 200, body = MetricHistoryResponse), (status = 401, body = Problem),
              (status = 403, body = Problem)))]
async fn metric_history(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<MetricHistoryResponse>, ApiError> {
    user.require_any(&[Role::Admin, Role::Ops])?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    Ok(Json(MetricHistoryResponse {
        node: format!("{host} (pid {})", std::process::id()),
        interval_s: state.metric_history.interval.as_secs(),
        samples: state.metric_history.samples(),
    }))
}
