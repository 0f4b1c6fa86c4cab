//! Queue DB calls from async code. rusqlite blocks, so every call runs on tokio's
//! blocking pool; this is the one place that hops there and turns a task that
//! panicked or was cancelled into a [`QueueError`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::{Queue, QueueError, QueueReader};

/// The worker's single writer, shared by its tasks (one call at a time).
pub type SharedQueue = Arc<Mutex<Queue>>;

/// Runs `work` on the blocking pool and waits for it.
async fn off_runtime<T, F>(work: F) -> Result<T, QueueError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, QueueError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|source| QueueError::Task { source })?
}

/// Opens (creating and migrating if needed) the writer off the async threads.
pub async fn open_shared(path: PathBuf) -> Result<SharedQueue, QueueError> {
    let queue = off_runtime(move || Queue::open(&path)).await?;
    Ok(Arc::new(Mutex::new(queue)))
}

/// Runs `work` against the locked writer off the async threads.
pub async fn with_queue<T, F>(queue: &SharedQueue, work: F) -> Result<T, QueueError>
where
    T: Send + 'static,
    F: FnOnce(&mut Queue) -> Result<T, QueueError> + Send + 'static,
{
    let queue = Arc::clone(queue);
    off_runtime(move || {
        let mut guard = queue.lock().map_err(|_| QueueError::Poisoned)?;
        work(&mut guard)
    })
    .await
}

/// Opens a [`QueueReader`] on `path` and runs `read` against it, off the async
/// threads (each call opens its own read-only connection).
pub async fn with_reader<T, F>(path: PathBuf, read: F) -> Result<T, QueueError>
where
    T: Send + 'static,
    F: FnOnce(&QueueReader) -> Result<T, QueueError> + Send + 'static,
{
    off_runtime(move || read(&QueueReader::open(&path)?)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writer_and_reader_calls_run_and_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite3");
        let queue = open_shared(path.clone()).await.unwrap();
        with_queue(&queue, |q| q.heartbeat(42, 1.0, 2.0))
            .await
            .unwrap();
        let beat = with_reader(path, |r| r.heartbeat()).await.unwrap();
        assert_eq!(beat.map(|b| b.pid), Some(42));
    }

    #[tokio::test]
    async fn a_panicking_call_is_a_queue_error_and_poisons_later_calls() {
        let dir = tempfile::tempdir().unwrap();
        let queue = open_shared(dir.path().join("q.sqlite3")).await.unwrap();
        let panicked = with_queue(&queue, |_| -> Result<(), QueueError> {
            panic!("converter bug")
        })
        .await;
        assert!(
            matches!(panicked, Err(QueueError::Task { .. })),
            "{panicked:?}"
        );
        let after = with_queue(&queue, |q| q.stats(0.0)).await;
        assert!(matches!(after, Err(QueueError::Poisoned)), "{after:?}");
    }

    #[tokio::test]
    async fn a_missing_db_is_reported_by_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.sqlite3");
        let result = with_reader(missing.clone(), |r| r.stats(0.0)).await;
        assert!(
            matches!(&result, Err(QueueError::Missing(p)) if *p == missing),
            "{result:?}"
        );
    }
}
