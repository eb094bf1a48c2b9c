//! `/status`: how far the projection has got and how much is waiting.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::connection::State as NatsState;
use async_nats::jetstream;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use sqlx::PgPool;

use geoledger_common::problem::{self, Problem};
use geoledger_common::stream::StreamSpec;

use crate::apply::read_checkpoint;
use crate::consume::Progress;
use crate::metrics::ProjectorMetrics;

const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub(crate) struct StatusState {
    pub(crate) pool: PgPool,
    pub(crate) client: async_nats::Client,
    pub(crate) spec: StreamSpec,
    pub(crate) consumer: String,
    pub(crate) progress: Arc<Progress>,
    pub(crate) registry: Arc<prometheus_client::registry::Registry>,
    pub(crate) metrics: ProjectorMetrics,
}

#[derive(Serialize)]
struct StatusBody {
    status: &'static str,
    /// Last stream sequence applied to the read model.
    checkpoint: u64,
    /// Events in the stream not yet acknowledged by the projector.
    pending: u64,
    stream: String,
    consumer: String,
    applied_events: u64,
    undecodable_events: u64,
    dead_lettered_events: u64,
}

pub(crate) fn router(state: StatusState) -> Router {
    Router::new()
        .route("/status", get(get_status))
        .route("/metrics", get(get_metrics))
        .fallback(problem::route_not_found)
        .with_state(state)
}

async fn get_status(State(state): State<StatusState>) -> Response {
    let checkpoint = match tokio::time::timeout(STATUS_TIMEOUT, read_checkpoint(&state.pool)).await
    {
        Ok(Ok(seq)) => seq,
        Ok(Err(error)) => {
            return Problem::unavailable(format!("the read model is unreachable: {error}"))
                .into_response();
        }
        Err(_) => {
            return Problem::unavailable("the read model did not answer in time").into_response();
        }
    };
    if state.client.connection_state() != NatsState::Connected {
        return Problem::unavailable("not connected to NATS").into_response();
    }
    let Some(pending) = pending(&state).await else {
        return Problem::unavailable("the consumer is not bound yet").into_response();
    };
    Json(StatusBody {
        status: "ok",
        checkpoint,
        pending,
        stream: state.spec.name.clone(),
        consumer: state.consumer.clone(),
        applied_events: state.progress.applied.load(Ordering::Relaxed),
        undecodable_events: state.progress.undecodable.load(Ordering::Relaxed),
        dead_lettered_events: state.progress.dead_lettered.load(Ordering::Relaxed),
    })
    .into_response()
}

/// Messages in the stream the consumer has not had acknowledged, or `None` when JetStream
/// cannot say within [`STATUS_TIMEOUT`].
async fn pending(state: &StatusState) -> Option<u64> {
    let js = jetstream::new(state.client.clone());
    let info = async {
        let stream = js.get_stream_no_info(&state.spec.name).await.ok()?;
        let mut consumer: jetstream::consumer::PullConsumer =
            stream.get_consumer(&state.consumer).await.ok()?;
        let info = consumer.info().await.ok()?;
        Some(info.num_pending + info.num_ack_pending as u64)
    };
    tokio::time::timeout(STATUS_TIMEOUT, info)
        .await
        .ok()
        .flatten()
}

/// The Prometheus metrics. The pending count is asked of JetStream now, because a stuck
/// projector is exactly when it matters and when the consuming loop would not update it;
/// when JetStream does not answer, the last known count stays.
async fn get_metrics(State(state): State<StatusState>) -> Response {
    if state.client.connection_state() == NatsState::Connected
        && let Some(pending) = pending(&state).await
    {
        state
            .metrics
            .pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }
    geoledger_common::metrics::render(&state.registry)
}
