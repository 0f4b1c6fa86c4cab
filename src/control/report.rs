//! The API-shaped JSON documents (`status`, `health`, `metrics`), assembled from a
//! backend's [`ServiceStatus`], the queue DB and the config. `contimgctl --json`
//! and `contimg-api` both use these, so the field names cannot drift apart (they
//! are the original pipeline's, see docs/api.md).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub running: bool,
    pub pid: Option<u32>,
    pub started_at: Option<DateTime<Utc>>,
    pub uptime_seconds: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub memory_mb: Option<f64>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub config: Option<serde_json::Value>,
    pub error: Option<String>,
    pub backend: String,
    pub unit: String,
    pub active_state: String,
    pub sub_state: String,
    pub restart_count: u32,
    pub status_text: Option<String>,
    pub memory_limit_mb: Option<f64>,
    pub tasks: Option<u64>,
    /// Not in the original API: the queue counts, so `contimgctl status --json`
    /// needs no second call.
    pub queue_stats: Option<BTreeMap<String, u64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub healthy: bool,
    pub running: bool,
    pub uptime_seconds: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub memory_mb: Option<f64>,
    pub error: Option<String>,
    pub checks: Vec<HealthCheck>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsReport {
    pub service_running: bool,
    pub uptime_seconds: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub memory_mb: Option<f64>,
    pub queue_stats: BTreeMap<String, u64>,
    pub processing_rate_per_hour: f64,
    pub queue_error: Option<String>,
    pub rejected_files: u64,
    pub oldest_pending_age_seconds: Option<f64>,
    pub last_completed_at: Option<DateTime<Utc>>,
    pub memory_limit_mb: Option<f64>,
    pub tasks: Option<u64>,
    pub restart_count: u32,
}

fn unix_to_datetime(seconds: f64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis((seconds * 1000.0).round() as i64)
}

impl Snapshot {
    pub fn status_report(&self) -> StatusReport {
        let s = &self.status;
        StatusReport {
            running: s.running,
            pid: s.pid,
            started_at: s.started_at,
            uptime_seconds: s.uptime_seconds.map(|u| (u * 10.0).round() / 10.0),
            cpu_percent: s.resources.cpu_percent,
            memory_mb: s.resources.memory_mb(),
            last_heartbeat: self
                .queue
                .heartbeat
                .as_ref()
                .and_then(|h| unix_to_datetime(h.heartbeat_at)),
            config: self
                .config
                .as_ref()
                .map(|c| serde_json::Value::Object(c.to_json())),
            error: s.error.clone().or_else(|| self.config_error.clone()),
            backend: s.backend.to_string(),
            unit: s.unit.clone(),
            active_state: s.active_state.clone(),
            sub_state: s.sub_state.clone(),
            restart_count: s.restart_count,
            status_text: s.status_text.clone(),
            memory_limit_mb: s.resources.memory_limit_mb(),
            tasks: s.resources.tasks,
            queue_stats: self.queue.stats.as_ref().map(|q| q.counts.clone()),
        }
    }

    pub fn metrics_report(&self) -> MetricsReport {
        let s = &self.status;
        let stats = self.queue.stats.as_ref();
        MetricsReport {
            service_running: s.running,
            uptime_seconds: s.uptime_seconds,
            cpu_percent: s.resources.cpu_percent,
            memory_mb: s.resources.memory_mb(),
            queue_stats: stats.map(|q| q.counts.clone()).unwrap_or_default(),
            processing_rate_per_hour: stats.map(|q| q.processing_rate_per_hour).unwrap_or(0.0),
            queue_error: self.queue.error.clone(),
            rejected_files: stats.map(|q| q.rejected_files).unwrap_or(0),
            oldest_pending_age_seconds: stats
                .and_then(|q| q.oldest_pending_ts)
                .map(|ts| (self.taken_at - ts).max(0.0)),
            last_completed_at: stats
                .and_then(|q| q.last_completed_at)
                .and_then(unix_to_datetime),
            memory_limit_mb: s.resources.memory_limit_mb(),
            tasks: s.resources.tasks,
            restart_count: s.restart_count,
        }
    }

    /// Healthy = running, queue DB readable, and a fresh heartbeat from this run.
    pub fn health_report(&self) -> HealthReport {
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
        HealthReport {
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
