//! Core benchmarks (issue [CORE]); run with `cargo bench --bench core` or
//! `ops/bench/core.sh`. Prints medians and ratios against baselines measured in the
//! same run; asserts nothing about time.
//!
//! 1. Queue stats on a 1,000,000-group DB vs the original pipeline's query on the
//!    original schema (full scans, no indexes).
//! 2. Bootstrap registration of 100,000 files (6,250 groups) by the real worker.
//! 3. Latency from the last subband's rename to its group being `pending`.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use contimg::ingest::names::subband_file_name;
use contimg::queue::{Queue, QueueReader, unix_now};
use rusqlite::{Connection, params};

const T0: f64 = 1_760_362_083.0;

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx]
}

fn fill(conn: &Connection, groups: usize, now: f64) {
    let states = [
        "completed",
        "completed",
        "completed",
        "completed",
        "failed",
        "pending",
        "collecting",
        "in_progress",
    ];
    let mut insert = conn
        .prepare(
            "INSERT INTO ingest_queue(group_id, state, received_at, last_update, expected_subbands, retry_count)
             VALUES (?1, ?2, ?3, ?4, 16, 0)",
        )
        .unwrap();
    for i in 0..groups {
        let ts = T0 - 309.0 * (groups - i) as f64;
        // The newest ~12 groups completed within the last hour.
        let last_update = if i + 12 >= groups {
            now - 60.0
        } else {
            ts + 300.0
        };
        insert
            .execute(params![
                contimg::queue::group_id_for(ts) + &format!("-{i}"),
                states[i % states.len()],
                ts,
                last_update
            ])
            .unwrap();
    }
}

fn bench_stats(dir: &Path) {
    const GROUPS: usize = 1_000_000;
    let now = unix_now();
    // Ours: the migrated schema (indexes + trigger-kept counts).
    let ours = dir.join("ours.sqlite3");
    drop(Queue::open(&ours).unwrap());
    {
        let mut conn = Connection::open(&ours).unwrap();
        let tx = conn.transaction().unwrap();
        fill(&tx, GROUPS, now);
        tx.commit().unwrap();
    }
    // The original: its schema, no indexes, no WAL.
    let original = dir.join("original.sqlite3");
    {
        let mut conn = Connection::open(&original).unwrap();
        conn.execute_batch(
            "CREATE TABLE ingest_queue (group_id TEXT PRIMARY KEY, state TEXT NOT NULL, received_at REAL NOT NULL,
                 last_update REAL NOT NULL, expected_subbands INTEGER, retry_count INTEGER NOT NULL DEFAULT 0,
                 error TEXT, checkpoint_path TEXT, processing_stage TEXT DEFAULT 'collecting', chunk_minutes REAL)",
        )
        .unwrap();
        let tx = conn.transaction().unwrap();
        fill(&tx, GROUPS, now);
        tx.commit().unwrap();
    }
    let reader = QueueReader::open(&ours).unwrap();
    let stats = reader.stats(now).unwrap();
    assert_eq!(stats.counts.values().sum::<u64>(), GROUPS as u64);
    let mut ours_ms: Vec<f64> = (0..200)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(reader.stats(now).unwrap());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let conn = Connection::open(&original).unwrap();
    let mut original_ms: Vec<f64> = (0..20)
        .map(|_| {
            let start = Instant::now();
            let mut stmt = conn.prepare("SELECT state, COUNT(*) FROM ingest_queue GROUP BY state").unwrap();
            let counts: Vec<(String, i64)> =
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
            let recent: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM ingest_queue WHERE state = 'completed' AND last_update >= ?1",
                    [now - 3600.0],
                    |r| r.get(0),
                )
                .unwrap();
            std::hint::black_box((counts, recent));
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let ours_median = median(&mut ours_ms);
    let original_median = median(&mut original_ms);
    println!(
        "queue stats, {GROUPS} groups: contimg median {ours_median:.3} ms (p99 {:.3} ms); original query median {original_median:.1} ms; speed-up {:.0}x",
        percentile(&mut ours_ms, 0.99),
        original_median / ours_median
    );
}

/// `validate`: UVH5 validation on, with 2 conversion slots (so 2 validators).
fn write_config(state: &Path, input: &Path, output: &Path, validate: bool) {
    let max_workers = if validate { 2 } else { 1 };
    std::fs::write(
        state.join("streaming.toml"),
        format!(
            "input_dir = {input:?}\noutput_dir = {output:?}\nscratch_dir = {output:?}\nvalidate_uvh5 = {validate}\n\
             log_level = \"WARNING\"\npoll_interval = 5.0\nworker_poll_interval = 5.0\nmax_workers = {max_workers}\n\
             monitoring = false\n[converter]\nkind = \"command\"\nargv = [\"sleep\", \"3600\"]\n"
        ),
    )
    .unwrap();
}

/// The real worker, started with a notify socket and returned once it sent
/// `READY=1`; killed when dropped.
struct ReadyWorker(std::process::Child);

impl ReadyWorker {
    fn start(state: &Path, socket_path: &Path, timeout: Duration) -> Self {
        let socket = UnixDatagram::bind(socket_path).unwrap();
        socket.set_read_timeout(Some(timeout)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_contimg-stream"))
            .arg("--state-dir")
            .arg(state)
            .env("NOTIFY_SOCKET", socket_path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let worker = Self(child);
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.recv(&mut buf).expect("READY=1 before the timeout");
            if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
                return worker;
            }
        }
    }
}

impl Drop for ReadyWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Without validation the files are 1 byte. With it (`validated`), every name is
/// a hard link to one of 16 real small-profile subbands: each is opened and
/// inspected by a validator, from the page cache.
fn bench_bootstrap(dir: &Path, validated: bool) {
    let groups: usize = std::env::var("CONTIMG_BENCH_BOOT_GROUPS")
        .ok()
        .and_then(|g| g.parse().ok())
        .unwrap_or(6_250);
    let label = if validated { "boot-validated" } else { "boot" };
    let state = dir.join(format!("{label}-state"));
    let input = dir.join(format!("{label}-in"));
    let output = dir.join(format!("{label}-out"));
    for d in [&state, &input, &output] {
        std::fs::create_dir_all(d).unwrap();
    }
    let real: Vec<std::path::PathBuf> = if validated {
        let report = contimg::uvh5::simulate::run(&contimg::uvh5::simulate::SimulateArgs {
            input_dir: dir.join(format!("{label}-real")),
            groups: 1,
            interval: 0.0,
            jitter: 0.0,
            subbands: 16,
            profile: contimg::uvh5::simulate::Profile::Small,
            corrupt_rate: 0.0,
            start: Some("2025-10-13T10:00:00".into()),
            seed: 1,
        })
        .unwrap();
        report.groups[0].files.clone()
    } else {
        Vec::new()
    };
    for g in 0..groups {
        for sb in 0..16 {
            let ts = T0 + 309.0 * g as f64 + f64::from(sb % 5);
            let name = input.join(subband_file_name(ts, sb));
            match real
                .iter()
                .find(|f| f.to_string_lossy().contains(&format!("_sb{sb:02}.")))
            {
                Some(source) => std::fs::hard_link(source, name).unwrap(),
                None => std::fs::write(name, b"x").unwrap(),
            }
        }
    }
    write_config(&state, &input, &output, validated);
    let start = Instant::now();
    let worker = ReadyWorker::start(
        &state,
        &dir.join(format!("{label}-notify.sock")),
        Duration::from_secs(if validated { 1800 } else { 120 }),
    );
    let elapsed = start.elapsed().as_secs_f64();
    drop(worker);
    let reader = QueueReader::open(&state.join("ingest.sqlite3")).unwrap();
    let stats = reader.stats(unix_now()).unwrap();
    assert_eq!(stats.counts.values().sum::<u64>(), groups as u64);
    println!(
        "bootstrap{}: {} files / {groups} groups registered, READY after {elapsed:.2} s",
        if validated {
            " with UVH5 validation (2 validators)"
        } else {
            ""
        },
        groups * 16
    );
}

fn bench_latency(dir: &Path) {
    const GROUPS: usize = 200;
    let state = dir.join("lat-state");
    let input = dir.join("lat-in");
    let output = dir.join("lat-out");
    for d in [&state, &input, &output] {
        std::fs::create_dir_all(d).unwrap();
    }
    write_config(&state, &input, &output, false);
    let worker = ReadyWorker::start(
        &state,
        &dir.join("lat-notify.sock"),
        Duration::from_secs(30),
    );
    let db = state.join("ingest.sqlite3");
    let conn =
        Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut latencies = Vec::with_capacity(GROUPS);
    for g in 0..GROUPS {
        let ts = T0 + 309.0 * g as f64;
        for sb in 0..16u32 {
            let name = subband_file_name(ts, sb);
            let temp = input.join(format!(".{name}.tmp"));
            std::fs::write(&temp, b"x").unwrap();
            let start = Instant::now();
            std::fs::rename(&temp, input.join(&name)).unwrap();
            if sb == 15 {
                let group_id = contimg::queue::group_id_for(ts);
                loop {
                    let state: Option<String> = conn
                        .query_row(
                            "SELECT state FROM ingest_queue WHERE group_id = ?1",
                            [&group_id],
                            |r| r.get(0),
                        )
                        .ok();
                    if matches!(state.as_deref(), Some("pending" | "in_progress")) {
                        break;
                    }
                    assert!(
                        start.elapsed() < Duration::from_secs(10),
                        "group {group_id} never became pending"
                    );
                    std::thread::sleep(Duration::from_micros(200));
                }
                latencies.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    drop(worker);
    println!(
        "rename -> pending latency over {GROUPS} groups: median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        median(&mut latencies.clone()),
        percentile(&mut latencies.clone(), 0.99),
        latencies.iter().cloned().fold(0.0, f64::max)
    );
}

fn main() {
    // `cargo test --benches` runs this in test mode; only measure under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let only = std::env::var("CONTIMG_BENCH").unwrap_or_default();
    if only.is_empty() || only.contains("stats") {
        bench_stats(dir.path());
    }
    if only.is_empty() || only.split(',').any(|b| b == "bootstrap") {
        bench_bootstrap(dir.path(), false);
    }
    if only.is_empty() || only.contains("bootstrap-validated") {
        bench_bootstrap(dir.path(), true);
    }
    if only.is_empty() || only.contains("latency") {
        bench_latency(dir.path());
    }
}
