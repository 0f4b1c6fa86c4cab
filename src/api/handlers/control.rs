//! `POST start|stop|restart`. A start or restart may carry a config patch, saved
//! (validated, If-Match checked) before the operation runs.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;

use super::config::apply_config_patch;
use super::operation::{control_response, run_operation};
use super::parse_object;
use crate::AppState;
use crate::error::{
    ApiError, BodyErrors, ConfigChangeErrors, ControlErrors, ErrorBody, MutationAuthErrors,
};
use crate::models::ControlResponse;
use contimg_control::Operation;

async fn control(
    state: Arc<AppState>,
    op: Operation,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let patch = match op {
        // A stop's body is ignored (documented so): nothing to configure.
        Operation::Stop => None,
        Operation::Start | Operation::Restart => parse_object(&body)?,
    };
    let _lock = state.control_lock.lock().await;
    let changed = match &patch {
        Some(patch) => Some(apply_config_patch(&state, &headers, patch)?),
        None => None,
    };
    let outcome = run_operation(&state, op).await?;
    Ok(control_response(outcome, changed))
}

#[utoipa::path(post, path = "/api/streaming/start", tag = "service",
    request_body(content = Option<Object>, description = "None, {} or a full/partial config (saved first)"),
    params(("If-Match" = Option<String>, Header, description = "ETag from GET config, when the body changes it")),
    responses((status = 200, body = ControlResponse), BodyErrors, MutationAuthErrors,
        ConfigChangeErrors, ControlErrors),
    security(("bearer" = [])))]
pub async fn start(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    control(state, Operation::Start, headers, body).await
}

#[utoipa::path(post, path = "/api/streaming/stop", tag = "service",
    request_body(content = Option<String>, content_type = "application/octet-stream", description = "Ignored"),
    responses((status = 200, body = ControlResponse), BodyErrors, MutationAuthErrors,
        (status = 422, description = "The backend refused the request as invalid", body = ErrorBody),
        ControlErrors),
    security(("bearer" = [])))]
pub async fn stop(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    control(state, Operation::Stop, headers, body).await
}

#[utoipa::path(post, path = "/api/streaming/restart", tag = "service",
    request_body(content = Option<Object>, description = "None, {} or a full/partial config (saved first)"),
    params(("If-Match" = Option<String>, Header, description = "ETag from GET config, when the body changes it")),
    responses((status = 200, body = ControlResponse), BodyErrors, MutationAuthErrors,
        ConfigChangeErrors, ControlErrors),
    security(("bearer" = [])))]
pub async fn restart(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    control(state, Operation::Restart, headers, body).await
}
