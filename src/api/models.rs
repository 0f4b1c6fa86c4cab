//! The API's JSON shapes. The seed's field names come first in each struct and are
//! never renamed; everything after them is an addition.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use contimg_control::LogEntry;
use contimg_core::queue::{AttemptJob, GroupDetail, GroupSummary};

// The service documents (`status`, `health`, `metrics`) are defined once, next to
// the code that assembles them for `contimgctl --json`, and re-exported here so
// the API and the CLI cannot drift apart.
pub use contimg_control::report::{
    HealthCheck, HealthResponse, MetricsResponse, StatusResponse, iso, iso_from_unix,
};

/// Answer of `POST start|stop|restart|config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ControlResponse {
    pub success: bool,
    pub message: String,
    pub pid: Option<u32>,
    /// Fields changed by the request's config (config POST, or start/restart with a body).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<Vec<String>>,
    /// Whether `POST config` restarted the running service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted: Option<bool>,
    /// The unit's last log lines when the operation failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<Vec<LogLine>>,
}

/// One log entry of the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    pub timestamp: String,
    /// ERROR, WARNING, INFO or DEBUG.
    pub level: String,
    pub message: String,
    pub group_id: Option<String>,
    pub pid: Option<u32>,
}

impl From<&LogEntry> for LogLine {
    fn from(entry: &LogEntry) -> Self {
        Self {
            timestamp: iso_from_unix(entry.timestamp.timestamp_micros() as f64 / 1e6)
                .unwrap_or_default(),
            level: entry.level.clone(),
            message: entry.message.clone(),
            group_id: entry.group_id.clone(),
            pid: entry.pid,
        }
    }
}

/// `GET /api/streaming/logs` without `follow`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogsResponse {
    pub lines: Vec<LogLine>,
}

/// One group of the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    pub group_id: String,
    /// collecting, pending, in_progress, completed or failed.
    pub state: String,
    pub received_at: Option<String>,
    pub last_update: Option<String>,
    pub expected_subbands: Option<u32>,
    pub subbands: u32,
    pub retry_count: u32,
    pub error: Option<String>,
    pub processing_stage: Option<String>,
    pub next_attempt_at: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub output_path: Option<String>,
    pub received_at_ts: f64,
    pub last_update_ts: f64,
    /// The batch job of the latest attempt (`executor = "slurm"`); `null` when
    /// the group never ran as a job.
    #[serde(default)]
    pub job: Option<JobView>,
}

/// An attempt's batch job, as the worker last recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// The executor that ran the attempt (`slurm`).
    pub executor: String,
    /// Slurm's job id; `null` while the submission is unconfirmed.
    pub job_id: Option<String>,
    /// Slurm's job state: PENDING (waiting in the queue), RUNNING, COMPLETED,
    /// FAILED, NODE_FAIL, CANCELLED, TIMEOUT, …; SUBMITTING before sbatch answered.
    pub state: Option<String>,
    /// The node the job ran on, once Slurm placed it.
    pub node: Option<String>,
    pub exit_code: Option<i32>,
    /// The attempt's job log (its stdout and stderr); read it with
    /// `GET /api/streaming/groups/{id}/log`.
    pub log_path: Option<String>,
    pub submitted_at: Option<String>,
}

impl From<&AttemptJob> for JobView {
    fn from(job: &AttemptJob) -> Self {
        Self {
            executor: job.executor.clone(),
            job_id: job.job_id.clone(),
            state: job.state.clone(),
            node: job.node.clone(),
            exit_code: job.exit_code,
            log_path: job.log_path.clone(),
            submitted_at: job.submitted_at.and_then(iso_from_unix),
        }
    }
}

impl From<&GroupSummary> for GroupView {
    fn from(g: &GroupSummary) -> Self {
        Self {
            group_id: g.group_id.clone(),
            state: g.state.to_string(),
            received_at: iso_from_unix(g.received_at),
            last_update: iso_from_unix(g.last_update),
            expected_subbands: g.expected_subbands,
            subbands: g.subbands,
            retry_count: g.retry_count,
            error: g.error.clone(),
            processing_stage: g.processing_stage.map(|stage| stage.to_string()),
            next_attempt_at: g.next_attempt_at.and_then(iso_from_unix),
            started_at: g.started_at.and_then(iso_from_unix),
            completed_at: g.completed_at.and_then(iso_from_unix),
            output_path: g.output_path.clone(),
            received_at_ts: g.received_at,
            last_update_ts: g.last_update,
            job: g.job.as_ref().map(JobView::from),
        }
    }
}

/// `GET /api/streaming/groups`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<GroupView>,
    /// Pass as `before` for the next (older) page; `null` on the last page.
    pub next_before: Option<String>,
}

/// One subband file of a group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupFileView {
    pub subband_idx: u32,
    pub path: String,
    pub size_bytes: Option<u64>,
    pub freq_min_hz: Option<f64>,
    pub freq_max_hz: Option<f64>,
    /// Header summary recorded at registration, if any.
    #[schema(value_type = Object)]
    pub meta: Option<Value>,
}

/// Conversion timings (the original `performance_metrics` row).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TimingsView {
    #[schema(value_type = Object)]
    #[serde(flatten)]
    pub values: Value,
}

/// One conversion attempt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    pub attempt: u32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub outcome: Option<String>,
    pub error: Option<String>,
    /// The attempt's batch job, when it ran as one.
    #[serde(default)]
    pub job: Option<JobView>,
}

/// `GET /api/streaming/groups/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupDetailView {
    #[serde(flatten)]
    pub group: GroupView,
    pub files: Vec<GroupFileView>,
    /// Paths of duplicate subband files that were ignored.
    pub duplicates: Vec<String>,
    #[schema(value_type = Object)]
    pub timings: Option<Value>,
    pub attempts: Vec<AttemptView>,
}

impl From<&GroupDetail> for GroupDetailView {
    fn from(d: &GroupDetail) -> Self {
        let meta_f64 = |meta: &Option<Value>, keys: &[&str]| {
            meta.as_ref()
                .and_then(|m| keys.iter().find_map(|k| m.get(*k).and_then(Value::as_f64)))
        };
        Self {
            group: GroupView::from(&d.summary),
            files: d
                .files
                .iter()
                .map(|f| GroupFileView {
                    subband_idx: f.subband_idx,
                    path: f.path.clone(),
                    size_bytes: f.size_bytes,
                    freq_min_hz: meta_f64(&f.meta, &["freq_min_hz", "freq_min"]),
                    freq_max_hz: meta_f64(&f.meta, &["freq_max_hz", "freq_max"]),
                    meta: f.meta.clone(),
                })
                .collect(),
            duplicates: d.duplicates.clone(),
            timings: d
                .timings
                .as_ref()
                .and_then(|t| serde_json::to_value(t).ok()),
            attempts: d
                .attempts
                .iter()
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    started_at: iso_from_unix(a.started_at),
                    finished_at: a.finished_at.and_then(iso_from_unix),
                    outcome: a.outcome.map(|outcome| outcome.to_string()),
                    error: a.error.clone(),
                    job: a.job.as_ref().map(JobView::from),
                })
                .collect(),
        }
    }
}

/// `GET /api/streaming/groups/{id}/log`: the end of an attempt's job log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupLogView {
    pub group_id: String,
    pub attempt: u32,
    pub job_id: Option<String>,
    /// The log file, as recorded in the queue DB.
    pub path: String,
    /// The file's size in bytes.
    pub size_bytes: u64,
    /// True when only the last `max_bytes` were read.
    pub truncated: bool,
    /// The log's last bytes as text (invalid UTF-8 replaced).
    pub text: String,
}

/// Answer of `POST /api/streaming/groups/{id}/retry`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RetryResponse {
    pub success: bool,
    pub message: String,
}

/// `GET|POST /api/streaming/limits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LimitsView {
    pub memory_max_bytes: Option<u64>,
    /// Percent of one core: 200 = two cores.
    pub cpu_quota_percent: Option<f64>,
}

/// Body of `POST /api/streaming/limits`: an omitted field stays as it is, `null`
/// removes the limit.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    #[schema(minimum = 1)]
    pub memory_max_bytes: Option<u64>,
    /// Percent of one core: 200 = two cores.
    #[schema(exclusive_minimum = 0.0)]
    pub cpu_quota_percent: Option<f64>,
    /// Also write the limits into the unit's drop-in (systemd) so they survive a restart.
    pub persistent: Option<bool>,
}

/// One server-sent event as it appears on the wire: its `event:` name and its
/// `data:` text (a JSON document: a StatusResponse, MetricsResponse,
/// HealthResponse, Alert or LogLine, by event name).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServerSentEvent {
    pub event: String,
    pub data: String,
}
