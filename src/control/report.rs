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
use contimg_core::config::{ConfigStore, ExecutorKind, StreamingConfig};
use contimg_core::queue::{Heartbeat, JobsInFlight, QueueReader, QueueStats, unix_now};

/// A heartbeat older than this is stale and makes the worker unhealthy. The worker
/// writes one every 2 s (`STATUS_INTERVAL` in `worker`), so 20 s is ten missed
/// beats: long enough for a busy main loop, short enough to catch a hung or
/// stopped worker well inside the 60 s the systemd watchdog allows.
pub const HEARTBEAT_STALE_SECONDS: f64 = 20.0;

use contimg_core::queue::writable::probe_queue_db_writable;

/// What the queue DB said, read without blocking the worker.
#[derive(Debug, Clone, Default)]
pub struct QueueView {
    pub stats: Option<QueueStats>,
    /// Why `stats` is missing (`queue_error` in the API).
    pub error: Option<String>,
    pub heartbeat: Option<Heartbeat>,
    /// Batch jobs queued and running (the Slurm executor); `None` when unread.
    pub jobs: Option<JobsInFlight>,
    /// Whether the worker could write the DB: `Ok(detail)` or `Err(why not)`.
    pub writable: Option<Result<String, String>>,
}

impl QueueView {
    /// Blocking (SQLite): call from `spawn_blocking` in async code.
    pub fn read(queue_db: &Path, now: f64) -> Self {
        match QueueReader::open(queue_db) {
            Ok(reader) => Self::from_reader(&reader, queue_db, now),
            Err(err) => Self {
                stats: None,
                error: Some(err.to_string()),
                heartbeat: None,
                jobs: None,
                writable: Some(probe_queue_db_writable(queue_db)),
            },
        }
    }

    /// Reads through a reader already open on `queue_db` (the API's queue
    /// watcher keeps one). Blocking, as [`QueueView::read`].
    pub fn from_reader(reader: &QueueReader, queue_db: &Path, now: f64) -> Self {
        let (stats, error) = match reader.stats(now) {
            Ok(stats) => (Some(stats), None),
            Err(err) => (None, Some(err.to_string())),
        };
        Self {
            stats,
            error,
            heartbeat: reader.heartbeat().ok().flatten(),
            jobs: reader.jobs_in_flight().ok(),
            writable: Some(probe_queue_db_writable(queue_db)),
        }
    }

    /// Why there are no stats; `None` when there are.
    pub fn stats_error(&self) -> Option<&str> {
        match self.stats {
            Some(_) => None,
            None => Some(self.error.as_deref().unwrap_or("queue not read")),
        }
    }

    /// The stats or why there are none, as [`MetricsResponse::assemble`] takes them.
    pub fn stats_or_error(&self) -> Result<QueueStats, String> {
        self.stats
            .clone()
            .ok_or_else(|| self.stats_error().unwrap_or_default().to_string())
    }

    /// Why the worker could not write the queue DB, if the probe said so.
    pub fn unwritable_reason(&self) -> Option<&str> {
        self.writable
            .as_ref()
            .and_then(|probe| probe.as_ref().err())
            .map(String::as_str)
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
        .map_err(|err| ControlError::Task(format!("queue reader panicked: {err}")))?;
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
    /// Why the running worker claims no conversion (disk back-pressure: which
    /// directory, free against needed), from its heartbeat row; `null` while it
    /// claims.
    #[serde(default)]
    pub claim_paused: Option<String>,
    /// When that pause began.
    #[serde(default)]
    pub claim_paused_since: Option<String>,
    /// Where conversions run (`local`, `slurm`), from the config; `null` without one.
    #[serde(default)]
    pub executor: Option<String>,
    /// The executor in words: "local", "Slurm, partition P" ("Slurm, the
    /// cluster's default partition" when `slurm.partition` is empty).
    #[serde(default)]
    pub executor_description: Option<String>,
    /// Batch jobs in flight, `{"queued": n, "running": n}` (queued includes jobs
    /// being submitted); `null` when the queue DB was not read.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub jobs_in_flight: Option<JobsInFlight>,
    /// Whether the running worker reaches the Slurm scheduler (from its
    /// heartbeat); `null` with the local executor or when the worker is not running.
    #[serde(default)]
    pub scheduler_reachable: Option<bool>,
    /// Since when the scheduler has not answered; `null` while it answers.
    #[serde(default)]
    pub scheduler_unreachable_since: Option<String>,
    /// The streaming configuration (same shape as `GET /api/streaming/config`).
    #[schema(value_type = Object)]
    pub config: Option<Value>,
    pub error: Option<String>,
    // Additions.
    pub backend: String,
    /// The backend in words: "systemd system unit contimg-stream.service",
    /// "direct process (PID file)", "Docker container NAME"
    /// ([`Backend::describe`]; without the manager when only the status is known).
    #[serde(default)]
    pub backend_description: String,
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
    /// The state dir the reader (contimg-api, `contimgctl status --json`) works
    /// on, canonical, and the rule that chose it (`control::state_dir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir_rule: Option<String>,
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
        let executor = config.map(|c| c.executor.as_str().to_string());
        let executor_description = config.map(describe_executor);
        let running = matches!(status, Ok(s) if s.running);
        let scheduler = config
            .filter(|c| running && c.executor == ExecutorKind::Slurm)
            .and(heartbeat)
            .map(|beat| beat.scheduler_unreachable_since);
        let scheduler_reachable = scheduler.map(|since| since.is_none());
        let scheduler_unreachable_since = scheduler.flatten().and_then(iso_from_unix);
        let config = config.map(|c| Value::Object(c.to_json()));
        let last_heartbeat = heartbeat.and_then(|h| iso_from_unix(h.heartbeat_at));
        let claim_pause = match status {
            Ok(s) if s.running => heartbeat.and_then(|h| h.claim_paused.as_ref()),
            _ => None,
        };
        let claim_paused = claim_pause.map(|p| p.reason.clone());
        let claim_paused_since = claim_pause.and_then(|p| iso_from_unix(p.since));
        match status {
            Ok(s) => Self {
                running: s.running,
                pid: s.pid.filter(|_| s.running),
                started_at: s.started_at.filter(|_| s.running).map(iso),
                uptime_seconds: if s.running { s.uptime_seconds } else { None },
                cpu_percent: s.resources.cpu_percent,
                memory_mb: s.resources.memory_bytes.map(|b| b as f64 / BYTES_PER_MB),
                last_heartbeat,
                claim_paused,
                claim_paused_since,
                executor: executor.clone(),
                executor_description: executor_description.clone(),
                jobs_in_flight: None,
                scheduler_reachable,
                scheduler_unreachable_since: scheduler_unreachable_since.clone(),
                config,
                error: s.error.clone(),
                backend: s.backend.to_string(),
                backend_description: s.backend.describe(&s.unit, None),
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
                state_dir: None,
                state_dir_rule: None,
            },
            Err(err) => Self {
                running: false,
                pid: None,
                started_at: None,
                uptime_seconds: None,
                cpu_percent: None,
                memory_mb: None,
                last_heartbeat,
                claim_paused,
                claim_paused_since,
                executor: executor.clone(),
                executor_description: executor_description.clone(),
                jobs_in_flight: None,
                scheduler_reachable,
                scheduler_unreachable_since: scheduler_unreachable_since.clone(),
                config,
                error: Some(err.to_string()),
                backend: backend_name.to_string(),
                backend_description: format!("{backend_name} {unit}"),
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
                state_dir: None,
                state_dir_rule: None,
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
            && self.claim_paused == other.claim_paused
            && self.executor == other.executor
            && self.jobs_in_flight == other.jobs_in_flight
            && self.scheduler_reachable == other.scheduler_reachable
    }
}

/// The executor in words, as `contimgctl status` and the dashboard show it.
pub fn describe_executor(config: &StreamingConfig) -> String {
    match config.executor {
        ExecutorKind::Local => "local".to_string(),
        ExecutorKind::Slurm if config.slurm.partition.is_empty() => {
            "Slurm, the cluster's default partition".to_string()
        }
        ExecutorKind::Slurm => format!("Slurm, partition {}", config.slurm.partition),
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
    /// `input_dir` entries refused for their name, place or type.
    pub unrecognised_files: u64,
    /// Subbands that arrived after their group was closed (never attached).
    pub late_files: u64,
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
        let (
            queue_stats,
            rate,
            queue_error,
            (rejected, unrecognised, late),
            oldest,
            last_completed,
        ) = match stats {
            Ok(s) => (
                s.counts.clone(),
                s.processing_rate_per_hour,
                None,
                (s.rejected_files, s.unrecognised_files, s.late_files),
                s.oldest_pending_ts.map(|ts| (now_unix - ts).max(0.0)),
                s.last_completed_at.and_then(iso_from_unix),
            ),
            Err(err) => (
                contimg_core::queue::GroupState::ALL
                    .iter()
                    .map(|state| (state.as_str().to_string(), 0))
                    .collect(),
                0.0,
                Some(err.clone()),
                (0, 0, 0),
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
            unrecognised_files: unrecognised,
            late_files: late,
            oldest_pending_age_seconds: oldest,
            last_completed_at: last_completed,
            memory_limit_mb: status.memory_limit_mb,
            tasks: status.tasks,
            restart_count: status.restart_count,
        }
    }
}

impl Snapshot {
    fn service_response(&self, config: Option<&StreamingConfig>) -> StatusResponse {
        let mut status = StatusResponse::assemble(
            &self.status.backend.to_string(),
            &self.status.unit,
            &Ok(self.status.clone()),
            config,
            self.queue.heartbeat.as_ref(),
        );
        status.jobs_in_flight = self.queue.jobs;
        status
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
            &self.queue.stats_or_error(),
            self.taken_at,
        )
    }

    /// The health verdict for what this snapshot saw (see [`health_verdict`]).
    /// `critical_alerts`: the messages of the active critical alerts.
    pub fn health_report(&self, critical_alerts: &[String]) -> HealthResponse {
        let s = &self.status;
        health_verdict(&HealthInputs {
            running: s.running,
            active_state: &s.active_state,
            sub_state: &s.sub_state,
            service_error: s.error.as_deref(),
            uptime_seconds: s.uptime_seconds,
            cpu_percent: s.resources.cpu_percent,
            memory_mb: s.resources.memory_mb(),
            queue_error: self.queue.stats_error(),
            queue_writable: self.queue.writable.as_ref(),
            heartbeat: self.queue.heartbeat.as_ref(),
            config_error: self.config_error.as_deref(),
            slurm_executor: self
                .config
                .as_ref()
                .is_some_and(|c| c.executor == ExecutorKind::Slurm),
            critical_alerts,
            now: self.taken_at,
        })
    }
}

/// Everything the health verdict looks at. The CLI fills it from one
/// [`Snapshot`], `contimg-api` from its producer's snapshot and alert engine.
#[derive(Debug, Clone, Copy)]
pub struct HealthInputs<'a> {
    pub running: bool,
    pub active_state: &'a str,
    pub sub_state: &'a str,
    pub service_error: Option<&'a str>,
    pub uptime_seconds: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub memory_mb: Option<f64>,
    /// Why the queue DB could not be read; `None` when it was.
    pub queue_error: Option<&'a str>,
    /// [`probe_queue_db_writable`]'s answer; `None` when not probed yet.
    pub queue_writable: Option<&'a Result<String, String>>,
    pub heartbeat: Option<&'a Heartbeat>,
    pub config_error: Option<&'a str>,
    /// `executor = "slurm"`: the verdict also says whether the scheduler answers.
    pub slurm_executor: bool,
    /// Messages of the active critical alerts.
    pub critical_alerts: &'a [String],
    /// Unix time the heartbeat's age is measured at.
    pub now: f64,
}

/// The one health verdict, shown by `contimgctl health`, `GET
/// /api/streaming/health` and the dashboard. Healthy only when every check
/// passes: the worker runs, the queue DB is readable and writable (its
/// filesystem not full), the heartbeat is at most [`HEARTBEAT_STALE_SECONDS`]
/// old, the config is valid and no critical alert is active.
pub fn health_verdict(input: &HealthInputs<'_>) -> HealthResponse {
    let check = |name: &str, ok: bool, detail: String| HealthCheck {
        name: name.to_string(),
        ok,
        detail,
    };
    let mut checks = vec![check(
        "service_running",
        input.running,
        format!("{} ({})", input.active_state, input.sub_state),
    )];
    checks.push(match (input.queue_error, input.queue_writable) {
        (Some(err), _) => check("queue_db", false, format!("unreadable: {err}")),
        (None, Some(Err(why))) => check("queue_db", false, why.clone()),
        (None, Some(Ok(detail))) => check("queue_db", true, format!("readable, {detail}")),
        (None, None) => check("queue_db", true, "readable".to_string()),
    });
    checks.push(match input.heartbeat {
        Some(beat) => {
            let age = (input.now - beat.heartbeat_at).max(0.0);
            let fresh = age <= HEARTBEAT_STALE_SECONDS;
            check(
                "heartbeat",
                fresh,
                if fresh {
                    format!("{age:.0} s ago (PID {})", beat.pid)
                } else {
                    format!(
                        "stale: {age:.0} s ago (PID {}), more than {HEARTBEAT_STALE_SECONDS:.0} s; \
                         the worker is hung, stopped or cannot write the queue DB",
                        beat.pid
                    )
                },
            )
        }
        None => check(
            "heartbeat",
            false,
            "the worker never wrote a heartbeat".to_string(),
        ),
    });
    checks.push(match input.config_error {
        Some(err) => check("config", false, err.to_string()),
        None => check("config", true, "valid".to_string()),
    });
    if input.slurm_executor {
        checks.push(scheduler_check(input));
    }
    checks.push(if input.critical_alerts.is_empty() {
        check("alerts", true, "no critical alerts".to_string())
    } else {
        check("alerts", false, input.critical_alerts.join("; "))
    });
    let healthy = checks.iter().all(|c| c.ok);
    let error = (!healthy).then(|| {
        checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect::<Vec<_>>()
            .join("; ")
    });
    let error = match (error, input.service_error) {
        (Some(error), Some(service)) if !input.running => Some(format!("{service}; {error}")),
        (error, _) => error,
    };
    HealthResponse {
        healthy,
        running: input.running,
        uptime_seconds: input.uptime_seconds,
        cpu_percent: input.cpu_percent,
        memory_mb: input.memory_mb,
        error,
        checks,
    }
}

/// Whether the worker reaches slurmctld, as its heartbeat last said. Without a
/// fresh heartbeat nobody asked the scheduler, which the heartbeat check reports.
fn scheduler_check(input: &HealthInputs<'_>) -> HealthCheck {
    let (ok, detail) = match input.heartbeat {
        Some(beat) if input.now - beat.heartbeat_at <= HEARTBEAT_STALE_SECONDS => {
            match beat.scheduler_unreachable_since {
                None => (true, "Slurm scheduler reachable".to_string()),
                Some(since) => (
                    false,
                    format!(
                        "Slurm scheduler unreachable for {:.0} s (since {}): no job is \
                         submitted or followed, groups wait in pending; `scontrol ping` on \
                         the worker's host",
                        (input.now - since).max(0.0),
                        iso_from_unix(since).unwrap_or_default()
                    ),
                ),
            }
        }
        _ => (
            false,
            "unknown: no fresh heartbeat from the worker, which asks the scheduler".to_string(),
        ),
    };
    HealthCheck {
        name: "scheduler".to_string(),
        ok,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14: "Unit: process" read as a unit name; the status says the
    /// backend in words.
    #[test]
    fn the_status_describes_the_backend_in_words() {
        use crate::BackendKind;
        let cases = [
            (BackendKind::Process, "process", "direct process (PID file)"),
            (
                BackendKind::Systemd,
                "contimg-stream.service",
                "systemd unit contimg-stream.service",
            ),
            (BackendKind::Docker, "w1", "Docker container w1"),
        ];
        for (kind, target, words) in cases {
            let status = ServiceStatus::stopped(kind, target);
            let report =
                StatusResponse::assemble(&kind.to_string(), target, &Ok(status), None, None);
            assert_eq!(report.backend_description, words);
        }
    }

    fn running(heartbeat: &Heartbeat, now: f64) -> HealthInputs<'_> {
        HealthInputs {
            running: true,
            active_state: "active",
            sub_state: "running",
            service_error: None,
            uptime_seconds: Some(100.0),
            cpu_percent: None,
            memory_mb: None,
            queue_error: None,
            queue_writable: None,
            heartbeat: Some(heartbeat),
            config_error: None,
            slurm_executor: false,
            critical_alerts: &[],
            now,
        }
    }

    fn beat_at(heartbeat_at: f64) -> Heartbeat {
        Heartbeat {
            pid: 7,
            started_at: 0.0,
            heartbeat_at,
            version: String::new(),
            claim_paused: None,
            scheduler_unreachable_since: None,
        }
    }

    fn failing(health: &HealthResponse) -> Vec<&str> {
        health
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect()
    }

    #[test]
    fn a_running_worker_with_a_stale_heartbeat_is_unhealthy() {
        let beat = beat_at(1000.0);
        let fresh = health_verdict(&running(&beat, 1000.0 + HEARTBEAT_STALE_SECONDS));
        assert!(fresh.healthy, "{fresh:?}");
        let stale = health_verdict(&running(&beat, 1001.0 + HEARTBEAT_STALE_SECONDS));
        assert!(!stale.healthy);
        assert_eq!(failing(&stale), ["heartbeat"]);
        assert!(stale.error.is_some_and(|e| e.contains("stale")));
    }

    #[test]
    fn unwritable_queue_invalid_config_and_critical_alerts_each_make_it_unhealthy() {
        let beat = beat_at(1000.0);
        let full: Result<String, String> = Err("disk full: /state has 0 B free".into());
        let alerts = ["the worker failed".to_string()];
        let cases: [(&str, HealthInputs<'_>); 3] = [
            (
                "queue_db",
                HealthInputs {
                    queue_writable: Some(&full),
                    ..running(&beat, 1001.0)
                },
            ),
            (
                "config",
                HealthInputs {
                    config_error: Some("max_workers: must be at least 1"),
                    ..running(&beat, 1001.0)
                },
            ),
            (
                "alerts",
                HealthInputs {
                    critical_alerts: &alerts,
                    ..running(&beat, 1001.0)
                },
            ),
        ];
        for (check, inputs) in cases {
            let health = health_verdict(&inputs);
            assert_eq!(failing(&health), [check], "{health:?}");
        }
    }

    /// Issue 13: health says whether the scheduler answers, only with
    /// `executor = "slurm"`.
    #[test]
    fn the_slurm_executor_adds_a_scheduler_check() {
        let names =
            |h: &HealthResponse| h.checks.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        let reachable = beat_at(1000.0);
        let local = health_verdict(&running(&reachable, 1001.0));
        assert!(
            !names(&local).contains(&"scheduler".to_string()),
            "{local:?}"
        );
        let slurm = |beat| HealthInputs {
            slurm_executor: true,
            ..running(beat, 1001.0)
        };
        let ok = health_verdict(&slurm(&reachable));
        assert!(ok.healthy, "{ok:?}");
        assert!(names(&ok).contains(&"scheduler".to_string()), "{ok:?}");
        let down = Heartbeat {
            scheduler_unreachable_since: Some(940.0),
            ..beat_at(1000.0)
        };
        let health = health_verdict(&slurm(&down));
        assert_eq!(failing(&health), ["scheduler"], "{health:?}");
        assert!(
            health
                .error
                .as_deref()
                .is_some_and(|e| e.contains("unreachable for 61 s")),
            "{health:?}"
        );
    }
}
