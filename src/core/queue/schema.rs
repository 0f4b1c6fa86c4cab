//! Queue DB schema and versioned migrations (`PRAGMA user_version`).
//!
//! Version 0 is either an empty file or a database written by the original Python
//! pipeline (tables `ingest_queue`, `subband_files`, `performance_metrics`, no
//! indexes). Every migration keeps every existing row.

use rusqlite::{Connection, Transaction, params};

use super::{QueueError, group_timestamp_from_id};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 6;

/// One migration step, run in its own transaction.
type Migration = fn(&Transaction<'_>) -> Result<(), QueueError>;

/// Brings `conn` up to [`SCHEMA_VERSION`], one transaction per migration.
pub fn migrate(conn: &mut Connection) -> Result<(), QueueError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(QueueError::NewerSchema {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    let steps: [(i64, Migration); 6] = [
        (1, migrate_to_v1),
        (2, migrate_to_v2),
        (3, migrate_to_v3),
        (4, migrate_to_v4),
        (5, migrate_to_v5),
        (6, migrate_to_v6),
    ];
    for (target, step) in steps {
        if version < target {
            let tx = conn.transaction()?;
            step(&tx)?;
            tx.pragma_update(None, "user_version", target)?;
            tx.commit()?;
            tracing::info!("queue DB migrated to schema version {target}");
        }
    }
    Ok(())
}

/// The original pipeline's schema, created if missing, with the columns its later
/// versions added.
fn migrate_to_v1(tx: &Transaction<'_>) -> Result<(), QueueError> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS ingest_queue (
             group_id TEXT PRIMARY KEY,
             state TEXT NOT NULL,
             received_at REAL NOT NULL,
             last_update REAL NOT NULL,
             expected_subbands INTEGER,
             retry_count INTEGER NOT NULL DEFAULT 0,
             error TEXT,
             checkpoint_path TEXT,
             processing_stage TEXT DEFAULT 'collecting',
             chunk_minutes REAL
         );
         CREATE TABLE IF NOT EXISTS subband_files (
             group_id TEXT NOT NULL,
             subband_idx INTEGER NOT NULL,
             path TEXT NOT NULL,
             PRIMARY KEY (group_id, subband_idx)
         );
         CREATE TABLE IF NOT EXISTS performance_metrics (
             group_id TEXT PRIMARY KEY,
             load_time REAL,
             phase_time REAL,
             write_time REAL,
             total_time REAL,
             writer_type TEXT,
             recorded_at REAL NOT NULL
         );",
    )?;
    add_column_if_missing(tx, "ingest_queue", "has_calibrator", "INTEGER")?;
    add_column_if_missing(tx, "ingest_queue", "calibrators", "TEXT")?;
    Ok(())
}

/// contimg's additions: scheduling columns, indexes, per-state counters kept by
/// triggers (so stats never scan the table), and tables for rejected and
/// duplicate files, attempts, file metadata and the worker heartbeat.
fn migrate_to_v2(tx: &Transaction<'_>) -> Result<(), QueueError> {
    add_column_if_missing(tx, "ingest_queue", "group_ts", "REAL")?;
    add_column_if_missing(tx, "ingest_queue", "next_attempt_at", "REAL")?;
    add_column_if_missing(tx, "ingest_queue", "started_at", "REAL")?;
    add_column_if_missing(tx, "ingest_queue", "completed_at", "REAL")?;
    add_column_if_missing(tx, "ingest_queue", "output_path", "TEXT")?;

    // Rows written by the original pipeline have no group_ts: derive it from the id.
    let legacy: Vec<String> = {
        let mut stmt = tx.prepare("SELECT group_id FROM ingest_queue WHERE group_ts IS NULL")?;
        stmt.query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?
    };
    {
        let mut update = tx.prepare("UPDATE ingest_queue SET group_ts = ?1 WHERE group_id = ?2")?;
        for group_id in &legacy {
            if let Some(ts) = group_timestamp_from_id(group_id) {
                update.execute(params![ts, group_id])?;
            }
        }
    }

    tx.execute_batch(
        "CREATE INDEX IF NOT EXISTS idx_ingest_queue_state_update ON ingest_queue(state, last_update);
         CREATE INDEX IF NOT EXISTS idx_ingest_queue_state_group_ts ON ingest_queue(state, group_ts);
         CREATE INDEX IF NOT EXISTS idx_ingest_queue_group_ts ON ingest_queue(group_ts);
         CREATE INDEX IF NOT EXISTS idx_subband_files_path ON subband_files(path);

         CREATE TABLE IF NOT EXISTS queue_state_counts (
             state TEXT PRIMARY KEY,
             n INTEGER NOT NULL
         );
         DELETE FROM queue_state_counts;
         INSERT INTO queue_state_counts(state, n)
             SELECT state, COUNT(*) FROM ingest_queue GROUP BY state;
         CREATE TRIGGER IF NOT EXISTS trg_ingest_queue_count_insert AFTER INSERT ON ingest_queue
         BEGIN
             INSERT INTO queue_state_counts(state, n) VALUES (NEW.state, 1)
                 ON CONFLICT(state) DO UPDATE SET n = n + 1;
         END;
         CREATE TRIGGER IF NOT EXISTS trg_ingest_queue_count_delete AFTER DELETE ON ingest_queue
         BEGIN
             UPDATE queue_state_counts SET n = n - 1 WHERE state = OLD.state;
         END;
         CREATE TRIGGER IF NOT EXISTS trg_ingest_queue_count_update AFTER UPDATE OF state ON ingest_queue
             WHEN OLD.state IS NOT NEW.state
         BEGIN
             UPDATE queue_state_counts SET n = n - 1 WHERE state = OLD.state;
             INSERT INTO queue_state_counts(state, n) VALUES (NEW.state, 1)
                 ON CONFLICT(state) DO UPDATE SET n = n + 1;
         END;

         CREATE TABLE IF NOT EXISTS rejected_files (
             path TEXT PRIMARY KEY,
             reason TEXT NOT NULL,
             rejected_at REAL NOT NULL,
             size_bytes INTEGER,
             mtime REAL
         );
         CREATE INDEX IF NOT EXISTS idx_rejected_files_at ON rejected_files(rejected_at);
         CREATE TABLE IF NOT EXISTS duplicate_files (
             path TEXT PRIMARY KEY,
             group_id TEXT NOT NULL,
             subband_idx INTEGER NOT NULL,
             kept_path TEXT NOT NULL,
             seen_at REAL NOT NULL
         );
         CREATE TABLE IF NOT EXISTS subband_meta (
             path TEXT PRIMARY KEY,
             size_bytes INTEGER,
             mtime REAL,
             meta_json TEXT
         );
         CREATE TABLE IF NOT EXISTS group_attempts (
             group_id TEXT NOT NULL,
             attempt INTEGER NOT NULL,
             started_at REAL NOT NULL,
             finished_at REAL,
             outcome TEXT,
             error TEXT,
             PRIMARY KEY (group_id, attempt)
         );
         CREATE TABLE IF NOT EXISTS worker_heartbeat (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             pid INTEGER NOT NULL,
             started_at REAL NOT NULL,
             heartbeat_at REAL NOT NULL,
             version TEXT NOT NULL
         );",
    )?;
    Ok(())
}

/// Hostile-input bookkeeping: files whose names are not the correlator's, subbands
/// that arrive after their group completed, and the inspection journal (a file is
/// recorded before libhdf5 opens it, so a file that kills the inspector is known
/// at the next start and never inspected in-process again).
fn migrate_to_v3(tx: &Transaction<'_>) -> Result<(), QueueError> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS unrecognised_files (
             path TEXT PRIMARY KEY,
             reason TEXT NOT NULL,
             first_seen_at REAL NOT NULL,
             last_seen_at REAL NOT NULL,
             size_bytes INTEGER
         );
         CREATE INDEX IF NOT EXISTS idx_unrecognised_files_seen ON unrecognised_files(last_seen_at);
         CREATE TABLE IF NOT EXISTS late_files (
             path TEXT PRIMARY KEY,
             group_id TEXT NOT NULL,
             subband_idx INTEGER NOT NULL,
             group_state TEXT NOT NULL,
             seen_at REAL NOT NULL
         );
         CREATE INDEX IF NOT EXISTS idx_late_files_seen ON late_files(seen_at);
         CREATE TABLE IF NOT EXISTS inspections (
             path TEXT PRIMARY KEY,
             size_bytes INTEGER,
             mtime REAL,
             started_at REAL NOT NULL,
             worker_pid INTEGER NOT NULL
         );",
    )?;
    Ok(())
}

/// Data lifecycle: every file retention removes or archives is recorded, and a
/// group's inputs are marked once swept so a sweep never scans them again.
fn migrate_to_v4(tx: &Transaction<'_>) -> Result<(), QueueError> {
    add_column_if_missing(tx, "ingest_queue", "inputs_removed_at", "REAL")?;
    add_column_if_missing(tx, "ingest_queue", "output_removed_at", "REAL")?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS removals (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             group_id TEXT,
             path TEXT NOT NULL,
             kind TEXT NOT NULL,
             action TEXT NOT NULL,
             archived_to TEXT,
             bytes INTEGER NOT NULL,
             reason TEXT NOT NULL,
             removed_at REAL NOT NULL
         );
         CREATE INDEX IF NOT EXISTS idx_removals_at ON removals(removed_at);
         -- Due inputs: a range of one state's unswept groups by the time they
         -- ended (completed_at; last_update for failed and legacy rows). Swept
         -- groups leave the index, so a sweep's cost follows what is due.
         CREATE INDEX IF NOT EXISTS idx_ingest_queue_retention
             ON ingest_queue(state, COALESCE(completed_at, last_update))
             WHERE inputs_removed_at IS NULL;
         CREATE INDEX IF NOT EXISTS idx_ingest_queue_output_retention
             ON ingest_queue(state, completed_at)
             WHERE output_removed_at IS NULL AND output_path IS NOT NULL;
         -- Totals per kind kept by a trigger, so /metrics reads O(kinds) rows.
         CREATE TABLE IF NOT EXISTS removal_totals (
             kind TEXT PRIMARY KEY,
             files INTEGER NOT NULL,
             bytes INTEGER NOT NULL
         );
         CREATE TRIGGER IF NOT EXISTS trg_removals_totals AFTER INSERT ON removals
             WHEN NEW.action != 'skipped'
         BEGIN
             INSERT INTO removal_totals(kind, files, bytes) VALUES (NEW.kind, 1, NEW.bytes)
                 ON CONFLICT(kind) DO UPDATE SET files = files + 1, bytes = bytes + NEW.bytes;
         END;",
    )?;
    Ok(())
}

/// Disk back-pressure: why the worker is not claiming work (which configured
/// directory, and free against needed), readable by the API and the CLI
/// without asking the worker. All NULL while it claims.
fn migrate_to_v5(tx: &Transaction<'_>) -> Result<(), QueueError> {
    add_column_if_missing(tx, "worker_heartbeat", "claim_paused_dir", "TEXT")?;
    add_column_if_missing(tx, "worker_heartbeat", "claim_paused_reason", "TEXT")?;
    add_column_if_missing(tx, "worker_heartbeat", "claim_paused_since", "REAL")?;
    Ok(())
}

/// The Slurm executor: each attempt's batch job, and whether the scheduler answers.
fn migrate_to_v6(tx: &Transaction<'_>) -> Result<(), QueueError> {
    for (column, decl) in [
        ("executor", "TEXT"),
        ("job_id", "TEXT"),
        ("job_state", "TEXT"),
        ("job_node", "TEXT"),
        ("job_exit_code", "INTEGER"),
        ("job_log_path", "TEXT"),
        ("submitted_at", "REAL"),
    ] {
        add_column_if_missing(tx, "group_attempts", column, decl)?;
    }
    add_column_if_missing(
        tx,
        "worker_heartbeat",
        "scheduler_unreachable_since",
        "REAL",
    )?;
    tx.execute_batch(
        "CREATE INDEX IF NOT EXISTS idx_group_attempts_job
             ON group_attempts(job_id) WHERE job_id IS NOT NULL;",
    )?;
    Ok(())
}

fn add_column_if_missing(
    tx: &Transaction<'_>,
    table: &str,
    column: &str,
    decl: &str,
) -> Result<(), QueueError> {
    let exists: bool = tx.query_row(
        &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
        [column],
        |row| row.get(0),
    )?;
    if !exists {
        tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}
