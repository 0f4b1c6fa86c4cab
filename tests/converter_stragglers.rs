//! Issue 10, finding 8: a converter's grandchildren must not outlive a killed
//! worker. `PR_SET_PDEATHSIG` reaches only the direct child; a background process
//! it forked kept writing behind the restarted worker. The real worker binary, a
//! real shell converter, `kill -9`.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::worker::{WorkerEnv, wait_until};
use contimg::queue::GroupState;

const T0: f64 = 1_760_362_083.0;

/// Kills, on drop, every process left in the converter's process group whose
/// command line names this test's temp dir, so a failing test leaves nothing.
struct GroupReaper {
    pgid_file: PathBuf,
    needle: String,
}

impl GroupReaper {
    fn members(&self) -> Vec<i32> {
        let Some(pgid) = std::fs::read_to_string(&self.pgid_file)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        else {
            return Vec::new();
        };
        let procfs = contimg::metrics::procfs::ProcFs::default();
        procfs
            .group_members(pgid)
            .into_iter()
            .filter(|stat| {
                std::fs::read(format!("/proc/{}/cmdline", stat.pid))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&self.needle))
            })
            .map(|stat| stat.pid as i32)
            .collect()
    }
}

impl Drop for GroupReaper {
    fn drop(&mut self) {
        for pid in self.members() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// First run: records its process group, starts a background writer and hangs.
/// Later runs (after recovery) succeed at once.
fn converter_toml(root: &Path) -> (String, PathBuf, PathBuf) {
    let growing = root.join("growing.out");
    let pgid_file = root.join("converter.pgid");
    let marker = root.join("first-run-done");
    let script = format!(
        "if [ -e '{marker}' ]; then exit 0; fi; touch '{marker}'; echo $$ > '{pgid}'; \
         ( while true; do echo x >> '{growing}'; sleep 0.1; done ) & sleep 600",
        marker = marker.display(),
        pgid = pgid_file.display(),
        growing = growing.display(),
    );
    let toml = format!(
        "expected_subbands = 1\n[converter]\nkind = \"command\"\nargv = [\"sh\", \"-c\", {script:?}]\n"
    );
    (toml, growing, pgid_file)
}

/// A worker environment whose converter hangs on its first run with a
/// background writer appending to `growing`, and the reaper for that writer.
fn hanging_converter_env() -> (WorkerEnv, PathBuf, GroupReaper) {
    let env = WorkerEnv::new();
    let (toml, growing, pgid_file) = converter_toml(env.root.path());
    env.write_config(&toml);
    let reaper = GroupReaper {
        pgid_file,
        needle: env.root.path().to_string_lossy().into_owned(),
    };
    (env, growing, reaper)
}

#[test]
fn a_grandchild_of_a_killed_worker_stops_writing_once_the_restarted_worker_recovered() {
    let (env, growing, _reaper) = hanging_converter_env();

    let first = env.spawn();
    env.drop_subband(T0, 0, b"x");
    assert!(
        wait_until(Duration::from_secs(20), || size_of(&growing) > 0),
        "the converter's background writer never started:\n{}",
        first.log()
    );
    first.kill9();

    let second = env.spawn();
    assert!(
        wait_until(Duration::from_secs(20), || second.log().contains("ready")),
        "restarted worker not ready:\n{}",
        second.log()
    );
    // Recovery is done: nothing the previous run started may write any more.
    let after_recovery = size_of(&growing);
    std::thread::sleep(Duration::from_millis(2500));
    let later = size_of(&growing);
    assert_eq!(
        later,
        after_recovery,
        "a process of the killed worker's converter kept writing {} bytes after recovery\n{}",
        later - after_recovery,
        second.log()
    );
    assert!(
        second
            .log()
            .contains("killed converter processes left by the previous run"),
        "{}",
        second.log()
    );
    // The recovered group is converted again (the second run succeeds at once).
    assert!(
        wait_until(Duration::from_secs(20), || env.count(GroupState::Completed)
            == 1),
        "{}",
        second.log()
    );
    assert!(second.stop().is_some());
}

/// A `sleep 60` in a process group of its own, killed on drop.
struct Bystander(std::process::Child);

impl Bystander {
    fn start() -> Self {
        let child = std::process::Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .unwrap();
        Self(child)
    }

    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn records_of_reused_pids_and_of_other_queues_are_never_acted_on() {
    let env = WorkerEnv::new();
    env.write_config("expected_subbands = 1\n");
    let records = env.state_dir.join("run").join("converters");
    std::fs::create_dir_all(&records).unwrap();
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let write_record = |pid: u32, start_ticks: u64, queue_db: &Path| {
        let record = serde_json::json!({
            "pgid": pid,
            "start_ticks": start_ticks,
            "boot_id": boot_id.trim(),
            "group_id": "2025-10-13T13:28:03",
            "queue_db": queue_db,
        });
        let path = records.join(format!("{pid}.json"));
        std::fs::write(&path, record.to_string()).unwrap();
        path
    };
    // Its PID was reused: the live process has another start time.
    let mut reused = Bystander::start();
    let reused_record = write_record(reused.0.id(), 1, &env.queue_db());
    // Exactly as recorded, but by a worker on another queue DB (which would hold
    // that queue's lock, not ours): not ours to kill.
    let mut other_queue = Bystander::start();
    let procfs = contimg::metrics::procfs::ProcFs::default();
    let ticks = procfs.stat(other_queue.0.id()).unwrap().start_ticks;
    let other_db = env.root.path().join("other.sqlite3");
    let other_record = write_record(other_queue.0.id(), ticks, &other_db);

    let worker = env.spawn();
    assert!(
        wait_until(Duration::from_secs(20), || worker.log().contains("ready")),
        "{}",
        worker.log()
    );
    assert!(reused.alive(), "killed a reused PID:\n{}", worker.log());
    assert!(!reused_record.exists(), "stale record kept");
    assert!(
        other_queue.alive(),
        "killed another queue's converter:\n{}",
        worker.log()
    );
    assert!(other_record.exists(), "another queue's record removed");
    assert!(worker.stop().is_some());
}

#[test]
fn a_converter_that_exits_leaving_a_background_writer_has_it_killed() {
    let env = WorkerEnv::new();
    let growing = env.root.path().join("growing.out");
    let pgid_file = env.root.path().join("converter.pgid");
    let script = format!(
        "echo $$ > '{pgid}'; ( while true; do echo x >> '{growing}'; sleep 0.1; done ) & sleep 0.5; exit 0",
        pgid = pgid_file.display(),
        growing = growing.display(),
    );
    env.write_config(&format!(
        "expected_subbands = 1\n[converter]\nkind = \"command\"\nargv = [\"sh\", \"-c\", {script:?}]\n"
    ));
    let _reaper = GroupReaper {
        pgid_file,
        needle: env.root.path().to_string_lossy().into_owned(),
    };
    let worker = env.spawn();
    env.drop_subband(T0, 0, b"x");
    assert!(
        wait_until(Duration::from_secs(20), || env.count(GroupState::Completed)
            == 1),
        "{}",
        worker.log()
    );
    let at_completion = size_of(&growing);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        size_of(&growing),
        at_completion,
        "the converter's background writer outlived the conversion\n{}",
        worker.log()
    );
    assert!(
        worker
            .log()
            .contains("killed processes the converter left running"),
        "{}",
        worker.log()
    );
    assert!(worker.stop().is_some());
}

/// Under systemd the unit's cgroup dies with the worker: with the shipped unit
/// (`KillMode=mixed`), once the main process is gone systemd SIGKILLs everything
/// left in the unit's cgroup, before the restart. Checked while the restart is
/// still pending, so the worker's own straggler records play no part.
#[test]
fn under_systemd_a_killed_workers_grandchild_dies_with_the_unit() {
    use common::systemd::{UserManager, WorkerUnit, worker_unit};
    const UNIT: &str = "contimg-stream.service";
    let manager = UserManager::start();
    let (env, growing, reaper) = hanging_converter_env();
    let log = env.root.path().join("worker.log");
    manager.install_unit(
        UNIT,
        &worker_unit(&WorkerUnit {
            worker_bin: &common::worker::stream_bin(),
            state_dir: &env.state_dir,
            log_file: &log,
            watchdog_sec: "30s",
            restart_sec: "4s",
            template: false,
        }),
    );
    assert_eq!(
        manager.property(UNIT, "KillMode"),
        "mixed",
        "the shipped unit's KillMode changed; re-check this test"
    );
    let started = manager.systemctl(&["start", UNIT]);
    assert!(started.status.success(), "{started:?}");
    env.drop_subband(T0, 0, b"x");
    let worker_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(20), || size_of(&growing) > 0),
        "the converter's background writer never started:\n{}",
        worker_log()
    );
    let main_pid: i32 = manager.property(UNIT, "MainPID").parse().unwrap();
    assert!(main_pid > 0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(main_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(3), || reaper.members().is_empty()),
        "the converter's grandchild survived the worker under systemd: {:?}",
        reaper.members()
    );
    // Still before the restart: systemd's cgroup kill did it, not the new worker.
    assert_eq!(manager.property(UNIT, "NRestarts"), "0");
    let stopped_at = size_of(&growing);
    manager.wait_for("the restart", Duration::from_secs(20), || {
        manager.property(UNIT, "NRestarts") == "1"
            && manager.property(UNIT, "ActiveState") == "active"
    });
    manager.wait_for("the recovered group", Duration::from_secs(20), || {
        env.count(GroupState::Completed) == 1
    });
    assert_eq!(size_of(&growing), stopped_at, "{}", worker_log());
    let _ = manager.systemctl(&["stop", UNIT]);
}

/// The process backend: `contimgctl stop` after the worker was killed with
/// SIGKILL leaves nothing of it writing.
#[test]
fn contimgctl_stop_after_a_kill_9_kills_the_converters_grandchild() {
    let (env, growing, reaper) = hanging_converter_env();
    let contimgctl = |verb: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_contimgctl"))
            .args(["--backend", "process", "--stop-timeout", "2", "--state-dir"])
            .arg(&env.state_dir)
            .arg("--worker-bin")
            .arg(common::worker::stream_bin())
            .arg(verb)
            .output()
            .expect("run contimgctl")
    };
    let started = contimgctl("start");
    assert!(started.status.success(), "{started:?}");
    env.drop_subband(T0, 0, b"x");
    assert!(
        wait_until(Duration::from_secs(20), || size_of(&growing) > 0),
        "the converter's background writer never started"
    );
    let pid_record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.state_dir.join("run/contimg-stream.pid")).unwrap(),
    )
    .unwrap();
    let worker_pid = pid_record["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let stopped = contimgctl("stop");
    assert!(stopped.status.success(), "{stopped:?}");
    assert!(
        reaper.members().is_empty(),
        "still running after stop: {:?}",
        reaper.members()
    );
    let after_stop = size_of(&growing);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(size_of(&growing), after_stop);
}
