//! A test double of [`Backend`], in the spirit of libcgroups' `TestManager`: the
//! health verdict, the alert rules and the API handlers get unit tests without a
//! systemd, dockerd or worker process. The real backends keep their own
//! real-component tests (tests/ctl_*.rs).
//!
//! Always compiled rather than behind a cargo feature: it is small, needs no
//! dependency the crate does not already have, contains no `unsafe` and nothing
//! in the binaries constructs it (the linker drops it). A feature would have to
//! be remembered by every consumer (the API's unit tests, the root package's
//! tests and benches), and `cargo test -p X` and `cargo test --workspace` would
//! then build different code.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::time::Duration;
//! use contimg_control::testing::{FakeBackend, Method};
//! use contimg_control::{Backend, ControlError, Operation};
//!
//! let backend = FakeBackend::new();
//! assert!(!backend.status().await.unwrap().running);
//! backend.operate(Operation::Start, Duration::from_secs(1)).await.unwrap();
//! assert!(backend.status().await.unwrap().running);
//! backend.fail_next(Method::Operation(Operation::Stop), ControlError::PermissionDenied("polkit".into()));
//! assert!(backend.stop(Duration::from_secs(1)).await.is_err());
//! assert_eq!(backend.operations(), [Operation::Start, Operation::Stop]);
//! # });
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::broadcast;

use crate::{
    Backend, BackendKind, ControlError, ControlOutcome, DEFAULT_UNIT, JobResult, LogEntry,
    LogQuery, Operation, ResourceLimits, ResourceUsage, ServiceStatus, logs,
};

/// The first PID a fake start hands out; each start takes the next one.
const FIRST_FAKE_PID: u32 = 40_000;

/// A method of [`Backend`], to script failures for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Operation(Operation),
    Status,
    Limits,
    SetLimits,
    Logs,
    FollowLogs,
    Watch,
}

/// One call the double received, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Operation {
        operation: Operation,
        timeout: Duration,
    },
    Status,
    Limits,
    SetLimits {
        limits: ResourceLimits,
        persistent: bool,
    },
    Logs(LogQuery),
    FollowLogs(LogQuery),
    Watch,
}

type ErrorFactory = Arc<dyn Fn() -> ControlError + Send + Sync>;

struct Script {
    status: ServiceStatus,
    limits: ResourceLimits,
    log_entries: Vec<LogEntry>,
    outcomes: HashMap<Operation, VecDeque<ControlOutcome>>,
    fail_next: HashMap<Method, VecDeque<ControlError>>,
    fail_always: HashMap<Method, ErrorFactory>,
    operation_delay: Duration,
    next_pid: u32,
    calls: Vec<Call>,
}

/// A scriptable, recording [`Backend`]. Without a script it behaves like a
/// well-mannered service: operations succeed and move the status (start and
/// restart: running with a new PID; stop: inactive), `logs` filters the entries
/// given with [`FakeBackend::push_log`] through the real [`logs::select`].
pub struct FakeBackend {
    kind: BackendKind,
    target: String,
    script: Mutex<Script>,
    changes: broadcast::Sender<()>,
    new_logs: broadcast::Sender<LogEntry>,
}

impl Default for FakeBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeBackend {
    /// A systemd-kind double of `contimg-stream.service`, stopped.
    pub fn new() -> Self {
        Self::with_kind(BackendKind::Systemd, DEFAULT_UNIT)
    }

    /// A stopped double that reports `kind` and controls `target`.
    pub fn with_kind(kind: BackendKind, target: &str) -> Self {
        let (changes, _) = broadcast::channel(64);
        let (new_logs, _) = broadcast::channel(1024);
        Self {
            kind,
            target: target.to_string(),
            script: Mutex::new(Script {
                status: ServiceStatus::stopped(kind, target),
                limits: ResourceLimits::default(),
                log_entries: Vec::new(),
                outcomes: HashMap::new(),
                fail_next: HashMap::new(),
                fail_always: HashMap::new(),
                operation_delay: Duration::ZERO,
                next_pid: FIRST_FAKE_PID,
                calls: Vec::new(),
            }),
            changes,
            new_logs,
        }
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        // A test that panicked while holding the lock already failed; the data
        // is still usable for its cleanup.
        self.script
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What `status()` answers from now on (and what `watch()` subscribers are
    /// told changed).
    pub fn set_status(&self, status: ServiceStatus) -> &Self {
        self.script().status = status;
        let _ = self.changes.send(());
        self
    }

    /// Marks the service running with `pid` (active/running, started now).
    pub fn set_running(&self, pid: u32) -> &Self {
        let status = running_status(
            self.kind,
            &self.target,
            pid,
            self.status_now().restart_count,
        );
        self.set_status(status)
    }

    /// Marks the service failed (active_state `failed`) with systemd's `Result=`.
    pub fn set_failed(&self, error: &str) -> &Self {
        let mut status = ServiceStatus::stopped(self.kind, &self.target);
        status.active_state = "failed".into();
        status.sub_state = "failed".into();
        status.error = Some(error.to_string());
        status.restart_count = self.status_now().restart_count;
        self.set_status(status)
    }

    /// The resource numbers `status()` reports (the metrics' source).
    pub fn set_resources(&self, resources: ResourceUsage) -> &Self {
        self.script().status.resources = resources;
        let _ = self.changes.send(());
        self
    }

    /// The backend's restart counter (systemd `NRestarts`).
    pub fn set_restart_count(&self, restart_count: u32) -> &Self {
        self.script().status.restart_count = restart_count;
        let _ = self.changes.send(());
        self
    }

    /// The current scripted status (records no call).
    pub fn status_now(&self) -> ServiceStatus {
        self.script().status.clone()
    }

    /// The limits `limits()` answers (until a `set_limits` call changes them).
    pub fn set_limits_now(&self, limits: ResourceLimits) -> &Self {
        self.script().limits = limits;
        self
    }

    /// The next `operation` returns `outcome` instead of the default success; a
    /// successful outcome still moves the status, a failed one leaves it.
    pub fn queue_outcome(&self, operation: Operation, outcome: ControlOutcome) -> &Self {
        self.script()
            .outcomes
            .entry(operation)
            .or_default()
            .push_back(outcome);
        self
    }

    /// The next call of `method` fails with `error` (one-shot, in order).
    pub fn fail_next(&self, method: Method, error: ControlError) -> &Self {
        self.script()
            .fail_next
            .entry(method)
            .or_default()
            .push_back(error);
        self
    }

    /// Every call of `method` fails with a fresh `make_error()` until
    /// [`FakeBackend::stop_failing`].
    pub fn fail_always(
        &self,
        method: Method,
        make_error: impl Fn() -> ControlError + Send + Sync + 'static,
    ) -> &Self {
        self.script()
            .fail_always
            .insert(method, Arc::new(make_error));
        self
    }

    pub fn stop_failing(&self, method: Method) -> &Self {
        let mut script = self.script();
        script.fail_always.remove(&method);
        script.fail_next.remove(&method);
        self
    }

    /// How long each operation takes (to test callers that overlap them).
    pub fn set_operation_delay(&self, delay: Duration) -> &Self {
        self.script().operation_delay = delay;
        self
    }

    /// Adds a log line: `logs()` sees it and `follow_logs()` streams receive it.
    pub fn push_log(&self, entry: LogEntry) -> &Self {
        self.script().log_entries.push(entry.clone());
        let _ = self.new_logs.send(entry);
        self
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.script().calls.clone()
    }

    /// The operations requested so far, in order (failed ones included).
    pub fn operations(&self) -> Vec<Operation> {
        self.script()
            .calls
            .iter()
            .filter_map(|call| match call {
                Call::Operation { operation, .. } => Some(*operation),
                _ => None,
            })
            .collect()
    }

    /// Records `call`, then answers a scripted failure of `method` if there is one.
    fn enter(&self, method: Method, call: Call) -> Result<(), ControlError> {
        let mut script = self.script();
        script.calls.push(call);
        if let Some(error) = script
            .fail_next
            .get_mut(&method)
            .and_then(VecDeque::pop_front)
        {
            return Err(error);
        }
        match script.fail_always.get(&method) {
            Some(make_error) => Err(make_error()),
            None => Ok(()),
        }
    }

    async fn run(
        &self,
        operation: Operation,
        timeout: Duration,
    ) -> Result<ControlOutcome, ControlError> {
        self.enter(
            Method::Operation(operation),
            Call::Operation { operation, timeout },
        )?;
        let delay = self.script().operation_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut script = self.script();
        let scripted = script
            .outcomes
            .get_mut(&operation)
            .and_then(VecDeque::pop_front);
        let outcome = scripted.unwrap_or_else(|| ControlOutcome {
            success: true,
            result: JobResult::Done,
            message: format!("{} {}", operation.past_tense(), self.target),
            pid: None,
            recent_logs: Vec::new(),
        });
        if !outcome.success {
            return Ok(outcome);
        }
        let restart_count = script.status.restart_count;
        script.status = if operation.leaves_running() {
            let pid = script.next_pid;
            script.next_pid += 1;
            running_status(self.kind, &self.target, pid, restart_count)
        } else {
            ServiceStatus {
                restart_count,
                ..ServiceStatus::stopped(self.kind, &self.target)
            }
        };
        let pid = script.status.pid;
        drop(script);
        let _ = self.changes.send(());
        Ok(ControlOutcome {
            pid: outcome.pid.or(pid),
            ..outcome
        })
    }
}

/// An active (running) service with `pid`, started now.
pub fn running_status(
    kind: BackendKind,
    target: &str,
    pid: u32,
    restart_count: u32,
) -> ServiceStatus {
    ServiceStatus {
        running: true,
        active_state: "active".into(),
        sub_state: "running".into(),
        pid: Some(pid),
        started_at: Some(Utc::now()),
        uptime_seconds: Some(0.0),
        restart_count,
        ..ServiceStatus::stopped(kind, target)
    }
}

fn broadcast_stream<T: Clone + Send + 'static>(
    receiver: broadcast::Receiver<T>,
) -> BoxStream<'static, T> {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(item) => return Some((item, receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

#[async_trait]
impl Backend for FakeBackend {
    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn start(&self, timeout: Duration) -> Result<ControlOutcome, ControlError> {
        self.run(Operation::Start, timeout).await
    }

    async fn stop(&self, timeout: Duration) -> Result<ControlOutcome, ControlError> {
        self.run(Operation::Stop, timeout).await
    }

    async fn restart(&self, timeout: Duration) -> Result<ControlOutcome, ControlError> {
        self.run(Operation::Restart, timeout).await
    }

    async fn status(&self) -> Result<ServiceStatus, ControlError> {
        self.enter(Method::Status, Call::Status)?;
        Ok(self.status_now())
    }

    async fn limits(&self) -> Result<ResourceLimits, ControlError> {
        self.enter(Method::Limits, Call::Limits)?;
        Ok(self.script().limits.clone())
    }

    async fn set_limits(
        &self,
        limits: &ResourceLimits,
        persistent: bool,
    ) -> Result<ResourceLimits, ControlError> {
        self.enter(
            Method::SetLimits,
            Call::SetLimits {
                limits: limits.clone(),
                persistent,
            },
        )?;
        self.script().limits = limits.clone();
        Ok(limits.clone())
    }

    async fn logs(&self, query: &LogQuery) -> Result<Vec<LogEntry>, ControlError> {
        self.enter(Method::Logs, Call::Logs(query.clone()))?;
        let entries = self.script().log_entries.clone();
        Ok(logs::select(entries, query))
    }

    async fn follow_logs(
        &self,
        query: &LogQuery,
    ) -> Result<BoxStream<'static, Result<LogEntry, ControlError>>, ControlError> {
        self.enter(Method::FollowLogs, Call::FollowLogs(query.clone()))?;
        let query = query.clone();
        let receiver = self.new_logs.subscribe();
        Ok(broadcast_stream(receiver)
            .filter(move |entry| std::future::ready(logs::matches(entry, &query)))
            .map(Ok)
            .boxed())
    }

    async fn watch(&self) -> Result<BoxStream<'static, ()>, ControlError> {
        self.enter(Method::Watch, Call::Watch)?;
        Ok(broadcast_stream(self.changes.subscribe()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(1);

    fn entry(level: &str, message: &str) -> LogEntry {
        LogEntry {
            timestamp: Utc::now(),
            level: level.into(),
            message: message.into(),
            group_id: None,
            pid: None,
        }
    }

    #[tokio::test]
    async fn operations_move_the_status_unless_scripted_to_fail() {
        let backend = FakeBackend::new();
        let started = backend.operate(Operation::Start, TIMEOUT).await.unwrap();
        let status = backend.status().await.unwrap();
        assert!(status.running);
        assert_eq!(started.pid, status.pid);

        backend.queue_outcome(
            Operation::Stop,
            ControlOutcome {
                success: false,
                result: JobResult::Timeout,
                message: "stop timed out".into(),
                pid: None,
                recent_logs: Vec::new(),
            },
        );
        let refused = backend.operate(Operation::Stop, TIMEOUT).await.unwrap();
        assert_eq!(refused.result, JobResult::Timeout);
        assert!(
            backend.status().await.unwrap().running,
            "failed stop left it"
        );

        backend.operate(Operation::Restart, TIMEOUT).await.unwrap();
        let restarted = backend.status().await.unwrap();
        assert_ne!(restarted.pid, status.pid, "a restart takes a new PID");
        backend.operate(Operation::Stop, TIMEOUT).await.unwrap();
        assert!(!backend.status().await.unwrap().running);
        assert_eq!(
            backend.operations(),
            [
                Operation::Start,
                Operation::Stop,
                Operation::Restart,
                Operation::Stop
            ]
        );
    }

    #[tokio::test]
    async fn failures_are_one_shot_or_persistent_and_still_recorded() {
        let backend = FakeBackend::new();
        backend.fail_next(Method::Status, ControlError::Unavailable("bus".into()));
        assert!(matches!(
            backend.status().await,
            Err(ControlError::Unavailable(_))
        ));
        assert!(backend.status().await.is_ok());
        backend.fail_always(Method::Operation(Operation::Start), || {
            ControlError::PermissionDenied("polkit".into())
        });
        for _ in 0..2 {
            assert!(matches!(
                backend.start(TIMEOUT).await,
                Err(ControlError::PermissionDenied(_))
            ));
        }
        backend.stop_failing(Method::Operation(Operation::Start));
        assert!(backend.start(TIMEOUT).await.unwrap().success);
        assert_eq!(backend.calls().len(), 5);
    }

    #[tokio::test]
    async fn logs_are_filtered_by_the_real_query_and_followed() {
        let backend = FakeBackend::new();
        backend
            .push_log(entry("INFO", "registered group"))
            .push_log(entry("ERROR", "conversion failed"));
        let errors = backend
            .logs(&LogQuery {
                min_level: Some("ERROR".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].message, "conversion failed");

        let mut follow = backend
            .follow_logs(&LogQuery {
                grep: Some("later".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        backend
            .push_log(entry("INFO", "not this"))
            .push_log(entry("INFO", "a later line"));
        let next = follow.next().await.unwrap().unwrap();
        assert_eq!(next.message, "a later line");
    }

    #[tokio::test]
    async fn watch_yields_on_every_status_change() {
        let backend = FakeBackend::new();
        let mut changes = backend.watch().await.unwrap();
        backend.set_running(7);
        assert_eq!(changes.next().await, Some(()));
        backend.stop(TIMEOUT).await.unwrap();
        assert_eq!(changes.next().await, Some(()));
    }
}
