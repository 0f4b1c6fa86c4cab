//! Request handlers. Reads come from the producer's snapshot; control operations
//! go through the backend one at a time (`AppState::control_lock`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use utoipa::IntoParams;

use super::AppState;
use super::error::{
    ApiError, BodyErrors, ConfigChangeErrors, ControlErrors, ErrorBody, MutationAuthErrors,
    ReadAuthErrors,
};
use super::history::{HistoryResponse, window_spec};
use super::models::{
    ControlResponse, GroupDetailView, GroupList, GroupView, HealthResponse, LimitsRequest,
    LimitsView, LogLine, LogsResponse, MetricsResponse, RetryResponse, ServerSentEvent,
    StatusResponse,
};
use contimg_control::alerts::AlertList;
use contimg_control::{ControlOutcome, LogQuery, ResourceLimits};
use contimg_core::config::{StreamingConfig, ValidationErrors};
use contimg_core::queue::{GroupFilter, GroupState, QueueReader, request_retry, unix_now};

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn json_bytes(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, JSON)], body).into_response()
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

fn load_config(state: &AppState) -> Result<StreamingConfig, ApiError> {
    state
        .store
        .load()
        .map(|(config, _)| config)
        .map_err(|err| ApiError::Internal(err.to_string()))
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
        Err(ApiError::PreconditionFailed(format!(
            "the configuration changed since you read it (If-Match {given}, current ETag {etag}); reload and retry"
        )))
    }
}

/// Validates and saves a patch; returns the names of changed fields.
fn apply_config_patch(
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
                None => ApiError::Internal(err.to_string()),
            })?;
        tracing::info!(?changed, "configuration updated through the API");
    }
    Ok(changed)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Operation {
    Start,
    Stop,
    Restart,
}

async fn run_operation(state: &AppState, op: Operation) -> Result<ControlOutcome, ApiError> {
    let timeout = state.settings.control_timeout;
    let _guard = state.supervisor.begin_operation(op != Operation::Stop);
    if op == Operation::Stop {
        state.set_should_run(false);
    }
    // The daemon's one backend (and, under systemd, its one D-Bus connection, which
    // the producer also watches): `Subscribe` happens once per connection since
    // 84e2579, so jobs no longer need a fresh connection each.
    let backend = &state.backend;
    let result = match op {
        Operation::Start => backend.start(timeout).await,
        Operation::Stop => backend.stop(timeout).await,
        Operation::Restart => backend.restart(timeout).await,
    };
    if op != Operation::Stop && result.as_ref().is_ok_and(|o| o.success) {
        state.set_should_run(true);
    }
    state.refresh.notify_one();
    Ok(result?)
}

fn control_response(outcome: ControlOutcome, changed: Option<Vec<String>>) -> Response {
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
    (status, Json(body)).into_response()
}

async fn control(
    state: Arc<AppState>,
    op: Operation,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let patch = if op == Operation::Stop {
        None
    } else {
        parse_object(&body)?
    };
    let _lock = state.control_lock.lock().await;
    let changed = match &patch {
        Some(patch) => Some(apply_config_patch(&state, &headers, patch)?),
        None => None,
    };
    let outcome = run_operation(&state, op).await?;
    Ok(control_response(outcome, changed))
}

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
        let mut response = control_response(outcome, Some(changed));
        // Patch in `restarted` without re-serializing every field by hand.
        if let Some(body) = restarted_body(&mut response).await {
            return Ok(body);
        }
        return Ok(response);
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

async fn restarted_body(response: &mut Response) -> Option<Response> {
    let status = response.status();
    let body = std::mem::take(response.body_mut());
    let bytes = axum::body::to_bytes(body, 1 << 20).await.ok()?;
    let mut parsed: ControlResponse = serde_json::from_slice(&bytes).ok()?;
    parsed.restarted = Some(parsed.success);
    if parsed.success {
        parsed.message = format!("configuration saved; {}", parsed.message);
    }
    Some((status, Json(parsed)).into_response())
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

#[utoipa::path(get, path = "/api/streaming/metrics", tag = "service",
    responses((status = 200, body = MetricsResponse), ReadAuthErrors))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    json_bytes(state.snapshot().metrics_json.clone())
}

#[utoipa::path(get, path = "/api/streaming/events", tag = "service",
    responses((status = 200, description = "Server-sent events `status`, `metrics`, `alert` (data: JSON); a `ping` comment every 15 s", content_type = "text/event-stream", body = ServerSentEvent),
        ReadAuthErrors))]
pub async fn events(
    State(state): State<Arc<AppState>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    // Subscribe before reading the snapshot so no change falls in between.
    let receiver = state.events.subscribe();
    let snapshot = state.snapshot();
    let initial = stream::iter([
        Ok(sse_event(
            "status",
            &String::from_utf8_lossy(&snapshot.status_json),
        )),
        Ok(sse_event(
            "metrics",
            &String::from_utf8_lossy(&snapshot.metrics_json),
        )),
    ]);
    let state_for_lag = state.clone();
    let live = BroadcastStream::new(receiver).flat_map(move |item| {
        let events: Vec<Result<SseEvent, Infallible>> = match item {
            Ok(event) => vec![Ok(sse_event(event.kind, &event.data))],
            // A slow client missed events: resend the current state instead.
            Err(BroadcastStreamRecvError::Lagged(_)) => {
                let snapshot = state_for_lag.snapshot();
                vec![
                    Ok(sse_event(
                        "status",
                        &String::from_utf8_lossy(&snapshot.status_json),
                    )),
                    Ok(sse_event(
                        "metrics",
                        &String::from_utf8_lossy(&snapshot.metrics_json),
                    )),
                ]
            }
        };
        stream::iter(events)
    });
    Sse::new(initial.chain(live)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("ping"))
}

fn sse_event(kind: &str, data: &str) -> SseEvent {
    SseEvent::default().event(kind).data(data)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogsParams {
    /// Last N lines (default 200; more than 10000 means 10000).
    #[param(value_type = Option<u64>, maximum = 4294967295_u64)]
    pub lines: Option<u32>,
    /// ISO-8601 time or a duration ago (`10m`, `2h`).
    pub since: Option<String>,
    /// Case-insensitive substring.
    pub grep: Option<String>,
    /// Only lines about this group.
    pub group: Option<String>,
    /// Minimum level: ERROR, WARNING, INFO, DEBUG.
    pub level: Option<String>,
    /// Stream new lines as SSE (event `log`).
    pub follow: Option<bool>,
}

fn log_query(params: &LogsParams) -> Result<LogQuery, ApiError> {
    let since = match params
        .since
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(text) => Some(parse_since(text)?),
    };
    let min_level = match params.level.as_deref() {
        None | Some("") => None,
        Some(level) => Some(match level.to_ascii_uppercase().as_str() {
            "ERROR" | "CRITICAL" => "ERROR".to_string(),
            "WARNING" | "WARN" => "WARNING".to_string(),
            "INFO" => "INFO".to_string(),
            "DEBUG" => "DEBUG".to_string(),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown level {other:?} (ERROR, WARNING, INFO, DEBUG)"
                )));
            }
        }),
    };
    Ok(LogQuery {
        lines: params.lines.unwrap_or(200).min(10_000) as usize,
        since,
        grep: params.grep.clone().filter(|g| !g.is_empty()),
        group_id: params.group.clone().filter(|g| !g.is_empty()),
        min_level,
    })
}

fn parse_since(text: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        ApiError::BadRequest(format!(
            "since = {text:?}: expected an ISO-8601 time or a duration such as 10m"
        ))
    })?;
    let ago = chrono::Duration::from_std(ago)
        .map_err(|_| ApiError::BadRequest(format!("since = {text:?} is too far back")))?;
    Ok(Utc::now() - ago)
}

#[utoipa::path(get, path = "/api/streaming/logs", tag = "service", params(LogsParams),
    responses((status = 200, description = "The last lines; with follow=true a server-sent event stream instead (event `log`, data: a LogLine)", content((LogsResponse = "application/json"), (ServerSentEvent = "text/event-stream"))),
        (status = 400, description = "Invalid query parameter", body = ErrorBody),
        ReadAuthErrors,
        (status = 500, description = "The logs cannot be read", body = ErrorBody),
        (status = 501, description = "The backend has no logs", body = ErrorBody),
        (status = 503, description = "The backend is unreachable", body = ErrorBody)))]
pub async fn logs(
    State(state): State<Arc<AppState>>,
    Query(params): Query<LogsParams>,
) -> Result<Response, ApiError> {
    let query = log_query(&params)?;
    if params.follow.unwrap_or(false) {
        let entries = state.backend.follow_logs(&query).await?;
        let events = entries.filter_map(|entry| async move {
            let entry = entry.ok()?;
            let json = serde_json::to_string(&LogLine::from(&entry)).ok()?;
            Some(Ok::<_, Infallible>(sse_event("log", &json)))
        });
        return Ok(Sse::new(events)
            .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("ping"))
            .into_response());
    }
    let entries = state.backend.logs(&query).await?;
    Ok(Json(LogsResponse {
        lines: entries.iter().map(LogLine::from).collect(),
    })
    .into_response())
}

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
        .map_err(|err| ApiError::Internal(err.to_string()))
}

/// Runs a read on the queue DB off the async threads.
async fn with_queue<T: Send + 'static>(
    state: &AppState,
    read: impl FnOnce(&QueueReader) -> Result<T, contimg_core::queue::QueueError> + Send + 'static,
) -> Result<T, ApiError> {
    let path = state
        .snapshot()
        .config
        .as_ref()
        .map(|c| c.queue_db.clone())
        .unwrap_or_else(|| state.store.defaults().queue_db);
    tokio::task::spawn_blocking(move || {
        let reader = QueueReader::open(&path)?;
        read(&reader)
    })
    .await
    .map_err(|err| ApiError::Internal(err.to_string()))?
    .map_err(ApiError::from)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GroupsParams {
    /// collecting, pending, in_progress, completed or failed.
    pub state: Option<String>,
    /// Page size (default 50; 0 means 1, more than 1000 means 1000).
    #[param(value_type = Option<u64>, maximum = 4294967295_u64)]
    pub limit: Option<u32>,
    /// Only groups whose id sorts before this one (`next_before` of the previous page).
    pub before: Option<String>,
}

#[utoipa::path(get, path = "/api/streaming/groups", tag = "groups", params(GroupsParams),
    responses((status = 200, body = GroupList),
        (status = 400, description = "Invalid query parameter", body = ErrorBody),
        ReadAuthErrors,
        (status = 500, description = "The queue DB cannot be read", body = ErrorBody)))]
pub async fn groups(
    State(state): State<Arc<AppState>>,
    Query(params): Query<GroupsParams>,
) -> Result<Json<GroupList>, ApiError> {
    let group_state = match params.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => Some(GroupState::parse(text).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "state = {text:?}: expected collecting, pending, in_progress, completed or failed"
            ))
        })?),
    };
    let limit = params.limit.unwrap_or(50).clamp(1, 1000);
    let filter = GroupFilter {
        state: group_state,
        limit: Some(limit),
        before: params.before.filter(|b| !b.is_empty()),
    };
    // Before the worker's first start there is no queue DB, and so no groups yet.
    let groups = match with_queue(&state, move |reader| reader.groups(&filter)).await {
        Err(ApiError::Queue(contimg_core::queue::QueueError::Missing(_))) => Vec::new(),
        other => other?,
    };
    let next_before = (groups.len() == limit as usize)
        .then(|| groups.last().map(|g| g.group_id.clone()))
        .flatten();
    Ok(Json(GroupList {
        groups: groups.iter().map(GroupView::from).collect(),
        next_before,
    }))
}

#[utoipa::path(get, path = "/api/streaming/groups/{id}", tag = "groups",
    params(("id" = String, Path, description = "Group id")),
    responses((status = 200, body = GroupDetailView),
        ReadAuthErrors,
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 500, description = "The queue DB cannot be read", body = ErrorBody),
        (status = 503, description = "There is no queue DB yet (the worker has never run)", body = ErrorBody)))]
pub async fn group(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<GroupDetailView>, ApiError> {
    let lookup = id.clone();
    let detail = with_queue(&state, move |reader| reader.group(&lookup)).await?;
    match detail {
        Some(detail) => Ok(Json(GroupDetailView::from(&detail))),
        None => Err(ApiError::NotFound(format!("group {id} not found"))),
    }
}

#[utoipa::path(post, path = "/api/streaming/groups/{id}/retry", tag = "groups",
    params(("id" = String, Path, description = "Group id")),
    responses((status = 200, body = RetryResponse),
        BodyErrors,
        MutationAuthErrors,
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 409, description = "The group is not failed", body = ErrorBody),
        (status = 500, description = "The queue DB cannot be read, or the request cannot be written", body = ErrorBody),
        (status = 503, description = "There is no queue DB yet (the worker has never run)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn retry_group(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<RetryResponse>, ApiError> {
    let lookup = id.clone();
    let detail = with_queue(&state, move |reader| reader.group(&lookup)).await?;
    let Some(detail) = detail else {
        return Err(ApiError::NotFound(format!("group {id} not found")));
    };
    if detail.summary.state != GroupState::Failed.as_str() {
        return Err(ApiError::Conflict(format!(
            "group {id} is {}, only failed groups can be retried",
            detail.summary.state
        )));
    }
    let state_dir = state.settings.state_dir.clone();
    let request_id = id.clone();
    tokio::task::spawn_blocking(move || request_retry(&state_dir, &request_id))
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))??;
    tracing::info!(group = %id, "retry requested through the API");
    Ok(Json(RetryResponse {
        success: true,
        message: format!(
            "retry of {id} requested; the worker picks it up within its poll interval"
        ),
    }))
}

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

/// Benchmark baseline (`--bench-routes` only): the cheapest possible handler.
pub async fn bench_static() -> Response {
    json_bytes(Bytes::from_static(b"{\"ok\":true}"))
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint (see /api/openapi.json)".to_string())
}
