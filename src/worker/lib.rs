//! `contimg-stream`, the streaming worker: watch the input directory, group subband
//! files in the queue DB, convert complete groups with up to `max_workers` at
//! once, retry with back-off, recover after crashes, and tell systemd about it.

pub mod builtin;
pub mod convert;
pub mod ingest;
pub mod options;
mod pause;
pub mod validator;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::ingest::watch::{Candidate, scan_directory, watch_directory};
use contimg_core::config::{ConfigError, StreamingConfig};
use contimg_core::logging::LogLevelHandle;
use contimg_core::queue::{
    ClaimedGroup, FailOutcome, GroupState, NewFile, Queue, QueueError, Registration, RetryPolicy,
    SharedQueue, open_shared, unix_now,
};
use convert::{ConvertError, ConvertJob, ConvertOutput, PARTIAL_SUFFIX, run_conversion};
use options::StreamArgs;

/// Files registered per transaction during the start-up scan.
const BOOTSTRAP_BATCH: usize = 2000;
/// A file found by a directory scan must be this old before it is registered, in
/// case it is still being written under its final name.
const SCAN_QUIET_PERIOD: Duration = Duration::from_secs(1);
/// How long a starting worker waits for a previous one to release the queue DB.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// How much more start-up time each progress tick asks systemd for (30 s).
const START_TIMEOUT_EXTENSION_USEC: u32 = 30_000_000;
/// How often the status line and heartbeat are refreshed.
const STATUS_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Setup(String),
    #[error("another contimg-stream (PID {pid}) is already using the queue DB {}", queue_db.display())]
    AlreadyRunning { queue_db: PathBuf, pid: String },
}

impl WorkerError {
    /// Process exit code: 2 for configuration problems (systemd's
    /// `RestartPreventExitStatus=2` then stops a restart loop), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            WorkerError::Config(_) => 2,
            _ => 1,
        }
    }
}

/// [`queue::with_queue`](contimg_core::queue::with_queue) with the worker's error type.
async fn with_queue<T, F>(queue: &SharedQueue, work: F) -> Result<T, WorkerError>
where
    T: Send + 'static,
    F: FnOnce(&mut Queue) -> Result<T, QueueError> + Send + 'static,
{
    Ok(contimg_core::queue::with_queue(queue, work).await?)
}

/// The outcome of one conversion task.
struct Finished {
    group: ClaimedGroup,
    result: Result<ConvertOutput, ConvertError>,
}

struct Worker {
    args: StreamArgs,
    state_dir: PathBuf,
    config: StreamingConfig,
    queue: SharedQueue,
    log: LogLevelHandle,
    /// Paths already registered, rejected or known duplicates (since start).
    seen: HashSet<PathBuf>,
    /// Entries refused at admission, so an unchanged one is recorded once per run.
    refused: crate::ingest::RefusalMemo,
    /// UVH5 validators (child processes), started when validation first needs them.
    validators: Option<validator::ValidatorPool>,
    running: JoinSet<Finished>,
    /// Claimed groups by id, to requeue them if their task cannot be awaited.
    claimed: HashMap<String, ClaimedGroup>,
    cancel: watch::Sender<bool>,
    started_at: f64,
    status_dirty: bool,
    watcher: Option<notify::RecommendedWatcher>,
    file_events: mpsc::UnboundedSender<PathBuf>,
}

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

    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|err| WorkerError::Setup(err.to_string()))?;
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|err| WorkerError::Setup(err.to_string()))?;
    let mut sighup =
        signal(SignalKind::hangup()).map_err(|err| WorkerError::Setup(err.to_string()))?;

    let watchdog_period = sd_notify::watchdog_enabled().map(|period| period / 2);
    let mut watchdog = tokio::time::interval(watchdog_period.unwrap_or(Duration::from_secs(3600)));
    let mut poll = interval_secs(worker.config.poll_interval);
    let mut work_tick = interval_secs(worker.config.worker_poll_interval);
    let mut monitor = interval_secs(worker.config.monitor_interval);
    let mut status_tick = tokio::time::interval(STATUS_INTERVAL);

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
            _ = watchdog.tick(), if watchdog_period.is_some() => {
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
            _ = sighup.recv() => {
                worker.reload().await;
                poll = interval_secs(worker.config.poll_interval);
                work_tick = interval_secs(worker.config.worker_poll_interval);
                monitor = interval_secs(worker.config.monitor_interval);
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

fn prepare_directories(config: &StreamingConfig) -> Result<(), WorkerError> {
    let mut dirs = vec![&config.input_dir, &config.output_dir, &config.scratch_dir];
    if config.stage_to_tmpfs {
        dirs.push(&config.tmpfs_path);
    }
    for dir in dirs {
        std::fs::create_dir_all(dir)
            .map_err(|err| WorkerError::Setup(format!("cannot create {}: {err}", dir.display())))?;
    }
    Ok(())
}

/// Takes an exclusive `flock` on `<queue_db>.lock` and writes our PID into it.
fn lock_queue(queue_db: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, WorkerError> {
    use std::io::{Read, Seek, Write};
    let mut lock_path = queue_db.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    if let Some(dir) = lock_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|err| WorkerError::Setup(format!("cannot create {}: {err}", dir.display())))?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|err| WorkerError::Setup(format!("cannot open {}: {err}", lock_path.display())))?;
    // A worker that was just killed can still hold the lock for a moment: its
    // threads release the file table after the main thread already shows as a
    // zombie. Wait a little before calling the queue busy.
    let deadline = Instant::now() + LOCK_WAIT;
    let mut file = file;
    loop {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let _ = lock.set_len(0);
                let _ = lock.rewind();
                let _ = writeln!(lock, "{}", std::process::id());
                return Ok(lock);
            }
            Err((mut busy, nix::errno::Errno::EWOULDBLOCK)) => {
                if Instant::now() >= deadline {
                    let mut holder = String::new();
                    let _ = busy.rewind();
                    let _ = busy.read_to_string(&mut holder);
                    return Err(WorkerError::AlreadyRunning {
                        queue_db: queue_db.to_path_buf(),
                        pid: holder.trim().to_string(),
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
                file = busy;
            }
            Err((_, errno)) => {
                return Err(WorkerError::Setup(format!(
                    "cannot lock {}: {errno}",
                    lock_path.display()
                )));
            }
        }
    }
}

/// Where staged copies of a group's inputs live. Keyed by the queue DB so several
/// instances sharing one tmpfs never clean up each other's files.
fn stage_root(config: &StreamingConfig) -> PathBuf {
    let key = config.queue_db.to_string_lossy();
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    config.tmpfs_path.join(format!("contimg-stage-{hash:012x}"))
}

impl Worker {
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.config.max_retries,
            backoff_s: self.config.retry_backoff_s,
            backoff_max_s: self.config.retry_backoff_max_s,
        }
    }

    fn arm_watcher(&mut self) {
        self.watcher = match watch_directory(&self.config.input_dir, self.file_events.clone()) {
            Ok(watcher) => Some(watcher),
            Err(err) => {
                tracing::warn!(
                    "{err}; falling back to polling every {} s",
                    self.config.poll_interval
                );
                None
            }
        };
    }

    /// After a crash: requeue interrupted groups, remove what they half-wrote and
    /// any stale staging copies.
    async fn recover(&mut self) -> Result<(), WorkerError> {
        let recovered = with_queue(&self.queue, |q| q.recover_in_progress(unix_now())).await?;
        for group_id in &recovered {
            tracing::warn!(group_id = %group_id, state = "pending", "recovered a group interrupted by a previous run");
            remove_outputs_of(&self.config.output_dir, group_id);
        }
        remove_partials(&self.config.output_dir);
        let stage = stage_root(&self.config);
        if stage.exists()
            && let Err(err) = std::fs::remove_dir_all(&stage)
        {
            tracing::warn!("cannot remove stale staging dir {}: {err}", stage.display());
        }
        Ok(())
    }

    /// Scans the input directory for files the watcher may have missed; at start-up
    /// this is the bootstrap registration of everything already there.
    async fn scan(&mut self, bootstrap: bool) -> Result<(), WorkerError> {
        let dir = self.config.input_dir.clone();
        let candidates = match tokio::task::spawn_blocking(move || scan_directory(&dir)).await {
            Ok(Ok(found)) => found,
            Ok(Err(err)) => {
                tracing::warn!("{err}");
                return Ok(());
            }
            Err(err) => return Err(WorkerError::Setup(err.to_string())),
        };
        let now = std::time::SystemTime::now();
        let fresh: Vec<PathBuf> = candidates
            .into_iter()
            .filter(|c| !self.seen.contains(c))
            .filter(|c| {
                // Skip files modified a moment ago: they may still be written in
                // place. lstat: a symlink is judged itself, never its target.
                bootstrap
                    || std::fs::symlink_metadata(c)
                        .and_then(|m| m.modified())
                        .map(|mtime| {
                            now.duration_since(mtime).unwrap_or_default() >= SCAN_QUIET_PERIOD
                        })
                        .unwrap_or(false)
            })
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        if bootstrap {
            tracing::info!(
                files = fresh.len(),
                "registering files already in the input directory"
            );
        } else {
            tracing::debug!(
                files = fresh.len(),
                "scan found files the watcher did not report"
            );
        }
        for chunk in fresh.chunks(BOOTSTRAP_BATCH) {
            self.register_paths(chunk.to_vec()).await?;
        }
        Ok(())
    }

    /// Admission (see `ingest::watch::InputDir::admit`) off the async threads;
    /// `None` when `input_dir` itself cannot be opened.
    async fn admit(
        &mut self,
        paths: Vec<PathBuf>,
        expected_subbands: u32,
    ) -> Result<Option<crate::ingest::AdmittedBatch>, WorkerError> {
        let input_dir = self.config.input_dir.clone();
        let rules = crate::ingest::names::NameRules {
            expected_subbands,
            now: unix_now(),
        };
        let mut memo = std::mem::take(&mut self.refused);
        let (batch, memo) = tokio::task::spawn_blocking(move || {
            let batch = crate::ingest::admit_batch(&input_dir, paths, &rules, &mut memo);
            (batch, memo)
        })
        .await
        .map_err(|err| WorkerError::Setup(format!("admission task failed: {err}")))?;
        self.refused = memo;
        match batch {
            Ok(batch) => Ok(Some(batch)),
            Err(err) => {
                tracing::warn!("{err}");
                Ok(None)
            }
        }
    }

    /// Inspects and registers files (one transaction for the batch). The UVH5
    /// inspection runs in the validator pool without holding the queue lock.
    async fn register_paths(&mut self, paths: Vec<PathBuf>) -> Result<(), WorkerError> {
        // A burst can report one file twice; it must reach a validator once.
        let mut unique = HashSet::with_capacity(paths.len());
        let paths: Vec<PathBuf> = paths
            .into_iter()
            .filter(|p| !self.seen.contains(p) && unique.insert(p.clone()))
            .collect();
        if paths.is_empty() {
            return Ok(());
        }
        let expected = self.config.expected_subbands;
        let tolerance = self.config.group_tolerance_s;
        let validate = self.config.validate_uvh5;
        let Some(crate::ingest::AdmittedBatch {
            candidates,
            refusals,
        }) = self.admit(paths, expected).await?
        else {
            return Ok(());
        };
        let (to_inspect, mut outcomes, unrecognised) = with_queue(&self.queue, move |q| {
            let now = unix_now();
            let texts: Vec<String> = refusals
                .iter()
                .map(|r| r.path.to_string_lossy().into_owned())
                .collect();
            let entries: Vec<(&str, &str, Option<u64>)> = refusals
                .iter()
                .zip(&texts)
                .map(|(r, text)| (text.as_str(), r.reason.as_str(), r.size_bytes))
                .collect();
            let new_to_table = q.record_unrecognised(&entries, now)?;
            let unrecognised: Vec<_> = refusals
                .into_iter()
                .zip(new_to_table)
                .filter_map(|(refusal, new)| new.then_some(refusal))
                .collect();
            let mut to_inspect = Vec::with_capacity(candidates.len());
            let mut outcomes = Vec::with_capacity(candidates.len());
            for candidate in candidates {
                let path_text = candidate.path.to_string_lossy().into_owned();
                if q.is_known_path(&path_text)? {
                    outcomes.push(candidate.path);
                    continue;
                }
                // Rejected files stay out of `seen`, so a rewritten one is looked at again.
                let (size, mtime) = file_size_and_mtime(&candidate.path);
                if q.is_rejected_unchanged(&path_text, size, mtime)? {
                    continue;
                }
                to_inspect.push((candidate, size, mtime));
            }
            Ok((to_inspect, outcomes, unrecognised))
        })
        .await?;
        let inspected = self.inspect_candidates(to_inspect, validate).await?;
        let (registered, files, registrations) = with_queue(&self.queue, move |q| {
            let now = unix_now();
            let mut registered = Vec::with_capacity(inspected.len());
            let mut files = Vec::with_capacity(inspected.len());
            for outcome in inspected {
                match outcome {
                    Inspected::Register(path, file) => {
                        registered.push(path);
                        files.push(file);
                    }
                    Inspected::Reject {
                        path,
                        reason,
                        size,
                        mtime,
                    } => {
                        let path_text = path.to_string_lossy().into_owned();
                        tracing::warn!(path = %path_text, "rejected: {reason}");
                        q.reject_file(&path_text, &reason, size, mtime, now)?;
                    }
                    Inspected::NotNow => {}
                }
            }
            let registrations = q.register_files(&files, expected, tolerance, now)?;
            Ok((registered, files, registrations))
        })
        .await?;
        outcomes.extend(registered);
        self.seen.extend(outcomes);
        for refusal in &unrecognised {
            // Debug formatting: a hostile name cannot break the log line.
            tracing::warn!(path = ?refusal.path, "unrecognised file in input_dir, not registered: {}", refusal.reason);
        }
        for (file, registration) in files.iter().zip(registrations) {
            match registration {
                Registration::Added {
                    group_id,
                    state,
                    subbands,
                } => {
                    tracing::debug!(group_id = %group_id, subband = file.subband_idx, subbands, "registered {}", file.path);
                    if state == GroupState::Pending && subbands == expected {
                        tracing::info!(group_id = %group_id, state = "pending", "group complete ({subbands} subbands)");
                    }
                }
                Registration::Duplicate {
                    group_id,
                    kept_path,
                } => {
                    tracing::warn!(
                        group_id = %group_id,
                        subband = file.subband_idx,
                        "duplicate subband file {} (keeping {kept_path})",
                        file.path
                    );
                }
                Registration::Late {
                    group_id,
                    group_state,
                } => {
                    tracing::warn!(
                        group_id = %group_id,
                        subband = file.subband_idx,
                        "late subband file {} for a group already {group_state}: recorded, not attached",
                        file.path
                    );
                }
                Registration::AlreadyKnown => {}
            }
        }
        self.status_dirty = true;
        Ok(())
    }

    async fn expire_incomplete(&mut self) -> Result<(), WorkerError> {
        let timeout = self.config.incomplete_timeout_s;
        let failed = with_queue(&self.queue, move |q| {
            q.expire_incomplete(unix_now(), timeout)
        })
        .await?;
        for (group_id, error) in failed {
            tracing::error!(group_id = %group_id, state = "failed", "{error}");
            self.status_dirty = true;
        }
        Ok(())
    }

    /// Claims groups until every slot is busy or nothing is due.
    async fn fill_slots(&mut self) -> Result<(), WorkerError> {
        while self.running.len() < self.config.max_workers as usize {
            let Some(group) = with_queue(&self.queue, |q| q.claim_next(unix_now())).await? else {
                break;
            };
            tracing::info!(
                group_id = %group.group_id,
                state = "in_progress",
                attempt = group.attempt,
                "converting {} subbands",
                group.files.len()
            );
            self.status_dirty = true;
            self.claimed.insert(group.group_id.clone(), group.clone());
            let job = self.job_for(&group);
            let converter = self.config.converter.clone();
            let use_subprocess = self.config.use_subprocess;
            let timeout = Duration::from_secs_f64(self.config.convert_timeout_s);
            let cancel = self.cancel.subscribe();
            let stage = self
                .config
                .stage_to_tmpfs
                .then(|| stage_root(&self.config).join(&group.group_id));
            self.running.spawn(async move {
                let result =
                    convert_group(job, stage, &converter, use_subprocess, timeout, cancel).await;
                Finished { group, result }
            });
        }
        Ok(())
    }

    fn job_for(&self, group: &ClaimedGroup) -> ConvertJob {
        ConvertJob {
            group_id: group.group_id.clone(),
            group_ts: group.group_ts,
            chunk_minutes: self.config.chunk_duration,
            files: group.files.clone(),
            input_dir: self.config.input_dir.clone(),
            output_dir: self.config.output_dir.clone(),
            scratch_dir: self.config.scratch_dir.clone(),
            tmpfs_path: self.config.tmpfs_path.clone(),
            max_workers: self.config.max_workers,
            stage_to_tmpfs: self.config.stage_to_tmpfs,
        }
    }

    /// Writes a finished conversion's outcome to the queue.
    async fn record(&mut self, finished: Finished) -> Result<(), WorkerError> {
        let Finished { group, result } = finished;
        self.claimed.remove(&group.group_id);
        self.status_dirty = true;
        let group_id = group.group_id.clone();
        let attempt = group.attempt;
        match result {
            Ok(output) => {
                let total = output.timings.total_time.unwrap_or(0.0);
                let output_path = output
                    .output_path
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned());
                let timings = output.timings.clone();
                let id = group_id.clone();
                with_queue(&self.queue, move |q| {
                    q.complete(&id, attempt, &timings, output_path.as_deref(), unix_now())
                })
                .await?;
                tracing::info!(group_id = %group_id, state = "completed", "converted in {total:.2} s");
            }
            Err(ConvertError::Interrupted) => {
                let id = group_id.clone();
                with_queue(&self.queue, move |q| {
                    q.requeue(&id, attempt, "interrupted by shutdown", unix_now())
                })
                .await?;
                remove_outputs_of(&self.config.output_dir, &group_id);
                tracing::warn!(group_id = %group_id, state = "pending", "conversion interrupted; requeued");
            }
            Err(err) => {
                let error = err.to_string();
                let policy = self.retry_policy();
                let id = group_id.clone();
                let message = error.clone();
                let outcome = with_queue(&self.queue, move |q| {
                    q.fail_attempt(&id, attempt, &message, &policy, unix_now())
                })
                .await?;
                remove_outputs_of(&self.config.output_dir, &group_id);
                match outcome {
                    FailOutcome::Retrying {
                        retry_count,
                        next_attempt_at,
                    } => tracing::warn!(
                        group_id = %group_id,
                        state = "pending",
                        retry_count,
                        "conversion failed: {error}; retry {retry_count}/{} in {:.0} s",
                        self.config.max_retries,
                        (next_attempt_at - unix_now()).max(0.0)
                    ),
                    FailOutcome::Failed { retry_count } => tracing::error!(
                        group_id = %group_id,
                        state = "failed",
                        retry_count,
                        "conversion failed for good after {retry_count} retries: {error}"
                    ),
                }
            }
        }
        Ok(())
    }

    /// Applies operators' retry requests (files under `requests/retry/`).
    async fn apply_retry_requests(&mut self) -> Result<(), WorkerError> {
        let dir = contimg_core::queue::retry_request_dir(&self.state_dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let group_id = entry.file_name().to_string_lossy().into_owned();
            if group_id.starts_with('.') {
                continue;
            }
            let id = group_id.clone();
            match with_queue(&self.queue, move |q| q.retry_failed(&id, unix_now())).await {
                Ok(()) => {
                    tracing::info!(group_id = %group_id, state = "pending", "retry requested by an operator")
                }
                Err(err) => tracing::warn!(group_id = %group_id, "retry request ignored: {err}"),
            }
            if let Err(err) = std::fs::remove_file(entry.path()) {
                tracing::warn!(
                    "cannot remove retry request {}: {err}",
                    entry.path().display()
                );
            }
            self.status_dirty = true;
        }
        Ok(())
    }

    /// Updates systemd's status line and the heartbeat in the queue DB.
    async fn refresh_status(&mut self) -> Result<(), WorkerError> {
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

    /// SIGHUP: re-read the configuration. Settings that need a new queue DB keep
    /// their old value until a restart.
    async fn reload(&mut self) {
        let mut reloading = vec![NotifyState::Reloading];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            reloading.push(now);
        }
        let _ = sd_notify::notify(&reloading);
        match self.args.load_config() {
            Ok((mut config, _)) => {
                if config.queue_db != self.config.queue_db {
                    tracing::warn!("queue_db changed; it takes effect at the next restart");
                    config.queue_db = self.config.queue_db.clone();
                }
                let input_changed = config.input_dir != self.config.input_dir;
                for change in self.config.diff(&config) {
                    tracing::info!("config {}: {} -> {}", change.0, change.1, change.2);
                }
                self.log.set_level(&config.log_level);
                self.config = config;
                if let Err(err) = prepare_directories(&self.config) {
                    tracing::error!("{err}");
                }
                if input_changed {
                    self.seen.clear();
                    self.refused.clear();
                    self.arm_watcher();
                }
                tracing::info!("configuration reloaded");
            }
            Err(err) => tracing::error!("reload failed, keeping the running configuration: {err}"),
        }
        let _ = sd_notify::notify(&[NotifyState::Ready]);
    }

    /// SIGTERM: stop claiming, let running conversions finish within the drain
    /// timeout, then kill and requeue what is left.
    async fn drain(mut self) -> Result<(), WorkerError> {
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
        self.watcher = None;
        tracing::info!(
            running = self.running.len(),
            "stopping: draining running conversions"
        );
        let deadline = Instant::now() + Duration::from_secs_f64(self.config.drain_timeout_s);
        while !self.running.is_empty() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.running.join_next()).await {
                Ok(Some(Ok(finished))) => self.record(finished).await?,
                Ok(Some(Err(err))) => tracing::error!("conversion task failed: {err}"),
                Ok(None) => break,
                Err(_) => break,
            }
        }
        if !self.running.is_empty() {
            tracing::warn!(
                running = self.running.len(),
                "drain timeout: killing and requeueing conversions"
            );
            let _ = self.cancel.send(true);
            let grace = Instant::now() + Duration::from_secs(10);
            while !self.running.is_empty() {
                let remaining = grace.saturating_duration_since(Instant::now());
                match tokio::time::timeout(remaining, self.running.join_next()).await {
                    Ok(Some(Ok(finished))) => self.record(finished).await?,
                    Ok(Some(Err(err))) => tracing::error!("conversion task failed: {err}"),
                    Ok(None) | Err(_) => break,
                }
            }
            // In-process conversions cannot be interrupted: requeue them directly.
            let leftovers: Vec<ClaimedGroup> = self.claimed.drain().map(|(_, g)| g).collect();
            for group in leftovers {
                let id = group.group_id.clone();
                let attempt = group.attempt;
                with_queue(&self.queue, move |q| {
                    q.requeue(&id, attempt, "interrupted by shutdown", unix_now())
                })
                .await?;
                remove_outputs_of(&self.config.output_dir, &group.group_id);
            }
            self.running.abort_all();
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Awaits `work` (validator round trips, each bounded by the validation timeout)
/// while feeding the heartbeat and systemd's watchdog: a batch of slow files keeps
/// the loop busy for a bounded time, which is not a hung worker.
async fn keep_alive_while<T>(
    queue: SharedQueue,
    started_at: f64,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + STATUS_INTERVAL,
        STATUS_INTERVAL,
    );
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = tick.tick() => {
                // Before READY=1 (a validated bootstrap of a large backlog can take
                // minutes) the watchdog does not count but TimeoutStartSec= does: ask
                // for more time while work is visibly progressing. Ignored by systemd
                // once the service is up.
                let _ = sd_notify::notify(&[
                    NotifyState::Watchdog,
                    NotifyState::ExtendTimeoutUsec(START_TIMEOUT_EXTENSION_USEC),
                ]);
                let beat = with_queue(&queue, move |q| {
                    q.heartbeat(std::process::id(), started_at, unix_now())
                })
                .await;
                if let Err(err) = beat {
                    tracing::warn!("cannot write the heartbeat during inspection: {err}");
                }
            }
        }
    }
}

/// What became of one candidate after inspection.
enum Inspected {
    Register(PathBuf, NewFile),
    Reject {
        path: PathBuf,
        reason: String,
        size: Option<u64>,
        mtime: Option<f64>,
    },
    /// Vanished before it was looked at, or could not be judged now (left for a
    /// later scan).
    NotNow,
}

/// Isolated UVH5 inspection (see `validator`).
impl Worker {
    /// Checks each candidate's type and size, then (with `validate_uvh5`) its UVH5
    /// layout in the validator pool, in parallel and outside the queue lock.
    async fn inspect_candidates(
        &mut self,
        candidates: Vec<(Candidate, Option<u64>, Option<f64>)>,
        validate: bool,
    ) -> Result<Vec<Inspected>, WorkerError> {
        if !validate {
            self.validators = None;
        }
        let checked = tokio::task::spawn_blocking(move || {
            candidates
                .into_iter()
                .map(|(candidate, size, mtime)| (inspect_file(&candidate), candidate, size, mtime))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|err| WorkerError::Setup(format!("inspection task failed: {err}")))?;
        let mut results = Vec::with_capacity(checked.len());
        let mut requests = Vec::new();
        let mut waiting = Vec::new();
        for (check, candidate, size, mtime) in checked {
            let path = candidate.path;
            match check {
                // Vanished (renamed away or deleted) before we looked: not ours to judge.
                Ok(None) => results.push(Inspected::NotNow),
                Err(reason) => results.push(Inspected::Reject {
                    path,
                    reason,
                    size,
                    mtime,
                }),
                Ok(Some(file)) if !validate => results.push(Inspected::Register(path, file)),
                Ok(Some(file)) => {
                    waiting.push((results.len(), file));
                    requests.push(validator::InspectRequest {
                        path,
                        size_bytes: size,
                        mtime,
                    });
                    results.push(Inspected::NotNow);
                }
            }
        }
        if requests.is_empty() {
            return Ok(results);
        }
        let journal: Arc<dyn validator::InspectionJournal> = self.queue.clone();
        let queue = Arc::clone(&self.queue);
        let started_at = self.started_at;
        let verdicts = match self.validator_pool() {
            Ok(pool) => {
                keep_alive_while(queue, started_at, pool.inspect_all(&requests, journal)).await
            }
            Err(err) => requests
                .iter()
                .map(|_| validator::Verdict::Deferred(err.clone()))
                .collect(),
        };
        for (((index, mut file), request), verdict) in
            waiting.into_iter().zip(requests).zip(verdicts)
        {
            results[index] = match verdict {
                validator::Verdict::Valid { meta_json } => {
                    file.meta_json = Some(meta_json);
                    Inspected::Register(request.path, file)
                }
                validator::Verdict::Rejected(reason) => Inspected::Reject {
                    path: request.path,
                    reason,
                    size: request.size_bytes,
                    mtime: request.mtime,
                },
                validator::Verdict::Deferred(reason) => {
                    tracing::error!(
                        path = %request.path.display(),
                        "not inspected now, a later scan retries: {reason}"
                    );
                    Inspected::NotNow
                }
            };
        }
        Ok(results)
    }

    /// The validator pool, started on first use: min(max_workers, 2) processes
    /// (see `validator::MAX_VALIDATORS`).
    fn validator_pool(&mut self) -> Result<&mut validator::ValidatorPool, String> {
        if self.validators.is_none() {
            let spec = validator::ValidatorSpec::for_current_exe()
                .map_err(|err| format!("cannot find the contimg-stream binary: {err}"))?;
            let size = (self.config.max_workers as usize).min(validator::MAX_VALIDATORS);
            let pool = validator::ValidatorPool::new(spec, size);
            tracing::info!(
                validators = pool.size(),
                "UVH5 validation runs in isolated validator processes"
            );
            self.validators = Some(pool);
        }
        self.validators
            .as_mut()
            .ok_or_else(|| "no validator pool".to_string())
    }

    /// A file still journalled as "in a validator" was being inspected when the
    /// previous worker died: reject it without opening it again, and say which.
    async fn reject_interrupted_inspections(&mut self) -> Result<(), WorkerError> {
        let rejected = with_queue(&self.queue, |q| {
            q.reject_interrupted_inspections(validator::INTERRUPTED_INSPECTION_REASON, unix_now())
        })
        .await?;
        for entry in rejected {
            tracing::error!(
                path = %entry.path,
                "rejected {}: {}",
                entry.path,
                validator::INTERRUPTED_INSPECTION_REASON
            );
        }
        Ok(())
    }
}

/// Size and modification time (Unix seconds) of a file, when it can be read.
fn file_size_and_mtime(path: &Path) -> (Option<u64>, Option<f64>) {
    match std::fs::metadata(path) {
        Ok(metadata) => (
            Some(metadata.len()),
            metadata
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64()),
        ),
        Err(_) => (None, None),
    }
}

/// Reads a candidate's type and size (never its contents: libhdf5 opens untrusted
/// files only in a validator). `Ok(None)` when the file vanished; `Err(reason)`
/// when it must be rejected.
fn inspect_file(candidate: &Candidate) -> Result<Option<NewFile>, String> {
    let metadata = match std::fs::metadata(&candidate.path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("cannot stat: {err}")),
    };
    if !metadata.is_file() {
        return Err("not a regular file".to_string());
    }
    let size = metadata.len();
    if size == 0 {
        return Err("empty file".to_string());
    }
    let (_, mtime) = file_size_and_mtime(&candidate.path);
    Ok(Some(NewFile {
        path: candidate.path.to_string_lossy().into_owned(),
        timestamp: candidate.name.timestamp,
        subband_idx: candidate.name.subband_idx,
        size_bytes: Some(size),
        mtime,
        meta_json: None,
    }))
}

/// Stages inputs (when asked), converts, and always removes the staged copies.
async fn convert_group(
    mut job: ConvertJob,
    stage: Option<PathBuf>,
    converter: &contimg_core::config::ConverterConfig,
    use_subprocess: bool,
    timeout: Duration,
    cancel: watch::Receiver<bool>,
) -> Result<ConvertOutput, ConvertError> {
    if let Some(stage_dir) = &stage
        && let Err(err) = stage_inputs(&mut job, stage_dir).await
    {
        let _ = tokio::fs::remove_dir_all(stage_dir).await;
        return Err(ConvertError::Failed(format!(
            "staging to {} failed: {err}",
            stage_dir.display()
        )));
    }
    let result = run_conversion(&job, converter, use_subprocess, timeout, cancel).await;
    if let Some(stage_dir) = &stage
        && let Err(err) = tokio::fs::remove_dir_all(stage_dir).await
    {
        tracing::warn!(group_id = %job.group_id, "cannot remove staging dir {}: {err}", stage_dir.display());
    }
    result
}

async fn stage_inputs(job: &mut ConvertJob, stage_dir: &Path) -> std::io::Result<()> {
    tokio::fs::create_dir_all(stage_dir).await?;
    for (_, path) in job.files.iter_mut() {
        let Some(name) = path.file_name() else {
            continue;
        };
        let staged = stage_dir.join(name);
        tokio::fs::copy(&*path, &staged).await?;
        *path = staged;
    }
    Ok(())
}

/// Removes everything a conversion of `group_id` may have left in `output_dir`.
fn remove_outputs_of(output_dir: &Path, group_id: &str) {
    let Ok(entries) = std::fs::read_dir(output_dir) else {
        return;
    };
    let visible = format!("{group_id}.");
    let hidden = format!(".{group_id}.");
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&visible) || name.starts_with(&hidden) {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {
                    tracing::info!(group_id = %group_id, "removed unfinished output {}", path.display())
                }
                Err(err) => {
                    tracing::warn!(group_id = %group_id, "cannot remove {}: {err}", path.display())
                }
            }
        }
    }
}

/// Removes half-written outputs (`.*.partial`) left by a crash.
fn remove_partials(output_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(output_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(PARTIAL_SUFFIX) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `contimg-stream convert-group`: run a builtin converter on a job read from
/// stdin and report the result on stdout (the subprocess mode's child side).
pub fn convert_group_child(converter: &str) -> Result<(), String> {
    use std::io::Read;
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|err| format!("reading the job: {err}"))?;
    let job: ConvertJob =
        serde_json::from_str(&input).map_err(|err| format!("invalid job: {err}"))?;
    let converter = match converter {
        "manifest" => contimg_core::config::ConverterConfig::Manifest,
        "builtin" => contimg_core::config::ConverterConfig::Builtin,
        other => return Err(format!("unknown builtin converter {other:?}")),
    };
    let output = convert::convert_in_process(&job, &converter)?;
    let json = serde_json::to_string(&output).map_err(|err| err.to_string())?;
    println!("{}{json}", convert::CONVERT_RESULT_PREFIX);
    Ok(())
}
