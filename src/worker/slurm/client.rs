//! [`SlurmClient`]: one Slurm command per call, started directly (argv, no shell)
//! and killed when it outlives the client's timeout.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::parse;
use super::{JobId, JobInfo, JobSpec, SlurmError};

/// How long a command may take before the scheduler counts as unreachable. Slurm's
/// clients retry a controller that does not answer for about `MessageTimeout`
/// (10 s by default) themselves.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The first Slurm major release whose `squeue --json` honours squeue's filters
/// (22.05's man page: "All other formatting and filtering arguments will be
/// ignored").
const FIRST_FILTERING_JSON_MAJOR: u64 = 23;

/// How [`SlurmClient::query`] asks squeue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryFormat {
    /// `squeue --json` with the filters (Slurm's openapi/data_parser plugin must be
    /// installed). Chosen by detection only on Slurm 23 and later: 22.05 ignores the
    /// filters and lists every job the controller knows.
    Json,
    /// `squeue -h --states=all -O …` with the job ids as a filter (every version).
    Columns,
}

/// Runs Slurm's own clients against one cluster.
#[derive(Debug)]
pub struct SlurmClient {
    /// Added to the worker's environment for every command (`SLURM_CONF`, `PATH`);
    /// empty: the commands find the cluster from the worker's own environment.
    env: Vec<(OsString, OsString)>,
    timeout: Duration,
    /// Decided by the first successful query (JSON when this Slurm has it).
    format: OnceLock<QueryFormat>,
}

impl Clone for SlurmClient {
    fn clone(&self) -> Self {
        let format = OnceLock::new();
        if let Some(known) = self.format.get() {
            let _ = format.set(*known);
        }
        Self {
            env: self.env.clone(),
            timeout: self.timeout,
            format,
        }
    }
}

/// Jobs as squeue lists them.
type JobList = Vec<(JobId, JobInfo)>;

/// What a finished command printed.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Default for SlurmClient {
    fn default() -> Self {
        Self::new(Vec::new(), DEFAULT_TIMEOUT)
    }
}

impl SlurmClient {
    /// A client whose commands run with `env` added to the worker's environment
    /// and are killed after `timeout`.
    pub fn new(env: Vec<(OsString, OsString)>, timeout: Duration) -> Self {
        Self {
            env,
            timeout,
            format: OnceLock::new(),
        }
    }

    /// Fixes how [`query`](Self::query) reads squeue instead of detecting it.
    pub fn with_format(self, format: QueryFormat) -> Self {
        let fixed = OnceLock::new();
        let _ = fixed.set(format);
        Self {
            format: fixed,
            ..self
        }
    }

    /// The query format in use, once known.
    pub fn format(&self) -> Option<QueryFormat> {
        self.format.get().copied()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Submits `spec` with `sbatch --parsable`, the script on stdin. Slurm never
    /// requeues the job by itself (`--no-requeue`): a retry is the worker's call.
    pub fn submit(&self, spec: &JobSpec) -> Result<JobId, SlurmError> {
        let done = self.run("sbatch", &sbatch_args(spec), Some(spec.script.as_bytes()))?;
        if !done.status.success() {
            return Err(failure("sbatch", &done));
        }
        parse::sbatch_job_id(&done.stdout).map_err(|detail| SlurmError::Output {
            command: "sbatch",
            detail,
        })
    }

    /// The state of the given jobs in one squeue call. A job Slurm no longer knows
    /// (it ended more than `MinJobAge` ago, or never existed) is absent.
    pub fn query(&self, ids: &[JobId]) -> Result<HashMap<JobId, JobInfo>, SlurmError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let wanted: HashSet<JobId> = ids.iter().copied().collect();
        let list = ids
            .iter()
            .map(JobId::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let filter = [OsString::from("-j"), OsString::from(list)];
        Ok(self
            .jobs(&filter)?
            .into_iter()
            .filter(|(id, _)| wanted.contains(id))
            .collect())
    }

    /// Every job of this user that Slurm knows whose name starts with `prefix`, in
    /// one squeue call: how a restarted worker finds jobs it submitted but never
    /// recorded (killed right after sbatch, or sbatch timed out).
    pub fn jobs_named(&self, prefix: &str) -> Result<Vec<(JobId, JobInfo)>, SlurmError> {
        let filter = [OsString::from("--me")];
        let mut jobs: Vec<_> = self
            .jobs(&filter)?
            .into_iter()
            .filter(|(_, info)| info.name.starts_with(prefix))
            .collect();
        jobs.sort_by_key(|(id, _)| *id);
        Ok(jobs)
    }

    /// `scancel ID`. A job that has already ended is not an error.
    pub fn cancel(&self, id: &JobId) -> Result<(), SlurmError> {
        let done = self.run("scancel", &[OsString::from(id.to_string())], None)?;
        if done.status.success() || parse::is_already_finished(&done.stderr) {
            return Ok(());
        }
        Err(failure("scancel", &done))
    }

    /// Whether slurmctld answers (`scontrol ping`).
    pub fn ping(&self) -> Result<(), SlurmError> {
        let done = self.run("scontrol", &[OsString::from("ping")], None)?;
        parse::ping(&done.stdout).map_err(|detail| SlurmError::Unreachable {
            command: "scontrol ping",
            detail: if done.stderr.trim().is_empty() {
                detail
            } else {
                format!("{detail} {}", done.stderr.trim())
            },
        })
    }

    /// squeue with `filter` (ids or `--me`) in the query format, detected on first
    /// use: `--json` when this Slurm prints it and honours squeue's filters with it
    /// (23.02 and later), else columns. Slurm 22.05's `--json` ignores every filter
    /// and prints about 3 kB per job of every user: with 1,000 jobs, 3 MB and
    /// 320 ms per call against 31 kB and 46 ms for the filtered columns (measured
    /// on the test cluster), so polling with it would grow with the whole cluster.
    /// The detecting call's own answer is used either way (filtered here).
    fn jobs(&self, filter: &[OsString]) -> Result<Vec<(JobId, JobInfo)>, SlurmError> {
        let format = match self.format.get() {
            Some(format) => *format,
            None => match self.squeue_json(filter) {
                Ok((jobs, version)) => {
                    let chosen = match version {
                        Some((major, _)) if major >= FIRST_FILTERING_JSON_MAJOR => {
                            QueryFormat::Json
                        }
                        _ => QueryFormat::Columns,
                    };
                    tracing::info!(?version, ?chosen, "squeue query format chosen");
                    let _ = self.format.set(chosen);
                    return Ok(jobs);
                }
                Err(err @ SlurmError::Unreachable { .. }) => return Err(err),
                Err(err) => {
                    tracing::info!("squeue --json unusable here ({err}); reading squeue columns");
                    let _ = self.format.set(QueryFormat::Columns);
                    QueryFormat::Columns
                }
            },
        };
        match format {
            QueryFormat::Json => self.squeue_json(filter).map(|(jobs, _)| jobs),
            QueryFormat::Columns => self.squeue_columns(filter),
        }
    }

    /// `squeue --json` and the Slurm version it names.
    fn squeue_json(
        &self,
        filter: &[OsString],
    ) -> Result<(JobList, Option<(u64, u64)>), SlurmError> {
        let mut args = vec![OsString::from("--json")];
        args.extend(filter.iter().cloned());
        let done = self.run("squeue", &args, None)?;
        if !done.status.success() {
            return Err(failure("squeue", &done));
        }
        let jobs = parse::squeue_json(&done.stdout).map_err(|err| match err {
            parse::SqueueJsonError::Reported(detail) => SlurmError::Unreachable {
                command: "squeue",
                detail,
            },
            parse::SqueueJsonError::Malformed(detail) => SlurmError::Output {
                command: "squeue",
                detail,
            },
        })?;
        Ok((jobs, parse::squeue_json_version(&done.stdout)))
    }

    fn squeue_columns(&self, filter: &[OsString]) -> Result<Vec<(JobId, JobInfo)>, SlurmError> {
        let mut args: Vec<OsString> = ["-h", "--states=all", "-O", parse::SQUEUE_COLUMNS]
            .into_iter()
            .map(OsString::from)
            .collect();
        args.extend(filter.iter().cloned());
        let done = self.run("squeue", &args, None)?;
        if !done.status.success() {
            // One id that Slurm has forgotten: squeue fails instead of printing nothing.
            if parse::is_unknown_job(&done.stderr) {
                return Ok(Vec::new());
            }
            return Err(failure("squeue", &done));
        }
        parse::squeue_columns(&done.stdout).map_err(|detail| SlurmError::Output {
            command: "squeue",
            detail,
        })
    }

    /// Runs `program args`, feeding `stdin`, and waits at most the client's timeout.
    fn run(
        &self,
        program: &'static str,
        args: &[OsString],
        stdin: Option<&[u8]>,
    ) -> Result<Finished, SlurmError> {
        let started = Instant::now();
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| SlurmError::Io {
            command: program,
            source,
        })?;
        let writer = stdin.map(|bytes| {
            let bytes = bytes.to_vec();
            let pipe = child.stdin.take();
            std::thread::spawn(move || {
                if let Some(mut pipe) = pipe {
                    // A command that exits without reading all of it is judged by
                    // its exit status, not by the broken pipe.
                    let _ = pipe.write_all(&bytes);
                }
            })
        });
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let status = wait_until(&mut child, started + self.timeout);
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        let (stdout, stderr) = (collect(stdout), collect(stderr));
        tracing::debug!(
            command = program,
            args = ?args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "slurm command"
        );
        match status {
            Ok(Some(status)) => Ok(Finished {
                status,
                stdout,
                stderr,
            }),
            Ok(None) => Err(SlurmError::Unreachable {
                command: program,
                detail: format!(
                    "no answer within {:.0?}{}",
                    self.timeout,
                    tail_note(&stderr)
                ),
            }),
            Err(source) => Err(SlurmError::Io {
                command: program,
                source,
            }),
        }
    }
}

/// sbatch's argv for `spec` (everything but the script, which goes on stdin).
pub fn sbatch_args(spec: &JobSpec) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--parsable".into(), "--no-requeue".into()];
    let mut option = |name: &str, value: &OsStr| {
        let mut arg = OsString::from(name);
        arg.push("=");
        arg.push(value);
        args.push(arg);
    };
    option("--job-name", OsStr::new(&spec.name));
    option("--comment", OsStr::new(&spec.comment));
    option("--chdir", spec.workdir.as_os_str());
    option("--output", spec.stdout_path.as_os_str());
    option("--error", spec.stdout_path.as_os_str());
    for (name, value) in [
        ("--partition", &spec.partition),
        ("--account", &spec.account),
        ("--qos", &spec.qos),
        ("--time", &spec.time_limit),
        ("--mem", &spec.mem),
    ] {
        if let Some(value) = value {
            option(name, OsStr::new(value));
        }
    }
    if let Some(cpus) = spec.cpus_per_task {
        option("--cpus-per-task", OsStr::new(&cpus.to_string()));
    }
    args.extend(spec.extra_args.iter().map(OsString::from));
    args
}

/// A failed command's error: an outage when its stderr says so, else a refusal.
fn failure(command: &'static str, done: &Finished) -> SlurmError {
    let stderr = done.stderr.trim().to_string();
    if parse::is_unreachable(&stderr) {
        SlurmError::Unreachable {
            command,
            detail: stderr,
        }
    } else {
        SlurmError::Rejected {
            command,
            stderr: if stderr.is_empty() {
                format!("exit status {}", done.status)
            } else {
                stderr
            },
        }
    }
}

fn tail_note(stderr: &str) -> String {
    let last = stderr.lines().rev().find(|line| !line.trim().is_empty());
    last.map(|line| format!("; last said: {}", line.trim()))
        .unwrap_or_default()
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Option<JoinHandle<Vec<u8>>> {
    pipe.map(|mut pipe| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    })
}

fn collect(reader: Option<JoinHandle<Vec<u8>>>) -> String {
    let bytes = reader
        .and_then(|reader| reader.join().ok())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The child's exit status, or `None` after killing it at `deadline`. Polls with a
/// short, growing sleep: Slurm's commands mostly finish within tens of ms.
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn sbatch_argv_carries_every_setting_and_no_shell() {
        let spec = JobSpec {
            name: "contimg-g1-a2".into(),
            comment: "group=g1 attempt=2".into(),
            partition: Some("debug".into()),
            account: None,
            qos: Some("normal".into()),
            time_limit: Some("10:00".into()),
            mem: Some("4G".into()),
            cpus_per_task: Some(4),
            extra_args: vec!["--exclusive".into()],
            workdir: PathBuf::from("/data/work dir"),
            stdout_path: PathBuf::from("/data/logs/g1.a2.log"),
            script: "#!/bin/sh\ntrue\n".into(),
        };
        let args: Vec<String> = sbatch_args(&spec)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "--parsable",
                "--no-requeue",
                "--job-name=contimg-g1-a2",
                "--comment=group=g1 attempt=2",
                "--chdir=/data/work dir",
                "--output=/data/logs/g1.a2.log",
                "--error=/data/logs/g1.a2.log",
                "--partition=debug",
                "--qos=normal",
                "--time=10:00",
                "--mem=4G",
                "--cpus-per-task=4",
                "--exclusive",
            ]
        );
    }

    #[test]
    fn a_command_that_hangs_is_killed_and_reported_unreachable() {
        // `sleep` stands in for a Slurm client stuck on a dead controller; only the
        // timeout path is under test here.
        let client = SlurmClient::new(Vec::new(), Duration::from_millis(200));
        let started = Instant::now();
        let err = client
            .run("sleep", &[OsString::from("30")], None)
            .err()
            .unwrap();
        assert!(err.is_unreachable(), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_missing_program_is_an_io_error() {
        let client = SlurmClient::new(
            vec![("PATH".into(), "/nonexistent".into())],
            Duration::from_secs(5),
        );
        assert!(matches!(client.ping(), Err(SlurmError::Io { .. })));
    }
}
