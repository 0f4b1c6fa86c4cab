//! Issue 12 part 2, data lifecycle: the real worker (and `contimgctl gc`)
//! removes exactly the inputs that are due, on real files: simulator-written
//! UVH5 subbands in a temp input dir, a real queue DB whose group times are
//! moved back to age them, a real archive dir on another filesystem (/dev/shm).

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::api::{ApiDaemon, DaemonOptions, process_backend_args};
use common::worker::{WorkerEnv, test_converter_toml, wait_until, write_test_converter};
use contimg::queue::{GroupState, RemovalKind, unix_now};
use contimg::uvh5::simulate::{Profile, SimulateArgs, run};

const HOUR: f64 = 3600.0;
const DAY: f64 = 86_400.0;

fn ctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_contimgctl"))
}

/// A worker environment with the test converter (per-group marker files) and
/// short retention ages (1 h for completed inputs, 1 day for failed ones).
struct Lifecycle {
    env: WorkerEnv,
    control: PathBuf,
}

impl Lifecycle {
    fn new(extra: &str) -> Self {
        let env = WorkerEnv::new();
        let control = env.root.path().join("control");
        std::fs::create_dir_all(&control).unwrap();
        let script = write_test_converter(env.root.path());
        // A key in `extra` replaces the default here.
        let defaults: Vec<&str> = [
            "expected_subbands = 4",
            "max_retries = 0",
            "incomplete_timeout_s = 600.0",
            "drain_timeout_s = 1.0",
            "retain_input_hours = 1.0",
            "retain_failed_days = 1.0",
            "retention_interval_s = 10.0",
        ]
        .into_iter()
        .filter(|line| {
            let key = line.split('=').next().unwrap_or("").trim();
            !extra
                .lines()
                .any(|e| e.split('=').next().unwrap_or("").trim() == key)
        })
        .collect();
        env.write_config(&format!(
            "{}\n{extra}\n{}",
            defaults.join("\n"),
            test_converter_toml(&script, &control)
        ));
        Self { env, control }
    }

    /// Four real UVH5 subbands of one group at `start` (no jitter, so the
    /// group id is `start`); returns their paths.
    fn simulate(&self, start: &str, seed: u64) -> Vec<PathBuf> {
        let report = run(&SimulateArgs {
            input_dir: self.env.input_dir.clone(),
            groups: 1,
            interval: 0.0,
            jitter: 0.0,
            subbands: 4,
            profile: Profile::Small,
            corrupt_rate: 0.0,
            start: Some(start.to_string()),
            seed,
        })
        .expect("simulate a group");
        report.groups[0].files.clone()
    }

    fn db(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.env.queue_db()).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn
    }

    /// Moves a group's end back by `age` seconds (as if it ended then).
    fn age(&self, group_id: &str, age: f64) {
        let at = unix_now() - age;
        let changed = self
            .db()
            .execute(
                "UPDATE ingest_queue SET last_update = ?1, started_at = ?1,
                     completed_at = CASE WHEN completed_at IS NULL THEN NULL ELSE ?1 END
                 WHERE group_id = ?2",
                rusqlite::params![at, group_id],
            )
            .unwrap();
        assert_eq!(changed, 1, "no group {group_id}");
    }

    fn state(&self, group_id: &str) -> Option<GroupState> {
        Some(self.env.reader().group(group_id).ok()??.summary.state)
    }

    /// (group, path, kind, action, bytes, reason) of every `removals` row.
    fn removals(&self) -> Vec<(String, String, String, String, u64, String)> {
        let conn = self.db();
        let mut stmt = conn
            .prepare(
                "SELECT COALESCE(group_id, ''), path, kind, action, bytes, reason FROM removals ORDER BY path",
            )
            .unwrap();
        stmt.query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get::<_, i64>(4)? as u64,
                row.get(5)?,
            ))
        })
        .unwrap()
        .map(|row| row.unwrap())
        .collect()
    }

    fn gc(&self, args: &[&str]) -> Output {
        Command::new(ctl_bin())
            .arg("--state-dir")
            .arg(&self.env.state_dir)
            .arg("gc")
            .args(args)
            .env_remove("CONTIMG_BACKEND")
            .output()
            .expect("run contimgctl gc")
    }
}

fn sizes(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum()
}

fn paths(files: &[PathBuf]) -> BTreeSet<String> {
    files
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_worker_removes_exactly_the_completed_inputs_past_their_age() {
    let lc = Lifecycle::new("");
    let worker = lc.env.spawn();
    assert!(
        wait_until(Duration::from_secs(10), || worker.log().contains("ready")),
        "{}",
        worker.log()
    );
    let old_done = "2025-10-13T10:00:00";
    let new_done = "2025-10-13T10:10:00";
    let failed_recent = "2025-10-13T10:20:00";
    let failed_old = "2025-10-13T10:30:00";
    let converting = "2025-10-13T10:40:00";
    for group in [failed_recent, failed_old] {
        std::fs::write(lc.control.join(format!("fail-always-{group}")), b"").unwrap();
    }
    let files_old_done = lc.simulate(old_done, 1);
    let files_new_done = lc.simulate(new_done, 2);
    let files_failed_recent = lc.simulate(failed_recent, 3);
    let files_failed_old = lc.simulate(failed_old, 4);
    assert!(
        wait_until(Duration::from_secs(60), || {
            lc.env.count(GroupState::Completed) == 2 && lc.env.count(GroupState::Failed) == 2
        }),
        "{:?}\n{}",
        lc.env.stats(),
        worker.log()
    );
    // One group held in conversion while the sweep runs.
    std::fs::write(lc.control.join("slow"), b"120").unwrap();
    let files_converting = lc.simulate(converting, 5);
    assert!(
        wait_until(Duration::from_secs(30), || lc.state(converting)
            == Some(GroupState::InProgress)),
        "{}",
        worker.log()
    );

    // Completed 2 h ago (due), just now (not); failed 2 h ago (kept for a day),
    // 2 days ago (due); converting, with every time 10 days back (never due).
    lc.age(old_done, 2.0 * HOUR);
    lc.age(failed_recent, 2.0 * HOUR);
    lc.age(failed_old, 2.0 * DAY);
    lc.age(converting, 10.0 * DAY);
    let freed = sizes(&files_old_done) + sizes(&files_failed_old);

    // The periodic sweep (every 10 s) removes them.
    // (Files go inside the transaction that records them: wait for both.)
    let removed = wait_until(Duration::from_secs(40), || {
        files_old_done
            .iter()
            .chain(&files_failed_old)
            .all(|f| !f.exists())
            && lc.removals().len() == 8
    });
    assert!(removed, "due inputs still there\n{}", worker.log());
    for kept in files_new_done
        .iter()
        .chain(&files_failed_recent)
        .chain(&files_converting)
    {
        assert!(kept.exists(), "{} was removed", kept.display());
    }
    assert_eq!(lc.state(converting), Some(GroupState::InProgress));

    // Recorded: one row per file, the bytes, the journal line, the totals.
    let rows = lc.removals();
    let recorded: BTreeSet<String> = rows.iter().map(|r| r.1.clone()).collect();
    let mut expected = paths(&files_old_done);
    expected.extend(paths(&files_failed_old));
    assert_eq!(recorded, expected);
    assert!(
        rows.iter().all(|r| r.2 == "input" && r.3 == "deleted"),
        "{rows:?}"
    );
    assert_eq!(rows.iter().map(|r| r.4).sum::<u64>(), freed);
    let totals = lc.env.reader().removal_totals().unwrap();
    assert_eq!(totals[&RemovalKind::Input].bytes, freed);
    assert_eq!(totals[&RemovalKind::Input].files, 8);
    let log = worker.log();
    for file in &files_old_done {
        assert!(
            log.lines().any(|line| line.contains("retention: deleted")
                && line.contains(&*file.to_string_lossy())
                && line.contains(old_done)),
            "no journal line for {}\n{log}",
            file.display()
        );
    }
    assert_eq!(worker.stop(), Some(0));

    // The same totals on the real API's /metrics.
    let bytes_line = format!("contimg_retention_freed_bytes_total{{kind=\"input\"}} {freed}\n");
    let files_line = "contimg_retention_removed_files_total{kind=\"input\"} 8\n";
    let Lifecycle { env, .. } = lc;
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let daemon =
            ApiDaemon::start_with(env, &DaemonOptions::default(), &process_backend_args()).await;
        let mut text = String::new();
        for _ in 0..100 {
            text = daemon.get("/metrics").await.unwrap().text().await.unwrap();
            if text.contains(&bytes_line) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(text.contains(&bytes_line), "no {bytes_line:?} in\n{text}");
        assert!(text.contains(files_line), "{text}");
    });
}

#[test]
fn gc_dry_run_removes_nothing_and_lists_what_the_real_run_archives() {
    // The archive on another filesystem: the copy-and-fsync path.
    let archive = tempfile::tempdir_in("/dev/shm").expect("a dir on /dev/shm");
    // The worker keeps running beside gc; its own sweep only at start-up.
    let lc = Lifecycle::new(&format!(
        "archive_dir = {:?}\nretention_interval_s = 86400.0",
        archive.path()
    ));
    let worker = lc.env.spawn();
    assert!(wait_until(Duration::from_secs(10), || worker
        .log()
        .contains("ready")));
    let done = "2025-10-13T11:00:00";
    let recent = "2025-10-13T11:10:00";
    let files = lc.simulate(done, 7);
    let files_recent = lc.simulate(recent, 8);
    assert!(
        wait_until(Duration::from_secs(60), || lc
            .env
            .count(GroupState::Completed)
            == 2),
        "{}",
        worker.log()
    );

    // A hostile writer swaps one subband for a symlink to a file outside input_dir.
    let precious = lc.env.root.path().join("precious.hdf5");
    std::fs::write(&precious, b"not ours").unwrap();
    let planted = files[0].clone();
    std::fs::remove_file(&planted).unwrap();
    std::os::unix::fs::symlink(&precious, &planted).unwrap();
    let contents: Vec<Vec<u8>> = files[1..]
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    lc.age(done, 3.0 * HOUR);

    let dry = lc.gc(&["--dry-run", "--json"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(plan["dry_run"], true);
    assert!(
        files.iter().all(|f| f.symlink_metadata().is_ok()),
        "the dry run removed something"
    );
    assert!(lc.removals().is_empty());
    let listed = |report: &serde_json::Value| -> BTreeSet<(String, String)> {
        report["removals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["path"].as_str().unwrap().to_string(),
                    r["action"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let planned = listed(&plan);
    let expected: BTreeSet<(String, String)> = files
        .iter()
        .map(|f| {
            let action = if *f == planted { "deleted" } else { "archived" };
            (f.to_string_lossy().into_owned(), action.to_string())
        })
        .collect();
    assert_eq!(planned, expected);

    let real = lc.gc(&["--json"]);
    assert!(
        real.status.success(),
        "{}",
        String::from_utf8_lossy(&real.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&real.stdout).unwrap();
    assert_eq!(listed(&report), planned);
    assert_eq!(report["totals"], plan["totals"]);

    // Archived byte for byte under the same names; the link removed, its
    // target untouched; the recent group kept.
    for (file, content) in files[1..].iter().zip(&contents) {
        assert!(!file.exists());
        let moved = archive.path().join(file.file_name().unwrap());
        assert_eq!(&std::fs::read(&moved).unwrap(), content);
        assert_ne!(
            std::fs::metadata(&moved).unwrap().dev(),
            std::fs::metadata(&lc.env.input_dir).unwrap().dev()
        );
    }
    assert!(planted.symlink_metadata().is_err());
    assert_eq!(std::fs::read(&precious).unwrap(), b"not ours");
    assert!(!archive.path().join(planted.file_name().unwrap()).exists());
    assert!(files_recent.iter().all(|f| f.exists()));
    let rows = lc.removals();
    let link_row = rows
        .iter()
        .find(|r| r.1 == planted.to_string_lossy())
        .unwrap();
    assert_eq!((link_row.3.as_str(), link_row.4), ("deleted", 0));
    assert!(link_row.5.contains("symbolic link"), "{link_row:?}");
    // A second run finds nothing more.
    let again = lc.gc(&["--json"]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["removals"].as_array().unwrap().len(), 0, "{again}");
    let log = worker.log();
    assert!(!log.contains("database is locked"), "{log}");
    assert_eq!(worker.stop(), Some(0), "{log}");
}

#[test]
fn gc_as_a_user_who_cannot_delete_names_each_file_and_exits_1() {
    let lc = Lifecycle::new("");
    let worker = lc.env.spawn();
    assert!(wait_until(Duration::from_secs(10), || worker
        .log()
        .contains("ready")));
    let done = "2025-10-13T12:00:00";
    let files = lc.simulate(done, 9);
    assert!(wait_until(Duration::from_secs(60), || lc
        .env
        .count(GroupState::Completed)
        == 1));
    assert_eq!(worker.stop(), Some(0));
    lc.age(done, 3.0 * HOUR);
    let nobody = |args: &[&str]| -> Output {
        use std::os::unix::process::CommandExt;
        Command::new(ctl_bin())
            .arg("--state-dir")
            .arg(&lc.env.state_dir)
            .arg("gc")
            .args(args)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    let chmod = |path: &Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    chmod(lc.env.root.path(), 0o755);
    let give_to_nobody = |path: &Path| {
        nix::unistd::chown(path, Some(65534.into()), Some(65534.into())).unwrap();
    };
    // A user who may not write the configured dirs: the config loader's
    // verdict (exit 2, naming each dir), before anything is touched.
    let unconfigured = nobody(&[]);
    let stderr = String::from_utf8_lossy(&unconfigured.stderr);
    assert_eq!(unconfigured.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not writable"), "{stderr}");

    // The state, output and scratch dirs are nobody's (the worker's user).
    for dir in [&lc.env.state_dir, &lc.env.output_dir, &lc.env.scratch_dir] {
        for entry in std::fs::read_dir(dir).unwrap() {
            give_to_nobody(&entry.unwrap().path());
        }
        give_to_nobody(dir);
    }
    // root is not the queue DB's owner: refused, exit 1, nothing touched.
    let refused = lc.gc(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("owner of the queue DB"), "{stderr}");
    assert!(stderr.contains("sudo -u nobody"), "{stderr}");
    assert!(files.iter().all(|f| f.exists()));

    // The owner, but the inputs are root's in root's input_dir.
    let failed = nobody(&[]);
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    for file in &files {
        assert!(
            stderr.contains(&*file.to_string_lossy()) && stderr.contains("Permission denied"),
            "{stderr}"
        );
        assert!(file.exists());
    }
    assert!(lc.removals().is_empty());
    // Still due: once the inputs are nobody's too, the same run removes them.
    for path in files.iter().chain([&lc.env.input_dir]) {
        give_to_nobody(path);
    }
    let ok = nobody(&[]);
    assert!(ok.status.success(), "{ok:?}");
    assert!(files.iter().all(|f| !f.exists()));
    assert_eq!(lc.removals().len(), files.len());
}
