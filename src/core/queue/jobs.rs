//! Conversions that run as batch jobs (the Slurm executor): each attempt's job id,
//! Slurm state, node, exit code and log, and whether the scheduler answers.
//!
//! An attempt that runs as a job stays open (`finished_at IS NULL`) while the job
//! is in flight, also across worker restarts: start-up recovery leaves such groups
//! `in_progress` for the executor to adopt instead of requeueing them.

use std::path::PathBuf;

use rusqlite::{OptionalExtension, params};

use super::{ClaimedGroup, GroupState, Queue, QueueError, group_timestamp_from_id};

/// `group_attempts.job_state` between the decision to submit and sbatch's answer.
/// Not a Slurm state: an attempt left in it by a crash may or may not have a job,
/// which the executor finds out by the job's name before doing anything else.
pub const JOB_STATE_SUBMITTING: &str = "SUBMITTING";

/// An attempt whose batch job is (or may be) in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenJob {
    pub group: ClaimedGroup,
    /// `None` while the submission is unconfirmed ([`JOB_STATE_SUBMITTING`]).
    pub job_id: Option<String>,
    pub job_state: Option<String>,
    pub job_node: Option<String>,
    pub log_path: Option<PathBuf>,
    pub submitted_at: Option<f64>,
}

impl Queue {
    /// Before sbatch runs: the attempt belongs to `executor` and writes `log_path`.
    /// Written first so that a worker killed during sbatch knows at its next start
    /// that a job may exist.
    pub fn mark_submitting(
        &mut self,
        group_id: &str,
        attempt: u32,
        executor: &str,
        log_path: &str,
    ) -> Result<(), QueueError> {
        self.conn.execute(
            "UPDATE group_attempts SET executor = ?1, job_state = ?2, job_log_path = ?3
             WHERE group_id = ?4 AND attempt = ?5",
            params![executor, JOB_STATE_SUBMITTING, log_path, group_id, attempt],
        )?;
        Ok(())
    }

    /// sbatch accepted the attempt's job (or the job was found again by its name).
    pub fn record_job_submitted(
        &mut self,
        group_id: &str,
        attempt: u32,
        job_id: &str,
        job_state: &str,
        now: f64,
    ) -> Result<(), QueueError> {
        self.conn.execute(
            "UPDATE group_attempts SET job_id = ?1, job_state = ?2,
                 submitted_at = COALESCE(submitted_at, ?3)
             WHERE group_id = ?4 AND attempt = ?5",
            params![job_id, job_state, now, group_id, attempt],
        )?;
        Ok(())
    }

    /// What Slurm (or the job's exit-status file) says about the attempt's job now.
    pub fn record_job_state(
        &mut self,
        group_id: &str,
        attempt: u32,
        job_state: &str,
        node: Option<&str>,
        exit_code: Option<i32>,
    ) -> Result<(), QueueError> {
        self.conn.execute(
            "UPDATE group_attempts SET job_state = ?1, job_node = COALESCE(?2, job_node),
                 job_exit_code = COALESCE(?3, job_exit_code)
             WHERE group_id = ?4 AND attempt = ?5",
            params![job_state, node, exit_code, group_id, attempt],
        )?;
        Ok(())
    }

    /// Open attempts of `executor` on groups still `in_progress`: the jobs a
    /// restarted worker adopts.
    pub fn open_jobs(&self, executor: &str) -> Result<Vec<OpenJob>, QueueError> {
        let mut stmt = self.conn.prepare(
            "SELECT a.group_id, a.attempt, q.group_ts, q.retry_count, a.job_id, a.job_state,
                    a.job_node, a.job_log_path, a.submitted_at
             FROM group_attempts a JOIN ingest_queue q ON q.group_id = a.group_id
             WHERE a.finished_at IS NULL AND a.executor = ?1 AND q.state = ?2
             ORDER BY a.submitted_at, a.group_id",
        )?;
        let rows = stmt.query_map(params![executor, GroupState::InProgress], |row| {
            let group_id: String = row.get(0)?;
            let group_ts: Option<f64> = row.get(2)?;
            Ok(OpenJob {
                group: ClaimedGroup {
                    group_ts: group_ts
                        .or_else(|| group_timestamp_from_id(&group_id))
                        .unwrap_or(0.0),
                    group_id,
                    retry_count: row.get(3)?,
                    attempt: row.get(1)?,
                    files: Vec::new(),
                },
                job_id: row.get(4)?,
                job_state: row.get(5)?,
                job_node: row.get(6)?,
                log_path: row.get::<_, Option<String>>(7)?.map(PathBuf::from),
                submitted_at: row.get(8)?,
            })
        })?;
        let mut jobs: Vec<OpenJob> = rows.collect::<Result<_, _>>()?;
        for job in &mut jobs {
            job.group.files = super::transitions::group_files(&self.conn, &job.group.group_id)?;
        }
        Ok(jobs)
    }

    /// Records since when the scheduler has not answered (`None`: it answers).
    /// Returns false when there is no heartbeat row yet to carry it.
    pub fn set_scheduler_unreachable(&mut self, since: Option<f64>) -> Result<bool, QueueError> {
        let changed = self.conn.execute(
            "UPDATE worker_heartbeat SET scheduler_unreachable_since = ?1 WHERE id = 1",
            [since],
        )?;
        Ok(changed > 0)
    }

    /// Since when the scheduler has not answered, as last recorded.
    pub fn scheduler_unreachable_since(&self) -> Result<Option<f64>, QueueError> {
        Ok(self
            .conn
            .query_row(
                "SELECT scheduler_unreachable_since FROM worker_heartbeat WHERE id = 1",
                [],
                |row| row.get(0),
            )
            .optional()?
            .flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{NewFile, RetryPolicy};

    fn queue_with_pending(dir: &std::path::Path, groups: &[&str]) -> Queue {
        let mut queue = Queue::open(&dir.join("q.sqlite3")).unwrap();
        for group in groups {
            let ts = group_timestamp_from_id(group).unwrap();
            let path = dir.join(format!("{group}_sb00.hdf5"));
            queue
                .register_file(
                    &NewFile {
                        path: path.to_string_lossy().into_owned(),
                        timestamp: ts,
                        subband_idx: 0,
                        size_bytes: Some(1),
                        mtime: None,
                        meta_json: None,
                    },
                    1,
                    60.0,
                    ts,
                )
                .unwrap();
        }
        queue
    }

    /// A crashed worker's Slurm attempt is adopted, not requeued: recovery leaves
    /// the group in progress with its attempt open; a local attempt is recovered
    /// as before.
    #[test]
    fn recovery_leaves_slurm_attempts_to_the_executor() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue =
            queue_with_pending(dir.path(), &["2025-10-13T13:28:03", "2025-10-13T13:40:00"]);
        let slurm = queue.claim_next(1.0).unwrap().unwrap();
        let local = queue.claim_next(1.0).unwrap().unwrap();
        queue
            .mark_submitting(&slurm.group_id, slurm.attempt, "slurm", "/logs/a.log")
            .unwrap();
        queue
            .record_job_submitted(&slurm.group_id, slurm.attempt, "42", "PENDING", 2.0)
            .unwrap();
        let recovered = queue.recover_in_progress(3.0).unwrap();
        assert_eq!(recovered, vec![local.group_id.clone()]);
        let open = queue.open_jobs("slurm").unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].group.group_id, slurm.group_id);
        assert_eq!(open[0].group.attempt, 1);
        assert_eq!(open[0].group.files.len(), 1);
        assert_eq!(open[0].job_id.as_deref(), Some("42"));
        assert_eq!(open[0].log_path, Some(PathBuf::from("/logs/a.log")));
        assert_eq!(open[0].submitted_at, Some(2.0));
        assert!(queue.open_jobs("local").unwrap().is_empty());

        queue
            .record_job_state(&slurm.group_id, 1, "RUNNING", Some("n3"), None)
            .unwrap();
        queue
            .record_job_state(&slurm.group_id, 1, "FAILED", None, Some(1))
            .unwrap();
        let open = queue.open_jobs("slurm").unwrap();
        assert_eq!(open[0].job_node.as_deref(), Some("n3"));
        let policy = RetryPolicy {
            max_retries: 2,
            backoff_s: 1.0,
            backoff_max_s: 1.0,
        };
        queue
            .fail_attempt(&slurm.group_id, 1, "exit 1", &policy, 4.0)
            .unwrap();
        assert!(queue.open_jobs("slurm").unwrap().is_empty());
    }

    #[test]
    fn scheduler_reachability_lives_in_the_heartbeat() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = queue_with_pending(dir.path(), &[]);
        assert!(!queue.set_scheduler_unreachable(Some(5.0)).unwrap());
        queue.heartbeat(1, 0.0, 1.0).unwrap();
        assert!(queue.set_scheduler_unreachable(Some(5.0)).unwrap());
        assert_eq!(queue.scheduler_unreachable_since().unwrap(), Some(5.0));
        queue.heartbeat(1, 0.0, 2.0).unwrap();
        assert_eq!(queue.scheduler_unreachable_since().unwrap(), Some(5.0));
        queue.set_scheduler_unreachable(None).unwrap();
        assert_eq!(queue.scheduler_unreachable_since().unwrap(), None);
    }
}
