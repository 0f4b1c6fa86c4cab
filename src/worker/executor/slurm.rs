//! The Slurm executor: each claimed group becomes one batch job per attempt.
//!
//! Every conversation with Slurm happens in one background call at a time (a
//! blocking task), so a slow or dead slurmctld never stalls the worker's loop
//! (file events, heartbeat, watchdog). A call submits the groups claimed since the
//! last one, sends cancels, asks squeue once about every job in flight, and reads
//! the jobs' exit records (see [`super::script`]); the worker then applies what it
//! learned: completed, failed (retried with the usual back-off), timed out
//! (cancelled, then retried), or still waiting.
//!
//! Crash safety: an attempt is marked `SUBMITTING` in the queue DB before sbatch
//! runs, and gets its job id right after. A restarted worker adopts every open
//! attempt instead of requeueing it; one whose job id was never recorded is found
//! again by its job name (deterministic: queue, group, attempt). Only when Slurm
//! knows no such job and it left no log is the group requeued, without using a
//! retry. So no group is converted twice.
//!
//! An unreachable scheduler fails nothing: claims stop, what was in flight waits,
//! `worker_heartbeat.scheduler_unreachable_since` is set (the alert), and the next
//! call that reaches Slurm clears it and submission resumes.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use contimg_core::config::{ExecutorKind, SlurmConfig, StreamingConfig};
use contimg_core::queue::{ClaimedGroup, OpenJob, Timings, unix_now};

use super::script::{self, AttemptFiles, ExitRecord, read_exit_record};
use crate::conversions::Finished;
use crate::convert::{CONVERT_RESULT_PREFIX, ConvertError, ConvertOutput};
use crate::slurm::{JobId, JobInfo, JobSpec, JobState, SlurmClient, SlurmError};
use crate::{Worker, WorkerError, with_queue};

/// How many trailing lines of a failed job's log go into the group's error.
const ERROR_TAIL_LINES: usize = 8;
/// How much of a log's end is read for that tail.
const TAIL_BYTES: u64 = 64 * 1024;

/// The executor's name in `group_attempts.executor`.
fn slurm_name() -> &'static str {
    ExecutorKind::Slurm.as_str()
}

/// Why the worker cancelled a job itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CancelReason {
    Timeout { after_s: f64 },
    Shutdown,
}

/// Where an attempt's submission stands.
#[derive(Debug)]
enum Submission {
    /// Claimed and marked `SUBMITTING`; goes out with the next call.
    Queued(Box<JobSpec>),
    /// In the call running now.
    InCall,
    /// sbatch's answer was lost (timeout, worker killed): looked up by name.
    Unconfirmed,
    Submitted(JobId),
    /// Its job ran (its log exists) but Slurm forgot it before its id was recorded:
    /// only its exit record can tell how it ended.
    Forgotten,
}

/// What the worker knows about one job beyond Slurm's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Progress {
    /// When this worker first saw the job running: the convert timeout counts
    /// from here (time waiting in Slurm's queue is not conversion time).
    pub running_since: Option<Instant>,
    /// Since when Slurm says it ended (or no longer knows it) without an exit
    /// record having appeared.
    pub unresolved_since: Option<Instant>,
    pub cancel: Option<CancelReason>,
    pub cancel_sent: bool,
}

/// How a job ended, before it is turned into the group's outcome.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ending {
    Exited(ExitRecord),
    /// Slurm's final state, without an exit record (killed, node failure, …).
    Ended(JobState, Option<String>),
    /// Neither Slurm nor the log directory knows how it ended.
    Vanished,
    TimedOut(f64),
    Interrupted,
}

/// What to do about a job after one look.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    Wait,
    /// The convert timeout passed: cancel it, then wait for it to end.
    Cancel,
    Finished(Ending),
}

/// Decides about one job from Slurm's answer (`info`; `known` is false when the
/// query failed) and its exit record. The exit record wins: it is what the job
/// itself said, whether or not slurmctld still remembers the job.
pub(crate) fn judge(
    progress: &mut Progress,
    info: Option<&JobInfo>,
    known: bool,
    exit: Option<&ExitRecord>,
    now: Instant,
    timeout: Duration,
    grace: Duration,
) -> Verdict {
    let ended_in_slurm =
        info.is_some_and(|info| info.state.is_finished()) || (known && info.is_none());
    if let Some(cancel) = progress.cancel {
        if exit.is_some() || ended_in_slurm {
            return Verdict::Finished(match cancel {
                CancelReason::Timeout { after_s } => Ending::TimedOut(after_s),
                CancelReason::Shutdown => Ending::Interrupted,
            });
        }
        return Verdict::Wait;
    }
    if let Some(exit) = exit {
        return Verdict::Finished(Ending::Exited(exit.clone()));
    }
    match info {
        Some(info) if info.state.is_finished() => {
            // A job that exited wrote its record first: give shared storage a
            // moment to show it before judging by Slurm's word alone.
            if info.state == JobState::Completed || info.state == JobState::Failed {
                let since = *progress.unresolved_since.get_or_insert(now);
                if now.duration_since(since) < grace {
                    return Verdict::Wait;
                }
            }
            Verdict::Finished(Ending::Ended(info.state.clone(), info.reason.clone()))
        }
        Some(info) => {
            progress.unresolved_since = None;
            if matches!(info.state, JobState::Running | JobState::Completing) {
                let since = *progress.running_since.get_or_insert(now);
                let running = now.duration_since(since);
                if running >= timeout {
                    progress.cancel = Some(CancelReason::Timeout {
                        after_s: running.as_secs_f64(),
                    });
                    return Verdict::Cancel;
                }
            }
            Verdict::Wait
        }
        None if known => {
            let since = *progress.unresolved_since.get_or_insert(now);
            if now.duration_since(since) < grace {
                Verdict::Wait
            } else {
                Verdict::Finished(Ending::Vanished)
            }
        }
        None => Verdict::Wait,
    }
}

/// One attempt in flight.
#[derive(Debug)]
struct Tracked {
    group: ClaimedGroup,
    name: String,
    files: AttemptFiles,
    submission: Submission,
    /// (job state, node) as the attempt's row shows them.
    shown: (Option<String>, Option<String>),
    progress: Progress,
}

impl Tracked {
    fn job_id(&self) -> Option<JobId> {
        match self.submission {
            Submission::Submitted(id) => Some(id),
            _ => None,
        }
    }
}

/// What one background call is to do.
#[derive(Debug, Default)]
struct CallPlan {
    /// Look up unconfirmed submissions by this name prefix.
    lookup: Option<String>,
    submit: Vec<(String, Box<JobSpec>)>,
    cancel: Vec<(String, JobId)>,
    query: Vec<JobId>,
    ping: bool,
    /// Exit records (and, for unconfirmed ones, logs) to look for.
    files: Vec<(String, AttemptFiles)>,
}

/// What it found.
#[derive(Debug, Default)]
pub(crate) struct CallReport {
    named: Option<Result<Vec<(JobId, JobInfo)>, SlurmError>>,
    submitted: Vec<(String, Result<JobId, SlurmError>)>,
    /// Not sent because the scheduler stopped answering earlier in the call.
    unsent: Vec<(String, Box<JobSpec>)>,
    cancelled: Vec<(String, Result<(), SlurmError>)>,
    queried: Option<Result<HashMap<JobId, JobInfo>, SlurmError>>,
    pinged: Option<Result<(), SlurmError>>,
    exits: HashMap<String, ExitRecord>,
    logs_present: Vec<String>,
}

impl CallReport {
    /// Whether Slurm answered: `Some(false)` if any command found it unreachable
    /// (or could not run at all), `Some(true)` if a command got an answer.
    fn reachable(&self) -> Option<bool> {
        let mut answered = false;
        let mut down = false;
        let mut look = |error: Option<&SlurmError>| match error {
            Some(SlurmError::Unreachable { .. } | SlurmError::Io { .. }) => down = true,
            _ => answered = true,
        };
        if let Some(named) = &self.named {
            look(named.as_ref().err());
        }
        for (_, result) in &self.submitted {
            look(result.as_ref().err());
        }
        for (_, result) in &self.cancelled {
            look(result.as_ref().err());
        }
        if let Some(queried) = &self.queried {
            look(queried.as_ref().err());
        }
        if let Some(pinged) = &self.pinged {
            look(pinged.as_ref().err());
        }
        if down {
            Some(false)
        } else if answered {
            Some(true)
        } else {
            None
        }
    }
}

fn is_down(error: &SlurmError) -> bool {
    matches!(
        error,
        SlurmError::Unreachable { .. } | SlurmError::Io { .. }
    )
}

/// Runs a plan against Slurm (blocking). After the first sign that the scheduler
/// is down, nothing else is sent to it; exit records are read regardless, so jobs
/// that ended during an outage are still collected.
fn run_call(client: &SlurmClient, plan: CallPlan) -> CallReport {
    let mut report = CallReport::default();
    let mut down = false;
    if let Some(prefix) = &plan.lookup {
        let named = client.jobs_named(prefix);
        down |= named.as_ref().err().is_some_and(is_down);
        report.named = Some(named);
    }
    for (group_id, spec) in plan.submit {
        if down {
            report.unsent.push((group_id, spec));
            continue;
        }
        let submitted = client.submit(&spec);
        down |= submitted.as_ref().err().is_some_and(is_down);
        report.submitted.push((group_id, submitted));
    }
    for (group_id, id) in plan.cancel {
        if down {
            continue;
        }
        let cancelled = client.cancel(&id);
        down |= cancelled.as_ref().err().is_some_and(is_down);
        report.cancelled.push((group_id, cancelled));
    }
    if !plan.query.is_empty() && !down {
        report.queried = Some(client.query(&plan.query));
    }
    let contacted = report.named.is_some()
        || !report.submitted.is_empty()
        || !report.cancelled.is_empty()
        || report.queried.is_some();
    if plan.ping && !down && !contacted {
        report.pinged = Some(client.ping());
    }
    for (group_id, files) in plan.files {
        if let Some(record) = read_exit_record(&files.exit) {
            report.exits.insert(group_id.clone(), record);
        }
        if plan.lookup.is_some() && files.log.exists() {
            report.logs_present.push(group_id);
        }
    }
    report
}

/// What the loop hears from the executor.
pub(crate) enum SlurmEvent {
    /// Time for the next look at the jobs.
    Tick,
    Done(Box<CallReport>),
    CallPanicked(String),
}

/// The executor's state in the worker.
pub(crate) struct SlurmExecutor {
    client: Arc<SlurmClient>,
    settings: SlurmConfig,
    /// False when `executor = "local"`: jobs a previous run left are still
    /// tracked to their end, but nothing new is submitted.
    submits: bool,
    log_dir: PathBuf,
    workdir: PathBuf,
    /// `contimg-<queue hash>-`: jobs of this queue DB, whoever else uses the cluster.
    name_prefix: String,
    convert_timeout: Duration,
    jobs: BTreeMap<String, Tracked>,
    call: Option<JoinHandle<CallReport>>,
    tick: tokio::time::Interval,
    unreachable_since: Option<f64>,
    /// What the heartbeat row says; `None` until written once.
    unreachable_recorded: Option<Option<f64>>,
    /// SIGTERM: no new call may start (it could submit what is being requeued).
    stopping: bool,
}

impl SlurmExecutor {
    fn new(config: &StreamingConfig) -> Self {
        let queue_key = contimg_core::hash::fnv1a64(config.queue_db.to_string_lossy().as_bytes());
        let mut tick = tokio::time::interval(poll_period(&config.slurm));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            client: Arc::new(SlurmClient::default()),
            settings: config.slurm.clone(),
            submits: config.executor == ExecutorKind::Slurm,
            log_dir: config.slurm.log_dir_for(&config.scratch_dir),
            workdir: config.scratch_dir.clone(),
            name_prefix: format!("contimg-{:08x}-", queue_key as u32),
            convert_timeout: Duration::from_secs_f64(config.convert_timeout_s),
            jobs: BTreeMap::new(),
            call: None,
            tick,
            unreachable_since: None,
            unreachable_recorded: None,
            stopping: false,
        }
    }

    fn reconfigure(&mut self, config: &StreamingConfig) {
        if config.slurm.poll_interval_s != self.settings.poll_interval_s {
            self.tick = tokio::time::interval(poll_period(&config.slurm));
            self.tick
                .set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        self.settings = config.slurm.clone();
        self.submits = config.executor == ExecutorKind::Slurm;
        self.log_dir = config.slurm.log_dir_for(&config.scratch_dir);
        self.workdir = config.scratch_dir.clone();
        self.convert_timeout = Duration::from_secs_f64(config.convert_timeout_s);
    }

    fn job_name(&self, group_id: &str, attempt: u32) -> String {
        format!("{}{group_id}-a{attempt}", self.name_prefix)
    }

    /// Whether another group may be claimed for Slurm now.
    pub(crate) fn has_room(&self) -> bool {
        self.submits
            && self.unreachable_since.is_none()
            && self.jobs.len() < self.settings.max_jobs as usize
    }

    pub(crate) fn submits(&self) -> bool {
        self.submits
    }

    fn adopt(&mut self, open: OpenJob) {
        let name = self.job_name(&open.group.group_id, open.group.attempt);
        let files = match open.log_path {
            Some(log) => AttemptFiles::from_log(log),
            None => AttemptFiles::new(&self.log_dir, &open.group.group_id, open.group.attempt),
        };
        let submission = match open.job_id.as_deref().map(str::parse::<JobId>) {
            Some(Ok(id)) => Submission::Submitted(id),
            _ => Submission::Unconfirmed,
        };
        tracing::info!(
            group_id = %open.group.group_id,
            attempt = open.group.attempt,
            job_id = open.job_id.as_deref().unwrap_or("unconfirmed"),
            "adopting the Slurm job of a previous run"
        );
        self.jobs.insert(
            open.group.group_id.clone(),
            Tracked {
                group: open.group,
                name,
                files,
                submission,
                shown: (open.job_state, open.job_node),
                progress: Progress::default(),
            },
        );
    }

    /// Starts a background call if none runs and `all` (a poll) or there is
    /// something to submit or cancel.
    fn start_call(&mut self, all: bool) {
        if self.call.is_some() || self.stopping {
            return;
        }
        let urgent = self.jobs.values().any(|job| {
            matches!(job.submission, Submission::Queued(_))
                || (job.progress.cancel.is_some() && !job.progress.cancel_sent)
        });
        if !all && !urgent {
            return;
        }
        let mut plan = CallPlan {
            // An idle executor still notices an outage (and its end) by itself.
            ping: self.unreachable_since.is_some() || self.submits,
            ..CallPlan::default()
        };
        if self
            .jobs
            .values()
            .any(|job| matches!(job.submission, Submission::Unconfirmed))
        {
            plan.lookup = Some(self.name_prefix.clone());
        }
        for (group_id, job) in &mut self.jobs {
            match &job.submission {
                Submission::Queued(_) => {
                    if let Submission::Queued(spec) =
                        std::mem::replace(&mut job.submission, Submission::InCall)
                    {
                        plan.submit.push((group_id.clone(), spec));
                    }
                    continue;
                }
                Submission::InCall => continue,
                Submission::Submitted(id) => {
                    if job.progress.cancel.is_some() && !job.progress.cancel_sent {
                        plan.cancel.push((group_id.clone(), *id));
                    }
                    plan.query.push(*id);
                }
                Submission::Unconfirmed | Submission::Forgotten => {}
            }
            plan.files.push((group_id.clone(), job.files.clone()));
        }
        let client = Arc::clone(&self.client);
        self.call = Some(tokio::task::spawn_blocking(move || run_call(&client, plan)));
    }
}

fn poll_period(settings: &SlurmConfig) -> Duration {
    Duration::from_secs_f64(settings.poll_interval_s.max(0.05))
}

/// How long a job that Slurm reports ended may take to show its exit record.
fn result_grace(settings: &SlurmConfig) -> Duration {
    (poll_period(settings) * 3).max(Duration::from_secs(5))
}

/// The executor's next event: the running call's report, else the next poll tick.
/// Cancel-safe (the call's handle and the interval survive a dropped future).
pub(crate) async fn next_event(slurm: &mut Option<SlurmExecutor>) -> SlurmEvent {
    let Some(slurm) = slurm else {
        return std::future::pending().await;
    };
    if let Some(call) = &mut slurm.call {
        let joined = call.await;
        slurm.call = None;
        return match joined {
            Ok(report) => SlurmEvent::Done(Box::new(report)),
            Err(err) => SlurmEvent::CallPanicked(err.to_string()),
        };
    }
    slurm.tick.tick().await;
    SlurmEvent::Tick
}

/// What applying a report asks of the queue DB and the worker.
enum Action {
    Submitted {
        group_id: String,
        attempt: u32,
        job_id: JobId,
    },
    State {
        group_id: String,
        attempt: u32,
        state: String,
        node: Option<String>,
        exit_code: Option<i32>,
    },
    Finish {
        group_id: String,
        result: Result<ConvertOutput, ConvertError>,
    },
}

impl Worker {
    /// At start (before the in-progress groups are recovered): adopt the jobs a
    /// previous run left in flight, and set up the executor if it is Slurm.
    pub(crate) async fn start_slurm(&mut self) -> Result<(), WorkerError> {
        let open = with_queue(&self.queue, |q| q.open_jobs(slurm_name())).await?;
        if self.config.executor != ExecutorKind::Slurm && open.is_empty() {
            self.slurm = None;
            return Ok(());
        }
        let mut slurm = SlurmExecutor::new(&self.config);
        if !open.is_empty() {
            tracing::info!(
                jobs = open.len(),
                "adopting Slurm jobs left in flight by the previous run"
            );
        }
        for job in open {
            slurm.adopt(job);
        }
        if slurm.submits
            && let Err(err) = std::fs::create_dir_all(&slurm.log_dir)
        {
            tracing::error!(
                "cannot create the Slurm log dir {}: {err}",
                slurm.log_dir.display()
            );
        }
        self.slurm = Some(slurm);
        Ok(())
    }

    /// SIGHUP: the executor follows the new settings; switching to local keeps
    /// tracking the jobs in flight until they end.
    pub(crate) fn reconfigure_slurm(&mut self) {
        match &mut self.slurm {
            Some(slurm) => slurm.reconfigure(&self.config),
            None if self.config.executor == ExecutorKind::Slurm => {
                self.slurm = Some(SlurmExecutor::new(&self.config));
            }
            None => {}
        }
        if let Some(slurm) = &self.slurm
            && slurm.submits
        {
            let _ = std::fs::create_dir_all(&slurm.log_dir);
        }
    }

    /// Groups whose conversion is a Slurm job in flight.
    pub(crate) fn slurm_groups(&self) -> Vec<String> {
        self.slurm
            .as_ref()
            .map(|slurm| slurm.jobs.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether claimed groups go to Slurm.
    pub(crate) fn submits_to_slurm(&self) -> bool {
        self.slurm.as_ref().is_some_and(SlurmExecutor::submits)
    }

    /// Whether another group may be claimed: a free local slot, or room in Slurm.
    pub(crate) fn has_free_slot(&self) -> bool {
        match &self.slurm {
            Some(slurm) if slurm.submits => slurm.has_room(),
            _ => self.running.len() < self.config.max_workers as usize,
        }
    }

    /// Hands a claimed group to Slurm: its attempt is marked `SUBMITTING` (so a
    /// crash from here on is resolved by the job's name), then sbatch runs in the
    /// next background call.
    pub(crate) async fn hand_to_slurm(&mut self, group: ClaimedGroup) -> Result<(), WorkerError> {
        let Some(slurm) = &self.slurm else {
            return Ok(());
        };
        let files = AttemptFiles::new(&slurm.log_dir, &group.group_id, group.attempt);
        let name = slurm.job_name(&group.group_id, group.attempt);
        let spec = self.job_spec(&group, &files, &name);
        let spec = match spec {
            Ok(spec) => spec,
            Err(error) => {
                let result = Err(ConvertError::Failed(error));
                return self.record(Finished { group, result }).await;
            }
        };
        // Files a previous installation left under the same name must not be
        // taken for this attempt's result.
        for stale in [&files.log, &files.exit] {
            let _ = std::fs::remove_file(stale);
        }
        let (id, attempt) = (group.group_id.clone(), group.attempt);
        let log = files.log.to_string_lossy().into_owned();
        with_queue(&self.queue, move |q| {
            q.mark_submitting(&id, attempt, slurm_name(), &log)
        })
        .await?;
        if let Some(slurm) = &mut self.slurm {
            slurm.jobs.insert(
                group.group_id.clone(),
                Tracked {
                    group,
                    name,
                    files,
                    submission: Submission::Queued(Box::new(spec)),
                    shown: (Some(contimg_core::queue::JOB_STATE_SUBMITTING.into()), None),
                    progress: Progress::default(),
                },
            );
        }
        Ok(())
    }

    fn job_spec(
        &self,
        group: &ClaimedGroup,
        files: &AttemptFiles,
        name: &str,
    ) -> Result<JobSpec, String> {
        let Some(slurm) = &self.slurm else {
            return Err("the Slurm executor is not set up".into());
        };
        std::fs::create_dir_all(&slurm.log_dir).map_err(|err| {
            format!(
                "cannot create the Slurm log dir {}: {err}",
                slurm.log_dir.display()
            )
        })?;
        let job = self.job_for(group);
        let exe = script::own_executable().map_err(|err| err.to_string())?;
        let command = script::job_command(&job, &self.config.converter, &exe)
            .map_err(|err| err.to_string())?;
        let settings = &slurm.settings;
        let optional = |value: &str| (!value.is_empty()).then(|| value.to_string());
        Ok(JobSpec {
            name: name.to_string(),
            comment: format!("contimg group={} attempt={}", group.group_id, group.attempt),
            partition: optional(&settings.partition),
            account: optional(&settings.account),
            qos: optional(&settings.qos),
            time_limit: optional(&settings.time_limit),
            mem: optional(&settings.mem),
            cpus_per_task: Some(settings.cpus_per_task),
            extra_args: settings.extra_args.clone(),
            workdir: slurm.workdir.clone(),
            stdout_path: files.log.clone(),
            script: script::batch_script(&command, files, &group.group_id, group.attempt),
        })
    }

    /// Sends what was claimed to Slurm now rather than at the next poll.
    pub(crate) fn kick_slurm(&mut self) {
        if let Some(slurm) = &mut self.slurm {
            slurm.start_call(false);
        }
    }

    pub(crate) async fn on_slurm_event(&mut self, event: SlurmEvent) -> Result<(), WorkerError> {
        match event {
            SlurmEvent::Tick => {
                if let Some(slurm) = &mut self.slurm {
                    slurm.start_call(true);
                }
                Ok(())
            }
            SlurmEvent::Done(report) => self.apply_report(*report).await,
            SlurmEvent::CallPanicked(err) => {
                tracing::error!("Slurm call failed: {err}");
                // Whatever it carried is resolved by name at the next call.
                if let Some(slurm) = &mut self.slurm {
                    for job in slurm.jobs.values_mut() {
                        if matches!(job.submission, Submission::InCall) {
                            job.submission = Submission::Unconfirmed;
                        }
                    }
                }
                Ok(())
            }
        }
    }

    async fn apply_report(&mut self, report: CallReport) -> Result<(), WorkerError> {
        let Some(slurm) = &mut self.slurm else {
            return Ok(());
        };
        let now = Instant::now();
        let grace = result_grace(&slurm.settings);
        let timeout = slurm.convert_timeout;
        match report.reachable() {
            Some(false) if slurm.unreachable_since.is_none() => {
                let detail = first_outage(&report).unwrap_or_default();
                tracing::error!(
                    "Slurm scheduler unreachable: {detail}; no group is submitted until it answers"
                );
                slurm.unreachable_since = Some(unix_now());
            }
            Some(true) if slurm.unreachable_since.is_some() => {
                tracing::warn!("Slurm scheduler answers again; submission resumes");
                slurm.unreachable_since = None;
            }
            _ => {}
        }
        let mut actions = Vec::new();
        for (group_id, spec) in report.unsent {
            if let Some(job) = slurm.jobs.get_mut(&group_id) {
                job.submission = Submission::Queued(spec);
            }
        }
        for (group_id, submitted) in report.submitted {
            let Some(job) = slurm.jobs.get_mut(&group_id) else {
                continue;
            };
            match submitted {
                Ok(id) => {
                    tracing::info!(group_id = %group_id, attempt = job.group.attempt, job_id = %id, "submitted to Slurm");
                    job.submission = Submission::Submitted(id);
                    job.shown.0 = Some(JobState::Pending.to_string());
                    actions.push(Action::Submitted {
                        group_id,
                        attempt: job.group.attempt,
                        job_id: id,
                    });
                }
                Err(SlurmError::Rejected { stderr, .. }) => {
                    actions.push(Action::Finish {
                        group_id,
                        result: Err(ConvertError::Failed(format!(
                            "Slurm rejected the job: {stderr}"
                        ))),
                    });
                }
                Err(SlurmError::Io { source, .. }) => {
                    // sbatch never ran: certainly no job.
                    tracing::error!(group_id = %group_id, "cannot run sbatch: {source}");
                    actions.push(Action::Finish {
                        group_id,
                        result: Err(ConvertError::Interrupted),
                    });
                }
                Err(SlurmError::Unreachable { detail, .. }) if never_reached(&detail) => {
                    // sbatch could not connect: Slurm has no job, so the group
                    // waits in pending, its retries untouched.
                    tracing::warn!(group_id = %group_id, "not submitted, scheduler unreachable: {detail}");
                    actions.push(Action::Finish {
                        group_id,
                        result: Err(ConvertError::Interrupted),
                    });
                }
                Err(err) => {
                    tracing::warn!(group_id = %group_id, "submission unconfirmed ({err}); looking for the job by name");
                    job.submission = Submission::Unconfirmed;
                }
            }
        }
        if let Some(Ok(named)) = &report.named {
            let by_name: HashMap<&str, JobId> = named
                .iter()
                .map(|(id, info)| (info.name.as_str(), *id))
                .collect();
            for (group_id, job) in &mut slurm.jobs {
                if !matches!(job.submission, Submission::Unconfirmed) {
                    continue;
                }
                if let Some(id) = by_name.get(job.name.as_str()) {
                    tracing::info!(group_id = %group_id, job_id = %id, "found the unconfirmed submission in Slurm");
                    job.submission = Submission::Submitted(*id);
                    actions.push(Action::Submitted {
                        group_id: group_id.clone(),
                        attempt: job.group.attempt,
                        job_id: *id,
                    });
                } else if report.logs_present.contains(group_id)
                    || report.exits.contains_key(group_id)
                {
                    job.submission = Submission::Forgotten;
                } else {
                    tracing::info!(group_id = %group_id, "no job was submitted for the attempt; requeued");
                    actions.push(Action::Finish {
                        group_id: group_id.clone(),
                        result: Err(ConvertError::Interrupted),
                    });
                }
            }
        }
        for (group_id, cancelled) in report.cancelled {
            if let Some(job) = slurm.jobs.get_mut(&group_id) {
                match cancelled {
                    Ok(()) => job.progress.cancel_sent = true,
                    Err(err) => {
                        tracing::warn!(group_id = %group_id, "scancel failed: {err}; trying again")
                    }
                }
            }
        }
        let queried = match &report.queried {
            Some(Ok(jobs)) => Some(jobs),
            _ => None,
        };
        for (group_id, job) in &mut slurm.jobs {
            let exit = report.exits.get(group_id);
            let (info, known) = match (&job.submission, queried) {
                (Submission::Submitted(id), Some(jobs)) => (jobs.get(id), true),
                (Submission::Submitted(_), None) => (None, false),
                (Submission::Forgotten, _) => (None, true),
                _ => continue,
            };
            if let Some(info) = info {
                let state = Some(info.state.to_string());
                let node = info.node.clone().or_else(|| job.shown.1.clone());
                if (state.clone(), node.clone()) != job.shown {
                    job.shown = (state.clone(), node.clone());
                    actions.push(Action::State {
                        group_id: group_id.clone(),
                        attempt: job.group.attempt,
                        state: info.state.to_string(),
                        node,
                        exit_code: info.exit_code.filter(|_| info.state.is_finished()),
                    });
                }
            }
            match judge(&mut job.progress, info, known, exit, now, timeout, grace) {
                Verdict::Wait => {}
                Verdict::Cancel => {
                    tracing::warn!(group_id = %group_id, "conversion timed out in Slurm; cancelling its job");
                }
                Verdict::Finished(ending) => {
                    let (state, node, exit_code) = final_state(&ending, info, exit, job);
                    actions.push(Action::State {
                        group_id: group_id.clone(),
                        attempt: job.group.attempt,
                        state,
                        node,
                        exit_code,
                    });
                    let result = job_result(&ending, job, info);
                    actions.push(Action::Finish {
                        group_id: group_id.clone(),
                        result,
                    });
                }
            }
        }
        let since = slurm.unreachable_since;
        let record_reachability = slurm.unreachable_recorded != Some(since);
        // A timeout found above is sent at once.
        slurm.start_call(false);

        for action in actions {
            self.act(action).await?;
        }
        if record_reachability {
            let written =
                with_queue(&self.queue, move |q| q.set_scheduler_unreachable(since)).await?;
            if written && let Some(slurm) = &mut self.slurm {
                slurm.unreachable_recorded = Some(since);
            }
        }
        Ok(())
    }

    async fn act(&mut self, action: Action) -> Result<(), WorkerError> {
        match action {
            Action::Submitted {
                group_id,
                attempt,
                job_id,
            } => {
                let state = JobState::Pending.to_string();
                with_queue(&self.queue, move |q| {
                    q.record_job_submitted(
                        &group_id,
                        attempt,
                        &job_id.to_string(),
                        &state,
                        unix_now(),
                    )
                })
                .await
            }
            Action::State {
                group_id,
                attempt,
                state,
                node,
                exit_code,
            } => {
                with_queue(&self.queue, move |q| {
                    q.record_job_state(&group_id, attempt, &state, node.as_deref(), exit_code)
                })
                .await
            }
            Action::Finish { group_id, result } => {
                let Some(group) = self
                    .slurm
                    .as_ref()
                    .and_then(|slurm| slurm.jobs.get(&group_id))
                    .map(|job| job.group.clone())
                else {
                    return Ok(());
                };
                self.record(Finished { group, result }).await?;
                // Forgotten only once recorded: a failed write is retried next poll.
                if let Some(slurm) = &mut self.slurm {
                    slurm.jobs.remove(&group_id);
                }
                self.status_dirty = true;
                Ok(())
            }
        }
    }

    /// SIGTERM: jobs keep running (adopted at the next start) unless
    /// `slurm.cancel_on_stop`; groups not yet submitted go back to pending.
    pub(crate) async fn stop_slurm(&mut self) -> Result<(), WorkerError> {
        let Some(slurm) = &mut self.slurm else {
            return Ok(());
        };
        slurm.stopping = true;
        // An sbatch under way must not lose its job id.
        if let Some(call) = slurm.call.take() {
            match call.await {
                Ok(report) => self.apply_report(report).await?,
                Err(err) => tracing::error!("Slurm call failed: {err}"),
            }
        }
        let Some(slurm) = &mut self.slurm else {
            return Ok(());
        };
        let unsent: Vec<String> = slurm
            .jobs
            .iter()
            .filter(|(_, job)| matches!(job.submission, Submission::Queued(_)))
            .map(|(id, _)| id.clone())
            .collect();
        let cancel = slurm.settings.cancel_on_stop;
        let mut to_cancel = Vec::new();
        if cancel {
            for (group_id, job) in &mut slurm.jobs {
                if let Some(id) = job.job_id() {
                    job.progress.cancel = Some(CancelReason::Shutdown);
                    to_cancel.push((group_id.clone(), id));
                }
            }
        }
        let left = slurm.jobs.len() - unsent.len() - to_cancel.len();
        let client = Arc::clone(&slurm.client);
        for group_id in unsent {
            self.act(Action::Finish {
                group_id,
                result: Err(ConvertError::Interrupted),
            })
            .await?;
        }
        if !to_cancel.is_empty() {
            let ids: Vec<JobId> = to_cancel.iter().map(|(_, id)| *id).collect();
            let outcomes = tokio::task::spawn_blocking(move || {
                ids.iter().map(|id| client.cancel(id)).collect::<Vec<_>>()
            })
            .await
            .map_err(|source| WorkerError::Task {
                task: "scancel",
                source,
            })?;
            for ((group_id, id), outcome) in to_cancel.into_iter().zip(outcomes) {
                match outcome {
                    Ok(()) => {
                        tracing::info!(group_id = %group_id, job_id = %id, "cancelled at shutdown (slurm.cancel_on_stop)");
                        self.act(Action::State {
                            group_id: group_id.clone(),
                            attempt: self
                                .slurm
                                .as_ref()
                                .and_then(|s| s.jobs.get(&group_id))
                                .map_or(0, |job| job.group.attempt),
                            state: JobState::Cancelled.to_string(),
                            node: None,
                            exit_code: None,
                        })
                        .await?;
                        self.act(Action::Finish {
                            group_id,
                            result: Err(ConvertError::Interrupted),
                        })
                        .await?;
                    }
                    Err(err) => {
                        tracing::warn!(group_id = %group_id, job_id = %id, "cannot cancel at shutdown: {err}; the next start adopts it")
                    }
                }
            }
        }
        if left > 0 {
            tracing::info!(
                jobs = left,
                "leaving Slurm jobs running; the next start adopts them"
            );
        }
        Ok(())
    }
}

/// Whether sbatch failed before slurmctld could have accepted anything (it could
/// not connect), as opposed to an answer that may have been lost on the way.
fn never_reached(detail: &str) -> bool {
    detail.contains("connect failure")
}

fn first_outage(report: &CallReport) -> Option<String> {
    let errors = report
        .named
        .iter()
        .filter_map(|r| r.as_ref().err())
        .chain(
            report
                .submitted
                .iter()
                .filter_map(|(_, r)| r.as_ref().err()),
        )
        .chain(
            report
                .cancelled
                .iter()
                .filter_map(|(_, r)| r.as_ref().err()),
        )
        .chain(report.queried.iter().filter_map(|r| r.as_ref().err()))
        .chain(report.pinged.iter().filter_map(|r| r.as_ref().err()));
    errors
        .into_iter()
        .find(|err| is_down(err))
        .map(ToString::to_string)
}

/// The attempt row's final job state, node and exit code.
fn final_state(
    ending: &Ending,
    info: Option<&JobInfo>,
    exit: Option<&ExitRecord>,
    job: &Tracked,
) -> (String, Option<String>, Option<i32>) {
    let node = exit
        .and_then(|exit| exit.node.clone())
        .or_else(|| info.and_then(|info| info.node.clone()))
        .or_else(|| job.shown.1.clone());
    let slurm_state = info
        .map(|info| info.state.clone())
        .filter(JobState::is_finished);
    let state = match (ending, slurm_state) {
        (_, Some(state)) => state.to_string(),
        (Ending::Exited(exit), None) if exit.code == 0 => JobState::Completed.to_string(),
        (Ending::Exited(_), None) => JobState::Failed.to_string(),
        (Ending::Ended(state, _), None) => state.to_string(),
        (Ending::TimedOut(_) | Ending::Interrupted, None) => JobState::Cancelled.to_string(),
        (Ending::Vanished, None) => "UNKNOWN".to_string(),
    };
    let exit_code = exit
        .map(|exit| exit.code)
        .or_else(|| info.and_then(|info| info.exit_code));
    (state, node, exit_code)
}

/// The group's outcome from how its job ended.
fn job_result(
    ending: &Ending,
    job: &Tracked,
    info: Option<&JobInfo>,
) -> Result<ConvertOutput, ConvertError> {
    let id = job
        .job_id()
        .map_or_else(|| "(id not recorded)".to_string(), |id| id.to_string());
    let node = info
        .and_then(|info| info.node.clone())
        .or_else(|| job.shown.1.clone())
        .unwrap_or_else(|| "?".into());
    let with_tail = |head: String| {
        let tail = log_tail(&job.files.log, ERROR_TAIL_LINES);
        if tail.is_empty() {
            ConvertError::Failed(head)
        } else {
            ConvertError::Failed(format!("{head}: {tail}"))
        }
    };
    match ending {
        Ending::Exited(exit) if exit.code == 0 => Ok(job_output(&job.files.log, Some(exit))),
        Ending::Exited(exit) => Err(with_tail(format!(
            "Slurm job {id} on {} failed (exit code {})",
            exit.node.as_deref().unwrap_or(&node),
            exit.code
        ))),
        Ending::Ended(JobState::Completed, _) => Ok(job_output(&job.files.log, None)),
        Ending::Ended(state, reason) => Err(with_tail(format!(
            "Slurm job {id} on {node} ended {state}{}",
            reason
                .as_deref()
                .filter(|r| *r != "None")
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ))),
        Ending::Vanished => Err(with_tail(format!(
            "Slurm job {id} is no longer known to Slurm and left no exit record"
        ))),
        Ending::TimedOut(after_s) => Err(ConvertError::TimedOut(*after_s)),
        Ending::Interrupted => Err(ConvertError::Interrupted),
    }
}

/// A successful job's output: what `convert-group` reported on its last result
/// line, else (a `command` converter) its run time from the exit record.
fn job_output(log: &Path, exit: Option<&ExitRecord>) -> ConvertOutput {
    let reported = read_end(log)
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix(CONVERT_RESULT_PREFIX))
        .and_then(|json| serde_json::from_str::<ConvertOutput>(json).ok());
    reported.unwrap_or_else(|| ConvertOutput {
        timings: Timings {
            total_time: exit.and_then(|exit| Some(exit.finished? - exit.started?)),
            writer_type: Some("command".to_string()),
            ..Default::default()
        },
        output_path: None,
    })
}

/// The last `lines` non-empty lines of a job's log, joined by ` | `.
fn log_tail(log: &Path, lines: usize) -> String {
    let text = read_end(log);
    let mut tail: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty() && !line.starts_with(CONVERT_RESULT_PREFIX))
        .rev()
        .take(lines)
        .collect();
    tail.reverse();
    tail.join(" | ")
}

/// The end of a (possibly large) log file.
fn read_end(path: &Path) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > TAIL_BYTES {
        let _ = file.seek(SeekFrom::Start(len - TAIL_BYTES));
    }
    let mut bytes = Vec::new();
    let _ = file.take(TAIL_BYTES).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(state: JobState) -> JobInfo {
        JobInfo {
            state,
            node: Some("n2".into()),
            exit_code: Some(0),
            signal: None,
            reason: None,
            name: "contimg-x".into(),
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(60);
    const GRACE: Duration = Duration::from_secs(5);

    fn exited(code: i32) -> ExitRecord {
        ExitRecord {
            code,
            node: Some("n3".into()),
            started: Some(1.0),
            finished: Some(3.0),
        }
    }

    #[test]
    fn the_exit_record_decides_even_when_slurm_forgot_the_job() {
        let now = Instant::now();
        let mut progress = Progress::default();
        let verdict = judge(
            &mut progress,
            None,
            true,
            Some(&exited(1)),
            now,
            TIMEOUT,
            GRACE,
        );
        assert_eq!(verdict, Verdict::Finished(Ending::Exited(exited(1))));
        // Slurm still says running (the script is exiting): the record wins too.
        let running = info(JobState::Running);
        let verdict = judge(
            &mut Progress::default(),
            Some(&running),
            true,
            Some(&exited(0)),
            now,
            TIMEOUT,
            GRACE,
        );
        assert_eq!(verdict, Verdict::Finished(Ending::Exited(exited(0))));
    }

    #[test]
    fn a_job_killed_from_outside_fails_at_once_one_that_vanished_after_a_grace() {
        let now = Instant::now();
        for state in [JobState::Cancelled, JobState::NodeFail, JobState::Preempted] {
            let verdict = judge(
                &mut Progress::default(),
                Some(&info(state.clone())),
                true,
                None,
                now,
                TIMEOUT,
                GRACE,
            );
            assert_eq!(verdict, Verdict::Finished(Ending::Ended(state, None)));
        }
        let mut progress = Progress::default();
        assert_eq!(
            judge(&mut progress, None, true, None, now, TIMEOUT, GRACE),
            Verdict::Wait
        );
        assert_eq!(
            judge(&mut progress, None, true, None, now + GRACE, TIMEOUT, GRACE),
            Verdict::Finished(Ending::Vanished)
        );
        // An unanswered query says nothing about the job.
        let mut progress = Progress::default();
        assert_eq!(
            judge(
                &mut progress,
                None,
                false,
                None,
                now + GRACE * 10,
                TIMEOUT,
                GRACE
            ),
            Verdict::Wait
        );
    }

    #[test]
    fn the_timeout_counts_from_running_and_ends_in_a_cancel() {
        let now = Instant::now();
        let mut progress = Progress::default();
        let pending = info(JobState::Pending);
        assert_eq!(
            judge(
                &mut progress,
                Some(&pending),
                true,
                None,
                now,
                TIMEOUT,
                GRACE
            ),
            Verdict::Wait
        );
        let later = now + TIMEOUT * 2;
        let running = info(JobState::Running);
        assert_eq!(
            judge(
                &mut progress,
                Some(&running),
                true,
                None,
                later,
                TIMEOUT,
                GRACE
            ),
            Verdict::Wait,
            "queue time is not conversion time"
        );
        assert_eq!(
            judge(
                &mut progress,
                Some(&running),
                true,
                None,
                later + TIMEOUT,
                TIMEOUT,
                GRACE
            ),
            Verdict::Cancel
        );
        // Still running after the cancel: wait; once Slurm has it CANCELLED, a timeout.
        assert_eq!(
            judge(
                &mut progress,
                Some(&running),
                true,
                None,
                later + TIMEOUT,
                TIMEOUT,
                GRACE
            ),
            Verdict::Wait
        );
        let cancelled = info(JobState::Cancelled);
        assert!(matches!(
            judge(&mut progress, Some(&cancelled), true, None, later + TIMEOUT, TIMEOUT, GRACE),
            Verdict::Finished(Ending::TimedOut(after)) if after >= 60.0
        ));
    }

    #[test]
    fn failed_jobs_carry_the_last_lines_of_their_log() {
        let tmp = tempfile::tempdir().unwrap();
        let files = AttemptFiles::new(tmp.path(), "g", 1);
        let mut log = String::new();
        for n in 0..20 {
            log.push_str(&format!("line {n}\n"));
        }
        std::fs::write(&files.log, log).unwrap();
        let job = Tracked {
            group: ClaimedGroup {
                group_id: "g".into(),
                group_ts: 0.0,
                retry_count: 0,
                attempt: 1,
                files: Vec::new(),
            },
            name: "contimg-x-g-a1".into(),
            files,
            submission: Submission::Submitted(JobId(17)),
            shown: (None, Some("n4".into())),
            progress: Progress::default(),
        };
        let err = job_result(&Ending::Exited(exited(1)), &job, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Slurm job 17 on n3 failed (exit code 1): line 12 | line 13 | line 14 | line 15 | line 16 | line 17 | line 18 | line 19"
        );
        let err = job_result(
            &Ending::Ended(JobState::NodeFail, Some("NodeDown".into())),
            &job,
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Slurm job 17 on n4 ended NODE_FAIL (NodeDown): line 12"),
            "{err}"
        );
        let output = job_result(&Ending::Exited(exited(0)), &job, None).unwrap();
        assert_eq!(output.timings.total_time, Some(2.0));
    }
}
