//! `GET status` and `GET health`: served from the producer's snapshot.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::Response;

use super::json_bytes;
use crate::AppState;
use crate::error::ReadAuthErrors;
use crate::models::{HealthResponse, StatusResponse};

#[utoipa::path(get, path = "/api/streaming/status", tag = "service",
    responses((status = 200, body = StatusResponse), ReadAuthErrors))]
pub async fn status(State(state): State<Arc<AppState>>) -> Response {
    json_bytes(state.snapshot().status_json.clone())
}

#[utoipa::path(get, path = "/api/streaming/health", tag = "service",
    responses((status = 200, body = HealthResponse), ReadAuthErrors))]
/// The producer's verdict (`control::report::health_verdict`, refreshed every
/// second): the same one `contimgctl health` and the dashboard show.
pub async fn health(State(state): State<Arc<AppState>>) -> Json<HealthResponse> {
    Json(state.snapshot().health.clone())
}
