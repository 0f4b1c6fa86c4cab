//! Disk back-pressure: before claiming a conversion the worker checks the free
//! space of every directory a conversion writes (`output_dir`, `scratch_dir`,
//! and `tmpfs_path` when staging) against `min_free_gb` and against the next
//! group's input size times `free_space_factor`.
//!
//! When one is short the worker claims nothing: groups stay `pending`, no retry
//! is used, and the reason (which directory, free against needed) goes into the
//! heartbeat row, where the API's alert engine (`claim_paused`), `contimgctl
//! status` and the API status read it without asking the worker. The reason is
//! logged once per change; claiming resumes by itself when space returns (the
//! next check after any wake-up of the main loop, at least every 2 s).
//!
//! A conversion that still runs out of space (the estimate was low, or something
//! else filled the disk meanwhile) ends as [`ConvertError::NoSpace`]: its
//! partial output is removed and the group is deferred by `retry_backoff_s`
//! without using one of its `max_retries`; running out of space is the host's
//! fault, not the group's, and the group must complete once space returns.
//!
//! Concurrent conversions are not reserved against each other: with
//! `max_workers` > 1 each claim sees the space the running ones have not written
//! yet, which is what the `NoSpace` path is for.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sd_notify::NotifyState;

use crate::convert::ConvertError;
use crate::{Worker, WorkerError, with_queue};
use contimg_core::config::StreamingConfig;
use contimg_core::queue::{ClaimPause, ClaimedGroup, unix_now};
use contimg_core::units::scaled_bytes;

/// A directory with less free space than this after a failed conversion is
/// taken as the reason it failed, whatever the converter printed (an external
/// converter may word ENOSPC its own way).
const FULL_BELOW_BYTES: u64 = 1024 * 1024;

/// What converters print for ENOSPC and EDQUOT (strerror, Rust's io::Error,
/// HDF5's error stack, Python's OSError).
const NO_SPACE_MARKERS: [&str; 5] = [
    "no space left on device",
    "os error 28",
    "errno = 28",
    "disk quota exceeded",
    "os error 122",
];

/// A directory a conversion writes: its config field and path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WrittenDir {
    pub(crate) field: &'static str,
    pub(crate) path: PathBuf,
}

/// The directories a conversion writes, by config field.
pub(crate) fn written_dirs(config: &StreamingConfig) -> Vec<WrittenDir> {
    let mut dirs = vec![
        WrittenDir {
            field: "output_dir",
            path: config.output_dir.clone(),
        },
        WrittenDir {
            field: "scratch_dir",
            path: config.scratch_dir.clone(),
        },
    ];
    if config.stage_to_tmpfs {
        dirs.push(WrittenDir {
            field: "tmpfs_path",
            path: config.tmpfs_path.clone(),
        });
    }
    dirs
}

/// How much space a claim needs in each written directory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SpaceNeed {
    /// `min_free_gb`, as configured (for the reason text).
    pub(crate) min_free_gb: f64,
    pub(crate) min_free_bytes: u64,
    /// The next group's input size (0 when nothing is due).
    pub(crate) input_bytes: u64,
    pub(crate) factor: f64,
}

impl SpaceNeed {
    pub(crate) fn new(config: &StreamingConfig, input_bytes: u64) -> Self {
        Self {
            min_free_gb: config.min_free_gb,
            min_free_bytes: config.min_free_bytes(),
            input_bytes,
            factor: config.free_space_factor.max(0.0),
        }
    }

    fn needed(&self) -> u64 {
        self.min_free_bytes
            .max((self.input_bytes as f64 * self.factor) as u64)
    }
}

/// A written directory with less free space than a claim needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shortage {
    pub(crate) dir: WrittenDir,
    pub(crate) free: u64,
    pub(crate) need: SpaceNeed,
}

impl Shortage {
    /// "/data/ms (output_dir) has 1.2 GiB free, needs 9.3 GiB (min_free_gb = 10;
    /// next group's input 2.1 GiB x free_space_factor 2)".
    pub(crate) fn reason(&self) -> String {
        format!(
            "{} ({}) has {} free, needs {} (min_free_gb = {}; next group's input {} x \
             free_space_factor {})",
            self.dir.path.display(),
            self.dir.field,
            bytes_text(self.free),
            bytes_text(self.need.needed()),
            self.need.min_free_gb,
            bytes_text(self.need.input_bytes),
            self.need.factor
        )
    }
}

fn bytes_text(bytes: u64) -> String {
    scaled_bytes(bytes, &["B", "KiB", "MiB", "GiB", "TiB"], " ")
}

/// Free bytes (for unprivileged users: `f_bavail`) on the filesystem of `path`.
fn free_bytes(path: &Path) -> nix::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(path)?;
    Ok((stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64))
}

/// The first written directory short of `need`. Blocking (statvfs). A directory
/// that cannot be measured does not pause claiming: the conversion reports what
/// is wrong with it.
pub(crate) fn find_shortage(dirs: &[WrittenDir], need: SpaceNeed) -> Option<Shortage> {
    dirs.iter().find_map(|dir| match free_bytes(&dir.path) {
        Ok(free) if free < need.needed() => Some(Shortage {
            dir: dir.clone(),
            free,
            need,
        }),
        Ok(_) => None,
        Err(errno) => {
            tracing::debug!(
                "cannot measure free space of {}: {errno}",
                dir.path.display()
            );
            None
        }
    })
}

/// The size of a group's input files; a file that cannot be read counts 0
/// (its conversion reports it). Blocking.
pub(crate) fn input_bytes(files: &[(u32, PathBuf)]) -> u64 {
    files
        .iter()
        .filter_map(|(_, path)| std::fs::metadata(path).ok())
        .map(|meta| meta.len())
        .sum()
}

/// Whether a failed conversion ran out of space, and where: a written directory
/// that is full now (before its partial output is removed), else the one the
/// error names, else the first if the error says ENOSPC without a path. Blocking.
pub(crate) fn no_space_dir(error: &str, dirs: &[WrittenDir]) -> Option<WrittenDir> {
    if let Some(full) = dirs
        .iter()
        .find(|dir| free_bytes(&dir.path).is_ok_and(|free| free < FULL_BELOW_BYTES))
    {
        return Some(full.clone());
    }
    let lower = error.to_lowercase();
    if !NO_SPACE_MARKERS.iter().any(|marker| lower.contains(marker)) {
        return None;
    }
    dirs.iter()
        .filter(|dir| error.contains(&*dir.path.to_string_lossy()))
        .max_by_key(|dir| dir.path.as_os_str().len())
        .or_else(|| dirs.first())
        .cloned()
}

/// Turns a failed conversion that ran out of space into [`ConvertError::NoSpace`].
pub(crate) async fn classify_failure(
    result: Result<crate::convert::ConvertOutput, ConvertError>,
    dirs: Vec<WrittenDir>,
) -> Result<crate::convert::ConvertOutput, ConvertError> {
    let error = match &result {
        Err(ConvertError::Failed(error)) => error.clone(),
        _ => return result,
    };
    let found = tokio::task::spawn_blocking(move || no_space_dir(&error, &dirs)).await;
    match (result, found) {
        (Err(ConvertError::Failed(cause)), Ok(Some(dir))) => Err(ConvertError::NoSpace {
            dir: dir.field.to_string(),
            path: dir.path,
            cause,
        }),
        (result, _) => result,
    }
}

/// Whether the worker claims, as last written to the heartbeat row.
#[derive(Debug, Default)]
pub(crate) enum ClaimGate {
    /// Nothing written by this run yet (a previous run may have left a pause).
    #[default]
    Unknown,
    Open,
    Paused {
        pause: ClaimPause,
        since: Instant,
    },
}

impl Worker {
    /// Checks free space for the next due group; `true` when claiming may go on.
    /// Writes, logs and announces only changes of the pause.
    pub(crate) async fn space_for_next_claim(&mut self) -> Result<bool, WorkerError> {
        let next = with_queue(&self.queue, |q| q.peek_next_due(unix_now())).await?;
        let dirs = written_dirs(&self.config);
        let config = self.config.clone();
        let shortage = tokio::task::spawn_blocking(move || {
            let input = next.map(|files| input_bytes(&files)).unwrap_or(0);
            find_shortage(&dirs, SpaceNeed::new(&config, input))
        })
        .await
        .map_err(|source| WorkerError::Task {
            task: "free-space check",
            source,
        })?;
        match (shortage, &self.claim_gate) {
            (None, ClaimGate::Open) => Ok(true),
            (None, _) => {
                with_queue(&self.queue, |q| q.set_claim_pause(None)).await?;
                if let ClaimGate::Paused { pause, since } = &self.claim_gate {
                    tracing::info!(
                        dir = %pause.dir,
                        "space returned: claiming conversions again (paused for {:.0} s)",
                        since.elapsed().as_secs_f64()
                    );
                    self.status_dirty = true;
                }
                self.claim_gate = ClaimGate::Open;
                Ok(true)
            }
            (Some(shortage), ClaimGate::Paused { pause, .. })
                if pause.dir == shortage.dir.field =>
            {
                Ok(false)
            }
            (Some(shortage), _) => {
                let pause = ClaimPause {
                    dir: shortage.dir.field.to_string(),
                    reason: shortage.reason(),
                    since: unix_now(),
                };
                let written = pause.clone();
                with_queue(&self.queue, move |q| q.set_claim_pause(Some(&written))).await?;
                tracing::warn!(
                    dir = %pause.dir,
                    "claiming paused, groups stay pending: {}",
                    pause.reason
                );
                let status = format!("claiming paused: {}", pause.reason);
                let _ = sd_notify::notify(&[NotifyState::Status(&status)]);
                self.claim_gate = ClaimGate::Paused {
                    pause,
                    since: Instant::now(),
                };
                Ok(false)
            }
        }
    }

    /// A conversion that ran out of space: back to `pending` after the back-off,
    /// its retries untouched.
    pub(crate) async fn defer_no_space(
        &mut self,
        group: &ClaimedGroup,
        error: String,
    ) -> Result<(), WorkerError> {
        let id = group.group_id.clone();
        let attempt = group.attempt;
        let delay = self.config.retry_backoff_s;
        let message = error.clone();
        with_queue(&self.queue, move |q| {
            q.defer_attempt(&id, attempt, &message, delay, unix_now())
        })
        .await?;
        tracing::warn!(
            group_id = %group.group_id,
            retry_count = group.retry_count,
            "conversion failed: {error}; partial output removed, tried again in {delay:.0} s \
             (not counted as a retry)"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(root: &Path) -> Vec<WrittenDir> {
        vec![
            WrittenDir {
                field: "output_dir",
                path: root.join("out"),
            },
            WrittenDir {
                field: "scratch_dir",
                path: root.join("out").join("scratch"),
            },
        ]
    }

    #[test]
    fn need_is_the_larger_of_the_floor_and_the_scaled_input() {
        let config = StreamingConfig {
            min_free_gb: 10.0,
            free_space_factor: 2.0,
            ..StreamingConfig::default()
        };
        assert_eq!(SpaceNeed::new(&config, 1_000).needed(), 10_000_000_000);
        assert_eq!(
            SpaceNeed::new(&config, 6_000_000_000).needed(),
            12_000_000_000
        );
    }

    #[test]
    fn a_directory_with_less_than_needed_is_named_with_free_and_needed() {
        let root = tempfile::tempdir().unwrap();
        let dirs = dirs(root.path());
        std::fs::create_dir_all(&dirs[1].path).unwrap();
        let nothing = SpaceNeed {
            min_free_gb: 0.0,
            min_free_bytes: 0,
            input_bytes: 0,
            factor: 2.0,
        };
        assert_eq!(find_shortage(&dirs, nothing), None);
        let too_much = SpaceNeed {
            min_free_gb: 1e9,
            min_free_bytes: u64::MAX / 2,
            ..nothing
        };
        let shortage = find_shortage(&dirs, too_much).unwrap();
        assert_eq!(shortage.dir.field, "output_dir");
        let reason = shortage.reason();
        assert!(
            reason.starts_with(&format!("{} (output_dir) has ", dirs[0].path.display())),
            "{reason}"
        );
        assert!(reason.contains(" free, needs "), "{reason}");
        assert!(reason.contains("(min_free_gb = 1000000000;"), "{reason}");
    }

    #[test]
    fn enospc_is_recognised_and_pinned_to_the_directory_it_names() {
        let root = tempfile::tempdir().unwrap();
        let dirs = dirs(root.path());
        let scratch_error = format!(
            "converter failed (exit code 1): OSError: [Errno 28] No space left on device: '{}/x.ms'",
            dirs[1].path.display()
        );
        assert_eq!(
            no_space_dir(&scratch_error, &dirs).map(|d| d.field),
            Some("scratch_dir"),
            "the longest matching path wins"
        );
        assert_eq!(
            no_space_dir("write failed (os error 28)", &dirs).map(|d| d.field),
            Some("output_dir")
        );
        assert_eq!(
            no_space_dir("sb03 is not a UVH5 file", &dirs).map(|d| d.field),
            None
        );
    }

    #[test]
    fn input_size_sums_the_files_and_skips_missing_ones() {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("a");
        std::fs::write(&a, [0u8; 300]).unwrap();
        let files = vec![(0, a), (1, root.path().join("missing"))];
        assert_eq!(input_bytes(&files), 300);
    }
}
