//! Finding 5 of issue #10: health must tell the truth about a hung worker, and the
//! process-mode supervisor must restart it (and reap every worker it started).
//!
//! Real `contimg-api` (process backend) supervising the real `contimg-stream`;
//! the worker is hung with SIGSTOP. `contimgctl health --json` and `GET
//! /api/streaming/health` must both turn unhealthy within the documented
//! heartbeat threshold (plus slack for polling), and the supervisor must SIGKILL
//! and restart the stopped worker after its hang limit, raising `worker_hung`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::api::{
    ApiDaemon, DaemonOptions, SseClient, kill_worker_repeatedly, stream_bin, wait_json,
    wait_status, zombie_children,
};
use contimg::api::supervisor::HANG_RESTART_AFTER_S;
use contimg::control::report::HEARTBEAT_STALE_SECONDS;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

const CTL: &str = env!("CARGO_BIN_EXE_contimgctl");
/// Polling and refresh periods on top of a threshold (producer tick 1 s, queue
/// watcher 5 s, CLI start-up).
const SLACK: Duration = Duration::from_secs(15);

fn ctl_health(state_dir: &Path) -> Value {
    let output = Command::new(CTL)
        .env("NO_COLOR", "1")
        .args(["--backend", "process", "--json", "--state-dir"])
        .arg(state_dir)
        .arg("--worker-bin")
        .arg(stream_bin())
        .arg("health")
        .output()
        .expect("run contimgctl");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("contimgctl health --json is not JSON ({err}): {output:?}"))
}

fn check<'a>(health: &'a Value, name: &str) -> &'a Value {
    health["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} check in {health}"))
}

/// `/proc/PID/stat` state letter, None when the PID is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

async fn api_health(daemon: &ApiDaemon) -> Value {
    daemon.get_json("/api/streaming/health").await
}

/// Resumes a SIGSTOPped process if the test ends early (the daemon's drop then
/// kills it; SIGKILL works on stopped processes, this keeps the order clean).
struct ContinueOnDrop(u32);
impl Drop for ContinueOnDrop {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0 as i32), Signal::SIGCONT);
    }
}

#[tokio::test]
async fn sigstopped_worker_turns_cli_and_api_unhealthy_and_is_restarted() {
    let daemon = ApiDaemon::start_process(DaemonOptions::default()).await;
    assert!(
        daemon
            .post("/api/streaming/start", None)
            .await
            .status()
            .is_success()
    );
    let state_dir = daemon.env.state_dir.clone();

    // Healthy first, in both views.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let api = api_health(&daemon).await;
        let cli = ctl_health(&state_dir);
        if api["healthy"] == true && cli["healthy"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never healthy: API {api}\nCLI {cli}\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = daemon.get_json("/api/streaming/status").await;
    let hung_pid = status["pid"].as_u64().expect("pid") as u32;

    // The dashboard's feed: it must carry the same verdict.
    let mut feed = SseClient::connect(&daemon, "/api/streaming/events").await;

    kill(Pid::from_raw(hung_pid as i32), Signal::SIGSTOP).expect("SIGSTOP");
    let _resume = ContinueOnDrop(hung_pid);
    let stopped_at = Instant::now();

    let limit = Duration::from_secs_f64(HEARTBEAT_STALE_SECONDS) + SLACK;
    let (mut api_unhealthy, mut cli_unhealthy) = (None, None);
    while api_unhealthy.is_none() || cli_unhealthy.is_none() {
        if api_unhealthy.is_none() {
            let api = api_health(&daemon).await;
            if api["healthy"] == false {
                assert_eq!(check(&api, "heartbeat")["ok"], false, "{api}");
                api_unhealthy = Some(stopped_at.elapsed());
            }
        }
        if cli_unhealthy.is_none() {
            let cli = ctl_health(&state_dir);
            if cli["healthy"] == false {
                assert_eq!(check(&cli, "heartbeat")["ok"], false, "{cli}");
                cli_unhealthy = Some(stopped_at.elapsed());
            }
        }
        assert!(
            stopped_at.elapsed() < limit,
            "still healthy {limit:?} after SIGSTOP: API {api_unhealthy:?} CLI {cli_unhealthy:?}\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "unhealthy after SIGSTOP: API {api_unhealthy:?}, CLI {cli_unhealthy:?} \
         (threshold {HEARTBEAT_STALE_SECONDS} s)"
    );
    let pushed = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some((event, data)) = feed.next(Duration::from_secs(15)).await {
            if event == "health" && data["healthy"] == false {
                return Some(data);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("no unhealthy `health` event on the SSE feed");
    assert_eq!(check(&pushed, "heartbeat")["ok"], false, "{pushed}");
    // The two verdicts agree check by check.
    let api = api_health(&daemon).await;
    let cli = ctl_health(&state_dir);
    let outcome = |h: &Value| -> Vec<(String, bool)> {
        h["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap().to_string(), c["ok"] == true))
            .collect()
    };
    assert_eq!(outcome(&api), outcome(&cli), "API {api}\nCLI {cli}");

    // The supervisor kills the hung worker and starts a new one, as systemd's
    // watchdog would, and says why.
    let restart_limit = Duration::from_secs_f64(HANG_RESTART_AFTER_S) + SLACK;
    let restarted = wait_status(&daemon, restart_limit, |s| {
        s["running"] == true && s["pid"].as_u64().is_some_and(|p| p as u32 != hung_pid)
    })
    .await;
    eprintln!(
        "hung worker {hung_pid} replaced by {} after {:?}",
        restarted["pid"],
        stopped_at.elapsed()
    );
    let alerts = daemon.get_json("/api/streaming/alerts").await;
    let hung = alerts["active"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "worker_hung")
        .unwrap_or_else(|| panic!("no worker_hung alert: {alerts}"));
    assert!(
        hung["message"]
            .as_str()
            .unwrap()
            .contains(&format!("PID {hung_pid}")),
        "{hung}"
    );
    // Killed and reaped: no longer in /proc at all (not even a zombie).
    let gone = Instant::now() + Duration::from_secs(5);
    while proc_state(hung_pid).is_some() && Instant::now() < gone {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(proc_state(hung_pid), None, "the hung worker was not reaped");

    // And the new worker is healthy again, in both views.
    wait_json(
        &daemon,
        "/api/streaming/health",
        Duration::from_secs(30),
        |api| api["healthy"] == true && ctl_health(&state_dir)["healthy"] == true,
    )
    .await;
}

#[tokio::test]
async fn supervisor_reaps_every_worker_it_started() {
    let daemon = ApiDaemon::start_process(DaemonOptions::default()).await;
    assert!(
        daemon
            .post("/api/streaming/start", None)
            .await
            .status()
            .is_success()
    );
    kill_worker_repeatedly(&daemon, 5).await;
    // Let the supervisor notice the last death (and restart once more).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_no_zombie_children(&daemon, 0);
}

fn assert_no_zombie_children(daemon: &ApiDaemon, most_seen: usize) {
    let zombies = zombie_children(daemon.pid());
    assert!(
        zombies.is_empty(),
        "zombie workers under contimg-api (PID {}): {zombies:?} (at most {most_seen} seen)\n{}",
        daemon.pid(),
        daemon.log()
    );
}

#[tokio::test]
async fn worker_dying_at_start_leaves_no_zombies() {
    // The queue DB's directory cannot be created (its parent is a file): the
    // worker exits 1 right after every start, as on a full state disk.
    let blocker = tempfile::NamedTempFile::new().expect("temp file");
    let options = DaemonOptions {
        streaming_toml: format!(
            "queue_db = {:?}",
            blocker.path().join("state").join("ingest.sqlite3")
        ),
        ..Default::default()
    };
    let daemon = ApiDaemon::start_process(options).await;
    let _ = daemon.post("/api/streaming/start", None).await;
    // Five quick deaths take 1 + 2 + 4 + 8 + 16 s of back-off.
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut most = 0;
    while Instant::now() < deadline {
        let zombies = zombie_children(daemon.pid());
        most = most.max(zombies.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_no_zombie_children(&daemon, most);
    let status = daemon.get_json("/api/streaming/status").await;
    eprintln!("after 45 s of quick deaths: {status}");
}
