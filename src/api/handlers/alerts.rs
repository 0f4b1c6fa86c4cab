//! `GET alerts`: the alert engine's active and recent alerts.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use crate::AppState;
use crate::error::{ApiError, ErrorBody, ReadAuthErrors};
use contimg_control::alerts::AlertList;

#[utoipa::path(get, path = "/api/streaming/alerts", tag = "alerts",
    responses((status = 200, body = AlertList),
        ReadAuthErrors,
        (status = 500, description = "The alert engine is unavailable", body = ErrorBody)))]
pub async fn alerts(State(state): State<Arc<AppState>>) -> Result<Json<AlertList>, ApiError> {
    state
        .alerts
        .lock()
        .map(|engine| Json(engine.list()))
        .map_err(|_| ApiError::Internal("alert engine unavailable".to_string()))
}
