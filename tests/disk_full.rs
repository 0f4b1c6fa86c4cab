//! Finding 6 of issue #10: a full state disk must not kill the worker for good.
//!
//! The queue DB lives on a real, small tmpfs that the test mounts (root) and fills
//! with a plain file until ENOSPC. The real worker must stay up, say why it
//! paused, and register and convert what arrived meanwhile once space returns;
//! the DB must pass `PRAGMA integrity_check`. Under the real `contimg-api`
//! (process backend) health and alerts must name the full directory, and no
//! worker the supervisor starts may be left a zombie, even when it cannot write
//! its PID file.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::api::{ApiDaemon, DaemonOptions, stream_bin, wait_json, wait_status, zombie_children};
use common::worker::{WorkerEnv, test_converter_toml, wait_until, write_test_converter};
use contimg::queue::GroupState;
use serde_json::Value;

const T0: f64 = 1_760_362_083.0;
const HEALTH: &str = "/api/streaming/health";
const GROUP_SPACING: f64 = 309.0;

/// A tmpfs mounted on its own temp dir; unmounted (lazily, so a process still
/// holding a file cannot block it) and removed on drop.
struct Tmpfs {
    mountpoint: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let mountpoint = tempfile::tempdir().expect("mountpoint");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(mountpoint.path())
            .status()
            .expect("run mount (the test needs root)");
        assert!(
            status.success(),
            "mount tmpfs failed (needs root): {status}"
        );
        Self { mountpoint }
    }

    fn path(&self) -> &Path {
        self.mountpoint.path()
    }

    /// Fills the filesystem with `filler` until ENOSPC.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).expect("create filler");
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) if err.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(err) => panic!("filling the tmpfs: {err}"),
            }
        }
        // Single bytes too, so not even a small page fits.
        while file.write(&[0u8]).is_ok_and(|n| n == 1) {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.mountpoint.path())
            .status();
    }
}

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

#[test]
fn worker_survives_a_full_state_disk_and_resumes_when_space_returns() {
    let tmpfs = Tmpfs::mount("8m");
    let env = WorkerEnv::new();
    let queue_db = tmpfs.path().join("ingest.sqlite3");
    let control = env.root.path().join("control");
    std::fs::create_dir_all(&control).unwrap();
    let script = write_test_converter(env.root.path());
    env.write_config(&format!(
        "queue_db = {queue_db:?}\nexpected_subbands = 4\n{}",
        test_converter_toml(&script, &control)
    ));
    let mut worker = env.spawn();

    drop_group(&env, 0, 4);
    let count = |state| {
        contimg::queue::QueueReader::open(&queue_db)
            .ok()
            .and_then(|r| r.stats(contimg::queue::unix_now()).ok())
            .map(|s| s.count(state))
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(30), || count(GroupState::Completed)
            == 1),
        "the first group did not complete\n{}",
        worker.log()
    );

    let filler = tmpfs.fill();
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

    let filler = tmpfs.fill();
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
