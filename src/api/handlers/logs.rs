//! `GET logs`: the worker's last log lines, or (`follow=true`) a live stream.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{KEEP_ALIVE, sse_event};
use crate::AppState;
use crate::error::{ApiError, ErrorBody, ReadAuthErrors};
use crate::models::{LogLine, LogsResponse, ServerSentEvent};
use contimg_control::LogQuery;
use contimg_control::logs::{parse_level, parse_since};

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
    let since = params
        .since
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_since)
        .transpose()?;
    let min_level = params
        .level
        .as_deref()
        .filter(|l| !l.is_empty())
        .map(parse_level)
        .transpose()?
        .map(str::to_string);
    Ok(LogQuery {
        lines: params.lines.unwrap_or(200).min(10_000) as usize,
        since,
        grep: params.grep.clone().filter(|g| !g.is_empty()),
        group_id: params.group.clone().filter(|g| !g.is_empty()),
        min_level,
    })
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
