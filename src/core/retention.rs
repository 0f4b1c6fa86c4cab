//! Retention: the disk never fills because of us. One sweep, run by the worker
//! every `retention_interval_s` and by `contimgctl gc` on demand:
//!
//! - inputs (the subband files) of `completed` groups are deleted, or moved to
//!   `archive_dir`, `retain_input_hours` after they completed; those of `failed`
//!   (and incomplete) groups `retain_failed_days` after they failed;
//! - outputs only when `retain_output_days` is set;
//! - top-level entries of `scratch_dir` and of the worker's staging dir that
//!   belong to no unfinished group (never the Slurm log dir, which by default
//!   is `scratch_dir/slurm-jobs`);
//! - a group's Slurm job logs and exit records, with its inputs (only those of
//!   attempts that have ended);
//! - stray inputs: files in `input_dir` that are no group's member (recorded
//!   duplicates, late, rejected and unrecognised files) `retain_failed_days`
//!   after they were recorded, and unrecognised names never recorded once
//!   unchanged that long. Correlator names not yet registered, dot-files,
//!   `*_incomplete.hdf5` and directories are left to the worker.
//!
//! Safety rules, in this order of importance:
//! - a file is removed only inside the queue DB transaction that checks its
//!   group is still due (final state, past its age) and records the removal; no
//!   group changes state while that transaction is open;
//! - nothing is followed out of our directories: a registered path must be a
//!   plain name directly in `input_dir` (`output_dir` for outputs); a symlink
//!   there is unlinked itself (0 bytes), never its target; anything else is left
//!   and recorded as `skipped` with the reason;
//! - slow work (copies to another filesystem, deleting trees) happens outside
//!   the transaction: copies before it, trees after being renamed aside in it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::config::StreamingConfig;
use crate::fsutil;
use crate::queue::retention::{
    ActiveGroup, DueInputs, DuePage, DueStray, Removal, RemovalTotal, RetentionCutoffs,
    RetentionTx, StrayRecord,
};
use crate::queue::{Queue, QueueError, QueueReader, RemovalAction, RemovalKind};

/// Groups per queue DB transaction: short enough that the worker's own
/// transitions never wait long, long enough to amortise the commit.
const GROUPS_PER_TX: usize = 64;

/// A scratch entry changed this recently is never a leftover (clock slop
/// between a claim and the converter's first write).
const SCRATCH_GRACE_S: f64 = 60.0;

/// The hidden name entries get when renamed aside for deletion; an entry with
/// it is a leftover of an interrupted sweep.
const ASIDE_TAG: &str = "contimg-gc";

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the queue lock is poisoned")]
    Poisoned,
}

/// Where the worker stages a group's inputs on tmpfs. Keyed by the queue DB so
/// several instances sharing one tmpfs never clean up each other's files.
pub fn stage_root(config: &StreamingConfig) -> PathBuf {
    let key = config.queue_db.to_string_lossy();
    let hash = crate::hash::fnv1a64(key.as_bytes());
    config.tmpfs_path.join(format!("contimg-stage-{hash:012x}"))
}

/// A file that could not be removed; the group stays due and the next sweep
/// tries again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemovalFailure {
    pub group_id: Option<String>,
    pub path: String,
    pub kind: RemovalKind,
    pub error: String,
}

/// What a sweep did, or with `dry_run`, would do.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SweepReport {
    pub dry_run: bool,
    /// Deleted and archived files per kind (skips not counted).
    pub totals: BTreeMap<RemovalKind, RemovalTotal>,
    /// Every removal and skip, when the caller asked to keep them.
    pub removals: Vec<Removal>,
    pub failures: Vec<RemovalFailure>,
    /// Groups whose inputs are now all handled.
    pub groups_swept: u64,
    /// Set when the sweep stopped early (the worker is shutting down).
    pub cancelled: bool,
}

impl SweepReport {
    fn add(&mut self, removal: Removal, keep: bool) {
        if removal.action != RemovalAction::Skipped {
            let total = self.totals.entry(removal.kind).or_default();
            total.files += 1;
            total.bytes += removal.bytes;
        }
        if keep {
            self.removals.push(removal);
        }
    }

    pub fn total(&self) -> RemovalTotal {
        self.totals
            .values()
            .fold(RemovalTotal::default(), |sum, t| RemovalTotal {
                files: sum.files + t.files,
                bytes: sum.bytes + t.bytes,
            })
    }
}

/// One registered input judged against the path rules.
#[derive(Debug, Clone, PartialEq)]
enum InputFate {
    /// A regular file (or, `link`, a symlink to unlink itself) at `path`, the
    /// name under the canonical `input_dir`.
    Remove {
        path: PathBuf,
        bytes: u64,
        link: bool,
    },
    /// Already gone.
    Missing,
    /// Left in place.
    Skip(String),
}

/// A registered input path, its fate, and where it was archived to.
type JudgedInput = (String, InputFate, Option<String>);

/// A sweep over one configuration at one moment.
pub struct Sweep<'a> {
    config: &'a StreamingConfig,
    cutoffs: RetentionCutoffs,
    now: f64,
    input_dir: Option<PathBuf>,
    output_dir: Option<PathBuf>,
    archive_dir: Option<PathBuf>,
    /// The Slurm executor's log dir (canonical; its parent's, if it is not
    /// there yet).
    log_dir: Option<PathBuf>,
    /// Canonical parents seen so far (subband paths share very few).
    parents: HashMap<PathBuf, Option<PathBuf>>,
    /// Keep every removal in the report (the CLI); the worker only counts.
    pub keep_removals: bool,
}

impl<'a> Sweep<'a> {
    pub fn new(config: &'a StreamingConfig, now: f64) -> Self {
        Self {
            config,
            cutoffs: RetentionCutoffs::new(
                now,
                config.retain_input_hours,
                config.retain_failed_days,
                config.retain_output_days,
            ),
            now,
            input_dir: std::fs::canonicalize(&config.input_dir).ok(),
            output_dir: std::fs::canonicalize(&config.output_dir).ok(),
            archive_dir: config
                .archive_dir
                .as_ref()
                .and_then(|dir| std::fs::canonicalize(dir).ok()),
            log_dir: canonical_or_parent(&config.slurm.log_dir_for(&config.scratch_dir)),
            parents: HashMap::new(),
            keep_removals: false,
        }
    }

    /// What a real sweep would remove now, reading the DB only.
    pub fn plan(&mut self, reader: &QueueReader) -> Result<SweepReport, RetentionError> {
        let mut report = SweepReport {
            dry_run: true,
            ..SweepReport::default()
        };
        let keep = self.keep_removals;
        for group in reader.retention_due_inputs(&self.cutoffs)? {
            for path in &group.files {
                if let Some(removal) = self.input_removal(&group.group_id, path, None) {
                    report.add(removal, keep);
                }
            }
            for log in reader.finished_job_logs(&group.group_id)? {
                for (removal, _) in self.job_log_removals(&group.group_id, &log) {
                    report.add(removal, keep);
                }
            }
            report.groups_swept += 1;
        }
        let before = self.cutoffs.failed_inputs;
        let members = file_names(reader.active_member_paths()?);
        for stray in reader.retention_due_strays(before)? {
            if !reader.stray_still_due(&stray, before)? {
                continue;
            }
            if let StrayFate::Skip(removal) | StrayFate::Remove(removal, _) =
                self.stray_fate(&stray, &members)
            {
                report.add(removal, keep);
            }
        }
        for (registered, canonical) in self.unrecorded_candidates() {
            let canonical = canonical.to_string_lossy();
            if reader.is_recorded_input(&registered)?
                || (canonical != registered && reader.is_recorded_input(&canonical)?)
            {
                continue;
            }
            if let StrayFate::Skip(removal) | StrayFate::Remove(removal, _) =
                self.stray_fate(&unrecorded(&registered), &members)
            {
                report.add(removal, keep);
            }
        }
        if let Some(before) = self.cutoffs.outputs {
            for due in reader.retention_due_outputs(before)? {
                if let Some(removal) = self.output_removal(&due.group_id, &due.output_path) {
                    report.add(removal, keep);
                }
            }
        }
        let active = reader.active_groups()?;
        for entry in self.scratch_leftovers(&active) {
            let bytes = tree_bytes(&entry);
            report.add(scratch_removal(&entry, bytes), keep);
        }
        Ok(report)
    }

    /// Removes what is due, recording each removal. `queue` is locked one
    /// batch at a time, so the worker's own calls interleave; `cancel` stops
    /// the sweep between batches.
    pub fn run(
        &mut self,
        queue: &Mutex<Queue>,
        cancel: &AtomicBool,
    ) -> Result<SweepReport, RetentionError> {
        let mut report = SweepReport::default();
        let mut page = DuePage::default();
        loop {
            if cancel.load(Ordering::Relaxed) {
                report.cancelled = true;
                return Ok(report);
            }
            let batch =
                lock(queue)?.retention_due_inputs_page(&self.cutoffs, &mut page, GROUPS_PER_TX)?;
            if batch.is_empty() {
                break;
            }
            self.remove_inputs(queue, &batch, &mut report)?;
        }
        if let Some(before) = self.cutoffs.outputs {
            let due = lock(queue)?.retention_due_outputs(before)?;
            for batch in due.chunks(GROUPS_PER_TX) {
                if cancel.load(Ordering::Relaxed) {
                    report.cancelled = true;
                    return Ok(report);
                }
                let mut aside = Vec::new();
                {
                    let mut guard = lock(queue)?;
                    let tx = guard.retention_tx(self.now)?;
                    for due in batch {
                        let Some(removal) = self.output_removal(&due.group_id, &due.output_path)
                        else {
                            tx.mark_output_removed(&due.group_id)?;
                            continue;
                        };
                        if removal.action == RemovalAction::Skipped {
                            tx.record(&removal)?;
                            tx.mark_output_removed(&due.group_id)?;
                            report.add(removal, self.keep_removals);
                            continue;
                        }
                        match fsutil::rename_aside(Path::new(&removal.path), ASIDE_TAG) {
                            Ok(hidden) => {
                                tx.mark_output_removed(&due.group_id)?;
                                aside.push((hidden, removal));
                            }
                            Err(err) => report.failures.push(failure(&removal, &err)),
                        }
                    }
                    tx.commit()?;
                }
                self.delete_aside(queue, aside, &mut report)?;
            }
        }
        self.remove_strays(queue, &mut report, cancel)?;
        if report.cancelled {
            return Ok(report);
        }
        self.remove_scratch(queue, &mut report)?;
        Ok(report)
    }

    fn remove_inputs(
        &mut self,
        queue: &Mutex<Queue>,
        batch: &[DueInputs],
        report: &mut SweepReport,
    ) -> Result<(), RetentionError> {
        // Judge every file, and copy to archive_dir, before taking the lock: a
        // copy to another filesystem can take seconds per file.
        let mut judged: Vec<(&DueInputs, Vec<JudgedInput>)> = Vec::new();
        for group in batch {
            let mut files = Vec::new();
            for path in &group.files {
                let fate = self.input_fate(path);
                let mut archived_to = None;
                if let (
                    Some(archive),
                    InputFate::Remove {
                        path: at,
                        link: false,
                        ..
                    },
                ) = (&self.archive_dir, &fate)
                {
                    match fsutil::place_copy_in(at, archive) {
                        Ok(placed) => {
                            archived_to = Some(placed.path.to_string_lossy().into_owned())
                        }
                        Err(err) => {
                            report.failures.push(input_failure(
                                &group.group_id,
                                path,
                                format!("cannot archive to {}: {err}", archive.display()),
                            ));
                            files.push((path.clone(), InputFate::Skip(String::new()), None));
                            continue;
                        }
                    }
                }
                files.push((path.clone(), fate, archived_to));
            }
            judged.push((group, files));
        }
        let mut done = Vec::new();
        {
            let mut guard = lock(queue)?;
            let tx = guard.retention_tx(self.now)?;
            for (group, files) in judged {
                if !tx.inputs_still_due(&group.group_id, group.state, &self.cutoffs)? {
                    continue;
                }
                let mut complete = true;
                for (path, fate, archived_to) in files {
                    match self.remove_input(&tx, &group.group_id, &path, fate, archived_to) {
                        Ok(Some(removal)) => done.push(removal),
                        Ok(None) => {}
                        Err(failure) => {
                            complete = false;
                            if let Some(failure) = failure {
                                report.failures.push(failure);
                            }
                        }
                    }
                }
                if complete {
                    for log in tx.finished_job_logs(&group.group_id)? {
                        for (removal, path) in self.job_log_removals(&group.group_id, &log) {
                            if let Err(err) = remove_plain(path.as_deref()) {
                                complete = false;
                                report.failures.push(failure(&removal, &err));
                                continue;
                            }
                            tx.record(&removal)?;
                            done.push(removal);
                        }
                    }
                }
                if complete {
                    tx.mark_inputs_removed(&group.group_id)?;
                    report.groups_swept += 1;
                }
            }
            tx.commit()?;
        }
        for removal in done {
            journal(&removal);
            report.add(removal, self.keep_removals);
        }
        Ok(())
    }

    /// Removes one judged input inside `tx` and records it. `Err(None)`: a
    /// file whose archiving already failed (reported then).
    fn remove_input(
        &self,
        tx: &RetentionTx<'_>,
        group_id: &str,
        registered: &str,
        fate: InputFate,
        archived_to: Option<String>,
    ) -> Result<Option<Removal>, Option<RemovalFailure>> {
        let removal = match fate {
            InputFate::Missing => return Ok(None),
            InputFate::Skip(reason) if reason.is_empty() => return Err(None),
            InputFate::Skip(reason) => skipped(group_id, registered, RemovalKind::Input, reason),
            InputFate::Remove { path, bytes, link } => {
                if let Err(err) = std::fs::remove_file(&path)
                    && err.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(Some(input_failure(
                        group_id,
                        registered,
                        format!("cannot delete {}: {err}", path.display()),
                    )));
                }
                self.input_record(group_id, registered, bytes, link, archived_to)
            }
        };
        tx.record(&removal).map_err(|err| {
            Some(input_failure(
                group_id,
                registered,
                format!("removed, but not recorded: {err}"),
            ))
        })?;
        Ok(Some(removal))
    }

    /// The removal a dry run reports for one registered input.
    fn input_removal(
        &mut self,
        group_id: &str,
        registered: &str,
        archived_to: Option<String>,
    ) -> Option<Removal> {
        match self.input_fate(registered) {
            InputFate::Missing => None,
            InputFate::Skip(reason) => {
                Some(skipped(group_id, registered, RemovalKind::Input, reason))
            }
            InputFate::Remove { path, bytes, link } => {
                let archived_to = archived_to.or_else(|| {
                    let archive = self.archive_dir.as_ref().filter(|_| !link)?;
                    Some(
                        archive
                            .join(path.file_name()?)
                            .to_string_lossy()
                            .into_owned(),
                    )
                });
                Some(self.input_record(group_id, registered, bytes, link, archived_to))
            }
        }
    }

    fn input_record(
        &self,
        group_id: &str,
        registered: &str,
        bytes: u64,
        link: bool,
        archived_to: Option<String>,
    ) -> Removal {
        let (action, reason) = if link {
            (RemovalAction::Deleted, LINK_REASON.to_string())
        } else if archived_to.is_some() {
            (RemovalAction::Archived, self.input_age_reason(group_id))
        } else {
            (RemovalAction::Deleted, self.input_age_reason(group_id))
        };
        Removal {
            group_id: Some(group_id.to_string()),
            path: registered.to_string(),
            kind: RemovalKind::Input,
            action,
            archived_to: if link { None } else { archived_to },
            bytes,
            reason,
        }
    }

    fn input_age_reason(&self, _group_id: &str) -> String {
        format!(
            "group ended more than retain_input_hours = {} (completed) or retain_failed_days = {} (failed) ago",
            self.config.retain_input_hours, self.config.retain_failed_days
        )
    }

    /// Judges a registered input path: only a plain name directly in
    /// `input_dir` is ever touched, and never through a symlink.
    fn input_fate(&mut self, registered: &str) -> InputFate {
        let Some(input_dir) = self.input_dir.clone() else {
            return InputFate::Skip(format!(
                "input_dir {} cannot be resolved",
                self.config.input_dir.display()
            ));
        };
        match self.entry_in(registered, &input_dir, "input_dir") {
            Ok(Some((path, meta))) => {
                let file_type = meta.file_type();
                if file_type.is_symlink() {
                    InputFate::Remove {
                        path,
                        bytes: 0,
                        link: true,
                    }
                } else if file_type.is_file() {
                    InputFate::Remove {
                        path,
                        bytes: meta.len(),
                        link: false,
                    }
                } else {
                    InputFate::Skip("not a regular file".to_string())
                }
            }
            Ok(None) => InputFate::Missing,
            Err(reason) => InputFate::Skip(reason),
        }
    }

    /// `registered` as a name directly in `dir` (canonical), with its lstat;
    /// `Ok(None)` if it is gone, `Err(reason)` if it is not ours to touch.
    fn entry_in(
        &mut self,
        registered: &str,
        dir: &Path,
        dir_name: &str,
    ) -> Result<Option<(PathBuf, std::fs::Metadata)>, String> {
        let path = Path::new(registered);
        let plain = path.is_absolute()
            && path
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        let (Some(parent), Some(name), true) = (path.parent(), path.file_name(), plain) else {
            return Err("not a plain absolute path".to_string());
        };
        let canonical = self
            .parents
            .entry(parent.to_path_buf())
            .or_insert_with(|| std::fs::canonicalize(parent).ok())
            .clone();
        match canonical {
            Some(canonical) if canonical == dir => {}
            Some(_) => return Err(format!("outside {dir_name} {}", dir.display())),
            None if parent == dir => return Ok(None),
            None => return Err(format!("outside {dir_name} {}", dir.display())),
        }
        let at = dir.join(name);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) => Ok(Some((at, meta))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(format!("cannot examine it: {err}")),
        }
    }

    /// The removals of one attempt's job log and its exit record, each with
    /// the path to unlink (`None`: left in place, recorded as skipped).
    fn job_log_removals(&mut self, group_id: &str, log: &str) -> Vec<(Removal, Option<PathBuf>)> {
        let Some(log_dir) = self.log_dir.clone() else {
            return Vec::new();
        };
        let exit = Path::new(log).with_extension("exit");
        let mut removals = Vec::new();
        for registered in [log.to_string(), exit.to_string_lossy().into_owned()] {
            let record = |action, bytes, reason: String| Removal {
                group_id: Some(group_id.to_string()),
                path: registered.clone(),
                kind: RemovalKind::JobLog,
                action,
                archived_to: None,
                bytes,
                reason,
            };
            match self.entry_in(&registered, &log_dir, "slurm.log_dir") {
                Ok(Some((path, meta))) if meta.file_type().is_symlink() => removals.push((
                    record(RemovalAction::Deleted, 0, LINK_REASON.to_string()),
                    Some(path),
                )),
                Ok(Some((path, meta))) if meta.file_type().is_file() => removals.push((
                    record(
                        RemovalAction::Deleted,
                        meta.len(),
                        "a job log of the group, whose inputs retention removed".to_string(),
                    ),
                    Some(path),
                )),
                Ok(Some(_)) => removals.push((
                    record(RemovalAction::Skipped, 0, "not a regular file".to_string()),
                    None,
                )),
                Ok(None) => {}
                Err(reason) => removals.push((record(RemovalAction::Skipped, 0, reason), None)),
            }
        }
        removals
    }

    /// Judges a stray input by the path rules, the members of unfinished
    /// groups (by name, whatever path they were registered under) and its
    /// modification time (a file changed since the cutoff is not the one
    /// recorded, or not stale).
    fn stray_fate(&mut self, stray: &DueStray, members: &HashSet<OsString>) -> StrayFate {
        let record = |action, bytes, reason: String| Removal {
            group_id: stray.group_id.clone(),
            path: stray.path.clone(),
            kind: RemovalKind::StrayInput,
            action,
            archived_to: None,
            bytes,
            reason,
        };
        let Some(input_dir) = self.input_dir.clone() else {
            return StrayFate::Keep;
        };
        let (path, meta) = match self.entry_in(&stray.path, &input_dir, "input_dir") {
            Ok(Some(found)) => found,
            Ok(None) => return StrayFate::Missing,
            Err(reason) => return StrayFate::Skip(record(RemovalAction::Skipped, 0, reason)),
        };
        let member = path.file_name().is_some_and(|name| members.contains(name));
        let changed_since = modified(&meta).is_none_or(|at| at > self.cutoffs.failed_inputs);
        if member || changed_since {
            return StrayFate::Keep;
        }
        let file_type = meta.file_type();
        if file_type.is_symlink() {
            let removal = record(RemovalAction::Deleted, 0, LINK_REASON.to_string());
            StrayFate::Remove(removal, path)
        } else if file_type.is_file() {
            let reason = format!(
                "{}; kept retain_failed_days = {}",
                stray.reason, self.config.retain_failed_days
            );
            StrayFate::Remove(record(RemovalAction::Deleted, meta.len(), reason), path)
        } else {
            let reason = "not a regular file".to_string();
            StrayFate::Skip(record(RemovalAction::Skipped, 0, reason))
        }
    }

    /// Entries directly in `input_dir` that may be strays nobody recorded:
    /// regular files and symlinks under names that are neither the
    /// correlator's (the worker registers those, however old) nor temp or
    /// dot names. As (the path the worker would record, the canonical path).
    fn unrecorded_candidates(&self) -> Vec<(String, PathBuf)> {
        let Some(input_dir) = &self.input_dir else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(input_dir) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let correlator_name = name
                .to_str()
                .is_some_and(|text| crate::names::parse_subband_name(text).is_some());
            if correlator_name || crate::names::is_temporary_name(&name) {
                continue;
            }
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let plain = entry
                .file_type()
                .is_ok_and(|t| t.is_file() || t.is_symlink());
            if plain {
                let registered = self.config.input_dir.join(&name);
                found.push((registered.to_string_lossy().into_owned(), entry.path()));
            }
        }
        found.sort();
        found
    }

    /// Removes the strays that are due, in batches, each checked again and
    /// recorded inside the transaction that removes it.
    fn remove_strays(
        &mut self,
        queue: &Mutex<Queue>,
        report: &mut SweepReport,
        cancel: &AtomicBool,
    ) -> Result<(), RetentionError> {
        let before = self.cutoffs.failed_inputs;
        let recorded = lock(queue)?.retention_due_strays(before)?;
        let unrecorded: Vec<(DueStray, PathBuf)> = self
            .unrecorded_candidates()
            .into_iter()
            .map(|(registered, canonical)| (unrecorded(&registered), canonical))
            .collect();
        let recorded: Vec<(DueStray, PathBuf)> = recorded
            .into_iter()
            .map(|stray| (stray, PathBuf::new()))
            .collect();
        for (batch, was_recorded) in recorded
            .chunks(GROUPS_PER_TX)
            .map(|b| (b, true))
            .chain(unrecorded.chunks(GROUPS_PER_TX).map(|b| (b, false)))
        {
            if cancel.load(Ordering::Relaxed) {
                report.cancelled = true;
                return Ok(());
            }
            let mut done = Vec::new();
            {
                let mut guard = lock(queue)?;
                let tx = guard.retention_tx(self.now)?;
                let members = file_names(tx.active_member_paths()?);
                for (stray, canonical) in batch {
                    let due = if was_recorded {
                        tx.stray_still_due(stray, before)?
                    } else {
                        let canonical = canonical.to_string_lossy();
                        !tx.is_recorded_input(&stray.path)?
                            && (canonical == stray.path || !tx.is_recorded_input(&canonical)?)
                    };
                    if !due {
                        continue;
                    }
                    let removal = match self.stray_fate(stray, &members) {
                        StrayFate::Keep => continue,
                        StrayFate::Missing => None,
                        StrayFate::Skip(removal) => Some(removal),
                        StrayFate::Remove(removal, path) => match remove_plain(Some(&path)) {
                            Ok(()) => Some(removal),
                            Err(err) => {
                                report.failures.push(failure(&removal, &err));
                                continue;
                            }
                        },
                    };
                    if let Some(removal) = removal {
                        tx.record(&removal)?;
                        done.push(removal);
                    }
                    if was_recorded {
                        tx.forget_stray(stray)?;
                    }
                }
                tx.commit()?;
            }
            for removal in done {
                journal(&removal);
                report.add(removal, self.keep_removals);
            }
        }
        Ok(())
    }

    /// The removal of a completed group's output (`None`: already gone).
    fn output_removal(&mut self, group_id: &str, output_path: &str) -> Option<Removal> {
        let skipped = |reason| skipped(group_id, output_path, RemovalKind::Output, reason);
        let Some(output_dir) = self.output_dir.clone() else {
            return Some(skipped(format!(
                "output_dir {} cannot be resolved",
                self.config.output_dir.display()
            )));
        };
        match self.entry_in(output_path, &output_dir, "output_dir") {
            Ok(Some((path, meta))) => Some(Removal {
                group_id: Some(group_id.to_string()),
                path: path.to_string_lossy().into_owned(),
                kind: RemovalKind::Output,
                action: RemovalAction::Deleted,
                archived_to: None,
                bytes: if meta.file_type().is_symlink() {
                    0
                } else {
                    tree_bytes(&path)
                },
                reason: format!(
                    "completed more than retain_output_days = {} ago",
                    self.config.retain_output_days.unwrap_or_default()
                ),
            }),
            Ok(None) => None,
            Err(reason) => Some(skipped(reason)),
        }
    }

    /// Top-level entries of `scratch_dir` and the staging dir that belong to no
    /// unfinished group in `active` (by name), and are older than every
    /// running conversion (a converter may write names of its own choosing).
    fn scratch_leftovers(&self, active: &[ActiveGroup]) -> Vec<PathBuf> {
        let earliest_start = active
            .iter()
            .filter_map(|group| group.started_at)
            .fold(f64::INFINITY, f64::min);
        let newest_allowed = (self.now - SCRATCH_GRACE_S).min(earliest_start - SCRATCH_GRACE_S);
        let mut leftovers = Vec::new();
        for dir in self.scratch_dirs() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!(".{ASIDE_TAG}-")) {
                    leftovers.push(entry.path());
                    continue;
                }
                if active.iter().any(|group| name.contains(&group.group_id)) {
                    continue;
                }
                // The Slurm log dir (or a dir holding it) is not a leftover:
                // a queued job writes its log there when it starts.
                if self
                    .log_dir
                    .as_ref()
                    .is_some_and(|logs| logs.starts_with(entry.path()))
                {
                    continue;
                }
                let modified = std::fs::symlink_metadata(entry.path())
                    .and_then(|meta| meta.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs_f64());
                if modified.is_some_and(|at| at < newest_allowed) {
                    leftovers.push(entry.path());
                }
            }
        }
        leftovers.sort();
        leftovers
    }

    /// `scratch_dir` unless it overlaps a directory holding data we keep (an
    /// operator who pointed it at input_dir must not lose the inputs), and the
    /// staging dir; both as they exist now.
    fn scratch_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Ok(scratch) = std::fs::canonicalize(&self.config.scratch_dir) {
            let state_dir = self
                .config
                .queue_db
                .parent()
                .and_then(|dir| std::fs::canonicalize(dir).ok());
            let kept = [
                &self.input_dir,
                &self.output_dir,
                &self.archive_dir,
                &state_dir,
            ];
            let overlaps = kept
                .into_iter()
                .flatten()
                .any(|dir| dir.starts_with(&scratch) || scratch.starts_with(dir));
            if overlaps {
                tracing::warn!(
                    "retention: scratch_dir {} overlaps a data directory; its leftovers are not removed",
                    scratch.display()
                );
            } else {
                dirs.push(scratch);
            }
        }
        let stage = stage_root(self.config);
        if stage.is_dir() {
            dirs.push(stage);
        }
        dirs
    }

    fn remove_scratch(
        &mut self,
        queue: &Mutex<Queue>,
        report: &mut SweepReport,
    ) -> Result<(), RetentionError> {
        // Inside the transaction no claim starts a conversion, so what is not
        // in use now stays unused until the entries are renamed aside.
        let mut aside = Vec::new();
        {
            let mut guard = lock(queue)?;
            let tx = guard.retention_tx(self.now)?;
            let active = tx.active_groups()?;
            for entry in self.scratch_leftovers(&active) {
                let removal = scratch_removal(&entry, 0);
                match fsutil::rename_aside(&entry, ASIDE_TAG) {
                    Ok(hidden) => aside.push((hidden, removal)),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => report.failures.push(failure(&removal, &err)),
                }
            }
            tx.commit()?;
        }
        self.delete_aside(queue, aside, report)
    }

    /// Deletes entries renamed aside, then records them in one transaction.
    fn delete_aside(
        &self,
        queue: &Mutex<Queue>,
        aside: Vec<(PathBuf, Removal)>,
        report: &mut SweepReport,
    ) -> Result<(), RetentionError> {
        let mut done = Vec::new();
        for (hidden, mut removal) in aside {
            if removal.kind == RemovalKind::Scratch {
                removal.bytes = tree_bytes(&hidden);
            }
            match remove_entry(&hidden) {
                Ok(()) => done.push(removal),
                Err(err) => report.failures.push(failure(&removal, &err)),
            }
        }
        if done.is_empty() {
            return Ok(());
        }
        {
            let mut guard = lock(queue)?;
            let tx = guard.retention_tx(self.now)?;
            for removal in &done {
                tx.record(removal)?;
            }
            tx.commit()?;
        }
        for removal in done {
            journal(&removal);
            report.add(removal, self.keep_removals);
        }
        Ok(())
    }
}

/// Why a symlink's removal freed nothing.
const LINK_REASON: &str = "a symbolic link: the link was removed, its target left alone";

/// What becomes of one stray input.
enum StrayFate {
    /// Left in place, and its record kept: a member of an unfinished group,
    /// or changed since the cutoff.
    Keep,
    /// Already gone: its record is dropped.
    Missing,
    /// Left in place and recorded as skipped (not ours to touch).
    Skip(Removal),
    /// Unlink this path and record the removal.
    Remove(Removal, PathBuf),
}

/// An unrecognised entry no record names, as a stray to judge.
fn unrecorded(registered: &str) -> DueStray {
    DueStray {
        path: registered.to_string(),
        group_id: None,
        record: StrayRecord::Unrecognised,
        reason: "an unrecognised name, never recorded, unchanged".to_string(),
    }
}

fn file_names(paths: Vec<String>) -> HashSet<OsString> {
    paths
        .iter()
        .filter_map(|path| Path::new(path).file_name().map(OsString::from))
        .collect()
}

fn modified(meta: &std::fs::Metadata) -> Option<f64> {
    meta.modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}

/// Unlinks a plain name (a file or a symlink itself); gone already is fine.
fn remove_plain(path: Option<&Path>) -> std::io::Result<()> {
    match path.map(std::fs::remove_file) {
        Some(Err(err)) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// `path` canonical, or (not created yet) its parent's canonical path joined
/// with its name.
fn canonical_or_parent(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok().or_else(|| {
        let parent = std::fs::canonicalize(path.parent()?).ok()?;
        Some(parent.join(path.file_name()?))
    })
}

/// A file left in place, with the reason.
fn skipped(group_id: &str, path: &str, kind: RemovalKind, reason: String) -> Removal {
    Removal {
        group_id: Some(group_id.to_string()),
        path: path.to_string(),
        kind,
        action: RemovalAction::Skipped,
        archived_to: None,
        bytes: 0,
        reason,
    }
}

fn scratch_removal(entry: &Path, bytes: u64) -> Removal {
    Removal {
        group_id: None,
        path: entry.to_string_lossy().into_owned(),
        kind: RemovalKind::Scratch,
        action: RemovalAction::Deleted,
        archived_to: None,
        bytes,
        reason: "a leftover that belongs to no unfinished group".to_string(),
    }
}

fn input_failure(group_id: &str, path: &str, error: String) -> RemovalFailure {
    RemovalFailure {
        group_id: Some(group_id.to_string()),
        path: path.to_string(),
        kind: RemovalKind::Input,
        error,
    }
}

fn failure(removal: &Removal, err: &std::io::Error) -> RemovalFailure {
    RemovalFailure {
        group_id: removal.group_id.clone(),
        path: removal.path.clone(),
        kind: removal.kind,
        error: format!("cannot delete {}: {err}", removal.path),
    }
}

fn lock(queue: &Mutex<Queue>) -> Result<std::sync::MutexGuard<'_, Queue>, RetentionError> {
    queue.lock().map_err(|_| RetentionError::Poisoned)
}

/// The journal line of one removal.
fn journal(removal: &Removal) {
    tracing::info!(
        group_id = removal.group_id.as_deref().unwrap_or("-"),
        path = %removal.path,
        bytes = removal.bytes,
        kind = %removal.kind,
        action = %removal.action,
        archived_to = removal.archived_to.as_deref().unwrap_or("-"),
        "retention: {} {} ({} bytes): {}",
        removal.action,
        removal.path,
        removal.bytes,
        removal.reason
    );
}

/// Apparent size of a file or tree, never following symlinks.
fn tree_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return if meta.file_type().is_symlink() {
            0
        } else {
            meta.len()
        };
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| tree_bytes(&e.path())).sum())
        .unwrap_or(0)
}

/// Removes a file, a symlink (itself) or a tree (whose symlinks are removed,
/// not followed).
fn remove_entry(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{GroupState, NewFile, Timings, unix_now};

    struct Layout {
        _root: tempfile::TempDir,
        config: StreamingConfig,
    }

    fn layout() -> Layout {
        let root = tempfile::tempdir().unwrap();
        let mut config = StreamingConfig::with_state_dir(&root.path().join("state"));
        config.input_dir = root.path().join("in");
        config.output_dir = root.path().join("out");
        config.scratch_dir = root.path().join("scratch");
        config.tmpfs_path = root.path().join("shm");
        for dir in [
            &config.input_dir,
            &config.output_dir,
            &config.scratch_dir,
            &config.tmpfs_path,
            &root.path().join("state"),
        ] {
            std::fs::create_dir_all(dir).unwrap();
        }
        Layout {
            _root: root,
            config,
        }
    }

    /// A two-subband group registered from real files; completed at `done_at`
    /// when `complete`, else left pending.
    fn group(queue: &mut Queue, config: &StreamingConfig, ts: f64, done_at: Option<f64>) -> String {
        for sb in 0..2 {
            let name = format!("{}_sb{sb:02}.hdf5", crate::names::format_timestamp(ts));
            let path = config.input_dir.join(name);
            std::fs::write(&path, vec![1u8; 1000]).unwrap();
            let file = NewFile {
                path: path.to_string_lossy().into_owned(),
                timestamp: ts,
                subband_idx: sb,
                size_bytes: Some(1000),
                mtime: Some(ts),
                meta_json: None,
            };
            queue.register_file(&file, 2, 60.0, ts).unwrap();
        }
        let id = crate::names::format_timestamp(ts);
        if let Some(done_at) = done_at {
            let claimed = queue.claim_next(done_at).unwrap().unwrap();
            assert_eq!(claimed.group_id, id);
            queue
                .complete(&id, claimed.attempt, &Timings::default(), None, done_at)
                .unwrap();
        }
        id
    }

    #[test]
    fn a_dry_run_lists_what_the_real_run_then_removes() {
        let l = layout();
        let queue = Mutex::new(Queue::open(&l.config.queue_db).unwrap());
        let now = 1_800_000_000.0;
        let old = group(
            &mut lock(&queue).unwrap(),
            &l.config,
            1_700_000_000.0,
            Some(now - 49.0 * 3600.0),
        );
        let _recent = group(
            &mut lock(&queue).unwrap(),
            &l.config,
            1_700_000_600.0,
            Some(now - 3600.0),
        );
        let _pending = group(&mut lock(&queue).unwrap(), &l.config, 1_700_001_200.0, None);

        let reader = QueueReader::open(&l.config.queue_db).unwrap();
        let mut dry = Sweep::new(&l.config, now);
        dry.keep_removals = true;
        let plan = dry.plan(&reader).unwrap();
        let planned: Vec<_> = plan.removals.iter().map(|r| r.path.clone()).collect();
        assert_eq!(planned.len(), 2, "{planned:?}");
        assert!(planned.iter().all(|p| p.contains(&old)), "{planned:?}");
        assert!(planned.iter().all(|p| Path::new(p).exists()));

        let mut sweep = Sweep::new(&l.config, now);
        sweep.keep_removals = true;
        let done = sweep.run(&queue, &AtomicBool::new(false)).unwrap();
        let removed: Vec<_> = done.removals.iter().map(|r| r.path.clone()).collect();
        assert_eq!(removed, planned);
        assert_eq!(done.totals, plan.totals);
        assert!(removed.iter().all(|p| !Path::new(p).exists()));
        let left = std::fs::read_dir(&l.config.input_dir).unwrap().count();
        assert_eq!(
            left, 4,
            "the recent and the pending group keep their inputs"
        );
        // Swept once: a second sweep finds nothing.
        let again = Sweep::new(&l.config, now)
            .run(&queue, &AtomicBool::new(false))
            .unwrap();
        assert_eq!(again.total(), RemovalTotal::default());
    }

    #[test]
    fn a_failed_group_reopened_before_the_transaction_keeps_its_inputs() {
        let l = layout();
        let mut queue = Queue::open(&l.config.queue_db).unwrap();
        let now = 1_800_000_000.0;
        // Incomplete: one subband of two, failed by the timeout long ago.
        let name = format!(
            "{}_sb00.hdf5",
            crate::names::format_timestamp(1_700_000_000.0)
        );
        let path = l.config.input_dir.join(&name);
        std::fs::write(&path, b"x").unwrap();
        queue
            .register_file(
                &NewFile {
                    path: path.to_string_lossy().into_owned(),
                    timestamp: 1_700_000_000.0,
                    subband_idx: 0,
                    size_bytes: Some(1),
                    mtime: None,
                    meta_json: None,
                },
                2,
                60.0,
                1_700_000_000.0,
            )
            .unwrap();
        queue.expire_incomplete(1_700_001_000.0, 900.0).unwrap();
        let mut sweep = Sweep::new(&l.config, now);
        let due = queue.retention_due_inputs(&sweep.cutoffs).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].state, GroupState::Failed);
        // An operator retries it between the listing and the removal.
        let id = due[0].group_id.clone();
        queue.retry_failed(&id, now).unwrap();
        let queue = Mutex::new(queue);
        let mut report = SweepReport::default();
        sweep.remove_inputs(&queue, &due, &mut report).unwrap();
        assert!(path.exists(), "a reopened group's input was removed");
        assert_eq!(report.total(), RemovalTotal::default());
    }

    #[test]
    fn paths_outside_input_dir_and_symlinks_are_never_followed() {
        let l = layout();
        let mut sweep = Sweep::new(&l.config, 0.0);
        let outside = l.config.scratch_dir.join("precious");
        std::fs::write(&outside, b"keep").unwrap();
        let link = l.config.input_dir.join("2024-01-01T00:00:00_sb00.hdf5");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let canonical_in = std::fs::canonicalize(&l.config.input_dir).unwrap();
        assert_eq!(
            sweep.input_fate(&link.to_string_lossy()),
            InputFate::Remove {
                path: canonical_in.join(link.file_name().unwrap()),
                bytes: 0,
                link: true
            }
        );
        let dotdot = format!("{}/../scratch/precious", l.config.input_dir.display());
        assert!(matches!(sweep.input_fate(&dotdot), InputFate::Skip(_)));
        assert!(matches!(
            sweep.input_fate(&outside.to_string_lossy()),
            InputFate::Skip(reason) if reason.starts_with("outside input_dir")
        ));
        // A directory in input_dir that is a symlink to elsewhere.
        let sub = l.config.input_dir.join("sub");
        std::os::unix::fs::symlink(&l.config.scratch_dir, &sub).unwrap();
        assert!(matches!(
            sweep.input_fate(&sub.join("precious").to_string_lossy()),
            InputFate::Skip(_)
        ));
    }

    #[test]
    fn scratch_leftovers_spare_unfinished_groups_and_running_conversions() {
        let l = layout();
        let now = 1_800_000_000.0;
        let sweep = Sweep::new(&l.config, now);
        let aged = |name: &str, at: f64| {
            let path = l.config.scratch_dir.join(name);
            std::fs::create_dir(&path).unwrap();
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(at);
            std::fs::File::open(&path)
                .unwrap()
                .set_modified(when)
                .unwrap();
            path
        };
        let stale = aged("casa-tmp-1", now - 7200.0);
        let pending = aged("2026-01-01T00:00:00.ms", now - 7200.0);
        let during = aged("casa-tmp-2", now - 600.0);
        let active = vec![
            ActiveGroup {
                group_id: "2026-01-01T00:00:00".into(),
                state: GroupState::Pending,
                started_at: None,
            },
            ActiveGroup {
                group_id: "2026-01-01T00:05:00".into(),
                state: GroupState::InProgress,
                started_at: Some(now - 900.0),
            },
        ];
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap();
        assert_eq!(sweep.scratch_leftovers(&active), [canonical(&stale)]);
        let mut none_running = sweep.scratch_leftovers(&active[..1]);
        none_running.sort();
        assert_eq!(none_running, [canonical(&stale), canonical(&during)]);
        assert!(sweep.scratch_leftovers(&[]).contains(&canonical(&pending)));
    }

    #[test]
    fn outputs_go_only_with_retain_output_days_and_only_from_output_dir() {
        let mut l = layout();
        let queue = Mutex::new(Queue::open(&l.config.queue_db).unwrap());
        let now = 1_800_000_000.0;
        let ms = l.config.output_dir.join("2023-11-14T22:13:20.ms");
        std::fs::create_dir_all(ms.join("table")).unwrap();
        std::fs::write(ms.join("table/data"), vec![0u8; 5000]).unwrap();
        let outside = l._root.path().join("not-an-output");
        std::fs::write(&outside, b"keep").unwrap();
        for (ts, output) in [(1_700_000_000.0, &ms), (1_700_000_600.0, &outside)] {
            let mut guard = lock(&queue).unwrap();
            for sb in 0..2 {
                let name = format!("{}_sb{sb:02}.hdf5", crate::names::format_timestamp(ts));
                let file = NewFile {
                    path: l.config.input_dir.join(name).to_string_lossy().into_owned(),
                    timestamp: ts,
                    subband_idx: sb,
                    size_bytes: None,
                    mtime: None,
                    meta_json: None,
                };
                guard.register_file(&file, 2, 60.0, ts).unwrap();
            }
            let claimed = guard.claim_next(ts).unwrap().unwrap();
            let output = output.to_string_lossy().into_owned();
            let done = now - 3.0 * 86_400.0;
            guard
                .complete(
                    &claimed.group_id,
                    claimed.attempt,
                    &Timings::default(),
                    Some(&output),
                    done,
                )
                .unwrap();
        }
        // Unset: outputs are never touched.
        let report = Sweep::new(&l.config, now)
            .run(&queue, &AtomicBool::new(false))
            .unwrap();
        assert!(ms.exists());
        assert!(!report.totals.contains_key(&RemovalKind::Output));
        // Two days: the directory tree goes, the path outside output_dir stays.
        l.config.retain_output_days = Some(2.0);
        let mut sweep = Sweep::new(&l.config, now);
        sweep.keep_removals = true;
        let report = sweep.run(&queue, &AtomicBool::new(false)).unwrap();
        assert!(!ms.exists());
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        assert_eq!(
            report.totals.get(&RemovalKind::Output),
            Some(&RemovalTotal {
                files: 1,
                bytes: 5000
            })
        );
        let skipped: Vec<_> = report
            .removals
            .iter()
            .filter(|r| r.action == RemovalAction::Skipped)
            .map(|r| r.path.clone())
            .collect();
        assert_eq!(skipped, [outside.to_string_lossy().into_owned()]);
        let leftovers: Vec<_> = std::fs::read_dir(&l.config.output_dir).unwrap().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_run_removes_and_records_scratch_and_staging_leftovers() {
        let l = layout();
        let queue = Mutex::new(Queue::open(&l.config.queue_db).unwrap());
        let now = unix_now();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        let stale = l.config.scratch_dir.join("casa-tmp");
        std::fs::create_dir_all(stale.join("sub")).unwrap();
        std::fs::write(stale.join("sub/f"), vec![0u8; 300]).unwrap();
        std::fs::File::open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let staged = stage_root(&l.config).join("2023-11-14T22:13:20");
        std::fs::create_dir_all(&staged).unwrap();
        std::fs::write(staged.join("x_sb00.hdf5"), vec![0u8; 200]).unwrap();
        std::fs::File::open(&staged)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let fresh = l.config.scratch_dir.join("just-written");
        std::fs::write(&fresh, b"new").unwrap();
        let report = Sweep::new(&l.config, now)
            .run(&queue, &AtomicBool::new(false))
            .unwrap();
        assert!(!stale.exists() && !staged.exists());
        assert!(fresh.exists());
        assert_eq!(
            report.totals.get(&RemovalKind::Scratch),
            Some(&RemovalTotal {
                files: 2,
                bytes: 500
            })
        );
        assert_eq!(
            lock(&queue).unwrap().removal_totals().unwrap()[&RemovalKind::Scratch].bytes,
            500
        );
        let hidden: Vec<_> = std::fs::read_dir(&l.config.scratch_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(hidden, ["just-written"]);
    }

    #[test]
    fn job_logs_are_removed_only_from_the_log_dir_and_only_of_ended_attempts() {
        let l = layout();
        let now = 1_800_000_000.0;
        let log_dir = l.config.slurm.log_dir_for(&l.config.scratch_dir);
        std::fs::create_dir_all(&log_dir).unwrap();
        let mut queue = Queue::open(&l.config.queue_db).unwrap();
        let id = group(&mut queue, &l.config, 1_700_000_000.0, None);
        let claimed = queue.claim_next(now - 49.0 * 3600.0).unwrap().unwrap();
        // A stored log path outside the log dir (a hand-edited or moved DB).
        let elsewhere = l.config.output_dir.join("precious.log");
        std::fs::write(&elsewhere, b"keep").unwrap();
        queue
            .mark_submitting(&id, claimed.attempt, "slurm", &elsewhere.to_string_lossy())
            .unwrap();
        queue
            .complete(
                &id,
                claimed.attempt,
                &Timings::default(),
                None,
                now - 49.0 * 3600.0,
            )
            .unwrap();
        // Another group's attempt still in flight, its log in the log dir.
        let running = group(&mut queue, &l.config, 1_700_000_600.0, None);
        let in_flight = queue.claim_next(now).unwrap().unwrap();
        let running_log = log_dir.join(format!("{running}.attempt1.log"));
        std::fs::write(&running_log, b"running").unwrap();
        queue
            .mark_submitting(
                &running,
                in_flight.attempt,
                "slurm",
                &running_log.to_string_lossy(),
            )
            .unwrap();
        let queue = Mutex::new(queue);
        let mut sweep = Sweep::new(&l.config, now);
        sweep.keep_removals = true;
        let report = sweep.run(&queue, &AtomicBool::new(false)).unwrap();
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"keep");
        assert!(running_log.exists());
        let logs: Vec<_> = report
            .removals
            .iter()
            .filter(|r| r.kind == RemovalKind::JobLog)
            .collect();
        // The log and its exit record, both left and recorded as skipped.
        assert_eq!(logs.len(), 2, "{logs:?}");
        assert!(
            logs.iter().all(|r| r.action == RemovalAction::Skipped
                && r.reason.starts_with("outside slurm.log_dir")),
            "{logs:?}"
        );
        assert_eq!(report.groups_swept, 1);
    }

    #[test]
    fn a_scratch_dir_overlapping_input_dir_is_left_alone() {
        let mut l = layout();
        l.config.scratch_dir = l.config.input_dir.clone();
        let sweep = Sweep::new(&l.config, 0.0);
        assert!(sweep.scratch_dirs().is_empty());
    }
}
