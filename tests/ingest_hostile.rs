//! Hostile input directories against the real `contimg-stream` binary: symlinks
//! leaving `input_dir`, FIFOs under subband names, subband numbers beyond
//! `expected_subbands`, names that are almost the correlator's, and subbands that
//! arrive after their group was closed.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::worker::{
    WorkerEnv, WorkerProcess, test_converter_toml, wait_until, write_test_converter,
};
use contimg::ingest::names::subband_file_name;
use contimg::queue::{GroupFilter, GroupState, group_id_for};
use contimg::uvh5::simulate::{Profile, SimulateArgs, run};

const T0: f64 = 1_760_362_083.0;
const GROUP_SPACING: f64 = 309.0;

/// A worker env with the marker-driven test converter and `extra` config lines.
fn env_with_test_converter(extra: &str) -> WorkerEnv {
    let env = WorkerEnv::new();
    let control = env.root.path().join("control");
    std::fs::create_dir_all(&control).unwrap();
    let script = write_test_converter(env.root.path());
    env.write_config(&format!(
        "{extra}\n{}",
        test_converter_toml(&script, &control)
    ));
    env
}

fn spawn_ready(env: &WorkerEnv) -> WorkerProcess {
    let worker = env.spawn();
    assert!(
        wait_until(Duration::from_secs(20), || worker.log().contains("ready")),
        "{}",
        worker.log()
    );
    worker
}

fn all_groups(env: &WorkerEnv) -> Vec<contimg::queue::GroupSummary> {
    env.reader()
        .groups(&GroupFilter {
            state: None,
            limit: Some(1000),
            before: None,
        })
        .unwrap()
}

fn simulate(dir: &Path, start: &str, subbands: u32, seed: u64) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let report = run(&SimulateArgs {
        input_dir: dir.to_path_buf(),
        groups: 1,
        interval: 0.0,
        jitter: 0.0,
        subbands,
        profile: Profile::Small,
        corrupt_rate: 0.0,
        start: Some(start.into()),
        seed,
    })
    .expect("simulate a group");
    report.groups[0].files.clone()
}

/// Writes `bytes` under a temp name and renames it to `name`, as the correlator does.
fn drop_named(dir: &Path, name: &OsStr, bytes: &[u8]) -> PathBuf {
    let temp = dir.join(".incoming.tmp");
    std::fs::write(&temp, bytes).unwrap();
    let target = dir.join(name);
    std::fs::rename(&temp, &target).unwrap();
    target
}

/// Lets the worker's poll scan (0.5 s in tests) pass over the directory twice.
fn let_two_scans_pass() {
    std::thread::sleep(Duration::from_millis(1500));
}

/// Waits until the worker has recorded `unrecognised` entries and completed one
/// group, then checks that group is the only one and the worker is still up.
fn assert_only_group(
    env: &WorkerEnv,
    worker: &mut WorkerProcess,
    group_id: &str,
    unrecognised: u64,
) {
    assert!(
        wait_until(Duration::from_secs(60), || env.stats().is_some_and(|s| {
            s.count(GroupState::Completed) == 1 && s.unrecognised_files == unrecognised
        })),
        "{:?}\n{}",
        env.stats(),
        worker.log()
    );
    let_two_scans_pass();
    let groups = all_groups(env);
    assert_eq!(groups.len(), 1, "only {group_id}: {groups:?}");
    assert_eq!(groups[0].group_id, group_id);
    assert_eq!(env.stats().unwrap().unrecognised_files, unrecognised);
    assert!(worker.exited().is_none(), "{}", worker.log());
    // Each refused entry is logged once, however many scans pass over it.
    assert_eq!(
        worker
            .log()
            .matches("unrecognised file in input_dir")
            .count() as u64,
        unrecognised,
        "{}",
        worker.log()
    );
}

/// `contimgctl --backend process --state-dir … ARGS` (reads the queue DB only).
fn ctl(env: &WorkerEnv, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_contimgctl"))
        .args(["--backend", "process", "--state-dir"])
        .arg(&env.state_dir)
        .args(args)
        .output()
        .expect("run contimgctl");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() || args.contains(&"metrics"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn ctl_json(env: &WorkerEnv, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let text = ctl(env, &all);
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{err}: {text}"))
}

/// Every recorded reason contains `needle`.
fn assert_reasons(env: &WorkerEnv, needle: &str) {
    let recorded = env.reader().unrecognised_files(1000).unwrap();
    assert!(
        recorded.iter().all(|f| f.reason.contains(needle)),
        "{recorded:#?}"
    );
}

#[test]
fn symlinks_to_valid_subbands_outside_input_dir_are_never_registered() {
    let env = WorkerEnv::new();
    env.write_config(
        "expected_subbands = 16\nvalidate_uvh5 = true\nuse_subprocess = true\n[converter]\nkind = \"builtin\"\n",
    );
    let outside = env.root.path().join("outside");
    // One group linked in before start (bootstrap scan), one while running (poll scan).
    let before = simulate(&outside.join("a"), "2025-10-13T10:00:00", 16, 1);
    for target in &before {
        std::os::unix::fs::symlink(target, env.input_dir.join(target.file_name().unwrap()))
            .unwrap();
    }
    let mut worker = spawn_ready(&env);
    let after = simulate(&outside.join("b"), "2025-10-13T11:00:00", 16, 2);
    for target in &after {
        std::os::unix::fs::symlink(target, env.input_dir.join(target.file_name().unwrap()))
            .unwrap();
    }
    // A real group inside input_dir still completes.
    simulate(&env.input_dir, "2025-10-13T12:00:00", 16, 3);
    assert_only_group(&env, &mut worker, "2025-10-13T12:00:00", 32);
    assert_reasons(&env, "a symbolic link (to \"");
    assert_eq!(worker.stop(), Some(0));
}

#[test]
fn a_fifo_under_a_subband_name_neither_blocks_nor_registers() {
    let env = WorkerEnv::new();
    env.write_config(
        "expected_subbands = 2\nvalidate_uvh5 = true\nuse_subprocess = true\n[converter]\nkind = \"builtin\"\n",
    );
    let fifo_at_start = env.input_dir.join(subband_file_name(T0, 0));
    nix::unistd::mkfifo(
        &fifo_at_start,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let mut worker = spawn_ready(&env);
    // A FIFO created while running, then renamed into place like a finished file.
    let temp = env.input_dir.join("fifo_incomplete.hdf5");
    nix::unistd::mkfifo(&temp, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    std::fs::rename(
        &temp,
        env.input_dir.join(subband_file_name(T0 + GROUP_SPACING, 0)),
    )
    .unwrap();
    simulate(&env.input_dir, "2025-10-13T12:00:00", 2, 4);
    assert_only_group(&env, &mut worker, "2025-10-13T12:00:00", 2);
    assert_reasons(&env, "not a regular file (FIFO)");
    assert_eq!(worker.stop(), Some(0));
}

#[test]
fn a_subband_number_beyond_expected_subbands_never_completes_a_group() {
    let env = env_with_test_converter("expected_subbands = 16");
    let mut worker = spawn_ready(&env);
    for sb in 0..15 {
        env.drop_subband(T0 + f64::from(sb) * 0.5, sb, b"data");
    }
    let bogus = env.drop_subband(T0 + 3.0, 42, b"not a real subband");
    let group_id = group_id_for(T0);
    assert!(wait_until(Duration::from_secs(20), || {
        env.reader()
            .group(&group_id)
            .ok()
            .flatten()
            .is_some_and(|g| g.files.len() >= 15)
    }));
    let_two_scans_pass();
    let detail = env.reader().group(&group_id).unwrap().unwrap();
    assert_eq!(
        detail.summary.state,
        GroupState::Collecting,
        "sb42 must not stand in for sb15: {detail:?}"
    );
    // The real sb15 completes the group with exactly sb00..sb15.
    env.drop_subband(T0 + 7.5, 15, b"data");
    assert_only_group(&env, &mut worker, &group_id, 1);
    assert_reasons(&env, "subband sb42 is not below expected_subbands (16)");
    let detail = env.reader().group(&group_id).unwrap().unwrap();
    let indices: Vec<u32> = detail.files.iter().map(|f| f.subband_idx).collect();
    assert_eq!(indices, (0..16).collect::<Vec<_>>());
    assert!(detail.files.iter().all(|f| Path::new(&f.path) != bogus));
    assert_eq!(worker.stop(), Some(0));
}

#[test]
fn a_subband_arriving_after_its_group_completed_is_not_attached() {
    let env = env_with_test_converter("expected_subbands = 2");
    let worker = spawn_ready(&env);
    env.drop_subband(T0, 0, b"data");
    env.drop_subband(T0 + 1.0, 1, b"data");
    assert!(
        wait_until(Duration::from_secs(20), || env.count(GroupState::Completed)
            == 1),
        "{}",
        worker.log()
    );
    // The operator raises expected_subbands; the closed group keeps its 2 files.
    let config = std::fs::read_to_string(env.state_dir.join("streaming.toml")).unwrap();
    std::fs::write(
        env.state_dir.join("streaming.toml"),
        config.replace("expected_subbands = 2", "expected_subbands = 4"),
    )
    .unwrap();
    worker.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(wait_until(Duration::from_secs(10), || worker
        .log()
        .contains("configuration reloaded")));
    let late = env.drop_subband(T0 + 2.0, 2, b"data");
    let late_name = late.file_name().unwrap().to_string_lossy().into_owned();
    let group_id = group_id_for(T0);
    assert!(
        wait_until(Duration::from_secs(10), || worker
            .log()
            .contains(&late_name)),
        "{}",
        worker.log()
    );
    let_two_scans_pass();
    let detail = env.reader().group(&group_id).unwrap().unwrap();
    assert_eq!(detail.summary.state, GroupState::Completed);
    assert_eq!(detail.files.len(), 2, "late file attached: {detail:?}");
    let stats = env.stats().unwrap();
    assert_eq!((stats.late_files, stats.unrecognised_files), (1, 0));
    let recorded = env.reader().late_files(10).unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].path, late.to_string_lossy());
    assert_eq!(recorded[0].group_id, group_id);
    assert_eq!(recorded[0].subband_idx, 2);
    assert_eq!(recorded[0].group_state, GroupState::Completed);
    let log = worker.log();
    let warning = log
        .lines()
        .find(|line| line.contains("late subband file"))
        .unwrap_or_else(|| panic!("no warning about the late file:\n{log}"));
    assert!(
        warning.contains("WARN") && warning.contains(&group_id) && warning.contains(&late_name),
        "{warning}"
    );
    assert_eq!(worker.stop(), Some(0));
    // Visible to the operator: counts and the newest late files.
    let text = ctl(&env, &["queue"]);
    assert!(text.contains("late files: 1"), "{text}");
    assert!(
        text.contains(&format!("sb02 for {group_id} (completed)")),
        "{text}"
    );
    let listed = ctl_json(&env, &["queue"]);
    assert_eq!(listed["late_files_total"], 1, "{listed}");
    assert_eq!(listed["late_files"][0]["group_id"], group_id.as_str());
    let metrics = ctl_json(&env, &["metrics"]);
    assert_eq!(
        (&metrics["late_files"], &metrics["unrecognised_files"]),
        (&serde_json::json!(1), &serde_json::json!(0)),
        "{metrics}"
    );
}

#[test]
fn names_that_are_almost_the_correlators_are_not_registered() {
    let env = env_with_test_converter("expected_subbands = 1");
    let mut worker = spawn_ready(&env);
    let near_misses: Vec<Vec<u8>> = [
        " 2025-10-13T10:00:00_sb00.hdf5",
        "2025-10-13T10:05:00_sb00.hdf5 ",
        "2025-10-13T10:10:00_sb00.hdf5\n",
        "2025-10-13T10:15:00_sb00\n.hdf5",
        "2025-10-13T10:20:00\t_sb00.hdf5",
        "2025-10-13T10:25:00.5_sb00.hdf5",
        "2025-10-13 10:30:00_sb00.hdf5",
        "1999-12-31T23:59:59_sb00.hdf5",
        "2999-01-01T00:00:00_sb00.hdf5",
        "+2025-10-13T10:35:00_sb00.hdf5",
        "2025-10-13T10:40:00_sb00.h5",
        "2025-10-13T10:45:00_SB00.hdf5",
        "notes.txt",
    ]
    .iter()
    .map(|name| name.as_bytes().to_vec())
    .chain(std::iter::once(
        b"2025-10-13T10:50:00_sb0\xff.hdf5".to_vec(),
    ))
    .chain(std::iter::once(
        b"2025-10-13T10:55:00\xc3\xa9_sb00.hdf5".to_vec(),
    ))
    .collect();
    for name in &near_misses {
        drop_named(&env.input_dir, OsStr::from_bytes(name), b"data");
    }
    // Temp names stay silent, and a correct name still works.
    drop_named(
        &env.input_dir,
        OsStr::new("2025-10-13T11:00:00_sb00_incomplete.hdf5"),
        b"x",
    );
    drop_named(
        &env.input_dir,
        OsStr::new(".2025-10-13T11:05:00_sb00.hdf5"),
        b"x",
    );
    env.drop_subband(T0, 0, b"data");
    let misses = near_misses.len() as u64;
    assert_only_group(&env, &mut worker, &group_id_for(T0), misses);
    let recorded = env.reader().unrecognised_files(1000).unwrap();
    for name in &near_misses {
        let path = env.input_dir.join(OsStr::from_bytes(name));
        assert!(
            recorded.iter().any(|f| f.path == path.to_string_lossy()),
            "{path:?} not recorded: {recorded:#?}"
        );
    }
    assert!(
        recorded.iter().all(|f| f.size_bytes == Some(4)),
        "{recorded:#?}"
    );
    // A log line stays one line whatever the name holds.
    assert!(
        !worker.log().lines().any(|line| line.starts_with(".hdf5")),
        "{}",
        worker.log()
    );
    assert_eq!(worker.stop(), Some(0));

    // After a restart the same entries are counted, not logged or added again.
    let restarted = spawn_ready(&env);
    let_two_scans_pass();
    assert_eq!(env.stats().unwrap().unrecognised_files, misses);
    assert!(
        !restarted.log().contains("unrecognised file in input_dir"),
        "{}",
        restarted.log()
    );
    assert_eq!(restarted.stop(), Some(0));
    let text = ctl(&env, &["queue"]);
    assert!(
        text.contains(&format!("unrecognised files: {misses}")),
        "{text}"
    );
    assert!(text.contains("not valid UTF-8"), "{text}");
    // Listed paths are quoted, so a newline in a name stays inside one line.
    assert!(
        !text.lines().any(|line| line.starts_with(".hdf5")),
        "{text}"
    );
    let listed = ctl_json(&env, &["queue", "--limit", "100"]);
    assert_eq!(listed["unrecognised_files_total"], misses, "{listed}");
    assert_eq!(
        listed["unrecognised_files"].as_array().map(Vec::len),
        Some(near_misses.len())
    );
    let metrics = ctl_json(&env, &["metrics"]);
    assert_eq!(metrics["unrecognised_files"], misses, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reports_unrecognised_and_late_counts() {
    use common::api::{ApiDaemon, DaemonOptions};
    let daemon = ApiDaemon::start_process(DaemonOptions {
        streaming_toml: "expected_subbands = 2".into(),
        ..DaemonOptions::default()
    })
    .await;
    let started = daemon.post("/api/streaming/start", None).await;
    assert!(started.status().is_success(), "{}", daemon.log());
    let env = &daemon.env;
    assert!(
        wait_until(Duration::from_secs(20), || env.stats().is_some()),
        "{}",
        daemon.log()
    );
    env.drop_subband(T0, 42, b"data");
    env.drop_subband(T0, 2, b"data");
    let mut metrics = serde_json::Value::Null;
    let mut text = String::new();
    for _ in 0..200 {
        metrics = daemon.get_json("/api/streaming/metrics").await;
        text = daemon.get("/metrics").await.unwrap().text().await.unwrap();
        if metrics["unrecognised_files"] == 2 && text.contains("contimg_unrecognised_files 2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metrics["unrecognised_files"],
        2,
        "{metrics}\n{}",
        daemon.log()
    );
    assert_eq!(metrics["late_files"], 0, "{metrics}");
    assert!(text.contains("contimg_unrecognised_files 2"), "{text}");
    assert!(text.contains("contimg_late_files 0"), "{text}");
}
