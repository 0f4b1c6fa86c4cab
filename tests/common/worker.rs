//! Helpers for driving the real `contimg-stream` binary on temp directories.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use contimg::ingest::names::subband_file_name;
use contimg::queue::{GroupState, QueueReader, QueueStats, unix_now};

pub fn stream_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_contimg-stream"))
}

/// `contimgctl --backend process` on `state_dir`, starting the real worker binary.
pub fn ctl_process(state_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_contimgctl"))
        .env("NO_COLOR", "1")
        .arg("--backend")
        .arg("process")
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--worker-bin")
        .arg(stream_bin())
        .args(args)
        .output()
        .expect("run contimgctl")
}

/// A state/input/output/scratch layout in a temp dir, with a config file.
pub struct WorkerEnv {
    pub root: tempfile::TempDir,
    pub state_dir: PathBuf,
    pub input_dir: PathBuf,
    pub output_dir: PathBuf,
    pub scratch_dir: PathBuf,
}

impl WorkerEnv {
    pub fn new() -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let state_dir = root.path().join("state");
        let input_dir = root.path().join("incoming");
        let output_dir = root.path().join("output");
        let scratch_dir = root.path().join("scratch");
        for dir in [&state_dir, &input_dir, &output_dir, &scratch_dir] {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        Self {
            root,
            state_dir,
            input_dir,
            output_dir,
            scratch_dir,
        }
    }

    pub fn queue_db(&self) -> PathBuf {
        self.state_dir.join("ingest.sqlite3")
    }

    /// Writes `streaming.toml`: fast test timings, no free-space floor
    /// (`min_free_gb = 0`, so no test depends on how full the host's disk is),
    /// plus `extra` TOML lines (a key in `extra` replaces the default for it).
    pub fn write_config(&self, extra: &str) {
        let defaults = format!(
            "input_dir = {:?}\noutput_dir = {:?}\nscratch_dir = {:?}\nqueue_db = {:?}\n\
             poll_interval = 0.5\nworker_poll_interval = 0.2\nmonitor_interval = 1.0\n\
             validate_uvh5 = false\nlog_level = \"DEBUG\"\n\
             min_free_gb = 0.0\n",
            self.input_dir,
            self.output_dir,
            self.scratch_dir,
            self.queue_db()
        );
        let overridden = |line: &str| {
            let key = line.split('=').next().unwrap_or("").trim();
            extra
                .lines()
                .any(|e| e.split('=').next().unwrap_or("").trim() == key)
        };
        let kept: Vec<&str> = defaults.lines().filter(|line| !overridden(line)).collect();
        let text = format!("{}\n{extra}\n", kept.join("\n"));
        std::fs::write(self.state_dir.join("streaming.toml"), text).expect("write config");
    }

    pub fn spawn(&self) -> WorkerProcess {
        self.spawn_with_env(&[])
    }

    /// [`Self::spawn`] with extra environment variables.
    pub fn spawn_with_env(&self, env: &[(&str, &str)]) -> WorkerProcess {
        let log_path = self
            .root
            .path()
            .join(format!("worker-{}.log", unix_now() as u64 ^ rand_suffix()));
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(stream_bin())
            .arg("--state-dir")
            .arg(&self.state_dir)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn contimg-stream");
        WorkerProcess {
            child: Some(child),
            log_path,
        }
    }

    /// Writes a subband file the way the correlator does: temp name, then rename.
    pub fn drop_subband(&self, timestamp: f64, subband: u32, bytes: &[u8]) -> PathBuf {
        let final_path = self.input_dir.join(subband_file_name(timestamp, subband));
        let temp = self.input_dir.join(format!(
            "{}_incomplete.hdf5",
            final_path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("x")
        ));
        std::fs::write(&temp, bytes).expect("write temp");
        std::fs::rename(&temp, &final_path).expect("rename");
        final_path
    }

    pub fn reader(&self) -> QueueReader {
        QueueReader::open(&self.queue_db()).expect("open queue read-only")
    }

    pub fn stats(&self) -> Option<QueueStats> {
        QueueReader::open(&self.queue_db())
            .ok()?
            .stats(unix_now())
            .ok()
    }

    pub fn count(&self, state: GroupState) -> u64 {
        self.stats().map(|s| s.count(state)).unwrap_or(0)
    }
}

fn rand_suffix() -> u64 {
    u64::from(std::process::id()) << 20 | u64::from(Instant::now().elapsed().subsec_nanos())
}

/// A running worker; killed on drop so a failing test leaves nothing behind.
pub struct WorkerProcess {
    child: Option<Child>,
    pub log_path: PathBuf,
}

impl WorkerProcess {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal);
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let mut child = self.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`, as a crash.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and reaps the process now (for tests that start their own).
    pub fn kill_and_forget(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// A converter script for tests: behaviour is chosen per group by marker files in
/// `control_dir` (`fail-always-<group>`, `fail-times-<group>` holding a count,
/// `slow` holding seconds to sleep). Writes `<output_dir>/<group>.done` atomically.
pub fn write_test_converter(dir: &Path) -> PathBuf {
    let script = dir.join("converter.sh");
    let text = r#"#!/bin/sh
# usage: converter.sh CONTROL_DIR GROUP_ID OUTPUT_DIR FILES...
control="$1"; group="$2"; out="$3"; shift 3
echo "converting $group with $# files"
[ -f "$control/slow" ] && sleep "$(cat "$control/slow")"
if [ -f "$control/fail-always-$group" ]; then echo "always failing $group" >&2; exit 7; fi
if [ -f "$control/fail-times-$group" ]; then
  left=$(cat "$control/fail-times-$group")
  if [ "$left" -gt 0 ]; then
    echo $((left - 1)) > "$control/fail-times-$group"
    echo "planned failure of $group ($left left)" >&2
    exit 3
  fi
fi
for f in "$@"; do [ -r "$f" ] || { echo "unreadable $f" >&2; exit 9; }; done
echo "$# files" > "$out/.$group.done.partial"
mv "$out/.$group.done.partial" "$out/$group.done"
echo "$group" >> "$control/ledger"
"#;
    std::fs::write(&script, text).expect("write converter");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

/// The TOML converter section for [`write_test_converter`].
pub fn test_converter_toml(script: &Path, control_dir: &Path) -> String {
    format!(
        "[converter]\nkind = \"command\"\nargv = [{:?}, {:?}, \"{{group_id}}\", \"{{output_dir}}\", \"{{files}}\"]\n",
        script.to_string_lossy(),
        control_dir.to_string_lossy()
    )
}
