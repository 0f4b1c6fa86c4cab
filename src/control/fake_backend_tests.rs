//! The health verdict ([`report::gather`] + [`Snapshot::health_report`]) and the
//! alert rules ([`alerts`]) against [`FakeBackend`]: the real logic, a real
//! config file and a real SQLite queue DB in a temp dir, only the service
//! manager replaced.

use std::path::Path;
use std::time::Duration;

use contimg_core::config::{ConfigStore, StreamingConfig};
use contimg_core::queue::{NewFile, Queue, unix_now};

use crate::alerts::{
    AlertEngine, AlertEvent, AlertInputs, AlertRule, AlertThresholds, Severity,
    critical_for_snapshot,
};
use crate::report::{self, HEARTBEAT_STALE_SECONDS, Snapshot};
use crate::testing::{FakeBackend, Method};
use crate::{Backend, ControlError, Operation, ResourceUsage};

/// A state dir with a saved config whose queue DB lives inside it.
struct StateDir {
    dir: tempfile::TempDir,
    store: ConfigStore,
}

impl StateDir {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = ConfigStore::new(dir.path());
        let mut config = StreamingConfig::with_state_dir(dir.path());
        for (field, sub) in [
            (&mut config.input_dir, "in"),
            (&mut config.output_dir, "out"),
            (&mut config.scratch_dir, "scratch"),
        ] {
            *field = dir.path().join(sub);
            std::fs::create_dir_all(&*field).unwrap();
        }
        store.save(&config).unwrap();
        Self { dir, store }
    }

    fn queue_db(&self) -> std::path::PathBuf {
        self.dir.path().join("ingest.sqlite3")
    }

    fn queue(&self) -> Queue {
        Queue::open(&self.queue_db()).unwrap()
    }
}

fn subband(dir: &Path, timestamp: f64, subband_idx: u32) -> NewFile {
    NewFile {
        path: dir
            .join(format!("{timestamp}_sb{subband_idx:02}.hdf5"))
            .display()
            .to_string(),
        timestamp,
        subband_idx,
        size_bytes: Some(10),
        mtime: None,
        meta_json: None,
    }
}

async fn health(backend: &FakeBackend, state: &StateDir) -> (Snapshot, Vec<String>) {
    let snapshot = report::gather(backend, &state.store).await.unwrap();
    let critical = tokio::task::spawn_blocking({
        let snapshot = snapshot.clone();
        move || critical_for_snapshot(&snapshot)
    })
    .await
    .unwrap();
    (snapshot, critical)
}

fn failing_checks(snapshot: &Snapshot, critical: &[String]) -> Vec<String> {
    snapshot
        .health_report(critical)
        .checks
        .into_iter()
        .filter(|check| !check.ok)
        .map(|check| check.name)
        .collect()
}

#[tokio::test]
async fn a_started_worker_with_a_fresh_heartbeat_is_healthy() {
    let state = StateDir::new();
    let backend = FakeBackend::new();
    backend
        .operate(Operation::Start, Duration::from_secs(1))
        .await
        .unwrap();
    backend.set_resources(ResourceUsage {
        memory_bytes: Some(64 << 20),
        ..Default::default()
    });
    let pid = backend.status_now().pid.unwrap();
    state
        .queue()
        .heartbeat(pid, unix_now(), unix_now())
        .unwrap();

    let (snapshot, critical) = health(&backend, &state).await;
    let verdict = snapshot.health_report(&critical);
    assert!(verdict.healthy, "{verdict:?}");
    assert_eq!(verdict.memory_mb, Some(64.0));
    assert!(
        verdict
            .checks
            .iter()
            .any(|c| c.name == "heartbeat" && c.detail.contains(&format!("PID {pid}"))),
        "{verdict:?}"
    );
}

#[tokio::test]
async fn a_failed_unit_is_not_running_and_raises_service_down() {
    let state = StateDir::new();
    let backend = FakeBackend::new();
    backend.set_failed("exit-code");
    // An old heartbeat: the worker ran once.
    state
        .queue()
        .heartbeat(7, 1000.0, unix_now() - 10.0 * HEARTBEAT_STALE_SECONDS)
        .unwrap();

    let (snapshot, critical) = health(&backend, &state).await;
    assert_eq!(critical, ["the worker failed and is not running"]);
    let verdict = snapshot.health_report(&critical);
    assert!(!verdict.running && !verdict.healthy);
    assert_eq!(
        failing_checks(&snapshot, &critical),
        ["service_running", "heartbeat", "alerts"]
    );
    assert!(
        verdict
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("exit-code; ")),
        "the unit's Result= leads the error: {verdict:?}"
    );
}

#[tokio::test]
async fn a_running_worker_whose_queue_db_is_missing_is_unhealthy() {
    let state = StateDir::new();
    let backend = FakeBackend::new();
    backend.set_running(42);
    // No queue DB was ever created: the reader cannot open it.
    let (snapshot, critical) = health(&backend, &state).await;
    assert!(snapshot.queue.stats.is_none());
    let failing = failing_checks(&snapshot, &critical);
    assert!(failing.contains(&"queue_db".to_string()), "{failing:?}");
    assert!(failing.contains(&"heartbeat".to_string()), "{failing:?}");
}

#[tokio::test]
async fn an_invalid_config_fails_the_config_check_but_still_reports_the_service() {
    let state = StateDir::new();
    std::fs::write(state.store.path(), "max_workers = 0\n").unwrap();
    let backend = FakeBackend::new();
    backend.set_running(42);
    let (snapshot, critical) = health(&backend, &state).await;
    assert!(snapshot.status.running);
    assert!(snapshot.config.is_none());
    assert!(failing_checks(&snapshot, &critical).contains(&"config".to_string()));
}

#[tokio::test]
async fn gather_passes_on_the_backends_error() {
    let state = StateDir::new();
    let backend = FakeBackend::new();
    backend.fail_next(
        Method::Status,
        ControlError::PermissionDenied("polkit said no".into()),
    );
    let result = report::gather(&backend, &state.store).await;
    assert!(
        matches!(result, Err(ControlError::PermissionDenied(_))),
        "{result:?}"
    );
}

/// The producer's loop in miniature: the backend's status and the real queue
/// stats feed the engine.
fn inputs(now: f64, backend: &FakeBackend, state: &StateDir) -> AlertInputs {
    let status = backend.status_now();
    let stats = state.queue().stats(now).unwrap();
    AlertInputs::from_state(
        now,
        status.running,
        status.active_state == "failed",
        true,
        status.restart_count,
        Some(&stats),
    )
}

#[tokio::test]
async fn restarts_counted_by_the_backend_raise_restart_loop_once() {
    let state = StateDir::new();
    let backend = FakeBackend::new();
    backend.set_running(1);
    let mut engine = AlertEngine::new(AlertThresholds::default());
    let now = unix_now();
    assert!(engine.evaluate(&inputs(now, &backend, &state)).is_empty());
    let mut raised = Vec::new();
    for restarts in 1..=4 {
        backend.set_restart_count(restarts);
        raised.extend(engine.evaluate(&inputs(now + f64::from(restarts), &backend, &state)));
    }
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].event, AlertEvent::Raised);
    assert_eq!(raised[0].alert.rule, AlertRule::RestartLoop);
    assert_eq!(raised[0].alert.id, "restart_loop");
    assert!(engine.has_critical());
}

#[tokio::test]
async fn groups_still_collecting_in_the_real_queue_raise_incomplete_groups() {
    let state = StateDir::new();
    let backend = FakeBackend::new();
    backend.set_running(1);
    let now = unix_now();
    let mut queue = state.queue();
    let thresholds = AlertThresholds::default();
    // One subband each, ten minutes apart: every one its own collecting group.
    for group in 0..=thresholds.incomplete_groups {
        let timestamp = now - 3600.0 + 600.0 * group as f64;
        queue
            .register_file(&subband(state.dir.path(), timestamp, 0), 16, 60.0, now)
            .unwrap();
    }
    let mut engine = AlertEngine::new(thresholds);
    let changes = engine.evaluate(&inputs(now, &backend, &state));
    let rules: Vec<(AlertRule, Severity)> = changes
        .iter()
        .map(|c| (c.alert.rule, c.alert.severity))
        .collect();
    assert_eq!(rules, [(AlertRule::IncompleteGroups, Severity::Warning)]);
    assert!(
        !engine.has_critical(),
        "a warning does not make it unhealthy"
    );
}

#[tokio::test]
async fn a_stopped_service_that_should_run_is_down_after_the_grace_and_clears_on_start() {
    let state = StateDir::new();
    let backend = FakeBackend::new();
    let mut engine = AlertEngine::new(AlertThresholds::default());
    let now = unix_now();
    assert!(engine.evaluate(&inputs(now, &backend, &state)).is_empty());
    let down = engine.evaluate(&inputs(now + 11.0, &backend, &state));
    assert_eq!(down[0].alert.rule, AlertRule::ServiceDown);
    backend
        .operate(Operation::Start, Duration::from_secs(1))
        .await
        .unwrap();
    let up = engine.evaluate(&inputs(now + 12.0, &backend, &state));
    assert_eq!(up[0].event, AlertEvent::Cleared);
    assert_eq!(up[0].alert.rule, AlertRule::ServiceDown);
    assert!(engine.list().active.is_empty());
}
