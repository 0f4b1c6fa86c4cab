//! Helpers for driving the real `contimg-api` binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::worker::WorkerEnv;

pub const TOKEN: &str = "test-token-0123456789";

pub fn api_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_contimg-api"))
}

pub use super::worker::stream_bin;

/// A free loopback port (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The daemon's flags for the process backend running the test build's worker.
pub fn process_backend_args() -> Vec<String> {
    vec![
        "--backend".to_string(),
        "process".to_string(),
        "--worker-bin".to_string(),
        stream_bin().to_string_lossy().into_owned(),
        "--control-timeout".to_string(),
        "20".to_string(),
    ]
}

/// Writes a token file only its owner can read (the daemon refuses looser modes).
pub fn write_token_file(path: &Path, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).expect("token");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod token");
}

/// A running daemon on a temp state dir; killed (with its worker) on drop.
pub struct ApiDaemon {
    pub env: WorkerEnv,
    pub base: String,
    pub client: reqwest::Client,
    child: Option<Child>,
    pub log_path: PathBuf,
}

pub struct DaemonOptions {
    pub write_token: bool,
    /// Extra `api.toml` content (e.g. `[alerts]`).
    pub api_toml: String,
    pub extra_args: Vec<String>,
    /// Extra `streaming.toml` lines.
    pub streaming_toml: String,
    /// Keep the `low_disk` alert's default thresholds. Off by default: how full
    /// the test host's disk is must not decide a test about something else
    /// (a fresh-clone run with 2.7 % free failed four health tests).
    pub host_disk_alerts: bool,
    /// Pass `--state-dir` (the env's). Off, the daemon finds its state dir by
    /// itself (tests/api_state_dir.rs).
    pub pass_state_dir: bool,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        Self {
            write_token: true,
            api_toml: String::new(),
            extra_args: Vec::new(),
            streaming_toml: String::new(),
            host_disk_alerts: false,
            pass_state_dir: true,
        }
    }
}

impl ApiDaemon {
    /// Process backend: the daemon spawns and supervises the real worker.
    pub async fn start_process(options: DaemonOptions) -> Self {
        let env = WorkerEnv::new();
        env.write_config(&options.streaming_toml);
        let mut args = process_backend_args();
        args.extend(options.extra_args.iter().cloned());
        Self::start_with(env, &options, &args).await
    }

    pub async fn start_with(env: WorkerEnv, options: &DaemonOptions, args: &[String]) -> Self {
        Self::start_configured(env, options, args, &|_| {}).await
    }

    /// Like [`start_with`](Self::start_with); `configure` adjusts the command (env).
    pub async fn start_configured(
        env: WorkerEnv,
        options: &DaemonOptions,
        args: &[String],
        configure: &dyn Fn(&mut Command),
    ) -> Self {
        if options.write_token {
            write_token_file(&env.state_dir.join("api.token"), &format!("{TOKEN}\n"));
        }
        std::fs::write(env.state_dir.join("api.toml"), api_toml(options)).expect("api.toml");
        let port = free_port();
        let log_path = env.root.path().join("api.log");
        let log = std::fs::File::create(&log_path).expect("log");
        let mut command = Command::new(api_bin());
        configure(&mut command);
        if options.pass_state_dir {
            command.arg("--state-dir").arg(&env.state_dir);
        }
        let child = command
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .env_remove("LISTEN_FDS")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn contimg-api");
        let daemon = Self {
            env,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            child: Some(child),
            log_path,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(resp) = daemon
                .client
                .get(daemon.url("/api/streaming/status"))
                .bearer_auth(TOKEN)
                .send()
                .await
                && resp.status().is_success()
            {
                let body: serde_json::Value = resp.json().await.expect("json");
                // Wait for the producer's first real read.
                if body["active_state"] != "unknown" {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "contimg-api did not come up:\n{}",
                daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        daemon
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        self.client.get(self.url(path)).send().await
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let resp = self.get(path).await.expect("GET");
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.expect("json")
    }

    /// POST with the right token; `body` None = no body at all.
    pub async fn post(&self, path: &str, body: Option<&str>) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        request.send().await.expect("POST")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }
}

impl Drop for ApiDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // The process backend's worker outlives the daemon by design: kill
        // whatever still runs on this state dir.
        for pid in worker_pids(&self.env.state_dir) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Live (non-zombie) `contimg-stream` processes whose command line names `state_dir`.
pub fn worker_pids(state_dir: &Path) -> Vec<u32> {
    let needle = state_dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).into_owned();
        let program = cmdline.split('\0').next().unwrap_or_default();
        // argv[0] must be the worker (the daemon's own command line names it too).
        if !program.ends_with("contimg-stream") || !cmdline.contains(&needle) {
            continue;
        }
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        if !zombie {
            pids.push(pid);
        }
    }
    pids
}

/// Children of `parent` that are zombies (`State: Z` in `/proc/PID/status`), as
/// `ps` shows `<defunct>`.
pub fn zombie_children(parent: u32) -> Vec<u32> {
    let parent = parent.to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
            };
            (field("PPid:") == Some(parent.as_str())
                && field("State:").is_some_and(|state| state.starts_with('Z')))
            .then_some(pid)
        })
        .collect()
}

/// A minimal SSE reader: yields `(event, data)` pairs.
pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
}

impl SseClient {
    pub async fn connect(daemon: &ApiDaemon, path: &str) -> Self {
        let response = reqwest::Client::new()
            .get(daemon.url(path))
            .send()
            .await
            .expect("SSE connect");
        assert!(response.status().is_success());
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event, or None on timeout / end of stream.
    pub async fn next(&mut self, timeout: Duration) -> Option<(String, serde_json::Value)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                return Some((event, serde_json::from_str(&data).unwrap_or_default()));
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

impl ApiDaemon {
    /// systemd backend: the daemon controls `unit` in the test user manager `manager`,
    /// which runs the shipped worker unit (output in `<state_dir>/logs/`, where the
    /// backend's `logs` look when there is no journal).
    pub async fn start_systemd(
        manager: &super::systemd::UserManager,
        unit: &str,
        options: DaemonOptions,
    ) -> Self {
        let env = WorkerEnv::new();
        env.write_config(&options.streaming_toml);
        let log_dir = env.state_dir.join("logs");
        std::fs::create_dir_all(&log_dir).expect("log dir");
        let log = log_dir.join("contimg-stream.log");
        std::fs::write(&log, "").expect("log file");
        manager.install_unit(
            unit,
            &super::systemd::worker_unit(&super::systemd::WorkerUnit {
                worker_bin: &stream_bin(),
                state_dir: &env.state_dir,
                log_file: &log,
                watchdog_sec: "30s",
                restart_sec: "300ms",
                template: false,
            }),
        );
        let mut args = vec![
            "--backend".to_string(),
            "systemd".to_string(),
            "--user".to_string(),
            "--unit".to_string(),
            unit.to_string(),
            "--control-timeout".to_string(),
            "30".to_string(),
        ];
        args.extend(options.extra_args.iter().cloned());
        let configure = |command: &mut Command| manager.apply_env(command);
        Self::start_configured(env, &options, &args, &configure).await
    }
}

/// Polls `GET /api/streaming/status` until `condition` holds; fails the test with
/// the last status and the daemon's log after `timeout`.
pub async fn wait_status(
    daemon: &ApiDaemon,
    timeout: Duration,
    condition: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_json(daemon, "/api/streaming/status", timeout, condition).await
}

/// Polls `GET path` until `condition` holds on its JSON; fails the test with the
/// last answer and the daemon's log after `timeout`.
pub async fn wait_json(
    daemon: &ApiDaemon,
    path: &str,
    timeout: Duration,
    mut condition: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let body = daemon.get_json(path).await;
        if condition(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out; last {path}: {body}\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// JSON bodies a [`webhook_receiver`] has been sent.
pub type Received = std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>;

/// A loopback webhook receiver collecting POSTed JSON bodies; returns its URL.
pub async fn webhook_receiver() -> (String, Received) {
    let received: Received = Default::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// Waits for the running worker, SIGKILLs it, and repeats `times` times (each
/// time waiting for a new PID: the supervisor or systemd restarted it).
pub async fn kill_worker_repeatedly(daemon: &ApiDaemon, times: usize) {
    let mut last_pid = 0;
    for _ in 0..times {
        let status = wait_status(daemon, Duration::from_secs(15), |s| {
            s["running"] == true && s["pid"].as_u64() != Some(last_pid)
        })
        .await;
        last_pid = status["pid"].as_u64().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(last_pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
}

/// Waits until the webhook received a `raised` event of `rule`.
pub async fn wait_for_raised_alert(
    received: &Received,
    rule: &str,
    daemon: &ApiDaemon,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = received.lock().unwrap().clone();
        if got
            .iter()
            .any(|a| a["rule"] == rule && a["event"] == "raised")
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {rule} webhook; got {got:?}\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The daemon's `api.toml`: the test's own content, with the `low_disk`
/// thresholds at 0 % unless the test watches the host's disks.
fn api_toml(options: &DaemonOptions) -> String {
    if options.host_disk_alerts {
        return options.api_toml.clone();
    }
    let no_disk_alerts = "disk_warning_percent = 0.0\ndisk_critical_percent = 0.0\n";
    match options.api_toml.split_once("[alerts]\n") {
        Some((before, after)) => format!("{before}[alerts]\n{no_disk_alerts}{after}"),
        None => format!("{}\n[alerts]\n{no_disk_alerts}", options.api_toml),
    }
}
