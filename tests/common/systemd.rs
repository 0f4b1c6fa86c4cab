//! RAII guard around `ops/testenv/user-manager.sh`: a real, isolated systemd user
//! manager per test. `Drop` always stops it (manager, leftover processes, cgroups,
//! private dir), also when the test panics. Needs root and systemd + dbus; a test
//! using it fails (never skips) when they are missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const HARNESS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ops/testenv/user-manager.sh");
pub const WORKER_UNIT_TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/systemd/contimg-stream.service"
);
pub const WORKER_INSTANCE_TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/systemd/contimg-stream@.service"
);

pub struct UserManager {
    pub dir: PathBuf,
    pub unit_dir: PathBuf,
    pub cgroup: String,
    pub bus: String,
    pub runtime_dir: PathBuf,
    pub manager_pid: u32,
    pub log: PathBuf,
}

impl UserManager {
    /// Starts a manager; panics (failing the test) if the harness cannot.
    pub fn start() -> Self {
        let harness = super::harness::HarnessOutput::start(HARNESS, "root, systemd, dbus");
        let var = |name: &str| harness.var(name);
        Self {
            dir: PathBuf::from(var("SDTEST_DIR")),
            unit_dir: PathBuf::from(var("SDTEST_UNIT_DIR")),
            cgroup: var("SDTEST_CGROUP"),
            bus: var("DBUS_SESSION_BUS_ADDRESS"),
            runtime_dir: PathBuf::from(var("XDG_RUNTIME_DIR")),
            manager_pid: var("MANAGER_PID").parse().expect("MANAGER_PID"),
            log: PathBuf::from(var("SDTEST_LOG")),
        }
    }

    /// Environment that points `systemctl --user`/`contimgctl --user` at this manager.
    pub fn apply_env(&self, command: &mut Command) {
        command
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            // Keep the system bus out of auto-detection's way on hosts that have one.
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                "unix:path=/nonexistent/contimg-test",
            )
            .env("NO_COLOR", "1")
            .env_remove("CONTIMG_STATE_DIR");
    }

    pub fn systemctl(&self, args: &[&str]) -> Output {
        let mut command = Command::new("systemctl");
        command.arg("--user").args(args);
        self.apply_env(&mut command);
        command.output().expect("run systemctl")
    }

    pub fn daemon_reload(&self) {
        let output = self.systemctl(&["daemon-reload"]);
        assert!(output.status.success(), "daemon-reload: {output:?}");
    }

    /// `systemctl --user show -p NAME --value UNIT`.
    pub fn property(&self, unit: &str, name: &str) -> String {
        let output = self.systemctl(&["show", "-p", name, "--value", unit]);
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    pub fn install_unit(&self, name: &str, text: &str) {
        std::fs::write(self.unit_dir.join(name), text).expect("write unit");
        self.daemon_reload();
    }

    /// Polls until `check` holds; panics with `what` after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out waiting for {what}; manager log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(HARNESS)
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// Options for turning the shipped unit file into a test user unit.
pub struct WorkerUnit<'a> {
    pub worker_bin: &'a Path,
    pub state_dir: &'a Path,
    pub log_file: &'a Path,
    pub watchdog_sec: &'a str,
    pub restart_sec: &'a str,
    /// Use the template (`contimg-stream@.service`): `%i` stays in the paths.
    pub template: bool,
}

/// The shipped unit with the test binary and state dir substituted, production-only
/// lines (User=, Group=, StateDirectory=) dropped, output appended to `log_file`
/// (the test manager has no journald), and short timeouts.
pub fn worker_unit(options: &WorkerUnit<'_>) -> String {
    let source = if options.template {
        WORKER_INSTANCE_TEMPLATE
    } else {
        WORKER_UNIT_TEMPLATE
    };
    let text = std::fs::read_to_string(source).expect("read the shipped unit file");
    let state = options.state_dir.display().to_string();
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("");
        match key {
            "User" | "Group" | "StateDirectory" | "Documentation" | "After" => continue,
            "ExecStart" => out.push_str(&format!(
                "ExecStart={} --state-dir {state}\n",
                options.worker_bin.display()
            )),
            "Environment" => out.push_str(&format!("Environment=CONTIMG_STATE_DIR={state}\n")),
            "WatchdogSec" => out.push_str(&format!("WatchdogSec={}\n", options.watchdog_sec)),
            "RestartSec" => out.push_str(&format!("RestartSec={}\n", options.restart_sec)),
            "TimeoutStopSec" => out.push_str("TimeoutStopSec=10s\nTimeoutAbortSec=1s\n"),
            "TimeoutStartSec" => out.push_str("TimeoutStartSec=30s\n"),
            "WantedBy" => out.push_str("WantedBy=default.target\n"),
            _ => {
                out.push_str(line);
                out.push('\n');
                if line.trim() == "[Service]" {
                    let log = options.log_file.display();
                    out.push_str(&format!(
                        "StandardOutput=append:{log}\nStandardError=append:{log}\n"
                    ));
                }
            }
        }
    }
    out
}
