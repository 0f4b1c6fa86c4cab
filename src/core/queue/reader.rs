//! The read-only handle for the CLI and the API.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{
    BUSY_TIMEOUT, ClaimPause, GroupDetail, GroupFilter, GroupSummary, Heartbeat, JobsInFlight,
    LateFile, QueueError, QueueStats, RejectedFile, SCHEMA_VERSION, UnrecognisedFile, groups,
    stats, table_exists,
};

/// Read-only handle for the CLI and the API. Never writes; safe beside the worker.
pub struct QueueReader {
    pub(super) conn: Connection,
}

impl QueueReader {
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        if !path.exists() {
            return Err(QueueError::Missing(path.to_path_buf()));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(QueueError::NewerSchema {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Self { conn })
    }

    pub fn stats(&self, now: f64) -> Result<QueueStats, QueueError> {
        stats::stats(&self.conn, now)
    }

    pub fn groups(&self, filter: &GroupFilter) -> Result<Vec<GroupSummary>, QueueError> {
        groups::list_groups(&self.conn, filter)
    }

    pub fn group(&self, group_id: &str) -> Result<Option<GroupDetail>, QueueError> {
        groups::group_detail(&self.conn, group_id)
    }

    /// Batch jobs queued and running in the scheduler (the Slurm executor).
    pub fn jobs_in_flight(&self) -> Result<JobsInFlight, QueueError> {
        groups::jobs_in_flight(&self.conn)
    }

    /// The most recently seen unrecognised entries, newest first.
    pub fn unrecognised_files(&self, limit: u32) -> Result<Vec<UnrecognisedFile>, QueueError> {
        if !table_exists(&self.conn, "unrecognised_files")? {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare(
            "SELECT path, reason, first_seen_at, last_seen_at, size_bytes FROM unrecognised_files
             ORDER BY last_seen_at DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |row| {
            Ok(UnrecognisedFile {
                path: row.get(0)?,
                reason: row.get(1)?,
                first_seen_at: row.get(2)?,
                last_seen_at: row.get(3)?,
                size_bytes: row.get::<_, Option<i64>>(4)?.map(|s| s as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The most recent late subbands, newest first.
    pub fn late_files(&self, limit: u32) -> Result<Vec<LateFile>, QueueError> {
        if !table_exists(&self.conn, "late_files")? {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare(
            "SELECT path, group_id, subband_idx, group_state, seen_at FROM late_files
             ORDER BY seen_at DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |row| {
            Ok(LateFile {
                path: row.get(0)?,
                group_id: row.get(1)?,
                subband_idx: row.get(2)?,
                group_state: row.get(3)?,
                seen_at: row.get(4)?,
            })
        })?;
        rows.collect::<Result<_, _>>()
            .map_err(|err| QueueError::from(err).in_column("group_state"))
    }

    pub fn rejected_files(&self, limit: u32) -> Result<Vec<RejectedFile>, QueueError> {
        let mut stmt = self.conn.prepare(
            "SELECT path, reason, rejected_at, size_bytes FROM rejected_files
             ORDER BY rejected_at DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |row| {
            Ok(RejectedFile {
                path: row.get(0)?,
                reason: row.get(1)?,
                rejected_at: row.get(2)?,
                size_bytes: row.get::<_, Option<i64>>(3)?.map(|s| s as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn heartbeat(&self) -> Result<Option<Heartbeat>, QueueError> {
        if !table_exists(&self.conn, "worker_heartbeat")? {
            return Ok(None);
        }
        // A DB the worker has not migrated to schema 5 yet has no pause columns.
        let paused_columns: bool = self.conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('worker_heartbeat')
             WHERE name = 'claim_paused_since'",
            [],
            |row| row.get(0),
        )?;
        // ... and before schema 6 no scheduler column.
        let scheduler_column: bool = self.conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('worker_heartbeat')
             WHERE name = 'scheduler_unreachable_since'",
            [],
            |row| row.get(0),
        )?;
        let scheduler_unreachable_since: Option<f64> = if scheduler_column {
            self.conn
                .query_row(
                    "SELECT scheduler_unreachable_since FROM worker_heartbeat WHERE id = 1",
                    [],
                    |row| row.get(0),
                )
                .optional()?
                .flatten()
        } else {
            None
        };
        Ok(self
            .conn
            .query_row(
                if paused_columns {
                    "SELECT pid, started_at, heartbeat_at, version, claim_paused_dir,
                         claim_paused_reason, claim_paused_since
                     FROM worker_heartbeat WHERE id = 1"
                } else {
                    "SELECT pid, started_at, heartbeat_at, version, NULL, NULL, NULL
                     FROM worker_heartbeat WHERE id = 1"
                },
                [],
                |row| {
                    let paused: (Option<String>, Option<String>, Option<f64>) =
                        (row.get(4)?, row.get(5)?, row.get(6)?);
                    Ok(Heartbeat {
                        pid: row.get(0)?,
                        started_at: row.get(1)?,
                        heartbeat_at: row.get(2)?,
                        version: row.get(3)?,
                        claim_paused: match paused {
                            (Some(dir), Some(reason), Some(since)) => {
                                Some(ClaimPause { dir, reason, since })
                            }
                            _ => None,
                        },
                        scheduler_unreachable_since,
                    })
                },
            )
            .optional()?)
    }

    /// Total conversion times of groups completed since `since` (for histograms).
    pub fn completed_durations_since(&self, since: f64) -> Result<Vec<(String, f64)>, QueueError> {
        let mut stmt = self.conn.prepare(
            "SELECT group_id, total_time FROM performance_metrics
             WHERE recorded_at > ?1 AND total_time IS NOT NULL ORDER BY recorded_at",
        )?;
        let rows = stmt.query_map([since], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
