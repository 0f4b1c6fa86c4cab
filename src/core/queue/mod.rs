//! The SQLite queue DB: schema-compatible with the original pipeline's
//! `ingest.sqlite3`, in WAL mode, with every state transition in one transaction.
//!
//! [`Queue`] is the worker's read-write handle (the worker is the only writer);
//! [`QueueReader`] is the read-only handle the CLI and the API use.

mod blocking;
pub mod schema;
pub mod writable;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

pub use blocking::{SharedQueue, open_shared, with_queue, with_reader};
pub use schema::SCHEMA_VERSION;

/// How long a connection waits for another's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue DB {0} does not exist (has the worker ever run?)")]
    Missing(PathBuf),
    #[error(
        "queue DB has schema version {found}, newer than this build supports ({supported}); upgrade contimg"
    )]
    NewerSchema { found: i64, supported: i64 },
    #[error("group {0} not found")]
    UnknownGroup(String),
    #[error("group {group_id} is {state}, expected {expected}")]
    WrongState {
        group_id: String,
        state: String,
        expected: String,
    },
    #[error("queue DB error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A queue call on the blocking pool panicked or was cancelled.
    #[error("queue task failed: {source}")]
    Task { source: tokio::task::JoinError },
    /// An earlier call panicked while holding the writer.
    #[error("queue lock poisoned by an earlier failed call")]
    Poisoned,
}

impl QueueError {
    /// The filesystem holding the queue DB is full: SQLite's "database or disk
    /// is full" (`SQLITE_FULL`), a shared-memory file it could not grow, or
    /// ENOSPC/EDQUOT on a file next to the DB. The worker pauses on these
    /// instead of exiting, since they heal when space returns.
    pub fn is_disk_full(&self) -> bool {
        match self {
            QueueError::Sqlite(rusqlite::Error::SqliteFailure(err, _)) => {
                err.code == rusqlite::ErrorCode::DiskFull
                    || err.extended_code == rusqlite::ffi::SQLITE_IOERR_SHMSIZE
            }
            QueueError::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(nix::libc::ENOSPC | nix::libc::EDQUOT)
            ),
            _ => false,
        }
    }
}

/// The states of a group, with the original pipeline's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupState {
    Collecting,
    Pending,
    InProgress,
    Completed,
    Failed,
}

impl GroupState {
    pub const ALL: [GroupState; 5] = [
        GroupState::Collecting,
        GroupState::Pending,
        GroupState::InProgress,
        GroupState::Completed,
        GroupState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Collecting => "collecting",
            GroupState::Pending => "pending",
            GroupState::InProgress => "in_progress",
            GroupState::Completed => "completed",
            GroupState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }
}

impl std::fmt::Display for GroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Seconds since the Unix epoch, as the queue DB stores times.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A group id is its earliest file's timestamp, `YYYY-MM-DDTHH:MM:SS`.
pub fn group_id_for(timestamp: f64) -> String {
    crate::names::format_timestamp(timestamp)
}

/// The Unix time a group id stands for (ids written by the original pipeline too).
pub fn group_timestamp_from_id(group_id: &str) -> Option<f64> {
    crate::names::parse_timestamp(group_id)
}

/// A subband file to register.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFile {
    pub path: String,
    /// Unix seconds of the timestamp in the file name.
    pub timestamp: f64,
    pub subband_idx: u32,
    pub size_bytes: Option<u64>,
    pub mtime: Option<f64>,
    /// Per-file metadata (e.g. UVH5 frequency/time ranges), JSON.
    pub meta_json: Option<String>,
}

/// What registering a file did.
#[derive(Debug, Clone, PartialEq)]
pub enum Registration {
    /// Added to a group; `state` is the group's state afterwards.
    Added {
        group_id: String,
        state: GroupState,
        subbands: u32,
    },
    /// The path was already registered (or rejected): nothing changed.
    AlreadyKnown,
    /// The group already holds this subband from another file.
    Duplicate { group_id: String, kept_path: String },
    /// The group was already closed (pending, converting, converted or failed for
    /// good): recorded in `late_files`, not attached.
    Late {
        group_id: String,
        group_state: GroupState,
    },
}

/// A group the worker claimed for conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedGroup {
    pub group_id: String,
    pub group_ts: f64,
    pub retry_count: u32,
    pub attempt: u32,
    /// (subband index, path), by subband index.
    pub files: Vec<(u32, PathBuf)>,
}

/// Timings of a successful conversion (`performance_metrics`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub load_time: Option<f64>,
    pub phase_time: Option<f64>,
    pub write_time: Option<f64>,
    pub total_time: Option<f64>,
    pub writer_type: Option<String>,
}

/// Retry schedule after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub backoff_s: f64,
    pub backoff_max_s: f64,
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1-based): backoff, doubled each time, capped.
    pub fn delay_for(&self, retry: u32) -> f64 {
        let factor = 2f64.powi(retry.saturating_sub(1).min(30) as i32);
        (self.backoff_s * factor).min(self.backoff_max_s)
    }
}

/// What a failed attempt led to.
#[derive(Debug, Clone, PartialEq)]
pub enum FailOutcome {
    Retrying {
        retry_count: u32,
        next_attempt_at: f64,
    },
    Failed {
        retry_count: u32,
    },
}

/// Counts by state, processing rate and a few ages; the shape of the API's `metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Every state is present, zero or not.
    pub counts: BTreeMap<String, u64>,
    pub completed_last_hour: u64,
    pub processing_rate_per_hour: f64,
    pub oldest_pending_ts: Option<f64>,
    pub last_completed_at: Option<f64>,
    pub rejected_files: u64,
    /// Entries of `input_dir` refused for their name, place or type.
    #[serde(default)]
    pub unrecognised_files: u64,
    /// Subbands that arrived after their group was closed.
    #[serde(default)]
    pub late_files: u64,
}

impl QueueStats {
    pub fn count(&self, state: GroupState) -> u64 {
        self.counts.get(state.as_str()).copied().unwrap_or(0)
    }

    /// `collecting 1, pending 3, in_progress 2, completed 1204, failed 2; 11.6 groups/h`
    pub fn summary_line(&self) -> String {
        let counts: Vec<String> = GroupState::ALL
            .iter()
            .map(|state| format!("{} {}", state.as_str(), self.count(*state)))
            .collect();
        format!(
            "{}; {:.1} groups/h",
            counts.join(", "),
            self.processing_rate_per_hour
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: String,
    pub received_at: f64,
    pub last_update: f64,
    pub expected_subbands: Option<u32>,
    pub subbands: u32,
    pub retry_count: u32,
    pub error: Option<String>,
    pub processing_stage: Option<String>,
    pub next_attempt_at: Option<f64>,
    pub started_at: Option<f64>,
    pub completed_at: Option<f64>,
    pub output_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupFile {
    pub subband_idx: u32,
    pub path: String,
    pub size_bytes: Option<u64>,
    /// Per-file metadata recorded at registration (UVH5 header summary), if any.
    pub meta: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    pub started_at: f64,
    pub finished_at: Option<f64>,
    pub outcome: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupDetail {
    #[serde(flatten)]
    pub summary: GroupSummary,
    pub files: Vec<GroupFile>,
    pub duplicates: Vec<String>,
    pub timings: Option<Timings>,
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedFile {
    pub path: String,
    pub reason: String,
    pub rejected_at: f64,
    pub size_bytes: Option<u64>,
}

/// An `input_dir` entry that is not a registrable subband file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnrecognisedFile {
    pub path: String,
    pub reason: String,
    pub first_seen_at: f64,
    pub last_seen_at: f64,
    pub size_bytes: Option<u64>,
}

/// A subband that arrived after its group was closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LateFile {
    pub path: String,
    pub group_id: String,
    pub subband_idx: u32,
    /// The group's state when the file arrived.
    pub group_state: String,
    pub seen_at: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub pid: u32,
    pub started_at: f64,
    pub heartbeat_at: f64,
    pub version: String,
}

/// Filter for listing groups, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupFilter {
    pub state: Option<GroupState>,
    pub limit: Option<u32>,
    /// Only groups whose id sorts before this one (keyset pagination).
    pub before: Option<String>,
}

/// The worker's read-write handle on the queue DB.
pub struct Queue {
    conn: Connection,
    path: PathBuf,
}

impl Queue {
    /// Opens (creating if needed) and migrates the queue DB, in WAL mode.
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| QueueError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // WAL + NORMAL survives a killed process at any moment; only an OS crash
        // can lose the last commits, and even then the DB stays consistent.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&mut conn)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a path is already registered or recorded as a duplicate.
    pub fn is_known_path(&self, path: &str) -> Result<bool, QueueError> {
        is_known_path(&self.conn, path)
    }

    /// Whether a path was rejected and has not changed since (same size and
    /// mtime). A rejected file that is rewritten gets inspected again.
    pub fn is_rejected_unchanged(
        &self,
        path: &str,
        size_bytes: Option<u64>,
        mtime: Option<f64>,
    ) -> Result<bool, QueueError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM rejected_files WHERE path = ?1
                 AND size_bytes IS ?2 AND mtime IS ?3)",
            params![path, size_bytes.map(|s| s as i64), mtime],
            |row| row.get(0),
        )?)
    }

    /// Registers one file (one transaction).
    pub fn register_file(
        &mut self,
        file: &NewFile,
        expected_subbands: u32,
        tolerance_s: f64,
        now: f64,
    ) -> Result<Registration, QueueError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let outcome = register_in_tx(&tx, file, expected_subbands, tolerance_s, now)?;
        tx.commit()?;
        Ok(outcome)
    }

    /// Registers many files in one transaction (the bootstrap scan).
    pub fn register_files(
        &mut self,
        files: &[NewFile],
        expected_subbands: u32,
        tolerance_s: f64,
        now: f64,
    ) -> Result<Vec<Registration>, QueueError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(files.len());
        for file in files {
            outcomes.push(register_in_tx(
                &tx,
                file,
                expected_subbands,
                tolerance_s,
                now,
            )?);
        }
        tx.commit()?;
        Ok(outcomes)
    }

    /// Records a file that will never be part of a group, with the reason.
    pub fn reject_file(
        &mut self,
        path: &str,
        reason: &str,
        size_bytes: Option<u64>,
        mtime: Option<f64>,
        now: f64,
    ) -> Result<(), QueueError> {
        self.conn.execute(
            "INSERT INTO rejected_files(path, reason, rejected_at, size_bytes, mtime)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(path) DO UPDATE SET reason = excluded.reason, rejected_at = excluded.rejected_at,
                 size_bytes = excluded.size_bytes, mtime = excluded.mtime",
            params![path, reason, now, size_bytes.map(|s| s as i64), mtime],
        )?;
        Ok(())
    }

    /// Records (or refreshes) `input_dir` entries that will not be registered, as
    /// (path, reason, size), in one transaction. Returns, per entry, whether the
    /// path is new to the table, so each is logged only once.
    pub fn record_unrecognised(
        &mut self,
        entries: &[(&str, &str, Option<u64>)],
        now: f64,
    ) -> Result<Vec<bool>, QueueError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut new = Vec::with_capacity(entries.len());
        for (path, reason, size_bytes) in entries {
            let known: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM unrecognised_files WHERE path = ?1)",
                [path],
                |row| row.get(0),
            )?;
            tx.execute(
                "INSERT INTO unrecognised_files(path, reason, first_seen_at, last_seen_at, size_bytes)
                 VALUES (?1, ?2, ?3, ?3, ?4)
                 ON CONFLICT(path) DO UPDATE SET reason = excluded.reason,
                     last_seen_at = excluded.last_seen_at, size_bytes = excluded.size_bytes",
                params![path, reason, now, size_bytes.map(|s| s as i64)],
            )?;
            new.push(!known);
        }
        tx.commit()?;
        Ok(new)
    }

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
                 WHERE state = 'collecting' AND received_at <= ?1",
            )?;
            stmt.query_map([now - timeout_s], |row| Ok((row.get(0)?, row.get(1)?)))?
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
                "UPDATE ingest_queue SET state = 'failed', error = ?1, last_update = ?2,
                     processing_stage = 'incomplete'
                 WHERE group_id = ?3",
                params![error, now, group_id],
            )?;
            failed.push((group_id, error));
        }
        tx.commit()?;
        Ok(failed)
    }

    /// Atomically claims the oldest pending group that is due.
    pub fn claim_next(&mut self, now: f64) -> Result<Option<ClaimedGroup>, QueueError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let candidate: Option<(String, Option<f64>, u32)> = tx
            .query_row(
                "SELECT group_id, group_ts, retry_count FROM ingest_queue
                 WHERE state = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?1)
                 ORDER BY group_ts, group_id LIMIT 1",
                [now],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?;
        let Some((group_id, group_ts, retry_count)) = candidate else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE ingest_queue SET state = 'in_progress', started_at = ?1, last_update = ?1,
                 processing_stage = 'converting'
             WHERE group_id = ?2",
            params![now, group_id],
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
            "UPDATE ingest_queue SET state = 'completed', last_update = ?1, completed_at = ?1,
                 error = NULL, processing_stage = 'completed', next_attempt_at = NULL, output_path = ?2
             WHERE group_id = ?3 AND state = 'in_progress'",
            params![now, output_path, group_id],
        )?;
        if changed == 0 {
            return Err(wrong_state(&tx, group_id, "in_progress")?);
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
        finish_attempt(&tx, group_id, attempt, "completed", None, now)?;
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
                "SELECT retry_count FROM ingest_queue WHERE group_id = ?1 AND state = 'in_progress'",
                [group_id],
                |row| row.get(0),
            )
            .optional()?;
        let Some(retry_count) = retry_count else {
            return Err(wrong_state(&tx, group_id, "in_progress")?);
        };
        let outcome = if retry_count < policy.max_retries {
            let retry_count = retry_count + 1;
            let next_attempt_at = now + policy.delay_for(retry_count);
            tx.execute(
                "UPDATE ingest_queue SET state = 'pending', retry_count = ?1, error = ?2, last_update = ?3,
                     next_attempt_at = ?4, processing_stage = 'retry_wait'
                 WHERE group_id = ?5",
                params![retry_count, error, now, next_attempt_at, group_id],
            )?;
            FailOutcome::Retrying {
                retry_count,
                next_attempt_at,
            }
        } else {
            tx.execute(
                "UPDATE ingest_queue SET state = 'failed', error = ?1, last_update = ?2,
                     next_attempt_at = NULL, processing_stage = 'failed'
                 WHERE group_id = ?3",
                params![error, now, group_id],
            )?;
            FailOutcome::Failed { retry_count }
        };
        finish_attempt(&tx, group_id, attempt, "failed", Some(error), now)?;
        tx.commit()?;
        Ok(outcome)
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
            "UPDATE ingest_queue SET state = 'pending', last_update = ?1, next_attempt_at = NULL,
                 processing_stage = 'requeued'
             WHERE group_id = ?2 AND state = 'in_progress'",
            params![now, group_id],
        )?;
        finish_attempt(&tx, group_id, attempt, "interrupted", Some(reason), now)?;
        tx.commit()?;
        Ok(())
    }

    /// At start: groups a crashed worker left `in_progress` go back to `pending`
    /// with `retry_count + 1`. Returns their ids and the output paths they may
    /// have half-written.
    pub fn recover_in_progress(&mut self, now: f64) -> Result<Vec<String>, QueueError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stuck: Vec<String> = {
            let mut stmt =
                tx.prepare("SELECT group_id FROM ingest_queue WHERE state = 'in_progress'")?;
            stmt.query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?
        };
        tx.execute(
            "UPDATE ingest_queue SET state = 'pending', retry_count = retry_count + 1, last_update = ?1,
                 next_attempt_at = NULL, processing_stage = 'recovered',
                 error = COALESCE(error, 'interrupted: the worker stopped during conversion')
             WHERE state = 'in_progress'",
            [now],
        )?;
        tx.execute(
            "UPDATE group_attempts SET finished_at = ?1, outcome = 'interrupted',
                 error = 'the worker stopped during conversion'
             WHERE finished_at IS NULL",
            [now],
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
        let expected: Option<Option<u32>> = tx
            .query_row(
                "SELECT expected_subbands FROM ingest_queue WHERE group_id = ?1 AND state = 'failed'",
                [group_id],
                |row| row.get(0),
            )
            .optional()?;
        let Some(expected) = expected else {
            return Err(wrong_state(&tx, group_id, "failed")?);
        };
        // An incomplete group can only go back to collecting (its clock restarts).
        let complete = expected.is_none_or(|n| subbands >= n);
        let (state, stage) = if complete {
            ("pending", "retry_requested")
        } else {
            ("collecting", "collecting")
        };
        tx.execute(
            "UPDATE ingest_queue SET state = ?1, retry_count = 0, error = NULL, next_attempt_at = NULL,
                 last_update = ?2, received_at = CASE WHEN ?1 = 'collecting' THEN ?2 ELSE received_at END,
                 processing_stage = ?3
             WHERE group_id = ?4",
            params![state, now, stage, group_id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The earliest time a pending group becomes due, if one is waiting on back-off.
    pub fn next_due_at(&self) -> Result<Option<f64>, QueueError> {
        Ok(self.conn.query_row(
            "SELECT MIN(next_attempt_at) FROM ingest_queue WHERE state = 'pending'",
            [],
            |row| row.get(0),
        )?)
    }

    /// Records that the worker is alive (read by the API as `last_heartbeat`).
    pub fn heartbeat(&mut self, pid: u32, started_at: f64, now: f64) -> Result<(), QueueError> {
        self.conn.execute(
            "INSERT INTO worker_heartbeat(id, pid, started_at, heartbeat_at, version) VALUES (1, ?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET pid = excluded.pid, started_at = excluded.started_at,
                 heartbeat_at = excluded.heartbeat_at, version = excluded.version",
            params![pid, started_at, now, env!("CARGO_PKG_VERSION")],
        )?;
        Ok(())
    }

    pub fn stats(&self, now: f64) -> Result<QueueStats, QueueError> {
        stats(&self.conn, now)
    }

    pub fn group(&self, group_id: &str) -> Result<Option<GroupDetail>, QueueError> {
        group_detail(&self.conn, group_id)
    }

    pub fn groups(&self, filter: &GroupFilter) -> Result<Vec<GroupSummary>, QueueError> {
        list_groups(&self.conn, filter)
    }
}

/// A file handed to a validator, as journalled in `inspections`.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectionEntry {
    pub path: String,
    pub size_bytes: Option<u64>,
    pub mtime: Option<f64>,
}

/// The inspection journal: a file is recorded before a validator opens it and
/// cleared when the validator answers, so an entry left at start-up names a file
/// that was being inspected when the worker died.
impl Queue {
    /// Clears `finished` and records `starting`, in one transaction.
    pub fn step_inspections(
        &mut self,
        finished: Option<&str>,
        starting: Option<&InspectionEntry>,
        worker_pid: u32,
        now: f64,
    ) -> Result<(), QueueError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(path) = finished {
            tx.execute("DELETE FROM inspections WHERE path = ?1", [path])?;
        }
        if let Some(entry) = starting {
            tx.execute(
                "INSERT INTO inspections(path, size_bytes, mtime, started_at, worker_pid)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(path) DO UPDATE SET size_bytes = excluded.size_bytes,
                     mtime = excluded.mtime, started_at = excluded.started_at,
                     worker_pid = excluded.worker_pid",
                params![
                    entry.path,
                    entry.size_bytes.map(|s| s as i64),
                    entry.mtime,
                    now,
                    worker_pid
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Files still journalled (read at start-up, before anything is inspected).
    pub fn interrupted_inspections(&self) -> Result<Vec<InspectionEntry>, QueueError> {
        let mut stmt = self
            .conn
            .prepare("SELECT path, size_bytes, mtime FROM inspections ORDER BY started_at")?;
        let rows = stmt.query_map([], |row| {
            Ok(InspectionEntry {
                path: row.get(0)?,
                size_bytes: row.get::<_, Option<i64>>(1)?.map(|s| s as u64),
                mtime: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Rejects every journalled file with `reason` (keeping the size and mtime it
    /// had when it was inspected, so only a rewritten file is looked at again), then
    /// clears the journal. Idempotent if interrupted. Returns what was rejected.
    pub fn reject_interrupted_inspections(
        &mut self,
        reason: &str,
        now: f64,
    ) -> Result<Vec<InspectionEntry>, QueueError> {
        let entries = self.interrupted_inspections()?;
        for entry in &entries {
            self.reject_file(&entry.path, reason, entry.size_bytes, entry.mtime, now)?;
        }
        self.conn.execute("DELETE FROM inspections", [])?;
        Ok(entries)
    }
}

/// Read-only handle for the CLI and the API. Never writes; safe beside the worker.
pub struct QueueReader {
    conn: Connection,
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
        stats(&self.conn, now)
    }

    pub fn groups(&self, filter: &GroupFilter) -> Result<Vec<GroupSummary>, QueueError> {
        list_groups(&self.conn, filter)
    }

    pub fn group(&self, group_id: &str) -> Result<Option<GroupDetail>, QueueError> {
        group_detail(&self.conn, group_id)
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
        Ok(rows.collect::<Result<_, _>>()?)
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
        Ok(self
            .conn
            .query_row(
                "SELECT pid, started_at, heartbeat_at, version FROM worker_heartbeat WHERE id = 1",
                [],
                |row| {
                    Ok(Heartbeat {
                        pid: row.get(0)?,
                        started_at: row.get(1)?,
                        heartbeat_at: row.get(2)?,
                        version: row.get(3)?,
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

/// Asks the worker (the only writer) to retry a failed group: a request file in
/// `<state_dir>/requests/retry/`, picked up within one worker poll interval.
pub fn request_retry(state_dir: &Path, group_id: &str) -> Result<PathBuf, QueueError> {
    if group_id.is_empty() || group_id.contains('/') || group_id.starts_with('.') {
        return Err(QueueError::UnknownGroup(group_id.to_string()));
    }
    let dir = retry_request_dir(state_dir);
    std::fs::create_dir_all(&dir).map_err(|source| QueueError::Io {
        path: dir.clone(),
        source,
    })?;
    let path = dir.join(group_id);
    std::fs::write(&path, b"").map_err(|source| QueueError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

pub fn retry_request_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("requests").join("retry")
}

fn register_in_tx(
    tx: &rusqlite::Transaction<'_>,
    file: &NewFile,
    expected_subbands: u32,
    tolerance_s: f64,
    now: f64,
) -> Result<Registration, QueueError> {
    if is_known_path(tx, &file.path)? {
        return Ok(Registration::AlreadyKnown);
    }
    // A file rejected earlier and since rewritten correctly is no longer rejected.
    tx.execute("DELETE FROM rejected_files WHERE path = ?1", [&file.path])?;
    // Nor unrecognised, if it was refused under other rules (expected_subbands).
    tx.execute(
        "DELETE FROM unrecognised_files WHERE path = ?1",
        [&file.path],
    )?;
    let nearest: Option<(String, f64, String)> = tx
        .query_row(
            "SELECT group_id, group_ts, state FROM ingest_queue
             WHERE group_ts BETWEEN ?1 AND ?2
             ORDER BY ABS(group_ts - ?3), group_ts LIMIT 1",
            params![
                file.timestamp - tolerance_s,
                file.timestamp + tolerance_s,
                file.timestamp
            ],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;

    let (group_id, group_state) = match nearest {
        Some((group_id, group_ts, state)) => {
            // The id is the earliest timestamp: an earlier file renames a group
            // that is still collecting.
            if file.timestamp.floor() < group_ts.floor() && state == "collecting" {
                let new_id = group_id_for(file.timestamp);
                if new_id != group_id {
                    tx.execute(
                        "UPDATE ingest_queue SET group_id = ?1, group_ts = ?2 WHERE group_id = ?3",
                        params![new_id, file.timestamp.floor(), group_id],
                    )?;
                    tx.execute(
                        "UPDATE subband_files SET group_id = ?1 WHERE group_id = ?2",
                        params![new_id, group_id],
                    )?;
                    tx.execute(
                        "UPDATE duplicate_files SET group_id = ?1 WHERE group_id = ?2",
                        params![new_id, group_id],
                    )?;
                }
                (new_id, state)
            } else {
                (group_id, state)
            }
        }
        None => {
            let group_id = group_id_for(file.timestamp);
            tx.execute(
                "INSERT INTO ingest_queue(group_id, state, received_at, last_update, expected_subbands,
                     retry_count, processing_stage, chunk_minutes, group_ts)
                 VALUES (?1, 'collecting', ?2, ?2, ?3, 0, 'collecting', NULL, ?4)",
                params![group_id, now, expected_subbands, file.timestamp.floor()],
            )?;
            (group_id, GroupState::Collecting.as_str().to_string())
        }
    };

    let kept: Option<String> = tx
        .query_row(
            "SELECT path FROM subband_files WHERE group_id = ?1 AND subband_idx = ?2",
            params![group_id, file.subband_idx],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(kept_path) = kept {
        tx.execute(
            "INSERT OR IGNORE INTO duplicate_files(path, group_id, subband_idx, kept_path, seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![file.path, group_id, file.subband_idx, kept_path, now],
        )?;
        return Ok(Registration::Duplicate {
            group_id,
            kept_path,
        });
    }
    // A closed group never takes another file: it was (or is being) converted
    // without it. Only a group that timed out incomplete waits for stragglers.
    let open = group_state == "collecting"
        || (group_state == "failed" && is_incomplete_failure(tx, &group_id)?);
    if !open {
        tx.execute(
            "INSERT OR IGNORE INTO late_files(path, group_id, subband_idx, group_state, seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![file.path, group_id, file.subband_idx, group_state, now],
        )?;
        return Ok(Registration::Late {
            group_id,
            group_state: GroupState::parse(&group_state).unwrap_or(GroupState::Completed),
        });
    }

    tx.execute(
        "INSERT INTO subband_files(group_id, subband_idx, path) VALUES (?1, ?2, ?3)",
        params![group_id, file.subband_idx, file.path],
    )?;
    if file.meta_json.is_some() || file.size_bytes.is_some() {
        tx.execute(
            "INSERT OR REPLACE INTO subband_meta(path, size_bytes, mtime, meta_json) VALUES (?1, ?2, ?3, ?4)",
            params![file.path, file.size_bytes.map(|s| s as i64), file.mtime, file.meta_json],
        )?;
    }
    let (state, expected): (String, Option<u32>) = tx.query_row(
        "SELECT state, expected_subbands FROM ingest_queue WHERE group_id = ?1",
        [&group_id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let subbands: u32 = tx.query_row(
        "SELECT COUNT(*) FROM subband_files WHERE group_id = ?1",
        [&group_id],
        |row| row.get(0),
    )?;
    let expected = expected.unwrap_or(expected_subbands);
    let complete = subbands >= expected;
    // A group that timed out incomplete comes back when its last file finally arrives.
    let reopen = state == "failed" && complete && is_incomplete_failure(tx, &group_id)?;
    let new_state = if (state == "collecting" || reopen) && complete {
        GroupState::Pending
    } else {
        GroupState::parse(&state).unwrap_or(GroupState::Collecting)
    };
    tx.execute(
        "UPDATE ingest_queue SET state = ?1, last_update = ?2,
             processing_stage = CASE WHEN ?1 = 'pending' AND state != 'pending' THEN 'queued' ELSE processing_stage END,
             error = CASE WHEN ?1 = 'pending' AND state = 'failed' THEN NULL ELSE error END
         WHERE group_id = ?3",
        params![new_state.as_str(), now, group_id],
    )?;
    Ok(Registration::Added {
        group_id,
        state: new_state,
        subbands,
    })
}

fn is_incomplete_failure(conn: &Connection, group_id: &str) -> Result<bool, QueueError> {
    let stage: Option<String> = conn.query_row(
        "SELECT processing_stage FROM ingest_queue WHERE group_id = ?1",
        [group_id],
        |row| row.get(0),
    )?;
    Ok(stage.as_deref() == Some("incomplete"))
}

fn is_known_path(conn: &Connection, path: &str) -> Result<bool, QueueError> {
    Ok(conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM subband_files WHERE path = ?1)
             OR EXISTS(SELECT 1 FROM duplicate_files WHERE path = ?1)
             OR EXISTS(SELECT 1 FROM late_files WHERE path = ?1)",
        [path],
        |row| row.get(0),
    )?)
}

fn subband_indices(conn: &Connection, group_id: &str) -> Result<Vec<u32>, QueueError> {
    let mut stmt = conn.prepare("SELECT subband_idx FROM subband_files WHERE group_id = ?1")?;
    let rows = stmt.query_map([group_id], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn group_files(conn: &Connection, group_id: &str) -> Result<Vec<(u32, PathBuf)>, QueueError> {
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
    outcome: &str,
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
    expected: &str,
) -> Result<QueueError, QueueError> {
    let state: Option<String> = conn
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
            expected: expected.to_string(),
        },
        None => QueueError::UnknownGroup(group_id.to_string()),
    })
}

fn table_exists(conn: &Connection, table: &str) -> Result<bool, QueueError> {
    Ok(conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [table],
        |row| row.get(0),
    )?)
}

fn stats(conn: &Connection, now: f64) -> Result<QueueStats, QueueError> {
    let mut counts: BTreeMap<String, u64> = GroupState::ALL
        .iter()
        .map(|state| (state.as_str().to_string(), 0))
        .collect();
    // Counts come from the trigger-maintained table: O(states), not O(groups).
    if table_exists(conn, "queue_state_counts")? {
        let mut stmt = conn.prepare_cached("SELECT state, n FROM queue_state_counts")?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (state, n) = row?;
            counts.insert(state, n.max(0) as u64);
        }
    } else {
        let mut stmt =
            conn.prepare_cached("SELECT state, COUNT(*) FROM ingest_queue GROUP BY state")?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (state, n) = row?;
            counts.insert(state, n.max(0) as u64);
        }
    }
    let completed_last_hour: u64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM ingest_queue WHERE state = 'completed' AND last_update >= ?1",
        )?
        .query_row([now - 3600.0], |row| row.get::<_, i64>(0))?
        .max(0) as u64;
    let oldest_pending_ts: Option<f64> = conn
        .prepare_cached("SELECT MIN(group_ts) FROM ingest_queue WHERE state = 'pending'")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .or_else(|_| {
            conn.query_row(
                "SELECT MIN(received_at) FROM ingest_queue WHERE state = 'pending'",
                [],
                |row| row.get(0),
            )
        })?;
    let last_completed_at: Option<f64> = conn
        .prepare_cached("SELECT MAX(last_update) FROM ingest_queue WHERE state = 'completed'")?
        .query_row([], |row| row.get(0))?;
    let rejected_files = if table_exists(conn, "rejected_files")? {
        conn.query_row("SELECT COUNT(*) FROM rejected_files", [], |row| {
            row.get::<_, i64>(0)
        })?
        .max(0) as u64
    } else {
        0
    };
    Ok(QueueStats {
        counts,
        completed_last_hour,
        processing_rate_per_hour: completed_last_hour as f64,
        oldest_pending_ts,
        last_completed_at,
        rejected_files,
        unrecognised_files: count_rows(conn, "unrecognised_files")?,
        late_files: count_rows(conn, "late_files")?,
    })
}

/// Rows of a bookkeeping table; 0 when a DB from before its migration lacks it.
fn count_rows(conn: &Connection, table: &str) -> Result<u64, QueueError> {
    if !table_exists(conn, table)? {
        return Ok(0);
    }
    let n: i64 = conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
        row.get(0)
    })?;
    Ok(n.max(0) as u64)
}

const SUMMARY_COLUMNS: &str =
    "q.group_id, q.state, q.received_at, q.last_update, q.expected_subbands,
     (SELECT COUNT(*) FROM subband_files f WHERE f.group_id = q.group_id), q.retry_count, q.error,
     q.processing_stage, q.next_attempt_at, q.started_at, q.completed_at, q.output_path";

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
    })
}

fn list_groups(conn: &Connection, filter: &GroupFilter) -> Result<Vec<GroupSummary>, QueueError> {
    let limit = filter.limit.unwrap_or(100).min(10_000);
    let state = filter.state.map(GroupState::as_str);
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM ingest_queue q
         WHERE (?1 IS NULL OR q.state = ?1) AND (?2 IS NULL OR q.group_id < ?2)
         ORDER BY q.group_id DESC LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![state, filter.before, limit], summary_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn group_detail(conn: &Connection, group_id: &str) -> Result<Option<GroupDetail>, QueueError> {
    let sql = format!("SELECT {SUMMARY_COLUMNS} FROM ingest_queue q WHERE q.group_id = ?1");
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
    let attempts = if table_exists(conn, "group_attempts")? {
        let mut stmt = conn.prepare(
            "SELECT attempt, started_at, finished_at, outcome, error FROM group_attempts
             WHERE group_id = ?1 ORDER BY attempt",
        )?;
        let rows = stmt.query_map([group_id], |row| {
            Ok(Attempt {
                attempt: row.get(0)?,
                started_at: row.get(1)?,
                finished_at: row.get(2)?,
                outcome: row.get(3)?,
                error: row.get(4)?,
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

#[cfg(test)]
mod tests;
