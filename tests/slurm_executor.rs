//! The Slurm executor against a real Slurm cluster (ops/testenv/slurm.sh: munged,
//! slurmctld and four slurmd on this host): every group converted exactly once
//! across nodes, crash recovery by adoption, node failure, cancels from outside,
//! failing converters, an unreachable controller and the convert timeout.
//!
//! The tests take turns (one cluster at a time on a 2-core machine); each starts
//! its own cluster, so a test that stops slurmctld or kills a node disturbs no
//! other. Sbatch submissions are counted from slurmctld's own log.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::slurm::SlurmCluster;
use common::worker::{WorkerEnv, WorkerProcess, wait_until};
use contimg::control::alerts::{
    AlertEngine, AlertEvent, AlertInputs, AlertRule, AlertThresholds, scheduler_unreachable_of,
};
use contimg::queue::{GroupState, unix_now};

/// One cluster at a time.
static TURN: Mutex<()> = Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A converter whose behaviour per group is set by marker files in its control
/// dir: `slow-once-<group>` (seconds; the first run sleeps that long and removes
/// the marker first, so a retry is fast), `fail-<group>` (exit 7 every time).
/// Every successful run appends the group to `ledger`.
fn write_converter(dir: &Path) -> PathBuf {
    let script = dir.join("converter.sh");
    let text = r#"#!/bin/sh
ctl="$1"; group="$2"; out="$3"; shift 3
echo "converting $group with $# files on ${SLURMD_NODENAME:-local}"
if [ -f "$ctl/slow-once-$group" ]; then
  seconds=$(cat "$ctl/slow-once-$group"); rm -f "$ctl/slow-once-$group"; sleep "$seconds"
fi
[ -f "$ctl/slow" ] && sleep "$(cat "$ctl/slow")"
if [ -f "$ctl/fail-$group" ]; then echo "step 1 of $group ok"; echo "always failing $group" >&2; exit 7; fi
echo "$# files" > "$out/.$group.done.partial" && mv "$out/.$group.done.partial" "$out/$group.done"
echo "$group" >> "$ctl/ledger"
"#;
    std::fs::write(&script, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// A worker environment using `cluster`, with the test converter (or `converter`
/// TOML) and `extra` settings.
struct Setup {
    env: WorkerEnv,
    control: PathBuf,
    conf: String,
    converter: String,
}

impl Setup {
    fn new(cluster: &SlurmCluster, extra: &str) -> Self {
        let env = WorkerEnv::new();
        let control = env.root.path().join("control");
        std::fs::create_dir_all(&control).unwrap();
        let script = write_converter(env.root.path());
        let converter = format!(
            "[converter]\nkind = \"command\"\nargv = [{:?}, {:?}, \"{{group_id}}\", \"{{output_dir}}\", \"{{files}}\"]\n",
            script.to_string_lossy(),
            control.to_string_lossy()
        );
        let setup = Self {
            env,
            control,
            conf: cluster.conf().to_string_lossy().into_owned(),
            converter,
        };
        setup.configure(extra, &setup.converter);
        setup
    }

    fn configure(&self, extra: &str, converter: &str) {
        // `extra` keys replace these (top-level ones only; [slurm] is written whole).
        let (top, slurm) = match extra.split_once("[slurm]") {
            Some((top, slurm)) => (top.to_string(), slurm.to_string()),
            None => (extra.to_string(), String::new()),
        };
        let defaults = [
            ("executor", "\"slurm\""),
            ("expected_subbands", "2"),
            ("max_retries", "2"),
            ("retry_backoff_s", "1.0"),
            ("retry_backoff_max_s", "2.0"),
            ("incomplete_timeout_s", "600.0"),
        ];
        let given: BTreeSet<&str> = top
            .lines()
            .map(|line| line.split('=').next().unwrap_or("").trim())
            .collect();
        let mut lines: Vec<String> = top.lines().map(str::to_string).collect();
        for (key, value) in defaults {
            if !given.contains(key) {
                lines.push(format!("{key} = {value}"));
            }
        }
        let mut slurm_table = format!("[slurm]\n{}\n", slurm.trim());
        for (key, value) in [("poll_interval_s", "0.3"), ("max_jobs", "16")] {
            if !slurm.contains(key) {
                slurm_table.push_str(&format!("{key} = {value}\n"));
            }
        }
        self.env
            .write_config(&format!("{}\n{slurm_table}{converter}", lines.join("\n")));
    }

    /// Rewrites the config with other `extra` settings (same converter).
    fn configure_again(&self, extra: &str) {
        self.configure(extra, &self.converter);
    }

    fn spawn(&self) -> WorkerProcess {
        let worker = self
            .env
            .spawn_with_env(&[("SLURM_CONF", self.conf.as_str())]);
        assert!(
            wait_until(Duration::from_secs(20), || worker.log().contains("ready")),
            "{}",
            worker.log()
        );
        worker
    }

    /// Both subbands of the group starting at `minute` minutes past 10:00.
    fn drop_group(&self, minute: u32) -> String {
        let ts = group_ts(minute);
        for subband in 0..2 {
            self.env.drop_subband(ts, subband, b"not checked");
        }
        group_id(minute)
    }

    fn ledger(&self) -> Vec<String> {
        std::fs::read_to_string(self.control.join("ledger"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn attempts(&self) -> Vec<Attempt> {
        attempts_of(&self.env.queue_db())
    }

    fn count(&self, state: GroupState) -> u64 {
        self.env.count(state)
    }
}

/// 2025-10-13T10:00:00 UTC plus `minute` times 2 minutes (further apart than
/// group_tolerance_s, so every group stays its own).
fn group_ts(minute: u32) -> f64 {
    1_760_349_600.0 + f64::from(minute) * 120.0
}

fn group_id(minute: u32) -> String {
    contimg::queue::group_id_for(group_ts(minute))
}

#[derive(Debug, Clone)]
#[allow(dead_code)]
struct Attempt {
    group_id: String,
    attempt: u32,
    outcome: Option<String>,
    error: Option<String>,
    executor: Option<String>,
    job_id: Option<String>,
    job_state: Option<String>,
    job_node: Option<String>,
    job_exit_code: Option<i64>,
    job_log_path: Option<String>,
}

fn attempts_of(db: &Path) -> Vec<Attempt> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT group_id, attempt, outcome, error, executor, job_id, job_state, job_node,
                    job_exit_code, job_log_path
             FROM group_attempts ORDER BY group_id, attempt",
        )
        .unwrap();
    stmt.query_map([], |row| {
        Ok(Attempt {
            group_id: row.get(0)?,
            attempt: row.get(1)?,
            outcome: row.get(2)?,
            error: row.get(3)?,
            executor: row.get(4)?,
            job_id: row.get(5)?,
            job_state: row.get(6)?,
            job_node: row.get(7)?,
            job_exit_code: row.get(8)?,
            job_log_path: row.get(9)?,
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn scheduler_unreachable_since(db: &Path) -> Option<f64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.query_row(
        "SELECT scheduler_unreachable_since FROM worker_heartbeat WHERE id = 1",
        [],
        |row| row.get(0),
    )
    .ok()
    .flatten()
}

/// The alert engine's verdict on the worker's heartbeat now: what changed about
/// `scheduler_unreachable`, if anything.
fn scheduler_alert(setup: &Setup, engine: &mut AlertEngine) -> Option<AlertEvent> {
    let now = unix_now();
    let heartbeat = setup.env.reader().heartbeat().ok().flatten();
    let inputs = AlertInputs {
        now,
        running: true,
        should_run: true,
        scheduler_unreachable_since: scheduler_unreachable_of(heartbeat.as_ref(), now),
        ..Default::default()
    };
    engine
        .evaluate(&inputs)
        .into_iter()
        .find(|change| change.alert.rule == AlertRule::SchedulerUnreachable)
        .map(|change| change.event)
}

/// What Slurm itself says about a job now (`squeue --states=all`), if it knows it.
fn slurm_state(cluster: &SlurmCluster, job_id: &str) -> Option<String> {
    let output = cluster
        .command("squeue")
        .args(["-h", "--states=all", "-o", "%T", "-j", job_id])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// The running attempt of `group` as the queue DB shows it: (job id, node).
fn running_job(setup: &Setup, group: &str) -> Option<(String, String)> {
    setup
        .attempts()
        .into_iter()
        .filter(|a| a.group_id == group && a.outcome.is_none())
        .find(|a| a.job_state.as_deref() == Some("RUNNING"))
        .and_then(|a| Some((a.job_id?, a.job_node?)))
}

fn python() -> String {
    std::env::var("CONTIMG_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Waits until `group`'s job runs in Slurm; its (job id, node).
fn wait_running(setup: &Setup, worker: &WorkerProcess, group: &str) -> (String, String) {
    let mut running = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            running = running_job(setup, group);
            running.is_some()
        }),
        "{}",
        worker.log()
    );
    running.unwrap()
}

fn timed<T>(name: &str, test: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = test();
    eprintln!("{name}: {:.1} s", started.elapsed().as_secs_f64());
    result
}

/// 24 groups through 4 nodes with the builtin merge running as `contimg-stream
/// convert-group` in the jobs: each completes exactly once (one attempt, one
/// sbatch), at least 3 nodes ran jobs, and every output equals the local
/// executor's for the same inputs, byte for byte.
#[test]
fn groups_spread_over_the_nodes_once_each_with_the_local_executors_outputs() {
    let _turn = take_turn();
    let cluster = crate::require_slurm!();
    timed("24 groups", || {
        let slurm = WorkerEnv::new();
        let local = WorkerEnv::new();
        let simulated = contimg::uvh5::simulate::run(&contimg::uvh5::simulate::SimulateArgs {
            input_dir: slurm.root.path().join("simulated"),
            groups: 24,
            interval: 0.0,
            jitter: 3.0,
            subbands: 2,
            profile: contimg::uvh5::simulate::Profile::Small,
            corrupt_rate: 0.0,
            start: Some("2025-10-13T10:00:00".into()),
            seed: 5,
        })
        .expect("simulate 24 groups");
        assert_eq!(simulated.groups.len(), 24);
        let common = "expected_subbands = 2\nmax_retries = 1\nretry_backoff_s = 1.0\n\
                      [converter]\nkind = \"builtin\"\n";
        slurm.write_config(&format!(
            "executor = \"slurm\"\n{common}[slurm]\npoll_interval_s = 0.3\nmax_jobs = 24\n"
        ));
        local.write_config(&format!("max_workers = 2\n{common}"));
        let conf = cluster.conf().to_string_lossy().into_owned();
        let slurm_worker = slurm.spawn_with_env(&[("SLURM_CONF", conf.as_str())]);
        let local_worker = local.spawn();
        for entry in std::fs::read_dir(slurm.root.path().join("simulated")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap();
            for input_dir in [&local.input_dir, &slurm.input_dir] {
                // As the correlator writes: a temp name, then the rename.
                let stem = path.file_stem().unwrap().to_string_lossy();
                let temp = input_dir.join(format!("{stem}_incomplete.hdf5"));
                std::fs::copy(&path, &temp).unwrap();
                std::fs::rename(&temp, input_dir.join(name)).unwrap();
            }
        }
        let done = wait_until(Duration::from_secs(240), || {
            slurm.count(GroupState::Completed) == 24 && local.count(GroupState::Completed) == 24
        });
        assert!(
            done,
            "slurm {:?} local {:?}\n{}",
            slurm.stats(),
            local.stats(),
            slurm_worker.log()
        );
        let attempts = attempts_of(&slurm.queue_db());
        assert_eq!(attempts.len(), 24, "one attempt per group: {attempts:#?}");
        assert_eq!(cluster.submissions(), 24, "one sbatch per group");
        let nodes: BTreeSet<String> = attempts.iter().filter_map(|a| a.job_node.clone()).collect();
        assert!(nodes.len() >= 3, "jobs ran on {nodes:?}");
        for attempt in &attempts {
            assert_eq!(attempt.outcome.as_deref(), Some("completed"), "{attempt:?}");
            assert_eq!(attempt.executor.as_deref(), Some("slurm"));
            assert_eq!(attempt.job_state.as_deref(), Some("COMPLETED"));
            assert_eq!(attempt.job_exit_code, Some(0));
            assert!(attempt.job_id.is_some() && attempt.job_log_path.is_some());
        }
        let mut compared = 0;
        let mut content_equal = 0;
        for entry in std::fs::read_dir(&local.output_dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_owned();
            let theirs = slurm.output_dir.join(&name);
            assert!(theirs.is_file(), "no Slurm output {name:?}");
            if std::fs::read(&path).unwrap() != std::fs::read(&theirs).unwrap() {
                // Not byte-equal: then equal in every dataset and attribute.
                let compared = std::process::Command::new(python())
                    .arg(concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/tests/py/compare_hdf5.py"
                    ))
                    .arg(&path)
                    .arg(&theirs)
                    .output()
                    .expect("python3 with h5py");
                assert!(
                    compared.status.success(),
                    "{name:?} differs between the executors:\n{}{}",
                    String::from_utf8_lossy(&compared.stdout),
                    String::from_utf8_lossy(&compared.stderr)
                );
                content_equal += 1;
            }
            compared += 1;
        }
        assert_eq!(compared, 24);
        eprintln!("outputs: {compared} equal, {content_equal} of them by content, not bytes");
        drop(slurm_worker);
        drop(local_worker);
    });
}

/// `kill -9` of the worker three times while jobs are queued and running: the
/// restarted worker adopts them. Every group is converted exactly once, sbatch
/// ran once per attempt that got a job (groups + real retries, from slurmctld's
/// log), and nothing is left in progress.
#[test]
fn a_killed_worker_adopts_its_jobs_and_converts_nothing_twice() {
    let _turn = take_turn();
    let cluster = crate::require_slurm!();
    timed("kill -9 x3", || {
        let setup = Setup::new(&cluster, "[slurm]\nmax_jobs = 8\n");
        std::fs::write(setup.control.join("slow"), "3").unwrap();
        let groups: Vec<String> = (0..12).map(|minute| setup.drop_group(minute)).collect();
        let mut kills = 0;
        let mut in_flight_at_kill = Vec::new();
        while kills < 3 {
            let worker = setup.spawn();
            // Wait for jobs both queued (PENDING) and RUNNING in Slurm.
            let busy = wait_until(Duration::from_secs(60), || {
                let attempts = setup.attempts();
                let open = |state: &str| {
                    attempts
                        .iter()
                        .any(|a| a.outcome.is_none() && a.job_state.as_deref() == Some(state))
                };
                open("RUNNING") && open("PENDING")
            });
            if !busy {
                // Fewer groups left than nodes: kill while some run.
                assert!(setup.count(GroupState::Completed) > 0, "{}", worker.log());
            }
            let in_flight = setup
                .attempts()
                .iter()
                .filter(|a| a.outcome.is_none() && a.job_id.is_some())
                .count();
            worker.kill9();
            in_flight_at_kill.push(in_flight);
            kills += 1;
            std::thread::sleep(Duration::from_millis(700));
        }
        let worker = setup.spawn();
        let done = wait_until(Duration::from_secs(120), || {
            setup.count(GroupState::Completed) == 12
        });
        assert!(done, "{:?}\n{}", setup.env.stats(), worker.log());
        assert!(worker.log().contains("adopting"), "{}", worker.log());
        assert!(
            in_flight_at_kill.iter().all(|jobs| *jobs > 0),
            "jobs in Slurm at each kill: {in_flight_at_kill:?}"
        );
        eprintln!("jobs in Slurm at each kill: {in_flight_at_kill:?}");
        let ledger = setup.ledger();
        let converted: BTreeSet<&String> = ledger.iter().collect();
        assert_eq!(ledger.len(), 12, "each group converted once: {ledger:?}");
        assert_eq!(converted.len(), 12);
        for group in &groups {
            assert!(converted.contains(group), "{group} never converted");
        }
        let attempts = setup.attempts();
        let with_job = attempts.iter().filter(|a| a.job_id.is_some()).count();
        let retries = attempts
            .iter()
            .filter(|a| a.outcome.as_deref() == Some("failed"))
            .count();
        assert_eq!(cluster.submissions(), with_job, "{attempts:#?}");
        assert_eq!(cluster.submissions(), 12 + retries, "{attempts:#?}");
        assert_eq!(setup.count(GroupState::InProgress), 0);
        assert!(
            attempts.iter().all(|a| a.outcome.is_some()),
            "{attempts:#?}"
        );
        drop(worker);
    });
}

/// A node dies while it runs a group's job: Slurm ends the job NODE_FAIL, the
/// attempt fails and the retry completes on another node.
#[test]
fn a_job_on_a_killed_node_is_retried_on_another() {
    let _turn = take_turn();
    let cluster = crate::require_slurm!();
    timed("node kill", || {
        let setup = Setup::new(&cluster, "");
        let group = group_id(0);
        std::fs::write(setup.control.join(format!("slow-once-{group}")), "60").unwrap();
        let worker = setup.spawn();
        setup.drop_group(0);
        let (_, node) = wait_running(&setup, &worker, &group);
        cluster.kill_node(&node);
        let done = wait_until(Duration::from_secs(90), || {
            setup.count(GroupState::Completed) == 1
        });
        assert!(done, "{:?}\n{}", setup.attempts(), worker.log());
        let attempts = setup.attempts();
        assert_eq!(attempts.len(), 2, "{attempts:#?}");
        assert_eq!(attempts[0].outcome.as_deref(), Some("failed"));
        assert_eq!(attempts[0].job_state.as_deref(), Some("NODE_FAIL"));
        assert!(
            attempts[0]
                .error
                .as_deref()
                .unwrap_or("")
                .contains("NODE_FAIL"),
            "{attempts:#?}"
        );
        assert_eq!(attempts[1].outcome.as_deref(), Some("completed"));
        assert_ne!(attempts[1].job_node.as_deref(), Some(node.as_str()));
        assert_eq!(setup.ledger(), vec![group]);
        drop(worker);
    });
}

/// An operator's `scancel` of a running job is a failed attempt that is retried;
/// a converter that always exits 1.. uses up its retries and the group fails with
/// the job's last log lines in its error.
#[test]
fn an_outside_cancel_is_retried_and_a_failing_converter_ends_failed() {
    let _turn = take_turn();
    let cluster = crate::require_slurm!();
    timed("scancel + failing converter", || {
        let setup = Setup::new(&cluster, "max_retries = 1\n");
        let cancelled = group_id(0);
        let failing = group_id(1);
        std::fs::write(setup.control.join(format!("slow-once-{cancelled}")), "60").unwrap();
        std::fs::write(setup.control.join(format!("fail-{failing}")), "").unwrap();
        let worker = setup.spawn();
        setup.drop_group(0);
        setup.drop_group(1);
        let (job_id, _) = wait_running(&setup, &worker, &cancelled);
        let status = cluster.command("scancel").arg(&job_id).status().unwrap();
        assert!(status.success());
        let settled = wait_until(Duration::from_secs(60), || {
            setup.count(GroupState::Completed) == 1 && setup.count(GroupState::Failed) == 1
        });
        assert!(settled, "{:#?}\n{}", setup.attempts(), worker.log());
        let attempts = setup.attempts();
        let of = |group: &str| -> Vec<Attempt> {
            attempts
                .iter()
                .filter(|a| a.group_id == group)
                .cloned()
                .collect()
        };
        let cancelled_attempts = of(&cancelled);
        assert_eq!(cancelled_attempts.len(), 2, "{attempts:#?}");
        assert_eq!(
            cancelled_attempts[0].job_state.as_deref(),
            Some("CANCELLED")
        );
        assert_eq!(cancelled_attempts[0].outcome.as_deref(), Some("failed"));
        assert_eq!(cancelled_attempts[1].outcome.as_deref(), Some("completed"));
        let failing_attempts = of(&failing);
        assert_eq!(failing_attempts.len(), 2, "1 + max_retries: {attempts:#?}");
        for attempt in &failing_attempts {
            assert_eq!(attempt.job_exit_code, Some(7));
            assert_eq!(attempt.outcome.as_deref(), Some("failed"));
        }
        let detail = setup.env.reader().group(&failing).unwrap().unwrap();
        let error = detail.summary.error.unwrap_or_default();
        assert!(
            error.contains("exit code 7")
                && error.contains(&format!("always failing {failing}"))
                && error.contains(&format!("step 1 of {failing} ok")),
            "{error}"
        );
        drop(worker);
    });
}

/// slurmctld stopped for 30 s while groups arrive: no group fails or uses a
/// retry, the heartbeat says since when the scheduler is unreachable (the alert)
/// and clears it when it answers again, and every group completes.
#[test]
fn an_unreachable_scheduler_fails_nothing_and_submission_resumes() {
    let _turn = take_turn();
    let cluster = crate::require_slurm!();
    timed("slurmctld outage", || {
        let setup = Setup::new(&cluster, "");
        let worker = setup.spawn();
        setup.drop_group(0);
        assert!(wait_until(Duration::from_secs(30), || {
            setup.count(GroupState::Completed) == 1
        }));
        cluster.stop_controller();
        let stopped = Instant::now();
        for minute in 1..5 {
            setup.drop_group(minute);
            std::thread::sleep(Duration::from_secs(1));
        }
        let db = setup.env.queue_db();
        let mut alerts = AlertEngine::new(AlertThresholds::default());
        let mut raised = false;
        while stopped.elapsed() < Duration::from_secs(30) {
            assert_eq!(
                setup.count(GroupState::Failed),
                0,
                "{:#?}",
                setup.attempts()
            );
            assert_eq!(setup.count(GroupState::Completed), 1);
            raised |= scheduler_alert(&setup, &mut alerts) == Some(AlertEvent::Raised);
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(raised, "no scheduler_unreachable alert\n{}", worker.log());
        assert!(scheduler_unreachable_since(&db).is_some());
        cluster.start_controller();
        let done = wait_until(Duration::from_secs(90), || {
            setup.count(GroupState::Completed) == 5
        });
        assert!(done, "{:#?}\n{}", setup.attempts(), worker.log());
        assert!(
            wait_until(Duration::from_secs(10), || scheduler_unreachable_since(&db)
                .is_none()),
            "flag not cleared"
        );
        assert_eq!(
            scheduler_alert(&setup, &mut alerts),
            Some(AlertEvent::Cleared)
        );
        let reader = setup.env.reader();
        for minute in 0..5 {
            let group = reader.group(&group_id(minute)).unwrap().unwrap();
            assert_eq!(group.summary.retry_count, 0, "{group:?}");
        }
        let attempts = setup.attempts();
        assert!(
            attempts
                .iter()
                .all(|a| a.outcome.as_deref() != Some("failed")),
            "{attempts:#?}"
        );
        assert_eq!(setup.ledger().len(), 5);
        drop(worker);
    });
}

/// At `convert_timeout_s` the job is cancelled with scancel (Slurm shows it
/// CANCELLED) and the group is retried.
#[test]
fn a_convert_timeout_cancels_the_job_and_retries() {
    let _turn = take_turn();
    let cluster = crate::require_slurm!();
    timed("convert timeout", || {
        let setup = Setup::new(&cluster, "convert_timeout_s = 3.0\n");
        let group = group_id(0);
        std::fs::write(setup.control.join(format!("slow-once-{group}")), "60").unwrap();
        let worker = setup.spawn();
        setup.drop_group(0);
        let done = wait_until(Duration::from_secs(60), || {
            setup.count(GroupState::Completed) == 1
        });
        assert!(done, "{:#?}\n{}", setup.attempts(), worker.log());
        let attempts = setup.attempts();
        assert_eq!(attempts.len(), 2, "{attempts:#?}");
        assert_eq!(attempts[0].job_state.as_deref(), Some("CANCELLED"));
        assert!(
            attempts[0]
                .error
                .as_deref()
                .unwrap_or("")
                .contains("timed out"),
            "{attempts:#?}"
        );
        let first_job = attempts[0].job_id.clone().unwrap();
        assert_eq!(
            slurm_state(&cluster, &first_job).as_deref(),
            Some("CANCELLED")
        );
        assert_eq!(attempts[1].outcome.as_deref(), Some("completed"));
        drop(worker);
    });
}

/// SIGTERM leaves a running job in Slurm and the next start adopts it (one
/// attempt, one sbatch); with `slurm.cancel_on_stop` the job is cancelled and
/// its group requeued without using a retry.
#[test]
fn sigterm_leaves_jobs_to_be_adopted_unless_told_to_cancel_them() {
    let _turn = take_turn();
    let cluster = crate::require_slurm!();
    timed("SIGTERM", || {
        let setup = Setup::new(&cluster, "");
        let left = group_id(0);
        std::fs::write(setup.control.join(format!("slow-once-{left}")), "6").unwrap();
        let worker = setup.spawn();
        setup.drop_group(0);
        let (job_id, _) = wait_running(&setup, &worker, &left);
        assert_eq!(worker.stop(), Some(0));
        assert_eq!(slurm_state(&cluster, &job_id).as_deref(), Some("RUNNING"));
        let worker = setup.spawn();
        assert!(
            wait_until(Duration::from_secs(30), || setup
                .count(GroupState::Completed)
                == 1),
            "{}",
            worker.log()
        );
        assert_eq!(setup.attempts().len(), 1, "{:#?}", setup.attempts());
        assert_eq!(cluster.submissions(), 1);
        assert_eq!(worker.stop(), Some(0));

        let cancelled = group_id(1);
        std::fs::write(setup.control.join(format!("slow-once-{cancelled}")), "60").unwrap();
        setup.configure_again("[slurm]\ncancel_on_stop = true\n");
        let worker = setup.spawn();
        setup.drop_group(1);
        let (job_id, _) = wait_running(&setup, &worker, &cancelled);
        assert_eq!(worker.stop(), Some(0));
        assert!(
            wait_until(Duration::from_secs(15), || {
                slurm_state(&cluster, &job_id).as_deref() == Some("CANCELLED")
            }),
            "{:?}",
            slurm_state(&cluster, &job_id)
        );
        let group = setup.env.reader().group(&cancelled).unwrap().unwrap();
        assert_eq!(group.summary.state, GroupState::Pending);
        assert_eq!(group.summary.retry_count, 0);
        let worker = setup.spawn();
        assert!(
            wait_until(Duration::from_secs(30), || setup
                .count(GroupState::Completed)
                == 2),
            "{}",
            worker.log()
        );
        assert_eq!(setup.ledger(), vec![left, cancelled]);
        drop(worker);
    });
}
