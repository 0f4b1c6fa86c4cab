//! The inspection journal (`inspections`).

use rusqlite::{TransactionBehavior, params};

use super::{InspectionEntry, Queue, QueueError};

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
