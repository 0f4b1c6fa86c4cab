//! The end of a group attempt's batch-job log (the Slurm executor writes each
//! attempt's stdout and stderr to its own file), for `contimgctl logs --group`
//! and `GET /api/streaming/groups/{id}/log`. The path is always the one the worker
//! recorded in the queue DB, never one a caller names.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use contimg_core::queue::GroupDetail;

/// How much of a log is read when the caller does not say.
pub const DEFAULT_TAIL_BYTES: u64 = 64 * 1024;
/// The most a caller may ask for: a log is shown, not downloaded.
pub const MAX_TAIL_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JobLogError {
    #[error("group {group_id} has no attempt {attempt}")]
    NoSuchAttempt { group_id: String, attempt: u32 },
    #[error(
        "group {group_id} has no job log: no attempt of it ran as a batch job \
         (the local executor logs to the worker's journal: contimgctl logs --group)"
    )]
    NoJobLog { group_id: String },
    #[error("the job log {path} of group {group_id} attempt {attempt} does not exist (yet)")]
    Missing {
        group_id: String,
        attempt: u32,
        path: PathBuf,
    },
    #[error("cannot read the job log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The last bytes of one attempt's job log.
#[derive(Debug, Clone, PartialEq)]
pub struct JobLogTail {
    pub group_id: String,
    pub attempt: u32,
    pub job_id: Option<String>,
    pub path: PathBuf,
    pub size_bytes: u64,
    /// Only the last `max_bytes` were read.
    pub truncated: bool,
    pub text: String,
}

/// Reads the end of `attempt`'s job log, or of the latest attempt that has one.
/// Blocking (file I/O).
pub fn read_attempt_log(
    detail: &GroupDetail,
    attempt: Option<u32>,
    max_bytes: u64,
) -> Result<JobLogTail, JobLogError> {
    let group_id = &detail.summary.group_id;
    let with_log = |a: &&contimg_core::queue::Attempt| {
        a.job.as_ref().is_some_and(|job| job.log_path.is_some())
    };
    let chosen = match attempt {
        Some(number) => {
            let found = detail.attempts.iter().find(|a| a.attempt == number);
            let found = found.ok_or_else(|| JobLogError::NoSuchAttempt {
                group_id: group_id.clone(),
                attempt: number,
            })?;
            Some(found).filter(with_log)
        }
        None => detail.attempts.iter().rev().find(with_log),
    };
    let Some((chosen, job)) = chosen.and_then(|a| a.job.as_ref().map(|job| (a, job))) else {
        return Err(JobLogError::NoJobLog {
            group_id: group_id.clone(),
        });
    };
    let Some(path) = job.log_path.as_deref().map(PathBuf::from) else {
        return Err(JobLogError::NoJobLog {
            group_id: group_id.clone(),
        });
    };
    let io = |source: std::io::Error| JobLogError::Io {
        path: path.clone(),
        source,
    };
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(JobLogError::Missing {
                group_id: group_id.clone(),
                attempt: chosen.attempt,
                path,
            });
        }
        Err(err) => return Err(io(err)),
    };
    let size_bytes = file.metadata().map_err(io)?.len();
    let max_bytes = max_bytes.clamp(1, MAX_TAIL_BYTES);
    let start = size_bytes.saturating_sub(max_bytes);
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut bytes = Vec::with_capacity(usize::try_from(max_bytes).unwrap_or(0));
    file.take(max_bytes).read_to_end(&mut bytes).map_err(io)?;
    Ok(JobLogTail {
        group_id: group_id.clone(),
        attempt: chosen.attempt,
        job_id: job.job_id.clone(),
        path: path.clone(),
        size_bytes,
        truncated: start > 0,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use contimg_core::queue::{Attempt, AttemptJob, GroupState, GroupSummary};

    fn detail(attempts: Vec<Attempt>) -> GroupDetail {
        GroupDetail {
            summary: GroupSummary {
                group_id: "g".into(),
                state: GroupState::Failed,
                received_at: 0.0,
                last_update: 0.0,
                expected_subbands: None,
                subbands: 0,
                retry_count: 0,
                error: None,
                processing_stage: None,
                next_attempt_at: None,
                started_at: None,
                completed_at: None,
                output_path: None,
                job: None,
            },
            files: Vec::new(),
            duplicates: Vec::new(),
            timings: None,
            attempts,
        }
    }

    fn attempt(number: u32, log: Option<&std::path::Path>) -> Attempt {
        Attempt {
            attempt: number,
            started_at: 0.0,
            finished_at: None,
            outcome: None,
            error: None,
            job: log.map(|path| AttemptJob {
                executor: "slurm".into(),
                job_id: Some(format!("{}", 40 + number)),
                state: Some("FAILED".into()),
                node: Some("n2".into()),
                exit_code: Some(1),
                log_path: Some(path.display().to_string()),
                submitted_at: None,
            }),
        }
    }

    #[test]
    fn the_latest_attempts_log_and_its_last_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("1.log");
        let second = dir.path().join("2.log");
        std::fs::write(&first, "first attempt\n").unwrap();
        std::fs::write(&second, "0123456789tail\n").unwrap();
        let group = detail(vec![attempt(1, Some(&first)), attempt(2, Some(&second))]);
        let tail = read_attempt_log(&group, None, 5).unwrap();
        assert_eq!((tail.attempt, tail.text.as_str()), (2, "tail\n"));
        assert!(tail.truncated);
        assert_eq!(tail.size_bytes, 15);
        assert_eq!(tail.job_id.as_deref(), Some("42"));
        let whole = read_attempt_log(&group, Some(1), DEFAULT_TAIL_BYTES).unwrap();
        assert_eq!(
            (whole.text.as_str(), whole.truncated),
            ("first attempt\n", false)
        );
        assert!(matches!(
            read_attempt_log(&group, Some(3), 10),
            Err(JobLogError::NoSuchAttempt { attempt: 3, .. })
        ));
        std::fs::remove_file(&second).unwrap();
        assert!(matches!(
            read_attempt_log(&group, None, 10),
            Err(JobLogError::Missing { attempt: 2, .. })
        ));
        let local = detail(vec![attempt(1, None)]);
        assert!(matches!(
            read_attempt_log(&local, None, 10),
            Err(JobLogError::NoJobLog { .. })
        ));
    }
}
