//! Registering one subband file: which group it joins (or opens, or renames),
//! duplicates, late arrivals, and when a group becomes pending.

use rusqlite::{Connection, OptionalExtension, params};

use super::{GroupState, NewFile, ProcessingStage, QueueError, Registration, group_id_for};

pub(super) fn register_in_tx(
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
    let nearest: Option<(String, f64, GroupState)> = tx
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
            if file.timestamp.floor() < group_ts.floor() && state == GroupState::Collecting {
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
                 VALUES (?1, ?2, ?3, ?3, ?4, 0, ?5, NULL, ?6)",
                params![
                    group_id,
                    GroupState::Collecting,
                    now,
                    expected_subbands,
                    ProcessingStage::Collecting,
                    file.timestamp.floor()
                ],
            )?;
            (group_id, GroupState::Collecting)
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
    let open = group_state == GroupState::Collecting
        || (group_state == GroupState::Failed && is_incomplete_failure(tx, &group_id)?);
    if !open {
        tx.execute(
            "INSERT OR IGNORE INTO late_files(path, group_id, subband_idx, group_state, seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![file.path, group_id, file.subband_idx, group_state, now],
        )?;
        return Ok(Registration::Late {
            group_id,
            group_state,
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
    let (state, expected): (GroupState, Option<u32>) = tx.query_row(
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
    let reopen = state == GroupState::Failed && complete && is_incomplete_failure(tx, &group_id)?;
    let new_state = if (state == GroupState::Collecting || reopen) && complete {
        GroupState::Pending
    } else {
        state
    };
    let queued = new_state == GroupState::Pending && state != GroupState::Pending;
    tx.execute(
        "UPDATE ingest_queue SET state = ?1, last_update = ?2,
             processing_stage = CASE WHEN ?3 THEN ?4 ELSE processing_stage END,
             error = CASE WHEN ?5 THEN NULL ELSE error END
         WHERE group_id = ?6",
        params![
            new_state,
            now,
            queued,
            ProcessingStage::Queued,
            reopen,
            group_id
        ],
    )?;
    Ok(Registration::Added {
        group_id,
        state: new_state,
        subbands,
    })
}

fn is_incomplete_failure(conn: &Connection, group_id: &str) -> Result<bool, QueueError> {
    let stage: Option<ProcessingStage> = conn.query_row(
        "SELECT processing_stage FROM ingest_queue WHERE group_id = ?1",
        [group_id],
        |row| row.get(0),
    )?;
    Ok(stage == Some(ProcessingStage::Incomplete))
}

pub(super) fn is_known_path(conn: &Connection, path: &str) -> Result<bool, QueueError> {
    Ok(conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM subband_files WHERE path = ?1)
             OR EXISTS(SELECT 1 FROM duplicate_files WHERE path = ?1)
             OR EXISTS(SELECT 1 FROM late_files WHERE path = ?1)",
        [path],
        |row| row.get(0),
    )?)
}
