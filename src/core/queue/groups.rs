//! Listing groups and one group's details (read by both handles).

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Attempt, AttemptJob, GroupDetail, GroupFile, GroupFilter, GroupState, GroupSummary,
    JobsInFlight, QueueError, Timings, table_exists,
};

const SUMMARY_COLUMNS: &str =
    "q.group_id, q.state, q.received_at, q.last_update, q.expected_subbands,
     (SELECT COUNT(*) FROM subband_files f WHERE f.group_id = q.group_id), q.retry_count, q.error,
     q.processing_stage, q.next_attempt_at, q.started_at, q.completed_at, q.output_path";

/// The latest attempt's job (`a`), joined in the same query as the groups.
const JOB_COLUMNS: &str = "a.executor, a.job_id, a.job_state, a.job_node, a.job_exit_code,
     a.job_log_path, a.submitted_at";
const JOB_JOIN: &str = "LEFT JOIN group_attempts a ON a.group_id = q.group_id
     AND a.attempt = (SELECT MAX(b.attempt) FROM group_attempts b WHERE b.group_id = q.group_id)";
/// A DB before schema 6 has no job columns: the same shape, all NULL.
const NO_JOB_COLUMNS: &str = "NULL, NULL, NULL, NULL, NULL, NULL, NULL";

/// Whether the worker has migrated the DB to schema 6 (`group_attempts.job_*`).
fn has_job_columns(conn: &Connection) -> Result<bool, QueueError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('group_attempts') WHERE name = 'job_id'",
        [],
        |row| row.get(0),
    )?)
}

/// `SELECT <summary>, <job> FROM ingest_queue q <join>`, for this DB's schema.
fn summary_select(conn: &Connection) -> Result<String, QueueError> {
    Ok(if has_job_columns(conn)? {
        format!("SELECT {SUMMARY_COLUMNS}, {JOB_COLUMNS} FROM ingest_queue q {JOB_JOIN}")
    } else {
        format!("SELECT {SUMMARY_COLUMNS}, {NO_JOB_COLUMNS} FROM ingest_queue q")
    })
}

/// The job columns starting at `first`; `None` when the attempt ran no job.
fn job_from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Option<AttemptJob>> {
    let Some(executor) = row.get::<_, Option<String>>(first)? else {
        return Ok(None);
    };
    Ok(Some(AttemptJob {
        executor,
        job_id: row.get(first + 1)?,
        state: row.get(first + 2)?,
        node: row.get(first + 3)?,
        exit_code: row.get(first + 4)?,
        log_path: row.get(first + 5)?,
        submitted_at: row.get(first + 6)?,
    }))
}

fn summary_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<GroupSummary> {
    Ok(GroupSummary {
        group_id: row.get(0)?,
        state: row.get(1)?,
        received_at: row.get(2)?,
        last_update: row.get(3)?,
        expected_subbands: row.get(4)?,
        subbands: row.get(5)?,
        retry_count: row.get(6)?,
        error: row.get(7)?,
        processing_stage: row.get(8)?,
        next_attempt_at: row.get(9)?,
        started_at: row.get(10)?,
        completed_at: row.get(11)?,
        output_path: row.get(12)?,
        job: job_from_row(row, 13)?,
    })
}

pub(super) fn list_groups(
    conn: &Connection,
    filter: &GroupFilter,
) -> Result<Vec<GroupSummary>, QueueError> {
    let limit = filter.limit.unwrap_or(100).min(10_000);
    let state = filter.state.map(GroupState::as_str);
    let sql = format!(
        "{} WHERE (?1 IS NULL OR q.state = ?1) AND (?2 IS NULL OR q.group_id < ?2)
         ORDER BY q.group_id DESC LIMIT ?3",
        summary_select(conn)?
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![state, filter.before, limit], summary_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn group_detail(
    conn: &Connection,
    group_id: &str,
) -> Result<Option<GroupDetail>, QueueError> {
    let with_jobs = has_job_columns(conn)?;
    let sql = format!("{} WHERE q.group_id = ?1", summary_select(conn)?);
    let Some(summary) = conn
        .query_row(&sql, [group_id], summary_from_row)
        .optional()?
    else {
        return Ok(None);
    };
    let has_meta = table_exists(conn, "subband_meta")?;
    let files = {
        let sql = if has_meta {
            "SELECT f.subband_idx, f.path, m.size_bytes, m.meta_json FROM subband_files f
             LEFT JOIN subband_meta m ON m.path = f.path WHERE f.group_id = ?1 ORDER BY f.subband_idx"
        } else {
            "SELECT subband_idx, path, NULL, NULL FROM subband_files WHERE group_id = ?1 ORDER BY subband_idx"
        };
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map([group_id], |row| {
            let meta: Option<String> = row.get(3)?;
            Ok(GroupFile {
                subband_idx: row.get(0)?,
                path: row.get(1)?,
                size_bytes: row.get::<_, Option<i64>>(2)?.map(|s| s as u64),
                meta: meta.and_then(|m| serde_json::from_str(&m).ok()),
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let duplicates = if table_exists(conn, "duplicate_files")? {
        let mut stmt =
            conn.prepare("SELECT path FROM duplicate_files WHERE group_id = ?1 ORDER BY path")?;
        let rows = stmt.query_map([group_id], |row| row.get(0))?;
        rows.collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    let timings = conn
        .query_row(
            "SELECT load_time, phase_time, write_time, total_time, writer_type
             FROM performance_metrics WHERE group_id = ?1",
            [group_id],
            |row| {
                Ok(Timings {
                    load_time: row.get(0)?,
                    phase_time: row.get(1)?,
                    write_time: row.get(2)?,
                    total_time: row.get(3)?,
                    writer_type: row.get(4)?,
                })
            },
        )
        .optional()?;
    let attempts =
        if table_exists(conn, "group_attempts")? {
            let sql =
                format!(
            "SELECT attempt, started_at, finished_at, outcome, error, {} FROM group_attempts a
             WHERE group_id = ?1 ORDER BY attempt",
            if with_jobs { JOB_COLUMNS } else { NO_JOB_COLUMNS }
        );
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map([group_id], |row| {
                Ok(Attempt {
                    attempt: row.get(0)?,
                    started_at: row.get(1)?,
                    finished_at: row.get(2)?,
                    outcome: row.get(3)?,
                    error: row.get(4)?,
                    job: job_from_row(row, 5)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
    Ok(Some(GroupDetail {
        summary,
        files,
        duplicates,
        timings,
        attempts,
    }))
}

/// Batch jobs in flight: open attempts of `in_progress` groups that belong to an
/// executor, counted by whether Slurm runs them yet. One query.
pub(super) fn jobs_in_flight(conn: &Connection) -> Result<JobsInFlight, QueueError> {
    if !has_job_columns(conn)? {
        return Ok(JobsInFlight::default());
    }
    let (running, total): (i64, i64) = conn.query_row(
        "SELECT COALESCE(SUM(a.job_state IN ('RUNNING', 'COMPLETING')), 0), COUNT(*)
         FROM ingest_queue q JOIN group_attempts a ON a.group_id = q.group_id
         WHERE q.state = ?1 AND a.finished_at IS NULL AND a.executor IS NOT NULL",
        [GroupState::InProgress.as_str()],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    Ok(JobsInFlight {
        queued: u64::try_from(total - running).unwrap_or(0),
        running: u64::try_from(running).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{NewFile, Queue, QueueReader, RetryPolicy, group_timestamp_from_id};

    /// Issue 13: the groups list and a group's attempts carry the latest
    /// attempt's batch job, and the jobs in flight are counted per Slurm state.
    #[test]
    fn groups_carry_their_latest_attempts_job() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("q.sqlite3");
        let mut queue = Queue::open(&db).unwrap();
        let ids = [
            "2025-10-13T13:28:03",
            "2025-10-13T13:40:00",
            "2025-10-13T13:50:00",
        ];
        for group in ids {
            let ts = group_timestamp_from_id(group).unwrap();
            let file = NewFile {
                path: dir
                    .path()
                    .join(format!("{group}_sb00.hdf5"))
                    .display()
                    .to_string(),
                timestamp: ts,
                subband_idx: 0,
                size_bytes: Some(1),
                mtime: None,
                meta_json: None,
            };
            queue.register_file(&file, 1, 60.0, ts).unwrap();
        }
        let policy = RetryPolicy {
            max_retries: 2,
            backoff_s: 0.0,
            backoff_max_s: 0.0,
        };
        let first = queue.claim_next(1.0).unwrap().unwrap();
        queue
            .mark_submitting(&first.group_id, 1, "slurm", "/logs/1.log")
            .unwrap();
        queue
            .record_job_submitted(&first.group_id, 1, "41", "PENDING", 2.0)
            .unwrap();
        queue
            .record_job_state(&first.group_id, 1, "FAILED", Some("n2"), Some(1))
            .unwrap();
        queue
            .fail_attempt(&first.group_id, 1, "exit 1", &policy, 3.0)
            .unwrap();
        let again = queue.claim_next(4.0).unwrap().unwrap();
        assert_eq!(
            (again.group_id.as_str(), again.attempt),
            (first.group_id.as_str(), 2)
        );
        queue
            .mark_submitting(&again.group_id, 2, "slurm", "/logs/2.log")
            .unwrap();
        queue
            .record_job_submitted(&again.group_id, 2, "42", "PENDING", 5.0)
            .unwrap();
        queue
            .record_job_state(&again.group_id, 2, "RUNNING", Some("n3"), None)
            .unwrap();
        let waiting = queue.claim_next(6.0).unwrap().unwrap();
        queue
            .mark_submitting(&waiting.group_id, 1, "slurm", "/logs/3.log")
            .unwrap();
        queue
            .record_job_submitted(&waiting.group_id, 1, "43", "PENDING", 6.0)
            .unwrap();

        let reader = QueueReader::open(&db).unwrap();
        let groups = reader.groups(&GroupFilter::default()).unwrap();
        let job = |id: &str| {
            let group = groups.iter().find(|g| g.group_id == id).unwrap();
            group.job.clone()
        };
        let running = job(&again.group_id).unwrap();
        assert_eq!(running.job_id.as_deref(), Some("42"));
        assert_eq!(running.state.as_deref(), Some("RUNNING"));
        assert_eq!(running.node.as_deref(), Some("n3"));
        assert_eq!(running.log_path.as_deref(), Some("/logs/2.log"));
        assert_eq!(
            job(&waiting.group_id).unwrap().state.as_deref(),
            Some("PENDING")
        );
        let never_claimed = ids
            .iter()
            .find(|id| **id != again.group_id && **id != waiting.group_id);
        assert_eq!(job(never_claimed.unwrap()), None);

        let detail = reader.group(&again.group_id).unwrap().unwrap();
        assert_eq!(detail.summary.job, Some(running));
        let attempts: Vec<_> = detail
            .attempts
            .iter()
            .map(|a| a.job.clone().unwrap())
            .collect();
        assert_eq!(attempts[0].job_id.as_deref(), Some("41"));
        assert_eq!(
            (attempts[0].state.as_deref(), attempts[0].exit_code),
            (Some("FAILED"), Some(1))
        );
        assert_eq!(
            reader.jobs_in_flight().unwrap(),
            JobsInFlight {
                queued: 1,
                running: 1
            }
        );
    }
}
