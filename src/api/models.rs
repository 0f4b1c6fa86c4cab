//! The API's JSON shapes. The seed's field names come first in each struct and are
//! never renamed; everything after them is an addition.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::config::StreamingConfig;
use crate::control::{ControlError, LogEntry, ServiceStatus};
use crate::queue::{GroupDetail, GroupSummary, Heartbeat, QueueStats};

const BYTES_PER_MB: f64 = 1024.0 * 1024.0;

/// ISO-8601 UTC (`2026-11-25T10:00:00Z`) for a Unix time in seconds.
pub fn iso_from_unix(ts: f64) -> Option<String> {
    if !ts.is_finite() {
        return None;
    }
    let secs = ts.floor() as i64;
    let nanos = ((ts - ts.floor()) * 1e9) as u32;
    Utc.timestamp_opt(secs, nanos).single().map(iso)
}

pub fn iso(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `GET /api/streaming/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatusResponse {
    pub running: bool,
    pub pid: Option<u32>,
    pub started_at: Option<String>,
    pub uptime_seconds: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub memory_mb: Option<f64>,
    /// The worker's last heartbeat in the queue DB; `null` if it never ran.
    pub last_heartbeat: Option<String>,
    /// The streaming configuration (same shape as `GET /api/streaming/config`).
    #[schema(value_type = Object)]
    pub config: Option<Value>,
    pub error: Option<String>,
    // Additions.
    pub backend: String,
    pub unit: String,
    pub active_state: String,
    pub sub_state: String,
    pub restart_count: u32,
    pub status_text: Option<String>,
    pub memory_limit_mb: Option<f64>,
    pub tasks: Option<u64>,
    pub cpu_usage_seconds: Option<f64>,
    pub memory_bytes: Option<u64>,
}

impl StatusResponse {
    /// Builds the status from what the backend said (or why it could not), the
    /// current config and the worker's heartbeat.
    pub fn assemble(
        backend_name: &str,
        unit: &str,
        status: &Result<ServiceStatus, ControlError>,
        config: Option<&StreamingConfig>,
        heartbeat: Option<&Heartbeat>,
    ) -> Self {
        let config = config.map(|c| Value::Object(c.to_json()));
        let last_heartbeat = heartbeat.and_then(|h| iso_from_unix(h.heartbeat_at));
        match status {
            Ok(s) => Self {
                running: s.running,
                pid: s.pid.filter(|_| s.running),
                started_at: s.started_at.filter(|_| s.running).map(iso),
                uptime_seconds: if s.running { s.uptime_seconds } else { None },
                cpu_percent: s.resources.cpu_percent,
                memory_mb: s.resources.memory_bytes.map(|b| b as f64 / BYTES_PER_MB),
                last_heartbeat,
                config,
                error: s.error.clone(),
                backend: s.backend.to_string(),
                unit: s.unit.clone(),
                active_state: s.active_state.clone(),
                sub_state: s.sub_state.clone(),
                restart_count: s.restart_count,
                status_text: s.status_text.clone(),
                memory_limit_mb: s
                    .resources
                    .memory_limit_bytes
                    .map(|b| b as f64 / BYTES_PER_MB),
                tasks: s.resources.tasks,
                cpu_usage_seconds: s.resources.cpu_usage_seconds,
                memory_bytes: s.resources.memory_bytes,
            },
            Err(err) => Self {
                running: false,
                pid: None,
                started_at: None,
                uptime_seconds: None,
                cpu_percent: None,
                memory_mb: None,
                last_heartbeat,
                config,
                error: Some(err.to_string()),
                backend: backend_name.to_string(),
                unit: unit.to_string(),
                active_state: "unknown".to_string(),
                sub_state: "unknown".to_string(),
                restart_count: 0,
                status_text: None,
                memory_limit_mb: None,
                tasks: None,
                cpu_usage_seconds: None,
                memory_bytes: None,
            },
        }
    }

    /// The fields whose change is worth pushing immediately (not the ever-moving
    /// uptime and CPU numbers).
    pub fn same_state_as(&self, other: &Self) -> bool {
        self.running == other.running
            && self.pid == other.pid
            && self.active_state == other.active_state
            && self.sub_state == other.sub_state
            && self.restart_count == other.restart_count
            && self.status_text == other.status_text
            && self.error == other.error
            && self.config == other.config
            && self.last_heartbeat.is_some() == other.last_heartbeat.is_some()
    }
}

/// One named check of `GET /api/streaming/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthCheck {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// `GET /api/streaming/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    pub healthy: bool,
    pub running: bool,
    pub uptime_seconds: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub memory_mb: Option<f64>,
    pub error: Option<String>,
    pub checks: Vec<HealthCheck>,
}

/// `GET /api/streaming/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricsResponse {
    pub service_running: bool,
    pub uptime_seconds: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub memory_mb: Option<f64>,
    /// Count per state; every state is present.
    pub queue_stats: BTreeMap<String, u64>,
    /// Groups completed in the last 3600 s.
    pub processing_rate_per_hour: f64,
    pub queue_error: Option<String>,
    // Additions.
    pub rejected_files: u64,
    pub oldest_pending_age_seconds: Option<f64>,
    pub last_completed_at: Option<String>,
}

impl MetricsResponse {
    pub fn assemble(
        status: &StatusResponse,
        stats: &Result<QueueStats, String>,
        now_unix: f64,
    ) -> Self {
        let (queue_stats, rate, queue_error, rejected, oldest, last_completed) = match stats {
            Ok(s) => (
                s.counts.clone(),
                s.processing_rate_per_hour,
                None,
                s.rejected_files,
                s.oldest_pending_ts.map(|ts| (now_unix - ts).max(0.0)),
                s.last_completed_at.and_then(iso_from_unix),
            ),
            Err(err) => (
                crate::queue::GroupState::ALL
                    .iter()
                    .map(|state| (state.as_str().to_string(), 0))
                    .collect(),
                0.0,
                Some(err.clone()),
                0,
                None,
                None,
            ),
        };
        Self {
            service_running: status.running,
            uptime_seconds: status.uptime_seconds,
            cpu_percent: status.cpu_percent,
            memory_mb: status.memory_mb,
            queue_stats,
            processing_rate_per_hour: rate,
            queue_error,
            rejected_files: rejected,
            oldest_pending_age_seconds: oldest,
            last_completed_at: last_completed,
        }
    }
}

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
}

impl From<&GroupSummary> for GroupView {
    fn from(g: &GroupSummary) -> Self {
        Self {
            group_id: g.group_id.clone(),
            state: g.state.clone(),
            received_at: iso_from_unix(g.received_at),
            last_update: iso_from_unix(g.last_update),
            expected_subbands: g.expected_subbands,
            subbands: g.subbands,
            retry_count: g.retry_count,
            error: g.error.clone(),
            processing_stage: g.processing_stage.clone(),
            next_attempt_at: g.next_attempt_at.and_then(iso_from_unix),
            started_at: g.started_at.and_then(iso_from_unix),
            completed_at: g.completed_at.and_then(iso_from_unix),
            output_path: g.output_path.clone(),
            received_at_ts: g.received_at,
            last_update_ts: g.last_update,
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
                    outcome: a.outcome.clone(),
                    error: a.error.clone(),
                })
                .collect(),
        }
    }
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
