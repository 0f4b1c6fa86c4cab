//! `GET/POST limits`: the worker's memory and CPU limits (systemd, docker).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use bytes::Bytes;
use serde_json::Value;

use super::parse_object;
use crate::AppState;
use crate::error::{ApiError, BodyErrors, ErrorBody, MutationAuthErrors, ReadAuthErrors};
use crate::models::{LimitsRequest, LimitsView};
use contimg_control::ResourceLimits;
use contimg_core::config::ValidationErrors;

#[utoipa::path(get, path = "/api/streaming/limits", tag = "limits",
    responses((status = 200, body = LimitsView),
        ReadAuthErrors,
        (status = 500, description = "The limits cannot be read", body = ErrorBody),
        (status = 501, description = "The backend has no resource limits", body = ErrorBody),
        (status = 503, description = "The backend is unreachable", body = ErrorBody)))]
pub async fn get_limits(State(state): State<Arc<AppState>>) -> Result<Json<LimitsView>, ApiError> {
    let limits = state.backend.limits().await?;
    Ok(Json(LimitsView {
        memory_max_bytes: limits.memory_max_bytes,
        cpu_quota_percent: limits.cpu_quota_percent,
    }))
}

#[utoipa::path(post, path = "/api/streaming/limits", tag = "limits",
    request_body(content = Option<LimitsRequest>, description = "Omitted = unchanged, null = no limit"),
    responses((status = 200, description = "The limits now in force", body = LimitsView),
        BodyErrors,
        MutationAuthErrors,
        (status = 422, description = "Invalid values: `details` lists every problem", body = ErrorBody),
        (status = 500, description = "The limits could not be applied", body = ErrorBody),
        (status = 501, description = "The backend cannot set limits: the process backend has no cgroup (use systemd or docker)", body = ErrorBody),
        (status = 503, description = "The backend is unreachable", body = ErrorBody),
        (status = 504, description = "Not finished within control_timeout", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn post_limits(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<LimitsView>, ApiError> {
    let patch = parse_object(&body)?.unwrap_or_default();
    let _lock = state.control_lock.lock().await;
    let mut limits: ResourceLimits = state.backend.limits().await?;
    let mut persistent = false;
    let mut errors = ValidationErrors::default();
    for (key, value) in &patch {
        match key.as_str() {
            "memory_max_bytes" => match value {
                Value::Null => limits.memory_max_bytes = None,
                v => match v.as_u64() {
                    Some(bytes) if bytes > 0 => limits.memory_max_bytes = Some(bytes),
                    _ => errors.push(key, "expected a positive integer (bytes) or null"),
                },
            },
            "cpu_quota_percent" => match value {
                Value::Null => limits.cpu_quota_percent = None,
                v => match v.as_f64() {
                    Some(p) if p.is_finite() && p > 0.0 => limits.cpu_quota_percent = Some(p),
                    _ => errors.push(
                        key,
                        "expected a positive number (percent of one core) or null",
                    ),
                },
            },
            "persistent" => match value.as_bool() {
                Some(flag) => persistent = flag,
                None => errors.push(key, "expected a boolean"),
            },
            _ => errors.push(key, "unknown field"),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let applied = state.backend.set_limits(&limits, persistent).await?;
    state.refresh.notify_one();
    Ok(Json(LimitsView {
        memory_max_bytes: applied.memory_max_bytes,
        cpu_quota_percent: applied.cpu_quota_percent,
    }))
}
