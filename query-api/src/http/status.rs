//! `/status`: whether this instance can answer reads right now, and how far the read model has
//! got in the event stream. A load balancer takes an instance out of rotation on a 503 here.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::caching::read_checkpoint;
use crate::error::{ApiError, ApiResult};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/status", get(get_status))
}

/// A healthy query-api instance.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Status {
    status: &'static str,
    /// Stream sequence of the last event the projector applied; 0 before the first.
    checkpoint: i64,
}

/// How long the database gets to answer before the instance counts as unavailable; well under
/// the usual health-check interval, so a stalled database is reported rather than waited on.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether this instance can serve: 200 while the database answers, else 503.
#[utoipa::path(
    get,
    path = "/status",
    tag = "health",
    operation_id = "getStatus",
    responses(
        (status = 200, description = "The instance can serve. query-api answers its \
            checkpoint; command-api, on its own address, answers its stream. Through \
            HAProxy, GET /status reaches a query-api instance.", body = Status),
        (status = 503, description = "The database (query-api) or NATS (command-api) cannot \
            be reached", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_status(State(state): State<AppState>) -> ApiResult<Json<Status>> {
    // Answering at all proves the database is reachable; reading the checkpoint also proves
    // the read model exists.
    let probe = read_checkpoint(&state.probe_pool);
    let checkpoint = tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .map_err(|_| ApiError::database_timeout())??;
    Ok(Json(Status {
        status: "ok",
        checkpoint: checkpoint.seq,
    }))
}
