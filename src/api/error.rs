//! JSON errors: every failure the API answers has the same shape,
//! `{"error": "<code>", "message": "<human text>", "details": …}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::models::ControlResponse;
use crate::history::HistoryError;
use contimg_control::ControlError;
use contimg_control::logs::{LevelError, SinceError};
use contimg_core::config::{ConfigError, ValidationErrors};
use contimg_core::queue::{GroupState, QueueError};

/// The body of every error response.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `validation_failed`.
    pub error: String,
    pub message: String,
    /// Only on 422 `validation_failed`: every problem found, one per field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<FieldProblem>>,
}

/// A 500 from a control operation: either the operation ran and failed (with the
/// unit's last log lines), or the daemon could not carry it out.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ControlFailure {
    Operation(ControlResponse),
    Daemon(ErrorBody),
}

/// One invalid field of a 422 answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldProblem {
    /// The field's name (dotted for nested fields, e.g. `converter.argv`).
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// `POST groups/{id}/retry` of a group that is not failed.
    #[error("group {group_id} is {state}, only failed groups can be retried")]
    NotRetryable { group_id: String, state: GroupState },
    /// `If-Match` names another version of the configuration than the current one.
    #[error(
        "the configuration changed since you read it (If-Match {given}, current ETag {current}); reload and retry"
    )]
    StaleConfig { given: String, current: String },
    #[error("invalid configuration")]
    Validation(ValidationErrors),
    /// `GET logs?since=`: not a time or duration, or too far back.
    #[error("since = {0}")]
    Since(#[from] SinceError),
    /// `GET logs?level=`: not a level.
    #[error("{0}")]
    Level(#[from] LevelError),
    #[error("{0}")]
    Control(#[from] ControlError),
    #[error("{0}")]
    Queue(#[from] QueueError),
    /// The configuration file cannot be read, parsed or written (a 500: the
    /// request's own values are judged by `Validation`).
    #[error("{0}")]
    Config(#[source] ConfigError),
    #[error("{0}")]
    History(#[from] HistoryError),
    /// A blocking helper task panicked or was cancelled.
    #[error("{0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Since(_) | ApiError::Level(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::NotRetryable { .. } => StatusCode::CONFLICT,
            ApiError::StaleConfig { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Control(err) => match err {
                ControlError::Unavailable(_) | ControlError::UnknownUnit(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                ControlError::PermissionDenied(_) => StatusCode::FORBIDDEN,
                ControlError::Timeout(..) => StatusCode::GATEWAY_TIMEOUT,
                ControlError::Unsupported(..) => StatusCode::NOT_IMPLEMENTED,
                ControlError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                ControlError::Manager(_)
                | ControlError::WorkerBinaryMissing { .. }
                | ControlError::WorkerVanished { .. }
                | ControlError::PidFile { .. }
                | ControlError::Task(_)
                | ControlError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Queue(err) => match err {
                QueueError::UnknownGroup(_) => StatusCode::NOT_FOUND,
                QueueError::WrongState { .. } | QueueError::InputsRemoved { .. } => {
                    StatusCode::CONFLICT
                }
                QueueError::Missing(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Config(_)
            | ApiError::History(_)
            | ApiError::Task(_)
            | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "validation_failed",
            ApiError::Control(ControlError::Timeout(..)) => "timeout",
            ApiError::Control(ControlError::Unsupported(..)) => "not_supported",
            ApiError::Control(ControlError::PermissionDenied(_)) => "permission_denied",
            ApiError::Queue(QueueError::WrongState { .. } | QueueError::InputsRemoved { .. }) => {
                "conflict"
            }
            _ => code_for_status(self.status()),
        }
    }

    pub fn body(&self) -> ErrorBody {
        let details = match self {
            ApiError::Validation(errors) => Some(
                errors
                    .errors
                    .iter()
                    .map(|problem| FieldProblem {
                        field: problem.field.clone(),
                        message: problem.message.clone(),
                    })
                    .collect(),
            ),
            _ => None,
        };
        ErrorBody {
            error: self.code().to_string(),
            message: self.to_string(),
            details,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(%status, error = %self, "request failed");
        }
        (status, Json(self.body())).into_response()
    }
}

/// A short code for a status, used when no more specific one applies.
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        412 => "precondition_failed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "validation_failed",
        501 => "not_supported",
        503 => "unavailable",
        504 => "timeout",
        _ if status.is_server_error() => "internal",
        _ => "error",
    }
}

/// Middleware body: axum's own rejections (405 wrong method, 413 body too large,
/// 404 no route, …) are plain text; rewrite every non-JSON error into our shape so
/// clients only ever parse one format.
pub async fn jsonify_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string()
    } else {
        text
    };
    let body = ErrorBody {
        error: code_for_status(status).to_string(),
        message,
        details: None,
    };
    let mut rebuilt = (status, Json(body)).into_response();
    // Keep headers such as `Allow` (405) and `WWW-Authenticate`.
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rebuilt.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rebuilt.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    rebuilt
}

/// The 401/403 a read can get when the daemon requires the token for reads
/// (`read_requires_token`, or a listener beyond loopback).
#[derive(utoipa::IntoResponses)]
pub enum ReadAuthErrors {
    #[response(
        status = 401,
        description = "Reads need the token here, and it is missing or wrong"
    )]
    Unauthorized(ErrorBody),
    #[response(
        status = 403,
        description = "Reads need the token here, and the token file is unusable (the message says why)"
    )]
    Forbidden(ErrorBody),
}

/// The 401/403 of every mutation.
#[derive(utoipa::IntoResponses)]
pub enum MutationAuthErrors {
    #[response(status = 401, description = "Missing or wrong bearer token")]
    Unauthorized(ErrorBody),
    #[response(
        status = 403,
        description = "The token file is unusable: missing, not a regular file, group- or \
                       world-writable, world-readable, or a token under 16 bytes (the message \
                       says which); or the backend refused the operation"
    )]
    Forbidden(ErrorBody),
}

/// What reading a request body can fail with.
#[derive(utoipa::IntoResponses)]
pub enum BodyErrors {
    #[response(
        status = 400,
        description = "Malformed JSON, a body that is not a JSON object, or a body not \
                       received within the request-body deadline (10 s)"
    )]
    BadRequest(ErrorBody),
    #[response(status = 413, description = "Body larger than 64 KiB")]
    TooLarge(ErrorBody),
}

/// What a start/stop/restart (or a config change that restarts) can fail with.
#[derive(utoipa::IntoResponses)]
pub enum ControlErrors {
    #[response(
        status = 500,
        description = "The operation failed (body: the result, with the unit's last log lines) \
                       or the daemon could not carry it out (body: an error)"
    )]
    Failed(ControlFailure),
    #[response(status = 501, description = "The backend cannot do this")]
    Unsupported(ErrorBody),
    #[response(
        status = 503,
        description = "The backend (systemd, dockerd) is unreachable, or the unit is unknown"
    )]
    Unavailable(ErrorBody),
    #[response(status = 504, description = "Not finished within control_timeout")]
    Timeout(ErrorBody),
}

/// What a request that changes the configuration can fail with.
#[derive(utoipa::IntoResponses)]
pub enum ConfigChangeErrors {
    #[response(status = 412, description = "If-Match does not match the current ETag")]
    Stale(ErrorBody),
    #[response(
        status = 422,
        description = "Invalid configuration: `details` lists every problem"
    )]
    Invalid(ErrorBody),
}
