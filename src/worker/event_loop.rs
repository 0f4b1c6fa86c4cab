//! The worker's run: start-up (directories, instance lock, recovery, bootstrap
//! scan), then one `select!` loop over file events, finished conversions,
//! timers and signals, and the drain on SIGTERM/SIGINT.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::lock::lock_queue;
use crate::options::StreamArgs;
use crate::reload::prepare_directories;
use crate::{STATUS_INTERVAL, Worker, WorkerError, convert, pause, with_queue};
use contimg_core::logging::LogLevelHandle;
use contimg_core::queue::{open_shared, unix_now};

/// Runs the worker until SIGTERM/SIGINT. Returns after a clean drain.
pub async fn run(args: StreamArgs, log: LogLevelHandle) -> Result<(), WorkerError> {
    let (config, source) = args.load_config()?;
    log.set_level(&config.log_level);
    let state_dir = args.state_dir();
    tracing::info!(
        state_dir = %state_dir.display(),
        config_source = ?source,
        input_dir = %config.input_dir.display(),
        output_dir = %config.output_dir.display(),
        queue_db = %config.queue_db.display(),
        "contimg-stream {} starting",
        env!("CARGO_PKG_VERSION")
    );
    prepare_directories(&config)?;
    // Held for the whole run: a second worker on the same queue DB (a mistyped
    // unit name falling back to the process backend, a stray manual start) must
    // refuse to run rather than convert groups twice.
    let _instance_lock = lock_queue(&config.queue_db)?;
    // Before recovery removes what interrupted conversions wrote, nothing a
    // killed previous run started may still be writing.
    convert::take_over_conversion_records(&state_dir, &config.queue_db);
    let queue_path = config.queue_db.clone();
    let queue = open_shared(queue_path).await?;

    let (file_tx, mut file_rx) = mpsc::unbounded_channel();
    let (cancel, _) = watch::channel(false);
    let mut worker = Worker {
        args,
        state_dir,
        config,
        queue,
        log,
        seen: HashSet::new(),
        refused: Default::default(),
        validators: None,
        running: JoinSet::new(),
        claimed: HashMap::new(),
        cancel,
        started_at: unix_now(),
        status_dirty: true,
        slurm: None,
        claim_gate: Default::default(),
        watcher: None,
        file_events: file_tx,
    };
    // A full state disk pauses the worker instead of ending it (see `pause`).
    let mut pause = pause::StatePause::new(&worker.config.queue_db);
    pause.needs_recovery = !(pause.absorb(worker.recover().await)?
        && pause.absorb(worker.reject_interrupted_inspections().await)?);
    worker.arm_watcher();
    if !pause.is_paused() {
        pause.absorb(worker.scan(true).await)?;
        pause.absorb(worker.expire_incomplete().await)?;
    }
    pause.absorb(worker.refresh_status().await)?;
    let _ = sd_notify::notify(&[NotifyState::Ready]);
    tracing::info!("ready");

    let mut sigterm = signal(SignalKind::terminate()).map_err(|source| WorkerError::Signal {
        signal: "SIGTERM",
        source,
    })?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|source| WorkerError::Signal {
        signal: "SIGINT",
        source,
    })?;
    let mut sighup = signal(SignalKind::hangup()).map_err(|source| WorkerError::Signal {
        signal: "SIGHUP",
        source,
    })?;

    let watchdog_period = sd_notify::watchdog_enabled().map(|period| period / 2);
    let mut watchdog = tokio::time::interval(watchdog_period.unwrap_or(Duration::from_secs(3600)));
    let mut poll = interval_secs(worker.config.poll_interval);
    let mut work_tick = interval_secs(worker.config.worker_poll_interval);
    let mut monitor = interval_secs(worker.config.monitor_interval);
    let mut status_tick = tokio::time::interval(STATUS_INTERVAL);
    let mut retention = crate::retention::RetentionTimer::new(&worker.config);

    loop {
        if !pause.is_paused() {
            pause.absorb(worker.fill_slots().await)?;
        }
        tokio::select! {
            Some(path) = file_rx.recv() => {
                // Take everything queued so a burst is one pass.
                let mut paths = vec![path];
                while let Ok(more) = file_rx.try_recv() {
                    paths.push(more);
                }
                // While paused they stay out of `seen`: the poll scan after the
                // pause registers them.
                if !pause.is_paused() {
                    pause.absorb(worker.register_paths(paths).await)?;
                }
            }
            Some(joined) = worker.running.join_next(), if !worker.running.is_empty() => {
                match joined {
                    Ok(finished) => {
                        let group = finished.group.clone();
                        if !pause.absorb(worker.record(finished).await)? {
                            pause.park(group);
                        }
                    }
                    Err(err) => tracing::error!("conversion task failed: {err}"),
                }
            }
            event = crate::executor::slurm::next_event(&mut worker.slurm), if !pause.is_paused() => {
                pause.absorb(worker.on_slurm_event(event).await)?;
            }
            _ = poll.tick(), if !pause.is_paused() => {
                pause.absorb(worker.scan(false).await)?;
            }
            _ = work_tick.tick(), if !pause.is_paused() => {
                if pause.absorb(worker.expire_incomplete().await)? {
                    pause.absorb(worker.apply_retry_requests().await)?;
                }
            }
            _ = monitor.tick() => {
                if worker.config.monitoring {
                    let stats = with_queue(&worker.queue, |q| q.stats(unix_now())).await?;
                    tracing::info!(running = worker.running.len(), "queue: {}", stats.summary_line());
                }
            }
            _ = status_tick.tick() => {
                if pause.is_paused() {
                    worker.try_resume(&mut pause).await?;
                } else {
                    pause.absorb(worker.refresh_status().await)?;
                }
            }
            _ = retention.tick() => retention.start(&worker.config, &worker.queue),
            _ = watchdog.tick(), if watchdog_period.is_some() => {
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
            _ = sighup.recv() => {
                worker.reload().await;
                poll = interval_secs(worker.config.poll_interval);
                work_tick = interval_secs(worker.config.worker_poll_interval);
                monitor = interval_secs(worker.config.monitor_interval);
                retention.reconfigure(&worker.config);
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    worker.drain().await
}

fn interval_secs(seconds: f64) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(Duration::from_secs_f64(seconds.max(0.05)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

impl Worker {
    /// Updates systemd's status line and the heartbeat in the queue DB.
    pub(crate) async fn refresh_status(&mut self) -> Result<(), WorkerError> {
        let started_at = self.started_at;
        let stats = with_queue(&self.queue, move |q| {
            let now = unix_now();
            q.heartbeat(std::process::id(), started_at, now)?;
            q.stats(now)
        })
        .await?;
        if self.status_dirty {
            let line = stats.summary_line();
            let _ = sd_notify::notify(&[NotifyState::Status(&line)]);
            self.status_dirty = false;
        }
        Ok(())
    }
}
