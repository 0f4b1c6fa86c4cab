//! State left by the original Python pipeline: its queue DB (original schema, no
//! indexes, no WAL, rows in every state) and its `streaming_config.json`.

mod common;

use std::time::Duration;

use common::worker::{WorkerEnv, test_converter_toml, wait_until, write_test_converter};
use contimg::queue::{GroupState, Queue, QueueReader, SCHEMA_VERSION, unix_now};
use rusqlite::{Connection, params};

/// The schema exactly as the original `streaming_converter.py` created it.
const ORIGINAL_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ingest_queue (
    group_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    received_at REAL NOT NULL,
    last_update REAL NOT NULL,
    expected_subbands INTEGER,
    retry_count INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    checkpoint_path TEXT,
    processing_stage TEXT DEFAULT 'collecting',
    chunk_minutes REAL,
    has_calibrator INTEGER DEFAULT NULL,
    calibrators TEXT
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
);";

fn build_original_db(path: &std::path::Path, input_dir: &std::path::Path, now: f64) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(ORIGINAL_SCHEMA).unwrap();
    let rows = [
        ("2025-10-13T10:00:00", "completed", 0, None),
        (
            "2025-10-13T10:05:09",
            "failed",
            3,
            Some("conversion failed: CASA error"),
        ),
        ("2025-10-13T10:10:18", "in_progress", 0, None),
        ("2025-10-13T10:15:27", "pending", 1, None),
        ("2025-10-13T10:20:36", "collecting", 0, None),
    ];
    for (group_id, state, retries, error) in rows {
        conn.execute(
            "INSERT INTO ingest_queue(group_id, state, received_at, last_update, expected_subbands,
                 retry_count, error, processing_stage, chunk_minutes, has_calibrator, calibrators)
             VALUES (?1, ?2, ?3, ?3, 2, ?4, ?5, ?2, 5.0, 1, '[\"3C286\"]')",
            params![group_id, state, now - 600.0, retries, error],
        )
        .unwrap();
        let subbands = if state == "collecting" { 1 } else { 2 };
        for sb in 0..subbands {
            let file = input_dir.join(format!("{group_id}_sb{sb:02}.hdf5"));
            std::fs::write(&file, b"legacy").unwrap();
            conn.execute(
                "INSERT INTO subband_files(group_id, subband_idx, path) VALUES (?1, ?2, ?3)",
                params![group_id, sb, file.to_string_lossy()],
            )
            .unwrap();
        }
    }
    conn.execute(
        "INSERT INTO performance_metrics VALUES ('2025-10-13T10:00:00', 10.0, 2.0, 30.0, 42.0, 'pyuvdata', ?1)",
        [now - 500.0],
    )
    .unwrap();
}

#[test]
fn an_original_queue_db_migrates_in_place_and_keeps_every_row() {
    let env = WorkerEnv::new();
    let now = unix_now();
    build_original_db(&env.queue_db(), &env.input_dir, now);

    let queue = Queue::open(&env.queue_db()).unwrap();
    drop(queue);
    let conn = Connection::open(env.queue_db()).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    let indexes: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ingest_queue' AND sql IS NOT NULL", [], |r| r.get(0))
        .unwrap();
    assert!(indexes >= 3, "indexes added: {indexes}");
    let (rows, files): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM ingest_queue), (SELECT COUNT(*) FROM subband_files)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, files), (5, 9));
    let calibrators: String = conn
        .query_row(
            "SELECT calibrators FROM ingest_queue WHERE group_id = '2025-10-13T10:00:00'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(calibrators, "[\"3C286\"]");

    let reader = QueueReader::open(&env.queue_db()).unwrap();
    let stats = reader.stats(now).unwrap();
    for state in GroupState::ALL {
        assert_eq!(stats.count(state), 1, "{state}");
    }
    let detail = reader.group("2025-10-13T10:00:00").unwrap().unwrap();
    assert_eq!(detail.timings.unwrap().total_time, Some(42.0));
    // Migrating again is a no-op.
    drop(reader);
    Queue::open(&env.queue_db()).unwrap();
    let reader = QueueReader::open(&env.queue_db()).unwrap();
    assert_eq!(reader.stats(now).unwrap().counts.values().sum::<u64>(), 5);
}

#[test]
fn the_worker_continues_an_original_deployment() {
    let env = WorkerEnv::new();
    let now = unix_now();
    build_original_db(&env.queue_db(), &env.input_dir, now);
    let control = env.root.path().join("control");
    std::fs::create_dir_all(&control).unwrap();
    let script = write_test_converter(env.root.path());
    // The original's JSON config, with its relative paths and no TOML yet.
    let json = serde_json::json!({
        "input_dir": env.input_dir, "output_dir": env.output_dir, "queue_db": "state/ingest.sqlite3",
        "registry_db": "state/cal_registry.sqlite3", "scratch_dir": env.scratch_dir,
        "expected_subbands": 2, "chunk_duration": 5.0, "log_level": "INFO", "use_subprocess": true,
        "monitoring": true, "monitor_interval": 60, "poll_interval": 1, "worker_poll_interval": 1,
        "max_workers": 4, "stage_to_tmpfs": false, "tmpfs_path": "/dev/shm"
    });
    std::fs::write(
        env.state_dir.join("streaming_config.json"),
        json.to_string(),
    )
    .unwrap();
    // First start-up step: the JSON is imported into streaming.toml.
    let check = std::process::Command::new(common::worker::stream_bin())
        .arg("--state-dir")
        .arg(&env.state_dir)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let toml = std::fs::read_to_string(env.state_dir.join("streaming.toml")).unwrap();
    assert!(toml.contains("expected_subbands = 2"), "{toml}");
    assert!(
        toml.contains(&format!(
            "queue_db = {:?}",
            env.queue_db().to_string_lossy()
        )),
        "{toml}"
    );
    // Swap the production converter for the test one (files here are not UVH5).
    // The test host's free space must not decide the outcome (the back-pressure
    // tests own that), as in every other harness config.
    let toml = toml
        .replace("validate_uvh5 = true", "validate_uvh5 = false")
        .replace("min_free_gb = 10.0", "min_free_gb = 0.0")
        .replace("[converter]\nkind = \"builtin\"\n", "");
    assert!(toml.contains("min_free_gb = 0.0"), "{toml}");
    std::fs::write(
        env.state_dir.join("streaming.toml"),
        format!("{toml}\n{}", test_converter_toml(&script, &control)),
    )
    .unwrap();
    let worker = env.spawn();
    // The interrupted and the pending group complete; completed and failed stay.
    let done = wait_until(Duration::from_secs(20), || {
        env.count(GroupState::Completed) == 3
    });
    assert!(done, "{:?}\n{}", env.stats(), worker.log());
    assert_eq!(env.count(GroupState::Failed), 1);
    assert_eq!(env.count(GroupState::Collecting), 1);
    assert_eq!(worker.stop(), Some(0));
}

/// A queue DB holding a state this build does not know (written by another
/// program, or a newer contimg on the same schema version): the CLI says which
/// column holds which value and fails, instead of showing a guessed state.
#[test]
fn the_cli_names_a_state_it_does_not_know_instead_of_guessing() {
    let env = WorkerEnv::new();
    env.write_config("expected_subbands = 2");
    drop(Queue::open(&env.queue_db()).unwrap());
    let conn = Connection::open(env.queue_db()).unwrap();
    let group_id = "2025-10-13T10:00:00";
    conn.execute(
        "INSERT INTO ingest_queue(group_id, state, received_at, last_update, expected_subbands)
         VALUES (?1, 'archived', ?2, ?2, 2)",
        params![group_id, unix_now()],
    )
    .unwrap();
    for args in [
        &["queue"][..],
        &["queue", "show", group_id],
        &["--json", "queue"],
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_contimgctl"))
            .args(["--backend", "process", "--state-dir"])
            .arg(&env.state_dir)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded: {stderr}");
        assert!(
            stderr.contains("column state") && stderr.contains("\"archived\""),
            "{args:?}: {stderr}"
        );
    }
}
