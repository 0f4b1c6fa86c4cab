//! Control backends: one interface to start, stop, restart and observe the worker,
//! whether it runs as a systemd unit, a Docker container or a direct child process.
//!
//! `contimgctl` and `contimg-api` both hold an `Arc<dyn Backend>` and never care
//! which implementation is behind it.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

/// Which implementation controls the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Systemd,
    Docker,
    Process,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Systemd => "systemd",
            BackendKind::Docker => "docker",
            BackendKind::Process => "process",
        })
    }
}

/// Resource usage of the worker, read from its cgroup (systemd, docker) or /proc
/// (process). `None` means "not available", never zero.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceUsage {
    /// CPU use over the last sampling interval, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Cumulative CPU time of every process in the unit.
    pub cpu_usage_seconds: Option<f64>,
    pub memory_bytes: Option<u64>,
    /// The effective memory limit, `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    pub tasks: Option<u64>,
}

/// A point-in-time view of the worker, shared by the CLI's `status` and the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub backend: BackendKind,
    /// Unit name, container name, or "process".
    pub unit: String,
    pub running: bool,
    /// systemd vocabulary for every backend: active, inactive, activating,
    /// deactivating, failed, reloading.
    pub active_state: String,
    /// running, dead, exited, auto-restart, start, stop-sigterm, …
    pub sub_state: String,
    pub pid: Option<u32>,
    pub started_at: Option<DateTime<Utc>>,
    pub uptime_seconds: Option<f64>,
    pub restart_count: u32,
    /// sd_notify `STATUS=` text (systemd), or the backend's equivalent.
    pub status_text: Option<String>,
    pub resources: ResourceUsage,
    /// Why the last run failed, when the backend knows (e.g. systemd `Result=`).
    pub error: Option<String>,
}

/// How a start/stop/restart ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobResult {
    Done,
    Failed,
    Timeout,
    Canceled,
    Dependency,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlOutcome {
    pub success: bool,
    pub result: JobResult,
    pub message: String,
    pub pid: Option<u32>,
    /// The unit's last log lines when the operation failed.
    pub recent_logs: Vec<LogEntry>,
}

/// Resource limits; `None` = no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceLimits {
    pub memory_max_bytes: Option<u64>,
    /// Percent of one core: 200.0 = two cores.
    pub cpu_quota_percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub timestamp: DateTime<Utc>,
    /// ERROR, WARNING, INFO, DEBUG (syslog priorities mapped onto these).
    pub level: String,
    pub message: String,
    pub group_id: Option<String>,
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogQuery {
    /// Last N lines (before filtering by `since`).
    pub lines: usize,
    pub since: Option<DateTime<Utc>>,
    /// Case-insensitive substring match on the message.
    pub grep: Option<String>,
    pub group_id: Option<String>,
    /// Minimum level: ERROR < WARNING < INFO < DEBUG.
    pub min_level: Option<String>,
}

/// Errors every backend reports in the same vocabulary, so the CLI can map them to
/// exit codes and the API to HTTP statuses.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot reach the service manager: {0}")]
    Unavailable(String),
    #[error("unit {0} is not known to the service manager")]
    UnknownUnit(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    #[error("operation not supported by the {0} backend: {1}")]
    Unsupported(BackendKind, String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl ControlError {
    /// The CLI's exit code for this error (documented in `contimgctl --help`).
    pub fn exit_code(&self) -> i32 {
        match self {
            ControlError::PermissionDenied(_) => 4,
            ControlError::Invalid(_) => 2,
            _ => 1,
        }
    }
}

#[async_trait]
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;
    /// The unit/container name this backend controls.
    fn target(&self) -> &str;
    async fn start(&self, timeout: Duration) -> Result<ControlOutcome, ControlError>;
    async fn stop(&self, timeout: Duration) -> Result<ControlOutcome, ControlError>;
    async fn restart(&self, timeout: Duration) -> Result<ControlOutcome, ControlError>;
    async fn status(&self) -> Result<ServiceStatus, ControlError>;
    async fn limits(&self) -> Result<ResourceLimits, ControlError>;
    /// `persistent = false` applies until the next boot/daemon-reload (systemd runtime).
    async fn set_limits(
        &self,
        limits: &ResourceLimits,
        persistent: bool,
    ) -> Result<ResourceLimits, ControlError>;
    async fn logs(&self, query: &LogQuery) -> Result<Vec<LogEntry>, ControlError>;
    /// New log entries as they are written, starting after the last `query.lines`.
    async fn follow_logs(
        &self,
        query: &LogQuery,
    ) -> Result<BoxStream<'static, Result<LogEntry, ControlError>>, ControlError>;
    /// Yields `()` whenever the service's state may have changed (D-Bus
    /// PropertiesChanged, process exit, docker events); consumers then re-read
    /// `status()`. Lets the API push changes instead of polling.
    async fn watch(&self) -> Result<BoxStream<'static, ()>, ControlError>;
}
