//! `contimgctl --backend process` with the real worker: start, status from /proc,
//! logs from the state dir's log file, detection of a `kill -9`, stop. (SIGTERM →
//! SIGKILL escalation for a worker that ignores SIGTERM is covered by the unit test
//! `control::process::tests::stop_escalates_to_sigkill_when_sigterm_is_ignored`.)

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::worker::{WorkerEnv, ctl_process as ctl};
use serde_json::Value;

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {output:?}"))
}

struct StopOnDrop<'a>(&'a Path);
impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = ctl(self.0, &["--stop-timeout", "2", "stop"]);
    }
}

#[test]
fn process_backend_runs_the_real_worker_and_detects_kill_9() {
    let env = WorkerEnv::new();
    env.write_config("");
    let _guard = StopOnDrop(&env.state_dir);

    let started = ctl(&env.state_dir, &["--json", "start"]);
    assert_eq!(started.status.code(), Some(0), "{started:?}");
    let pid = json(&started)["pid"].as_u64().expect("pid") as i32;

    env.drop_subband(1_764_064_800.0, 0, b"x");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = json(&ctl(&env.state_dir, &["--json", "status"]));
        if status["queue_stats"]["collecting"] == 1 || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["backend"], "process");
    assert_eq!(status["running"], true);
    assert_eq!(status["pid"].as_u64(), Some(pid as u64));
    assert_eq!(status["queue_stats"]["collecting"], 1, "{status}");
    assert!(status["memory_mb"].as_f64().unwrap() > 0.0);
    assert!(status["cpu_percent"].as_f64().is_some());

    let logs = ctl(&env.state_dir, &["logs", "-n", "50"]);
    assert!(!logs.stdout.is_empty(), "worker log empty: {logs:?}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (code, status) = loop {
        let output = ctl(&env.state_dir, &["--json", "status"]);
        let status = json(&output);
        if status["running"] == false || Instant::now() > deadline {
            break (output.status.code(), status);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, Some(3));
    assert_eq!(status["active_state"], "failed");
    assert!(
        status["error"]
            .as_str()
            .unwrap()
            .contains("without being stopped")
    );

    // Start again, then a clean stop.
    assert_eq!(ctl(&env.state_dir, &["start"]).status.code(), Some(0));
    let stopped = ctl(&env.state_dir, &["--json", "stop"]);
    assert_eq!(stopped.status.code(), Some(0), "{stopped:?}");
    let status = ctl(&env.state_dir, &["--json", "status"]);
    assert_eq!(status.status.code(), Some(3));
    assert_eq!(json(&status)["active_state"], "inactive");
}
