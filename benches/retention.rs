//! Retention benchmark (issue 12); run with `cargo bench --bench retention` or
//! `ops/bench/retention.sh`. Prints times and CPU; asserts nothing about them.
//!
//! 1. A backlog sweep: 100,000 completed groups past `retain_input_hours`, 16
//!    files each, removed by `core::retention::Sweep::run` exactly as the worker
//!    runs it (one thread, queue locked per batch). Wall time and CPU
//!    (getrusage of this process). Baselines in the same run: the plain SELECT
//!    of the due groups, and `find INPUT_DIR -type f -delete` of the same
//!    number of files (the filesystem work alone, no DB, no records).
//! 2. The steady state: with those 100,000 swept, one sweep that finds the 12
//!    groups an hour brings (what the hourly sweep costs for months), against
//!    a naive due query that scans every completed group.
//!
//! `CONTIMG_BENCH_GROUPS` (100000) and `CONTIMG_BENCH_FILES` (16 per group)
//! shrink it. The files are empty: unlinking a 150 MB file costs the
//! filesystem more (freeing its extents), the same for the sweep and `find`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use contimg::config::StreamingConfig;
use contimg::queue::retention::RetentionCutoffs;
use contimg::queue::{Queue, QueueReader, unix_now};
use contimg::retention::Sweep;
use nix::sys::resource::{UsageWho, getrusage};
use rusqlite::{Connection, params};

const T0: f64 = 1_760_362_083.0;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_seconds(who: UsageWho) -> f64 {
    let usage = getrusage(who).unwrap();
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(usage.user_time()) + secs(usage.system_time())
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn file_path(input_dir: &Path, group: usize, subband: usize) -> PathBuf {
    let ts = T0 + 309.0 * group as f64;
    input_dir.join(format!(
        "{}_sb{subband:02}.hdf5",
        contimg::queue::group_id_for(ts)
    ))
}

/// Groups `first..first + count`, completed `age_s` ago, with their file rows.
fn insert_groups(
    conn: &mut Connection,
    input_dir: &Path,
    first: usize,
    count: usize,
    files: usize,
    completed_at: f64,
) {
    let tx = conn.transaction().unwrap();
    {
        let mut group = tx
            .prepare(
                "INSERT INTO ingest_queue(group_id, state, received_at, last_update, completed_at,
                     expected_subbands, retry_count, group_ts)
                 VALUES (?1, 'completed', ?2, ?3, ?3, ?4, 0, ?2)",
            )
            .unwrap();
        let mut file = tx
            .prepare("INSERT INTO subband_files(group_id, subband_idx, path) VALUES (?1, ?2, ?3)")
            .unwrap();
        for g in first..first + count {
            let ts = T0 + 309.0 * g as f64;
            let id = contimg::queue::group_id_for(ts);
            group
                .execute(params![id, ts, completed_at, files as i64])
                .unwrap();
            for sb in 0..files {
                let path = file_path(input_dir, g, sb);
                file.execute(params![id, sb as i64, path.to_string_lossy()])
                    .unwrap();
            }
        }
    }
    tx.commit().unwrap();
}

fn create_files(input_dir: &Path, groups: std::ops::Range<usize>, files: usize) -> Duration {
    let started = Instant::now();
    for g in groups {
        for sb in 0..files {
            std::fs::File::create(file_path(input_dir, g, sb)).unwrap();
        }
    }
    started.elapsed()
}

fn main() {
    // `cargo test --all-targets` runs this in test mode (no `--bench`): a small
    // smoke run there, so the bench keeps working without costing the suite minutes.
    let measuring = std::env::args().any(|a| a == "--bench");
    let groups = env_usize("CONTIMG_BENCH_GROUPS", if measuring { 100_000 } else { 20 });
    let files = env_usize("CONTIMG_BENCH_FILES", 16);
    let root = tempfile::tempdir_in(
        std::env::var_os("CONTIMG_BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()),
    )
    .unwrap();
    let mut config = StreamingConfig::with_state_dir(&root.path().join("state"));
    config.input_dir = root.path().join("incoming");
    config.output_dir = root.path().join("out");
    config.scratch_dir = root.path().join("scratch");
    config.tmpfs_path = root.path().join("shm");
    config.retain_input_hours = 48.0;
    for dir in [
        &config.input_dir,
        &config.output_dir,
        &config.scratch_dir,
        &config.tmpfs_path,
    ] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let now = unix_now();
    drop(Queue::open(&config.queue_db).unwrap());
    let mut conn = Connection::open(&config.queue_db).unwrap();
    insert_groups(
        &mut conn,
        &config.input_dir,
        0,
        groups,
        files,
        now - 100.0 * 3600.0,
    );
    drop(conn);
    let made = create_files(&config.input_dir, 0..groups, files);
    println!(
        "retention: {groups} completed groups x {files} files in one input_dir (created in {:.1} s), {}",
        made.as_secs_f64(),
        root.path().display()
    );

    // Baseline 1: the plain SELECT of the due groups (with their files).
    let cutoffs = RetentionCutoffs::new(now, 48.0, 14.0, None);
    let mut selects = Vec::new();
    for _ in 0..5 {
        let reader = QueueReader::open(&config.queue_db).unwrap();
        let started = Instant::now();
        let due = reader.retention_due_inputs(&cutoffs).unwrap();
        selects.push(started.elapsed().as_secs_f64());
        assert_eq!(due.len(), groups);
    }
    println!(
        "  due SELECT (groups + files, indexed): median {:.3} s of 5",
        median(&mut selects)
    );

    // The backlog sweep, as the worker runs it.
    let queue = Mutex::new(Queue::open(&config.queue_db).unwrap());
    let cpu_before = cpu_seconds(UsageWho::RUSAGE_SELF);
    let started = Instant::now();
    let report = Sweep::new(&config, now)
        .run(&queue, &AtomicBool::new(false))
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(UsageWho::RUSAGE_SELF) - cpu_before;
    let total = report.total();
    assert_eq!(
        total.files as usize,
        groups * files,
        "{:?}",
        report.failures.first()
    );
    println!(
        "  backlog sweep: {wall:.2} s wall, {cpu:.2} s CPU ({:.0}% of one core); {} files, {} groups swept, {} removal rows recorded; {:.1} µs wall per file",
        100.0 * cpu / wall,
        total.files,
        report.groups_swept,
        total.files,
        1e6 * wall / total.files as f64
    );

    // Baseline 2: find -delete of the same number of files.
    create_files(&config.input_dir, 0..groups, files);
    let cpu_before = cpu_seconds(UsageWho::RUSAGE_CHILDREN);
    let started = Instant::now();
    let status = Command::new("find")
        .arg(&config.input_dir)
        .args(["-type", "f", "-delete"])
        .status()
        .unwrap();
    assert!(status.success());
    let find_wall = started.elapsed().as_secs_f64();
    let find_cpu = cpu_seconds(UsageWho::RUSAGE_CHILDREN) - cpu_before;
    println!(
        "  baseline find -type f -delete: {find_wall:.2} s wall, {find_cpu:.2} s CPU; sweep/find wall ratio {:.2}",
        wall / find_wall
    );

    // Steady state: 12 newly due groups beside the swept 100,000.
    let mut sweeps = Vec::new();
    let mut sweep_cpu = Vec::new();
    let mut naive = Vec::new();
    for round in 0..10 {
        let first = groups + round * 12;
        let mut conn = Connection::open(&config.queue_db).unwrap();
        insert_groups(
            &mut conn,
            &config.input_dir,
            first,
            12,
            files,
            now - 49.0 * 3600.0,
        );
        let started = Instant::now();
        let scanned: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM ingest_queue NOT INDEXED WHERE state = 'completed' AND completed_at <= ?1",
                [cutoffs.completed_inputs],
                |row| row.get(0),
            )
            .unwrap();
        naive.push(started.elapsed().as_secs_f64());
        assert!(scanned as usize >= groups);
        drop(conn);
        create_files(&config.input_dir, first..first + 12, files);
        let cpu_before = cpu_seconds(UsageWho::RUSAGE_SELF);
        let started = Instant::now();
        let report = Sweep::new(&config, now)
            .run(&queue, &AtomicBool::new(false))
            .unwrap();
        sweeps.push(started.elapsed().as_secs_f64());
        sweep_cpu.push(cpu_seconds(UsageWho::RUSAGE_SELF) - cpu_before);
        assert_eq!(report.total().files as usize, 12 * files);
    }
    println!(
        "  steady-state sweep (12 due beside {groups} swept): median {:.1} ms wall, {:.1} ms CPU (10 runs); naive full scan of completed groups alone: median {:.1} ms",
        1e3 * median(&mut sweeps),
        1e3 * median(&mut sweep_cpu),
        1e3 * median(&mut naive)
    );
}
