//! Request handlers, one file per resource (the layout of pueue's
//! `daemon/network/message_handler/`), and [`router`] with [`routes`], the one table that maps
//! every path to its handler.
//!
//! Reads come from the producer's snapshot (`crate::events`); control operations
//! go through the backend one at a time (`AppState::control_lock`).
//!
//! | file | endpoints |
//! |---|---|
//! | `status.rs` | `GET status`, `GET health` |
//! | `metrics.rs` | `GET metrics`, `GET /metrics` (Prometheus) |
//! | `sse.rs` | `GET events` |
//! | `config.rs` | `GET/POST config` (and the patch a start/restart may carry) |
//! | `control.rs` | `POST start`, `stop`, `restart` |
//! | `operation.rs` | running one operation through the backend, its answer |
//! | `logs.rs` | `GET logs` |
//! | `history.rs` | `GET history` |
//! | `disk.rs` | `GET disk` |
//! | `groups.rs` | `GET groups`, `GET groups/{id}`, `GET groups/{id}/log`, `POST groups/{id}/retry` (`with_queue`) |
//! | `limits.rs` | `GET/POST limits` |
//! | `alerts.rs` | `GET alerts` |
//! | `openapi.rs` | `GET /api/openapi.json`: the document of all the above |

pub mod alerts;
pub mod config;
pub mod control;
pub mod disk;
pub mod groups;
pub mod history;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod openapi;
pub mod operation;
pub mod sse;
pub mod status;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::error::{self, ApiError};
use crate::{AppState, BODY_LIMIT_BYTES, auth, connections, dashboard};

const JSON: HeaderValue = HeaderValue::from_static("application/json");
/// How often an idle server-sent event stream gets a `ping` comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The complete router: [`routes`], the fallbacks and the dashboard, and the
/// layers every answer passes (JSON errors, body limit and deadline).
pub fn router(state: Arc<AppState>) -> Router {
    let mut app = Router::new().merge(routes(state.clone()));
    if state.settings.bench_routes {
        app = app.route("/api/bench/static", get(bench_static));
    }
    app = app
        .route("/api", get(not_found).post(not_found))
        .route("/api/{*rest}", axum::routing::any(not_found));
    app = dashboard::mount(app, state.settings.dashboard_dir.as_deref());
    app.layer(axum::middleware::map_response(error::jsonify_errors))
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(tower_http::timeout::RequestBodyDeadlineLayer::new(
            connections::REQUEST_BODY_DEADLINE,
        ))
        .with_state(state)
}

/// Every endpoint behind the token check, by path.
pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/streaming/status", get(status::status))
        .route("/api/streaming/health", get(status::health))
        .route(
            "/api/streaming/config",
            get(config::get_config).post(config::post_config),
        )
        .route("/api/streaming/metrics", get(metrics::metrics))
        .route("/api/streaming/start", post(control::start))
        .route("/api/streaming/stop", post(control::stop))
        .route("/api/streaming/restart", post(control::restart))
        .route("/api/streaming/events", get(sse::events))
        .route("/api/streaming/logs", get(logs::logs))
        .route("/api/streaming/history", get(history::history))
        .route("/api/streaming/disk", get(disk::disk))
        .route("/api/streaming/groups", get(groups::groups))
        .route("/api/streaming/groups/{id}", get(groups::group))
        .route("/api/streaming/groups/{id}/log", get(groups::group_log))
        .route(
            "/api/streaming/groups/{id}/retry",
            post(groups::retry_group),
        )
        .route(
            "/api/streaming/limits",
            get(limits::get_limits).post(limits::post_limits),
        )
        .route("/api/streaming/alerts", get(alerts::alerts))
        .route("/api/openapi.json", get(openapi::serve))
        .route("/metrics", get(metrics::prometheus))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            auth::require_token,
        ))
}

fn json_bytes(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, JSON)], body).into_response()
}

fn sse_event(kind: &str, data: &str) -> SseEvent {
    SseEvent::default().event(kind).data(data)
}

/// Parses an optional JSON object body. Empty body and `{}` both mean "nothing".
fn parse_object(body: &Bytes) -> Result<Option<Map<String, Value>>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| ApiError::BadRequest(format!("malformed JSON body: {err}")))?;
    match value {
        Value::Object(map) if map.is_empty() => Ok(None),
        Value::Object(map) => Ok(Some(map)),
        Value::Null => Ok(None),
        other => Err(ApiError::BadRequest(format!(
            "the body must be a JSON object, not {}",
            match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                _ => "a boolean",
            }
        ))),
    }
}

/// Benchmark baseline (`--bench-routes` only): the cheapest possible handler.
pub async fn bench_static() -> Response {
    json_bytes(Bytes::from_static(b"{\"ok\":true}"))
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint (see /api/openapi.json)".to_string())
}
