//! `GET disk`: usage of every configured directory and its free-space trend.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::disk::DirUsage;
use crate::error::{ApiError, ErrorBody, ReadAuthErrors};
use crate::history::{DiskTrend, window_spec};
use contimg_core::queue::unix_now;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DiskParams {
    /// Span of the trend: 1h, 24h (default) or 7d (raw samples are kept 26 h).
    pub window: Option<String>,
}

/// `GET /api/streaming/disk`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DiskResponse {
    /// One entry per configured directory, as measured every 30 s; empty while
    /// the configuration cannot be read.
    pub dirs: Vec<DirUsage>,
    pub window: String,
    pub step_seconds: u64,
    /// Free bytes per directory over the window, averaged per step (sampled
    /// every `monitor_interval`).
    pub trend: Vec<DiskTrend>,
}

#[utoipa::path(get, path = "/api/streaming/disk", tag = "service", params(DiskParams),
    responses((status = 200, body = DiskResponse),
        (status = 400, description = "Invalid query parameter", body = ErrorBody),
        ReadAuthErrors,
        (status = 500, description = "The history DB cannot be read", body = ErrorBody)))]
pub async fn disk(
    State(state): State<Arc<AppState>>,
    Query(params): Query<DiskParams>,
) -> Result<Json<DiskResponse>, ApiError> {
    let window = params.window.unwrap_or_else(|| "24h".to_string());
    let Some((_, step)) = window_spec(&window) else {
        return Err(ApiError::BadRequest(format!(
            "window = {window:?}: expected 1h, 24h or 7d"
        )));
    };
    let trend = state.history.disk_trend(&window, unix_now()).await?;
    Ok(Json(DiskResponse {
        dirs: state.snapshot().disks.as_ref().clone(),
        window,
        step_seconds: step as u64,
        trend,
    }))
}
