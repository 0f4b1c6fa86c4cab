//! Process-backend mode: without systemd, the daemon is the worker's supervisor.
//! A worker that dies while it should run is restarted with exponential back-off
//! (1 s, 2 s, 4 s … 60 s) until `BURST` restarts within `BURST_WINDOW` — then the
//! supervisor gives up, like `Restart=on-failure` with `StartLimitBurst=`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::AppState;

const BURST: usize = 5;
const BURST_WINDOW: Duration = Duration::from_secs(120);
const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct SupervisorState {
    restarts: AtomicU32,
    recent: Mutex<VecDeque<Instant>>,
    restarting: AtomicBool,
    /// An operator's start/stop/restart is running: do not interfere.
    operation: AtomicBool,
    gave_up: Mutex<Option<String>>,
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

    pub fn gave_up(&self) -> Option<String> {
        self.gave_up.lock().ok().and_then(|g| g.clone())
    }

    pub fn in_operation(&self) -> bool {
        self.operation.load(Ordering::SeqCst)
    }

    /// An operator start/restart resets the give-up state and the burst window.
    pub fn begin_operation(&self, resets_limit: bool) -> OperationGuard<'_> {
        self.operation.store(true, Ordering::SeqCst);
        if resets_limit {
            if let Ok(mut g) = self.gave_up.lock() {
                *g = None;
            }
            if let Ok(mut recent) = self.recent.lock() {
                recent.clear();
            }
        }
        OperationGuard(self)
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
}

/// Called by the producer after each refresh in process mode.
pub fn after_refresh(state: &Arc<AppState>, running: bool) {
    let sup = &state.supervisor;
    if running
        || !state.should_run.load(Ordering::SeqCst)
        || sup.in_operation()
        || sup.restarting.swap(true, Ordering::SeqCst)
    {
        return;
    }
    let Some(delay) = sup.next_delay(Instant::now()) else {
        let why = format!(
            "the worker died {BURST} times within {} s; not restarting it again \
             (start it to try again)",
            BURST_WINDOW.as_secs()
        );
        tracing::error!("{why}");
        if let Ok(mut g) = sup.gave_up.lock() {
            *g = Some(why);
        }
        state.set_should_run(false);
        sup.restarting.store(false, Ordering::SeqCst);
        return;
    };
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
            if still_down && state.should_run.load(Ordering::SeqCst) {
                let sup = &state.supervisor;
                if let Ok(mut recent) = sup.recent.lock() {
                    recent.push_back(Instant::now());
                }
                sup.restarts.fetch_add(1, Ordering::SeqCst);
                match state.backend.start(state.settings.control_timeout).await {
                    Ok(outcome) if outcome.success => {
                        tracing::info!(pid = ?outcome.pid, "restarted the worker")
                    }
                    Ok(outcome) => tracing::warn!("restart failed: {}", outcome.message),
                    Err(err) => tracing::warn!(%err, "restart failed"),
                }
            }
        }
        state.supervisor.restarting.store(false, Ordering::SeqCst);
        state.refresh.notify_one();
    });
}
