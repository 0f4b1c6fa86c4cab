//! `contimg-stream`, the streaming worker: watch the input directory, group subband
//! files in the queue DB, convert complete groups with up to `max_workers` at
//! once, retry with back-off, recover after crashes, and tell systemd about it.
//!
//! Where things are (one concern per file; each adds an `impl Worker` block):
//! - `event_loop`: [`run`]: start-up, the `select!` loop, the status line;
//! - `lock`: one worker per queue DB (`<queue_db>.lock`);
//! - `registration`: scans, admission, registering files, expiring groups;
//! - `inspection`: file checks and the validator pool ([`validator`]);
//! - `conversions`: claiming, recording outcomes, retry requests, the drain;
//! - `executor`: where conversions run (local tasks, or Slurm batch jobs);
//! - `staging`: tmpfs copies of a group's inputs around its conversion;
//! - `recovery`: cleaning up after a crash or an interrupted conversion;
//! - `reload`: SIGHUP; `pause`: surviving a full state disk;
//! - `retention`: the periodic retention sweep (policy in `contimg_core::retention`);
//! - [`convert`]: running a converter; [`builtin`]: the UVH5 merge converter;
//!   [`job`]: what both exchange; `child`: the `convert-group` subprocess side.

pub mod builtin;
mod child;
mod conversions;
pub mod convert;
mod disk;
mod error;
mod event_loop;
mod executor;
pub mod ingest;
mod inspection;
pub mod job;
mod lock;
pub mod options;
mod pause;
mod recovery;
mod registration;
mod reload;
mod retention;
pub mod slurm;
mod staging;
pub mod validator;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use contimg_core::config::StreamingConfig;
use contimg_core::logging::LogLevelHandle;
use contimg_core::queue::{ClaimedGroup, Queue, QueueError, SharedQueue};
use conversions::Finished;
use options::StreamArgs;

pub use child::{ChildError, convert_group_child};
pub use error::WorkerError;
pub use event_loop::run;

/// How often the status line and heartbeat are refreshed.
const STATUS_INTERVAL: Duration = Duration::from_secs(2);

/// [`queue::with_queue`](contimg_core::queue::with_queue) with the worker's error type.
async fn with_queue<T, F>(queue: &SharedQueue, work: F) -> Result<T, WorkerError>
where
    T: Send + 'static,
    F: FnOnce(&mut Queue) -> Result<T, QueueError> + Send + 'static,
{
    Ok(contimg_core::queue::with_queue(queue, work).await?)
}

/// The state of one worker run, shared by the files of this crate.
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
    /// The Slurm executor, when conversions run as Slurm jobs or a previous run
    /// left jobs in flight (see `executor`).
    slurm: Option<executor::slurm::SlurmExecutor>,
    /// Whether disk back-pressure lets the worker claim (see `disk`).
    claim_gate: disk::ClaimGate,
    watcher: Option<notify::RecommendedWatcher>,
    file_events: mpsc::UnboundedSender<PathBuf>,
}

#[cfg(test)]
mod tests {
    /// `convert` dispatches to `builtin`; neither `builtin` nor `job` may reach
    /// back into `convert` (issue 11: no import cycles between modules).
    #[test]
    fn builtin_and_job_do_not_depend_on_convert() {
        for (name, source) in [
            ("builtin.rs", include_str!("builtin.rs")),
            ("job.rs", include_str!("job.rs")),
        ] {
            assert!(
                !source.contains("convert::"),
                "{name} uses the convert module"
            );
        }
    }
}
