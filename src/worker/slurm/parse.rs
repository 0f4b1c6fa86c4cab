//! Reading what Slurm's commands print. Pure functions, tested on output captured
//! from a real Slurm 22.05.8 cluster (ops/testenv/slurm.sh; files in `testdata/`).

use serde_json::Value;

use super::{JobId, JobInfo, JobState};

/// The `squeue -O` fields [`parse_squeue_columns`] reads, each ending in `|`. The
/// name comes last so a `|` inside it cannot shift the other fields.
pub const SQUEUE_COLUMNS: &str = "JobID:|,State:|,NodeList:|,Reason:|,exit_code:|,Name:|";

/// The job id from `sbatch --parsable` (`123`, or `123;cluster` on a multi-cluster
/// setup); sbatch may print warnings before it on stdout in some versions, so the
/// last non-empty line counts.
pub fn sbatch_job_id(stdout: &str) -> Result<JobId, String> {
    let line = stdout
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .ok_or_else(|| "sbatch printed no job id".to_string())?;
    let id = line.split(';').next().unwrap_or(line);
    id.parse()
        .map_err(|_| format!("sbatch printed {line:?}, not a job id"))
}

/// Splits Slurm's job exit code, a wait(2) status (`768` is exit 3, `9` SIGKILL),
/// into (exit status, signal): exactly one of them is set.
pub fn wait_status(raw: i64) -> (Option<i32>, Option<i32>) {
    let signal = (raw & 0x7f) as i32;
    if signal != 0 {
        (None, Some(signal))
    } else {
        (Some(((raw >> 8) & 0xff) as i32), None)
    }
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    match text {
        "" | "(null)" | "None" => None,
        _ => Some(text.to_string()),
    }
}

/// The output of `squeue -h --states=all -O` [`SQUEUE_COLUMNS`], one job per line.
pub fn squeue_columns(stdout: &str) -> Result<Vec<(JobId, JobInfo)>, String> {
    let mut jobs = Vec::new();
    for line in stdout.lines().filter(|line| !line.trim().is_empty()) {
        let mut fields = line.splitn(6, '|');
        let mut next = |what: &str| {
            fields
                .next()
                .ok_or_else(|| format!("squeue line without {what}: {line:?}"))
        };
        let id = next("a job id")?;
        let id: JobId = id
            .parse()
            .map_err(|_| format!("squeue printed job id {id:?}: {line:?}"))?;
        let state = JobState::from_slurm(next("a state")?);
        let node = non_empty(next("a node list")?);
        let reason = non_empty(next("a reason")?);
        let raw_exit = next("an exit code")?;
        let raw_exit: i64 = raw_exit
            .trim()
            .parse()
            .map_err(|_| format!("squeue printed exit code {raw_exit:?}: {line:?}"))?;
        let name = next("a name")?;
        let name = name.strip_suffix('|').unwrap_or(name).to_string();
        let (exit_code, signal) = wait_status(raw_exit);
        jobs.push((
            id,
            JobInfo {
                state,
                node,
                exit_code,
                signal,
                reason,
                name,
            },
        ));
    }
    Ok(jobs)
}

/// A number that newer Slurm JSON wraps as `{"set": true, "number": N}`.
fn json_number(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::Object(map) if map.get("set").and_then(Value::as_bool) != Some(false) => {
            map.get("number").and_then(Value::as_i64)
        }
        _ => None,
    }
}

/// (exit status, signal) from a job's `exit_code`: 22.05 prints the wait(2)
/// status as a number; 23.02+ print `{"return_code": …, "signal": {"id": …}}`.
fn json_exit(value: &Value) -> (Option<i32>, Option<i32>) {
    if let Some(raw) = json_number(value) {
        return wait_status(raw);
    }
    let signal = value
        .pointer("/signal/id")
        .and_then(json_number)
        .or_else(|| value.pointer("/signal/signal_id").and_then(json_number))
        .filter(|&signal| signal != 0)
        .map(|signal| signal as i32);
    if signal.is_some() {
        return (None, signal);
    }
    let code = value
        .get("return_code")
        .and_then(json_number)
        .map(|code| code as i32);
    (code, None)
}

/// `job_state`: a string in 22.05, a list of flags (first the base state) later.
fn json_state(value: &Value) -> Option<JobState> {
    match value {
        Value::String(state) => Some(JobState::from_slurm(state)),
        Value::Array(states) => states
            .first()
            .and_then(Value::as_str)
            .map(JobState::from_slurm),
        _ => None,
    }
}

/// Why [`squeue_json`] has no job list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqueueJsonError {
    /// squeue could not load the jobs and said so in the document's `errors`
    /// (22.05 does this, with exit status 0 and an empty `jobs`, when slurmctld is
    /// down): the empty list means nothing.
    Reported(String),
    /// Not the document this parser knows.
    Malformed(String),
}

/// The output of `squeue --json` (every job Slurm still knows: the 22.05 JSON
/// output ignores squeue's filters).
pub fn squeue_json(stdout: &str) -> Result<Vec<(JobId, JobInfo)>, SqueueJsonError> {
    use SqueueJsonError::{Malformed, Reported};
    let document: Value =
        serde_json::from_str(stdout).map_err(|err| Malformed(format!("squeue --json: {err}")))?;
    if let Some(errors) = document.get("errors").and_then(Value::as_array)
        && !errors.is_empty()
    {
        let described: Vec<String> = errors
            .iter()
            .map(|error| {
                ["source", "description", "error"]
                    .iter()
                    .filter_map(|key| error.get(*key).and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(": ")
            })
            .collect();
        return Err(Reported(described.join("; ")));
    }
    let jobs = document
        .get("jobs")
        .and_then(Value::as_array)
        .ok_or_else(|| Malformed("squeue --json printed no \"jobs\" list".to_string()))?;
    let text = |job: &Value, key: &str| job.get(key).and_then(Value::as_str).and_then(non_empty);
    let mut parsed = Vec::with_capacity(jobs.len());
    for job in jobs {
        let id = job
            .get("job_id")
            .and_then(json_number)
            .and_then(|id| u64::try_from(id).ok())
            .ok_or_else(|| Malformed(format!("squeue --json: a job without a job_id: {job}")))?;
        let state = job
            .get("job_state")
            .and_then(json_state)
            .ok_or_else(|| Malformed(format!("squeue --json: job {id} without a job_state")))?;
        let (exit_code, signal) = job.get("exit_code").map(json_exit).unwrap_or((None, None));
        parsed.push((
            JobId(id),
            JobInfo {
                state,
                node: text(job, "nodes"),
                exit_code,
                signal,
                reason: text(job, "state_reason"),
                name: text(job, "name").unwrap_or_default(),
            },
        ));
    }
    Ok(parsed)
}

/// The Slurm release that printed a `squeue --json` document (`meta.Slurm.version`,
/// as (major, minor): 22.05 is (22, 5)).
pub fn squeue_json_version(stdout: &str) -> Option<(u64, u64)> {
    let document: Value = serde_json::from_str(stdout).ok()?;
    let version = document.pointer("/meta/Slurm/version")?;
    let part = |key: &str| version.get(key).and_then(Value::as_u64);
    Some((part("major")?, part("minor")?))
}

/// Phrases with which Slurm's clients say that slurmctld did not answer or that
/// authentication (munge) is broken on this host: a scheduler outage, not a
/// verdict on the request.
const UNREACHABLE_PHRASES: &[&str] = &[
    "Unable to contact slurm controller",
    "Unable to establish controller machine",
    "Socket timed out on send/recv",
    "Connection refused",
    "Connection timed out",
    "Zero Bytes were transmitted or received",
    "Slurm backup controller in standby mode",
    "Slurmctld is not responding",
    "Communication connection failure",
    "Munge",
    "munge",
    "Could not establish a configuration source",
    "Transport endpoint is not connected",
];

/// Whether a failed command's stderr says the scheduler could not be reached.
pub fn is_unreachable(stderr: &str) -> bool {
    UNREACHABLE_PHRASES
        .iter()
        .any(|phrase| stderr.contains(phrase))
}

/// What `squeue -j ID` prints (exit 1) when its only id is one Slurm no longer
/// knows; with several ids it skips the unknown ones and succeeds.
pub fn is_unknown_job(stderr: &str) -> bool {
    stderr.contains("Invalid job id specified")
}

/// What `scancel` prints when the job has ended already: nothing left to cancel.
pub fn is_already_finished(stderr: &str) -> bool {
    is_unknown_job(stderr) || stderr.contains("already completing or completed")
}

/// `scontrol ping`: `Slurmctld(primary) at HOST is UP` (also `/DOWN`, and one line
/// per backup controller). `Ok` when any controller is up, else the text.
pub fn ping(stdout: &str) -> Result<(), String> {
    let up = stdout
        .lines()
        .any(|line| line.starts_with("Slurmctld") && line.trim_end().ends_with("is UP"));
    if up {
        Ok(())
    } else {
        Err(stdout.trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(jobs: &[(JobId, JobInfo)], id: u64) -> &JobInfo {
        &jobs
            .iter()
            .find(|(job, _)| *job == JobId(id))
            .unwrap_or_else(|| panic!("job {id} not parsed"))
            .1
    }

    /// Captured with ops/testenv/slurm.sh (22.05.8): job 1 `exit 3`, 2 `kill -9 $$`,
    /// 3 `true`, 4 and 5 running, 6 cancelled while running, 7 pending on a begin
    /// time, 8 cancelled while pending, 9 running into its time limit.
    const EARLY_COLUMNS: &str = include_str!("testdata/squeue-early.txt");
    const EARLY_JSON: &str = include_str!("testdata/squeue-early.json");
    /// The same cluster a minute later: job 5's node was killed (NODE_FAIL), job 9
    /// ran out of time (TIMEOUT).
    const LATE_COLUMNS: &str = include_str!("testdata/squeue-late.txt");
    const LATE_JSON: &str = include_str!("testdata/squeue-late.json");

    fn check_early(jobs: &[(JobId, JobInfo)]) {
        assert_eq!(jobs.len(), 9);
        let failed = info(jobs, 1);
        assert_eq!(failed.state, JobState::Failed);
        assert_eq!((failed.exit_code, failed.signal), (Some(3), None));
        assert_eq!(failed.node.as_deref(), Some("n1"));
        assert_eq!(failed.reason.as_deref(), Some("NonZeroExitCode"));
        assert_eq!(failed.name, "contimg-fail");
        let killed = info(jobs, 2);
        assert_eq!(killed.state, JobState::Failed);
        assert_eq!((killed.exit_code, killed.signal), (None, Some(9)));
        let ok = info(jobs, 3);
        assert_eq!(ok.state, JobState::Completed);
        assert_eq!(
            (ok.exit_code, ok.signal, ok.reason.clone()),
            (Some(0), None, None)
        );
        assert_eq!(info(jobs, 4).state, JobState::Running);
        assert_eq!(info(jobs, 4).node.as_deref(), Some("n2"));
        let cancelled = info(jobs, 6);
        assert_eq!(cancelled.state, JobState::Cancelled);
        assert_eq!(cancelled.signal, Some(15));
        let pending = info(jobs, 7);
        assert_eq!(pending.state, JobState::Pending);
        assert_eq!(pending.node, None);
        assert_eq!(pending.reason.as_deref(), Some("BeginTime"));
        assert_eq!(info(jobs, 8).state, JobState::Cancelled);
        assert_eq!(info(jobs, 8).node, None);
        assert_eq!(info(jobs, 9).state, JobState::Running);
    }

    #[test]
    fn squeue_columns_of_a_real_cluster() {
        check_early(&squeue_columns(EARLY_COLUMNS).unwrap());
    }

    #[test]
    fn squeue_json_of_a_real_cluster() {
        check_early(&squeue_json(EARLY_JSON).unwrap());
    }

    #[test]
    fn both_formats_agree_on_every_job() {
        for (columns, json) in [(EARLY_COLUMNS, EARLY_JSON), (LATE_COLUMNS, LATE_JSON)] {
            let mut from_columns = squeue_columns(columns).unwrap();
            let mut from_json = squeue_json(json).unwrap();
            from_columns.sort_by_key(|(id, _)| *id);
            from_json.sort_by_key(|(id, _)| *id);
            assert_eq!(from_columns, from_json);
        }
    }

    #[test]
    fn node_failure_and_time_limit_are_recognised() {
        for jobs in [
            squeue_columns(LATE_COLUMNS).unwrap(),
            squeue_json(LATE_JSON).unwrap(),
        ] {
            let node_failed = info(&jobs, 5);
            assert_eq!(node_failed.state, JobState::NodeFail);
            assert_eq!(node_failed.node.as_deref(), Some("n3"));
            assert!(node_failed.state.is_finished());
            let timed_out = info(&jobs, 9);
            assert_eq!(timed_out.state, JobState::Timeout);
            assert!(timed_out.state.is_finished());
        }
    }

    #[test]
    fn a_pipe_in_the_job_name_stays_in_the_name() {
        let jobs = squeue_columns("13|PENDING||Priority|0|a|b|\n").unwrap();
        assert_eq!(jobs[0].1.name, "a|b");
        assert_eq!(jobs[0].1.reason.as_deref(), Some("Priority"));
    }

    #[test]
    fn malformed_squeue_lines_are_errors_not_guesses() {
        assert!(squeue_columns("13|PENDING\n").is_err());
        assert!(squeue_columns("x|PENDING||None|0|n|\n").is_err());
        assert!(squeue_columns("13|PENDING||None|zero|n|\n").is_err());
        assert!(squeue_json("not json").is_err());
        assert!(squeue_json("{\"meta\": {}}").is_err());
        assert_eq!(squeue_columns("").unwrap(), vec![]);
    }

    #[test]
    fn newer_json_shapes_are_read_too() {
        // Slurm 23.02+: job_state a list of flags, numbers wrapped, exit_code an object.
        let json = r#"{"jobs": [
            {"job_id": 41, "job_state": ["FAILED"], "nodes": "n2", "state_reason": "NonZeroExitCode",
             "name": "x", "exit_code": {"status": ["EXITED"], "return_code": {"set": true, "number": 3},
             "signal": {"id": {"set": false, "number": 0}, "name": ""}}},
            {"job_id": {"set": true, "number": 42}, "job_state": ["CANCELLED"], "nodes": "n1",
             "state_reason": "None", "name": "y", "exit_code": {"status": ["SIGNALED"],
             "return_code": {"set": true, "number": 0}, "signal": {"id": {"set": true, "number": 15}, "name": "TERM"}}}
        ]}"#;
        let jobs = squeue_json(json).unwrap();
        assert_eq!(info(&jobs, 41).state, JobState::Failed);
        assert_eq!(
            (info(&jobs, 41).exit_code, info(&jobs, 41).signal),
            (Some(3), None)
        );
        assert_eq!(
            (info(&jobs, 42).exit_code, info(&jobs, 42).signal),
            (None, Some(15))
        );
    }

    #[test]
    fn the_slurm_version_in_squeue_json() {
        assert_eq!(squeue_json_version(EARLY_JSON), Some((22, 5)));
        assert_eq!(squeue_json_version("{\"jobs\": []}"), None);
    }

    #[test]
    fn sbatch_parsable_output() {
        assert_eq!(sbatch_job_id("17\n"), Ok(JobId(17)));
        assert_eq!(sbatch_job_id("17;contimgtest\n"), Ok(JobId(17)));
        assert!(sbatch_job_id("").is_err());
        assert!(sbatch_job_id("Submitted batch job 17\n").is_err());
    }

    #[test]
    fn wait_statuses() {
        assert_eq!(wait_status(0), (Some(0), None));
        assert_eq!(wait_status(768), (Some(3), None));
        assert_eq!(wait_status(9), (None, Some(9)));
        assert_eq!(wait_status(15), (None, Some(15)));
    }

    #[test]
    fn job_states_from_slurm_names() {
        assert_eq!(JobState::from_slurm("CANCELLED+"), JobState::Cancelled);
        assert_eq!(JobState::from_slurm("OUT_OF_MEMORY"), JobState::OutOfMemory);
        assert_eq!(JobState::from_slurm("PREEMPTED"), JobState::Preempted);
        assert_eq!(JobState::from_slurm("CONFIGURING"), JobState::Running);
        assert_eq!(
            JobState::from_slurm("SUSPENDED"),
            JobState::Other("SUSPENDED".into())
        );
        assert!(!JobState::from_slurm("SUSPENDED").is_finished());
        assert!(JobState::from_slurm("BOOT_FAIL").is_finished());
        assert!(!JobState::Completing.is_finished());
        for state in ["PENDING", "RUNNING", "COMPLETED", "NODE_FAIL", "TIMEOUT"] {
            assert_eq!(JobState::from_slurm(state).as_slurm(), state);
        }
    }

    /// stderr captured from the 22.05 clients with slurmctld stopped, and from an
    /// sbatch to an unknown partition.
    #[test]
    fn outage_and_refusal_messages() {
        for captured in [
            include_str!("testdata/down-squeue.txt"),
            include_str!("testdata/down-sbatch.txt"),
            include_str!("testdata/down-scancel.txt"),
        ] {
            assert!(
                is_unreachable(captured),
                "not seen as an outage: {captured}"
            );
        }
        let refused = include_str!("testdata/sbatch-bad-partition.txt");
        assert!(!is_unreachable(refused));
        assert!(is_unknown_job(include_str!(
            "testdata/squeue-unknown-id.txt"
        )));
    }

    #[test]
    fn an_outage_in_squeue_json_is_not_an_empty_cluster() {
        // Captured with slurmctld stopped: exit status 0, "jobs": [], one error.
        let err = squeue_json(include_str!("testdata/down-squeue.json")).unwrap_err();
        match err {
            SqueueJsonError::Reported(text) => assert!(text.contains("slurm_load_jobs"), "{text}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            squeue_json("{\"jobs\": 3}"),
            Err(SqueueJsonError::Malformed(_))
        ));
    }

    #[test]
    fn scontrol_ping_output() {
        assert_eq!(ping(include_str!("testdata/ping-up.txt")), Ok(()));
        assert!(ping(include_str!("testdata/ping-down.txt")).is_err());
        assert!(ping("").is_err());
    }
}
