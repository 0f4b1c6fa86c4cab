//! `contimgctl` against a real, isolated systemd user manager running the real
//! worker (`contimg-stream`, `Type=notify`) from the shipped unit file.
//! Needs root, systemd and dbus (see ops/testenv/user-manager.sh).

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::systemd::{UserManager, WorkerUnit, worker_unit};
use common::worker::{WorkerEnv, stream_bin};
use serde_json::Value;

const CTL: &str = env!("CARGO_BIN_EXE_contimgctl");
const UNIT: &str = "contimg-stream.service";

fn ctl(manager: &UserManager, state_dir: &Path, log: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(CTL);
    manager.apply_env(&mut command);
    command
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--log-file")
        .arg(log)
        .args(args);
    command.output().expect("run contimgctl")
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "not JSON ({err}): stdout {} stderr {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn setup(watchdog: &str) -> (UserManager, WorkerEnv, std::path::PathBuf) {
    let manager = UserManager::start();
    let env = WorkerEnv::new();
    env.write_config("");
    let log = env.root.path().join("worker.log");
    manager.install_unit(
        UNIT,
        &worker_unit(&WorkerUnit {
            worker_bin: &stream_bin(),
            state_dir: &env.state_dir,
            log_file: &log,
            watchdog_sec: watchdog,
            restart_sec: "500ms",
            template: false,
        }),
    );
    (manager, env, log)
}

#[test]
fn start_status_restart_limits_stop_through_the_user_manager() {
    let (manager, env, log) = setup("30s");
    let run = |args: &[&str]| ctl(&manager, &env.state_dir, &log, args);

    let status = run(&["--user", "status"]);
    assert_eq!(status.status.code(), Some(3), "not running yet: {status:?}");

    let started = run(&["--backend", "systemd", "--user", "--json", "start"]);
    assert_eq!(started.status.code(), Some(0), "{started:?}");
    let started = json(&started);
    assert_eq!(started["success"], true);
    let first_pid = started["pid"].as_u64().expect("pid after start");
    assert_eq!(manager.property(UNIT, "MainPID"), first_pid.to_string());

    // Queue counts: one subband of a 16-subband group → one group collecting.
    env.drop_subband(1_764_064_800.0, 3, b"not really hdf5");
    manager.wait_for(
        "the group to be registered",
        Duration::from_secs(20),
        || {
            let status = json(&run(&["--user", "status", "--json"]));
            status["queue_stats"]["collecting"].as_u64() == Some(1)
        },
    );

    // Auto-detection finds the unit on the user manager (no system bus here).
    let output = run(&["status", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let status = json(&output);
    assert_eq!(status["backend"], "systemd");
    assert_eq!(status["unit"], UNIT);
    assert_eq!(status["running"], true);
    assert_eq!(status["active_state"], "active");
    assert_eq!(status["sub_state"], "running");
    assert_eq!(status["pid"].as_u64(), Some(first_pid));
    assert!(status["started_at"].is_string());
    assert!(status["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert!(
        status["cpu_percent"].as_f64().expect("cpu_percent") > 0.0,
        "{status}"
    );
    assert!(
        status["memory_mb"].as_f64().expect("memory_mb") > 0.0,
        "{status}"
    );
    assert!(status["tasks"].as_u64().expect("tasks") >= 1);
    assert!(status["config"]["input_dir"].is_string());
    assert_eq!(status["restart_count"], 0);
    assert!(status.get("last_heartbeat").is_some());

    // Human output, like systemctl status.
    let human = run(&["--user", "status"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.starts_with("● contimg-stream.service"), "{text}");
    assert!(text.contains("active (running)"), "{text}");
    assert!(text.contains(&format!("Main PID: {first_pid}")), "{text}");
    assert!(text.contains("collecting 1"), "{text}");

    let metrics = json(&run(&["--user", "--json", "metrics"]));
    assert_eq!(metrics["service_running"], true);
    assert_eq!(metrics["queue_stats"]["collecting"], 1);
    assert!(metrics["queue_error"].is_null());

    // Logs: the worker's stderr, through the log file (no journald here).
    let logs = run(&["--user", "logs", "-n", "20"]);
    assert_eq!(logs.status.code(), Some(0));
    assert!(!logs.stdout.is_empty(), "no log lines: {logs:?}");

    // Limits, visible in the unit's properties afterwards.
    let limits = run(&[
        "--user",
        "--json",
        "limits",
        "set",
        "--memory-max",
        "512M",
        "--cpu-quota",
        "150%",
    ]);
    assert_eq!(limits.status.code(), Some(0), "{limits:?}");
    assert_eq!(json(&limits)["memory_max_bytes"], 512u64 << 20);
    assert_eq!(
        manager.property(UNIT, "MemoryMax"),
        (512u64 << 20).to_string()
    );
    assert_eq!(manager.property(UNIT, "CPUQuotaPerSecUSec"), "1.500000s");
    let shown = json(&run(&["--user", "--json", "limits", "show"]));
    assert_eq!(shown["cpu_quota_percent"], 150.0);
    let status = json(&run(&["--user", "--json", "status"]));
    assert_eq!(status["memory_limit_mb"], 512.0);

    // config set restarts the running worker and shows what changed.
    let set = run(&["--user", "config", "set", "max_workers=2"]);
    assert_eq!(set.status.code(), Some(0), "{set:?}");
    let text = String::from_utf8_lossy(&set.stdout);
    assert!(text.contains("max_workers"), "{text}");
    let after_config_pid: u64 = manager.property(UNIT, "MainPID").parse().unwrap();
    assert_ne!(
        after_config_pid, first_pid,
        "config set must restart the worker"
    );
    let invalid = run(&["--user", "config", "set", "max_workers=-3"]);
    assert_eq!(invalid.status.code(), Some(2), "{invalid:?}");

    let restarted = json(&run(&["--user", "--json", "restart"]));
    assert_eq!(restarted["success"], true);
    let second_pid = restarted["pid"].as_u64().unwrap();
    assert_ne!(second_pid, after_config_pid);

    let stopped = run(&["--user", "--json", "stop"]);
    assert_eq!(stopped.status.code(), Some(0), "{stopped:?}");
    assert_eq!(manager.property(UNIT, "ActiveState"), "inactive");
    let status = run(&["--user", "--json", "status"]);
    assert_eq!(status.status.code(), Some(3));
    let status = json(&status);
    assert_eq!(status["running"], false);
    assert!(status["pid"].is_null());
}

#[test]
fn watchdog_kill_is_restarted_and_counted() {
    let (manager, env, log) = setup("2s");
    let run = |args: &[&str]| ctl(&manager, &env.state_dir, &log, args);
    let started = json(&run(&["--user", "--json", "start"]));
    assert_eq!(started["success"], true, "{started}");
    let pid = started["pid"].as_u64().unwrap() as i32;
    // A hung worker: it stops sending WATCHDOG=1.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    manager.wait_for(
        "systemd to restart the hung worker",
        Duration::from_secs(30),
        || {
            let status = json(&run(&["--user", "--json", "status"]));
            status["restart_count"].as_u64().unwrap_or(0) >= 1
                && status["running"] == true
                && status["pid"].as_u64().is_some_and(|p| p != pid as u64)
        },
    );
    let status = json(&run(&["--user", "--json", "status"]));
    assert!(status["restart_count"].as_u64().unwrap() >= 1);
    // Killed by the watchdog, not by something else.
    let manager_log = std::fs::read_to_string(&manager.log).unwrap_or_default();
    assert!(
        manager_log.contains("Watchdog timeout") && manager_log.contains("'watchdog'"),
        "no watchdog timeout in the manager log:\n{manager_log}"
    );
    let text = String::from_utf8_lossy(&run(&["--user", "status"]).stdout).to_string();
    assert!(
        text.contains("Restarts: 1") || text.contains("Restarts: 2"),
        "{text}"
    );
    let _ = run(&["--user", "stop"]);
}

#[test]
fn failed_start_reports_failure_with_log_lines() {
    let (manager, env, log) = setup("30s");
    // An invalid config makes the worker exit before READY=1.
    std::fs::write(env.state_dir.join("streaming.toml"), "max_workers = -1\n").unwrap();
    let output = ctl(
        &manager,
        &env.state_dir,
        &log,
        &["--user", "--json", "start"],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let outcome = json(&output);
    assert_eq!(outcome["success"], false);
    assert!(
        outcome["logs"].as_array().is_some_and(|l| !l.is_empty()),
        "{outcome}"
    );
}

#[test]
fn template_instance_is_controlled_with_instance() {
    let manager = UserManager::start();
    let env = WorkerEnv::new();
    env.write_config("");
    let log = env.root.path().join("worker.log");
    manager.install_unit(
        "contimg-stream@.service",
        &worker_unit(&WorkerUnit {
            worker_bin: &stream_bin(),
            state_dir: &env.state_dir,
            log_file: &log,
            watchdog_sec: "30s",
            restart_sec: "1s",
            template: true,
        }),
    );
    let run = |args: &[&str]| ctl(&manager, &env.state_dir, &log, args);
    let started = run(&["--user", "--instance", "a", "--json", "start"]);
    assert_eq!(started.status.code(), Some(0), "{started:?}");
    assert_eq!(
        manager.property("contimg-stream@a.service", "ActiveState"),
        "active"
    );
    let status = json(&run(&["--user", "--instance", "a", "--json", "status"]));
    assert_eq!(status["unit"], "contimg-stream@a.service");
    assert_eq!(
        run(&["--user", "--instance", "a", "stop"]).status.code(),
        Some(0)
    );
}

#[test]
fn unknown_unit_and_dead_bus_have_their_own_exit_codes() {
    let manager = UserManager::start();
    let env = WorkerEnv::new();
    let log = env.root.path().join("worker.log");
    for verb in ["status", "start"] {
        let output = ctl(
            &manager,
            &env.state_dir,
            &log,
            &[
                "--backend",
                "systemd",
                "--user",
                "--unit",
                "no-such-unit-xyz",
                verb,
            ],
        );
        assert_eq!(output.status.code(), Some(5), "{verb}: {output:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("not known"));
    }
    let output = Command::new(CTL)
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .args(["--backend", "systemd", "--user", "status"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(6), "{output:?}");
}

/// The library API the daemon uses: `connect` with an explicit bus address, status,
/// and `watch()` firing on the unit's PropertiesChanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_connect_status_and_watch() {
    use contimg::control::{BackendChoice, ControlOptions, connect};
    use futures_util::StreamExt;

    let (manager, env, log) = setup("30s");
    let options = ControlOptions {
        backend: BackendChoice::Systemd,
        user: true,
        state_dir: env.state_dir.clone(),
        log_file: Some(log.clone()),
        bus_address: Some(manager.bus.clone()),
        ..ControlOptions::default()
    };
    let backend = connect(&options).await.expect("connect");
    assert_eq!(backend.target(), UNIT);
    let mut changes = backend.watch().await.expect("watch");
    let outcome = backend.start(Duration::from_secs(30)).await.expect("start");
    assert!(outcome.success, "{outcome:?}");
    tokio::time::timeout(Duration::from_secs(10), changes.next())
        .await
        .expect("a PropertiesChanged after start")
        .expect("stream open");
    let status = backend.status().await.expect("status");
    assert!(status.running);
    assert!(
        status.status_text.is_some(),
        "the worker sends STATUS=: {status:?}"
    );
    let outcome = backend.stop(Duration::from_secs(30)).await.expect("stop");
    assert!(outcome.success, "{outcome:?}");
    assert!(!backend.status().await.unwrap().running);
}

/// A bootstrap that inspects files for longer than `TimeoutStartSec=` (a large
/// backlog) must not be killed as a failed start: the worker asks for more time
/// (`EXTEND_TIMEOUT_USEC`) while it makes progress.
#[test]
fn slow_validated_bootstrap_extends_the_start_timeout() {
    let (manager, env, log) = setup("30s");
    env.write_config("validate_uvh5 = true\nexpected_subbands = 2\n");
    // Present before the start, so the bootstrap scan (before READY=1) meets it; the
    // validator (debug-build hook) hangs on it until the 10 s validation timeout.
    env.drop_subband(1_764_064_800.0, 0, b"not really hdf5");
    let unit = worker_unit(&WorkerUnit {
        worker_bin: &stream_bin(),
        state_dir: &env.state_dir,
        log_file: &log,
        watchdog_sec: "30s",
        restart_sec: "500ms",
        template: false,
    })
    .replace("TimeoutStartSec=30s", "TimeoutStartSec=4s")
    .replace(
        "[Service]\n",
        "[Service]\nEnvironment=CONTIMG_TEST_VALIDATOR_HANG_ON=T10:00:00\n\
         Environment=CONTIMG_TEST_VALIDATION_TIMEOUT_S=10\n",
    );
    assert!(unit.contains("TimeoutStartSec=4s"), "{unit}");
    manager.install_unit(UNIT, &unit);
    let output = ctl(
        &manager,
        &env.state_dir,
        &log,
        &["--user", "--json", "start"],
    );
    let worker_log = std::fs::read_to_string(&log).unwrap_or_default();
    let manager_log = std::fs::read_to_string(&manager.log).unwrap_or_default();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{output:?}\nworker:\n{worker_log}\nmanager:\n{manager_log}"
    );
    assert!(
        !manager_log.contains("Start operation timed out"),
        "{manager_log}"
    );
    let rejected = env.reader().rejected_files(10).unwrap();
    assert!(
        rejected.iter().any(|r| r.reason.contains("timed out")),
        "{rejected:?}"
    );
    let _ = ctl(&manager, &env.state_dir, &log, &["--user", "stop"]);
}
