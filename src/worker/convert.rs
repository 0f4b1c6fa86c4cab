//! Converting one claimed group: the builtin converters (in-process or as a child
//! process of our own binary) or an external command template modelled on the
//! original pipeline's orchestrator call.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::watch;

use contimg_core::config::ConverterConfig;
pub use contimg_core::converter_records::{
    ConversionRecord, KilledStraggler, conversion_record_dir, kill_stragglers,
    take_over_conversion_records,
};
use contimg_core::converter_records::{KILL_GRACE, RunningConversion};
use contimg_core::queue::Timings;

/// How many trailing lines of a failed command's output go into the group's error.
const ERROR_TAIL_LINES: usize = 8;
pub use contimg_core::fsutil::PARTIAL_SUFFIX;

pub use crate::job::{ConvertJob, ConvertOutput, ConverterError};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConvertError {
    #[error("{0}")]
    Failed(String),
    #[error("conversion timed out after {0:.0} s and was killed")]
    TimedOut(f64),
    /// The worker is shutting down; the group is requeued, not failed.
    #[error("conversion interrupted by shutdown")]
    Interrupted,
    /// A directory the conversion writes ran out of space (see `disk`): the
    /// group is tried again without using a retry.
    #[error("no space left on {} ({dir}): {cause}", path.display())]
    NoSpace {
        /// The config field of the directory (`output_dir`, ...).
        dir: String,
        path: std::path::PathBuf,
        /// What the converter said.
        cause: String,
    },
}

/// Runs the configured converter for `job`. `cancel` flips to `true` when the
/// worker gives up waiting at shutdown: child processes are then killed.
pub async fn run_conversion(
    job: &ConvertJob,
    converter: &ConverterConfig,
    use_subprocess: bool,
    timeout: Duration,
    cancel: watch::Receiver<bool>,
) -> Result<ConvertOutput, ConvertError> {
    match converter {
        ConverterConfig::Command { argv, env } => {
            let argv = expand_argv(argv, job);
            run_command(&job.group_id, &argv, env, timeout, cancel, None).await
        }
        builtin if use_subprocess => {
            let exe = std::env::current_exe().map_err(|err| {
                ConvertError::Failed(format!("cannot find our own executable: {err}"))
            })?;
            let job_json =
                serde_json::to_string(job).map_err(|err| ConvertError::Failed(err.to_string()))?;
            let kind = match builtin {
                ConverterConfig::Manifest => "manifest",
                _ => "builtin",
            };
            let argv = vec![
                exe.to_string_lossy().into_owned(),
                "convert-group".to_string(),
                "--converter".to_string(),
                kind.to_string(),
            ];
            run_command(
                &job.group_id,
                &argv,
                &BTreeMap::new(),
                timeout,
                cancel,
                Some(job_json),
            )
            .await
        }
        builtin => {
            let job = job.clone();
            let builtin = builtin.clone();
            let started = Instant::now();
            let work = tokio::task::spawn_blocking(move || convert_in_process(&job, &builtin));
            // An in-process conversion cannot be killed; on timeout we stop waiting
            // and its temp output is removed at the next start.
            match tokio::time::timeout(timeout, work).await {
                Ok(Ok(result)) => result.map_err(|err| ConvertError::Failed(err.to_string())),
                Ok(Err(join)) => Err(ConvertError::Failed(format!("converter panicked: {join}"))),
                Err(_) => Err(ConvertError::TimedOut(started.elapsed().as_secs_f64())),
            }
        }
    }
}

/// The builtin converters, run in this process (or in the `convert-group` child).
pub fn convert_in_process(
    job: &ConvertJob,
    converter: &ConverterConfig,
) -> Result<ConvertOutput, ConverterError> {
    match converter {
        ConverterConfig::Manifest => write_manifest(job),
        ConverterConfig::Builtin => super::builtin::merge_group(job),
        ConverterConfig::Command { .. } => Err(ConverterError::CommandInProcess),
    }
}

/// Verifies every file can be read to the end and writes `<group_id>.json`.
pub fn write_manifest(job: &ConvertJob) -> Result<ConvertOutput, ConverterError> {
    let started = Instant::now();
    let mut files = Vec::with_capacity(job.files.len());
    for (subband_idx, path) in &job.files {
        let unreadable = |source| ConverterError::ReadInput {
            subband_idx: *subband_idx,
            path: path.clone(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(unreadable)?;
        let bytes = std::io::copy(&mut file, &mut std::io::sink()).map_err(unreadable)?;
        files.push(
            serde_json::json!({"subband_idx": subband_idx, "path": path, "size_bytes": bytes}),
        );
    }
    let load_time = started.elapsed().as_secs_f64();
    let manifest = serde_json::json!({
        "group_id": job.group_id,
        "group_ts": job.group_ts,
        "files": files,
        "written_by": format!("contimg {}", env!("CARGO_PKG_VERSION")),
    });
    let output = job.output_dir.join(format!("{}.json", job.group_id));
    let text = serde_json::to_vec_pretty(&manifest).map_err(ConverterError::EncodeManifest)?;
    write_output_atomically(&output, &text)?;
    let total = started.elapsed().as_secs_f64();
    Ok(ConvertOutput {
        timings: Timings {
            load_time: Some(load_time),
            phase_time: None,
            write_time: Some(total - load_time),
            total_time: Some(total),
            writer_type: Some("manifest".to_string()),
        },
        output_path: Some(output),
    })
}

/// Writes a converter's output file atomically (see `contimg_core::fsutil`).
pub fn write_output_atomically(path: &Path, bytes: &[u8]) -> Result<(), ConverterError> {
    contimg_core::fsutil::atomic_write(path, bytes).map_err(|source| ConverterError::WriteOutput {
        path: path.to_path_buf(),
        source,
    })
}

/// Expands the placeholders of a command template. `{files}` standing alone becomes
/// one argument per file; inside a longer argument it is space-joined.
pub fn expand_argv(template: &[String], job: &ConvertJob) -> Vec<String> {
    let start = contimg_core::queue::group_id_for(job.group_ts);
    let end = contimg_core::queue::group_id_for(job.group_ts + job.chunk_minutes * 60.0);
    let files: Vec<String> = job
        .files
        .iter()
        .map(|(_, p)| p.to_string_lossy().into_owned())
        .collect();
    let output = job.output_dir.join(format!("{}.ms", job.group_id));
    let values: [(&str, String); 9] = [
        ("{group_id}", job.group_id.clone()),
        ("{start}", start),
        ("{end}", end),
        ("{input_dir}", job.input_dir.to_string_lossy().into_owned()),
        (
            "{output_dir}",
            job.output_dir.to_string_lossy().into_owned(),
        ),
        (
            "{scratch_dir}",
            job.scratch_dir.to_string_lossy().into_owned(),
        ),
        ("{output}", output.to_string_lossy().into_owned()),
        ("{max_workers}", job.max_workers.to_string()),
        (
            "{tmpfs_path}",
            job.tmpfs_path.to_string_lossy().into_owned(),
        ),
    ];
    let mut argv = Vec::with_capacity(template.len() + files.len());
    for arg in template {
        if arg == "{files}" {
            argv.extend(files.iter().cloned());
            continue;
        }
        let mut expanded = arg.replace("{files}", &files.join(" "));
        for (placeholder, value) in &values {
            expanded = expanded.replace(placeholder, value);
        }
        argv.push(expanded);
    }
    argv
}

/// Runs a converter process in its own process group, logs its output tagged with
/// the group id, and kills the whole group on timeout or cancellation.
async fn run_command(
    group_id: &str,
    argv: &[String],
    extra_env: &BTreeMap<String, String>,
    timeout: Duration,
    mut cancel: watch::Receiver<bool>,
    stdin_payload: Option<String>,
) -> Result<ConvertOutput, ConvertError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(ConvertError::Failed("empty converter command".to_string()));
    };
    let started = Instant::now();
    let mut command = Command::new(program);
    command
        .args(args)
        // What the production orchestrator needs on shared file systems.
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .env("OMP_NUM_THREADS", "4")
        .env("CONTIMG_GROUP_ID", group_id)
        .envs(extra_env)
        .stdin(if stdin_payload.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    contimg_core::process::inherit_only_stdio(command.as_std_mut());
    // If the worker is killed outright (kill -9), its converters must not live on
    // as orphans writing outputs nobody will record.
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: prctl is a plain system call (nix's
    // wrapper allocates nothing) that changes only the child's own state.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|err| ConvertError::Failed(format!("cannot start {program}: {err}")))?;
    let pid = child.id();
    // Dropped on every way out of here (finished, killed, or this task aborted):
    // kills what the converter left in its group and forgets the record.
    let conversion = pid.and_then(|pid| RunningConversion::start(pid, group_id));

    if let (Some(payload), Some(mut stdin)) = (stdin_payload, child.stdin.take()) {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(payload.as_bytes()).await;
        drop(stdin);
    }

    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let stdout_task = tokio::spawn(forward_lines(group_id.to_string(), stdout, false));
    let stderr_task = tokio::spawn(forward_lines(group_id.to_string(), stderr, true));

    let waited = tokio::select! {
        status = child.wait() => Some(status),
        _ = tokio::time::sleep(timeout) => None,
        _ = cancelled(&mut cancel) => {
            kill_group(pid, &mut child).await;
            collect_output(stdout_task).await;
            collect_output(stderr_task).await;
            return Err(ConvertError::Interrupted);
        }
    };
    let Some(status) = waited else {
        kill_group(pid, &mut child).await;
        collect_output(stdout_task).await;
        collect_output(stderr_task).await;
        return Err(ConvertError::TimedOut(started.elapsed().as_secs_f64()));
    };
    let status =
        status.map_err(|err| ConvertError::Failed(format!("waiting for {program}: {err}")))?;
    // What the converter left running in its group would keep writing, and keep
    // its output pipes open.
    if let Some(conversion) = &conversion {
        conversion.kill_leftovers();
    }
    let stdout_lines = collect_output(stdout_task).await;
    let stderr_lines = collect_output(stderr_task).await;
    let total = started.elapsed().as_secs_f64();
    if !status.success() {
        let tail: Vec<String> = stderr_lines.into_iter().chain(stdout_lines).collect();
        let tail = tail
            .iter()
            .rev()
            .take(ERROR_TAIL_LINES)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join(" | ");
        let how = match status.code() {
            Some(code) => format!("exit code {code}"),
            None => {
                use std::os::unix::process::ExitStatusExt;
                format!("signal {}", status.signal().unwrap_or(0))
            }
        };
        return Err(ConvertError::Failed(if tail.is_empty() {
            format!("converter failed ({how})")
        } else {
            format!("converter failed ({how}): {tail}")
        }));
    }
    // Our own `convert-group` child reports its result as JSON on its last line.
    let reported = stdout_lines
        .iter()
        .rev()
        .find_map(|line| line.strip_prefix(CONVERT_RESULT_PREFIX))
        .and_then(|json| serde_json::from_str::<ConvertOutput>(json).ok());
    Ok(reported.unwrap_or(ConvertOutput {
        timings: Timings {
            total_time: Some(total),
            writer_type: Some("command".to_string()),
            ..Default::default()
        },
        output_path: None,
    }))
}

/// The tail a line forwarder collected; gives up after [`KILL_GRACE`] (a process
/// that left the converter's group can hold the pipe open forever).
async fn collect_output(mut task: tokio::task::JoinHandle<VecDeque<String>>) -> VecDeque<String> {
    match tokio::time::timeout(KILL_GRACE, &mut task).await {
        Ok(lines) => lines.unwrap_or_default(),
        Err(_) => {
            task.abort();
            VecDeque::new()
        }
    }
}

/// Resolves once the worker asks running conversions to stop.
async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    // The borrow guard must not live across an await in the caller.
    let _ = cancel.wait_for(|stop| *stop).await.map(|_| ());
}

/// Prefix of the line on which `contimg-stream convert-group` reports its result.
pub const CONVERT_RESULT_PREFIX: &str = "CONTIMG_RESULT ";

async fn forward_lines<R: tokio::io::AsyncRead + Unpin>(
    group_id: String,
    reader: Option<R>,
    is_stderr: bool,
) -> VecDeque<String> {
    let mut tail = VecDeque::with_capacity(ERROR_TAIL_LINES + 1);
    let Some(reader) = reader else { return tail };
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.starts_with(CONVERT_RESULT_PREFIX) {
            tail.push_back(line);
            continue;
        }
        if is_stderr {
            tracing::warn!(group_id = %group_id, "converter: {line}");
        } else {
            tracing::info!(group_id = %group_id, "converter: {line}");
        }
        tail.push_back(line);
        // Keep the result line (if any) plus a bounded tail.
        while tail.len() > 4 * ERROR_TAIL_LINES {
            tail.pop_front();
        }
    }
    tail
}

async fn kill_group(pid: Option<u32>, child: &mut tokio::process::Child) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let Some(pid) = pid else { return };
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // Children that outlived the leader.
    let _ = killpg(group, Signal::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// output_dir is writable by others' tools: a symlink planted at the output
    /// name is replaced, never written through (the temporaries are covered by
    /// `contimg_core::fsutil`'s tests).
    #[test]
    fn outputs_replace_a_planted_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let output = dir.path().join("2025-10-13T13:28:03.json");
        std::os::unix::fs::symlink(&victim, &output).unwrap();
        write_output_atomically(&output, b"manifest").unwrap();
        assert_eq!(std::fs::read(&output).unwrap(), b"manifest");
        assert!(std::fs::symlink_metadata(&output).unwrap().is_file());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    fn job(dir: &Path) -> ConvertJob {
        ConvertJob {
            group_id: "2025-10-13T13:28:03".into(),
            group_ts: 1_760_362_083.0,
            chunk_minutes: 5.0,
            files: vec![(0, dir.join("a_sb00.hdf5")), (1, dir.join("a_sb01.hdf5"))],
            input_dir: dir.to_path_buf(),
            output_dir: dir.join("out"),
            scratch_dir: dir.join("scratch"),
            tmpfs_path: PathBuf::from("/dev/shm"),
            max_workers: 4,
            stage_to_tmpfs: false,
        }
    }

    #[test]
    fn expands_placeholders_like_the_orchestrator_call() {
        let dir = Path::new("/in");
        let argv = expand_argv(
            &[
                "python".into(),
                "{input_dir}".into(),
                "{output_dir}".into(),
                "{start}".into(),
                "{end}".into(),
                "{files}".into(),
                "--tag={group_id}".into(),
                "--all={files}".into(),
            ],
            &job(dir),
        );
        assert_eq!(
            argv,
            vec![
                "python",
                "/in",
                "/in/out",
                "2025-10-13T13:28:03",
                "2025-10-13T13:33:03",
                "/in/a_sb00.hdf5",
                "/in/a_sb01.hdf5",
                "--tag=2025-10-13T13:28:03",
                "--all=/in/a_sb00.hdf5 /in/a_sb01.hdf5",
            ]
        );
    }

    #[test]
    fn manifest_reads_every_file() {
        let tmp = tempfile::tempdir().unwrap();
        let job = job(tmp.path());
        std::fs::create_dir_all(&job.output_dir).unwrap();
        std::fs::write(&job.files[0].1, b"abc").unwrap();
        match write_manifest(&job).unwrap_err() {
            ConverterError::ReadInput {
                subband_idx, path, ..
            } => {
                assert_eq!(subband_idx, 1);
                assert_eq!(path, job.files[1].1);
            }
            other => panic!("expected the unreadable subband, got {other}"),
        }
        let err = write_manifest(&job).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("sb01 {}: ", job.files[1].1.display())),
            "{err}"
        );
        std::fs::write(&job.files[1].1, b"defg").unwrap();
        let out = write_manifest(&job).unwrap();
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.output_path.unwrap()).unwrap()).unwrap();
        assert_eq!(written["files"][1]["size_bytes"], 4);
    }

    #[tokio::test]
    async fn command_failures_timeouts_and_env() {
        let tmp = tempfile::tempdir().unwrap();
        let job = job(tmp.path());
        let (_tx, rx) = watch::channel(false);
        let fail = ConverterConfig::Command {
            argv: vec!["sh".into(), "-c".into(), "echo oops >&2; exit 3".into()],
            env: BTreeMap::new(),
        };
        let err = run_conversion(&job, &fail, true, Duration::from_secs(10), rx.clone())
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ConvertError::Failed("converter failed (exit code 3): oops".into())
        );

        let slow = ConverterConfig::Command {
            argv: vec!["sleep".into(), "30".into()],
            env: BTreeMap::new(),
        };
        let started = Instant::now();
        let err = run_conversion(&job, &slow, true, Duration::from_millis(200), rx.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, ConvertError::TimedOut(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(10));

        let env_check = ConverterConfig::Command {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "test \"$HDF5_USE_FILE_LOCKING\" = FALSE && test \"$X\" = y".into(),
            ],
            env: BTreeMap::from([("X".to_string(), "y".to_string())]),
        };
        run_conversion(&job, &env_check, true, Duration::from_secs(10), rx)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn cancellation_kills_the_process_group() {
        let tmp = tempfile::tempdir().unwrap();
        let job = job(tmp.path());
        let (tx, rx) = watch::channel(false);
        let slow = ConverterConfig::Command {
            argv: vec!["sh".into(), "-c".into(), "sleep 30 & wait".into()],
            env: BTreeMap::new(),
        };
        let task = tokio::spawn(async move {
            run_conversion(&job, &slow, true, Duration::from_secs(60), rx).await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(true).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(result.unwrap_err(), ConvertError::Interrupted);
    }
}
