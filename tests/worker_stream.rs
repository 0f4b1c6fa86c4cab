//! The real `contimg-stream` binary on temp directories: grouping with jitter,
//! duplicates, incomplete groups, retries, crash recovery, SIGTERM, sd_notify.

mod common;

use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::worker::{WorkerEnv, test_converter_toml, wait_until, write_test_converter};
use contimg::queue::{GroupFilter, GroupState, group_id_for};

const T0: f64 = 1_760_362_083.0;
const GROUP_SPACING: f64 = 309.0;

/// Deterministic jitter in [-5, 5] s per (group, subband).
fn jitter(group: u32, subband: u32) -> f64 {
    let x = (group * 16 + subband).wrapping_mul(2_654_435_761) % 1001;
    f64::from(x) / 100.0 - 5.0
}

#[test]
fn twenty_jittered_groups_duplicates_incomplete_and_retries_end_in_the_expected_states() {
    let env = WorkerEnv::new();
    let control = env.root.path().join("control");
    std::fs::create_dir_all(&control).unwrap();
    let script = write_test_converter(env.root.path());
    env.write_config(&format!(
        "incomplete_timeout_s = 4.0\nmax_retries = 3\nretry_backoff_s = 0.2\nretry_backoff_max_s = 0.5\n{}",
        test_converter_toml(&script, &control)
    ));

    // The group ids are the earliest jittered timestamp of each group.
    let group_ids: Vec<String> = (0..21)
        .map(|g| {
            let earliest = (0..16)
                .map(|sb| jitter(g, sb))
                .fold(f64::INFINITY, f64::min);
            group_id_for(T0 + f64::from(g) * GROUP_SPACING + earliest)
        })
        .collect();
    let flaky = &group_ids[3];
    let broken = &group_ids[7];
    std::fs::write(control.join(format!("fail-times-{flaky}")), "2").unwrap();
    std::fs::write(control.join(format!("fail-always-{broken}")), "").unwrap();

    let worker = env.spawn();
    // 20 complete groups, subbands in shuffled order, plus one that never completes.
    for g in 0..21u32 {
        let subbands: Vec<u32> = if g == 20 {
            (0..16).filter(|sb| sb % 5 != 0).collect()
        } else {
            (0..16).rev().collect()
        };
        for sb in subbands {
            let ts = T0 + f64::from(g) * GROUP_SPACING + jitter(g, sb);
            env.drop_subband(ts, sb, format!("group {g} subband {sb}").as_bytes());
        }
    }
    // Duplicates: the same subband of group 5 again under a slightly different time.
    let dup_ts = T0 + 5.0 * GROUP_SPACING + jitter(5, 2) + 1.0;
    let dup = env.drop_subband(dup_ts, 2, b"duplicate");

    let settled = wait_until(Duration::from_secs(60), || {
        env.count(GroupState::Completed) == 19 && env.count(GroupState::Failed) == 2
    });
    let log = worker.log();
    assert!(
        settled,
        "final states not reached: {:?}\n{log}",
        env.stats()
    );
    assert_eq!(worker.stop(), Some(0), "clean exit on SIGTERM");

    let reader = env.reader();
    let stats = env.stats().unwrap();
    assert_eq!(stats.count(GroupState::Pending), 0);
    assert_eq!(stats.count(GroupState::InProgress), 0);
    assert_eq!(stats.count(GroupState::Collecting), 0);

    let flaky_detail = reader.group(flaky).unwrap().unwrap();
    assert_eq!(flaky_detail.summary.state, GroupState::Completed);
    assert_eq!(flaky_detail.summary.retry_count, 2);
    assert_eq!(flaky_detail.attempts.len(), 3);
    assert!(
        flaky_detail.attempts[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("planned failure")
    );

    let broken_detail = reader.group(broken).unwrap().unwrap();
    assert_eq!(broken_detail.summary.state, GroupState::Failed);
    assert_eq!(broken_detail.summary.retry_count, 3);
    assert!(
        broken_detail
            .summary
            .error
            .as_deref()
            .unwrap_or("")
            .contains("exit code 7")
    );
    assert!(!env.output_dir.join(format!("{broken}.done")).exists());

    let incomplete = reader.group(&group_ids[20]).unwrap().unwrap();
    assert_eq!(incomplete.summary.state, GroupState::Failed);
    let error = incomplete.summary.error.unwrap_or_default();
    assert!(error.contains("missing sb00, sb05, sb10, sb15"), "{error}");

    let dup_group = reader.group(&group_ids[5]).unwrap().unwrap();
    assert_eq!(dup_group.files.len(), 16);
    assert_eq!(
        dup_group.duplicates,
        vec![dup.to_string_lossy().into_owned()]
    );

    // Every complete group converted exactly once, with all 16 files.
    let ledger = std::fs::read_to_string(control.join("ledger")).unwrap();
    let converted: Vec<&str> = ledger.lines().collect();
    assert_eq!(converted.len(), 19, "{ledger}");
    assert_eq!(converted.iter().collect::<BTreeSet<_>>().len(), 19);
    for id in group_ids.iter().take(20).filter(|id| *id != broken) {
        let done = std::fs::read_to_string(env.output_dir.join(format!("{id}.done"))).unwrap();
        assert_eq!(done.trim(), "16 files");
    }
    let completed = reader
        .groups(&GroupFilter {
            state: Some(GroupState::Completed),
            limit: Some(100),
            before: None,
        })
        .unwrap();
    assert_eq!(completed.len(), 19);
}

#[test]
fn kill_9_during_conversions_loses_and_duplicates_nothing() {
    let env = WorkerEnv::new();
    let control = env.root.path().join("control");
    std::fs::create_dir_all(&control).unwrap();
    std::fs::write(control.join("slow"), "0.4").unwrap();
    let script = write_test_converter(env.root.path());
    env.write_config(&format!(
        "expected_subbands = 2\nmax_workers = 3\nmax_retries = 50\nretry_backoff_s = 0.1\nretry_backoff_max_s = 0.2\n{}",
        test_converter_toml(&script, &control)
    ));
    let groups = 12u32;
    for g in 0..groups {
        for sb in 0..2 {
            env.drop_subband(T0 + f64::from(g) * GROUP_SPACING, sb, b"data");
        }
    }
    let mut kills = 0;
    for round in 0..6 {
        let worker = env.spawn();
        // Kill while conversions are running.
        let busy = wait_until(Duration::from_secs(20), || {
            env.count(GroupState::InProgress) > 0
        });
        std::thread::sleep(Duration::from_millis(150 + 70 * round));
        if !busy || env.count(GroupState::Completed) == u64::from(groups) {
            worker.stop();
            break;
        }
        worker.kill9();
        kills += 1;
    }
    assert!(
        kills >= 3,
        "the worker was killed mid-conversion only {kills} times"
    );
    let worker = env.spawn();
    let done = wait_until(Duration::from_secs(60), || {
        env.count(GroupState::Completed) == u64::from(groups)
    });
    assert!(done, "{:?}\n{}", env.stats(), worker.log());
    assert_eq!(worker.stop(), Some(0));

    let stats = env.stats().unwrap();
    assert_eq!(stats.count(GroupState::InProgress), 0);
    assert_eq!(stats.count(GroupState::Pending), 0);
    assert_eq!(stats.count(GroupState::Failed), 0);
    let outputs: Vec<String> = std::fs::read_dir(&env.output_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        outputs.len(),
        groups as usize,
        "exactly one output per group, no partials: {outputs:?}"
    );
    let reader = env.reader();
    for name in &outputs {
        let group_id = name.strip_suffix(".done").expect("only .done outputs");
        assert_eq!(
            reader.group(group_id).unwrap().unwrap().summary.state,
            GroupState::Completed
        );
    }
    // Recovery counted the interrupted attempts.
    let recovered: u32 = reader
        .groups(&GroupFilter {
            state: None,
            limit: Some(100),
            before: None,
        })
        .unwrap()
        .iter()
        .map(|g| g.retry_count)
        .sum();
    assert!(recovered >= 1, "no recovered group recorded a retry");
}

#[test]
fn sigterm_drains_running_conversions_and_sd_notify_reports_status() {
    let env = WorkerEnv::new();
    let control = env.root.path().join("control");
    std::fs::create_dir_all(&control).unwrap();
    std::fs::write(control.join("slow"), "1").unwrap();
    let script = write_test_converter(env.root.path());
    env.write_config(&format!(
        "expected_subbands = 1\n{}",
        test_converter_toml(&script, &control)
    ));
    let socket_path = env.root.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let worker = {
        // spawn() clears NOTIFY_SOCKET; set it explicitly for this run.
        let mut w = env.spawn();
        w.kill_and_forget();
        let log = std::fs::File::create(env.root.path().join("notify-worker.log")).unwrap();
        std::process::Command::new(common::worker::stream_bin())
            .arg("--state-dir")
            .arg(&env.state_dir)
            .env("NOTIFY_SOCKET", &socket_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    while !messages.iter().any(|m: &String| m.contains("READY=1")) {
        let n = socket.recv(&mut buf).expect("READY=1 within 10 s");
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    env.drop_subband(T0, 0, b"x");
    assert!(wait_until(Duration::from_secs(10), || env
        .count(GroupState::InProgress)
        == 1));
    let pid = nix::unistd::Pid::from_raw(worker.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut worker = worker;
    let status = worker.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // The running conversion finished during the drain instead of being lost.
    assert_eq!(env.count(GroupState::Completed), 1);
    while let Ok(n) = socket.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        if messages.last().is_some_and(|m| m.contains("STOPPING=1")) {
            break;
        }
    }
    let all = messages.join("\n");
    assert!(all.contains("STATUS=collecting 0, pending 0"), "{all}");
    assert!(all.contains("STOPPING=1"), "{all}");
}

#[test]
fn invalid_config_exits_2_with_every_problem() {
    let env = WorkerEnv::new();
    env.write_config("max_workers = 0\nchunk_duration = -1.0\n");
    let output = std::process::Command::new(common::worker::stream_bin())
        .arg("--state-dir")
        .arg(&env.state_dir)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("max_workers") && stderr.contains("chunk_duration"),
        "{stderr}"
    );
}

#[test]
fn original_worker_flags_override_the_config() {
    let env = WorkerEnv::new();
    env.write_config("");
    let output = std::process::Command::new(common::worker::stream_bin())
        .args(["--state-dir"])
        .arg(&env.state_dir)
        .args([
            "--max-workers",
            "7",
            "--use-subprocess",
            "--expected-subbands",
            "4",
            "check-config",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("max_workers = 7") && stdout.contains("expected_subbands = 4"),
        "{stdout}"
    );
}

#[test]
fn retry_requests_and_sighup_reload_apply_while_running() {
    let env = WorkerEnv::new();
    let control = env.root.path().join("control");
    std::fs::create_dir_all(&control).unwrap();
    let script = write_test_converter(env.root.path());
    let converter = test_converter_toml(&script, &control);
    env.write_config(&format!(
        "expected_subbands = 1\nmax_retries = 0\n{converter}"
    ));
    let gid = group_id_for(T0);
    std::fs::write(control.join(format!("fail-always-{gid}")), "").unwrap();
    let worker = env.spawn();
    env.drop_subband(T0, 0, b"x");
    assert!(
        wait_until(Duration::from_secs(10), || env.count(GroupState::Failed)
            == 1),
        "{}",
        worker.log()
    );
    std::fs::remove_file(control.join(format!("fail-always-{gid}"))).unwrap();
    contimg::queue::request_retry(&env.state_dir, &gid).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || env.count(GroupState::Completed)
            == 1),
        "{}",
        worker.log()
    );

    env.write_config(&format!(
        "expected_subbands = 1\nmax_retries = 0\nmax_workers = 2\n{converter}"
    ));
    worker.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(wait_until(Duration::from_secs(10), || worker
        .log()
        .contains("configuration reloaded")));
    assert!(
        worker.log().contains("config max_workers: 4 -> 2"),
        "{}",
        worker.log()
    );
    assert_eq!(worker.stop(), Some(0));
}

#[test]
fn a_second_worker_on_the_same_queue_db_refuses_to_start() {
    let env = WorkerEnv::new();
    env.write_config("");
    let first = env.spawn();
    assert!(
        wait_until(Duration::from_secs(10), || first.log().contains("ready")),
        "{}",
        first.log()
    );
    let second = std::process::Command::new(common::worker::stream_bin())
        .arg("--state-dir")
        .arg(&env.state_dir)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains(&format!("PID {}", first.pid())), "{stderr}");
    assert_eq!(first.stop(), Some(0));
    // Once the first is gone, the lock is free again.
    let third = env.spawn();
    assert!(
        wait_until(Duration::from_secs(10), || third.log().contains("ready")),
        "{}",
        third.log()
    );
    assert_eq!(third.stop(), Some(0));
}
