//! RAII guard around `ops/testenv/slurm.sh`: a real Slurm cluster (munged,
//! slurmctld, N slurmd nodes `n1..nN`) on this host, all under a temp dir, on
//! private loopback ports. `Drop` tears it down (also when the test panics); a
//! watcher started by the script tears it down when the test binary is killed.
//!
//! Needs root and Debian's `slurm-wlm` + `munge`. Without them the cluster is not
//! started: under `CI` the test fails; elsewhere [`SlurmCluster::start`] returns
//! `None` after printing why on stderr (libtest has no "skipped" status, so use
//! [`require_slurm!`] and read the test's output).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const HARNESS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ops/testenv/slurm.sh");

/// What the cluster needs on PATH.
const BINARIES: &[&str] = &[
    "munged",
    "mungekey",
    "slurmctld",
    "slurmd",
    "sbatch",
    "squeue",
    "scontrol",
    "scancel",
    "sinfo",
];

/// A started cluster, or `return` from the test (printing why) when Slurm is not
/// installed and `CI` is unset.
#[macro_export]
macro_rules! require_slurm {
    () => {
        $crate::require_slurm!(4)
    };
    ($nodes:expr) => {
        match $crate::common::slurm::SlurmCluster::start_nodes($nodes) {
            Some(cluster) => cluster,
            None => return,
        }
    };
}

pub struct SlurmCluster {
    dir: tempfile::TempDir,
    nodes: usize,
    squeue_json: bool,
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// The node name and job id of a slurmctld log line that starts a job:
/// `sched: Allocate JobId=7 NodeList=n2 …` (main scheduler) or
/// `sched/backfill: _start_job: Started JobId=7 in debug on n2` (backfill).
pub fn allocation(line: &str) -> Option<(u64, String)> {
    if let Some(rest) = line.split("Allocate JobId=").nth(1) {
        let (id, rest) = rest.split_once(' ')?;
        let nodes = rest.strip_prefix("NodeList=")?.split_whitespace().next()?;
        return Some((id.parse().ok()?, nodes.to_string()));
    }
    let rest = line.split("Started JobId=").nth(1)?;
    let (id, rest) = rest.split_once(' ')?;
    let nodes = rest.rsplit(" on ").next()?.split_whitespace().next()?;
    Some((id.parse().ok()?, nodes.to_string()))
}

impl SlurmCluster {
    /// Four nodes (see [`start_nodes`](Self::start_nodes)).
    pub fn start() -> Option<Self> {
        Self::start_nodes(4)
    }

    /// Runs `slurm.sh up` in a fresh temp dir and returns once every node is idle.
    /// `None` (with a message) when Slurm is missing and `CI` is unset; a panic
    /// when it is missing under `CI`, or when the cluster does not come up.
    pub fn start_nodes(nodes: usize) -> Option<Self> {
        let missing: Vec<&str> = BINARIES
            .iter()
            .copied()
            .filter(|program| !on_path(program))
            .collect();
        if !missing.is_empty() {
            let ci = std::env::var_os("CI").is_some_and(|value| !value.is_empty());
            assert!(
                !ci,
                "CI is set but Slurm is not installed (missing {missing:?}): \
                 apt-get install slurm-wlm munge"
            );
            eprintln!(
                "SKIPPED: this test needs a Slurm cluster, but {missing:?} are not on PATH \
                 (apt-get install slurm-wlm munge; under CI=true this is a failure)"
            );
            return None;
        }
        // Short path: munged's socket lives in it (108-byte limit).
        let dir = tempfile::Builder::new()
            .prefix("slurmtest.")
            .tempdir_in("/tmp")
            .expect("temp dir for the Slurm cluster");
        // Removed by `down` even when this process dies first (the script's owner
        // watcher runs `down` then, and TempDir's Drop never runs).
        std::fs::write(dir.path().join(".remove-on-down"), "").expect("mark the temp dir");
        let output = Command::new("bash")
            .arg(HARNESS)
            .arg("up")
            .arg(dir.path())
            .arg(nodes.to_string())
            .env("CONTIMG_HARNESS_OWNER", std::process::id().to_string())
            .output()
            .unwrap_or_else(|err| panic!("run {HARNESS}: {err}"));
        let cluster = Self {
            dir,
            nodes,
            squeue_json: String::from_utf8_lossy(&output.stdout)
                .contains("SLURMTEST_SQUEUE_JSON='1'"),
        };
        assert!(
            output.status.success(),
            "{HARNESS} up failed (needs root, slurm-wlm, munge):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Some(cluster)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Whether `squeue --json` works on this Slurm (probed by `up`).
    pub fn squeue_json(&self) -> bool {
        self.squeue_json
    }

    /// The slurm.conf every client must read.
    pub fn conf(&self) -> PathBuf {
        self.dir().join("etc/slurm.conf")
    }

    /// The environment Slurm's clients need to reach this cluster.
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        vec![("SLURM_CONF".into(), self.conf().into_os_string())]
    }

    /// A dir every node sees (this host), for job scripts, logs and outputs.
    pub fn shared_dir(&self) -> PathBuf {
        self.dir().join("jobs")
    }

    pub fn controller_log(&self) -> PathBuf {
        self.dir().join("log/slurmctld.log")
    }

    /// A Slurm client command (`squeue`, `scancel`, …) pointed at this cluster.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.envs(self.env());
        command
    }

    fn harness(&self, args: &[&str]) -> Output {
        let output = Command::new("bash")
            .arg(HARNESS)
            .arg(args[0])
            .arg(self.dir())
            .args(&args[1..])
            .output()
            .unwrap_or_else(|err| panic!("run {HARNESS} {args:?}: {err}"));
        assert!(
            output.status.success(),
            "{HARNESS} {args:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Stops slurmctld (SIGTERM; it saves its state). Jobs keep running on the nodes.
    pub fn stop_controller(&self) {
        self.harness(&["ctld-stop"]);
    }

    /// Starts slurmctld again from its saved state and waits until it answers.
    pub fn start_controller(&self) {
        self.harness(&["ctld-start"]);
    }

    /// A node failure: SIGKILL for node `name`'s slurmd, its slurmstepd processes
    /// and the jobs running there. Slurm marks the node DOWN and its jobs
    /// NODE_FAIL after SlurmdTimeout (10 s here).
    pub fn kill_node(&self, name: &str) {
        self.harness(&["node-kill", name]);
    }

    /// Starts node `name`'s slurmd again (ReturnToService=2 makes it usable).
    pub fn start_node(&self, name: &str) {
        self.harness(&["node-start", name]);
    }

    fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.controller_log())
            .map(|text| text.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The job ids slurmctld accepted from sbatch, in order (its own record:
    /// `_slurm_rpc_submit_batch_job: JobId=…`; refused submissions are not counted).
    pub fn submitted_jobs(&self) -> Vec<u64> {
        self.log_lines()
            .iter()
            .filter_map(|line| {
                let rest = line.split("_slurm_rpc_submit_batch_job: JobId=").nth(1)?;
                rest.split_whitespace().next()?.parse().ok()
            })
            .collect()
    }

    /// How many batch jobs slurmctld accepted.
    pub fn submissions(&self) -> usize {
        self.submitted_jobs().len()
    }

    /// (job id, node list) for every job slurmctld started, in order.
    pub fn allocations(&self) -> Vec<(u64, String)> {
        self.log_lines()
            .iter()
            .filter_map(|line| allocation(line))
            .collect()
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(HARNESS)
            .arg("down")
            .arg(self.dir())
            .status();
    }
}
