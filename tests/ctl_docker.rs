//! `contimgctl --backend docker` against a real, private dockerd (ops/testenv/
//! dockerd.sh) with an image imported from a tarball holding the real worker
//! binary and its shared libraries. Needs root and docker.io.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::docker::Dockerd;
use common::worker::{WorkerEnv, stream_bin};
use serde_json::Value;

const CTL: &str = env!("CARGO_BIN_EXE_contimgctl");
const IMAGE: &str = "contimg-stream-test:latest";

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {output:?}"))
}

#[test]
fn docker_backend_starts_inspects_and_stops_the_worker_container() {
    let dockerd = Dockerd::start();
    dockerd.import_worker_image(&stream_bin(), IMAGE);
    let env = WorkerEnv::new();
    env.write_config("");
    let ctl = |args: &[&str]| -> Output {
        let mut command = Command::new(CTL);
        command
            .env("NO_COLOR", "1")
            .arg("--backend")
            .arg("docker")
            .arg("--docker-socket")
            .arg(&dockerd.socket)
            .arg("--docker-image")
            .arg(IMAGE)
            .arg("--state-dir")
            .arg(&env.state_dir);
        for dir in [&env.input_dir, &env.output_dir, &env.scratch_dir] {
            command.arg("--docker-mount").arg(dir);
        }
        command.args(args).output().expect("run contimgctl")
    };

    let started = ctl(&["--json", "start"]);
    assert_eq!(started.status.code(), Some(0), "{started:?}");
    env.drop_subband(1_764_064_800.0, 1, b"x");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = json(&ctl(&["--json", "status"]));
        if status["queue_stats"]["collecting"] == 1 || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(status["backend"], "docker");
    assert_eq!(status["running"], true, "{status}");
    assert!(status["pid"].as_u64().is_some());
    assert_eq!(status["queue_stats"]["collecting"], 1, "{status}");
    assert!(status["memory_mb"].as_f64().expect("memory from stats") > 0.0);
    assert!(status["cpu_percent"].as_f64().is_some(), "{status}");

    let logs = ctl(&["logs", "-n", "20"]);
    assert_eq!(logs.status.code(), Some(0));
    assert!(!logs.stdout.is_empty(), "no container logs: {logs:?}");

    let limits = ctl(&["--json", "limits", "set", "--memory-max", "256M"]);
    assert_eq!(limits.status.code(), Some(0), "{limits:?}");
    assert_eq!(json(&limits)["memory_max_bytes"], 256u64 << 20);

    // A worker that dies (not one an operator stopped) comes back, as under
    // systemd's Restart=: the container's restart policy.
    let crashed_pid = status["pid"].as_u64().expect("pid");
    let killed = Command::new("kill")
        .args(["-9", &crashed_pid.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = json(&ctl(&["--json", "status"]));
        let back = status["running"] == true && status["pid"].as_u64() != Some(crashed_pid);
        if back || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(
        status["running"], true,
        "not restarted after a crash: {status}"
    );
    assert_ne!(status["pid"].as_u64(), Some(crashed_pid), "{status}");

    let restarted = ctl(&["--json", "--stop-timeout", "5", "restart"]);
    assert_eq!(restarted.status.code(), Some(0), "{restarted:?}");

    let stopped = ctl(&["--json", "--stop-timeout", "10", "stop"]);
    assert_eq!(stopped.status.code(), Some(0), "{stopped:?}");
    let status = ctl(&["--json", "status"]);
    assert_eq!(status.status.code(), Some(3), "{status:?}");
}
