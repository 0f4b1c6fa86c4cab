//! Slurm executor benchmarks (issue [SCALE]): `cargo bench --bench slurm_executor`.
//! Prints medians and totals; asserts nothing about time. Needs root, slurm-wlm and
//! munge (ops/testenv/slurm.sh starts a 4-node cluster on this host).
//!
//! 1. Dispatch overhead: a group's time from `pending` (its last file renamed into
//!    the input dir) to `completed` with a trivial converter (`true`), the local
//!    executor against the Slurm executor (poll 1 s and the default 5 s), the
//!    three workers running side by side and the groups interleaved, one at a time.
//! 2. 1,000 jobs in flight (4 run, 996 wait in Slurm's queue): the worker's CPU
//!    time per poll (its own, and its squeue children's) and the number of squeue
//!    calls, counted by a wrapper on PATH: one per poll, not one per job. Also the
//!    submission rate of those 1,000 sbatch calls.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::slurm::SlurmCluster;
use common::worker::{WorkerEnv, WorkerProcess, wait_until};
use contimg::queue::{GroupState, QueueReader, group_id_for, unix_now};

const GROUPS: u32 = 15;
const JOBS: u32 = 1000;

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn group_ts(index: u32) -> f64 {
    1_760_349_600.0 + f64::from(index) * 120.0
}

fn config(executor: &str, poll: f64, max_jobs: u32, argv: &str) -> String {
    format!(
        "expected_subbands = 1\nmax_workers = 2\nexecutor = {executor:?}\nlog_level = \"INFO\"\n\
         [slurm]\npoll_interval_s = {poll}\nmax_jobs = {max_jobs}\n\
         [converter]\nkind = \"command\"\nargv = {argv}\n"
    )
}

fn completed_at(env: &WorkerEnv, group_id: &str) -> Option<f64> {
    let reader = QueueReader::open(&env.queue_db()).ok()?;
    let group = reader.group(group_id).ok()??;
    (group.summary.state == GroupState::Completed)
        .then_some(group.summary.completed_at)
        .flatten()
}

/// (user + system seconds of `pid`, of its waited-for children), from /proc.
fn cpu_of(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<f64> = stat
        .rsplit(") ")
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    // After "pid (comm) ": state is field 0, utime 11, stime 12, cutime 13, cstime 14.
    let at = |i: usize| fields.get(i).copied().unwrap_or(0.0) / ticks;
    (at(11) + at(12), at(13) + at(14))
}

fn dispatch_overhead(cluster: &SlurmCluster) {
    let conf = cluster.conf().to_string_lossy().into_owned();
    let trivial = "[\"true\"]";
    let runs: Vec<(&str, WorkerEnv, f64)> = vec![
        ("local", WorkerEnv::new(), 0.0),
        ("slurm, poll 1 s", WorkerEnv::new(), 1.0),
        ("slurm, poll 5 s (default)", WorkerEnv::new(), 5.0),
    ];
    let mut workers: Vec<WorkerProcess> = Vec::new();
    for (name, env, poll) in &runs {
        let executor = if name.starts_with("local") {
            "local"
        } else {
            "slurm"
        };
        env.write_config(&config(executor, poll.max(1.0), 16, trivial));
        let worker = env.spawn_with_env(&[("SLURM_CONF", conf.as_str())]);
        assert!(wait_until(Duration::from_secs(20), || worker
            .log()
            .contains("ready")));
        workers.push(worker);
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); runs.len()];
    for index in 0..GROUPS {
        for (run, (name, env, poll)) in runs.iter().enumerate() {
            // A drop at a spread-out phase of the worker's poll tick: without it
            // the interleaved drops lock onto the 5 s tick and bias the median.
            let phase = f64::from((index * 7 + run as u32 * 3) % 10) / 10.0;
            std::thread::sleep(Duration::from_secs_f64(phase * poll));
            let ts = group_ts(index);
            let group_id = group_id_for(ts);
            let dropped = unix_now();
            env.drop_subband(ts, 0, b"x");
            let mut done = None;
            let finished = wait_until(Duration::from_secs(60), || {
                done = completed_at(env, &group_id);
                done.is_some()
            });
            assert!(finished, "{name}: {group_id} did not complete");
            samples[run].push(done.unwrap_or(dropped) - dropped);
        }
    }
    println!(
        "\n## Dispatch overhead, pending -> completed, trivial converter ({GROUPS} groups each, interleaved)\n"
    );
    println!("| executor | median | min | max |");
    println!("|---|---|---|---|");
    let mut medians = Vec::new();
    for ((name, _, _), times) in runs.iter().zip(samples.iter_mut()) {
        let m = median(times);
        medians.push(m);
        println!(
            "| {name} | {:.3} s | {:.3} s | {:.3} s |",
            m,
            times.first().copied().unwrap_or(0.0),
            times.last().copied().unwrap_or(0.0)
        );
    }
    for (index, (name, _, _)) in runs.iter().enumerate().skip(1) {
        println!(
            "ratio {name} / local: {:.0}x ({:.3} s more)",
            medians[index] / medians[0],
            medians[index] - medians[0]
        );
    }
    drop(workers);
}

/// A `squeue` on PATH that counts its calls in `dir/squeue.calls`, then runs the real one.
fn squeue_counter(dir: &Path) -> PathBuf {
    let wrapper_dir = dir.join("bin");
    std::fs::create_dir_all(&wrapper_dir).unwrap();
    let real = "/usr/bin/squeue";
    let script = format!(
        "#!/bin/sh\necho x >> {:?}\nexec {real} \"$@\"\n",
        dir.join("squeue.calls")
    );
    let path = wrapper_dir.join("squeue");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper_dir
}

fn squeue_calls(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("squeue.calls"))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

fn jobs_in_flight(cluster: &SlurmCluster) {
    let env = WorkerEnv::new();
    let poll = 1.0;
    env.write_config(&config("slurm", poll, JOBS, "[\"sleep\", \"3600\"]"));
    let wrappers = squeue_counter(env.root.path());
    let path = format!(
        "{}:{}",
        wrappers.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let conf = cluster.conf().to_string_lossy().into_owned();
    let worker = env.spawn_with_env(&[("SLURM_CONF", conf.as_str()), ("PATH", path.as_str())]);
    assert!(wait_until(Duration::from_secs(20), || worker
        .log()
        .contains("ready")));
    let started = Instant::now();
    for index in 0..JOBS {
        env.drop_subband(group_ts(index), 0, b"x");
    }
    let submitted = wait_until(Duration::from_secs(900), || {
        cluster.submissions() >= JOBS as usize
    });
    assert!(submitted, "only {} submitted", cluster.submissions());
    let submit_s = started.elapsed().as_secs_f64();
    // Every job's id recorded, and a few polls for things to settle.
    assert!(wait_until(Duration::from_secs(120), || {
        env.count(GroupState::InProgress) == u64::from(JOBS)
    }));
    std::thread::sleep(Duration::from_secs(5));
    let window = Duration::from_secs(30);
    let (self_before, children_before) = cpu_of(worker.pid());
    let calls_before = squeue_calls(env.root.path());
    std::thread::sleep(window);
    let (self_after, children_after) = cpu_of(worker.pid());
    let calls = squeue_calls(env.root.path()) - calls_before;
    let polls = window.as_secs_f64() / poll;
    println!(
        "\n## {JOBS} jobs in flight, poll every {poll} s, {:.0} s window\n",
        window.as_secs_f64()
    );
    println!(
        "- submission of {JOBS} groups (file registration to the last sbatch accepted): {submit_s:.1} s ({:.1} sbatch/s)",
        f64::from(JOBS) / submit_s
    );
    println!(
        "- squeue calls in the window: {calls} (~{polls:.0} polls) -> {:.2} per poll",
        calls as f64 / polls
    );
    println!(
        "- worker CPU per poll: {:.1} ms (its own), {:.1} ms (its squeue children)",
        (self_after - self_before) / polls * 1e3,
        (children_after - children_before) / polls * 1e3
    );
    let _ = worker.stop();
}

fn main() {
    // `cargo test --all-targets` runs this in test mode (no `--bench`); only
    // measure under `cargo bench` (the slurm_executor tests cover the same paths).
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Some(cluster) = SlurmCluster::start() else {
        return;
    };
    dispatch_overhead(&cluster);
    jobs_in_flight(&cluster);
}
