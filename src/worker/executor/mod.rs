//! Where a claimed group's conversion runs.
//!
//! - local (`executor = "local"`, the default): a task of the worker runs the
//!   converter as a child process (or in-process), at most `max_workers` at once:
//!   `conversions::fill_slots` and [`crate::staging`], unchanged;
//! - [`slurm`] (`executor = "slurm"`): one batch job per group attempt, at most
//!   `slurm.max_jobs` in flight, tracked with one squeue call per poll, adopted
//!   again by a restarted worker.
//!
//! Both end in the same `Worker::record` (completed, retried with back-off,
//! failed, or requeued), so retries, back-off and the queue view do not depend on
//! where the conversion ran. [`script`] writes what a job runs: the same argv the
//! local executor starts.

pub(crate) mod script;
pub(crate) mod slurm;
