//! Registering input files: the directory scan (start-up bootstrap and the
//! poll that catches what the watcher missed), admission of names and file
//! types, and one queue transaction per batch; incomplete groups expire here.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::ingest::watch::scan_directory;
use crate::inspection::{Inspected, file_size_and_mtime};
use crate::{Worker, WorkerError, with_queue};
use contimg_core::queue::{GroupState, Registration, unix_now};

/// Files registered per transaction during the start-up scan.
const BOOTSTRAP_BATCH: usize = 2000;
/// A file found by a directory scan must be this old before it is registered, in
/// case it is still being written under its final name.
const SCAN_QUIET_PERIOD: Duration = Duration::from_secs(1);

impl Worker {
    /// Scans the input directory for files the watcher may have missed; at start-up
    /// this is the bootstrap registration of everything already there.
    pub(crate) async fn scan(&mut self, bootstrap: bool) -> Result<(), WorkerError> {
        let dir = self.config.input_dir.clone();
        let candidates = match tokio::task::spawn_blocking(move || scan_directory(&dir)).await {
            Ok(Ok(found)) => found,
            Ok(Err(err)) => {
                tracing::warn!("{err}");
                return Ok(());
            }
            Err(source) => {
                return Err(WorkerError::Task {
                    task: "directory scan",
                    source,
                });
            }
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
        .map_err(|source| WorkerError::Task {
            task: "admission",
            source,
        })?;
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
    pub(crate) async fn register_paths(&mut self, paths: Vec<PathBuf>) -> Result<(), WorkerError> {
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
                        tracing::info!(group_id = %group_id, state = %GroupState::Pending, "group complete ({subbands} subbands)");
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

    pub(crate) async fn expire_incomplete(&mut self) -> Result<(), WorkerError> {
        let timeout = self.config.incomplete_timeout_s;
        let failed = with_queue(&self.queue, move |q| {
            q.expire_incomplete(unix_now(), timeout)
        })
        .await?;
        for (group_id, error) in failed {
            tracing::error!(group_id = %group_id, state = %GroupState::Failed, "{error}");
            self.status_dirty = true;
        }
        Ok(())
    }
}
