//! Hostile configuration changes (issue 10, finding 9), through the real API
//! daemon, the real `contimgctl` and the real `contimg-stream check-config`: every
//! refused change names the field, leaves `streaming.toml` byte-identical, and the
//! worker still starts afterwards.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::api::{ApiDaemon, DaemonOptions, stream_bin};
use serde_json::{Value, json};

const CTL: &str = env!("CARGO_BIN_EXE_contimgctl");

/// `contimgctl config set --no-restart ASSIGNMENTS…` (the process backend, so it
/// never looks for systemd).
fn config_set(state_dir: &Path, assignments: &[String]) -> Output {
    let mut command = Command::new(CTL);
    command.args(["--backend", "process", "--json", "--state-dir"]);
    command
        .arg(state_dir)
        .args(["config", "set", "--no-restart"]);
    command.args(assignments).output().expect("run contimgctl")
}

fn check_config(state_dir: &Path) -> Output {
    Command::new(stream_bin())
        .arg("--state-dir")
        .arg(state_dir)
        .arg("check-config")
        .output()
        .expect("run contimg-stream check-config")
}

/// A text file, a FIFO and an empty file, as candidate queue DBs.
struct Planted {
    text_file: String,
    fifo: String,
    empty_file: String,
}

fn plant_files(dir: &Path) -> Planted {
    let text_file = dir.join("notes.txt");
    std::fs::write(&text_file, "this is not a database\n").unwrap();
    let fifo = dir.join("queue.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let empty_file = dir.join("empty.sqlite3");
    std::fs::write(&empty_file, b"").unwrap();
    let text = |p: &Path| p.to_string_lossy().into_owned();
    Planted {
        text_file: text(&text_file),
        fifo: text(&fifo),
        empty_file: text(&empty_file),
    }
}

/// Each hostile patch with the field path its refusal must name.
fn hostile_patches(env_root: &Path, planted: &Planted) -> Vec<(Value, &'static str)> {
    let input = env_root.join("incoming").to_string_lossy().into_owned();
    vec![
        (json!({"input_dir": format!("{input}\u{0}x")}), "input_dir"),
        (json!({"output_dir": format!("{input}/a\nb")}), "output_dir"),
        (
            json!({"scratch_dir": format!("{input}/\u{1b}[31m")}),
            "scratch_dir",
        ),
        (json!({"tmpfs_path": "/dev/shm\u{7f}"}), "tmpfs_path"),
        (
            json!({"registry_db": format!("{input}/r\u{0}.db")}),
            "registry_db",
        ),
        (json!({"log_level": "INFO\u{0}"}), "log_level"),
        (
            json!({"converter": {"kind": "command", "argv": ["/bin/true", "a\u{0}b"]}}),
            "converter.argv",
        ),
        (
            json!({"converter": {"kind": "command", "argv": ["/bin/true\u{7}"]}}),
            "converter.argv",
        ),
        (
            json!({"converter": {"kind": "command", "argv": ["/bin/true"], "env": {"X": "y\u{0}z"}}}),
            "converter.env",
        ),
        (
            json!({"converter": {"kind": "command", "argv": ["/bin/true"], "env": {"X\u{1}": "y"}}}),
            "converter.env",
        ),
        (
            json!({"converter": {"kind": "builtin", "bogus": 1}}),
            "converter.bogus",
        ),
        (
            json!({"converter": {"kind": "command", "argv": ["/bin/true"], "envv": {}}}),
            "converter.envv",
        ),
        (json!({"queue_db": planted.text_file}), "queue_db"),
        (json!({"queue_db": planted.fifo}), "queue_db"),
        (json!({"registry_db": planted.text_file}), "registry_db"),
    ]
}

fn assert_unchanged(path: &Path, before: &[u8], what: &str) {
    let now = std::fs::read(path).unwrap();
    assert!(
        now == before,
        "{what} changed {}:\n{}",
        path.display(),
        String::from_utf8_lossy(&now)
    );
}

fn field_named(body: &Value, field: &str) -> bool {
    body["details"]
        .as_array()
        .is_some_and(|errors| errors.iter().any(|e| e["field"] == field))
}

#[tokio::test]
async fn api_refuses_hostile_config_and_leaves_the_file_untouched() {
    let daemon = ApiDaemon::start_process(DaemonOptions::default()).await;
    let toml_path = daemon.env.state_dir.join("streaming.toml");
    let planted = plant_files(daemon.env.root.path());
    let before = std::fs::read(&toml_path).unwrap();

    let mut failures = Vec::new();
    for (patch, field) in hostile_patches(daemon.env.root.path(), &planted) {
        let resp = daemon
            .post("/api/streaming/config", Some(&patch.to_string()))
            .await;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status != 422 || !field_named(&body, field) {
            failures.push(format!("{patch} -> {status} {body}"));
        }
        assert_unchanged(&toml_path, &before, &patch.to_string());
    }

    for body in ["null", "[]", "\"x\"", "1", "true", " null "] {
        let resp = daemon.post("/api/streaming/config", Some(body)).await;
        let status = resp.status().as_u16();
        if status != 400 {
            failures.push(format!("body {body} -> {status}"));
        }
    }
    assert_unchanged(&toml_path, &before, "non-object bodies");
    assert!(failures.is_empty(), "accepted:\n{}", failures.join("\n"));

    // An empty file is a database SQLite will create: accepted.
    let resp = daemon
        .post(
            "/api/streaming/config",
            Some(&json!({"queue_db": planted.empty_file}).to_string()),
        )
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    // The config is still one the worker starts with.
    let resp = daemon.post("/api/streaming/start", None).await;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", daemon.log());
    assert_eq!(body["success"], true, "{body}");
    let config = daemon.get_json("/api/streaming/config").await;
    assert_eq!(config["queue_db"], planted.empty_file);
    let health = daemon.get_json("/api/streaming/health").await;
    assert_eq!(health["running"], true, "{health}");
}

#[test]
fn contimgctl_and_check_config_refuse_the_same_changes() {
    let env = common::worker::WorkerEnv::new();
    env.write_config("");
    let toml_path = env.state_dir.join("streaming.toml");
    let planted = plant_files(env.root.path());
    let before = std::fs::read(&toml_path).unwrap();

    let command = "converter.kind=command";
    let assignments: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                command.to_string(),
                "converter.argv=[\"/bin/true\", \"a\\u0000b\"]".to_string(),
            ],
            "converter.argv",
        ),
        (
            vec![
                command.to_string(),
                "converter.argv=[\"/bin/true\"]".to_string(),
                "converter.env={ X = \"\\u001b[2J\" }".to_string(),
            ],
            "converter.env",
        ),
        (vec!["converter.bogus=1".to_string()], "converter.bogus"),
        (
            vec![format!(
                "output_dir=\"{}/o\\tx\"",
                env.root.path().display()
            )],
            "output_dir",
        ),
        (vec![format!("queue_db={}", planted.text_file)], "queue_db"),
    ];
    for (assignment, field) in &assignments {
        let out = config_set(&env.state_dir, assignment);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_ne!(
            out.status.code(),
            Some(0),
            "{assignment:?} accepted: {text}"
        );
        assert!(text.contains(field), "{assignment:?}: {text}");
        assert_unchanged(&toml_path, &before, &assignment.join(" "));
    }

    // A hand-edited file with the same problems: check-config names each one and
    // exits 2, the worker's "invalid configuration" code.
    let hostile_lines = [
        (format!("queue_db = {:?}", planted.text_file), "queue_db"),
        (
            "scratch_dir = \"/tmp/x\\u0007y\"".to_string(),
            "scratch_dir",
        ),
        (
            "[converter]\nkind = \"command\"\nargv = [\"/bin/true\"]\nextra = 1".to_string(),
            "converter.extra",
        ),
        (
            "[converter]\nkind = \"command\"\nargv = [\"/bin/true\"]\nenv = { X = \"a\\u0000\" }"
                .to_string(),
            "converter.env",
        ),
    ];
    for (line, field) in &hostile_lines {
        env.write_config(line);
        let out = check_config(&env.state_dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{line}: {stderr}");
        assert!(stderr.contains(field), "{line}: {stderr}");
    }
    env.write_config("");
    let out = check_config(&env.state_dir);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let worker = env.spawn();
    assert!(
        common::worker::wait_until(std::time::Duration::from_secs(20), || worker
            .log()
            .contains("ready")),
        "{}",
        worker.log()
    );
    assert!(worker.stop().is_some());
}
