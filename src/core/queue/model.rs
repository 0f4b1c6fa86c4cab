//! What goes into the queue DB and what comes out of it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{AttemptOutcome, GroupState, ProcessingStage};

/// A subband file to register.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFile {
    pub path: String,
    /// Unix seconds of the timestamp in the file name.
    pub timestamp: f64,
    pub subband_idx: u32,
    pub size_bytes: Option<u64>,
    pub mtime: Option<f64>,
    /// Per-file metadata (e.g. UVH5 frequency/time ranges), JSON.
    pub meta_json: Option<String>,
}

/// What registering a file did.
#[derive(Debug, Clone, PartialEq)]
pub enum Registration {
    /// Added to a group; `state` is the group's state afterwards.
    Added {
        group_id: String,
        state: GroupState,
        subbands: u32,
    },
    /// The path was already registered (or rejected): nothing changed.
    AlreadyKnown,
    /// The group already holds this subband from another file.
    Duplicate { group_id: String, kept_path: String },
    /// The group was already closed (pending, converting, converted or failed for
    /// good): recorded in `late_files`, not attached.
    Late {
        group_id: String,
        group_state: GroupState,
    },
}

/// A group the worker claimed for conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedGroup {
    pub group_id: String,
    pub group_ts: f64,
    pub retry_count: u32,
    pub attempt: u32,
    /// (subband index, path), by subband index.
    pub files: Vec<(u32, PathBuf)>,
}

/// Timings of a successful conversion (`performance_metrics`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub load_time: Option<f64>,
    pub phase_time: Option<f64>,
    pub write_time: Option<f64>,
    pub total_time: Option<f64>,
    pub writer_type: Option<String>,
}

/// Retry schedule after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub backoff_s: f64,
    pub backoff_max_s: f64,
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1-based): backoff, doubled each time, capped.
    pub fn delay_for(&self, retry: u32) -> f64 {
        let factor = 2f64.powi(retry.saturating_sub(1).min(30) as i32);
        (self.backoff_s * factor).min(self.backoff_max_s)
    }
}

/// What a failed attempt led to.
#[derive(Debug, Clone, PartialEq)]
pub enum FailOutcome {
    Retrying {
        retry_count: u32,
        next_attempt_at: f64,
    },
    Failed {
        retry_count: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: GroupState,
    pub received_at: f64,
    pub last_update: f64,
    pub expected_subbands: Option<u32>,
    pub subbands: u32,
    pub retry_count: u32,
    pub error: Option<String>,
    pub processing_stage: Option<ProcessingStage>,
    pub next_attempt_at: Option<f64>,
    pub started_at: Option<f64>,
    pub completed_at: Option<f64>,
    pub output_path: Option<String>,
    /// The batch job of the group's latest attempt (the Slurm executor); `None`
    /// for a group never submitted as a job (the local executor, or not claimed).
    #[serde(default)]
    pub job: Option<AttemptJob>,
}

/// An attempt's batch job as the worker last recorded it (`group_attempts.job_*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptJob {
    /// The executor that ran the attempt (`slurm`).
    pub executor: String,
    /// Slurm's job id; `None` while the submission is unconfirmed.
    pub job_id: Option<String>,
    /// Slurm's job state (`PENDING`, `RUNNING`, `COMPLETED`, `FAILED`,
    /// `NODE_FAIL`, `CANCELLED`, …), or `SUBMITTING` before sbatch answered.
    pub state: Option<String>,
    /// The node the job ran on, once Slurm placed it.
    pub node: Option<String>,
    pub exit_code: Option<i32>,
    /// The attempt's job log (stdout and stderr), on storage the nodes share.
    pub log_path: Option<String>,
    pub submitted_at: Option<f64>,
}

impl AttemptJob {
    /// Whether Slurm still has the job queued or running (the attempt is open).
    pub fn is_running(&self) -> bool {
        matches!(self.state.as_deref(), Some("RUNNING" | "COMPLETING"))
    }
}

/// Batch jobs in flight: open attempts of groups `in_progress`, split by whether
/// Slurm runs them yet (`queued` includes jobs still being submitted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsInFlight {
    pub queued: u64,
    pub running: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupFile {
    pub subband_idx: u32,
    pub path: String,
    pub size_bytes: Option<u64>,
    /// Per-file metadata recorded at registration (UVH5 header summary), if any.
    pub meta: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    pub started_at: f64,
    pub finished_at: Option<f64>,
    /// None while the attempt runs.
    pub outcome: Option<AttemptOutcome>,
    pub error: Option<String>,
    /// The attempt's batch job, when it ran as one.
    #[serde(default)]
    pub job: Option<AttemptJob>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupDetail {
    #[serde(flatten)]
    pub summary: GroupSummary,
    pub files: Vec<GroupFile>,
    pub duplicates: Vec<String>,
    pub timings: Option<Timings>,
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedFile {
    pub path: String,
    pub reason: String,
    pub rejected_at: f64,
    pub size_bytes: Option<u64>,
}

/// An `input_dir` entry that is not a registrable subband file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnrecognisedFile {
    pub path: String,
    pub reason: String,
    pub first_seen_at: f64,
    pub last_seen_at: f64,
    pub size_bytes: Option<u64>,
}

/// A subband that arrived after its group was closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LateFile {
    pub path: String,
    pub group_id: String,
    pub subband_idx: u32,
    /// The group's state when the file arrived.
    pub group_state: GroupState,
    pub seen_at: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub pid: u32,
    pub started_at: f64,
    pub heartbeat_at: f64,
    pub version: String,
    /// Why the worker claims no conversion now (disk back-pressure); `None`
    /// while it claims.
    #[serde(default)]
    pub claim_paused: Option<ClaimPause>,
    /// Since when the Slurm scheduler has not answered the worker (Unix time);
    /// `None` while it answers or when conversions run locally.
    #[serde(default)]
    pub scheduler_unreachable_since: Option<f64>,
}

/// The worker stopped claiming conversions because a directory it writes is
/// short of space (`worker_heartbeat.claim_paused_*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimPause {
    /// The config field naming the short directory (`output_dir`, `scratch_dir`,
    /// `tmpfs_path`).
    pub dir: String,
    /// What is short: the path, free against needed.
    pub reason: String,
    /// Unix time the pause began.
    pub since: f64,
}

/// Filter for listing groups, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupFilter {
    pub state: Option<GroupState>,
    pub limit: Option<u32>,
    /// Only groups whose id sorts before this one (keyset pagination).
    pub before: Option<String>,
}

/// A file handed to a validator, as journalled in `inspections`.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectionEntry {
    pub path: String,
    pub size_bytes: Option<u64>,
    pub mtime: Option<f64>,
}
