//! No file can take the worker down: UVH5 inspection runs in validator child
//! processes. Real files from the simulator, real mutations of them (one of which
//! makes libhdf5 1.10 dereference garbage), the real worker binary and queue DB.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::worker::{WorkerEnv, WorkerProcess, stream_bin, wait_until};
use contimg::queue::GroupState;
use contimg::uvh5::simulate::{Profile, SimulateArgs, run};
use rusqlite::{Connection, OpenFlags};

/// 2025-10-13T10:00:00 UTC, the simulator's start below.
const SEED_START: &str = "2025-10-13T10:00:00";
/// The mutation that makes libhdf5 1.10.8 crash with SIGSEGV (a memcpy in
/// `H5T_copy` while `H5Dopen2` reads a damaged datatype message), even within the
/// validators' 1 GiB address-space limit. Found by the seeded search this file
/// also runs: mutation run 3, variant 1657 (bit flips) of the simulator's
/// small-profile sb00 with seed 3.
const SEGV_RUN: u64 = 3;
const SEGV_VARIANT: u64 = 1657;

/// SplitMix64: the same generator as the search that found the crashing input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Variant `index` of mutation run `run`: bit flips, byte overwrites, a
/// truncation or a block duplicated over another place.
fn mutate(original: &[u8], run: u64, index: u64) -> Vec<u8> {
    let mut rng = Rng(run.wrapping_mul(1_000_003).wrapping_add(index));
    let mut bytes = original.to_vec();
    let len = bytes.len();
    match rng.next() % 4 {
        0 => {
            for _ in 0..1 + rng.next() % 8 {
                let pos = rng.below(len);
                bytes[pos] ^= 1 << (rng.next() % 8);
            }
        }
        1 => {
            for _ in 0..1 + rng.next() % 8 {
                let pos = rng.below(len);
                let run_len = 1 + rng.next() % 8;
                for i in 0..run_len as usize {
                    if pos + i < len {
                        bytes[pos + i] = (rng.next() & 0xff) as u8;
                    }
                }
            }
        }
        2 => bytes.truncate(1 + rng.below(len - 1)),
        _ => {
            let block = 1 + rng.below(512);
            let src = rng.below(len - block);
            let dst = rng.below(len - block);
            bytes[dst..dst + block].copy_from_slice(&original[src..src + block]);
        }
    }
    bytes
}

/// The valid subband every mutation starts from (the simulator is deterministic).
fn seed_subband(dir: &Path) -> Vec<u8> {
    let out = dir.join("seed-subband");
    let report = run(&SimulateArgs {
        input_dir: out.clone(),
        groups: 1,
        interval: 0.0,
        jitter: 0.0,
        subbands: 1,
        profile: Profile::Small,
        corrupt_rate: 0.0,
        start: Some(SEED_START.into()),
        seed: 3,
    })
    .expect("simulate the seed subband");
    std::fs::read(&report.groups[0].files[0]).expect("read the seed subband")
}

/// Writes a good group of `subbands` files starting at `start`.
fn good_group(env: &WorkerEnv, start: &str, subbands: u32, seed: u64) {
    run(&SimulateArgs {
        input_dir: env.input_dir.clone(),
        groups: 1,
        interval: 0.0,
        jitter: 2.0,
        subbands,
        profile: Profile::Small,
        corrupt_rate: 0.0,
        start: Some(start.into()),
        seed,
    })
    .expect("simulate a good group");
}

/// Writes a good 2-subband group and waits until it is the one completed group:
/// everything else still flows.
fn good_group_completes(env: &WorkerEnv, worker: &WorkerProcess, start: &str) {
    good_group(env, start, 2, 5);
    assert!(
        wait_until(Duration::from_secs(60), || {
            env.count(GroupState::Completed) == 1
        }),
        "{:?}\n{}",
        env.stats(),
        worker.log()
    );
}

/// Runs one `validate-server` on `path` and returns how it ended.
fn validate_directly(path: &Path) -> std::process::ExitStatus {
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    let mut child = Command::new(stream_bin())
        .arg("validate-server")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start validate-server");
    let hex: String = path
        .as_os_str()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut stdin = child.stdin.take().unwrap();
    let _ = writeln!(stdin, "{hex}");
    drop(stdin);
    child.wait().unwrap()
}

fn config(extra: &str) -> String {
    format!(
        "expected_subbands = 2\nvalidate_uvh5 = true\nmax_workers = 2\n\
         incomplete_timeout_s = 3600.0\n{extra}\n[converter]\nkind = \"manifest\"\n"
    )
}

fn rejected_reason(env: &WorkerEnv, path: &Path) -> Option<String> {
    let db = Connection::open_with_flags(env.queue_db(), OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    db.query_row(
        "SELECT reason FROM rejected_files WHERE path = ?1",
        [path.to_string_lossy()],
        |row| row.get(0),
    )
    .ok()
}

fn wait_ready(worker: &WorkerProcess) {
    assert!(
        wait_until(Duration::from_secs(20), || worker.log().contains("ready")),
        "{}",
        worker.log()
    );
}

/// The children of `pid` (all threads), from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                found.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    found
}

fn alive(pid: u32) -> bool {
    // A zombie is dead for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn a_file_that_crashes_libhdf5_is_rejected_naming_the_signal_and_the_worker_carries_on() {
    let env = WorkerEnv::new();
    let original = seed_subband(env.root.path());
    // The crash is real: a validator on its own dies of it.
    let probe = env.root.path().join("probe.hdf5");
    std::fs::write(&probe, mutate(&original, SEGV_RUN, SEGV_VARIANT)).unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        validate_directly(&probe).signal(),
        Some(libc::SIGSEGV),
        "mutation {SEGV_RUN}/{SEGV_VARIANT} no longer crashes libhdf5; find another with the search"
    );

    env.write_config(&config(""));
    let mut worker = env.spawn();
    wait_ready(&worker);
    let crashing = env.drop_subband(
        1_760_349_600.0 - 86_400.0,
        0,
        &mutate(&original, SEGV_RUN, SEGV_VARIANT),
    );
    let rejected = wait_until(Duration::from_secs(30), || {
        rejected_reason(&env, &crashing).is_some() || worker.exited().is_some()
    });
    assert!(
        rejected && worker.exited().is_none(),
        "worker exited {:?}\n{}",
        worker.exited(),
        worker.log()
    );
    let reason = rejected_reason(&env, &crashing).unwrap();
    assert_eq!(reason, "validator killed by SIGSEGV while inspecting");
    assert!(
        worker
            .log()
            .contains(&crashing.to_string_lossy().to_string()),
        "the log must name the file: {}",
        worker.log()
    );

    // Everything else still flows: a good group arriving afterwards completes.
    good_group_completes(&env, &worker, "2025-10-13T11:00:00");
    assert!(worker.exited().is_none());
    assert_eq!(worker.stop(), Some(0));
}

/// 2025-10-13T10:00:00 UTC as Unix seconds.
const T0: f64 = 1_760_349_600.0;

fn registered(env: &WorkerEnv, path: &Path) -> bool {
    Connection::open_with_flags(env.queue_db(), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|db| {
            db.query_row(
                "SELECT EXISTS(SELECT 1 FROM subband_files WHERE path = ?1)",
                [path.to_string_lossy()],
                |row| row.get(0),
            )
        })
        .unwrap_or(false)
}

fn journalled(env: &WorkerEnv) -> Vec<String> {
    let Ok(db) = Connection::open_with_flags(env.queue_db(), OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let Ok(mut stmt) = db.prepare("SELECT path FROM inspections") else {
        return Vec::new();
    };
    stmt.query_map([], |row| row.get(0))
        .map(|rows| rows.flatten().collect())
        .unwrap_or_default()
}

/// Validator processes among the worker's children.
fn validators_of(pid: u32) -> Vec<u32> {
    children_of(pid)
        .into_iter()
        .filter(|child| {
            std::fs::read(format!("/proc/{child}/cmdline"))
                .map(|cmd| String::from_utf8_lossy(&cmd).contains("validate-server"))
                .unwrap_or(false)
        })
        .collect()
}

/// Debug builds let a test make a validator abort or hang on chosen files (see
/// `worker::validator::TEST_ABORT_ENV`). The files themselves are valid, so
/// anything but the isolation would register them.
#[test]
fn a_validator_that_aborts_or_hangs_costs_only_that_file() {
    let env = WorkerEnv::new();
    let original = seed_subband(env.root.path());
    env.write_config(&config(""));
    let worker = env.spawn_with_env(&[
        ("CONTIMG_TEST_VALIDATOR_ABORT_ON", "T11:00:00"),
        ("CONTIMG_TEST_VALIDATOR_HANG_ON", "T12:00:00"),
        ("CONTIMG_TEST_VALIDATION_TIMEOUT_S", "2"),
    ]);
    wait_ready(&worker);
    let aborting = env.drop_subband(T0 + 3600.0, 0, &original);
    let hanging = env.drop_subband(T0 + 7200.0, 0, &original);
    assert!(
        wait_until(Duration::from_secs(30), || {
            rejected_reason(&env, &aborting).is_some() && rejected_reason(&env, &hanging).is_some()
        }),
        "{}",
        worker.log()
    );
    assert_eq!(
        rejected_reason(&env, &aborting).unwrap(),
        "validator killed by SIGABRT while inspecting"
    );
    assert_eq!(
        rejected_reason(&env, &hanging).unwrap(),
        "validation timed out after 2 s; the validator was killed"
    );
    assert!(!registered(&env, &aborting) && !registered(&env, &hanging));
    assert!(journalled(&env).is_empty(), "{:?}", journalled(&env));
    // The aborting file was tried on a fresh validator once more before rejection.
    let log = worker.log();
    assert_eq!(
        log.matches("validator killed by SIGABRT while inspecting (")
            .count(),
        2,
        "{log}"
    );

    good_group_completes(&env, &worker, "2025-10-13T13:00:00");
    assert!(validators_of(worker.pid()).len() <= 2);
    assert_eq!(worker.stop(), Some(0));
}

#[test]
fn a_worker_killed_while_a_validator_has_a_file_rejects_that_file_at_restart() {
    let env = WorkerEnv::new();
    let original = seed_subband(env.root.path());
    env.write_config(&config(""));
    let worker = env.spawn_with_env(&[("CONTIMG_TEST_VALIDATOR_HANG_ON", "T11:00:00")]);
    wait_ready(&worker);
    let slow = env.drop_subband(T0 + 3600.0, 0, &original);
    let slow_text = slow.to_string_lossy().to_string();
    assert!(
        wait_until(Duration::from_secs(20), || journalled(&env)
            == vec![slow_text.clone()]),
        "{:?}\n{}",
        journalled(&env),
        worker.log()
    );
    // While the validator hangs the worker is busy, not hung: its heartbeat stays
    // fresh (the health threshold is 20 s; the validation timeout 30 s).
    std::thread::sleep(Duration::from_secs(6));
    let heartbeat = env.reader().heartbeat().unwrap().expect("heartbeat");
    let age = contimg::queue::unix_now() - heartbeat.heartbeat_at;
    assert!(age < 5.0, "heartbeat {age:.1} s old during inspection");
    let validators = validators_of(worker.pid());
    assert!(!validators.is_empty(), "{}", worker.log());
    worker.kill9();
    // The validators die with the worker (PR_SET_PDEATHSIG).
    assert!(
        wait_until(Duration::from_secs(5), || validators
            .iter()
            .all(|p| !alive(*p))),
        "validators {validators:?} outlived the worker"
    );

    // Restarted without the hang: if it inspected the file again it would register it.
    let worker = env.spawn();
    wait_ready(&worker);
    assert_eq!(
        rejected_reason(&env, &slow).as_deref(),
        Some(contimg::worker::validator::INTERRUPTED_INSPECTION_REASON)
    );
    assert!(journalled(&env).is_empty());
    let log = worker.log();
    assert!(
        log.contains(&slow_text),
        "the log must name the file: {log}"
    );
    // A poll scan later it is still not inspected again.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!registered(&env, &slow), "{}", worker.log());
    good_group_completes(&env, &worker, "2025-10-13T13:00:00");
    assert_eq!(worker.stop(), Some(0));
}

/// ≥ 2,000 seeded mutations of a valid subband go through a running worker: it
/// never dies, every variant is registered or rejected with a reason, and good
/// groups arriving afterwards complete.
#[test]
fn seeded_mutations_never_take_the_worker_down() {
    const RUN: u64 = 20;
    const VARIANTS: u64 = 2000;
    let env = WorkerEnv::new();
    let original = seed_subband(env.root.path());
    env.write_config(&config(""));
    let mut worker = env.spawn();
    wait_ready(&worker);
    // Each variant is the only subband of its own group (expected 2), so none
    // completes; the known crasher is among them.
    let mut variants: Vec<PathBuf> = (0..VARIANTS)
        .map(|i| env.drop_subband(T0 - 400.0 * (i + 1) as f64, 0, &mutate(&original, RUN, i)))
        .collect();
    variants.push(env.drop_subband(
        T0 - 400.0 * (VARIANTS + 1) as f64,
        0,
        &mutate(&original, SEGV_RUN, SEGV_VARIANT),
    ));
    let settled = wait_until(Duration::from_secs(180), || {
        worker.exited().is_some()
            || variants
                .iter()
                .all(|v| registered(&env, v) || rejected_reason(&env, v).is_some())
    });
    assert!(worker.exited().is_none(), "worker died:\n{}", worker.log());
    let undecided: Vec<_> = variants
        .iter()
        .filter(|v| !registered(&env, v) && rejected_reason(&env, v).is_none())
        .collect();
    assert!(
        settled && undecided.is_empty(),
        "{} variants neither registered nor rejected, e.g. {:?}",
        undecided.len(),
        undecided.first()
    );
    let reasons: Vec<String> = variants
        .iter()
        .filter_map(|v| rejected_reason(&env, v))
        .collect();
    assert!(reasons.iter().all(|r| !r.trim().is_empty()));
    let crashes = reasons
        .iter()
        .filter(|r| r.contains("validator killed by"))
        .count();
    eprintln!(
        "{} variants: {} registered, {} rejected ({crashes} by a validator crash)",
        variants.len(),
        variants.len() - reasons.len(),
        reasons.len()
    );
    assert!(
        crashes >= 1,
        "the known crasher must be among the rejections"
    );
    assert!(journalled(&env).is_empty());

    good_group(&env, "2025-10-13T13:00:00", 2, 5);
    good_group(&env, "2025-10-13T14:00:00", 2, 6);
    let completed = wait_until(Duration::from_secs(120), || {
        env.count(GroupState::Completed) == 2
    });
    let log = worker.log();
    let tail: String = log
        .lines()
        .filter(|l| !l.contains("DEBUG"))
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(completed, "{:?}\n(newest first)\n{tail}", env.stats());
    assert!(worker.exited().is_none());
    assert_eq!(worker.stop(), Some(0));
}
