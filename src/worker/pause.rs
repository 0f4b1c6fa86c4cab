//! Surviving a full state disk. When the queue DB's filesystem is full, SQLite
//! answers "database or disk is full" to every write: registration, claiming,
//! results and the heartbeat. Exiting would only start a restart loop that
//! cannot succeed either, so the worker pauses instead:
//!
//! - no registration (files that arrive stay out of `seen`, so the poll scan
//!   registers them once space returns) and no claiming;
//! - a conversion that finishes meanwhile cannot record its result: its group is
//!   parked and requeued on resume (its output is redone, never half-trusted);
//! - every status tick checks for free space (at least
//!   `contimg_core::queue::writable::STATE_DIR_MIN_FREE_BYTES`) and a heartbeat write; when
//!   both succeed the worker resumes by itself.
//!
//! The API raises `queue_db_unwritable` and health says "disk full" meanwhile.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::recovery::remove_outputs_of;
use crate::{Worker, WorkerError, with_queue};
use contimg_core::queue::writable::probe_queue_db_writable;
use contimg_core::queue::{ClaimedGroup, GroupState, QueueError, unix_now};

/// While paused, the reason is logged again this often.
const REMIND_EVERY: Duration = Duration::from_secs(60);

struct Paused {
    since: Instant,
    last_reminder: Instant,
}

/// The pause state of one worker run.
pub(super) struct StatePause {
    state_dir: PathBuf,
    paused: Option<Paused>,
    /// Groups whose result could not be written; requeued on resume.
    parked: Vec<ClaimedGroup>,
    /// Start-up recovery did not complete; run it again on resume.
    pub(super) needs_recovery: bool,
}

impl StatePause {
    pub(super) fn new(queue_db: &Path) -> Self {
        let state_dir = match queue_db.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Self {
            state_dir,
            paused: None,
            parked: Vec::new(),
            needs_recovery: false,
        }
    }

    pub(super) fn is_paused(&self) -> bool {
        self.paused.is_some()
    }

    /// `Ok(true)` when `result` succeeded, `Ok(false)` when it failed because
    /// the disk is full (now paused), otherwise the error.
    pub(super) fn absorb<T>(
        &mut self,
        result: Result<T, WorkerError>,
    ) -> Result<bool, WorkerError> {
        match result {
            Ok(_) => Ok(true),
            Err(err) if err.is_disk_full() => {
                self.pause(&err);
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }

    /// Keeps a group whose result could not be recorded, for requeueing.
    pub(super) fn park(&mut self, group: ClaimedGroup) {
        tracing::warn!(
            group_id = %group.group_id,
            "cannot record the conversion result: the state dir is full; the group is \
             converted again once space returns"
        );
        self.parked.push(group);
    }

    fn pause(&mut self, err: &WorkerError) {
        let now = Instant::now();
        match self.paused.as_mut() {
            None => {
                tracing::error!(
                    state_dir = %self.state_dir.display(),
                    "state dir {} is full ({err}): pausing registration and claiming until \
                     space returns",
                    self.state_dir.display()
                );
                let status = format!("paused: state dir {} is full", self.state_dir.display());
                let _ = sd_notify::notify(&[NotifyState::Status(&status)]);
                self.paused = Some(Paused {
                    since: now,
                    last_reminder: now,
                });
            }
            Some(paused) if now.duration_since(paused.last_reminder) >= REMIND_EVERY => {
                paused.last_reminder = now;
                tracing::warn!(
                    state_dir = %self.state_dir.display(),
                    "still paused: state dir {} is full for {:.0} s",
                    self.state_dir.display(),
                    now.duration_since(paused.since).as_secs_f64()
                );
            }
            Some(_) => {}
        }
    }
}

impl Worker {
    /// One status tick while paused: resumes when the disk has room again and a
    /// heartbeat can be written. Blocking statvfs is cheap on a local disk.
    pub(super) async fn try_resume(&mut self, pause: &mut StatePause) -> Result<(), WorkerError> {
        let queue_db = self.config.queue_db.clone();
        let room = tokio::task::spawn_blocking(move || probe_queue_db_writable(&queue_db))
            .await
            .map_err(|source| WorkerError::Task {
                task: "free-space probe",
                source,
            })?;
        // A heartbeat may still fit (SQLite reuses WAL frames): keep it fresh.
        let beat = self.refresh_status().await;
        if room.is_err() || !pause.absorb(beat)? {
            if let Err(why) = room {
                pause.pause(&WorkerError::Queue(QueueError::Io {
                    path: pause.state_dir.clone(),
                    source: std::io::Error::other(why),
                }));
            }
            return Ok(());
        }
        if pause.needs_recovery
            && !(pause.absorb(self.recover().await)?
                && pause.absorb(self.reject_interrupted_inspections().await)?)
        {
            return Ok(());
        }
        pause.needs_recovery = false;
        while let Some(group) = pause.parked.pop() {
            let id = group.group_id.clone();
            let attempt = group.attempt;
            let requeued = with_queue(&self.queue, move |q| {
                q.requeue(
                    &id,
                    attempt,
                    "result lost: the state dir was full",
                    unix_now(),
                )
            })
            .await;
            if !pause.absorb(requeued)? {
                pause.parked.push(group);
                return Ok(());
            }
            remove_outputs_of(&self.config.output_dir, &group.group_id);
            tracing::warn!(group_id = %group.group_id, state = %GroupState::Pending, "requeued after the state dir was full");
        }
        if let Some(paused) = pause.paused.take() {
            tracing::info!(
                state_dir = %pause.state_dir.display(),
                "space returned on {}: resuming registration and claiming (paused for {:.0} s)",
                pause.state_dir.display(),
                paused.since.elapsed().as_secs_f64()
            );
            self.status_dirty = true;
        }
        Ok(())
    }
}
