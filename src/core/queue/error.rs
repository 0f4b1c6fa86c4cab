//! What can go wrong with the queue DB.

use std::path::PathBuf;

use super::GroupState;
use super::state::UnknownStored;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue DB {0} does not exist (has the worker ever run?)")]
    Missing(PathBuf),
    #[error(
        "queue DB has schema version {found}, newer than this build supports ({supported}); upgrade contimg"
    )]
    NewerSchema { found: i64, supported: i64 },
    #[error("group {0} not found")]
    UnknownGroup(String),
    #[error("group {group_id} is {state}, expected {expected}")]
    WrongState {
        group_id: String,
        state: GroupState,
        expected: GroupState,
    },
    /// Retention already removed (or archived) the group's inputs, so a retry
    /// could only fail again for missing files.
    #[error(
        "group {group_id} cannot be retried: retention removed its input files at {removed_at} (unix time)"
    )]
    InputsRemoved { group_id: String, removed_at: f64 },
    /// A stored state, stage or outcome this build does not know: a DB written
    /// by something else, or by a newer contimg with the same schema version.
    #[error("queue DB column {column} holds {value:?}, which this build does not know")]
    UnknownValue { column: String, value: String },
    #[error("queue DB error: {0}")]
    Sqlite(#[source] rusqlite::Error),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A queue call on the blocking pool panicked or was cancelled.
    #[error("queue task failed: {source}")]
    Task { source: tokio::task::JoinError },
    /// An earlier call panicked while holding the writer.
    #[error("queue lock poisoned by an earlier failed call")]
    Poisoned,
}

impl From<rusqlite::Error> for QueueError {
    fn from(err: rusqlite::Error) -> Self {
        if let rusqlite::Error::FromSqlConversionFailure(_, _, inner) = &err
            && let Some(unknown) = inner.downcast_ref::<UnknownStored>()
        {
            return QueueError::UnknownValue {
                column: unknown.column.to_string(),
                value: unknown.value.clone(),
            };
        }
        QueueError::Sqlite(err)
    }
}

impl QueueError {
    /// Names `column` in an unknown-value error, for a value read from a column
    /// other than its type's usual one (`late_files.group_state`).
    pub(super) fn in_column(self, column: &str) -> Self {
        match self {
            QueueError::UnknownValue { value, .. } => QueueError::UnknownValue {
                column: column.to_string(),
                value,
            },
            other => other,
        }
    }

    /// The filesystem holding the queue DB is full: SQLite's "database or disk
    /// is full" (`SQLITE_FULL`), a shared-memory file it could not grow, or
    /// ENOSPC/EDQUOT on a file next to the DB. The worker pauses on these
    /// instead of exiting, since they heal when space returns.
    pub fn is_disk_full(&self) -> bool {
        match self {
            QueueError::Sqlite(rusqlite::Error::SqliteFailure(err, _)) => {
                err.code == rusqlite::ErrorCode::DiskFull
                    || err.extended_code == rusqlite::ffi::SQLITE_IOERR_SHMSIZE
            }
            QueueError::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(nix::libc::ENOSPC | nix::libc::EDQUOT)
            ),
            _ => false,
        }
    }
}
