//! What a Slurm batch job runs: the same process the local executor would start
//! (the `command` converter's expanded argv, or our own `convert-group` for the
//! builtin converters), wrapped in a script that records the process's exit
//! status in a file next to the job's log. The worker reads that file, so a
//! job's result never depends on slurmctld still remembering the job.

use std::path::{Path, PathBuf};

use contimg_core::config::ConverterConfig;

use crate::convert::{ConvertJob, expand_argv};

/// One attempt's files in the executor's log directory (shared storage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttemptFiles {
    /// The job's stdout and stderr (`sbatch --output`/`--error`).
    pub log: PathBuf,
    /// The exit record the job writes last (tmp name, then `mv`).
    pub exit: PathBuf,
}

impl AttemptFiles {
    pub(crate) fn new(log_dir: &Path, group_id: &str, attempt: u32) -> Self {
        let stem = format!("{group_id}.attempt{attempt}");
        Self {
            log: log_dir.join(format!("{stem}.log")),
            exit: log_dir.join(format!("{stem}.exit")),
        }
    }

    /// The files of an attempt whose log path was stored with it.
    pub(crate) fn from_log(log: PathBuf) -> Self {
        let exit = log.with_extension("exit");
        Self { log, exit }
    }
}

/// The process a job starts, as the local executor would start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobCommand {
    pub argv: Vec<String>,
    /// Set on top of the job's environment (sbatch passes the worker's own).
    pub env: Vec<(String, String)>,
    /// Fed on stdin (the builtin converters read their job as JSON).
    pub stdin: Option<String>,
}

/// Why a job's command cannot be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScriptError {
    #[error("cannot find our own executable for convert-group: {0}")]
    OwnExecutable(#[source] std::io::Error),
    #[error("cannot encode the job: {0}")]
    EncodeJob(#[source] serde_json::Error),
    #[error("empty converter command")]
    EmptyCommand,
}

/// The command for `job`: the converter's argv with its placeholders expanded
/// (the same [`expand_argv`] the local executor uses), or `exe convert-group
/// --converter KIND` with the job on stdin for the builtin converters.
pub(crate) fn job_command(
    job: &ConvertJob,
    converter: &ConverterConfig,
    exe: &Path,
) -> Result<JobCommand, ScriptError> {
    // What the local executor sets for every converter process.
    let mut env = vec![
        ("HDF5_USE_FILE_LOCKING".to_string(), "FALSE".to_string()),
        ("OMP_NUM_THREADS".to_string(), "4".to_string()),
        ("CONTIMG_GROUP_ID".to_string(), job.group_id.clone()),
    ];
    let (argv, stdin) = match converter {
        ConverterConfig::Command { argv, env: extra } => {
            env.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
            (expand_argv(argv, job), None)
        }
        builtin => {
            let kind = match builtin {
                ConverterConfig::Manifest => "manifest",
                _ => "builtin",
            };
            let json = serde_json::to_string(job).map_err(ScriptError::EncodeJob)?;
            let argv = vec![
                exe.to_string_lossy().into_owned(),
                "convert-group".to_string(),
                "--converter".to_string(),
                kind.to_string(),
            ];
            (argv, Some(json))
        }
    };
    if argv.first().is_none_or(|program| program.trim().is_empty()) {
        return Err(ScriptError::EmptyCommand);
    }
    Ok(JobCommand { argv, env, stdin })
}

/// Our own executable, which the compute nodes must have at the same path.
pub(crate) fn own_executable() -> Result<PathBuf, ScriptError> {
    std::env::current_exe().map_err(ScriptError::OwnExecutable)
}

/// The heredoc delimiter for a builtin job's JSON: JSON on one line can never
/// be this word alone.
const JOB_JSON_END: &str = "CONTIMG_JOB_JSON";

/// The batch script: run `command`, then record its exit status, the node and
/// the start/end times in `files.exit` (written under a temporary name and
/// renamed, so the worker never reads half a record).
pub(crate) fn batch_script(
    command: &JobCommand,
    files: &AttemptFiles,
    group_id: &str,
    attempt: u32,
) -> String {
    let mut script = String::from("#!/bin/sh\n");
    script.push_str(&format!(
        "# contimg: group {group_id}, attempt {attempt} (contimg-stream {})\n",
        env!("CARGO_PKG_VERSION")
    ));
    let exit = files.exit.to_string_lossy();
    let exit_dir = files
        .exit
        .parent()
        .map(|dir| dir.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".to_string());
    let exit_name = files
        .exit
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    script.push_str(&format!("contimg_exit={}\n", shell_quote(&exit)));
    script.push_str(&format!(
        "contimg_exit_tmp={}\n",
        shell_quote(&format!("{exit_dir}/.{exit_name}.tmp"))
    ));
    script.push_str("contimg_started=$(date +%s.%N)\n");
    for (key, value) in &command.env {
        script.push_str(&format!(
            "export {}\n",
            shell_quote(&format!("{key}={value}"))
        ));
    }
    let argv: Vec<String> = command.argv.iter().map(|arg| shell_quote(arg)).collect();
    script.push_str(&argv.join(" "));
    match &command.stdin {
        Some(input) => {
            script.push_str(&format!(" <<'{JOB_JSON_END}'\n{input}\n{JOB_JSON_END}\n"));
        }
        None => script.push_str(" </dev/null\n"),
    }
    script.push_str("contimg_code=$?\n");
    script.push_str(
        "printf 'exit=%s node=%s started=%s finished=%s\\n' \"$contimg_code\" \
         \"${SLURMD_NODENAME:-$(hostname)}\" \"$contimg_started\" \"$(date +%s.%N)\" \
         > \"$contimg_exit_tmp.$$\" && mv -f \"$contimg_exit_tmp.$$\" \"$contimg_exit\"\n",
    );
    script.push_str("exit \"$contimg_code\"\n");
    script
}

/// `text` as one word for sh: in single quotes, each `'` written as `'\''`.
pub(crate) fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// What a job wrote in its exit file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExitRecord {
    pub code: i32,
    pub node: Option<String>,
    pub started: Option<f64>,
    pub finished: Option<f64>,
}

/// Parses `exit=N node=NAME started=S finished=S`; `None` without an exit code.
pub(crate) fn parse_exit_record(text: &str) -> Option<ExitRecord> {
    let mut code = None;
    let mut record = ExitRecord {
        code: 0,
        node: None,
        started: None,
        finished: None,
    };
    for field in text.split_whitespace() {
        match field.split_once('=') {
            Some(("exit", value)) => code = value.parse().ok(),
            Some(("node", value)) if !value.is_empty() => record.node = Some(value.to_string()),
            Some(("started", value)) => record.started = value.parse().ok(),
            Some(("finished", value)) => record.finished = value.parse().ok(),
            _ => {}
        }
    }
    record.code = code?;
    Some(record)
}

/// Reads an attempt's exit record, if the job has written it.
pub(crate) fn read_exit_record(path: &Path) -> Option<ExitRecord> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| parse_exit_record(&text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::process::Command;

    fn job(dir: &Path) -> ConvertJob {
        ConvertJob {
            group_id: "2025-10-13T13:28:03".into(),
            group_ts: 1_760_362_083.0,
            chunk_minutes: 5.0,
            files: vec![(0, dir.join("it's sb00.hdf5"))],
            input_dir: dir.to_path_buf(),
            output_dir: dir.join("out"),
            scratch_dir: dir.join("scratch"),
            tmpfs_path: PathBuf::from("/dev/shm"),
            max_workers: 4,
            stage_to_tmpfs: false,
        }
    }

    /// The script runs the argv word for word (quotes, spaces, `$`), with the
    /// local executor's environment, and records the exit status atomically.
    #[test]
    fn the_script_runs_the_argv_and_records_its_exit_status() {
        let tmp = tempfile::tempdir().unwrap();
        let job = job(tmp.path());
        let converter = ConverterConfig::Command {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "printf '%s|' \"$@\" \"$HDF5_USE_FILE_LOCKING\" \"$CONTIMG_GROUP_ID\" \"$X\"; exit 3"
                    .into(),
                "argv0".into(),
                "{files}".into(),
                "$HOME `x`".into(),
            ],
            env: BTreeMap::from([("X".to_string(), "a'b".to_string())]),
        };
        let command = job_command(&job, &converter, Path::new("/unused")).unwrap();
        let files = AttemptFiles::new(tmp.path(), &job.group_id, 2);
        let script = batch_script(&command, &files, &job.group_id, 2);
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert_eq!(out.status.code(), Some(3));
        let printed = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            printed,
            format!(
                "{}|$HOME `x`|FALSE|2025-10-13T13:28:03|a'b|",
                job.files[0].1.display()
            )
        );
        let record = read_exit_record(&files.exit).unwrap();
        assert_eq!(record.code, 3);
        assert!(record.node.is_some());
        assert!(record.finished.unwrap() >= record.started.unwrap());
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn builtin_jobs_read_their_job_on_stdin() {
        let tmp = tempfile::tempdir().unwrap();
        let job = job(tmp.path());
        let command =
            job_command(&job, &ConverterConfig::Builtin, Path::new("/usr/bin/cat")).unwrap();
        assert_eq!(
            command.argv,
            ["/usr/bin/cat", "convert-group", "--converter", "builtin"]
        );
        // `cat` in place of contimg-stream: echoes the JSON it was fed.
        let echo = JobCommand {
            argv: vec!["cat".into()],
            ..command.clone()
        };
        let files = AttemptFiles::new(tmp.path(), &job.group_id, 1);
        let out = Command::new("sh")
            .arg("-c")
            .arg(batch_script(&echo, &files, &job.group_id, 1))
            .output()
            .unwrap();
        assert!(out.status.success());
        let fed: ConvertJob = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(fed, job);
        assert_eq!(read_exit_record(&files.exit).unwrap().code, 0);
    }

    #[test]
    fn exit_records_need_an_exit_code() {
        assert_eq!(
            parse_exit_record("exit=0 node=n2 started=10 finished=12\n"),
            Some(ExitRecord {
                code: 0,
                node: Some("n2".into()),
                started: Some(10.0),
                finished: Some(12.0)
            })
        );
        assert_eq!(parse_exit_record(""), None);
        assert_eq!(parse_exit_record("node=n2"), None);
        assert_eq!(
            AttemptFiles::from_log(PathBuf::from("/l/g.attempt1.log")),
            AttemptFiles::new(Path::new("/l"), "g", 1)
        );
    }
}
