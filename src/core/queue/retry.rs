//! Retry requests: how the CLI and the API ask the worker, the only writer, to
//! retry a failed group.

use std::path::{Path, PathBuf};

use super::QueueError;

/// Asks the worker (the only writer) to retry a failed group: a request file in
/// `<state_dir>/requests/retry/`, picked up within one worker poll interval.
pub fn request_retry(state_dir: &Path, group_id: &str) -> Result<PathBuf, QueueError> {
    if group_id.is_empty() || group_id.contains('/') || group_id.starts_with('.') {
        return Err(QueueError::UnknownGroup(group_id.to_string()));
    }
    let dir = retry_request_dir(state_dir);
    std::fs::create_dir_all(&dir).map_err(|source| QueueError::Io {
        path: dir.clone(),
        source,
    })?;
    let path = dir.join(group_id);
    std::fs::write(&path, b"").map_err(|source| QueueError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

pub fn retry_request_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("requests").join("retry")
}
