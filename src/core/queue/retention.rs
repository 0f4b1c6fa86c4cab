//! The queue DB side of retention: which groups' inputs and outputs are due,
//! the rule re-checked inside the transaction that records a removal, and the
//! record itself (`removals`, with per-kind totals kept by a trigger); and
//! for stray inputs (files recorded in `duplicate_files`, `late_files`,
//! `rejected_files`, `unrecognised_files`) and a group's Slurm job logs
//! (`group_attempts.job_log_path` of ended attempts), which need no new column:
//! a removed stray's record is deleted, a group's logs go when its inputs do.
//!
//! Due groups come from one indexed range query per final state
//! (`idx_ingest_queue_retention` is partial on `inputs_removed_at IS NULL`, so a
//! swept group leaves it and months of history cost nothing per sweep).

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::{GroupState, Queue, QueueError, QueueReader, RemovalAction, RemovalKind, table_exists};

/// The times before which a group's files are due, from the config's ages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetentionCutoffs {
    /// Inputs of groups completed at or before this are due.
    pub completed_inputs: f64,
    /// Inputs of groups that failed (last updated) at or before this are due.
    pub failed_inputs: f64,
    /// Outputs of groups completed at or before this are due; `None`: never.
    pub outputs: Option<f64>,
}

impl RetentionCutoffs {
    pub fn new(
        now: f64,
        retain_input_hours: f64,
        retain_failed_days: f64,
        retain_output_days: Option<f64>,
    ) -> Self {
        Self {
            completed_inputs: now - retain_input_hours * 3600.0,
            failed_inputs: now - retain_failed_days * 86_400.0,
            outputs: retain_output_days.map(|days| now - days * 86_400.0),
        }
    }
}

/// A group whose inputs are due, with its registered subband paths.
#[derive(Debug, Clone, PartialEq)]
pub struct DueInputs {
    pub group_id: String,
    pub state: GroupState,
    pub files: Vec<String>,
}

/// A completed group whose output is due.
#[derive(Debug, Clone, PartialEq)]
pub struct DueOutput {
    pub group_id: String,
    pub output_path: String,
}

/// A group that is not in a final state (its files are never removed).
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveGroup {
    pub group_id: String,
    pub state: GroupState,
    /// When its current conversion started (`in_progress` only).
    pub started_at: Option<f64>,
}

/// One removal (or a file left in place with the reason) as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Removal {
    pub group_id: Option<String>,
    pub path: String,
    pub kind: RemovalKind,
    pub action: RemovalAction,
    pub archived_to: Option<String>,
    pub bytes: u64,
    pub reason: String,
}

/// Files and bytes removed so far, per kind (`contimg_retention_*_total`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovalTotal {
    pub files: u64,
    pub bytes: u64,
}

/// The due rule for one group's inputs, shared by the listing and the
/// in-transaction re-check so both judge by exactly the same predicate.
const INPUTS_DUE: &str = "inputs_removed_at IS NULL AND state = ?1
     AND COALESCE(completed_at, last_update) <= ?2";

fn due_inputs(conn: &Connection, cutoffs: &RetentionCutoffs) -> Result<Vec<DueInputs>, QueueError> {
    // LEFT JOIN: a group with no file rows is still marked swept.
    let sql = format!(
        "SELECT q.group_id, q.state, f.path FROM ingest_queue AS q
         LEFT JOIN subband_files AS f ON f.group_id = q.group_id
         WHERE q.{}",
        INPUTS_DUE.replace("AND state", "AND q.state")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut due: Vec<DueInputs> = Vec::new();
    for (state, cutoff) in [
        (GroupState::Completed, cutoffs.completed_inputs),
        (GroupState::Failed, cutoffs.failed_inputs),
    ] {
        let rows = stmt.query_map(params![state, cutoff], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, GroupState>(1)?,
                row.get::<_, Option<String>>(2)?,
            ))
        })?;
        for row in rows {
            let (group_id, state, path) =
                row.map_err(|e| QueueError::from(e).in_column("state"))?;
            // The join yields one group's files together.
            let same_group = due.last().is_some_and(|last| last.group_id == group_id);
            if !same_group {
                due.push(DueInputs {
                    group_id,
                    state,
                    files: Vec::new(),
                });
            }
            if let (Some(path), Some(last)) = (path, due.last_mut()) {
                last.files.push(path);
            }
        }
    }
    Ok(due)
}

/// Where a paged listing of due inputs stands: the state being listed and
/// the index key (end time, rowid) of the last group returned.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DuePage {
    state: usize,
    after: Option<(f64, i64)>,
}

/// The states whose inputs retention removes, in listing order.
const FINAL_STATES: [GroupState; 2] = [GroupState::Completed, GroupState::Failed];

/// Up to `limit` due groups after `page`, in index order (keyset: a group
/// left unswept because a file could not be removed is not listed again by
/// the same sweep). Empty when every due group was listed.
fn due_inputs_page(
    conn: &Connection,
    cutoffs: &RetentionCutoffs,
    page: &mut DuePage,
    limit: usize,
) -> Result<Vec<DueInputs>, QueueError> {
    let sql = format!(
        "SELECT rowid, group_id, COALESCE(completed_at, last_update) FROM ingest_queue
         WHERE {INPUTS_DUE}
             AND (COALESCE(completed_at, last_update), rowid) > (?3, ?4)
         ORDER BY COALESCE(completed_at, last_update), rowid LIMIT ?5"
    );
    let mut groups = conn.prepare_cached(&sql)?;
    let mut files = conn.prepare_cached(
        "SELECT path FROM subband_files WHERE group_id = ?1 ORDER BY subband_idx",
    )?;
    while let Some(state) = FINAL_STATES.get(page.state).copied() {
        let cutoff = match state {
            GroupState::Failed => cutoffs.failed_inputs,
            _ => cutoffs.completed_inputs,
        };
        let (after_t, after_rowid) = page.after.unwrap_or((f64::NEG_INFINITY, i64::MIN));
        let rows: Vec<(i64, String, f64)> = groups
            .query_map(
                params![state, cutoff, after_t, after_rowid, limit as i64],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )?
            .collect::<Result<_, _>>()?;
        let Some(&(rowid, _, t)) = rows.last() else {
            *page = DuePage {
                state: page.state + 1,
                after: None,
            };
            continue;
        };
        page.after = Some((t, rowid));
        let mut due = Vec::with_capacity(rows.len());
        for (_, group_id, _) in rows {
            let paths = files
                .query_map([&group_id], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            due.push(DueInputs {
                group_id,
                state,
                files: paths,
            });
        }
        return Ok(due);
    }
    Ok(Vec::new())
}

fn due_outputs(conn: &Connection, before: f64) -> Result<Vec<DueOutput>, QueueError> {
    let mut stmt = conn.prepare_cached(
        "SELECT group_id, output_path FROM ingest_queue
         WHERE output_removed_at IS NULL AND output_path IS NOT NULL
             AND state = ?1 AND completed_at <= ?2",
    )?;
    let rows = stmt.query_map(params![GroupState::Completed, before], |row| {
        Ok(DueOutput {
            group_id: row.get(0)?,
            output_path: row.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn active_groups(conn: &Connection) -> Result<Vec<ActiveGroup>, QueueError> {
    let mut stmt = conn.prepare_cached(
        "SELECT group_id, state, started_at FROM ingest_queue WHERE state IN (?1, ?2, ?3)",
    )?;
    let rows = stmt.query_map(
        params![
            GroupState::Collecting,
            GroupState::Pending,
            GroupState::InProgress
        ],
        |row| {
            let state: GroupState = row.get(1)?;
            Ok(ActiveGroup {
                group_id: row.get(0)?,
                started_at: if state == GroupState::InProgress {
                    row.get(2)?
                } else {
                    None
                },
                state,
            })
        },
    )?;
    rows.collect::<Result<_, _>>()
        .map_err(|e| QueueError::from(e).in_column("state"))
}

pub(super) fn removal_totals(
    conn: &Connection,
) -> Result<BTreeMap<RemovalKind, RemovalTotal>, QueueError> {
    let mut totals = BTreeMap::new();
    if !table_exists(conn, "removal_totals")? {
        return Ok(totals);
    }
    let mut stmt = conn.prepare_cached("SELECT kind, files, bytes FROM removal_totals")?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, RemovalKind>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (kind, files, bytes) = row.map_err(|e| QueueError::from(e).in_column("kind"))?;
        totals.insert(
            kind,
            RemovalTotal {
                files: files.max(0) as u64,
                bytes: bytes.max(0) as u64,
            },
        );
    }
    Ok(totals)
}

impl QueueReader {
    /// Groups whose inputs are due under `cutoffs` (what a dry run lists).
    pub fn retention_due_inputs(
        &self,
        cutoffs: &RetentionCutoffs,
    ) -> Result<Vec<DueInputs>, QueueError> {
        due_inputs(&self.conn, cutoffs)
    }

    pub fn retention_due_outputs(&self, before: f64) -> Result<Vec<DueOutput>, QueueError> {
        due_outputs(&self.conn, before)
    }

    pub fn active_groups(&self) -> Result<Vec<ActiveGroup>, QueueError> {
        active_groups(&self.conn)
    }

    /// Files and bytes retention removed so far, per kind.
    pub fn removal_totals(&self) -> Result<BTreeMap<RemovalKind, RemovalTotal>, QueueError> {
        removal_totals(&self.conn)
    }
}

/// A write transaction of retention: while it is open no group changes state
/// (the worker's transitions wait for it), so what it checks holds until commit.
pub struct RetentionTx<'q> {
    tx: Transaction<'q>,
    now: f64,
}

impl Queue {
    pub fn retention_due_inputs(
        &self,
        cutoffs: &RetentionCutoffs,
    ) -> Result<Vec<DueInputs>, QueueError> {
        due_inputs(&self.conn, cutoffs)
    }

    pub fn retention_due_outputs(&self, before: f64) -> Result<Vec<DueOutput>, QueueError> {
        due_outputs(&self.conn, before)
    }

    /// The next `limit` due groups (see [`DuePage`]): a sweep holds one page in
    /// memory, not the whole backlog.
    pub fn retention_due_inputs_page(
        &self,
        cutoffs: &RetentionCutoffs,
        page: &mut DuePage,
        limit: usize,
    ) -> Result<Vec<DueInputs>, QueueError> {
        due_inputs_page(&self.conn, cutoffs, page, limit)
    }

    pub fn removal_totals(&self) -> Result<BTreeMap<RemovalKind, RemovalTotal>, QueueError> {
        removal_totals(&self.conn)
    }

    /// Opens a `BEGIN IMMEDIATE` transaction for checking and recording removals.
    pub fn retention_tx(&mut self, now: f64) -> Result<RetentionTx<'_>, QueueError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        Ok(RetentionTx { tx, now })
    }
}

impl RetentionTx<'_> {
    /// Whether `group_id`'s inputs are still due: in the final `state` the
    /// listing found, past its cutoff, not yet swept. False once an operator's
    /// retry or a straggler reopened it, or it failed again later.
    pub fn inputs_still_due(
        &self,
        group_id: &str,
        state: GroupState,
        cutoffs: &RetentionCutoffs,
    ) -> Result<bool, QueueError> {
        let cutoff = match state {
            GroupState::Completed => cutoffs.completed_inputs,
            GroupState::Failed => cutoffs.failed_inputs,
            GroupState::Collecting | GroupState::Pending | GroupState::InProgress => {
                return Ok(false);
            }
        };
        let sql = format!(
            "SELECT EXISTS(SELECT 1 FROM ingest_queue WHERE {INPUTS_DUE} AND group_id = ?3)"
        );
        Ok(self
            .tx
            .query_row(&sql, params![state, cutoff, group_id], |row| row.get(0))?)
    }

    /// Groups not in a final state, read inside the transaction (no claim can
    /// start a new one until it ends).
    pub fn active_groups(&self) -> Result<Vec<ActiveGroup>, QueueError> {
        active_groups(&self.tx)
    }

    pub fn record(&self, removal: &Removal) -> Result<(), QueueError> {
        self.tx
            .prepare_cached(
                "INSERT INTO removals(group_id, path, kind, action, archived_to, bytes, reason, removed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                removal.group_id,
                removal.path,
                removal.kind,
                removal.action,
                removal.archived_to,
                removal.bytes as i64,
                removal.reason,
                self.now
            ])?;
        Ok(())
    }

    /// Every input of the group is handled: the group leaves the due index.
    pub fn mark_inputs_removed(&self, group_id: &str) -> Result<(), QueueError> {
        self.tx.execute(
            "UPDATE ingest_queue SET inputs_removed_at = ?1 WHERE group_id = ?2",
            params![self.now, group_id],
        )?;
        Ok(())
    }

    pub fn mark_output_removed(&self, group_id: &str) -> Result<(), QueueError> {
        self.tx.execute(
            "UPDATE ingest_queue SET output_removed_at = ?1 WHERE group_id = ?2",
            params![self.now, group_id],
        )?;
        Ok(())
    }

    pub fn commit(self) -> Result<(), QueueError> {
        Ok(self.tx.commit()?)
    }
}

/// Where the queue DB recorded an `input_dir` file that belongs to no group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrayRecord {
    /// `duplicate_files`: a second file for a group's subband.
    Duplicate,
    /// `late_files`: arrived after its group had closed.
    Late,
    /// `rejected_files`: failed validation.
    Rejected,
    /// `unrecognised_files`: not a correlator name, or not a regular file.
    Unrecognised,
}

impl StrayRecord {
    const ALL: [StrayRecord; 4] = [
        StrayRecord::Duplicate,
        StrayRecord::Late,
        StrayRecord::Rejected,
        StrayRecord::Unrecognised,
    ];

    fn table(self) -> &'static str {
        match self {
            StrayRecord::Duplicate => "duplicate_files",
            StrayRecord::Late => "late_files",
            StrayRecord::Rejected => "rejected_files",
            StrayRecord::Unrecognised => "unrecognised_files",
        }
    }

    /// When it was recorded: the first sighting, not the refreshed one (an
    /// unrecognised file is seen again every hour while it stays).
    fn recorded_at(self) -> &'static str {
        match self {
            StrayRecord::Duplicate | StrayRecord::Late => "seen_at",
            StrayRecord::Rejected => "rejected_at",
            StrayRecord::Unrecognised => "first_seen_at",
        }
    }

    /// The columns for the group and the reason, per table.
    fn detail(self) -> &'static str {
        match self {
            StrayRecord::Duplicate => "group_id, 'a duplicate of ' || kept_path",
            StrayRecord::Late => "group_id, 'arrived after its group was ' || group_state",
            StrayRecord::Rejected => "NULL, 'rejected: ' || reason",
            StrayRecord::Unrecognised => "NULL, 'unrecognised: ' || reason",
        }
    }
}

/// A recorded stray input whose record is older than the cutoff.
#[derive(Debug, Clone, PartialEq)]
pub struct DueStray {
    pub path: String,
    pub group_id: Option<String>,
    pub record: StrayRecord,
    pub reason: String,
}

const ACTIVE_STATES: &str = "('collecting', 'pending', 'in_progress')";

fn due_strays(conn: &Connection, before: f64) -> Result<Vec<DueStray>, QueueError> {
    let mut due = Vec::new();
    for record in StrayRecord::ALL {
        if !table_exists(conn, record.table())? {
            continue;
        }
        let sql = format!(
            "SELECT path, {} FROM {} WHERE {} <= ?1 ORDER BY {}, path",
            record.detail(),
            record.table(),
            record.recorded_at(),
            record.recorded_at()
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([before], |row| {
            Ok(DueStray {
                path: row.get(0)?,
                group_id: row.get(1)?,
                reason: row.get(2)?,
                record,
            })
        })?;
        for row in rows {
            due.push(row?);
        }
    }
    Ok(due)
}

/// The rule a stray is removed by, re-checked inside the transaction: its
/// record is still there and old enough, it is no group's member, no
/// inspection has it open, and the group it was recorded against (duplicates,
/// late files) is in a final state.
fn stray_still_due(conn: &Connection, stray: &DueStray, before: f64) -> Result<bool, QueueError> {
    let sql = format!(
        "SELECT EXISTS(SELECT 1 FROM {table} WHERE path = ?1 AND {at} <= ?2)
             AND NOT EXISTS(SELECT 1 FROM subband_files WHERE path = ?1)
             AND NOT EXISTS(SELECT 1 FROM inspections WHERE path = ?1)
             AND NOT EXISTS(SELECT 1 FROM ingest_queue WHERE group_id = ?3
                 AND state IN {ACTIVE_STATES})",
        table = stray.record.table(),
        at = stray.record.recorded_at()
    );
    Ok(
        conn.query_row(&sql, params![stray.path, before, stray.group_id], |row| {
            row.get(0)
        })?,
    )
}

/// Whether the queue DB knows `path` at all: a member, a recorded stray, or
/// a file being inspected.
fn is_recorded_input(conn: &Connection, path: &str) -> Result<bool, QueueError> {
    let mut tables = vec!["subband_files", "inspections"];
    tables.extend(StrayRecord::ALL.iter().map(|r| r.table()));
    for table in tables {
        if !table_exists(conn, table)? {
            continue;
        }
        let sql = format!("SELECT EXISTS(SELECT 1 FROM {table} WHERE path = ?1)");
        if conn.query_row(&sql, [path], |row| row.get::<_, bool>(0))? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The registered paths of every group not in a final state.
fn active_member_paths(conn: &Connection) -> Result<Vec<String>, QueueError> {
    let sql = format!(
        "SELECT f.path FROM subband_files AS f JOIN ingest_queue AS q ON q.group_id = f.group_id
         WHERE q.state IN {ACTIVE_STATES}"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The job logs of `group_id`'s attempts that have ended (an attempt whose
/// job is in flight has no `finished_at`).
fn finished_job_logs(conn: &Connection, group_id: &str) -> Result<Vec<String>, QueueError> {
    let has_logs: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM pragma_table_info('group_attempts') WHERE name = 'job_log_path')",
        [],
        |row| row.get(0),
    )?;
    if !has_logs {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT job_log_path FROM group_attempts
         WHERE group_id = ?1 AND job_log_path IS NOT NULL AND finished_at IS NOT NULL
         ORDER BY attempt",
    )?;
    let rows = stmt.query_map([group_id], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl QueueReader {
    /// Recorded strays whose record is at or before `before`.
    pub fn retention_due_strays(&self, before: f64) -> Result<Vec<DueStray>, QueueError> {
        due_strays(&self.conn, before)
    }

    pub fn stray_still_due(&self, stray: &DueStray, before: f64) -> Result<bool, QueueError> {
        stray_still_due(&self.conn, stray, before)
    }

    pub fn is_recorded_input(&self, path: &str) -> Result<bool, QueueError> {
        is_recorded_input(&self.conn, path)
    }

    pub fn active_member_paths(&self) -> Result<Vec<String>, QueueError> {
        active_member_paths(&self.conn)
    }

    pub fn finished_job_logs(&self, group_id: &str) -> Result<Vec<String>, QueueError> {
        finished_job_logs(&self.conn, group_id)
    }
}

impl Queue {
    pub fn retention_due_strays(&self, before: f64) -> Result<Vec<DueStray>, QueueError> {
        due_strays(&self.conn, before)
    }
}

impl RetentionTx<'_> {
    pub fn stray_still_due(&self, stray: &DueStray, before: f64) -> Result<bool, QueueError> {
        stray_still_due(&self.tx, stray, before)
    }

    pub fn is_recorded_input(&self, path: &str) -> Result<bool, QueueError> {
        is_recorded_input(&self.tx, path)
    }

    pub fn active_member_paths(&self) -> Result<Vec<String>, QueueError> {
        active_member_paths(&self.tx)
    }

    pub fn finished_job_logs(&self, group_id: &str) -> Result<Vec<String>, QueueError> {
        finished_job_logs(&self.tx, group_id)
    }

    /// The stray's file is gone (removed or vanished): its record goes too,
    /// so the next sweep does not look at it again.
    pub fn forget_stray(&self, stray: &DueStray) -> Result<(), QueueError> {
        self.tx.execute(
            &format!("DELETE FROM {} WHERE path = ?1", stray.record.table()),
            [&stray.path],
        )?;
        Ok(())
    }
}

/// When `group_id`'s inputs were swept, if they were.
pub fn inputs_removed_at(conn: &Connection, group_id: &str) -> Result<Option<f64>, QueueError> {
    Ok(conn
        .query_row(
            "SELECT inputs_removed_at FROM ingest_queue WHERE group_id = ?1",
            [group_id],
            |row| row.get::<_, Option<f64>>(0),
        )
        .optional()?
        .flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{NewFile, Timings};

    fn file(dir: &str, ts: f64, sb: u32) -> NewFile {
        NewFile {
            path: format!(
                "{dir}/{}_sb{sb:02}.hdf5",
                crate::names::format_timestamp(ts)
            ),
            subband_idx: sb,
            timestamp: ts,
            size_bytes: Some(10),
            mtime: Some(ts),
            meta_json: None,
        }
    }

    /// Two groups, both converted at `done_at`; returns their ids.
    fn two_completed(queue: &mut Queue, done_at: f64) -> Vec<String> {
        two_completed_at(queue, done_at, 1_700_000_000.0)
    }

    fn two_completed_at(queue: &mut Queue, done_at: f64, first_ts: f64) -> Vec<String> {
        let mut ids = Vec::new();
        for ts in [first_ts, first_ts + 300.0] {
            for sb in 0..2 {
                queue
                    .register_file(&file("/in", ts, sb), 2, 60.0, ts)
                    .unwrap();
            }
            let claimed = queue.claim_next(done_at).unwrap().unwrap();
            queue
                .complete(
                    &claimed.group_id,
                    claimed.attempt,
                    &Timings::default(),
                    None,
                    done_at,
                )
                .unwrap();
            ids.push(claimed.group_id);
        }
        ids
    }

    #[test]
    fn due_inputs_are_past_the_cutoff_and_leave_once_marked() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(&dir.path().join("q.db")).unwrap();
        let ids = two_completed(&mut queue, 1000.0);
        let early = RetentionCutoffs::new(1000.0 + 3599.0, 1.0, 1.0, None);
        assert!(queue.retention_due_inputs(&early).unwrap().is_empty());
        let late = RetentionCutoffs::new(1000.0 + 3600.0, 1.0, 1.0, None);
        let due = queue.retention_due_inputs(&late).unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].files.len(), 2);
        let tx = queue.retention_tx(5000.0).unwrap();
        assert!(
            tx.inputs_still_due(&ids[0], GroupState::Completed, &late)
                .unwrap()
        );
        tx.mark_inputs_removed(&ids[0]).unwrap();
        tx.commit().unwrap();
        let due = queue.retention_due_inputs(&late).unwrap();
        assert_eq!(
            due.iter().map(|d| &d.group_id).collect::<Vec<_>>(),
            [&ids[1]]
        );
        assert_eq!(
            inputs_removed_at(&queue.conn, &ids[0]).unwrap(),
            Some(5000.0)
        );
    }

    #[test]
    fn paged_listing_returns_every_due_group_once_in_index_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(&dir.path().join("q.db")).unwrap();
        let mut ids = two_completed(&mut queue, 1000.0);
        ids.extend(two_completed_at(&mut queue, 900.0, 1_700_000_600.0));
        let cutoffs = RetentionCutoffs::new(1000.0 + 3600.0, 1.0, 1.0, None);
        let mut page = DuePage::default();
        let mut listed = Vec::new();
        loop {
            let due = queue
                .retention_due_inputs_page(&cutoffs, &mut page, 3)
                .unwrap();
            if due.is_empty() {
                break;
            }
            assert!(due.len() <= 3);
            assert!(due.iter().all(|d| d.files.len() == 2));
            listed.extend(due.into_iter().map(|d| d.group_id));
        }
        // The two completed at 900 first, then the two at 1000; nothing twice,
        // although none was marked swept.
        assert_eq!(
            listed,
            [
                ids[2].clone(),
                ids[3].clone(),
                ids[0].clone(),
                ids[1].clone()
            ]
        );
    }

    #[test]
    fn the_due_queries_search_their_partial_indexes_never_scan() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(&dir.path().join("q.db")).unwrap();
        let plan = |sql: &str| -> String {
            let mut stmt = queue
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let rows = stmt
                .query_map(params!["completed", 1.0], |row| row.get::<_, String>(3))
                .unwrap();
            rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
        };
        let inputs = plan(&format!(
            "SELECT q.group_id, q.state, f.path FROM ingest_queue AS q
             LEFT JOIN subband_files AS f ON f.group_id = q.group_id WHERE q.{}",
            INPUTS_DUE.replace("AND state", "AND q.state")
        ));
        assert!(
            inputs.contains("USING INDEX idx_ingest_queue_retention"),
            "{inputs}"
        );
        assert!(!inputs.contains("SCAN"), "{inputs}");
        let outputs = plan(
            "SELECT group_id, output_path FROM ingest_queue
             WHERE output_removed_at IS NULL AND output_path IS NOT NULL
                 AND state = ?1 AND completed_at <= ?2",
        );
        assert!(
            outputs.contains("USING INDEX idx_ingest_queue_output_retention"),
            "{outputs}"
        );
        assert!(!outputs.contains("SCAN"), "{outputs}");
        let mut stmt = queue
            .conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT rowid, group_id, COALESCE(completed_at, last_update) FROM ingest_queue
                 WHERE {INPUTS_DUE}
                     AND (COALESCE(completed_at, last_update), rowid) > (?3, ?4)
                 ORDER BY COALESCE(completed_at, last_update), rowid LIMIT ?5"
            ))
            .unwrap();
        let page: Vec<String> = stmt
            .query_map(params!["completed", 1.0, 0.0, 0, 64], |row| row.get(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let page = page.join("; ");
        assert!(
            page.contains("USING INDEX idx_ingest_queue_retention"),
            "{page}"
        );
        assert!(
            !page.contains("SCAN") && !page.contains("TEMP B-TREE"),
            "{page}"
        );
    }

    #[test]
    fn a_duplicate_is_due_only_once_its_group_is_final_and_never_a_member() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(&dir.path().join("q.db")).unwrap();
        let ts = 1_700_000_000.0;
        queue
            .register_file(&file("/in", ts, 0), 1, 60.0, ts)
            .unwrap();
        let second = file("/in", ts + 1.0, 0);
        queue.register_file(&second, 1, 60.0, ts).unwrap();
        let due = queue.retention_due_strays(ts).unwrap();
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(due[0].record, StrayRecord::Duplicate);
        assert_eq!(due[0].path, second.path);
        let still_due = |queue: &mut Queue| {
            let tx = queue.retention_tx(ts).unwrap();
            tx.stray_still_due(&due[0], ts).unwrap()
        };
        // Its group is pending: kept, whatever its age.
        assert!(!still_due(&mut queue));
        let claimed = queue.claim_next(ts).unwrap().unwrap();
        assert!(!still_due(&mut queue), "in progress");
        queue
            .complete(
                &claimed.group_id,
                claimed.attempt,
                &Timings::default(),
                None,
                ts,
            )
            .unwrap();
        assert!(still_due(&mut queue));
        // Not yet old enough under an earlier cutoff.
        assert!(queue.retention_due_strays(ts - 1.0).unwrap().is_empty());
        // A path that is (also) a registered member is never a stray.
        let member = DueStray {
            path: file("/in", ts, 0).path,
            group_id: None,
            record: StrayRecord::Rejected,
            reason: String::new(),
        };
        queue
            .reject_file(&member.path, "x", None, None, ts - 10.0)
            .unwrap();
        let tx = queue.retention_tx(ts).unwrap();
        assert!(!tx.stray_still_due(&member, ts).unwrap());
        assert!(tx.is_recorded_input(&member.path).unwrap());
        assert!(!tx.is_recorded_input("/in/never-seen").unwrap());
    }

    #[test]
    fn totals_count_removals_but_not_skips() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(&dir.path().join("q.db")).unwrap();
        let tx = queue.retention_tx(1.0).unwrap();
        for (action, bytes) in [
            (RemovalAction::Deleted, 100),
            (RemovalAction::Archived, 20),
            (RemovalAction::Skipped, 7),
        ] {
            tx.record(&Removal {
                group_id: None,
                path: "/in/x".into(),
                kind: RemovalKind::Input,
                action,
                archived_to: None,
                bytes,
                reason: "test".into(),
            })
            .unwrap();
        }
        tx.commit().unwrap();
        let totals = queue.removal_totals().unwrap();
        assert_eq!(
            totals.get(&RemovalKind::Input),
            Some(&RemovalTotal {
                files: 2,
                bytes: 120
            })
        );
        assert_eq!(totals.get(&RemovalKind::Output), None);
    }
}
