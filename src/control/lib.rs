//! Control backends: one interface to start, stop, restart and observe the worker,
//! whether it runs as a systemd unit, a Docker container or a direct child process.
//!
//! `contimgctl` and `contimg-api` both hold an `Arc<dyn Backend>` and never care
//! which implementation is behind it.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub mod alerts;
pub mod detect;
pub mod docker;
pub mod job_log;
pub mod logs;
pub mod process;
pub mod report;
pub mod state_dir;
pub mod systemd;
pub mod testing;

#[cfg(test)]
mod fake_backend_tests;

pub use detect::connect;

/// The default worker unit (`--unit`).
pub const DEFAULT_UNIT: &str = "contimg-stream.service";
/// The default container name of the docker backend.
pub const DEFAULT_CONTAINER: &str = "contimg-stream";
/// How long `stop` waits for a worker to exit after SIGTERM before SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Which implementation controls the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Systemd,
    Docker,
    Process,
}

impl BackendKind {
    /// The backend in words, for `contimgctl status` and the dashboard:
    /// "systemd system unit contimg-stream.service", "Docker container NAME",
    /// "direct process (PID file)". `manager` ("system", "user") when known.
    pub fn describe(self, target: &str, manager: Option<&str>) -> String {
        match (self, manager) {
            (BackendKind::Systemd, Some(manager)) => format!("systemd {manager} unit {target}"),
            (BackendKind::Systemd, None) => format!("systemd unit {target}"),
            (BackendKind::Docker, _) => format!("Docker container {target}"),
            (BackendKind::Process, _) => "direct process (PID file)".to_string(),
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Systemd => "systemd",
            BackendKind::Docker => "docker",
            BackendKind::Process => "process",
        })
    }
}

/// Resource usage of the worker, read from its cgroup (systemd, docker) or /proc
/// (process). `None` means "not available", never zero.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceUsage {
    /// CPU use over the last sampling interval, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Cumulative CPU time of every process in the unit.
    pub cpu_usage_seconds: Option<f64>,
    pub memory_bytes: Option<u64>,
    /// The effective memory limit, `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    pub tasks: Option<u64>,
}

/// A point-in-time view of the worker, shared by the CLI's `status` and the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub backend: BackendKind,
    /// Unit name, container name, or "process".
    pub unit: String,
    pub running: bool,
    /// systemd vocabulary for every backend: active, inactive, activating,
    /// deactivating, failed, reloading.
    pub active_state: String,
    /// running, dead, exited, auto-restart, start, stop-sigterm, …
    pub sub_state: String,
    pub pid: Option<u32>,
    pub started_at: Option<DateTime<Utc>>,
    pub uptime_seconds: Option<f64>,
    pub restart_count: u32,
    /// sd_notify `STATUS=` text (systemd), or the backend's equivalent.
    pub status_text: Option<String>,
    pub resources: ResourceUsage,
    /// Why the last run failed, when the backend knows (e.g. systemd `Result=`).
    pub error: Option<String>,
}

impl ServiceStatus {
    /// An inactive (dead) service of `kind` named `target`: what a backend reports
    /// before it learns anything else.
    pub fn stopped(kind: BackendKind, target: &str) -> Self {
        ServiceStatus {
            backend: kind,
            unit: target.to_string(),
            running: false,
            active_state: "inactive".into(),
            sub_state: "dead".into(),
            pid: None,
            started_at: None,
            uptime_seconds: None,
            restart_count: 0,
            status_text: None,
            resources: ResourceUsage::default(),
            error: None,
        }
    }
}

/// What an operator asks of the worker: the one vocabulary of `contimgctl
/// start|stop|restart`, `POST /api/streaming/{start,stop,restart}` and the
/// backends. Matches on it have no `_ =>` arm, so a new variant fails the build
/// wherever it is not handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Start,
    Stop,
    Restart,
}

impl Operation {
    pub const ALL: [Operation; 3] = [Operation::Start, Operation::Stop, Operation::Restart];

    /// The verb: `start`, `stop`, `restart` (as in the CLI and the API paths).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Start => "start",
            Operation::Stop => "stop",
            Operation::Restart => "restart",
        }
    }

    /// `started`, `stopped`, `restarted`, for outcome messages.
    pub fn past_tense(self) -> &'static str {
        match self {
            Operation::Start => "started",
            Operation::Stop => "stopped",
            Operation::Restart => "restarted",
        }
    }

    /// Whether the worker is meant to run once the operation succeeded (what
    /// the API's `should_run` and the supervisor's restart budget follow).
    pub fn leaves_running(self) -> bool {
        match self {
            Operation::Start | Operation::Restart => true,
            Operation::Stop => false,
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a start/stop/restart ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobResult {
    Done,
    Failed,
    Timeout,
    Canceled,
    Dependency,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlOutcome {
    pub success: bool,
    pub result: JobResult,
    pub message: String,
    pub pid: Option<u32>,
    /// The unit's last log lines when the operation failed.
    pub recent_logs: Vec<LogEntry>,
}

/// Resource limits; `None` = no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceLimits {
    pub memory_max_bytes: Option<u64>,
    /// Percent of one core: 200.0 = two cores.
    pub cpu_quota_percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub timestamp: DateTime<Utc>,
    /// ERROR, WARNING, INFO, DEBUG (syslog priorities mapped onto these).
    pub level: String,
    pub message: String,
    pub group_id: Option<String>,
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogQuery {
    /// Last N lines (before filtering by `since`).
    pub lines: usize,
    pub since: Option<DateTime<Utc>>,
    /// Case-insensitive substring match on the message.
    pub grep: Option<String>,
    pub group_id: Option<String>,
    /// Minimum level: ERROR < WARNING < INFO < DEBUG.
    pub min_level: Option<String>,
}

/// Errors every backend reports in the same vocabulary, so the CLI can map them to
/// exit codes and the API to HTTP statuses.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot reach the service manager: {0}")]
    Unavailable(String),
    #[error("unit {0} is not known to the service manager")]
    UnknownUnit(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    #[error("operation not supported by the {0} backend: {1}")]
    Unsupported(BackendKind, String),
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The service manager (systemd over D-Bus, dockerd) refused or failed a
    /// request for another reason than the ones above; the text is its answer.
    #[error("{0}")]
    Manager(String),
    /// process backend: nothing to start.
    #[error("worker binary {} not found (use --worker-bin)", path.display())]
    WorkerBinaryMissing { path: PathBuf },
    /// process backend: the worker exited before its PID file was written.
    #[error("worker PID {pid} vanished right after spawning")]
    WorkerVanished { pid: u32 },
    #[error("cannot write the PID file {}: {source}", path.display())]
    PidFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A helper task died (a panic in blocking code).
    #[error("{0}")]
    Task(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Exit codes of `contimgctl` (documented in `--help` and docs/operations.md).
pub mod exit_code {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    /// `status`/`health`: the service is not running (as `systemctl status`).
    pub const NOT_RUNNING: i32 = 3;
    pub const PERMISSION_DENIED: i32 = 4;
    pub const UNKNOWN_UNIT: i32 = 5;
    /// The service manager (D-Bus, dockerd) cannot be reached.
    pub const UNAVAILABLE: i32 = 6;
}

impl ControlError {
    /// The CLI's exit code for this error (documented in `contimgctl --help`).
    pub fn exit_code(&self) -> i32 {
        match self {
            ControlError::PermissionDenied(_) => exit_code::PERMISSION_DENIED,
            ControlError::Invalid(_) => exit_code::USAGE,
            ControlError::UnknownUnit(_) => exit_code::UNKNOWN_UNIT,
            ControlError::Unavailable(_) => exit_code::UNAVAILABLE,
            ControlError::Timeout(..)
            | ControlError::Unsupported(..)
            | ControlError::Manager(_)
            | ControlError::WorkerBinaryMissing { .. }
            | ControlError::WorkerVanished { .. }
            | ControlError::PidFile { .. }
            | ControlError::Task(_)
            | ControlError::Io(_) => exit_code::FAILED,
        }
    }
}

/// Which backend to use; `Auto` detects one (see [`detect::connect`]). The one
/// spelling of `--backend` for `contimgctl` and `contimg-api` (clap) and of
/// `backend =` in the daemon's config file (serde).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    #[default]
    Auto,
    Systemd,
    Docker,
    Process,
}

impl BackendChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Systemd => "systemd",
            BackendChoice::Docker => "docker",
            BackendChoice::Process => "process",
        }
    }
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything needed to reach the worker, shared by `contimgctl` and `contimg-api`.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    pub backend: BackendChoice,
    /// systemd: the calling user's manager (session bus) instead of the system one.
    /// With `Auto`, the user manager is tried after the system manager anyway.
    pub user: bool,
    /// Unit name (`contimg-stream.service`); with `instance`, the template's base.
    pub unit: String,
    /// Template instance: `contimg-stream@NAME.service`.
    pub instance: Option<String>,
    pub state_dir: PathBuf,
    /// Config file passed to the worker by the process/docker backends
    /// (default: the state dir's `streaming.toml`).
    pub config_path: Option<PathBuf>,
    /// process backend: the worker binary (default: `contimg-stream` next to the
    /// current executable).
    pub worker_bin: Option<PathBuf>,
    /// Extra arguments for the worker (process backend).
    pub worker_args: Vec<String>,
    /// A log file the worker writes (e.g. `StandardError=append:` in the unit), read
    /// by `logs` when the journal has nothing for the unit (no journald, as in the
    /// test user manager). Default: `<state_dir>/logs/contimg-stream.log` if present.
    pub log_file: Option<PathBuf>,
    /// Docker Engine socket (default `/var/run/docker.sock`).
    pub docker_socket: Option<PathBuf>,
    /// Image for the docker backend; docker is only auto-detected when set.
    pub docker_image: Option<String>,
    pub docker_container: String,
    /// Extra host directories bind-mounted at the same path into the container
    /// (input/output dirs; the state dir is always mounted).
    pub docker_mounts: Vec<PathBuf>,
    /// Worker stop grace period (process: SIGTERM→SIGKILL; docker: stop timeout).
    pub stop_timeout: Duration,
    /// The cgroup filesystem root (tests point it at fixtures).
    pub cgroup_root: PathBuf,
    /// systemd: a D-Bus address to use instead of the system/session bus from the
    /// environment (e.g. `unix:path=/tmp/sdtest.X/runtime/bus` of a test manager).
    pub bus_address: Option<String>,
}

impl Default for ControlOptions {
    fn default() -> Self {
        Self {
            backend: BackendChoice::Auto,
            user: false,
            unit: DEFAULT_UNIT.to_string(),
            instance: None,
            state_dir: PathBuf::from("state"),
            config_path: None,
            worker_bin: None,
            worker_args: Vec::new(),
            log_file: None,
            docker_socket: None,
            docker_image: None,
            docker_container: DEFAULT_CONTAINER.to_string(),
            docker_mounts: Vec::new(),
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            bus_address: None,
        }
    }
}

impl ControlOptions {
    /// The full unit name: `contimg-stream.service`, or with an instance
    /// `contimg-stream@NAME.service`. A name without a suffix gets `.service`.
    pub fn unit_name(&self) -> String {
        let base = self.unit.trim();
        let base = base.strip_suffix(".service").unwrap_or(base);
        match &self.instance {
            Some(instance) => {
                let template = base.split('@').next().unwrap_or(base);
                format!("{template}@{instance}.service")
            }
            None => format!("{base}.service"),
        }
    }

    /// The log file `logs` falls back to (see [`ControlOptions::log_file`]).
    pub fn effective_log_file(&self) -> Option<PathBuf> {
        self.log_file.clone().or_else(|| {
            let default = self.state_dir.join("logs").join("contimg-stream.log");
            default.exists().then_some(default)
        })
    }
}

impl ResourceUsage {
    pub fn memory_mb(&self) -> Option<f64> {
        self.memory_bytes.map(bytes_to_mb)
    }
    pub fn memory_limit_mb(&self) -> Option<f64> {
        self.memory_limit_bytes.map(bytes_to_mb)
    }
}

fn bytes_to_mb(bytes: u64) -> f64 {
    (bytes as f64 / (1024.0 * 1024.0) * 100.0).round() / 100.0
}

#[async_trait]
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;
    /// The unit/container name this backend controls.
    fn target(&self) -> &str;
    /// What controls the worker, in words ([`BackendKind::describe`]).
    fn describe(&self) -> String {
        self.kind().describe(self.target(), None)
    }
    async fn start(&self, timeout: Duration) -> Result<ControlOutcome, ControlError>;
    async fn stop(&self, timeout: Duration) -> Result<ControlOutcome, ControlError>;
    async fn restart(&self, timeout: Duration) -> Result<ControlOutcome, ControlError>;
    /// Runs `operation`: the one dispatch from [`Operation`] to the methods above.
    async fn operate(
        &self,
        operation: Operation,
        timeout: Duration,
    ) -> Result<ControlOutcome, ControlError> {
        match operation {
            Operation::Start => self.start(timeout).await,
            Operation::Stop => self.stop(timeout).await,
            Operation::Restart => self.restart(timeout).await,
        }
    }
    async fn status(&self) -> Result<ServiceStatus, ControlError>;
    async fn limits(&self) -> Result<ResourceLimits, ControlError>;
    /// `persistent = false` applies until the next boot/daemon-reload (systemd runtime).
    async fn set_limits(
        &self,
        limits: &ResourceLimits,
        persistent: bool,
    ) -> Result<ResourceLimits, ControlError>;
    async fn logs(&self, query: &LogQuery) -> Result<Vec<LogEntry>, ControlError>;
    /// New log entries as they are written, starting after the last `query.lines`.
    async fn follow_logs(
        &self,
        query: &LogQuery,
    ) -> Result<BoxStream<'static, Result<LogEntry, ControlError>>, ControlError>;
    /// Yields `()` whenever the service's state may have changed (D-Bus
    /// PropertiesChanged, process exit, docker events); consumers then re-read
    /// `status()`. Lets the API push changes instead of polling.
    async fn watch(&self) -> Result<BoxStream<'static, ()>, ControlError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    /// clap (`--backend`) and serde (the daemon's `backend =`) spell every
    /// choice the same way.
    #[test]
    fn backend_choice_has_one_spelling_for_clap_and_serde() {
        let names: Vec<String> = BackendChoice::value_variants()
            .iter()
            .map(|choice| {
                let clap_name = choice.to_possible_value().unwrap().get_name().to_string();
                let serde_name = serde_json::to_value(choice).unwrap();
                assert_eq!(serde_name, clap_name.as_str());
                assert_eq!(choice.to_string(), clap_name);
                clap_name
            })
            .collect();
        assert_eq!(names, ["auto", "systemd", "docker", "process"]);
        assert!(<BackendChoice as ValueEnum>::from_str("podman", false).is_err());
    }

    #[test]
    fn operations_keep_their_wire_names() {
        let names: Vec<String> = Operation::ALL
            .iter()
            .map(|op| {
                assert_eq!(serde_json::to_value(op).unwrap(), op.as_str());
                op.to_string()
            })
            .collect();
        assert_eq!(names, ["start", "stop", "restart"]);
        assert_eq!(
            Operation::ALL.map(Operation::leaves_running),
            [true, false, true]
        );
    }

    /// Every error's exit code (docs/operations.md's table).
    #[test]
    fn control_errors_map_to_the_documented_exit_codes() {
        let cases = [
            (
                ControlError::Unavailable("bus".into()),
                exit_code::UNAVAILABLE,
            ),
            (
                ControlError::UnknownUnit("u".into()),
                exit_code::UNKNOWN_UNIT,
            ),
            (
                ControlError::PermissionDenied("polkit".into()),
                exit_code::PERMISSION_DENIED,
            ),
            (ControlError::Invalid("quota".into()), exit_code::USAGE),
            (
                ControlError::Timeout(Duration::from_secs(1), "start".into()),
                exit_code::FAILED,
            ),
            (ControlError::Manager("D-Bus: x".into()), exit_code::FAILED),
            (
                ControlError::WorkerBinaryMissing {
                    path: "/nope".into(),
                },
                exit_code::FAILED,
            ),
            (ControlError::WorkerVanished { pid: 1 }, exit_code::FAILED),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error}");
        }
    }
}
