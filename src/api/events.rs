//! The one producer behind every read: it keeps [`Snapshot`] fresh and fans
//! changes out to SSE clients over a broadcast channel.
//!
//! Inputs: the backend's `watch()` stream (D-Bus PropertiesChanged under systemd),
//! a 1 s tick (uptime/CPU, and a safety net if signals are lost), explicit wake-ups
//! after control operations, and a queue-watcher thread that polls the queue DB's
//! `PRAGMA data_version` every 250 ms — one cheap query that only changes when
//! another connection (the worker) commits.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::watch;

use super::disk::{self, DirUsage};
use super::history::Sample;
use super::models::{HealthResponse, MetricsResponse, StatusResponse};
use super::prometheus::{self, DurationHistogram};
use super::supervisor::Liveness;
use super::{AppState, Settings};
use contimg_control::alerts::{AlertInputs, AlertRule, claim_pause_of, scheduler_unreachable_of};
use contimg_control::report::{HealthInputs, QueueView, health_verdict};
use contimg_control::{Backend, BackendKind, ControlError, ServiceStatus};
use contimg_core::config::{ConfigStore, StreamingConfig};
use contimg_core::queue::writable::probe_queue_db_writable;
use contimg_core::queue::{GroupState, QueueError, QueueReader, unix_now};

const TICK: Duration = Duration::from_secs(1);
const QUEUE_POLL: Duration = Duration::from_millis(250);
/// Stats are recomputed at least this often (the processing rate moves with time).
const QUEUE_FULL_REFRESH: Duration = Duration::from_secs(5);
/// Unchanged status/metrics are still pushed this often (fresh uptime/CPU).
const PERIODIC_PUSH: Duration = Duration::from_secs(5);
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
const DISK_CHECK_EVERY: Duration = Duration::from_secs(30);

/// One server-sent event: `event: <kind>` / `data: <json>`.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: &'static str,
    pub data: Arc<str>,
}

/// What the queue watcher last published: the queue's view (the type the CLI's
/// health reads too) and the duration histogram only `/metrics` needs.
#[derive(Debug, Clone, Default)]
pub struct QueueWatch {
    pub view: QueueView,
    pub durations: DurationHistogram,
}

impl QueueWatch {
    fn unread() -> Self {
        Self {
            view: QueueView {
                error: Some("the queue DB has not been read yet".to_string()),
                ..QueueView::default()
            },
            durations: DurationHistogram::default(),
        }
    }
}

/// Everything a read endpoint needs, pre-serialized where it is hot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub status: StatusResponse,
    pub status_json: Bytes,
    pub metrics: MetricsResponse,
    pub metrics_json: Bytes,
    pub prometheus: Bytes,
    pub queue: Arc<QueueWatch>,
    pub config: Option<StreamingConfig>,
    pub config_error: Option<String>,
    /// False until the backend answered once.
    pub backend_seen: bool,
    /// The health verdict (`GET health`, SSE `health`), as of this refresh.
    pub health: HealthResponse,
    /// Usage of the configured directories, measured every `DISK_CHECK_EVERY`.
    pub disks: Arc<Vec<DirUsage>>,
}

/// The verdict for a status, queue snapshot and config, at `now`.
fn verdict(
    status: &StatusResponse,
    queue: &QueueView,
    config_error: Option<&str>,
    critical_alerts: &[String],
    now: f64,
) -> HealthResponse {
    health_verdict(&HealthInputs {
        running: status.running,
        active_state: &status.active_state,
        sub_state: &status.sub_state,
        service_error: status.error.as_deref(),
        uptime_seconds: status.uptime_seconds,
        cpu_percent: status.cpu_percent,
        memory_mb: status.memory_mb,
        queue_error: queue.stats_error(),
        queue_writable: queue.writable.as_ref(),
        heartbeat: queue.heartbeat.as_ref(),
        config_error,
        slurm_executor: status.executor.as_deref() == Some("slurm"),
        critical_alerts,
        now,
    })
}

impl Snapshot {
    /// Before the first refresh: "unknown", without calling the backend.
    pub fn initial(backend: &dyn Backend, store: &ConfigStore, settings: &Settings) -> Self {
        let (config, config_error) = load_config(store);
        let pending: Result<ServiceStatus, ControlError> =
            Err(ControlError::Unavailable("status not read yet".to_string()));
        let mut status = StatusResponse::assemble(
            &backend.kind().to_string(),
            backend.target(),
            &pending,
            config.as_ref(),
            None,
        );
        status.backend_description = backend.describe();
        note_state_dir(&mut status, settings);
        let queue = Arc::new(QueueWatch::unread());
        let metrics = MetricsResponse::assemble(&status, &queue.view.stats_or_error(), unix_now());
        let health = verdict(
            &status,
            &queue.view,
            config_error.as_deref(),
            &[],
            unix_now(),
        );
        Self::build(
            status,
            metrics,
            queue,
            (config, config_error),
            health,
            false,
            (&[], Arc::default()),
        )
    }

    fn build(
        status: StatusResponse,
        metrics: MetricsResponse,
        queue: Arc<QueueWatch>,
        (config, config_error): (Option<StreamingConfig>, Option<String>),
        health: HealthResponse,
        backend_seen: bool,
        // What only `/metrics` and `GET disk` need: the active alerts' rules and
        // the last disk measurement.
        (firing, disks): (&[AlertRule], Arc<Vec<DirUsage>>),
    ) -> Self {
        let status_json = Bytes::from(serde_json::to_vec(&status).unwrap_or_default());
        let metrics_json = Bytes::from(serde_json::to_vec(&metrics).unwrap_or_default());
        let prometheus = Bytes::from(prometheus::render(
            &status,
            &queue.view,
            &queue.durations,
            firing,
            &disks,
            config.as_ref(),
        ));
        Self {
            status,
            status_json,
            metrics,
            metrics_json,
            prometheus,
            queue,
            config,
            config_error,
            backend_seen,
            health,
            disks,
        }
    }
}

/// The state dir this daemon works on and why, as `contimgctl status --json`
/// shows its own.
fn note_state_dir(status: &mut StatusResponse, settings: &Settings) {
    status.state_dir = Some(settings.state_dir.display().to_string());
    status.state_dir_rule = Some(settings.state_dir_rule.to_string());
}

fn load_config(store: &ConfigStore) -> (Option<StreamingConfig>, Option<String>) {
    match store.load() {
        Ok((config, _)) => (Some(config), None),
        Err(err) => (None, Some(err.to_string())),
    }
}

async fn next_signal(stream: &mut Option<BoxStream<'static, ()>>) -> Option<()> {
    match stream {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

/// Starts the queue watcher thread and the producer task.
pub fn spawn_producer(state: Arc<AppState>) {
    let initial_path = state
        .snapshot()
        .config
        .as_ref()
        .map(|c| c.queue_db.clone())
        .unwrap_or_else(|| state.store.defaults().queue_db);
    let queue_path = Arc::new(Mutex::new(initial_path));
    let (queue_tx, mut queue_rx) = watch::channel(Arc::new(QueueWatch::unread()));
    {
        let queue_path = queue_path.clone();
        if let Err(err) = std::thread::Builder::new()
            .name("queue-watch".to_string())
            .spawn(move || watch_queue(queue_path, queue_tx))
        {
            tracing::error!(%err, "cannot start the queue watcher; queue metrics stay empty");
        }
    }

    tokio::spawn(async move {
        let mut signals: Option<BoxStream<'static, ()>> = None;
        let mut next_watch_attempt = Instant::now();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut producer = Producer::new(&state);
        loop {
            if signals.is_none() && Instant::now() >= next_watch_attempt {
                match state.backend.watch().await {
                    Ok(stream) => signals = Some(stream),
                    Err(err) => {
                        tracing::debug!(%err, "backend cannot push changes; polling every second");
                        next_watch_attempt = Instant::now() + Duration::from_secs(10);
                    }
                }
            }
            let read_backend = tokio::select! {
                signal = next_signal(&mut signals) => {
                    match signal {
                        // Coalesce a burst of property changes into one read.
                        Some(()) => {
                            if let Some(stream) = signals.as_mut() {
                                while let Some(Some(())) = stream.next().now_or_never() {}
                            }
                        }
                        None => {
                            signals = None;
                            next_watch_attempt = Instant::now() + Duration::from_secs(1);
                        }
                    }
                    true
                }
                _ = tick.tick() => true,
                _ = state.refresh.notified() => true,
                changed = queue_rx.changed() => {
                    if changed.is_err() {
                        // The watcher thread ended; keep serving service status.
                        tokio::time::sleep(TICK).await;
                    }
                    false
                }
            };
            let queue = queue_rx.borrow_and_update().clone();
            producer
                .refresh(&state, read_backend, queue, &queue_path)
                .await;
        }
    });
}

struct Producer {
    last_status: Option<Result<ServiceStatus, ControlError>>,
    config: (Option<StreamingConfig>, Option<String>),
    last_status_push: Instant,
    last_metrics_push: Instant,
    disks: Arc<Vec<DirUsage>>,
    last_disk_check: Option<Instant>,
    first_seen: bool,
}

impl Producer {
    fn new(state: &AppState) -> Self {
        Self {
            last_status: None,
            config: load_config(&state.store),
            last_status_push: Instant::now(),
            last_metrics_push: Instant::now(),
            disks: Arc::default(),
            last_disk_check: None,
            first_seen: false,
        }
    }

    async fn refresh(
        &mut self,
        state: &Arc<AppState>,
        read_backend: bool,
        queue: Arc<QueueWatch>,
        queue_path: &Mutex<PathBuf>,
    ) {
        if read_backend || self.last_status.is_none() {
            let status = match tokio::time::timeout(STATUS_TIMEOUT, state.backend.status()).await {
                Ok(result) => result,
                Err(_) => Err(ControlError::Timeout(STATUS_TIMEOUT, "status".to_string())),
            };
            self.last_status = Some(status);
            self.config = load_config(&state.store);
            if let (Some(config), Ok(mut path)) = (&self.config.0, queue_path.lock())
                && *path != config.queue_db
            {
                *path = config.queue_db.clone();
            }
        }
        let Some(backend_status) = &self.last_status else {
            return;
        };
        let kind = state.backend.kind();
        let mut status = StatusResponse::assemble(
            &kind.to_string(),
            state.backend.target(),
            backend_status,
            self.config.0.as_ref(),
            queue.view.heartbeat.as_ref(),
        );
        status.backend_description = state.backend.describe();
        note_state_dir(&mut status, &state.settings);
        status.jobs_in_flight = queue.view.jobs;
        if status.error.is_none() {
            status.error = self.config.1.clone();
        }
        if kind == BackendKind::Process {
            status.restart_count = state.supervisor.restart_count();
            if !status.running
                && let Some(why) = state.supervisor.gave_up()
            {
                status.error = Some(why);
            }
        }

        // What the operator wants: learnt from the first read, then from control
        // operations; under systemd/docker an external clean stop/start counts too.
        if let Ok(s) = backend_status {
            if !self.first_seen {
                self.first_seen = true;
                state.set_should_run(s.running);
            } else if kind != BackendKind::Process && !state.supervisor.in_operation() {
                if s.running {
                    state.set_should_run(true);
                } else if s.active_state == "inactive" && s.error.is_none() {
                    state.set_should_run(false);
                }
            }
        }

        let now = unix_now();
        let metrics = MetricsResponse::assemble(&status, &queue.view.stats_or_error(), now);

        if self
            .last_disk_check
            .is_none_or(|at| at.elapsed() >= DISK_CHECK_EVERY)
        {
            self.last_disk_check = Some(Instant::now());
            self.disks = Arc::new(measure_disks(self.config.0.as_ref()).await);
        }
        let mut inputs = AlertInputs::from_state(
            now,
            status.running,
            status.active_state == "failed",
            state.should_run.load(Ordering::SeqCst),
            status.restart_count,
            queue.view.stats.as_ref(),
        );
        inputs.disks = self
            .disks
            .iter()
            .map(|d| (d.dir.clone(), PathBuf::from(&d.path), d.free_percent()))
            .collect();
        inputs.queue_db_unwritable = queue.view.unwritable_reason().map(str::to_string);
        inputs.claim_paused = claim_pause_of(queue.view.heartbeat.as_ref(), now);
        inputs.scheduler_unreachable_since =
            scheduler_unreachable_of(queue.view.heartbeat.as_ref(), now);
        if kind == BackendKind::Process {
            inputs.supervisor = state.supervisor.alerts(now);
        }
        let (changes, firing, critical) = match state.alerts.lock() {
            Ok(mut engine) => {
                let changes = engine.evaluate(&inputs);
                let firing: Vec<AlertRule> = engine.active().map(|a| a.rule).collect();
                (changes, firing, engine.critical_messages())
            }
            Err(_) => (Vec::new(), Vec::new(), Vec::new()),
        };
        let health = verdict(
            &status,
            &queue.view,
            self.config.1.as_deref(),
            &critical,
            now,
        );
        let liveness = Liveness {
            running: status.running,
            pid: status.pid,
            heartbeat: queue
                .view
                .heartbeat
                .as_ref()
                .map(|beat| (beat.pid, (now - beat.heartbeat_at).max(0.0))),
            queue_writable: queue.view.unwritable_reason().is_none(),
        };

        let previous = state.snapshot();
        let snapshot = Snapshot::build(
            status,
            metrics,
            queue,
            self.config.clone(),
            health,
            true,
            (&firing, self.disks.clone()),
        );
        let push_status = !previous.backend_seen
            || !snapshot.status.same_state_as(&previous.status)
            || self.last_status_push.elapsed() >= PERIODIC_PUSH;
        let push_metrics = snapshot.metrics.queue_stats != previous.metrics.queue_stats
            || snapshot.metrics.queue_error != previous.metrics.queue_error
            || snapshot.metrics.service_running != previous.metrics.service_running
            || self.last_metrics_push.elapsed() >= PERIODIC_PUSH;
        let push_health = !previous.backend_seen
            || health_changed(&previous.health, &snapshot.health)
            || push_status;
        let health_data: Option<Arc<str>> = push_health
            .then(|| serde_json::to_string(&snapshot.health).ok().map(Arc::from))
            .flatten();
        let status_data: Arc<str> = String::from_utf8_lossy(&snapshot.status_json).into();
        let metrics_data: Arc<str> = String::from_utf8_lossy(&snapshot.metrics_json).into();
        if let Ok(mut guard) = state.snapshot.write() {
            *guard = Arc::new(snapshot);
        }
        if push_status {
            self.last_status_push = Instant::now();
            let _ = state.events.send(Event {
                kind: "status",
                data: status_data,
            });
        }
        if let Some(data) = health_data {
            let _ = state.events.send(Event {
                kind: "health",
                data,
            });
        }
        if push_metrics {
            self.last_metrics_push = Instant::now();
            let _ = state.events.send(Event {
                kind: "metrics",
                data: metrics_data,
            });
        }
        for change in changes {
            if let Ok(json) = serde_json::to_string(&change) {
                let _ = state.events.send(Event {
                    kind: "alert",
                    data: json.into(),
                });
            }
            if let Some(sink) = &state.alert_sink
                && sink.try_send(change).is_err()
            {
                tracing::warn!("webhook queue full; an alert notification was dropped");
            }
        }
        if kind == BackendKind::Process {
            super::supervisor::after_refresh(state, liveness);
        }
    }
}

/// Whether the verdict or any check's outcome changed (not the moving details
/// such as the heartbeat's age).
fn health_changed(before: &HealthResponse, after: &HealthResponse) -> bool {
    before.healthy != after.healthy
        || before.checks.len() != after.checks.len()
        || before
            .checks
            .iter()
            .zip(&after.checks)
            .any(|(a, b)| a.name != b.name || a.ok != b.ok)
}

async fn measure_disks(config: Option<&StreamingConfig>) -> Vec<DirUsage> {
    let Some(config) = config else {
        return Vec::new();
    };
    let dirs = disk::configured_dirs(config);
    // statvfs can hang on a dead network mount: keep it off the async threads.
    tokio::task::spawn_blocking(move || disk::measure(dirs))
        .await
        .unwrap_or_default()
}

/// The queue watcher thread: polls `PRAGMA data_version` (one connection kept
/// open, as the pragma is per connection) and republishes stats when it moves.
fn watch_queue(path: Arc<Mutex<PathBuf>>, tx: watch::Sender<Arc<QueueWatch>>) {
    let mut opened: Option<(PathBuf, Connection, QueueReader)> = None;
    let mut last_version: Option<i64> = None;
    let mut last_full = Instant::now() - QUEUE_FULL_REFRESH;
    let mut histogram = DurationHistogram::default();
    let mut cursor = 0.0_f64;
    let mut last_batch: Vec<String> = Vec::new();
    let mut last_error: Option<String> = None;
    while !tx.is_closed() {
        let wanted = path.lock().map(|p| p.clone()).unwrap_or_default();
        if opened.as_ref().is_some_and(|(p, ..)| *p != wanted) {
            opened = None;
            histogram = DurationHistogram::default();
            cursor = 0.0;
            last_batch.clear();
        }
        if opened.is_none() {
            match open_queue(&wanted) {
                Ok((conn, reader)) => {
                    opened = Some((wanted.clone(), conn, reader));
                    last_version = None;
                }
                Err(err) => {
                    let err = err.to_string();
                    // Republish only when the reason changes (the DB is retried every second).
                    if last_error.as_deref() != Some(&err) {
                        last_error = Some(err.clone());
                        tx.send_replace(Arc::new(QueueWatch {
                            view: QueueView {
                                error: Some(err),
                                writable: Some(probe_queue_db_writable(&wanted)),
                                ..QueueView::default()
                            },
                            durations: histogram.clone(),
                        }));
                    }
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
        }
        let Some((_, conn, reader)) = opened.as_ref() else {
            continue;
        };
        let version: Option<i64> = conn
            .query_row("PRAGMA data_version", [], |row| row.get(0))
            .ok();
        if version.is_none() {
            opened = None;
            continue;
        }
        if version != last_version || last_full.elapsed() >= QUEUE_FULL_REFRESH {
            last_version = version;
            last_full = Instant::now();
            let now = unix_now();
            let view = QueueView::from_reader(reader, &wanted, now);
            // Durations recorded since the cursor; the 5 s overlap catches rows
            // committed while we read, the previous batch's ids stop double counts.
            if let Ok(rows) = reader.completed_durations_since(cursor) {
                let mut batch = Vec::with_capacity(rows.len());
                for (group_id, seconds) in rows {
                    if !last_batch.contains(&group_id) {
                        histogram.observe(seconds);
                    }
                    batch.push(group_id);
                }
                last_batch = batch;
                cursor = now - 5.0;
            }
            last_error = view.stats_error().map(str::to_string);
            let next = QueueWatch {
                view,
                durations: histogram.clone(),
            };
            tx.send_replace(Arc::new(next));
        }
        std::thread::sleep(QUEUE_POLL);
    }
}

/// Why the queue watcher cannot open the queue DB.
#[derive(Debug, thiserror::Error)]
enum QueueOpenError {
    #[error(transparent)]
    Reader(#[from] QueueError),
    /// The second, read-only connection that polls `PRAGMA data_version`.
    #[error("queue DB {}: {source}", path.display())]
    Poller {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

fn open_queue(path: &Path) -> Result<(Connection, QueueReader), QueueOpenError> {
    let reader = QueueReader::open(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| QueueOpenError::Poller {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((conn, reader))
}

/// Samples the snapshot into the history DB every `monitor_interval`.
pub fn spawn_history_sampler(state: Arc<AppState>) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        loop {
            let snapshot = state.snapshot();
            let stats = snapshot.queue.view.stats.as_ref();
            state.history.record(Sample {
                t: unix_now(),
                cpu_percent: snapshot.status.cpu_percent,
                memory_mb: snapshot.status.memory_mb,
                pending: stats.map(|s| s.count(GroupState::Pending)),
                in_progress: stats.map(|s| s.count(GroupState::InProgress)),
                collecting: stats.map(|s| s.count(GroupState::Collecting)),
                failed: stats.map(|s| s.count(GroupState::Failed)),
                completed: stats.map(|s| s.count(GroupState::Completed)),
                rate: stats.map(|s| s.processing_rate_per_hour),
                running: snapshot.status.running,
                disk_free: snapshot
                    .disks
                    .iter()
                    .filter_map(|d| Some((d.dir.clone(), d.free_bytes?)))
                    .collect(),
            });
            let interval = snapshot
                .config
                .as_ref()
                .map(|c| c.monitor_interval)
                .filter(|s| s.is_finite())
                .unwrap_or(60.0)
                .clamp(1.0, 3600.0);
            tokio::time::sleep(Duration::from_secs_f64(interval)).await;
        }
    });
}
