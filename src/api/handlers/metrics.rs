//! `GET metrics` (JSON) and `GET /metrics` (Prometheus text): both pre-rendered
//! by the producer.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::json_bytes;
use crate::AppState;
use crate::error::ReadAuthErrors;
use crate::models::MetricsResponse;

#[utoipa::path(get, path = "/api/streaming/metrics", tag = "service",
    responses((status = 200, body = MetricsResponse), ReadAuthErrors))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    json_bytes(state.snapshot().metrics_json.clone())
}

#[utoipa::path(get, path = "/metrics", tag = "prometheus",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        ReadAuthErrors))]
pub async fn prometheus(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.snapshot().prometheus.clone(),
    )
        .into_response()
}
