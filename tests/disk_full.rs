//! Finding 6 of issue #10: a full state disk must not kill the worker for good.
//!
//! The queue DB lives on a real, small tmpfs that the test mounts (root) and fills
//! with a plain file until ENOSPC. The real worker must stay up, say why it
//! paused, and register and convert what arrived meanwhile once space returns;
//! the DB must pass `PRAGMA integrity_check`. Under the real `contimg-api`
//! (process backend) health and alerts must name the full directory, and no
//! worker the supervisor starts may be left a zombie, even when it cannot write
//! its PID file.
//!
//! Issue 12, disk back-pressure: with `output_dir` on a small tmpfs, the worker
//! claims nothing while space is short (groups stay pending, no attempt, no
//! retry), says so in its heartbeat, the API status, `contimgctl status` and a
//! `claim_paused` alert, and resumes by itself; the default `min_free_gb`
//! pauses on a filesystem smaller than 10 GB; a merge that runs out of space
//! anyway leaves no partial output and completes once the tmpfs grows, without
//! using a retry.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::api::{
    ApiDaemon, DaemonOptions, process_backend_args, stream_bin, wait_json, wait_status,
    zombie_children,
};
use common::tmpfs::Tmpfs;
use common::worker::{WorkerEnv, test_converter_toml, wait_until, write_test_converter};
use contimg::queue::{ClaimPause, GroupState, QueueReader};
use serde_json::Value;

const T0: f64 = 1_760_362_083.0;
const HEALTH: &str = "/api/streaming/health";
const GROUP_SPACING: f64 = 309.0;

fn integrity(queue_db: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(queue_db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open queue DB");
    conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check")
}

fn drop_group(env: &WorkerEnv, group: u32, subbands: u32) {
    for sb in 0..subbands {
        let ts = T0 + f64::from(group) * GROUP_SPACING + f64::from(sb) * 0.5;
        env.drop_subband(ts, sb, format!("group {group} subband {sb}").as_bytes());
    }
}

/// A worker env whose queue DB lives on `tmpfs`, converting groups of 4 with
/// the test converter, plus `extra` config lines.
fn queue_db_on(tmpfs: &Tmpfs, extra: &str) -> (WorkerEnv, PathBuf) {
    let env = WorkerEnv::new();
    let queue_db = tmpfs.path().join("ingest.sqlite3");
    let control = env.root.path().join("control");
    std::fs::create_dir_all(&control).unwrap();
    let script = write_test_converter(env.root.path());
    env.write_config(&format!(
        "queue_db = {queue_db:?}\nexpected_subbands = 4\n{extra}{}",
        test_converter_toml(&script, &control)
    ));
    (env, queue_db)
}

#[test]
fn worker_survives_a_full_state_disk_and_resumes_when_space_returns() {
    let tmpfs = Tmpfs::mount("8m");
    let (env, queue_db) = queue_db_on(&tmpfs, "");
    let mut worker = env.spawn();

    drop_group(&env, 0, 4);
    let count = |state| env_count(&queue_db, state);
    assert!(
        wait_until(Duration::from_secs(30), || count(GroupState::Completed)
            == 1),
        "the first group did not complete\n{}",
        worker.log()
    );

    let filler = tmpfs.fill("filler");
    // Arrivals while the disk is full: the worker must try to register them.
    drop_group(&env, 1, 4);
    drop_group(&env, 2, 4);
    let full_logged = wait_until(Duration::from_secs(20), || {
        worker.log().contains("full") && worker.log().contains(&tmpfs.path().display().to_string())
    });
    // Several status refreshes and poll scans on the full disk.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        worker.exited(),
        None,
        "the worker exited on a full state disk\n{}",
        worker.log()
    );
    assert!(
        full_logged,
        "no log line naming the full state dir\n{}",
        worker.log()
    );

    std::fs::remove_file(&filler).expect("free the space");
    let resumed = wait_until(Duration::from_secs(60), || {
        count(GroupState::Completed) == 3
    });
    assert!(
        resumed,
        "groups that arrived while full were not converted after space returned: completed {}\n{}",
        count(GroupState::Completed),
        worker.log()
    );
    assert!(worker.log().contains("resum"), "{}", worker.log());
    assert_eq!(worker.stop(), Some(0), "clean exit on SIGTERM");
    assert_eq!(integrity(&queue_db), "ok");
}

/// The state disk fills while a burst of files is being registered and groups
/// converted (SQLite meets ENOSPC inside transactions, WAL appends and
/// checkpoints, not on an idle DB), and the worker is killed with SIGKILL while
/// it is full: the queue DB must pass `integrity_check` while full, after the
/// kill and after a restart that registers and converts everything.
#[test]
fn the_queue_db_stays_intact_when_its_disk_fills_mid_burst_and_the_worker_is_killed() {
    let tmpfs = Tmpfs::mount("8m");
    let (env, queue_db) = queue_db_on(&tmpfs, "max_workers = 2\n");
    let worker = env.spawn();
    drop_group(&env, 0, 4);
    assert!(
        wait_until(Duration::from_secs(30), || env_count(
            &queue_db,
            GroupState::Completed
        ) == 1),
        "{}",
        worker.log()
    );

    const GROUPS: u32 = 30;
    let filler = std::thread::scope(|scope| {
        scope.spawn(|| {
            for group in 1..=GROUPS {
                drop_group(&env, group, 4);
            }
        });
        // Let the burst start, then take the last byte while it runs.
        std::thread::sleep(Duration::from_millis(200));
        tmpfs.fill("filler")
    });
    std::thread::sleep(Duration::from_secs(4));
    let state_dir = tmpfs.path().display().to_string();
    assert!(
        worker
            .log()
            .contains(&format!("state dir {state_dir} is full")),
        "the worker never met the full disk\n{}",
        worker.log()
    );
    assert_eq!(integrity(&queue_db), "ok", "while full");
    worker.kill9();
    assert_eq!(integrity(&queue_db), "ok", "after SIGKILL while full");

    std::fs::remove_file(&filler).expect("free the space");
    let worker = env.spawn();
    let all_done = wait_until(Duration::from_secs(90), || {
        env_count(&queue_db, GroupState::Completed) == u64::from(GROUPS) + 1
    });
    assert!(
        all_done,
        "after the restart: completed {} of {}\n{}",
        env_count(&queue_db, GroupState::Completed),
        GROUPS + 1,
        worker.log()
    );
    assert_eq!(worker.stop(), Some(0), "clean exit on SIGTERM");
    assert_eq!(integrity(&queue_db), "ok");
}

fn env_count(queue_db: &Path, state: GroupState) -> u64 {
    QueueReader::open(queue_db)
        .ok()
        .and_then(|r| r.stats(contimg::queue::unix_now()).ok())
        .map(|s| s.count(state))
        .unwrap_or(0)
}

fn failing_check<'a>(health: &'a Value, name: &str) -> Option<&'a str> {
    health["checks"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name && c["ok"] == false)
        .and_then(|c| c["detail"].as_str())
}

#[tokio::test]
async fn api_names_the_full_state_dir_and_leaves_no_zombies() {
    let tmpfs = Tmpfs::mount("16m");
    let mut env = WorkerEnv::new();
    env.state_dir = tmpfs.path().to_path_buf();
    env.write_config("");
    // The restarts while full are a real restart loop; its alert would keep
    // health red for 10 minutes after recovery.
    let options = DaemonOptions {
        api_toml: "[alerts]\nrestart_count = 0\n".to_string(),
        host_disk_alerts: true,
        ..Default::default()
    };
    let args: Vec<String> = [
        "--backend",
        "process",
        "--worker-bin",
        &stream_bin().to_string_lossy(),
        "--control-timeout",
        "20",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let daemon = ApiDaemon::start_with(env, &options, &args).await;
    let started = daemon.post("/api/streaming/start", None).await.status();
    assert!(started.is_success(), "start: {started}");
    let status = wait_status(&daemon, Duration::from_secs(20), |s| s["running"] == true).await;
    let pid = status["pid"].as_u64().unwrap();
    wait_json(&daemon, HEALTH, Duration::from_secs(30), |h| {
        h["healthy"] == true
    })
    .await;

    let filler = tmpfs.fill("filler");
    let state_dir = tmpfs.path().display().to_string();
    // Health says "disk full" naming the dir; an alert names it too.
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        let health = daemon.get_json("/api/streaming/health").await;
        let alerts = daemon.get_json("/api/streaming/alerts").await;
        let alert_names_dir = alerts["active"].as_array().is_some_and(|active| {
            active.iter().any(|a| {
                (a["rule"] == "queue_db_unwritable" || a["id"] == "low_disk:state_dir")
                    && a["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(&state_dir))
            })
        });
        if failing_check(&health, "queue_db").is_some_and(|d| d.contains("disk full"))
            && alert_names_dir
        {
            break health;
        }
        assert!(
            Instant::now() < deadline,
            "full state dir not reported: {health}\n{alerts}\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        failing_check(&health, "queue_db").is_some_and(|d| d.contains(&state_dir)),
        "{health}"
    );
    assert_eq!(health["healthy"], false);
    // Files arrive meanwhile; give the worker time to hit the full disk.
    drop_group(&daemon.env, 1, 4);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let status = daemon.get_json("/api/streaming/status").await;
    assert_eq!(
        status["pid"].as_u64(),
        Some(pid),
        "the worker died on the full disk: {status}\n{}",
        daemon.log()
    );

    // A crash while full: the supervisor's restarts cannot even write the PID
    // file. Every child it starts must still be reaped.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut most = 0;
    let watch_until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < watch_until {
        most = most.max(zombie_children(daemon.pid()).len());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let zombies = zombie_children(daemon.pid());
    assert!(
        zombies.is_empty(),
        "zombie workers under contimg-api: {zombies:?} (at most {most} at once)\n{}",
        daemon.log()
    );

    std::fs::remove_file(&filler).expect("free the space");
    // The supervisor starts the worker again by itself and health recovers.
    wait_json(&daemon, HEALTH, Duration::from_secs(90), |h| {
        h["healthy"] == true
    })
    .await;
    assert!(zombie_children(daemon.pid()).is_empty());
    drop(daemon);
    assert_eq!(integrity(&tmpfs.path().join("ingest.sqlite3")), "ok");
}

const MB: u64 = 1_000_000;

fn claim_pause(queue_db: &Path) -> Option<ClaimPause> {
    QueueReader::open(queue_db)
        .ok()?
        .heartbeat()
        .ok()??
        .claim_paused
}

fn ctl_status(state_dir: &Path, json: bool) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_contimgctl"));
    command
        .args(["--backend", "process", "--state-dir"])
        .arg(state_dir);
    if json {
        command.arg("--json");
    }
    let out = command.arg("status").output().expect("run contimgctl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn active_alert<'a>(alerts: &'a Value, id: &str) -> Option<&'a Value> {
    alerts["active"].as_array()?.iter().find(|a| a["id"] == id)
}

#[tokio::test]
async fn claiming_pauses_while_the_output_disk_is_short_and_resumes_by_itself() {
    let tmpfs = Tmpfs::mount("32m");
    let mut env = WorkerEnv::new();
    env.output_dir = tmpfs.path().to_path_buf();
    // max_retries = 0: a group that failed even once would stay failed.
    env.write_config(
        "expected_subbands = 2\nmin_free_gb = 0.016\nmax_retries = 0\n\
         [converter]\nkind = \"manifest\"\n",
    );
    let daemon =
        ApiDaemon::start_with(env, &DaemonOptions::default(), &process_backend_args()).await;
    let started = daemon.post("/api/streaming/start", None).await.status();
    assert!(started.is_success(), "start: {started}");
    wait_status(&daemon, Duration::from_secs(20), |s| s["running"] == true).await;
    let env = &daemon.env;
    let queue_db = env.queue_db();
    let worker_log = || {
        std::fs::read_to_string(env.state_dir.join("logs").join("contimg-stream.log"))
            .unwrap_or_default()
    };

    drop_group(env, 0, 2);
    assert!(
        wait_until(Duration::from_secs(30), || env.count(GroupState::Completed)
            == 1),
        "the first group did not complete with room to spare\n{}",
        worker_log()
    );

    let filler = tmpfs.fill_leaving("filler", 8 * MB);
    let output_dir = tmpfs.path().display().to_string();
    drop_group(env, 1, 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, alerts) = loop {
        let status = daemon.get_json("/api/streaming/status").await;
        let alerts = daemon.get_json("/api/streaming/alerts").await;
        let paused = status["claim_paused"]
            .as_str()
            .is_some_and(|why| why.contains(&output_dir) && why.contains("(output_dir)"));
        if paused && active_alert(&alerts, "claim_paused:output_dir").is_some() {
            break (status, alerts);
        }
        assert!(
            Instant::now() < deadline,
            "no pause in the status or no claim_paused alert: {status}\n{alerts}\n{}",
            worker_log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let alert = active_alert(&alerts, "claim_paused:output_dir").unwrap();
    assert_eq!(alert["rule"], "claim_paused");
    assert!(
        alert["message"].as_str().unwrap().contains(&output_dir),
        "{alert}"
    );
    assert!(status["claim_paused_since"].is_string(), "{status}");
    let pause = claim_pause(&queue_db).expect("the pause is in the heartbeat row");
    assert_eq!(pause.dir, "output_dir");
    assert!(pause.reason.contains(" free, needs "), "{}", pause.reason);
    wait_json(&daemon, HEALTH, Duration::from_secs(10), |h| {
        h["healthy"] == false
    })
    .await;

    // Many main-loop wake-ups later: still pending, never attempted, logged once.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stats = env.stats().expect("stats");
    assert_eq!(
        (
            stats.count(GroupState::Pending),
            stats.count(GroupState::InProgress),
            stats.count(GroupState::Failed),
            stats.count(GroupState::Completed)
        ),
        (1, 0, 0, 1),
        "{}",
        worker_log()
    );
    let waiting = env
        .reader()
        .group(&contimg::queue::group_id_for(T0 + GROUP_SPACING))
        .unwrap()
        .expect("the second group");
    assert!(waiting.attempts.is_empty(), "{:?}", waiting.attempts);
    assert_eq!(waiting.summary.retry_count, 0);
    assert_eq!(
        worker_log().matches("claiming paused").count(),
        1,
        "the pause is logged once per transition\n{}",
        worker_log()
    );
    let text = ctl_status(&env.state_dir, false);
    assert!(
        text.contains("PAUSED") && text.contains(&output_dir),
        "contimgctl status does not show the pause:\n{text}"
    );
    let json: Value = serde_json::from_str(&ctl_status(&env.state_dir, true)).expect("json");
    assert!(json["claim_paused"].is_string(), "{json}");

    std::fs::remove_file(&filler).expect("free the space");
    assert!(
        wait_until(Duration::from_secs(30), || env.count(GroupState::Completed)
            == 2),
        "the paused group did not complete once space returned\n{}",
        worker_log()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = daemon.get_json("/api/streaming/status").await;
        let alerts = daemon.get_json("/api/streaming/alerts").await;
        let cleared = alerts["recent"].as_array().is_some_and(|recent| {
            recent
                .iter()
                .any(|a| a["id"] == "claim_paused:output_dir" && a["cleared_at"].is_string())
        });
        if status["claim_paused"].is_null()
            && active_alert(&alerts, "claim_paused:output_dir").is_none()
            && cleared
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pause or its alert did not clear: {status}\n{alerts}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(claim_pause(&queue_db), None);
    assert_eq!(env.count(GroupState::Failed), 0);
    assert!(
        worker_log().contains("claiming conversions again"),
        "{}",
        worker_log()
    );
    assert!(!ctl_status(&env.state_dir, false).contains("PAUSED"));
    assert_eq!(integrity(&queue_db), "ok");
}

/// The default `min_free_gb` (10) keeps a worker from filling a small disk.
#[test]
fn the_default_min_free_gb_pauses_claiming_on_a_filesystem_under_10_gb() {
    let tmpfs = Tmpfs::mount("64m");
    let mut env = WorkerEnv::new();
    env.output_dir = tmpfs.path().to_path_buf();
    env.write_config("expected_subbands = 2\n[converter]\nkind = \"manifest\"\n");
    // The harness sets min_free_gb = 0 for every other test: take that out.
    let config = env.state_dir.join("streaming.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let without: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with("min_free_gb"))
        .collect();
    std::fs::write(&config, without.join("\n")).unwrap();
    let mut worker = env.spawn();

    drop_group(&env, 0, 2);
    let paused = wait_until(Duration::from_secs(20), || {
        claim_pause(&env.queue_db()).is_some()
    });
    assert!(paused, "no pause on a 64 MB output disk\n{}", worker.log());
    let pause = claim_pause(&env.queue_db()).unwrap();
    assert_eq!(pause.dir, "output_dir");
    assert!(
        pause.reason.contains("min_free_gb = 10;"),
        "{}",
        pause.reason
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(env.count(GroupState::Pending), 1, "{}", worker.log());
    assert_eq!(env.count(GroupState::Completed), 0);
    assert_eq!(worker.exited(), None);
    assert_eq!(worker.stop(), Some(0), "clean exit on SIGTERM");
}

/// Runs one of tests/py/ with python3; its stdout, or a failure with its stderr.
fn run_py(script: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new("python3")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/py")
                .join(script),
        )
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("run {script}: {err}"));
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// With `stage_to_tmpfs`, the staging filesystem is checked too: short there,
/// the pause names `tmpfs_path`; freed, the group is staged and converted.
#[test]
fn a_short_staging_tmpfs_pauses_claiming_and_names_tmpfs_path() {
    let tmpfs = Tmpfs::mount("32m");
    let env = WorkerEnv::new();
    env.write_config(&format!(
        "expected_subbands = 2\nmin_free_gb = 0.016\nmax_retries = 0\nstage_to_tmpfs = true\n\
         tmpfs_path = {:?}\n[converter]\nkind = \"manifest\"\n",
        tmpfs.path()
    ));
    let filler = tmpfs.fill_leaving("filler", 8 * MB);
    let worker = env.spawn();
    drop_group(&env, 0, 2);
    assert!(
        wait_until(Duration::from_secs(20), || claim_pause(&env.queue_db())
            .is_some_and(|p| p.dir == "tmpfs_path")),
        "no pause naming tmpfs_path: {:?}\n{}",
        claim_pause(&env.queue_db()),
        worker.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(env.count(GroupState::Pending), 1, "{}", worker.log());
    std::fs::remove_file(&filler).expect("free the space");
    assert!(
        wait_until(Duration::from_secs(20), || env.count(GroupState::Completed)
            == 1),
        "{}",
        worker.log()
    );
    assert_eq!(claim_pause(&env.queue_db()), None);
    assert_eq!(worker.stop(), Some(0), "clean exit on SIGTERM");
}

/// Writes a real UVH5 group (pyuvdata) and moves it into `input_dir` the way
/// the correlator does (complete files appear by rename). Returns the group id.
fn drop_pyuvdata_group(env: &WorkerEnv, subbands: u32) -> String {
    let made = env.root.path().join("made");
    let start = "2025-10-13T13:28:03";
    let subbands = subbands.to_string();
    let mut args = vec![made.as_os_str()];
    for arg in [
        "--subbands",
        &subbands,
        "--nants",
        "10",
        "--ntimes",
        "8",
        "--nfreqs",
        "128",
        "--contiguous",
        "--start",
        start,
    ] {
        args.push(std::ffi::OsStr::new(arg));
    }
    for line in run_py("make_fixtures.py", &args).lines() {
        let path = Path::new(line);
        std::fs::rename(path, env.input_dir.join(path.file_name().unwrap())).unwrap();
    }
    start.to_string()
}

#[test]
fn a_merge_that_runs_out_of_space_is_retried_without_using_a_retry_and_completes() {
    // Two 1.5 MB subbands merge into ~3 MB: more than the tmpfs holds.
    let tmpfs = Tmpfs::mount("1m");
    let mut env = WorkerEnv::new();
    env.output_dir = tmpfs.path().to_path_buf();
    // The space check passes (no floor, factor 0); max_retries = 0, so an
    // out-of-space attempt that used a retry would fail the group for good.
    env.write_config(
        "expected_subbands = 2\nmin_free_gb = 0.0\nfree_space_factor = 0.0\nmax_retries = 0\n\
         retry_backoff_s = 4.0\nretry_backoff_max_s = 4.0\n[converter]\nkind = \"builtin\"\n",
    );
    let worker = env.spawn();
    let group_id = drop_pyuvdata_group(&env, 2);
    let output_dir = tmpfs.path().display().to_string();
    let no_space = format!("no space left on {output_dir} (output_dir)");
    let failed_attempts = || {
        env.reader()
            .group(&group_id)
            .ok()
            .flatten()
            .map(|g| {
                g.attempts
                    .iter()
                    .filter(|a| a.error.as_deref().is_some_and(|e| e.contains(&no_space)))
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(60), || failed_attempts() >= 1),
        "no attempt failed with {no_space:?}: {:?}\n{}",
        env.reader()
            .group(&group_id)
            .ok()
            .flatten()
            .map(|g| g.attempts),
        worker.log()
    );
    // Read at once, well inside the 4 s back-off: the partial output is gone.
    let left: Vec<_> = std::fs::read_dir(tmpfs.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in output_dir: {left:?}");
    let group = env.reader().group(&group_id).unwrap().unwrap();
    assert_eq!(group.summary.state, GroupState::Pending, "{group:?}");
    assert_eq!(group.summary.retry_count, 0);
    assert!(
        group
            .summary
            .error
            .as_deref()
            .is_some_and(|e| e.contains(&no_space)),
        "{group:?}"
    );

    // Tried again (no retry left by the budget, so it is not counted).
    assert!(
        wait_until(Duration::from_secs(30), || failed_attempts() >= 2),
        "not tried again\n{}",
        worker.log()
    );
    assert_eq!(env.count(GroupState::Completed), 0);
    tmpfs.resize("64m");
    assert!(
        wait_until(Duration::from_secs(60), || env.count(GroupState::Completed)
            == 1),
        "the group did not complete once space returned: {:?}\n{}",
        env.reader().group(&group_id).ok().flatten(),
        worker.log()
    );
    let group = env.reader().group(&group_id).unwrap().unwrap();
    assert_eq!(group.summary.retry_count, 0);
    let output = tmpfs.path().join(format!("{group_id}.uvh5"));
    // pyuvdata reads what the merge wrote once there was room.
    run_py("check_readable.py", &[output.as_os_str()]);
    assert_eq!(worker.stop(), Some(0), "clean exit on SIGTERM");
    assert_eq!(integrity(&env.queue_db()), "ok");
}
