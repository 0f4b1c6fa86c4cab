//! Isolated UVH5 validation: untrusted subband files are opened by libhdf5 only in
//! long-lived child processes (`contimg-stream validate-server`), never in the
//! worker. A crafted file can crash or hang libhdf5; here that kills or stalls one
//! validator, the file is rejected naming the signal or the timeout, a fresh
//! validator takes its place, and the worker carries on.
//!
//! Each validator runs with an address-space limit, a CPU-time limit per file, no
//! core dumps and `no_new_privs`, and dies with the worker (`PR_SET_PDEATHSIG`).
//! Before a file goes to a validator the worker journals it in the queue DB
//! (`inspections`), and clears the entry when the answer arrives. An entry found at
//! start-up means the previous worker died while that file was being inspected: it
//! is rejected without being opened again.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::prctl;
use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use contimg_core::queue::{InspectionEntry, Queue, unix_now};
use contimg_uvh5::SubbandMeta;

/// Wall-clock time one file may take in a validator before it is killed and the
/// file rejected. Real subbands take milliseconds; a crafted one that makes libhdf5
/// loop gets this long.
pub const VALIDATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Address-space limit of a validator. Inspection reads only header arrays, which
/// are capped at a few times the file size, so real files need far less.
pub const VALIDATOR_ADDRESS_SPACE_BYTES: u64 = 1 << 30;
/// CPU seconds a validator may spend on one file (SIGXCPU beyond). Above the
/// wall-clock timeout, so it only fires if the timeout somehow did not.
pub const VALIDATOR_CPU_SECONDS_PER_FILE: u64 = 45;
/// At most this many validators, however many conversion slots there are: the
/// worker registers one batch at a time, and two processes already keep both cores
/// of a small host busy with libhdf5 while the worker writes the queue.
pub const MAX_VALIDATORS: usize = 2;

/// Reason recorded for a file that was in a validator when the worker died.
pub const INTERRUPTED_INSPECTION_REASON: &str =
    "the previous worker died while inspecting this file; not inspected again";

/// Marks answer lines on the validator's stdout, so stray output is ignored.
const ANSWER_PREFIX: &str = "contimg-validate:";

/// Debug builds only: a validator aborts (SIGABRT) on a file whose name contains
/// this text, or hangs on one containing [`TEST_HANG_ENV`]'s text, and the worker
/// uses [`TEST_TIMEOUT_ENV`] seconds instead of [`VALIDATION_TIMEOUT`]. Lets tests
/// force a crash or a hang on demand; release builds ignore all three.
pub const TEST_ABORT_ENV: &str = "CONTIMG_TEST_VALIDATOR_ABORT_ON";
pub const TEST_HANG_ENV: &str = "CONTIMG_TEST_VALIDATOR_HANG_ON";
pub const TEST_TIMEOUT_ENV: &str = "CONTIMG_TEST_VALIDATION_TIMEOUT_S";

/// What a validator said about one file.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Answer {
    Valid(SubbandMeta),
    Rejected(String),
}

/// The outcome of inspecting one file.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A UVH5 subband; its metadata as JSON for `subband_meta`.
    Valid { meta_json: String },
    /// Not acceptable, with the reason (also when the file crashed or hung a validator).
    Rejected(String),
    /// Could not be judged now (no validator could start, or the journal could not
    /// be written); the file is left for a later scan.
    Deferred(String),
}

/// A file to inspect, with the size and mtime it had when it was picked up (the
/// journal records them, so a rewritten file is inspected again).
#[derive(Debug, Clone)]
pub struct InspectRequest {
    pub path: PathBuf,
    pub size_bytes: Option<u64>,
    pub mtime: Option<f64>,
}

/// Where files are recorded while a validator has them.
pub trait InspectionJournal: Send + Sync + 'static {
    /// Clears `finished` (answered) and records `starting` (about to be sent), in
    /// one step. Runs on a blocking thread.
    fn step(
        &self,
        finished: Option<&Path>,
        starting: Option<&InspectRequest>,
    ) -> Result<(), String>;
}

/// The queue DB's `inspections` table as the journal.
impl InspectionJournal for Mutex<Queue> {
    fn step(
        &self,
        finished: Option<&Path>,
        starting: Option<&InspectRequest>,
    ) -> Result<(), String> {
        let mut queue = self.lock().map_err(|_| "queue lock poisoned".to_string())?;
        let finished = finished.map(|p| p.to_string_lossy().into_owned());
        let starting = starting.map(|r| InspectionEntry {
            path: r.path.to_string_lossy().into_owned(),
            size_bytes: r.size_bytes,
            mtime: r.mtime,
        });
        queue
            .step_inspections(
                finished.as_deref(),
                starting.as_ref(),
                std::process::id(),
                unix_now(),
            )
            .map_err(|err| err.to_string())
    }
}

/// How validators are started and limited.
#[derive(Debug, Clone)]
pub struct ValidatorSpec {
    /// The `contimg-stream` binary (run as `<program> validate-server`).
    pub program: PathBuf,
    pub timeout: Duration,
    pub address_space_bytes: u64,
}

impl ValidatorSpec {
    /// The running binary with the documented limits (the timeout can be shortened
    /// by [`TEST_TIMEOUT_ENV`] in debug builds). Through `/proc/self/exe`, so the
    /// validators run the worker's own build even after a package upgrade replaced
    /// the file on disk.
    pub fn for_current_exe() -> std::io::Result<Self> {
        let own = Path::new("/proc/self/exe");
        Ok(Self {
            program: if own.exists() {
                own.to_path_buf()
            } else {
                std::env::current_exe()?
            },
            timeout: test_timeout().unwrap_or(VALIDATION_TIMEOUT),
            address_space_bytes: VALIDATOR_ADDRESS_SPACE_BYTES,
        })
    }
}

#[cfg(debug_assertions)]
fn test_timeout() -> Option<Duration> {
    std::env::var(TEST_TIMEOUT_ENV)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(not(debug_assertions))]
fn test_timeout() -> Option<Duration> {
    None
}

/// A running validator process.
struct Validator {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Why an exchange with a validator did not produce an answer.
enum Failure {
    TimedOut,
    Died(String),
    Garbled(String),
}

/// Up to [`MAX_VALIDATORS`] validators, started on first use and replaced after a
/// crash or timeout.
pub struct ValidatorPool {
    spec: ValidatorSpec,
    slots: Vec<Option<Validator>>,
}

impl ValidatorPool {
    /// `size` is clamped to 1..=[`MAX_VALIDATORS`].
    pub fn new(spec: ValidatorSpec, size: usize) -> Self {
        let size = size.clamp(1, MAX_VALIDATORS);
        Self {
            spec,
            slots: (0..size).map(|_| None).collect(),
        }
    }

    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// PIDs of the validators running now.
    pub fn pids(&self) -> Vec<u32> {
        self.slots
            .iter()
            .flatten()
            .filter_map(|v| v.child.id())
            .collect()
    }

    /// Inspects every request, spread over the validators; verdicts in request
    /// order. Each file is journalled while a validator has it.
    pub async fn inspect_all(
        &mut self,
        requests: &[InspectRequest],
        journal: Arc<dyn InspectionJournal>,
    ) -> Vec<Verdict> {
        let shared: Arc<[InspectRequest]> = requests.into();
        let next = Arc::new(AtomicUsize::new(0));
        // Each lane is a task of its own on the runtime's worker threads (which
        // live as long as the runtime, so PDEATHSIG ties the validators to the
        // worker process), not a future polled by the caller: an answer then wakes
        // the lane directly instead of the caller's thread too.
        let lanes: Vec<_> = self
            .slots
            .iter_mut()
            .map(|slot| {
                let mut validator = slot.take();
                let spec = self.spec.clone();
                let shared = Arc::clone(&shared);
                let next = Arc::clone(&next);
                let journal = Arc::clone(&journal);
                tokio::spawn(async move {
                    let done = lane(&spec, &mut validator, &shared, &next, journal).await;
                    (validator, done)
                })
            })
            .collect();
        let mut verdicts: Vec<Option<Verdict>> = vec![None; requests.len()];
        for (slot, lane) in self.slots.iter_mut().zip(lanes) {
            match lane.await {
                Ok((validator, done)) => {
                    *slot = validator;
                    for (index, verdict) in done {
                        verdicts[index] = Some(verdict);
                    }
                }
                // Its validator was dropped (and killed); its files stay undecided.
                Err(err) => tracing::error!("validator lane failed: {err}"),
            }
        }
        verdicts
            .into_iter()
            .map(|v| v.unwrap_or_else(|| Verdict::Deferred("not inspected".into())))
            .collect()
    }
}

/// One validator working through the shared list until it is empty.
async fn lane(
    spec: &ValidatorSpec,
    slot: &mut Option<Validator>,
    requests: &[InspectRequest],
    next: &AtomicUsize,
    journal: Arc<dyn InspectionJournal>,
) -> Vec<(usize, Verdict)> {
    let mut done = Vec::new();
    let mut finished: Option<PathBuf> = None;
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let request = requests.get(index).cloned();
        let journalled = journal_step(&journal, finished.take(), request.as_ref());
        let Some(request) = request else {
            if let Err(err) = journalled {
                tracing::error!("cannot clear the inspection journal: {err}");
            }
            break;
        };
        let verdict = match journalled {
            Ok(()) => {
                let verdict = inspect_one(spec, slot, &request.path).await;
                finished = Some(request.path.clone());
                verdict
            }
            Err(err) => Verdict::Deferred(format!("cannot journal the inspection: {err}")),
        };
        done.push((index, verdict));
    }
    done
}

/// One short SQLite transaction, run in place: a hop to the blocking pool would
/// put two more thread wake-ups on every file's path. On a multi-threaded runtime
/// the thread's other tasks move elsewhere meanwhile.
fn journal_step(
    journal: &Arc<dyn InspectionJournal>,
    finished: Option<PathBuf>,
    starting: Option<&InspectRequest>,
) -> Result<(), String> {
    if finished.is_none() && starting.is_none() {
        return Ok(());
    }
    let step = || journal.step(finished.as_deref(), starting);
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(step),
        _ => step(),
    }
}

/// Inspects one file, replacing the validator if it dies or hangs. A validator
/// that dies gets one more try on a fresh process, so an unrelated kill (the OOM
/// killer, an operator) does not cost a good file; a second death rejects it.
async fn inspect_one(spec: &ValidatorSpec, slot: &mut Option<Validator>, path: &Path) -> Verdict {
    let mut last_death = String::new();
    for attempt in 0..2 {
        let validator = match ensure_running(spec, slot) {
            Ok(validator) => validator,
            Err(err) => return Verdict::Deferred(format!("cannot start a validator: {err}")),
        };
        let exchanged = tokio::time::timeout(spec.timeout, exchange(validator, path)).await;
        let failure = match exchanged {
            Ok(Ok(Answer::Valid(meta))) => {
                return match serde_json::to_string(&meta) {
                    Ok(meta_json) => Verdict::Valid { meta_json },
                    Err(err) => Verdict::Rejected(format!("unusable metadata: {err}")),
                };
            }
            Ok(Ok(Answer::Rejected(reason))) => return Verdict::Rejected(reason),
            Ok(Err(failure)) => failure,
            Err(_) => Failure::TimedOut,
        };
        let Some(mut dead) = slot.take() else {
            continue;
        };
        match failure {
            Failure::TimedOut => {
                kill(&mut dead).await;
                return Verdict::Rejected(format!(
                    "validation timed out after {} s; the validator was killed",
                    format_seconds(spec.timeout)
                ));
            }
            Failure::Garbled(detail) => {
                kill(&mut dead).await;
                return Verdict::Rejected(format!("the validator gave no usable answer: {detail}"));
            }
            Failure::Died(detail) => {
                last_death = describe_exit(&mut dead).await;
                tracing::warn!(
                    path = %path.display(),
                    attempt = attempt + 1,
                    "{last_death} ({detail})"
                );
            }
        }
    }
    Verdict::Rejected(last_death)
}

fn format_seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{secs:.0}")
    } else {
        format!("{secs:.1}")
    }
}

/// The validator in `slot`, started if there is none or it has exited.
fn ensure_running<'a>(
    spec: &ValidatorSpec,
    slot: &'a mut Option<Validator>,
) -> std::io::Result<&'a mut Validator> {
    if let Some(validator) = slot.as_mut()
        && matches!(validator.child.try_wait(), Ok(Some(_)))
    {
        *slot = None;
    }
    if slot.is_none() {
        *slot = Some(spawn(spec)?);
    }
    slot.as_mut()
        .ok_or_else(|| std::io::Error::other("validator slot empty"))
}

/// Starts `contimg-stream validate-server` with its limits applied before exec.
fn spawn(spec: &ValidatorSpec) -> std::io::Result<Validator> {
    let mut command = Command::new(&spec.program);
    command
        .arg0("contimg-stream")
        .arg("validate-server")
        // Filters come only from the library itself, never from the environment.
        .env_remove("HDF5_PLUGIN_PATH")
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    contimg_core::process::inherit_only_stdio(command.as_std_mut());
    let address_space = spec.address_space_bytes;
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: prctl, getppid, getrlimit and
    // setrlimit are plain system calls (nix's wrappers allocate nothing), and
    // they change only the child's own state. It captures two integers.
    unsafe {
        command.pre_exec(move || {
            prctl::set_pdeathsig(Signal::SIGKILL)?;
            prctl::set_no_new_privs()?;
            // The worker may have died before PDEATHSIG was armed.
            if nix::unistd::getppid().as_raw() as u32 != parent {
                return Err(std::io::Error::other("the worker exited"));
            }
            setrlimit(Resource::RLIMIT_AS, address_space, address_space)?;
            setrlimit(Resource::RLIMIT_CORE, 0, 0)?;
            let (_, hard_cpu) = getrlimit(Resource::RLIMIT_CPU)?;
            setrlimit(
                Resource::RLIMIT_CPU,
                VALIDATOR_CPU_SECONDS_PER_FILE,
                hard_cpu,
            )?;
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("validator has no stdin"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("validator has no stdout"))?;
    tracing::debug!(pid = child.id(), "validator started");
    Ok(Validator {
        child,
        stdin,
        stdout: BufReader::new(stdout),
    })
}

/// Sends one request and reads its answer.
async fn exchange(validator: &mut Validator, path: &Path) -> Result<Answer, Failure> {
    let mut request = encode_path(path);
    request.push('\n');
    if let Err(err) = validator.stdin.write_all(request.as_bytes()).await {
        return Err(Failure::Died(err.to_string()));
    }
    if let Err(err) = validator.stdin.flush().await {
        return Err(Failure::Died(err.to_string()));
    }
    let mut line = String::new();
    loop {
        line.clear();
        match validator.stdout.read_line(&mut line).await {
            Ok(0) => return Err(Failure::Died("end of output".into())),
            Ok(_) => {}
            Err(err) => return Err(Failure::Garbled(err.to_string())),
        }
        if let Some(json) = line.trim_end().strip_prefix(ANSWER_PREFIX) {
            return serde_json::from_str(json).map_err(|err| Failure::Garbled(err.to_string()));
        }
    }
}

async fn kill(validator: &mut Validator) {
    let _ = validator.child.start_kill();
    let _ = validator.child.wait().await;
}

/// "validator killed by SIGSEGV while inspecting", or its exit status.
async fn describe_exit(validator: &mut Validator) -> String {
    use std::os::unix::process::ExitStatusExt;
    let status = match tokio::time::timeout(Duration::from_secs(5), validator.child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(err)) => return format!("validator lost while inspecting ({err})"),
        Err(_) => {
            kill(validator).await;
            return "validator stopped answering while inspecting".to_string();
        }
    };
    match (status.signal(), status.code()) {
        (Some(signal), _) => {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {signal}"));
            format!("validator killed by {name} while inspecting")
        }
        (None, Some(code)) => format!("validator exited with status {code} while inspecting"),
        (None, None) => "validator ended while inspecting".to_string(),
    }
}

/// Paths travel as hex so any byte (newlines included) survives the line protocol.
fn encode_path(path: &Path) -> String {
    use std::fmt::Write as _;
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

fn decode_path(text: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect();
    Some(PathBuf::from(std::ffi::OsString::from_vec(bytes?)))
}

/// Why a validator process stops before its stdin closes.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reading a request: {0}")]
    ReadRequest(#[source] std::io::Error),
    #[error("encoding an answer: {0}")]
    EncodeAnswer(#[source] serde_json::Error),
    /// The worker closed its end (or died): the answer has nowhere to go.
    #[error("writing an answer: {0}")]
    WriteAnswer(#[source] std::io::Error),
}

/// `contimg-stream validate-server`: answer one line per requested path until
/// stdin closes. The child side of [`ValidatorPool`].
pub fn serve() -> Result<(), ServeError> {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    let mut line = String::new();
    loop {
        line.clear();
        let read = stdin
            .lock()
            .read_line(&mut line)
            .map_err(ServeError::ReadRequest)?;
        if read == 0 {
            return Ok(());
        }
        let answer = match decode_path(&line) {
            Some(path) => {
                renew_cpu_budget();
                inspect_guarded(&path)
            }
            None => Answer::Rejected("malformed validation request".into()),
        };
        let json = serde_json::to_string(&answer).map_err(ServeError::EncodeAnswer)?;
        writeln!(stdout, "{ANSWER_PREFIX}{json}")
            .and_then(|()| stdout.flush())
            .map_err(ServeError::WriteAnswer)?;
    }
}

fn inspect_guarded(path: &Path) -> Answer {
    test_fault(path);
    match std::panic::catch_unwind(|| contimg_uvh5::inspect(path)) {
        Ok(Ok(meta)) => Answer::Valid(meta),
        Ok(Err(err)) => Answer::Rejected(err.to_string()),
        Err(_) => Answer::Rejected("the validator panicked while inspecting".into()),
    }
}

/// The CPU limit counts the process's whole life: move it on before each file so
/// every file gets the same budget.
fn renew_cpu_budget() {
    let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) else {
        return;
    };
    let used = (usage.user_time().tv_sec() + usage.system_time().tv_sec()).max(0) as u64 + 1;
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_CPU) {
        let soft = used
            .saturating_add(VALIDATOR_CPU_SECONDS_PER_FILE)
            .min(hard);
        let _ = setrlimit(Resource::RLIMIT_CPU, soft, hard);
    }
}

#[cfg(debug_assertions)]
fn test_fault(path: &Path) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let matches = |var: &str| {
        std::env::var(var)
            .ok()
            .filter(|pattern| !pattern.is_empty())
            .is_some_and(|pattern| name.contains(&pattern))
    };
    if matches(TEST_ABORT_ENV) {
        std::process::abort();
    }
    if matches(TEST_HANG_ENV) {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

#[cfg(not(debug_assertions))]
fn test_fault(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_survive_the_line_protocol() {
        use std::os::unix::ffi::OsStrExt;
        let odd = Path::new(std::ffi::OsStr::from_bytes(b"/in/a\nb\xff_sb00.hdf5"));
        assert_eq!(decode_path(&encode_path(odd)).as_deref(), Some(odd));
        assert_eq!(decode_path("abc"), None);
        assert_eq!(decode_path("zz"), None);
    }
}
