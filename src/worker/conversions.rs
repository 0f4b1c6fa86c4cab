//! Converting groups: claiming due groups into the free slots, recording each
//! outcome (completed, retrying, failed, requeued), operators' retry requests,
//! and the drain at shutdown.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::convert::{ConvertError, ConvertJob, ConvertOutput};
use crate::disk::{classify_failure, written_dirs};
use crate::recovery::remove_outputs_of;
use crate::staging::{convert_group, stage_root};
use crate::{Worker, WorkerError, with_queue};
use contimg_core::queue::{ClaimedGroup, FailOutcome, GroupState, RetryPolicy, unix_now};

/// The outcome of one conversion task.
pub(crate) struct Finished {
    pub(crate) group: ClaimedGroup,
    pub(crate) result: Result<ConvertOutput, ConvertError>,
}

impl Worker {
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.config.max_retries,
            backoff_s: self.config.retry_backoff_s,
            backoff_max_s: self.config.retry_backoff_max_s,
        }
    }

    /// Claims groups until every slot is busy or nothing is due.
    pub(crate) async fn fill_slots(&mut self) -> Result<(), WorkerError> {
        while self.has_free_slot() {
            if !self.space_for_next_claim().await? {
                break;
            }
            let Some(group) = with_queue(&self.queue, |q| q.claim_next(unix_now())).await? else {
                break;
            };
            tracing::info!(
                group_id = %group.group_id,
                state = %GroupState::InProgress,
                attempt = group.attempt,
                "converting {} subbands",
                group.files.len()
            );
            self.status_dirty = true;
            if self.submits_to_slurm() {
                self.hand_to_slurm(group).await?;
                continue;
            }
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
            let written = written_dirs(&self.config);
            self.running.spawn(async move {
                let result =
                    convert_group(job, stage, &converter, use_subprocess, timeout, cancel).await;
                // Before its partial output is removed: a full directory is the cause.
                let result = classify_failure(result, written).await;
                Finished { group, result }
            });
        }
        self.kick_slurm();
        Ok(())
    }

    pub(crate) fn job_for(&self, group: &ClaimedGroup) -> ConvertJob {
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
    pub(crate) async fn record(&mut self, finished: Finished) -> Result<(), WorkerError> {
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
                tracing::info!(group_id = %group_id, state = %GroupState::Completed, "converted in {total:.2} s");
            }
            Err(err @ ConvertError::NoSpace { .. }) => {
                remove_outputs_of(&self.config.output_dir, &group_id);
                self.defer_no_space(&group, err.to_string()).await?;
            }
            Err(ConvertError::Interrupted) => {
                let id = group_id.clone();
                with_queue(&self.queue, move |q| {
                    q.requeue(&id, attempt, "interrupted by shutdown", unix_now())
                })
                .await?;
                remove_outputs_of(&self.config.output_dir, &group_id);
                tracing::warn!(group_id = %group_id, state = %GroupState::Pending, "conversion interrupted; requeued");
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
                        state = %GroupState::Pending,
                        retry_count,
                        "conversion failed: {error}; retry {retry_count}/{} in {:.0} s",
                        self.config.max_retries,
                        (next_attempt_at - unix_now()).max(0.0)
                    ),
                    FailOutcome::Failed { retry_count } => tracing::error!(
                        group_id = %group_id,
                        state = %GroupState::Failed,
                        retry_count,
                        "conversion failed for good after {retry_count} retries: {error}"
                    ),
                }
            }
        }
        Ok(())
    }

    /// Applies operators' retry requests (files under `requests/retry/`).
    pub(crate) async fn apply_retry_requests(&mut self) -> Result<(), WorkerError> {
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
                    tracing::info!(group_id = %group_id, state = %GroupState::Pending, "retry requested by an operator")
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

    /// SIGTERM: stop claiming, let running conversions finish within the drain
    /// timeout, then kill and requeue what is left.
    pub(crate) async fn drain(mut self) -> Result<(), WorkerError> {
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
        self.stop_slurm().await?;
        tracing::info!("stopped");
        Ok(())
    }
}
