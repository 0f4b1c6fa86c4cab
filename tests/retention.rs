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
    let files_line = "contimg_retention_removed_files_total{kind=\"input\"} 8\n".to_string();
    let Lifecycle { env, .. } = lc;
    assert_metrics_show(env, &[bytes_line, files_line]);
}

/// Starts the real API on `env` and waits until its /metrics has every line
/// (it reads the queue DB's totals on its own refresh).
fn assert_metrics_show(env: common::worker::WorkerEnv, lines: &[String]) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let daemon =
            ApiDaemon::start_with(env, &DaemonOptions::default(), &process_backend_args()).await;
        let mut text = String::new();
        for _ in 0..100 {
            text = daemon.get("/metrics").await.unwrap().text().await.unwrap();
            if lines.iter().all(|line| text.contains(line)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for line in lines {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
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
    let listed = |report: &serde_json::Value| listed_with(report, "action");
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

/// Sets a file's (or a symlink's own) modification time `age` seconds back.
fn age_mtime(path: &Path, age: f64) {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let at = TimeSpec::new((unix_now() - age) as i64, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &at,
        &at,
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

fn count_rows(conn: &rusqlite::Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// (path, `field`) of every removal a gc report lists.
fn listed_with(report: &serde_json::Value, field: &str) -> BTreeSet<(String, String)> {
    report["removals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap().to_string(),
                r[field].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn listed_kinds(report: &serde_json::Value) -> BTreeSet<(String, String)> {
    listed_with(report, "kind")
}

fn gc_json(lc: &Lifecycle, args: &[&str]) -> serde_json::Value {
    let out = lc.gc(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn stray_inputs_go_retain_failed_days_after_they_were_recorded() {
    // Validation on: a file that is not UVH5 is rejected, not registered.
    let lc = Lifecycle::new("validate_uvh5 = true");
    let worker = lc.env.spawn();
    assert!(wait_until(Duration::from_secs(10), || worker
        .log()
        .contains("ready")));
    let done = "2025-10-13T13:00:00";
    let _kept_inputs = lc.simulate(done, 11);
    assert!(
        wait_until(Duration::from_secs(60), || lc
            .env
            .count(GroupState::Completed)
            == 1),
        "{}",
        worker.log()
    );
    // What the real worker records: four duplicates (one second off the
    // completed group), a file that fails validation, an unrecognised name
    // and a symlink (to a file outside input_dir) under an unrecognised name.
    let duplicates = lc.simulate("2025-10-13T13:00:01", 12);
    let rejected = lc.env.drop_subband(
        contimg::ingest::names::parse_timestamp("2025-10-13T13:30:00").unwrap(),
        0,
        b"not an HDF5 file",
    );
    let notes = lc.env.input_dir.join("notes.txt");
    std::fs::write(&notes, b"operator notes").unwrap();
    let precious = lc.env.root.path().join("precious");
    std::fs::write(&precious, b"not ours").unwrap();
    let link = lc.env.input_dir.join("link-to-precious");
    std::os::unix::fs::symlink(&precious, &link).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let conn = lc.db();
            count_rows(&conn, "duplicate_files") == 4
                && count_rows(&conn, "rejected_files") == 1
                && count_rows(&conn, "unrecognised_files") == 2
        }),
        "{}",
        worker.log()
    );
    assert_eq!(worker.stop(), Some(0));

    // A late subband (its group had closed), recorded by the queue itself.
    let ts_done = contimg::ingest::names::parse_timestamp(done).unwrap();
    let late = lc.env.input_dir.join(format!("{done}_sb04.hdf5"));
    std::fs::write(&late, vec![7u8; 321]).unwrap();
    let mut queue = contimg::queue::Queue::open(&lc.env.queue_db()).unwrap();
    let late_reg = queue
        .register_file(
            &contimg::queue::NewFile {
                path: late.to_string_lossy().into_owned(),
                timestamp: ts_done,
                subband_idx: 4,
                size_bytes: Some(321),
                mtime: None,
                meta_json: None,
            },
            4,
            60.0,
            unix_now(),
        )
        .unwrap();
    assert!(
        matches!(late_reg, contimg::queue::Registration::Late { .. }),
        "{late_reg:?}"
    );
    // A member of a group still collecting, with an (inconsistent) rejected
    // record: a registered file of an unfinished group is never removed.
    let member = lc.env.input_dir.join("2025-10-13T15:00:00_sb00.hdf5");
    std::fs::write(&member, b"member").unwrap();
    queue
        .register_file(
            &contimg::queue::NewFile {
                path: member.to_string_lossy().into_owned(),
                timestamp: contimg::ingest::names::parse_timestamp("2025-10-13T15:00:00").unwrap(),
                subband_idx: 0,
                size_bytes: Some(6),
                mtime: None,
                meta_json: None,
            },
            4,
            60.0,
            unix_now(),
        )
        .unwrap();
    drop(queue);
    lc.db()
        .execute(
            "INSERT INTO rejected_files(path, reason, rejected_at) VALUES (?1, 'x', 0)",
            [member.to_string_lossy()],
        )
        .unwrap();
    // Never recorded: an unrecognised name (due by its mtime), and names
    // retention must leave: a correlator name the worker has not registered
    // yet, a dot-file, a correlator temp name, a directory.
    let core = lc.env.input_dir.join("core.4242");
    std::fs::write(&core, vec![0u8; 1000]).unwrap();
    let unregistered = lc.env.input_dir.join("2025-10-13T14:00:00_sb00.hdf5");
    let dot = lc.env.input_dir.join(".partial");
    let temp = lc
        .env
        .input_dir
        .join("2025-10-13T14:00:00_sb01_incomplete.hdf5");
    let subdir = lc.env.input_dir.join("subdir");
    for file in [&unregistered, &dot, &temp] {
        std::fs::write(file, b"keep").unwrap();
    }
    std::fs::create_dir(&subdir).unwrap();

    // Everything recorded two days ago (retain_failed_days = 1), but one
    // duplicate, recorded just now.
    let recent_duplicate = duplicates[3].clone();
    let two_days_ago = unix_now() - 2.0 * DAY;
    let conn = lc.db();
    for sql in [
        "UPDATE duplicate_files SET seen_at = ?1 WHERE path != ?2",
        "UPDATE late_files SET seen_at = ?1 WHERE path != ?2",
        "UPDATE rejected_files SET rejected_at = ?1 WHERE path != ?2",
        "UPDATE unrecognised_files SET first_seen_at = ?1, last_seen_at = ?1 WHERE path != ?2",
    ] {
        conn.execute(
            sql,
            rusqlite::params![two_days_ago, recent_duplicate.to_string_lossy()],
        )
        .unwrap();
    }
    drop(conn);
    for entry in std::fs::read_dir(&lc.env.input_dir).unwrap() {
        age_mtime(&entry.unwrap().path(), 2.0 * DAY);
    }
    let due: Vec<PathBuf> = duplicates[..3]
        .iter()
        .cloned()
        .chain([rejected, notes, link.clone(), late, core])
        .collect();
    let expected: BTreeSet<(String, String)> = due
        .iter()
        .map(|p| (p.to_string_lossy().into_owned(), "stray_input".to_string()))
        .collect();
    let kept: Vec<PathBuf> = [recent_duplicate, member, unregistered, dot, temp, subdir]
        .into_iter()
        .chain(_kept_inputs.iter().cloned())
        .collect();

    let plan = gc_json(&lc, &["--dry-run", "--json"]);
    assert_eq!(listed_kinds(&plan), expected, "{plan}");
    assert!(due.iter().all(|f| f.symlink_metadata().is_ok()));
    assert!(lc.removals().is_empty());

    let report = gc_json(&lc, &["--json"]);
    assert_eq!(listed_kinds(&report), expected, "{report}");
    assert_eq!(report["totals"], plan["totals"]);
    for file in &due {
        assert!(file.symlink_metadata().is_err(), "{} kept", file.display());
    }
    for file in &kept {
        assert!(
            file.symlink_metadata().is_ok(),
            "{} removed",
            file.display()
        );
    }
    assert_eq!(std::fs::read(&precious).unwrap(), b"not ours");
    // Recorded (the link as 0 bytes), counted in the totals, and the records
    // of what is gone are dropped; the recent duplicate's stays.
    let rows = lc.removals();
    assert_eq!(rows.len(), due.len(), "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.2 == "stray_input" && r.3 == "deleted")
    );
    let link_row = rows.iter().find(|r| r.1 == link.to_string_lossy()).unwrap();
    assert_eq!(link_row.4, 0);
    let totals = lc.env.reader().removal_totals().unwrap();
    assert_eq!(totals[&RemovalKind::StrayInput].files, due.len() as u64);
    assert_eq!(
        totals[&RemovalKind::StrayInput].bytes,
        rows.iter().map(|r| r.4).sum::<u64>()
    );
    let conn = lc.db();
    assert_eq!(count_rows(&conn, "duplicate_files"), 1);
    assert_eq!(count_rows(&conn, "late_files"), 0);
    assert_eq!(count_rows(&conn, "unrecognised_files"), 0);
    assert_eq!(
        count_rows(&conn, "rejected_files"),
        1,
        "the member's record stays"
    );
    let again = gc_json(&lc, &["--json"]);
    assert_eq!(again["removals"].as_array().unwrap().len(), 0, "{again}");

    // The real API's /metrics counts them under their own kind.
    let bytes_line = format!(
        "contimg_retention_freed_bytes_total{{kind=\"stray_input\"}} {}\n",
        totals[&RemovalKind::StrayInput].bytes
    );
    let files_line = format!(
        "contimg_retention_removed_files_total{{kind=\"stray_input\"}} {}\n",
        due.len()
    );
    drop(conn);
    let Lifecycle { env, .. } = lc;
    assert_metrics_show(env, &[bytes_line, files_line]);
}

#[test]
fn a_groups_slurm_job_logs_go_with_its_inputs_never_an_in_flight_jobs() {
    use contimg::queue::{NewFile, Queue, RetryPolicy, Timings};
    let lc = Lifecycle::new("");
    let mut queue = Queue::open(&lc.env.queue_db()).unwrap();
    // The default slurm.log_dir: scratch_dir/slurm-jobs.
    let log_dir = lc.env.scratch_dir.join("slurm-jobs");
    std::fs::create_dir_all(&log_dir).unwrap();
    let register = |queue: &mut Queue, id: &str| -> Vec<PathBuf> {
        let ts = contimg::ingest::names::parse_timestamp(id).unwrap();
        (0..4)
            .map(|sb| {
                let path = lc.env.drop_subband(ts, sb, &[sb as u8; 500]);
                queue
                    .register_file(
                        &NewFile {
                            path: path.to_string_lossy().into_owned(),
                            timestamp: ts,
                            subband_idx: sb,
                            size_bytes: Some(500),
                            mtime: None,
                            meta_json: None,
                        },
                        4,
                        60.0,
                        unix_now(),
                    )
                    .unwrap();
                path
            })
            .collect()
    };
    // Writes an attempt's job log and exit record, as a job does.
    let submit = |queue: &mut Queue, id: &str, attempt: u32, job: &str| -> Vec<PathBuf> {
        let log = log_dir.join(format!("{id}.attempt{attempt}.log"));
        queue
            .mark_submitting(id, attempt, "slurm", &log.to_string_lossy())
            .unwrap();
        queue
            .record_job_submitted(id, attempt, job, "RUNNING", unix_now())
            .unwrap();
        std::fs::write(&log, vec![b'l'; 2000]).unwrap();
        vec![log]
    };
    let finish = |log: &Path| -> PathBuf {
        let exit = log.with_extension("exit");
        std::fs::write(&exit, b"exit=1 node=n1 started=1 finished=2\n").unwrap();
        exit
    };
    // Completed on its second attempt; both attempts ran as jobs.
    let done = "2025-10-13T16:00:00";
    let done_inputs = register(&mut queue, done);
    let now = unix_now();
    let first = queue.claim_next(now).unwrap().unwrap();
    assert_eq!(first.group_id, done);
    let mut done_logs = submit(&mut queue, done, first.attempt, "101");
    done_logs.push(finish(&done_logs[0]));
    let policy = RetryPolicy {
        max_retries: 1,
        backoff_s: 0.0,
        backoff_max_s: 0.0,
    };
    queue
        .fail_attempt(done, first.attempt, "boom", &policy, now)
        .unwrap();
    let second = queue.claim_next(now + 1.0).unwrap().unwrap();
    assert_eq!(second.group_id, done);
    let second_logs = submit(&mut queue, done, second.attempt, "102");
    done_logs.push(finish(&second_logs[0]));
    done_logs.extend(second_logs);
    queue
        .complete(done, second.attempt, &Timings::default(), None, now + 2.0)
        .unwrap();
    // In flight: claimed, its job submitted and writing its log.
    let running = "2025-10-13T16:10:00";
    let running_inputs = register(&mut queue, running);
    let claimed = queue.claim_next(now + 3.0).unwrap().unwrap();
    assert_eq!(claimed.group_id, running);
    let running_logs = submit(&mut queue, running, claimed.attempt, "103");
    drop(queue);
    lc.age(done, 2.0 * HOUR);
    age_mtime(&log_dir, 2.0 * HOUR);

    let mut expected: BTreeSet<(String, String)> = done_inputs
        .iter()
        .map(|p| (p.to_string_lossy().into_owned(), "input".to_string()))
        .collect();
    expected.extend(
        done_logs
            .iter()
            .map(|p| (p.to_string_lossy().into_owned(), "job_log".to_string())),
    );
    let log_bytes = sizes(&done_logs);
    let plan = gc_json(&lc, &["--dry-run", "--json"]);
    assert_eq!(listed_kinds(&plan), expected, "{plan}");
    assert!(done_logs.iter().all(|f| f.exists()));

    let report = gc_json(&lc, &["--json"]);
    assert_eq!(listed_kinds(&report), expected, "{report}");
    assert!(log_dir.is_dir(), "the Slurm log dir was swept as scratch");
    for file in done_inputs.iter().chain(&done_logs) {
        assert!(!file.exists(), "{} kept", file.display());
    }
    for file in running_inputs.iter().chain(&running_logs) {
        assert!(file.exists(), "{} removed", file.display());
    }
    let rows = lc.removals();
    let logs: Vec<_> = rows.iter().filter(|r| r.2 == "job_log").collect();
    assert_eq!(logs.len(), done_logs.len(), "{rows:?}");
    assert!(logs.iter().all(|r| r.0 == done && r.3 == "deleted"));
    assert_eq!(
        lc.env.reader().removal_totals().unwrap()[&RemovalKind::JobLog].bytes,
        log_bytes
    );
    let again = gc_json(&lc, &["--json"]);
    assert_eq!(again["removals"].as_array().unwrap().len(), 0, "{again}");
}
