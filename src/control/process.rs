//! The process backend: the worker as a direct child in its own session and
//! process group — the fallback where no service manager is reachable.
//!
//! State lives in the state dir: `run/contimg-stream.pid` records the PID **and**
//! the process start time from `/proc/PID/stat`, so a PID reused by an unrelated
//! process after a crash is never taken for the worker. Output goes to
//! `logs/contimg-stream.log` (opened `O_APPEND`, so it survives `contimgctl`
//! exiting); it is kept under [`LOG_MAX_BYTES`] by copy-and-truncate rotation into
//! `contimg-stream.log.1` whenever the backend is used (status, logs, start).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::{
    Backend, BackendKind, ControlError, ControlOptions, ControlOutcome, JobResult, LogEntry,
    LogQuery, ResourceLimits, ResourceUsage, ServiceStatus, logs,
};
use contimg_core::metrics::CpuSampler;
use contimg_core::metrics::procfs::{self, ProcFs};

/// Rotation threshold of the worker's log file.
pub const LOG_MAX_BYTES: u64 = 16 * 1024 * 1024;
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long `start` watches a fresh worker before calling the start a success.
const START_SETTLE: Duration = Duration::from_millis(500);
const FAILURE_LOG_LINES: usize = 20;

/// The PID file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PidRecord {
    pub pid: u32,
    /// `/proc/PID/stat` field 22: with the PID, identifies this very process.
    pub start_ticks: u64,
    pub started_at: DateTime<Utc>,
    pub worker_bin: PathBuf,
}

pub struct ProcessBackend {
    state_dir: PathBuf,
    config_path: Option<PathBuf>,
    worker_bin: PathBuf,
    worker_args: Vec<String>,
    stop_timeout: Duration,
    procfs: ProcFs,
    cpu: CpuSampler,
}

/// `contimg-stream` next to the running executable (`target/debug/` in tests,
/// `/usr/bin` when installed).
pub fn default_worker_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("contimg-stream")))
        .unwrap_or_else(|| PathBuf::from("contimg-stream"))
}

enum Liveness {
    /// No PID file: never started or stopped cleanly.
    Stopped,
    Running(PidRecord),
    /// A PID file whose process is gone (or is now another process): it died.
    Died(PidRecord),
}

impl ProcessBackend {
    pub fn new(options: &ControlOptions) -> Self {
        Self {
            state_dir: options.state_dir.clone(),
            config_path: options.config_path.clone(),
            worker_bin: options
                .worker_bin
                .clone()
                .unwrap_or_else(default_worker_bin),
            worker_args: options.worker_args.clone(),
            stop_timeout: options.stop_timeout,
            procfs: ProcFs::default(),
            cpu: CpuSampler::new(),
        }
    }

    pub fn pid_file(&self) -> PathBuf {
        self.state_dir.join("run").join("contimg-stream.pid")
    }

    pub fn log_file(&self) -> PathBuf {
        self.state_dir.join("logs").join("contimg-stream.log")
    }

    fn read_record(&self) -> Option<PidRecord> {
        let text = std::fs::read_to_string(self.pid_file()).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn is_our_process(&self, record: &PidRecord) -> bool {
        match self.procfs.stat(record.pid) {
            Some(stat) => stat.start_ticks == record.start_ticks && stat.state != 'Z',
            None => false,
        }
    }

    fn liveness(&self) -> Liveness {
        match self.read_record() {
            None => Liveness::Stopped,
            Some(record) if self.is_our_process(&record) => Liveness::Running(record),
            Some(record) => Liveness::Died(record),
        }
    }

    fn rotate_log_if_needed(&self) {
        let path = self.log_file();
        let Ok(meta) = std::fs::metadata(&path) else {
            return;
        };
        if meta.len() <= LOG_MAX_BYTES {
            return;
        }
        // Copy then truncate: the worker's O_APPEND descriptor keeps writing to the
        // same file, now from offset 0.
        let rotated = logs::rotated_path(&path);
        if std::fs::copy(&path, &rotated).is_ok()
            && let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path)
        {
            let _ = file.set_len(0);
        }
    }

    fn spawn_worker(&self) -> Result<PidRecord, ControlError> {
        if !self.worker_bin.exists() {
            return Err(ControlError::WorkerBinaryMissing {
                path: self.worker_bin.clone(),
            });
        }
        let log_path = self.log_file();
        for dir in [log_path.parent(), self.pid_file().parent()]
            .into_iter()
            .flatten()
        {
            std::fs::create_dir_all(dir)?;
        }
        self.rotate_log_if_needed();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut command = std::process::Command::new(&self.worker_bin);
        command.arg("--state-dir").arg(&self.state_dir);
        if let Some(config) = &self.config_path {
            command.arg("--config").arg(config);
        }
        command
            .args(&self.worker_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Not under systemd: make sure the worker does not try to notify one.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM");
        contimg_core::process::inherit_only_stdio(&mut command);
        // SAFETY: setsid is async-signal-safe; it gives the worker its own session
        // and process group, so a terminal hangup of the caller does not reach it.
        // Its converters run in process groups of their own, which the worker
        // records under the state dir; see `stop`.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn()?;
        let pid = child.id();
        let recorded = self.record_pid(pid);
        if let Err(err) = &recorded {
            // Without a PID file nothing could see or stop this worker (and a
            // second one would be started next to it): end it at once.
            tracing::warn!(pid, %err, "killing the worker just started: it cannot be tracked");
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        // Reap the child in every case if this process lives on (the API daemon),
        // so it does not linger as a zombie that still looks alive in /proc.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        recorded
    }

    /// Writes the PID file for a worker just spawned.
    fn record_pid(&self, pid: u32) -> Result<PidRecord, ControlError> {
        let stat = self
            .procfs
            .stat(pid)
            .ok_or(ControlError::WorkerVanished { pid })?;
        let record = PidRecord {
            pid,
            start_ticks: stat.start_ticks,
            started_at: Utc::now(),
            worker_bin: self.worker_bin.clone(),
        };
        let pid_file_error = |source| ControlError::PidFile {
            path: self.pid_file(),
            source,
        };
        let json = serde_json::to_vec_pretty(&record)
            .map_err(|err| pid_file_error(std::io::Error::other(err)))?;
        contimg_core::fsutil::atomic_write(&self.pid_file(), &json).map_err(pid_file_error)?;
        Ok(record)
    }

    async fn wait_gone(&self, record: &PidRecord, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if !self.is_our_process(record) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// A worker that died or was killed with SIGKILL leaves its converters'
    /// process groups behind (PR_SET_PDEATHSIG reaches only the converter
    /// itself); once the worker is gone, kill them, so that stopped means
    /// nothing of the worker writes any more.
    async fn kill_converter_stragglers(&self) {
        let state_dir = self.state_dir.clone();
        let stragglers = tokio::task::spawn_blocking(move || {
            let (config, _) = contimg_core::config::ConfigStore::new(&state_dir)
                .load()
                .ok()?;
            // A worker of another backend on this queue (holding its lock) owns
            // the recorded converters: leave them alone. A worker that was just
            // killed can hold the lock for a moment longer.
            let mut lock = queue_lock_if_free(&config.queue_db);
            for _ in 0..20 {
                if lock.is_some() {
                    break;
                }
                std::thread::sleep(POLL_INTERVAL);
                lock = queue_lock_if_free(&config.queue_db);
            }
            let _no_worker = lock?;
            Some(contimg_core::converter_records::kill_stragglers(
                &state_dir,
                &config.queue_db,
            ))
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
        for straggler in &stragglers {
            tracing::warn!(
                group_id = %straggler.record.group_id,
                pids = ?straggler.pids,
                "killed converter processes the stopped worker left running"
            );
        }
    }

    fn recent_logs(&self) -> Vec<LogEntry> {
        logs::file_entries(
            &self.log_file(),
            &LogQuery {
                lines: FAILURE_LOG_LINES,
                ..Default::default()
            },
        )
        .unwrap_or_default()
    }
}

/// The lock of `queue_db`, taken without waiting; `None` if a worker holds it
/// (or it cannot be opened, when we cannot tell). A lock file that does not
/// exist means no worker runs.
fn queue_lock_if_free(queue_db: &Path) -> Option<Option<nix::fcntl::Flock<std::fs::File>>> {
    let mut lock_path = queue_db.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = match std::fs::OpenOptions::new().read(true).open(&lock_path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Some(None),
        Err(_) => return None,
    };
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .ok()
        .map(Some)
}

fn outcome(success: bool, result: JobResult, message: String, pid: Option<u32>) -> ControlOutcome {
    ControlOutcome {
        success,
        result,
        message,
        pid,
        recent_logs: Vec::new(),
    }
}

#[async_trait]
impl Backend for ProcessBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Process
    }

    fn target(&self) -> &str {
        "process"
    }

    async fn start(&self, timeout: Duration) -> Result<ControlOutcome, ControlError> {
        if let Liveness::Running(record) = self.liveness() {
            return Ok(outcome(
                true,
                JobResult::Done,
                format!("already running (PID {})", record.pid),
                Some(record.pid),
            ));
        }
        let record = self.spawn_worker()?;
        // A worker that dies at once (bad config, missing dirs) is a failed start.
        let settle = START_SETTLE.min(timeout);
        let died = self.wait_gone(&record, settle).await;
        if died {
            let mut failed = outcome(
                false,
                JobResult::Failed,
                format!(
                    "the worker (PID {}) exited right after starting",
                    record.pid
                ),
                None,
            );
            failed.recent_logs = self.recent_logs();
            return Ok(failed);
        }
        Ok(outcome(
            true,
            JobResult::Done,
            format!("started the worker (PID {})", record.pid),
            Some(record.pid),
        ))
    }

    async fn stop(&self, timeout: Duration) -> Result<ControlOutcome, ControlError> {
        let record = match self.liveness() {
            Liveness::Stopped => {
                return Ok(outcome(true, JobResult::Done, "not running".into(), None));
            }
            Liveness::Died(record) => {
                let _ = std::fs::remove_file(self.pid_file());
                self.kill_converter_stragglers().await;
                return Ok(outcome(
                    true,
                    JobResult::Done,
                    format!("not running (PID {} had already exited)", record.pid),
                    None,
                ));
            }
            Liveness::Running(record) => record,
        };
        let group = Pid::from_raw(record.pid as i32);
        let grace = self.stop_timeout.min(timeout);
        let _ = killpg(group, Signal::SIGTERM);
        let mut message = format!("stopped the worker (PID {})", record.pid);
        if !self.wait_gone(&record, grace).await {
            tracing::warn!(
                pid = record.pid,
                ?grace,
                "worker ignored SIGTERM; sending SIGKILL"
            );
            let _ = killpg(group, Signal::SIGKILL);
            if !self.wait_gone(&record, Duration::from_secs(5)).await {
                return Ok(outcome(
                    false,
                    JobResult::Timeout,
                    format!("the worker (PID {}) survived SIGKILL", record.pid),
                    Some(record.pid),
                ));
            }
            message = format!(
                "killed the worker (PID {}) with SIGKILL after it ignored SIGTERM for {grace:?}",
                record.pid
            );
        }
        let _ = std::fs::remove_file(self.pid_file());
        self.kill_converter_stragglers().await;
        Ok(outcome(true, JobResult::Done, message, None))
    }

    async fn restart(&self, timeout: Duration) -> Result<ControlOutcome, ControlError> {
        let stopped = self.stop(timeout).await?;
        if !stopped.success {
            return Ok(stopped);
        }
        let mut started = self.start(timeout).await?;
        if started.success {
            started.message = format!("restarted the worker (PID {})", started.pid.unwrap_or(0));
        }
        Ok(started)
    }

    async fn status(&self) -> Result<ServiceStatus, ControlError> {
        self.rotate_log_if_needed();
        let mut status = ServiceStatus::stopped(BackendKind::Process, "process");
        match self.liveness() {
            Liveness::Stopped => {}
            Liveness::Died(record) => {
                status.active_state = "failed".into();
                status.started_at = Some(record.started_at);
                status.error = Some(format!(
                    "the worker (PID {}) exited without being stopped (crashed or killed)",
                    record.pid
                ));
            }
            Liveness::Running(record) => {
                let ticks = procfs::clock_ticks_per_second() as f64;
                let started_at = self
                    .procfs
                    .boot_time()
                    .and_then(|boot| {
                        let secs = boot as f64 + record.start_ticks as f64 / ticks;
                        DateTime::<Utc>::from_timestamp_millis((secs * 1000.0) as i64)
                    })
                    .unwrap_or(record.started_at);
                let uptime =
                    ((Utc::now() - started_at).num_milliseconds() as f64 / 1000.0).max(0.0);
                let members = self.procfs.group_members(record.pid);
                let cpu_seconds = members.iter().map(|m| m.cpu_ticks).sum::<u64>() as f64 / ticks;
                let rss = members.iter().map(|m| m.rss_pages).sum::<u64>() * procfs::page_size();
                let threads = members.iter().map(|m| m.num_threads).sum::<u64>();
                status.running = true;
                status.active_state = "active".into();
                status.sub_state = "running".into();
                status.pid = Some(record.pid);
                status.started_at = Some(started_at);
                status.uptime_seconds = Some(uptime);
                status.resources = ResourceUsage {
                    cpu_percent: self.cpu.percent(
                        &format!("{}@{}", record.pid, record.start_ticks),
                        cpu_seconds,
                        Some(uptime),
                    ),
                    cpu_usage_seconds: Some(cpu_seconds),
                    memory_bytes: Some(rss),
                    memory_limit_bytes: None,
                    tasks: Some(threads),
                };
            }
        }
        Ok(status)
    }

    async fn limits(&self) -> Result<ResourceLimits, ControlError> {
        Ok(ResourceLimits::default())
    }

    async fn set_limits(
        &self,
        _limits: &ResourceLimits,
        _persistent: bool,
    ) -> Result<ResourceLimits, ControlError> {
        Err(ControlError::Unsupported(
            BackendKind::Process,
            "resource limits need a cgroup: use the systemd or docker backend".into(),
        ))
    }

    async fn logs(&self, query: &LogQuery) -> Result<Vec<LogEntry>, ControlError> {
        self.rotate_log_if_needed();
        logs::file_entries(&self.log_file(), query)
    }

    async fn follow_logs(
        &self,
        query: &LogQuery,
    ) -> Result<BoxStream<'static, Result<LogEntry, ControlError>>, ControlError> {
        logs::follow_file(&self.log_file(), query)
    }

    async fn watch(&self) -> Result<BoxStream<'static, ()>, ControlError> {
        // No events to subscribe to: poll the PID file and /proc once a second.
        let pid_file = self.pid_file();
        let procfs = self.procfs.clone();
        let stream = futures_util::stream::unfold(None::<(bool, u32)>, move |last| {
            let pid_file = pid_file.clone();
            let procfs = procfs.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let current = current_state(&pid_file, &procfs);
                    if last != Some(current) {
                        return Some(((), Some(current)));
                    }
                }
            }
        });
        Ok(stream.boxed())
    }
}

fn current_state(pid_file: &Path, procfs: &ProcFs) -> (bool, u32) {
    let record: Option<PidRecord> = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    match record {
        Some(record) => {
            let alive = procfs
                .stat(record.pid)
                .is_some_and(|s| s.start_ticks == record.start_ticks && s.state != 'Z');
            (alive, record.pid)
        }
        None => (false, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("fake-worker.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn backend(dir: &Path, body: &str, stop_timeout: Duration) -> ProcessBackend {
        let options = ControlOptions {
            state_dir: dir.join("state"),
            worker_bin: Some(script(dir, body)),
            stop_timeout,
            ..Default::default()
        };
        ProcessBackend::new(&options)
    }

    #[tokio::test]
    async fn stop_escalates_to_sigkill_when_sigterm_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let backend = backend(
            dir.path(),
            "trap '' TERM\necho 'ignoring TERM'\nwhile true; do sleep 0.1; done",
            Duration::from_millis(700),
        );
        let started = backend.start(Duration::from_secs(5)).await.unwrap();
        assert!(started.success, "{started:?}");
        let pid = started.pid.unwrap();
        assert!(backend.status().await.unwrap().running);
        let begun = std::time::Instant::now();
        let stopped = backend.stop(Duration::from_secs(10)).await.unwrap();
        assert!(stopped.success, "{stopped:?}");
        assert!(stopped.message.contains("SIGKILL"), "{}", stopped.message);
        assert!(begun.elapsed() >= Duration::from_millis(700));
        assert!(ProcFs::default().stat(pid).is_none_or(|s| s.state == 'Z'));
        let status = backend.status().await.unwrap();
        assert!(!status.running);
        assert_eq!(status.active_state, "inactive");
    }

    #[tokio::test]
    async fn detects_a_kill_9_and_a_reused_pid_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let backend = backend(dir.path(), "exec sleep 60", Duration::from_secs(5));
        let started = backend.start(Duration::from_secs(5)).await.unwrap();
        let pid = started.pid.unwrap();
        nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        let mut status = backend.status().await.unwrap();
        for _ in 0..50 {
            if !status.running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            status = backend.status().await.unwrap();
        }
        assert!(!status.running);
        assert_eq!(status.active_state, "failed");
        assert!(status.error.unwrap().contains("without being stopped"));

        // A PID file naming a live process with another start time (PID reuse).
        let mut record = backend.read_record().unwrap();
        record.pid = std::process::id();
        record.start_ticks = 1;
        std::fs::write(backend.pid_file(), serde_json::to_vec(&record).unwrap()).unwrap();
        assert!(!backend.status().await.unwrap().running);
        // stop must not signal the unrelated process (it is the test itself).
        assert!(backend.stop(Duration::from_secs(1)).await.unwrap().success);
    }

    #[tokio::test]
    async fn logs_come_from_the_log_file() {
        let dir = tempfile::tempdir().unwrap();
        let backend = backend(
            dir.path(),
            "echo '2026-11-25T10:00:00Z  INFO hello from the worker'\nexec sleep 60",
            Duration::from_secs(5),
        );
        backend.start(Duration::from_secs(5)).await.unwrap();
        let entries = backend
            .logs(&LogQuery {
                lines: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(entries.iter().any(|e| e.message == "hello from the worker"));
        backend.stop(Duration::from_secs(5)).await.unwrap();
    }

    /// A caller (the CLI's exit code, the API's status, the supervisor) can tell
    /// a missing worker binary from other failures, and the message names it.
    #[tokio::test]
    async fn a_missing_worker_binary_is_its_own_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-worker");
        let backend = ProcessBackend::new(&ControlOptions {
            state_dir: dir.path().join("state"),
            worker_bin: Some(missing.clone()),
            ..Default::default()
        });
        let error = backend.start(Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(&error, ControlError::WorkerBinaryMissing { path } if *path == missing),
            "{error:?}"
        );
        assert!(error.to_string().contains("--worker-bin"), "{error}");
        assert_eq!(error.exit_code(), crate::exit_code::FAILED);
    }
}
