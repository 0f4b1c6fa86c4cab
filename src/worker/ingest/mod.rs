//! Finding subband files: name parsing, directory watching and scanning, and the
//! admission check that decides which directory entries may be registered.

pub use contimg_core::names;
pub mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use names::NameRules;
use watch::{Admission, Candidate, FileIdentity, InputDir, Refusal, WatchError};

/// How long an unchanged refusal is trusted before the entry is recorded again
/// (refreshing its `last_seen_at`, and catching a name that was too far in the
/// future and no longer is).
pub const REFUSAL_RECHECK_S: f64 = 3600.0;

/// Refusals already recorded in this run, by path, with the file as it was
/// then: an unchanged entry is not recorded again at every poll scan, while a
/// changed one (a FIFO replaced by a real file, a chmod), one judged under
/// another `expected_subbands`, or one judged over an hour ago is judged afresh.
#[derive(Debug, Default)]
pub struct RefusalMemo {
    seen: HashMap<PathBuf, Judged>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Judged {
    identity: Option<FileIdentity>,
    expected_subbands: u32,
    at: f64,
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
                let still_valid = memo.seen.get(&refusal.path).is_some_and(|judged| {
                    judged.identity == refusal.identity
                        && judged.expected_subbands == rules.expected_subbands
                        && rules.now - judged.at < REFUSAL_RECHECK_S
                });
                if !still_valid {
                    let judged = Judged {
                        identity: refusal.identity,
                        expected_subbands: rules.expected_subbands,
                        at: rules.now,
                    };
                    memo.seen.insert(refusal.path.clone(), judged);
                    batch.refusals.push(refusal);
                }
            }
        }
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::names::subband_file_name;

    const TS: f64 = 1_760_362_083.0;

    #[test]
    fn a_refusal_is_reported_once_until_the_entry_changes() {
        let dir = tempfile::tempdir().unwrap();
        let rules = NameRules {
            expected_subbands: 16,
            now: TS,
        };
        let path = dir.path().join(subband_file_name(TS, 0));
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let mut memo = RefusalMemo::default();
        let admit = |memo: &mut RefusalMemo| {
            admit_batch(dir.path(), vec![path.clone()], &rules, memo).unwrap()
        };
        assert_eq!(admit(&mut memo).refusals.len(), 1);
        assert_eq!(admit(&mut memo).refusals.len(), 0, "unchanged: not again");
        // Replaced by a real file: admitted, and the memo forgets the refusal.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"data").unwrap();
        let batch = admit(&mut memo);
        assert_eq!((batch.candidates.len(), batch.refusals.len()), (1, 0));
        // A FIFO again: reported again.
        std::fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(admit(&mut memo).refusals.len(), 1);
    }

    #[test]
    fn a_refusal_is_judged_again_under_new_rules_or_after_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(subband_file_name(TS, 3));
        std::fs::write(&path, b"data").unwrap();
        let mut memo = RefusalMemo::default();
        let mut admit = |expected_subbands, now| {
            let rules = NameRules {
                expected_subbands,
                now,
            };
            admit_batch(dir.path(), vec![path.clone()], &rules, &mut memo).unwrap()
        };
        assert_eq!(admit(2, TS).refusals.len(), 1);
        assert_eq!(admit(2, TS + 60.0).refusals.len(), 0);
        assert_eq!(admit(2, TS + REFUSAL_RECHECK_S + 1.0).refusals.len(), 1);
        // expected_subbands raised by a reload: sb03 is now a subband.
        let batch = admit(4, TS + REFUSAL_RECHECK_S + 2.0);
        assert_eq!((batch.candidates.len(), batch.refusals.len()), (1, 0));
    }
}
