//! `GET/POST config`, and the config patch a start or restart may carry.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value};

use super::operation::{control_answer, run_operation};
use super::parse_object;
use crate::AppState;
use crate::error::{
    ApiError, BodyErrors, ConfigChangeErrors, ControlErrors, ErrorBody, MutationAuthErrors,
    ReadAuthErrors,
};
use crate::models::ControlResponse;
use contimg_control::Operation;
use contimg_core::config::StreamingConfig;

fn load_config(state: &AppState) -> Result<StreamingConfig, ApiError> {
    state
        .store
        .load()
        .map(|(config, _)| config)
        .map_err(ApiError::Config)
}

fn check_if_match(headers: &HeaderMap, current: &StreamingConfig) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let given = value.to_str().unwrap_or_default().trim();
    let etag = current.etag();
    let matches = given == "*"
        || given
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag);
    if matches {
        Ok(())
    } else {
        Err(ApiError::StaleConfig {
            given: given.to_string(),
            current: etag,
        })
    }
}

/// Validates and saves a patch; returns the names of changed fields. The caller
/// holds `AppState::control_lock`.
pub(super) fn apply_config_patch(
    state: &AppState,
    headers: &HeaderMap,
    patch: &Map<String, Value>,
) -> Result<Vec<String>, ApiError> {
    let current = load_config(state)?;
    check_if_match(headers, &current)?;
    let updated = current.apply_patch(patch).map_err(ApiError::Validation)?;
    let changed: Vec<String> = current
        .diff(&updated)
        .into_iter()
        .map(|(field, ..)| field)
        .collect();
    if !changed.is_empty() {
        state
            .store
            .save(&updated)
            .map_err(|err| match err.validation_errors() {
                Some(errors) => ApiError::Validation(errors.clone()),
                None => ApiError::Config(err),
            })?;
        tracing::info!(?changed, "configuration updated through the API");
    }
    Ok(changed)
}

#[utoipa::path(get, path = "/api/streaming/config", tag = "config",
    responses((status = 200, description = "The streaming configuration", body = Object, headers(("ETag" = String, description = "Pass as If-Match to POST config"))),
        ReadAuthErrors,
        (status = 500, description = "The configuration file cannot be read", body = ErrorBody)))]
pub async fn get_config(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let config = load_config(&state)?;
    let etag =
        HeaderValue::from_str(&config.etag()).map_err(|err| ApiError::Internal(err.to_string()))?;
    Ok((
        [(header::ETAG, etag)],
        Json(Value::Object(config.to_json())),
    )
        .into_response())
}

#[utoipa::path(post, path = "/api/streaming/config", tag = "config",
    request_body(content = Option<Object>, description = "A full or partial StreamingConfig; no body or {} changes nothing"),
    params(("If-Match" = Option<String>, Header, description = "ETag from GET config")),
    responses((status = 200, body = ControlResponse), BodyErrors, MutationAuthErrors,
        ConfigChangeErrors, ControlErrors),
    security(("bearer" = [])))]
pub async fn post_config(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // A config change is an object; `null` is not "no change" here (it is for
    // start/restart, whose body is optional).
    if matches!(serde_json::from_slice::<Value>(&body), Ok(Value::Null)) {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object of config fields, not null".to_string(),
        ));
    }
    let patch = parse_object(&body)?.unwrap_or_default();
    let _lock = state.control_lock.lock().await;
    let changed = apply_config_patch(&state, &headers, &patch)?;
    let running = state
        .backend
        .status()
        .await
        .map(|s| s.running)
        .unwrap_or(false);
    if running && !changed.is_empty() {
        let outcome = run_operation(&state, Operation::Restart).await?;
        let (status, mut body) = control_answer(outcome, Some(changed));
        body.restarted = Some(body.success);
        if body.success {
            body.message = format!("configuration saved; {}", body.message);
        }
        return Ok((status, Json(body)).into_response());
    }
    state.refresh.notify_one();
    let message = if changed.is_empty() {
        "configuration unchanged".to_string()
    } else if running {
        "configuration saved".to_string()
    } else {
        "configuration saved; the service is not running (applied at next start)".to_string()
    };
    Ok(Json(ControlResponse {
        success: true,
        message,
        pid: state.snapshot().status.pid,
        changed: Some(changed),
        restarted: Some(false),
        logs: None,
    })
    .into_response())
}
