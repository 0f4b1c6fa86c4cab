//! Records of running converter process groups (`<state_dir>/run/converters/`),
//! so that a converter a killed worker left behind is found and killed by the
//! next worker, or by the process backend before it starts one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Grace period between SIGTERM and SIGKILL for a converter being stopped, and
/// how long a killed process group gets to disappear.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// Where running conversions are recorded (`<state_dir>/run/converters/`); set
/// once the worker took over the state dir, unset in every other process.
static RECORDING: std::sync::Mutex<Option<Recording>> = std::sync::Mutex::new(None);

#[derive(Debug, Clone)]
struct Recording {
    dir: PathBuf,
    queue_db: PathBuf,
}

/// The record directory of a state dir.
pub fn conversion_record_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("run").join("converters")
}

/// What is recorded of one running converter: enough to find its process group
/// after the worker was killed, and to be sure it is still that group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversionRecord {
    /// The converter's PID, which is also its process group id.
    pub pgid: u32,
    /// `/proc/PID/stat` field 22 of the converter when it started.
    pub start_ticks: u64,
    /// `/proc/sys/kernel/random/boot_id`: start ticks count from boot.
    pub boot_id: String,
    pub group_id: String,
    /// The queue DB of the worker that ran it: only a worker on the same queue
    /// (which holds its lock) may take its records over.
    pub queue_db: PathBuf,
}

/// A converter process group killed because nothing owned it any more.
#[derive(Debug, Clone, PartialEq)]
pub struct KilledStraggler {
    pub record: ConversionRecord,
    pub pids: Vec<u32>,
}

/// Called by the worker at start-up, after it holds the queue lock and before
/// recovery: kills (SIGKILL to the group) every converter process group the
/// previous run recorded and did not remove — a killed worker's converters and
/// whatever they forked, which `PR_SET_PDEATHSIG` does not reach — then records
/// this run's conversions in the same place.
pub fn take_over_conversion_records(state_dir: &Path, queue_db: &Path) -> Vec<KilledStraggler> {
    let killed = kill_stragglers(state_dir, queue_db);
    for straggler in &killed {
        tracing::warn!(
            group_id = %straggler.record.group_id,
            pgid = straggler.record.pgid,
            pids = ?straggler.pids,
            "killed converter processes left by the previous run"
        );
    }
    if let Ok(mut recording) = RECORDING.lock() {
        *recording = Some(Recording {
            dir: conversion_record_dir(state_dir),
            queue_db: queue_db.to_path_buf(),
        });
    }
    killed
}

/// Kills the converter process groups recorded under `state_dir` by a worker on
/// `queue_db` that are still the very groups recorded, and removes those
/// records (records of another queue DB are left alone). A group is left alone
/// when its leader is alive with another start time (the PID was reused), when
/// a member started before the recorded converter, or when the record is from
/// another boot. Only while no worker uses `queue_db` (the caller holds its lock).
pub fn kill_stragglers(state_dir: &Path, queue_db: &Path) -> Vec<KilledStraggler> {
    let dir = conversion_record_dir(state_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let procfs = crate::metrics::procfs::ProcFs::default();
    let boot_id = current_boot_id();
    let own_group = nix::unistd::getpgrp().as_raw() as u32;
    let mut killed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let record = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<ConversionRecord>(&bytes).ok());
        if record.as_ref().is_some_and(|r| r.queue_db != queue_db) {
            continue;
        }
        if let Some(record) = record
            && boot_id.as_deref() == Some(record.boot_id.as_str())
            && record.pgid != own_group
            && record.pgid > 1
        {
            let pids = kill_group_if_same(&procfs, &record);
            if !pids.is_empty() {
                killed.push(KilledStraggler { record, pids });
            }
        }
        if let Err(err) = std::fs::remove_file(&path) {
            tracing::warn!("cannot remove converter record {}: {err}", path.display());
        }
    }
    killed
}

/// SIGKILLs `record`'s process group if it is still the recorded one, waits
/// (bounded) for its members to be gone, and returns the PIDs it killed.
fn kill_group_if_same(
    procfs: &crate::metrics::procfs::ProcFs,
    record: &ConversionRecord,
) -> Vec<u32> {
    use nix::sys::signal::{Signal, killpg};
    if let Some(leader) = procfs.stat(record.pgid)
        && leader.start_ticks != record.start_ticks
    {
        return Vec::new();
    }
    let members = procfs.group_members(record.pgid);
    // Every process of the converter's group descends from the converter, so
    // none can be older than it; an older member means another group.
    if members.is_empty() || members.iter().any(|m| m.start_ticks < record.start_ticks) {
        return Vec::new();
    }
    let _ = killpg(
        nix::unistd::Pid::from_raw(record.pgid as i32),
        Signal::SIGKILL,
    );
    let deadline = Instant::now() + KILL_GRACE;
    while !procfs.group_members(record.pgid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    members.into_iter().map(|m| m.pid).collect()
}

fn current_boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_string())
}

/// One running converter's process group. In a worker it is recorded on disk
/// while it runs; when dropped (the conversion ended, or its task was aborted)
/// whatever is left in the group is killed and the record removed.
pub struct RunningConversion {
    record: ConversionRecord,
    path: Option<PathBuf>,
}

impl RunningConversion {
    /// `None` if the converter is already gone. Writes the record atomically when
    /// this process is a worker; a record that cannot be written is logged (that
    /// conversion is then not protected against a crash of the worker).
    pub fn start(pid: u32, group_id: &str) -> Option<Self> {
        let procfs = crate::metrics::procfs::ProcFs::default();
        let recording = RECORDING.lock().ok().and_then(|r| r.clone());
        let record = ConversionRecord {
            pgid: pid,
            start_ticks: procfs.stat(pid)?.start_ticks,
            boot_id: current_boot_id().unwrap_or_default(),
            group_id: group_id.to_string(),
            queue_db: recording
                .as_ref()
                .map(|r| r.queue_db.clone())
                .unwrap_or_default(),
        };
        let Some(recording) = recording else {
            return Some(Self { record, path: None });
        };
        let path = recording.dir.join(format!("{pid}.json"));
        let written = serde_json::to_vec(&record)
            .map_err(|err| err.to_string())
            .and_then(|json| {
                crate::fsutil::atomic_write(&path, &json).map_err(|err| err.to_string())
            });
        if let Err(err) = written {
            tracing::warn!(group_id = %group_id, "cannot record the converter's process group: {err}");
            return Some(Self { record, path: None });
        }
        Some(Self {
            record,
            path: Some(path),
        })
    }

    pub fn kill_leftovers(&self) {
        let procfs = crate::metrics::procfs::ProcFs::default();
        let leftovers = kill_group_if_same(&procfs, &self.record);
        if !leftovers.is_empty() {
            tracing::warn!(
                group_id = %self.record.group_id,
                pids = ?leftovers,
                "killed processes the converter left running"
            );
        }
    }
}

impl Drop for RunningConversion {
    fn drop(&mut self) {
        self.kill_leftovers();
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}
