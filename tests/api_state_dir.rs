//! Issue 14, gap 1: `contimg-api` finds its state dir by the rules `contimgctl`
//! uses (`contimg_control::state_dir`), for its own unit and instance, says which
//! in its log and in `GET status`; against a real, isolated systemd user manager
//! (ops/testenv/user-manager.sh: needs root, systemd and dbus; fails, never
//! skips, without them).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::api::{ApiDaemon, DaemonOptions, stream_bin};
use common::systemd::{UserManager, WorkerUnit, worker_unit};
use common::worker::WorkerEnv;

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).expect("canonicalize")
}

/// The shipped template unit, each instance's state dir `<env root>/%i`.
fn install_template(manager: &UserManager, env: &WorkerEnv) {
    manager.install_unit(
        "contimg-stream@.service",
        &worker_unit(&WorkerUnit {
            worker_bin: &stream_bin(),
            state_dir: &env.root.path().join("%i"),
            log_file: &env.root.path().join("worker.log"),
            watchdog_sec: "30s",
            restart_sec: "500ms",
            template: true,
        }),
    );
}

/// `instance = "lab"` in api.toml (passed with `--config`, as the packaged unit
/// does), no `--state-dir`, no `CONTIMG_STATE_DIR`, started from a directory that
/// is not a checkout: the API reads `contimg-stream@lab`'s own state dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_api_reads_the_state_dir_its_unit_names() {
    let manager = UserManager::start();
    let env = WorkerEnv::new();
    // The instance's state dir (the template's `%i`), with its own config.
    let lab = env.root.path().join("lab");
    std::fs::create_dir_all(&lab).unwrap();
    env.write_config("");
    std::fs::copy(
        env.state_dir.join("streaming.toml"),
        lab.join("streaming.toml"),
    )
    .unwrap();
    install_template(&manager, &env);
    let elsewhere = tempfile::tempdir().unwrap();
    let config = env.state_dir.join("api.toml");
    let options = DaemonOptions {
        pass_state_dir: false,
        api_toml: "instance = \"lab\"\n".into(),
        ..DaemonOptions::default()
    };
    let args: Vec<String> = [
        "--config",
        &config.display().to_string(),
        "--backend",
        "systemd",
        "--user",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let configure = |command: &mut Command| {
        manager.apply_env(command);
        command.current_dir(elsewhere.path());
    };
    let daemon = ApiDaemon::start_configured(env, &options, &args, &configure).await;

    let rule = "ExecStart= --state-dir of contimg-stream@lab.service on the user manager";
    let status = daemon.get_json("/api/streaming/status").await;
    assert_eq!(status["unit"], "contimg-stream@lab.service", "{status}");
    assert_eq!(
        status["state_dir"],
        canonical(&lab).display().to_string(),
        "{status}\n{}",
        daemon.log()
    );
    assert_eq!(status["state_dir_rule"], rule);
    // It works there, too: its history DB and the instance's config.
    assert!(lab.join("history.sqlite3").exists(), "{}", daemon.log());
    assert!(!elsewhere.path().join("state").exists());
    assert_eq!(
        status["config"]["input_dir"],
        daemon.env.input_dir.display().to_string()
    );
    let log = daemon.log();
    assert!(
        log.contains(&format!(
            "state dir {} (from {rule})",
            canonical(&lab).display()
        )),
        "{log}"
    );
}

/// The explicit settings still come first: `state_dir` in api.toml wins over
/// the unit (and over `CONTIMG_STATE_DIR`), and the status says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_dir_in_api_toml_wins_over_the_unit_and_the_environment() {
    let manager = UserManager::start();
    let env = WorkerEnv::new();
    env.write_config("");
    install_template(&manager, &env);
    let config = env.state_dir.join("api.toml");
    let options = DaemonOptions {
        pass_state_dir: false,
        api_toml: format!(
            "instance = \"lab\"\nstate_dir = \"{}\"\n",
            env.state_dir.display()
        ),
        ..DaemonOptions::default()
    };
    let args: Vec<String> = ["--config", &config.display().to_string(), "--user"]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
    let from_env = env.root.path().join("from-env");
    let configure = |command: &mut Command| {
        manager.apply_env(command);
        command.env("CONTIMG_STATE_DIR", &from_env);
    };
    let daemon = ApiDaemon::start_configured(env, &options, &args, &configure).await;
    let status = daemon.get_json("/api/streaming/status").await;
    assert_eq!(
        status["state_dir"],
        canonical(&daemon.env.state_dir).display().to_string(),
        "{status}"
    );
    assert_eq!(
        status["state_dir_rule"],
        format!("state_dir in {}", config.display())
    );
    assert!(!from_env.exists());
}
