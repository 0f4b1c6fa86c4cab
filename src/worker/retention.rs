//! The worker's retention sweep (the policy and its safety rules live in
//! `contimg_core::retention`, shared with `contimgctl gc`): at start-up and
//! every `retention_interval_s`, one sweep at a time, on the blocking pool so
//! the event loop (file events, claims, the watchdog) never waits for it. The
//! sweep locks the queue one batch of groups at a time, and stops between
//! batches when the worker shuts down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use contimg_core::config::StreamingConfig;
use contimg_core::queue::{SharedQueue, unix_now};
use contimg_core::retention::Sweep;

/// Failures logged one by one per sweep; the rest are counted.
const FAILURES_LOGGED: usize = 20;

pub(crate) struct RetentionTimer {
    interval: tokio::time::Interval,
    running: Option<tokio::task::JoinHandle<()>>,
    cancel: Arc<AtomicBool>,
}

impl RetentionTimer {
    /// The first tick is immediate: a worker that was down for a day catches up
    /// at start.
    pub(crate) fn new(config: &StreamingConfig) -> Self {
        Self {
            interval: interval(config, tokio::time::Instant::now()),
            running: None,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) async fn tick(&mut self) {
        self.interval.tick().await;
    }

    /// After a reload: the new period, counted from now.
    pub(crate) fn reconfigure(&mut self, config: &StreamingConfig) {
        let period = Duration::from_secs_f64(config.retention_interval_s.max(1.0));
        self.interval = interval(config, tokio::time::Instant::now() + period);
    }

    /// Starts a sweep unless the previous one is still running.
    pub(crate) fn start(&mut self, config: &StreamingConfig, queue: &SharedQueue) {
        if self
            .running
            .as_ref()
            .is_some_and(|task| !task.is_finished())
        {
            tracing::debug!("retention: the previous sweep is still running");
            return;
        }
        let config = config.clone();
        let queue = Arc::clone(queue);
        let cancel = Arc::clone(&self.cancel);
        self.running = Some(tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let mut sweep = Sweep::new(&config, unix_now());
            match sweep.run(&queue, &cancel) {
                Ok(report) => {
                    for failure in report.failures.iter().take(FAILURES_LOGGED) {
                        tracing::warn!(
                            group_id = failure.group_id.as_deref().unwrap_or("-"),
                            path = %failure.path,
                            kind = %failure.kind,
                            "retention: {}",
                            failure.error
                        );
                    }
                    let total = report.total();
                    let level_info = total.files > 0 || !report.failures.is_empty();
                    let line = format!(
                        "retention sweep: {} files, {} bytes freed, {} groups swept, {} failures in {:.2} s{}",
                        total.files,
                        total.bytes,
                        report.groups_swept,
                        report.failures.len(),
                        started.elapsed().as_secs_f64(),
                        if report.cancelled {
                            " (stopped by shutdown)"
                        } else {
                            ""
                        }
                    );
                    if level_info {
                        tracing::info!("{line}");
                    } else {
                        tracing::debug!("{line}");
                    }
                }
                Err(err) => tracing::warn!("retention sweep failed: {err}"),
            }
        }));
    }
}

impl Drop for RetentionTimer {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

fn interval(config: &StreamingConfig, first: tokio::time::Instant) -> tokio::time::Interval {
    let period = Duration::from_secs_f64(config.retention_interval_s.max(1.0));
    let mut interval = tokio::time::interval_at(first, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}
