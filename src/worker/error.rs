//! Why the worker stops. Each variant names what failed; the binary turns it
//! into the exit code systemd acts on (see [`WorkerError::exit_code`]).

use std::path::PathBuf;

use contimg_core::config::ConfigError;
use contimg_core::queue::QueueError;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// One of the directories the worker writes to (input, output, scratch,
    /// tmpfs staging, the queue DB's) cannot be created.
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The instance lock next to the queue DB cannot be opened or taken (other
    /// than because another worker holds it: that is [`WorkerError::AlreadyRunning`]).
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another contimg-stream (PID {pid}) is already using the queue DB {}", queue_db.display())]
    AlreadyRunning { queue_db: PathBuf, pid: String },
    /// A signal handler (SIGTERM, SIGINT, SIGHUP) cannot be installed.
    #[error("cannot handle {signal}: {source}")]
    Signal {
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Work moved to the blocking pool (a directory scan, admission, file
    /// checks) panicked or was cancelled.
    #[error("the {task} task failed: {source}")]
    Task {
        task: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl WorkerError {
    /// Process exit code: 2 for configuration problems (systemd's
    /// `RestartPreventExitStatus=2` then stops a restart loop), 1 otherwise
    /// (docs/operations.md, "Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            WorkerError::Config(_) => 2,
            WorkerError::Queue(_)
            | WorkerError::CreateDir { .. }
            | WorkerError::Lock { .. }
            | WorkerError::AlreadyRunning { .. }
            | WorkerError::Signal { .. }
            | WorkerError::Task { .. } => 1,
        }
    }

    /// Whether this is the queue DB's filesystem being full (see
    /// [`QueueError::is_disk_full`]): the worker pauses instead of exiting.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, WorkerError::Queue(err) if err.is_disk_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_error() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::PermissionDenied)
    }

    /// systemd's RestartPreventExitStatus=2 relies on exactly the configuration
    /// errors exiting 2 (docs/operations.md, "Exit codes").
    #[test]
    fn only_configuration_errors_exit_2() {
        let config = WorkerError::Config(ConfigError::Read {
            path: PathBuf::from("/etc/contimg/streaming.toml"),
            source: io_error(),
        });
        assert_eq!(config.exit_code(), 2);
        let others = [
            WorkerError::CreateDir {
                path: PathBuf::from("/data/incoming"),
                source: io_error(),
            },
            WorkerError::Lock {
                path: PathBuf::from("/var/lib/contimg/queue.db.lock"),
                source: io_error(),
            },
            WorkerError::AlreadyRunning {
                queue_db: PathBuf::from("/var/lib/contimg/queue.db"),
                pid: "42".into(),
            },
            WorkerError::Signal {
                signal: "SIGTERM",
                source: io_error(),
            },
        ];
        for err in others {
            assert_eq!(err.exit_code(), 1, "{err}");
        }
    }

    #[test]
    fn messages_name_what_failed() {
        let err = WorkerError::CreateDir {
            path: PathBuf::from("/data/incoming"),
            source: io_error(),
        };
        assert_eq!(
            err.to_string(),
            "cannot create /data/incoming: permission denied"
        );
    }
}
