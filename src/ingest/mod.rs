//! Finding subband files: name parsing, directory watching and scanning, and the
//! admission check that decides which directory entries may be registered.

pub mod names;
pub mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use names::NameRules;
use watch::{Admission, Candidate, FileIdentity, InputDir, Refusal, WatchError};

/// Refusals already recorded in this run, by path, with the file as it was
/// then: an unchanged entry is not recorded again at every poll scan, while a
/// changed one (a FIFO replaced by a real file, a chmod) is judged afresh.
#[derive(Debug, Default)]
pub struct RefusalMemo {
    seen: HashMap<PathBuf, Option<FileIdentity>>,
}

impl RefusalMemo {
    pub fn clear(&mut self) {
        self.seen.clear();
    }
}

/// One batch of paths after admission.
#[derive(Debug, Default)]
pub struct AdmittedBatch {
    /// Regular files under a valid subband name, to inspect and register.
    pub candidates: Vec<Candidate>,
    /// Refused entries not recorded before in this run (or changed since).
    pub refusals: Vec<Refusal>,
}

/// Admits each path against `input_dir` (see [`InputDir::admit`]). Temp names
/// and vanished files are dropped silently.
pub fn admit_batch(
    input_dir: &Path,
    paths: Vec<PathBuf>,
    rules: &NameRules,
    memo: &mut RefusalMemo,
) -> Result<AdmittedBatch, WatchError> {
    let dir = InputDir::open(input_dir)?;
    let mut batch = AdmittedBatch::default();
    for path in paths {
        match dir.admit(&path, rules) {
            Admission::Subband(candidate) => {
                memo.seen.remove(&candidate.path);
                batch.candidates.push(candidate);
            }
            Admission::Temporary | Admission::Vanished => {
                memo.seen.remove(&path);
            }
            Admission::Refused(refusal) => {
                if memo.seen.get(&refusal.path) != Some(&refusal.identity) {
                    memo.seen.insert(refusal.path.clone(), refusal.identity);
                    batch.refusals.push(refusal);
                }
            }
        }
    }
    Ok(batch)
}
