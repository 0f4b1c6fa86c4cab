//! Talking to a Slurm cluster through Slurm's own command-line clients (`sbatch`,
//! `squeue`, `scontrol`, `scancel`): the layer the Slurm executor is built on.
//!
//! - [`client`]: [`SlurmClient`] runs one command per call, argv only (no shell),
//!   with a timeout, and turns failures into a [`SlurmError`] that says whether the
//!   scheduler could not be reached (not the job's fault) or refused the request;
//! - [`parse`]: pure functions over each command's output, unit-tested on output
//!   captured from a real cluster (`testdata/`).
//!
//! The commands find the cluster the standard way: `SLURM_CONF` in the environment
//! (the worker's, or the client's own `env`), else `/etc/slurm/slurm.conf`.

pub mod client;
pub mod parse;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use client::{QueryFormat, SlurmClient};

/// A Slurm job id as `sbatch --parsable` prints it (without a `;cluster` suffix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = std::num::ParseIntError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.trim().parse().map(JobId)
    }
}

/// One batch job to submit: [`SlurmClient::submit`] passes `script` on sbatch's
/// stdin and everything else as sbatch options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobSpec {
    /// `--job-name`; identifies the group and attempt (and lets a restarted worker
    /// find the job again with [`SlurmClient::jobs_named`]).
    pub name: String,
    /// `--comment`.
    pub comment: String,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// `--time`, in any form sbatch accepts (`30`, `1:00:00`, `1-0`).
    pub time_limit: Option<String>,
    /// `--mem` (`4G`, `4000`).
    pub mem: Option<String>,
    pub cpus_per_task: Option<u32>,
    /// Passed to sbatch last, so they can override the options above; each is one
    /// argv element, never seen by a shell.
    pub extra_args: Vec<String>,
    /// `--chdir`: must exist on the compute node (shared storage).
    pub workdir: PathBuf,
    /// `--output` and `--error` (one file for both).
    pub stdout_path: PathBuf,
    /// The full batch script, starting with `#!`.
    pub script: String,
}

/// What Slurm says about a job.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting for resources, a begin time, or a requeue.
    Pending,
    /// Allocated and running (CONFIGURING counts: the nodes are being set up).
    Running,
    /// Ended; Slurm is still cleaning up on the node.
    Completing,
    /// Exited 0.
    Completed,
    /// Exited non-zero, or failed to launch.
    Failed,
    /// `scancel` (from us or anyone else).
    Cancelled,
    /// Hit its time limit.
    Timeout,
    /// A node it ran on failed.
    NodeFail,
    Preempted,
    OutOfMemory,
    /// Any other Slurm state, as Slurm spells it (SUSPENDED, BOOT_FAIL, DEADLINE…).
    Other(String),
}

impl JobState {
    /// Parses Slurm's long state name (`squeue %T`, JSON `job_state`); a `+` flag
    /// suffix some versions print (`CANCELLED+`) is ignored.
    pub fn from_slurm(name: &str) -> Self {
        let name = name.trim().trim_end_matches('+');
        match name {
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" => JobState::Pending,
            "RUNNING" | "CONFIGURING" => JobState::Running,
            "COMPLETING" => JobState::Completing,
            "COMPLETED" => JobState::Completed,
            "FAILED" => JobState::Failed,
            "CANCELLED" => JobState::Cancelled,
            "TIMEOUT" => JobState::Timeout,
            "NODE_FAIL" => JobState::NodeFail,
            "PREEMPTED" => JobState::Preempted,
            "OUT_OF_MEMORY" => JobState::OutOfMemory,
            other => JobState::Other(other.to_string()),
        }
    }

    /// Slurm's name for the state.
    pub fn as_slurm(&self) -> &str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Running => "RUNNING",
            JobState::Completing => "COMPLETING",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
            JobState::Timeout => "TIMEOUT",
            JobState::NodeFail => "NODE_FAIL",
            JobState::Preempted => "PREEMPTED",
            JobState::OutOfMemory => "OUT_OF_MEMORY",
            JobState::Other(name) => name,
        }
    }

    /// True once the job will not run (any more): its result is final.
    /// COMPLETING is not: the job's processes may still be writing.
    pub fn is_finished(&self) -> bool {
        match self {
            JobState::Pending | JobState::Running | JobState::Completing => false,
            JobState::Completed
            | JobState::Failed
            | JobState::Cancelled
            | JobState::Timeout
            | JobState::NodeFail
            | JobState::Preempted
            | JobState::OutOfMemory => true,
            JobState::Other(name) => matches!(
                name.as_str(),
                "BOOT_FAIL" | "DEADLINE" | "REVOKED" | "SPECIAL_EXIT"
            ),
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_slurm())
    }
}

/// One job as [`SlurmClient::query`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub state: JobState,
    /// The node(s) it runs or ran on (`n2`, `n[1-2]`); `None` while pending.
    pub node: Option<String>,
    /// The script's exit status, when it exited (not when killed by a signal).
    /// Slurm reports 0 until the job ends.
    pub exit_code: Option<i32>,
    /// The signal that ended the script, if one did (9 for SIGKILL, 15 for a cancel).
    pub signal: Option<i32>,
    /// Why it waits or why it ended (`Resources`, `BeginTime`, `NonZeroExitCode`,
    /// `NodeDown`); `None` when Slurm says `None`.
    pub reason: Option<String>,
    /// `--job-name`.
    pub name: String,
}

/// Why a Slurm command did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// slurmctld did not answer (down, unreachable, too slow, munge failing): not
    /// the job's fault, so it must not count as a failed attempt. After a timed-out
    /// `submit` the job may still have been accepted: look for it by name
    /// ([`SlurmClient::jobs_named`]) before submitting again.
    #[error("Slurm scheduler unreachable ({command}): {detail}")]
    Unreachable {
        command: &'static str,
        detail: String,
    },
    /// Slurm answered and refused (unknown partition, account or QOS, a limit, a
    /// bad option): submitting the same spec again will fail the same way.
    #[error("Slurm rejected {command}: {stderr}")]
    Rejected {
        command: &'static str,
        stderr: String,
    },
    /// The command could not be run at all (not installed, not executable).
    #[error("cannot run {command}: {source}")]
    Io {
        command: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The command succeeded but printed something this client cannot read.
    #[error("cannot read the output of {command}: {detail}")]
    Output {
        command: &'static str,
        detail: String,
    },
}

impl SlurmError {
    /// True when the scheduler could not be reached: wait and try again later,
    /// without charging the group a retry.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SlurmError::Unreachable { .. })
    }
}
