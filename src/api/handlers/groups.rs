//! `GET groups`, `GET groups/{id}` and `POST groups/{id}/retry`: reads of the
//! queue DB ([`with_queue`]) and the worker's retry request.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::{ApiError, BodyErrors, ErrorBody, MutationAuthErrors, ReadAuthErrors};
use crate::models::{GroupDetailView, GroupList, GroupLogView, GroupView, RetryResponse};
use contimg_control::job_log::{DEFAULT_TAIL_BYTES, JobLogError, MAX_TAIL_BYTES, read_attempt_log};
use contimg_core::queue::{
    GroupFilter, GroupState, QueueError, QueueReader, request_retry, with_reader,
};

/// Runs a read on the configured queue DB off the async threads
/// ([`queue::with_reader`](contimg_core::queue::with_reader)).
async fn with_queue<T: Send + 'static>(
    state: &AppState,
    read: impl FnOnce(&QueueReader) -> Result<T, QueueError> + Send + 'static,
) -> Result<T, ApiError> {
    let path = state
        .snapshot()
        .config
        .as_ref()
        .map(|c| c.queue_db.clone())
        .unwrap_or_else(|| state.store.defaults().queue_db);
    Ok(with_reader(path, read).await?)
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
        Err(ApiError::Queue(QueueError::Missing(_))) => Vec::new(),
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GroupLogParams {
    /// The attempt (1, 2, …); default: the latest attempt that ran as a job.
    #[param(value_type = Option<u64>, maximum = 4294967295_u64)]
    pub attempt: Option<u32>,
    /// How many bytes from the end of the log (default 65536, at most 1048576).
    pub max_bytes: Option<u64>,
}

/// The end of an attempt's batch-job log. The file is the one the worker recorded
/// for the attempt in the queue DB; the request only picks the group and attempt.
#[utoipa::path(get, path = "/api/streaming/groups/{id}/log", tag = "groups",
    params(("id" = String, Path, description = "Group id"), GroupLogParams),
    responses((status = 200, body = GroupLogView),
        (status = 400, description = "Invalid query parameter", body = ErrorBody),
        ReadAuthErrors,
        (status = 404, description = "No such group or attempt, no job log recorded for it, or the file does not exist (yet)", body = ErrorBody),
        (status = 500, description = "The queue DB or the log cannot be read", body = ErrorBody),
        (status = 503, description = "There is no queue DB yet (the worker has never run)", body = ErrorBody)))]
pub async fn group_log(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(params): Query<GroupLogParams>,
) -> Result<Json<GroupLogView>, ApiError> {
    let lookup = id.clone();
    let detail = with_queue(&state, move |reader| reader.group(&lookup)).await?;
    let Some(detail) = detail else {
        return Err(ApiError::NotFound(format!("group {id} not found")));
    };
    let max_bytes = params
        .max_bytes
        .unwrap_or(DEFAULT_TAIL_BYTES)
        .clamp(1, MAX_TAIL_BYTES);
    let tail =
        tokio::task::spawn_blocking(move || read_attempt_log(&detail, params.attempt, max_bytes))
            .await?
            .map_err(|err| match err {
                JobLogError::Io { .. } => ApiError::Internal(err.to_string()),
                _ => ApiError::NotFound(err.to_string()),
            })?;
    Ok(Json(GroupLogView {
        group_id: tail.group_id,
        attempt: tail.attempt,
        job_id: tail.job_id,
        path: tail.path.display().to_string(),
        size_bytes: tail.size_bytes,
        truncated: tail.truncated,
        text: tail.text,
    }))
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
    if detail.summary.state != GroupState::Failed {
        return Err(ApiError::NotRetryable {
            group_id: id,
            state: detail.summary.state,
        });
    }
    let state_dir = state.settings.state_dir.clone();
    let request_id = id.clone();
    tokio::task::spawn_blocking(move || request_retry(&state_dir, &request_id)).await??;
    tracing::info!(group = %id, "retry requested through the API");
    Ok(Json(RetryResponse {
        success: true,
        message: format!(
            "retry of {id} requested; the worker picks it up within its poll interval"
        ),
    }))
}
