//! A group's state transitions, each one transaction: expiry of incomplete
//! groups, claim, completion, failure with back-off, requeue, crash recovery and
//! an operator's retry.

use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    AttemptOutcome, ClaimedGroup, FailOutcome, GroupState, ProcessingStage, Queue, QueueError,
    RetryPolicy, Timings, group_timestamp_from_id,
};

/// A group whose open attempt is a batch job (submitted, or being submitted): the
/// job outlives the worker, so start-up recovery leaves it to the executor to adopt.
const NOT_A_JOB_IN_FLIGHT: &str = "group_id NOT IN (SELECT group_id FROM group_attempts
     WHERE finished_at IS NULL AND job_state IS NOT NULL)";

/// Why a crashed worker's attempts ended, and the group error if it had none.
const CRASH_REASON: &str = "the worker stopped during conversion";

impl Queue {
    /// Fails groups still collecting `timeout_s` after their first file arrived,
    /// naming the missing subbands. Returns (group id, error).
    pub fn expire_incomplete(
        &mut self,
        now: f64,
        timeout_s: f64,
    ) -> Result<Vec<(String, String)>, QueueError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stale: Vec<(String, Option<u32>)> = {
            let mut stmt = tx.prepare(
                "SELECT group_id, expected_subbands FROM ingest_queue
                 WHERE state = ?1 AND received_at <= ?2",
            )?;
            stmt.query_map(params![GroupState::Collecting, now - timeout_s], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect::<Result<_, _>>()?
        };
        let mut failed = Vec::new();
        for (group_id, expected) in stale {
            let present = subband_indices(&tx, &group_id)?;
            let expected = expected.unwrap_or(present.len() as u32);
            let missing: Vec<String> = (0..expected)
                .filter(|idx| !present.contains(idx))
                .map(|idx| format!("sb{idx:02}"))
                .collect();
            let error = format!(
                "incomplete after {timeout_s:.0} s: {}/{expected} subbands, missing {}",
                present.len(),
                missing.join(", ")
            );
            tx.execute(
                "UPDATE ingest_queue SET state = ?1, error = ?2, last_update = ?3,
                     processing_stage = ?4
                 WHERE group_id = ?5",
                params![
                    GroupState::Failed,
                    error,
                    now,
                    ProcessingStage::Incomplete,
                    group_id
                ],
            )?;
            failed.push((group_id, error));
        }
        tx.commit()?;
        Ok(failed)
    }

    /// The files of the group [`Queue::claim_next`] would claim at `now`,
    /// without claiming it (the worker checks free space for them first).
    pub fn peek_next_due(&self, now: f64) -> Result<Option<Vec<(u32, PathBuf)>>, QueueError> {
        match next_due(&self.conn, now)? {
            Some((group_id, _, _)) => Ok(Some(group_files(&self.conn, &group_id)?)),
            None => Ok(None),
        }
    }

    /// Atomically claims the oldest pending group that is due.
    pub fn claim_next(&mut self, now: f64) -> Result<Option<ClaimedGroup>, QueueError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some((group_id, group_ts, retry_count)) = next_due(&tx, now)? else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE ingest_queue SET state = ?1, started_at = ?2, last_update = ?2,
                 processing_stage = ?3
             WHERE group_id = ?4",
            params![
                GroupState::InProgress,
                now,
                ProcessingStage::Converting,
                group_id
            ],
        )?;
        let attempt: u32 = tx.query_row(
            "SELECT COALESCE(MAX(attempt), 0) + 1 FROM group_attempts WHERE group_id = ?1",
            [&group_id],
            |row| row.get(0),
        )?;
        tx.execute(
            "INSERT INTO group_attempts(group_id, attempt, started_at) VALUES (?1, ?2, ?3)",
            params![group_id, attempt, now],
        )?;
        let files = group_files(&tx, &group_id)?;
        tx.commit()?;
        Ok(Some(ClaimedGroup {
            group_ts: group_ts
                .or_else(|| group_timestamp_from_id(&group_id))
                .unwrap_or(0.0),
            group_id,
            retry_count,
            attempt,
            files,
        }))
    }

    /// Marks a claimed group completed and records its timings.
    pub fn complete(
        &mut self,
        group_id: &str,
        attempt: u32,
        timings: &Timings,
        output_path: Option<&str>,
        now: f64,
    ) -> Result<(), QueueError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE ingest_queue SET state = ?1, last_update = ?2, completed_at = ?2,
                 error = NULL, processing_stage = ?3, next_attempt_at = NULL, output_path = ?4
             WHERE group_id = ?5 AND state = ?6",
            params![
                GroupState::Completed,
                now,
                ProcessingStage::Completed,
                output_path,
                group_id,
                GroupState::InProgress
            ],
        )?;
        if changed == 0 {
            return Err(wrong_state(&tx, group_id, GroupState::InProgress)?);
        }
        tx.execute(
            "INSERT INTO performance_metrics(group_id, load_time, phase_time, write_time, total_time, writer_type, recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(group_id) DO UPDATE SET load_time = excluded.load_time, phase_time = excluded.phase_time,
                 write_time = excluded.write_time, total_time = excluded.total_time,
                 writer_type = excluded.writer_type, recorded_at = excluded.recorded_at",
            params![
                group_id,
                timings.load_time,
                timings.phase_time,
                timings.write_time,
                timings.total_time,
                timings.writer_type,
                now
            ],
        )?;
        finish_attempt(&tx, group_id, attempt, AttemptOutcome::Completed, None, now)?;
        tx.commit()?;
        Ok(())
    }

    /// Records a failed attempt: back to `pending` with a back-off, or `failed`
    /// for good once `max_retries` retries are used up.
    pub fn fail_attempt(
        &mut self,
        group_id: &str,
        attempt: u32,
        error: &str,
        policy: &RetryPolicy,
        now: f64,
    ) -> Result<FailOutcome, QueueError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let retry_count: Option<u32> = tx
            .query_row(
                "SELECT retry_count FROM ingest_queue WHERE group_id = ?1 AND state = ?2",
                params![group_id, GroupState::InProgress],
                |row| row.get(0),
            )
            .optional()?;
        let Some(retry_count) = retry_count else {
            return Err(wrong_state(&tx, group_id, GroupState::InProgress)?);
        };
        let outcome = if retry_count < policy.max_retries {
            let retry_count = retry_count + 1;
            let next_attempt_at = now + policy.delay_for(retry_count);
            tx.execute(
                "UPDATE ingest_queue SET state = ?1, retry_count = ?2, error = ?3, last_update = ?4,
                     next_attempt_at = ?5, processing_stage = ?6
                 WHERE group_id = ?7",
                params![
                    GroupState::Pending,
                    retry_count,
                    error,
                    now,
                    next_attempt_at,
                    ProcessingStage::RetryWait,
                    group_id
                ],
            )?;
            FailOutcome::Retrying {
                retry_count,
                next_attempt_at,
            }
        } else {
            tx.execute(
                "UPDATE ingest_queue SET state = ?1, error = ?2, last_update = ?3,
                     next_attempt_at = NULL, processing_stage = ?4
                 WHERE group_id = ?5",
                params![
                    GroupState::Failed,
                    error,
                    now,
                    ProcessingStage::Failed,
                    group_id
                ],
            )?;
            FailOutcome::Failed { retry_count }
        };
        finish_attempt(
            &tx,
            group_id,
            attempt,
            AttemptOutcome::Failed,
            Some(error),
            now,
        )?;
        tx.commit()?;
        Ok(outcome)
    }

    /// Records a failed attempt that was not the group's fault (its directory
    /// ran out of space): back to `pending` after `delay_s`, its retry budget
    /// untouched, the error kept on the group and the attempt.
    pub fn defer_attempt(
        &mut self,
        group_id: &str,
        attempt: u32,
        error: &str,
        delay_s: f64,
        now: f64,
    ) -> Result<(), QueueError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE ingest_queue SET state = ?1, error = ?2, last_update = ?3,
                 next_attempt_at = ?4, processing_stage = ?5
             WHERE group_id = ?6 AND state = ?7",
            params![
                GroupState::Pending,
                error,
                now,
                now + delay_s.max(0.0),
                ProcessingStage::RetryWait,
                group_id,
                GroupState::InProgress
            ],
        )?;
        if changed == 0 {
            return Err(wrong_state(&tx, group_id, GroupState::InProgress)?);
        }
        finish_attempt(
            &tx,
            group_id,
            attempt,
            AttemptOutcome::Failed,
            Some(error),
            now,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Puts a claimed group back to `pending` without counting a retry (a
    /// conversion interrupted by shutdown is not the group's fault).
    pub fn requeue(
        &mut self,
        group_id: &str,
        attempt: u32,
        reason: &str,
        now: f64,
    ) -> Result<(), QueueError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE ingest_queue SET state = ?1, last_update = ?2, next_attempt_at = NULL,
                 processing_stage = ?3
             WHERE group_id = ?4 AND state = ?5",
            params![
                GroupState::Pending,
                now,
                ProcessingStage::Requeued,
                group_id,
                GroupState::InProgress
            ],
        )?;
        finish_attempt(
            &tx,
            group_id,
            attempt,
            AttemptOutcome::Interrupted,
            Some(reason),
            now,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// At start: groups a crashed worker left `in_progress` go back to `pending`
    /// with `retry_count + 1`, except those whose attempt is a batch job in flight
    /// (see [`Queue::open_jobs`]). Returns their ids and the output paths they may
    /// have half-written.
    pub fn recover_in_progress(&mut self, now: f64) -> Result<Vec<String>, QueueError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stuck: Vec<String> = {
            let mut stmt = tx.prepare(&format!(
                "SELECT group_id FROM ingest_queue WHERE state = ?1 AND {NOT_A_JOB_IN_FLIGHT}"
            ))?;
            stmt.query_map([GroupState::InProgress], |row| row.get(0))?
                .collect::<Result<_, _>>()?
        };
        tx.execute(
            &format!(
                "UPDATE ingest_queue SET state = ?1, retry_count = retry_count + 1, last_update = ?2,
                     next_attempt_at = NULL, processing_stage = ?3, error = COALESCE(error, ?4)
                 WHERE state = ?5 AND {NOT_A_JOB_IN_FLIGHT}"
            ),
            params![
                GroupState::Pending,
                now,
                ProcessingStage::Recovered,
                format!("interrupted: {CRASH_REASON}"),
                GroupState::InProgress
            ],
        )?;
        tx.execute(
            "UPDATE group_attempts SET finished_at = ?1, outcome = ?2, error = ?3
             WHERE finished_at IS NULL AND job_state IS NULL",
            params![now, AttemptOutcome::Interrupted, CRASH_REASON],
        )?;
        tx.commit()?;
        Ok(stuck)
    }

    /// An operator's retry: a `failed` group goes back to `pending` with a fresh
    /// retry budget (its attempts stay in `group_attempts`).
    pub fn retry_failed(&mut self, group_id: &str, now: f64) -> Result<(), QueueError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let subbands: u32 = tx.query_row(
            "SELECT COUNT(*) FROM subband_files WHERE group_id = ?1",
            [group_id],
            |row| row.get(0),
        )?;
        let found: Option<(Option<u32>, Option<f64>)> = tx
            .query_row(
                "SELECT expected_subbands, inputs_removed_at FROM ingest_queue
                 WHERE group_id = ?1 AND state = ?2",
                params![group_id, GroupState::Failed],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let Some((expected, inputs_removed_at)) = found else {
            return Err(wrong_state(&tx, group_id, GroupState::Failed)?);
        };
        if let Some(removed_at) = inputs_removed_at {
            return Err(QueueError::InputsRemoved {
                group_id: group_id.to_string(),
                removed_at,
            });
        }
        // An incomplete group can only go back to collecting (its clock restarts).
        let complete = expected.is_none_or(|n| subbands >= n);
        let (state, stage) = if complete {
            (GroupState::Pending, ProcessingStage::RetryRequested)
        } else {
            (GroupState::Collecting, ProcessingStage::Collecting)
        };
        tx.execute(
            "UPDATE ingest_queue SET state = ?1, retry_count = 0, error = NULL, next_attempt_at = NULL,
                 last_update = ?2, received_at = CASE WHEN ?3 THEN ?2 ELSE received_at END,
                 processing_stage = ?4
             WHERE group_id = ?5",
            params![state, now, !complete, stage, group_id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The earliest time a pending group becomes due, if one is waiting on back-off.
    pub fn next_due_at(&self) -> Result<Option<f64>, QueueError> {
        Ok(self.conn.query_row(
            "SELECT MIN(next_attempt_at) FROM ingest_queue WHERE state = ?1",
            [GroupState::Pending],
            |row| row.get(0),
        )?)
    }
}

/// The oldest pending group that is due at `now`: (id, group_ts, retry_count).
fn next_due(conn: &Connection, now: f64) -> Result<Option<(String, Option<f64>, u32)>, QueueError> {
    Ok(conn
        .query_row(
            "SELECT group_id, group_ts, retry_count FROM ingest_queue
             WHERE state = ?1 AND (next_attempt_at IS NULL OR next_attempt_at <= ?2)
             ORDER BY group_ts, group_id LIMIT 1",
            params![GroupState::Pending, now],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?)
}

fn subband_indices(conn: &Connection, group_id: &str) -> Result<Vec<u32>, QueueError> {
    let mut stmt = conn.prepare("SELECT subband_idx FROM subband_files WHERE group_id = ?1")?;
    let rows = stmt.query_map([group_id], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn group_files(
    conn: &Connection,
    group_id: &str,
) -> Result<Vec<(u32, PathBuf)>, QueueError> {
    let mut stmt = conn.prepare(
        "SELECT subband_idx, path FROM subband_files WHERE group_id = ?1 ORDER BY subband_idx",
    )?;
    let rows = stmt.query_map([group_id], |row| {
        Ok((row.get(0)?, PathBuf::from(row.get::<_, String>(1)?)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn finish_attempt(
    conn: &Connection,
    group_id: &str,
    attempt: u32,
    outcome: AttemptOutcome,
    error: Option<&str>,
    now: f64,
) -> Result<(), QueueError> {
    conn.execute(
        "UPDATE group_attempts SET finished_at = ?1, outcome = ?2, error = ?3
         WHERE group_id = ?4 AND attempt = ?5",
        params![now, outcome, error, group_id, attempt],
    )?;
    Ok(())
}

fn wrong_state(
    conn: &Connection,
    group_id: &str,
    expected: GroupState,
) -> Result<QueueError, QueueError> {
    let state: Option<GroupState> = conn
        .query_row(
            "SELECT state FROM ingest_queue WHERE group_id = ?1",
            [group_id],
            |row| row.get(0),
        )
        .optional()?;
    Ok(match state {
        Some(state) => QueueError::WrongState {
            group_id: group_id.to_string(),
            state,
            expected,
        },
        None => QueueError::UnknownGroup(group_id.to_string()),
    })
}
