//! `/status`: whether this instance can publish right now. The load balancer takes an instance
//! out of rotation on a 503 here.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use geoledger_common::problem::Problem;

use crate::publish::Publisher;

pub(super) fn router() -> Router<Publisher> {
    Router::new().route("/status", get(get_status))
}

async fn get_status(State(publisher): State<Publisher>) -> Response {
    match publisher.check().await {
        Ok(stream) => Json(serde_json::json!({ "status": "ok", "stream": stream })).into_response(),
        Err(reason) => Problem::unavailable(reason).into_response(),
    }
}
