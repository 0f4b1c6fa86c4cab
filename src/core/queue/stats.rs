//! Counts by state and the ages the health verdict and the dashboard use.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::retention::{RemovalTotal, removal_totals};
use super::{GroupState, QueueError, RemovalKind, table_exists};

/// Counts by state, processing rate and a few ages; the shape of the API's `metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// Files and bytes retention has deleted or archived so far, per kind
    /// (kept by a trigger: O(kinds) to read).
    #[serde(default)]
    pub removed: BTreeMap<RemovalKind, RemovalTotal>,
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

pub(super) fn stats(conn: &Connection, now: f64) -> Result<QueueStats, QueueError> {
    let mut counts: BTreeMap<String, u64> = GroupState::ALL
        .iter()
        .map(|state| (state.as_str().to_string(), 0))
        .collect();
    // Counts come from the trigger-maintained table: O(states), not O(groups).
    // A count left at 0 names no group, so it cannot hold an unknown state.
    let count_sql = if table_exists(conn, "queue_state_counts")? {
        "SELECT state, n FROM queue_state_counts WHERE n > 0"
    } else {
        "SELECT state, COUNT(*) FROM ingest_queue GROUP BY state"
    };
    let mut stmt = conn.prepare_cached(count_sql)?;
    let rows = stmt.query_map([], |row| {
        Ok((row.get::<_, GroupState>(0)?, row.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (state, n) = row?;
        counts.insert(state.as_str().to_string(), n.max(0) as u64);
    }
    let completed_last_hour: u64 = conn
        .prepare_cached("SELECT COUNT(*) FROM ingest_queue WHERE state = ?1 AND last_update >= ?2")?
        .query_row(params![GroupState::Completed, now - 3600.0], |row| {
            row.get::<_, i64>(0)
        })?
        .max(0) as u64;
    let oldest_pending_ts: Option<f64> = conn
        .prepare_cached("SELECT MIN(group_ts) FROM ingest_queue WHERE state = ?1")
        .and_then(|mut stmt| stmt.query_row([GroupState::Pending], |row| row.get(0)))
        .or_else(|_| {
            conn.query_row(
                "SELECT MIN(received_at) FROM ingest_queue WHERE state = ?1",
                [GroupState::Pending],
                |row| row.get(0),
            )
        })?;
    let last_completed_at: Option<f64> = conn
        .prepare_cached("SELECT MAX(last_update) FROM ingest_queue WHERE state = ?1")?
        .query_row([GroupState::Completed], |row| row.get(0))?;
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
        removed: removal_totals(conn)?,
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
