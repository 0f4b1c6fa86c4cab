//! The worker's read-write handle: opening and migrating the DB, registering and
//! rejecting files, the heartbeat.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, TransactionBehavior, params};

use super::register::{is_known_path, register_in_tx};
use super::{
    BUSY_TIMEOUT, ClaimPause, GroupDetail, GroupFilter, GroupSummary, NewFile, QueueError,
    QueueStats, Registration, groups, schema, stats,
};

/// The worker's read-write handle on the queue DB.
pub struct Queue {
    pub(super) conn: Connection,
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

    /// Records why the worker stopped claiming conversions, or (`None`) that it
    /// claims again. Written on each change, read by the API and the CLI.
    pub fn set_claim_pause(&mut self, pause: Option<&ClaimPause>) -> Result<(), QueueError> {
        self.conn.execute(
            "UPDATE worker_heartbeat SET claim_paused_dir = ?1, claim_paused_reason = ?2,
                 claim_paused_since = ?3
             WHERE id = 1",
            params![
                pause.map(|p| p.dir.as_str()),
                pause.map(|p| p.reason.as_str()),
                pause.map(|p| p.since)
            ],
        )?;
        Ok(())
    }

    pub fn stats(&self, now: f64) -> Result<QueueStats, QueueError> {
        stats::stats(&self.conn, now)
    }

    pub fn group(&self, group_id: &str) -> Result<Option<GroupDetail>, QueueError> {
        groups::group_detail(&self.conn, group_id)
    }

    pub fn groups(&self, filter: &GroupFilter) -> Result<Vec<GroupSummary>, QueueError> {
        groups::list_groups(&self.conn, filter)
    }
}
