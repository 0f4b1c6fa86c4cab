//! Judging candidates before they are registered: their type and size here,
//! their UVH5 layout in the isolated validator processes (see `validator`),
//! while the heartbeat and systemd's watchdog keep being fed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sd_notify::NotifyState;

use crate::ingest::watch::Candidate;
use crate::{STATUS_INTERVAL, Worker, WorkerError, validator, with_queue};
use contimg_core::queue::{NewFile, SharedQueue, unix_now};

/// How much more start-up time each progress tick asks systemd for (30 s).
const START_TIMEOUT_EXTENSION_USEC: u32 = 30_000_000;

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
pub(crate) enum Inspected {
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
    pub(crate) async fn inspect_candidates(
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
        .map_err(|source| WorkerError::Task {
            task: "file check",
            source,
        })?;
        let mut results = Vec::with_capacity(checked.len());
        let mut requests = Vec::new();
        let mut waiting = Vec::new();
        for (check, candidate, size, mtime) in checked {
            let path = candidate.path;
            match check {
                // Vanished (renamed away or deleted) before we looked: not ours to judge.
                Ok(None) => results.push(Inspected::NotNow),
                Err(refusal) => results.push(Inspected::Reject {
                    path,
                    reason: refusal.to_string(),
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
                .map(|_| {
                    validator::Verdict::Deferred(format!(
                        "cannot find the contimg-stream binary: {err}"
                    ))
                })
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
    /// Without our own binary there is nothing to start: the files are
    /// deferred (not rejected) and a later scan tries again.
    fn validator_pool(&mut self) -> std::io::Result<&mut validator::ValidatorPool> {
        let pool = match self.validators.take() {
            Some(pool) => pool,
            None => {
                let spec = validator::ValidatorSpec::for_current_exe()?;
                let size = (self.config.max_workers as usize).min(validator::MAX_VALIDATORS);
                let pool = validator::ValidatorPool::new(spec, size);
                tracing::info!(
                    validators = pool.size(),
                    "UVH5 validation runs in isolated validator processes"
                );
                pool
            }
        };
        Ok(self.validators.insert(pool))
    }

    /// A file still journalled as "in a validator" was being inspected when the
    /// previous worker died: reject it without opening it again, and say which.
    pub(crate) async fn reject_interrupted_inspections(&mut self) -> Result<(), WorkerError> {
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
pub(crate) fn file_size_and_mtime(path: &Path) -> (Option<u64>, Option<f64>) {
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

/// Why a candidate is rejected before any validator sees it; the text is the
/// rejection reason recorded in the queue.
#[derive(Debug, thiserror::Error)]
enum FileRefusal {
    #[error("cannot stat: {0}")]
    Stat(#[source] std::io::Error),
    #[error("not a regular file")]
    NotRegular,
    #[error("empty file")]
    Empty,
}

/// Reads a candidate's type and size (never its contents: libhdf5 opens untrusted
/// files only in a validator). `Ok(None)` when the file vanished (not ours to
/// judge); `Err` when it must be rejected.
fn inspect_file(candidate: &Candidate) -> Result<Option<NewFile>, FileRefusal> {
    let metadata = match std::fs::metadata(&candidate.path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(FileRefusal::Stat(err)),
    };
    if !metadata.is_file() {
        return Err(FileRefusal::NotRegular);
    }
    let size = metadata.len();
    if size == 0 {
        return Err(FileRefusal::Empty);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::watch::FileIdentity;
    use contimg_core::names::SubbandName;

    fn candidate(path: PathBuf) -> Candidate {
        Candidate {
            path,
            name: SubbandName {
                timestamp: 1_760_362_083.0,
                subband_idx: 3,
            },
            identity: FileIdentity {
                dev: 0,
                ino: 0,
                mode: 0,
                size: 0,
                mtime: 0.0,
            },
        }
    }

    /// The three outcomes the registration acts on differently: a vanished file
    /// is left alone, a refused one is rejected (with the reason operators
    /// see), a plausible one goes on to the validator.
    #[test]
    fn file_checks_tell_vanished_refused_and_plausible_apart() {
        let dir = tempfile::tempdir().unwrap();
        let gone = candidate(dir.path().join("2025-10-13T13:28:03_sb03.hdf5"));
        assert!(matches!(inspect_file(&gone), Ok(None)));

        let empty = candidate(dir.path().join("2025-10-13T13:28:03_sb04.hdf5"));
        std::fs::write(&empty.path, b"").unwrap();
        let refusal = inspect_file(&empty).unwrap_err();
        assert!(matches!(refusal, FileRefusal::Empty));
        assert_eq!(refusal.to_string(), "empty file");

        let directory = candidate(dir.path().join("2025-10-13T13:28:03_sb05.hdf5"));
        std::fs::create_dir(&directory.path).unwrap();
        let refusal = inspect_file(&directory).unwrap_err();
        assert!(matches!(refusal, FileRefusal::NotRegular));
        assert_eq!(refusal.to_string(), "not a regular file");

        let plausible = candidate(dir.path().join("2025-10-13T13:28:03_sb06.hdf5"));
        std::fs::write(&plausible.path, b"HDF").unwrap();
        let file = inspect_file(&plausible).unwrap().unwrap();
        assert_eq!((file.subband_idx, file.size_bytes), (3, Some(3)));
    }
}
