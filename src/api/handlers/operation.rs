//! Running one start/stop/restart through the backend, and its HTTP answer:
//! shared by `POST start|stop|restart` (control.rs) and by `POST config`, which
//! restarts a running service (config.rs).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;
use crate::models::{ControlResponse, LogLine};
use contimg_control::{ControlOutcome, Operation};

/// Runs `op`; the caller holds `AppState::control_lock`.
pub(super) async fn run_operation(
    state: &AppState,
    op: Operation,
) -> Result<ControlOutcome, ApiError> {
    let timeout = state.settings.control_timeout;
    let _guard = state.supervisor.begin_operation(op.leaves_running());
    if !op.leaves_running() {
        state.set_should_run(false);
    }
    // The daemon's one backend (and, under systemd, its one D-Bus connection, which
    // the producer also watches): `Subscribe` happens once per connection since
    // 84e2579, so jobs no longer need a fresh connection each.
    let result = state.backend.operate(op, timeout).await;
    if op.leaves_running() && result.as_ref().is_ok_and(|o| o.success) {
        state.set_should_run(true);
    }
    state.refresh.notify_one();
    Ok(result?)
}

/// 200 with the outcome, or 500 with it and the unit's last log lines.
pub(super) fn control_response(outcome: ControlOutcome, changed: Option<Vec<String>>) -> Response {
    let (status, body) = control_answer(outcome, changed);
    (status, Json(body)).into_response()
}

/// The status and body of [`control_response`], for callers that add to the body.
pub(super) fn control_answer(
    outcome: ControlOutcome,
    changed: Option<Vec<String>>,
) -> (StatusCode, ControlResponse) {
    let status = if outcome.success {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let logs = (!outcome.success).then(|| outcome.recent_logs.iter().map(LogLine::from).collect());
    let body = ControlResponse {
        success: outcome.success,
        message: outcome.message,
        pid: outcome.pid,
        changed,
        restarted: None,
        logs,
    };
    (status, body)
}
