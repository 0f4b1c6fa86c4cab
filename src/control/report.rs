//! The API-shaped JSON documents (`status`, `health`, `metrics`), assembled from a
//! backend's [`ServiceStatus`], the queue DB and the config. `contimgctl --json`
//! and `contimg-api` (which re-exports them from `api::models` and lists them in
//! its OpenAPI) both use these types, so the field names cannot drift apart (they
//! are the original pipeline's, see docs/api.md).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{Backend, ControlError, ServiceStatus};
use crate::config::{ConfigStore, StreamingConfig};
use crate::queue::{Heartbeat, QueueReader, QueueStats, unix_now};

/// A heartbeat older than this (or `3 × worker_poll_interval`, if larger) is stale.
pub const HEARTBEAT_STALE_SECONDS: f64 = 60.0;

/// What the queue DB said, read without blocking the worker.
#[derive(Debug, Clone, Default)]
pub struct QueueView {
    pub stats: Option<QueueStats>,
    /// Why `stats` is missing (`queue_error` in the API).
    pub error: Option<String>,
    pub heartbeat: Option<Heartbeat>,
}

impl QueueView {
    /// Blocking (SQLite): call from `spawn_blocking` in async code.
    pub fn read(queue_db: &Path, now: f64) -> Self {
        match QueueReader::open(queue_db) {
            Ok(reader) => {
                let (stats, error) = match reader.stats(now) {
                    Ok(stats) => (Some(stats), None),
                    Err(err) => (None, Some(err.to_string())),
                };
                Self {
                    stats,
                    error,
                    heartbeat: reader.heartbeat().ok().flatten(),
                }
            }
            Err(err) => Self {
                stats: None,
                error: Some(err.to_string()),
                heartbeat: None,
            },
        }
    }
}

/// Everything `status`/`health`/`metrics` need, gathered once.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub status: ServiceStatus,
    pub config: Option<StreamingConfig>,
    pub config_error: Option<String>,
    pub queue: QueueView,
    pub taken_at: f64,
}

/// Reads the backend's status, the config and the queue DB (concurrently).
pub async fn gather(backend: &dyn Backend, store: &ConfigStore) -> Result<Snapshot, ControlError> {
    let store = store.clone();
    let local = tokio::task::spawn_blocking(move || {
        let now = unix_now();
        match store.load() {
            Ok((config, _)) => {
                let queue = QueueView::read(&config.queue_db, now);
                (Some(config), None, queue, now)
            }
            Err(err) => (
                None,
                Some(err.to_string()),
                QueueView {
                    error: Some(format!("no configuration: {err}")),
                    ..Default::default()
                },
                now,
            ),
        }
    });
    let status = backend.status().await?;
    let (config, config_error, queue, taken_at) = local
        .await
        .map_err(|err| ControlError::Failed(format!("queue reader panicked: {err}")))?;
    Ok(Snapshot {
        status,
        config,
        config_error,
        queue,
        taken_at,
    })
}

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
    /// Queue counts per state: only `contimgctl status --json` fills this in (so it
    /// needs no second call); the API leaves it out (see `GET metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_stats: Option<BTreeMap<String, u64>>,
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
                queue_stats: None,
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
                queue_stats: None,
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
    pub memory_limit_mb: Option<f64>,
    pub tasks: Option<u64>,
    pub restart_count: u32,
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
            memory_limit_mb: status.memory_limit_mb,
            tasks: status.tasks,
            restart_count: status.restart_count,
        }
    }
}

impl Snapshot {
    /// The queue stats as `MetricsResponse::assemble` takes them.
    fn queue_stats(&self) -> Result<QueueStats, String> {
        self.queue.stats.clone().ok_or_else(|| {
            self.queue
                .error
                .clone()
                .unwrap_or_else(|| "queue not read".to_string())
        })
    }

    fn service_response(&self, config: Option<&StreamingConfig>) -> StatusResponse {
        StatusResponse::assemble(
            &self.status.backend.to_string(),
            &self.status.unit,
            &Ok(self.status.clone()),
            config,
            self.queue.heartbeat.as_ref(),
        )
    }

    /// `GET status`'s document, plus the queue counts (`contimgctl status --json`).
    pub fn status_report(&self) -> StatusResponse {
        let mut report = self.service_response(self.config.as_ref());
        if report.error.is_none() {
            report.error = self.config_error.clone();
        }
        report.queue_stats = self.queue.stats.as_ref().map(|q| q.counts.clone());
        report
    }

    pub fn metrics_report(&self) -> MetricsResponse {
        MetricsResponse::assemble(
            &self.service_response(None),
            &self.queue_stats(),
            self.taken_at,
        )
    }

    /// Healthy = running, queue DB readable, and a fresh heartbeat from this run.
    pub fn health_report(&self) -> HealthResponse {
        let s = &self.status;
        let mut checks = vec![HealthCheck {
            name: "service_running".into(),
            ok: s.running,
            detail: format!("{} ({})", s.active_state, s.sub_state),
        }];
        checks.push(HealthCheck {
            name: "queue_db".into(),
            ok: self.queue.stats.is_some(),
            detail: self
                .queue
                .error
                .clone()
                .unwrap_or_else(|| "readable".into()),
        });
        let stale_after = self
            .config
            .as_ref()
            .map(|c| (c.worker_poll_interval * 3.0).max(HEARTBEAT_STALE_SECONDS))
            .unwrap_or(HEARTBEAT_STALE_SECONDS);
        let heartbeat_check = match &self.queue.heartbeat {
            Some(beat) => {
                let age = (self.taken_at - beat.heartbeat_at).max(0.0);
                HealthCheck {
                    name: "heartbeat".into(),
                    ok: age <= stale_after,
                    detail: format!("{age:.0} s ago (PID {})", beat.pid),
                }
            }
            None => HealthCheck {
                name: "heartbeat".into(),
                ok: false,
                detail: "the worker never wrote a heartbeat".into(),
            },
        };
        checks.push(heartbeat_check);
        let healthy = checks.iter().all(|c| c.ok);
        let error = if healthy {
            None
        } else {
            Some(
                checks
                    .iter()
                    .filter(|c| !c.ok)
                    .map(|c| format!("{}: {}", c.name, c.detail))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
            .or_else(|| s.error.clone())
        };
        HealthResponse {
            healthy,
            running: s.running,
            uptime_seconds: s.uptime_seconds,
            cpu_percent: s.resources.cpu_percent,
            memory_mb: s.resources.memory_mb(),
            error,
            checks,
        }
    }
}
