//! `GET history`: the sampled time series of the last hour, day or week.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::{ApiError, ErrorBody, ReadAuthErrors};
use crate::history::{HistoryResponse, window_spec};
use contimg_core::queue::unix_now;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// 1h (default), 24h or 7d.
    pub window: Option<String>,
}

#[utoipa::path(get, path = "/api/streaming/history", tag = "history", params(HistoryParams),
    responses((status = 200, body = HistoryResponse),
        (status = 400, description = "Invalid query parameter", body = ErrorBody),
        ReadAuthErrors,
        (status = 500, description = "The history DB cannot be read", body = ErrorBody)))]
pub async fn history(
    State(state): State<Arc<AppState>>,
    Query(params): Query<HistoryParams>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let window = params.window.unwrap_or_else(|| "1h".to_string());
    if window_spec(&window).is_none() {
        return Err(ApiError::BadRequest(format!(
            "window = {window:?}: expected 1h, 24h or 7d"
        )));
    }
    state
        .history
        .query(&window, unix_now())
        .await
        .map(Json)
        .map_err(ApiError::from)
}
