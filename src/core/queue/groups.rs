//! Listing groups and one group's details (read by both handles).

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Attempt, GroupDetail, GroupFile, GroupFilter, GroupState, GroupSummary, QueueError, Timings,
    table_exists,
};

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

pub(super) fn list_groups(
    conn: &Connection,
    filter: &GroupFilter,
) -> Result<Vec<GroupSummary>, QueueError> {
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

pub(super) fn group_detail(
    conn: &Connection,
    group_id: &str,
) -> Result<Option<GroupDetail>, QueueError> {
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
