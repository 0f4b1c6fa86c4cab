//! Process-backend mode: without systemd, the daemon is the worker's supervisor.
//!
//! - A worker that dies while it should run is restarted with exponential back-off
//!   (1 s, 2 s, 4 s … 60 s), like `Restart=on-failure`.
//! - After [`BURST`] restarts within [`BURST_WINDOW`] it "gives up" like
//!   `StartLimitBurst=`, but unlike systemd it keeps trying every
//!   [`GAVE_UP_RETRY`] (a full disk or a missing mount often heals by itself);
//!   only an operator's stop ends the attempts.
//! - A running worker whose heartbeat stays older than [`HANG_RESTART_AFTER_S`] is
//!   hung (or stopped): its process group is SIGKILLed and it is started again, as
//!   the unit's `WatchdogSec=60s` makes systemd do. Not while the queue DB cannot
//!   be written (a full state dir stops heartbeats, and a restart cannot help).
//!
//! Every action raises an alert (`worker_hung`, `supervisor_gave_up`) naming why.
//! The worker processes themselves are reaped by the process backend.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::AppState;
use contimg_control::alerts::{AlertRule, Severity, SupervisorAlert};
use contimg_core::queue::unix_now;

const BURST: usize = 5;
const BURST_WINDOW: Duration = Duration::from_secs(120);
const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// After giving up, the supervisor still tries a start this often.
pub const GAVE_UP_RETRY: Duration = Duration::from_secs(300);
/// A heartbeat older than this (from the running worker) means hung: the same
/// 60 s the shipped unit gives systemd's watchdog (`WatchdogSec=60s`).
pub const HANG_RESTART_AFTER_S: f64 = 60.0;
/// How long the `worker_hung` alert stays active after the restart it reports.
const HUNG_ALERT_FOR_S: f64 = 600.0;
const KILL_WAIT: Duration = Duration::from_secs(5);

/// What the producer saw of a running worker's liveness.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub running: bool,
    pub pid: Option<u32>,
    /// The heartbeat's writer and age in seconds, if there is one.
    pub heartbeat: Option<(u32, f64)>,
    /// False when the queue DB cannot be written (disk full, permissions).
    pub queue_writable: bool,
}

#[derive(Debug, Clone)]
struct GaveUp {
    why: String,
    next_attempt: Instant,
}

#[derive(Default)]
pub struct SupervisorState {
    restarts: AtomicU32,
    recent: Mutex<VecDeque<Instant>>,
    restarting: AtomicBool,
    /// An operator's start/stop/restart is running: do not interfere.
    operation: AtomicBool,
    gave_up: Mutex<Option<GaveUp>>,
    /// `(unix time, message)` of the last hung-worker restart.
    last_hang: Mutex<Option<(f64, String)>>,
}

/// Marks an operator operation for as long as it lives.
pub struct OperationGuard<'a>(&'a SupervisorState);

impl Drop for OperationGuard<'_> {
    fn drop(&mut self) {
        self.0.operation.store(false, Ordering::SeqCst);
    }
}

impl SupervisorState {
    pub fn restart_count(&self) -> u32 {
        self.restarts.load(Ordering::SeqCst)
    }

    /// Why the supervisor gave up (and when it tries again), while it has.
    pub fn gave_up(&self) -> Option<String> {
        self.gave_up
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|g| g.why.clone()))
    }

    pub fn in_operation(&self) -> bool {
        self.operation.load(Ordering::SeqCst)
    }

    /// Any operator operation ends the give-up state (a stop ends the retries,
    /// a start tries at once); a start/restart also resets the burst window.
    pub fn begin_operation(&self, resets_limit: bool) -> OperationGuard<'_> {
        self.operation.store(true, Ordering::SeqCst);
        self.clear_gave_up();
        if resets_limit && let Ok(mut recent) = self.recent.lock() {
            recent.clear();
        }
        OperationGuard(self)
    }

    fn clear_gave_up(&self) {
        if let Ok(mut g) = self.gave_up.lock() {
            *g = None;
        }
    }

    /// The alerts describing what the supervisor did or is doing.
    pub fn alerts(&self, now: f64) -> Vec<SupervisorAlert> {
        let mut alerts = Vec::new();
        if let Some(why) = self.gave_up() {
            alerts.push(SupervisorAlert {
                rule: AlertRule::SupervisorGaveUp,
                severity: Severity::Critical,
                message: why,
            });
        }
        if let Ok(last) = self.last_hang.lock()
            && let Some((at, message)) = last.as_ref()
            && now - at <= HUNG_ALERT_FOR_S
        {
            alerts.push(SupervisorAlert {
                rule: AlertRule::WorkerHung,
                severity: Severity::Warning,
                message: message.clone(),
            });
        }
        alerts
    }

    fn note_restart(&self) {
        if let Ok(mut recent) = self.recent.lock() {
            recent.push_back(Instant::now());
        }
        self.restarts.fetch_add(1, Ordering::SeqCst);
    }

    /// The delay before the next restart, or `None` when the burst limit is hit.
    fn next_delay(&self, now: Instant) -> Option<Duration> {
        let mut recent = self.recent.lock().ok()?;
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > BURST_WINDOW)
        {
            recent.pop_front();
        }
        if recent.len() >= BURST {
            return None;
        }
        let exponent = recent.len().min(6) as u32;
        Some((FIRST_DELAY * 2u32.pow(exponent)).min(MAX_DELAY))
    }

    /// The delay before the next start of a dead worker: the back-off, or after
    /// giving up the time left until the next slow retry.
    fn delay_for_dead_worker(&self, now: Instant) -> Duration {
        if let Ok(mut gave_up) = self.gave_up.lock() {
            if let Some(g) = gave_up.as_ref() {
                return g.next_attempt.saturating_duration_since(now);
            }
            if let Some(delay) = self.next_delay(now) {
                return delay;
            }
            let why = format!(
                "the worker died {BURST} times within {} s; the supervisor gave up \
                 restarting it quickly and now tries again every {} s (stop it to end \
                 the attempts; start it to try at once)",
                BURST_WINDOW.as_secs(),
                GAVE_UP_RETRY.as_secs()
            );
            tracing::error!("{why}");
            *gave_up = Some(GaveUp {
                why,
                next_attempt: now + GAVE_UP_RETRY,
            });
            return GAVE_UP_RETRY;
        }
        GAVE_UP_RETRY
    }

    /// After a slow retry: the next one is another [`GAVE_UP_RETRY`] away.
    fn postpone_retry(&self) {
        if let Ok(mut gave_up) = self.gave_up.lock()
            && let Some(g) = gave_up.as_mut()
        {
            g.next_attempt = Instant::now() + GAVE_UP_RETRY;
        }
    }
}

/// Called by the producer after each refresh in process mode.
pub fn after_refresh(state: &Arc<AppState>, live: Liveness) {
    let sup = &state.supervisor;
    if !state.should_run.load(Ordering::SeqCst) || sup.in_operation() {
        return;
    }
    if live.running {
        if let Some(age) = hung_for(&live)
            && !sup.restarting.swap(true, Ordering::SeqCst)
        {
            spawn_hang_restart(state.clone(), live, age);
        }
        return;
    }
    if sup.restarting.swap(true, Ordering::SeqCst) {
        return;
    }
    let delay = sup.delay_for_dead_worker(Instant::now());
    let state = state.clone();
    tokio::spawn(async move {
        tracing::warn!(
            delay_s = delay.as_secs_f64(),
            "the worker is not running; restarting it"
        );
        tokio::time::sleep(delay).await;
        {
            let _lock = state.control_lock.lock().await;
            let still_down = match state.backend.status().await {
                Ok(status) => !status.running,
                Err(_) => true,
            };
            let sup = &state.supervisor;
            if still_down && state.should_run.load(Ordering::SeqCst) && !sup.in_operation() {
                sup.note_restart();
                let started = start_worker(&state).await;
                if sup.gave_up().is_some() {
                    if started {
                        // Up again: quick restarts are allowed again.
                        sup.clear_gave_up();
                    } else {
                        sup.postpone_retry();
                    }
                }
            }
        }
        state.supervisor.restarting.store(false, Ordering::SeqCst);
        state.refresh.notify_one();
    });
}

/// The heartbeat age when it shows the running worker hung: it wrote at least
/// once (so a long start-up scan is not mistaken for a hang), then stopped for
/// longer than [`HANG_RESTART_AFTER_S`], while it could have written.
fn hung_for(live: &Liveness) -> Option<f64> {
    let (writer, age) = live.heartbeat?;
    (live.queue_writable && live.pid == Some(writer) && age > HANG_RESTART_AFTER_S).then_some(age)
}

fn spawn_hang_restart(state: Arc<AppState>, live: Liveness, age: f64) {
    tokio::spawn(async move {
        {
            let _lock = state.control_lock.lock().await;
            let same_worker = match state.backend.status().await {
                Ok(status) => status.running && status.pid == live.pid,
                Err(_) => false,
            };
            if same_worker
                && state.should_run.load(Ordering::SeqCst)
                && let Some(pid) = live.pid
            {
                let message = format!(
                    "the worker (PID {pid}) wrote no heartbeat for {age:.0} s (limit \
                     {HANG_RESTART_AFTER_S:.0} s): hung or stopped; the supervisor killed \
                     its process group and started it again"
                );
                tracing::error!("{message}");
                kill_group_and_wait(&state, pid).await;
                let sup = &state.supervisor;
                if let Ok(mut last) = sup.last_hang.lock() {
                    *last = Some((unix_now(), message));
                }
                sup.note_restart();
                start_worker(&state).await;
            }
        }
        state.supervisor.restarting.store(false, Ordering::SeqCst);
        state.refresh.notify_one();
    });
}

/// SIGKILLs the worker's process group (it is a session leader, so the group
/// holds its converters too) and waits until the backend no longer sees it.
async fn kill_group_and_wait(state: &AppState, pid: u32) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    if let Err(errno) = killpg(Pid::from_raw(raw), Signal::SIGKILL) {
        tracing::warn!(pid, %errno, "cannot kill the hung worker's process group");
    }
    let deadline = tokio::time::Instant::now() + KILL_WAIT;
    while tokio::time::Instant::now() < deadline {
        match state.backend.status().await {
            Ok(status) if status.running && status.pid == Some(pid) => {}
            _ => return,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!(pid, "the killed worker still shows as running");
}

/// Starts the worker; true when it came up.
async fn start_worker(state: &AppState) -> bool {
    match state.backend.start(state.settings.control_timeout).await {
        Ok(outcome) if outcome.success => {
            tracing::info!(pid = ?outcome.pid, "restarted the worker");
            true
        }
        Ok(outcome) => {
            tracing::warn!("restart failed: {}", outcome.message);
            false
        }
        Err(err) => {
            tracing::warn!(%err, "restart failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_up_after_burst_then_retries_slowly() {
        let sup = SupervisorState::default();
        let now = Instant::now();
        for expected in [1, 2, 4, 8, 16] {
            assert_eq!(
                sup.delay_for_dead_worker(now),
                Duration::from_secs(expected)
            );
            sup.note_restart();
        }
        assert_eq!(sup.delay_for_dead_worker(now), GAVE_UP_RETRY);
        assert!(sup.gave_up().is_some_and(|why| why.contains("every 300 s")));
        let later = now + Duration::from_secs(100);
        assert_eq!(
            sup.delay_for_dead_worker(later),
            GAVE_UP_RETRY - Duration::from_secs(100)
        );
        assert_eq!(sup.alerts(unix_now())[0].rule, AlertRule::SupervisorGaveUp);
        drop(sup.begin_operation(true));
        assert!(sup.gave_up().is_none());
    }

    #[test]
    fn hang_needs_own_stale_heartbeat_and_a_writable_queue() {
        let live = Liveness {
            running: true,
            pid: Some(42),
            heartbeat: Some((42, HANG_RESTART_AFTER_S + 1.0)),
            queue_writable: true,
        };
        assert!(hung_for(&live).is_some());
        let starting = Liveness {
            heartbeat: Some((41, 500.0)),
            ..live
        };
        assert!(hung_for(&starting).is_none());
        let fresh = Liveness {
            heartbeat: Some((42, 3.0)),
            ..live
        };
        assert!(hung_for(&fresh).is_none());
        let disk_full = Liveness {
            queue_writable: false,
            ..live
        };
        assert!(hung_for(&disk_full).is_none());
    }
}
