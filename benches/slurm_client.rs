//! Slurm client benchmarks (issue [SCALE]); run with `cargo bench --bench slurm_client`.
//! Prints medians; asserts nothing about time.
//!
//! 1. Parsing squeue's answer for 1,000 jobs: the `-O` columns against the 22.05
//!    `--json` document (synthetic, built from output captured on the test cluster).
//! 2. On a real cluster (ops/testenv/slurm.sh; needs root, slurm-wlm and munge, else
//!    skipped with a message): cluster up/down, `SlurmClient::submit` latency, and
//!    one `query` of 1,000 jobs in flight in each format: wall time, this process's
//!    CPU time (spawning, reading, parsing: the worker's cost per poll) and squeue's.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use contimg::worker::slurm::parse;
use contimg::worker::slurm::{JobId, JobSpec, QueryFormat, SlurmClient};
use nix::sys::resource::{UsageWho, getrusage};

const JOBS: usize = 1000;
const HARNESS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ops/testenv/slurm.sh");
const CAPTURED_JSON: &str = include_str!("../src/worker/slurm/testdata/squeue-early.json");

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn ms(seconds: f64) -> String {
    format!("{:.2} ms", seconds * 1e3)
}

fn columns_output(jobs: usize) -> String {
    (1..=jobs)
        .map(|id| format!("{id}|PENDING||BeginTime|0|contimg-g{id}-a1|\n"))
        .collect()
}

fn json_output(jobs: usize) -> String {
    let mut document: serde_json::Value =
        serde_json::from_str(CAPTURED_JSON).expect("captured json");
    let template = document["jobs"][6].clone(); // a pending job
    let list: Vec<serde_json::Value> = (1..=jobs)
        .map(|id| {
            let mut job = template.clone();
            job["job_id"] = id.into();
            job["name"] = format!("contimg-g{id}-a1").into();
            job
        })
        .collect();
    document["jobs"] = list.into();
    serde_json::to_string_pretty(&document).expect("json")
}

fn time_parse(label: &str, text: &str, parse: impl Fn(&str) -> usize) {
    let mut samples: Vec<f64> = (0..50)
        .map(|_| {
            let started = Instant::now();
            assert_eq!(parse(text), JOBS);
            started.elapsed().as_secs_f64()
        })
        .collect();
    println!(
        "parse {label} ({JOBS} jobs, {} kB): median {}",
        text.len() / 1000,
        ms(median(&mut samples))
    );
}

/// (user + system CPU seconds of this process, of its waited-for children).
fn cpu() -> (f64, f64) {
    let seconds = |who| {
        let usage = getrusage(who).expect("getrusage");
        let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        tv(usage.user_time()) + tv(usage.system_time())
    };
    (
        seconds(UsageWho::RUSAGE_SELF),
        seconds(UsageWho::RUSAGE_CHILDREN),
    )
}

fn harness(args: &[&str]) -> bool {
    Command::new("bash")
        .arg(HARNESS)
        .args(args)
        .output()
        .map(|out| {
            if !out.status.success() {
                eprintln!(
                    "{HARNESS} {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            out.status.success()
        })
        .unwrap_or(false)
}

fn on_cluster() {
    let installed = ["slurmctld", "slurmd", "munged", "sbatch"]
        .iter()
        .all(|program| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .any(|dir| dir.join(program).is_file())
        });
    if !installed {
        println!("cluster part SKIPPED: slurm-wlm/munge not installed");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("slurmtest.")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let dir_arg = dir.path().to_str().expect("utf-8 temp dir");
    let started = Instant::now();
    if !harness(&["up", dir_arg, "4"]) {
        harness(&["down", dir_arg]);
        return;
    }
    println!(
        "cluster up (4 nodes): {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let conf = dir.path().join("etc/slurm.conf");
    let client = SlurmClient::new(
        vec![("SLURM_CONF".into(), conf.into_os_string())],
        Duration::from_secs(60),
    );
    let shared = dir.path().join("jobs");
    let spec = |k: usize| JobSpec {
        name: format!("contimg-bench-{k}"),
        comment: "bench".into(),
        // Held: all of them stay in flight while we poll.
        extra_args: vec!["--begin=now+3600".into()],
        workdir: shared.clone(),
        stdout_path: Path::new("/dev/null").to_path_buf(),
        script: "#!/bin/sh\ntrue\n".into(),
        ..JobSpec::default()
    };
    let mut submit_times = Vec::with_capacity(JOBS);
    let mut ids: Vec<JobId> = Vec::with_capacity(JOBS);
    for k in 0..JOBS {
        let started = Instant::now();
        ids.push(client.submit(&spec(k)).expect("submit"));
        submit_times.push(started.elapsed().as_secs_f64());
    }
    println!(
        "SlurmClient::submit: median {} over {JOBS}",
        ms(median(&mut submit_times))
    );
    for format in [QueryFormat::Columns, QueryFormat::Json] {
        let client = client.clone().with_format(format);
        let (mut wall, mut own, mut squeue) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..20 {
            let (self_before, children_before) = cpu();
            let started = Instant::now();
            let answer = client.query(&ids).expect("query");
            wall.push(started.elapsed().as_secs_f64());
            let (self_after, children_after) = cpu();
            own.push(self_after - self_before);
            squeue.push(children_after - children_before);
            assert_eq!(answer.len(), JOBS);
        }
        println!(
            "SlurmClient::query {JOBS} jobs ({format:?}): wall median {}, worker CPU median {}, squeue CPU median {}",
            ms(median(&mut wall)),
            ms(median(&mut own)),
            ms(median(&mut squeue))
        );
    }
    let started = Instant::now();
    harness(&["down", dir_arg]);
    println!(
        "cluster down ({JOBS} held jobs cancelled): {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    let columns = columns_output(JOBS);
    let json = json_output(JOBS);
    time_parse("columns", &columns, |text| {
        parse::squeue_columns(text).expect("columns").len()
    });
    time_parse("json", &json, |text| {
        parse::squeue_json(text).expect("json").len()
    });
    // `cargo test --all-targets` runs this in test mode (no `--bench`); the
    // cluster part costs a minute and the slurm_client tests already cover the cluster.
    if std::env::args().any(|a| a == "--bench") {
        on_cluster();
    }
}
