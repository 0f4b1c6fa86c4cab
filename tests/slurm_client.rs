//! `worker::slurm::SlurmClient` against a real Slurm cluster (ops/testenv/slurm.sh):
//! submit, query, cancel, node choice, one squeue call per query, an unreachable
//! controller and a refused submission. No Slurm command is mocked; where a test
//! counts squeue calls it puts a logging wrapper that execs the real squeue first
//! on PATH.

mod common;

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::slurm::SlurmCluster;
use contimg::worker::slurm::{
    JobId, JobInfo, JobSpec, JobState, QueryFormat, SlurmClient, SlurmError,
};

fn client(cluster: &SlurmCluster) -> SlurmClient {
    SlurmClient::new(cluster.env(), Duration::from_secs(30))
}

fn spec(cluster: &SlurmCluster, name: &str, body: &str) -> JobSpec {
    let shared = cluster.shared_dir();
    JobSpec {
        name: name.to_string(),
        comment: format!("test job {name}"),
        workdir: shared.clone(),
        stdout_path: shared.join(format!("{name}.log")),
        script: format!("#!/bin/sh\n{body}\n"),
        ..JobSpec::default()
    }
}

/// Polls `query` until `done` holds for the job, or fails after `limit`.
fn wait_for(
    client: &SlurmClient,
    id: JobId,
    limit: Duration,
    what: &str,
    done: impl Fn(&JobInfo) -> bool,
) -> JobInfo {
    let deadline = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(info) = client.query(&[id]).unwrap().remove(&id) {
            if done(&info) {
                return info;
            }
            last = Some(info);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("job {id} never became {what}; last seen: {last:?}");
}

#[test]
fn submit_query_and_cancel() {
    let cluster = require_slurm!(2);
    let client = client(&cluster);
    let id = client
        .submit(&spec(&cluster, "contimg-t-sleep", "echo started; sleep 60"))
        .unwrap();
    let running = wait_for(&client, id, Duration::from_secs(20), "running", |info| {
        info.state == JobState::Running
    });
    assert!(running.node.is_some(), "{running:?}");
    assert_eq!(running.name, "contimg-t-sleep");
    client.cancel(&id).unwrap();
    let cancelled = wait_for(&client, id, Duration::from_secs(20), "cancelled", |info| {
        info.state == JobState::Cancelled
    });
    assert!(cancelled.state.is_finished());
    // A second cancel of a job that has ended is not an error.
    client.cancel(&id).unwrap();
    assert_eq!(cluster.submitted_jobs(), vec![id.0]);
}

#[test]
fn the_exit_status_and_output_of_a_finished_job() {
    let cluster = require_slurm!(2);
    let client = client(&cluster);
    let failing = spec(
        &cluster,
        "contimg-t-exit3",
        "echo on $SLURMD_NODENAME; exit 3",
    );
    let id = client.submit(&failing).unwrap();
    let failed = wait_for(&client, id, Duration::from_secs(20), "finished", |info| {
        info.state.is_finished()
    });
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!((failed.exit_code, failed.signal), (Some(3), None));
    let log = std::fs::read_to_string(&failing.stdout_path).unwrap();
    assert_eq!(log.trim(), format!("on {}", failed.node.unwrap()));
}

#[test]
fn a_job_runs_on_the_node_it_asks_for() {
    let cluster = require_slurm!(4);
    let client = client(&cluster);
    let mut on_n3 = spec(&cluster, "contimg-t-n3", "echo $SLURMD_NODENAME");
    on_n3.extra_args = vec!["--nodelist=n3".into()];
    on_n3.partition = Some("other".into());
    let id = client.submit(&on_n3).unwrap();
    let done = wait_for(&client, id, Duration::from_secs(20), "completed", |info| {
        info.state.is_finished()
    });
    assert_eq!(done.state, JobState::Completed, "{done:?}");
    assert_eq!(done.node.as_deref(), Some("n3"));
    assert_eq!(
        std::fs::read_to_string(&on_n3.stdout_path).unwrap().trim(),
        "n3"
    );
    assert!(
        cluster.allocations().contains(&(id.0, "n3".to_string())),
        "slurmctld's log: {:?}",
        cluster.allocations()
    );
}

/// A PATH whose `squeue` appends one line to `log` per run, then execs the real one.
fn counting_squeue(dir: &Path, log: &Path) -> OsString {
    let real = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join("squeue"))
        .find(|path| path.is_file())
        .expect("squeue on PATH");
    let wrapper = dir.join("squeue");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut path = OsString::from(dir);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap());
    path
}

/// What detection must pick here: JSON only where squeue prints it and honours
/// filters with it (Slurm 23+).
fn expected_detection(cluster: &SlurmCluster) -> QueryFormat {
    let version = cluster.command("squeue").arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    let major: u64 = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("squeue --version: {version}"));
    if cluster.squeue_json() && major >= 23 {
        QueryFormat::Json
    } else {
        QueryFormat::Columns
    }
}

#[test]
fn fifty_jobs_are_queried_with_one_squeue_call() {
    let cluster = require_slurm!(2);
    let submitter = client(&cluster);
    let mut ids = Vec::new();
    for k in 0..50 {
        let mut job = spec(&cluster, &format!("contimg-t-many-{k}"), "true");
        // Held back by a begin time: all 50 stay known to Slurm while we look.
        job.extra_args = vec!["--begin=now+600".into()];
        ids.push(submitter.submit(&job).unwrap());
    }
    // Ids Slurm never had are simply absent.
    let mut asked = ids.clone();
    asked.push(JobId(999_999));
    let wrapper_dir = tempfile::tempdir().unwrap();
    let formats = if cluster.squeue_json() {
        vec![None, Some(QueryFormat::Json), Some(QueryFormat::Columns)]
    } else {
        vec![None, Some(QueryFormat::Columns)]
    };
    for format in formats {
        let calls = wrapper_dir.path().join(format!("calls-{format:?}"));
        let mut env = cluster.env();
        env.push(("PATH".into(), counting_squeue(wrapper_dir.path(), &calls)));
        let mut counted = SlurmClient::new(env, Duration::from_secs(30));
        if let Some(format) = format {
            counted = counted.with_format(format);
        }
        let jobs: HashMap<JobId, JobInfo> = counted.query(&asked).unwrap();
        assert_eq!(jobs.len(), 50, "format {format:?}");
        assert!(ids.iter().all(|id| jobs[id].state == JobState::Pending));
        assert_eq!(jobs[&ids[7]].name, "contimg-t-many-7");
        assert_eq!(jobs[&ids[7]].reason.as_deref(), Some("BeginTime"));
        let log = std::fs::read_to_string(&calls).unwrap();
        assert_eq!(
            log.lines().count(),
            1,
            "format {format:?}: squeue runs:\n{log}"
        );
        if format.is_none() {
            assert_eq!(counted.format(), Some(expected_detection(&cluster)));
        }
    }
    // And by name, as a restarted worker looks for what it submitted.
    let named = submitter.jobs_named("contimg-t-many-1").unwrap();
    let names: Vec<&str> = named.iter().map(|(_, info)| info.name.as_str()).collect();
    assert_eq!(names.len(), 11, "{names:?}"); // -1 and -10..-19
}

#[test]
fn one_id_slurm_has_forgotten_is_absent_not_an_error() {
    let cluster = require_slurm!(1);
    let columns = client(&cluster).with_format(QueryFormat::Columns);
    assert!(columns.query(&[JobId(424_242)]).unwrap().is_empty());
    let detected = client(&cluster);
    assert!(detected.query(&[JobId(424_242)]).unwrap().is_empty());
    assert!(detected.query(&[]).unwrap().is_empty());
}

fn assert_unreachable<T: std::fmt::Debug>(what: &str, result: Result<T, SlurmError>) {
    match result {
        Err(err @ SlurmError::Unreachable { .. }) => assert!(err.is_unreachable()),
        other => panic!("{what} with slurmctld stopped: {other:?}"),
    }
}

#[test]
fn a_stopped_controller_is_unreachable_and_a_restarted_one_answers_again() {
    let cluster = require_slurm!(1);
    let client = client(&cluster);
    let columns = client.clone().with_format(QueryFormat::Columns);
    let json = client.clone().with_format(QueryFormat::Json);
    client.ping().unwrap();
    let before = client
        .submit(&spec(&cluster, "contimg-t-before", "sleep 120"))
        .unwrap();
    wait_for(
        &client,
        before,
        Duration::from_secs(20),
        "running",
        |info| info.state == JobState::Running,
    );

    cluster.stop_controller();
    assert_unreachable("ping", client.ping());
    assert_unreachable("query (columns)", columns.query(&[before]));
    if cluster.squeue_json() {
        assert_unreachable("query (json)", json.query(&[before]));
    }
    assert_unreachable(
        "submit",
        client.submit(&spec(&cluster, "contimg-t-during", "true")),
    );
    assert_unreachable("cancel", client.cancel(&before));
    // A client that has not yet chosen its query format stays undecided.
    let fresh = SlurmClient::new(cluster.env(), Duration::from_secs(30));
    assert_unreachable("first query", fresh.query(&[before]));
    assert_eq!(fresh.format(), None);

    cluster.start_controller();
    client.ping().unwrap();
    let after = client
        .submit(&spec(&cluster, "contimg-t-after", "true"))
        .unwrap();
    let known = client.query(&[before, after]).unwrap();
    assert_eq!(known[&before].state, JobState::Running, "{known:?}");
    assert!(known.contains_key(&after));
    assert_eq!(cluster.submitted_jobs(), vec![before.0, after.0]);
}

#[test]
fn a_client_timeout_is_unreachable() {
    let cluster = require_slurm!(1);
    cluster.stop_controller();
    // The 22.05 clients retry a dead controller for about 4 s; give up sooner.
    let impatient = SlurmClient::new(cluster.env(), Duration::from_millis(500));
    let started = Instant::now();
    match impatient.submit(&spec(&cluster, "contimg-t-impatient", "true")) {
        Err(SlurmError::Unreachable { detail, .. }) => {
            assert!(detail.contains("no answer within"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn an_unknown_partition_is_rejected() {
    let cluster = require_slurm!(1);
    let client = client(&cluster);
    let mut job = spec(&cluster, "contimg-t-badpart", "true");
    job.partition = Some("nosuch".into());
    match client.submit(&job) {
        Err(SlurmError::Rejected { stderr, .. }) => {
            assert!(stderr.contains("Invalid partition"), "{stderr}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cluster.submissions(), 0);
}

#[test]
fn slurmctld_log_lines_of_both_schedulers() {
    use common::slurm::allocation;
    assert_eq!(
        allocation(
            "[2026-11-29T17:14:10.528] sched: Allocate JobId=1 NodeList=n1 #CPUs=1 Partition=debug"
        ),
        Some((1, "n1".to_string()))
    );
    assert_eq!(
        allocation(
            "[2026-11-29T17:14:10.528] sched/backfill: _start_job: Started JobId=12 in debug on n3"
        ),
        Some((12, "n3".to_string()))
    );
    assert_eq!(
        allocation("_slurm_rpc_submit_batch_job: JobId=1 InitPrio=1"),
        None
    );
}

/// Whether a live process's environment names Slurm job `id` (the job script and
/// what it started).
fn job_processes(id: JobId) -> Vec<u32> {
    let wanted = format!("SLURM_JOB_ID={id}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|byte| *byte == 0)
            .any(|var| var == wanted.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}

/// The harness's node failure (used by the executor's tests): the job dies with
/// its node, Slurm reports NODE_FAIL, and the restarted node takes jobs again.
#[test]
fn a_killed_node_fails_its_job_and_comes_back() {
    let cluster = require_slurm!(2);
    let client = client(&cluster);
    let mut on_n2 = spec(&cluster, "contimg-t-nodefail", "sleep 300");
    on_n2.extra_args = vec!["--nodelist=n2".into()];
    let id = client.submit(&on_n2).unwrap();
    wait_for(&client, id, Duration::from_secs(20), "running", |info| {
        info.state == JobState::Running
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while job_processes(id).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!job_processes(id).is_empty(), "job {id} has no process");

    cluster.kill_node("n2");
    assert_eq!(
        job_processes(id),
        Vec::<u32>::new(),
        "the job outlived its node"
    );
    let failed = wait_for(&client, id, Duration::from_secs(90), "NODE_FAIL", |info| {
        info.state.is_finished()
    });
    assert_eq!(failed.state, JobState::NodeFail, "{failed:?}");
    assert_eq!(failed.node.as_deref(), Some("n2"));

    cluster.start_node("n2");
    let mut again = spec(&cluster, "contimg-t-n2-again", "echo $SLURMD_NODENAME");
    again.extra_args = vec!["--nodelist=n2".into()];
    let id = client.submit(&again).unwrap();
    let done = wait_for(&client, id, Duration::from_secs(90), "completed", |info| {
        info.state.is_finished()
    });
    assert_eq!(done.state, JobState::Completed, "{done:?}");
    assert_eq!(
        std::fs::read_to_string(&again.stdout_path).unwrap().trim(),
        "n2"
    );
}
