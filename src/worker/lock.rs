//! One worker per queue DB: an exclusive `flock` on `<queue_db>.lock`, held for
//! the whole run, with the holder's PID in the file for the error message.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::WorkerError;

/// How long a starting worker waits for a previous one to release the queue DB.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Takes an exclusive `flock` on `<queue_db>.lock` and writes our PID into it.
pub(crate) fn lock_queue(queue_db: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, WorkerError> {
    use std::io::{Read, Seek, Write};
    let mut lock_path = queue_db.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    if let Some(dir) = lock_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| WorkerError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|source| WorkerError::Lock {
            path: lock_path.clone(),
            source,
        })?;
    // A worker that was just killed can still hold the lock for a moment: its
    // threads release the file table after the main thread already shows as a
    // zombie. Wait a little before calling the queue busy.
    let deadline = Instant::now() + LOCK_WAIT;
    let mut file = file;
    loop {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let _ = lock.set_len(0);
                let _ = lock.rewind();
                let _ = writeln!(lock, "{}", std::process::id());
                return Ok(lock);
            }
            Err((mut busy, nix::errno::Errno::EWOULDBLOCK)) => {
                if Instant::now() >= deadline {
                    let mut holder = String::new();
                    let _ = busy.rewind();
                    let _ = busy.read_to_string(&mut holder);
                    return Err(WorkerError::AlreadyRunning {
                        queue_db: queue_db.to_path_buf(),
                        pid: holder.trim().to_string(),
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
                file = busy;
            }
            Err((_, errno)) => {
                return Err(WorkerError::Lock {
                    path: lock_path,
                    source: errno.into(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_holds_our_pid() {
        let dir = tempfile::tempdir().unwrap();
        let queue_db = dir.path().join("state/queue.db");
        let _lock = lock_queue(&queue_db).unwrap();
        let text = std::fs::read_to_string(dir.path().join("state/queue.db.lock")).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
    }

    #[test]
    fn an_unopenable_lock_file_is_a_lock_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let queue_db = dir.path().join("queue.db");
        let lock_path = dir.path().join("queue.db.lock");
        std::fs::create_dir(&lock_path).unwrap();
        match lock_queue(&queue_db) {
            Err(WorkerError::Lock { path, .. }) => assert_eq!(path, lock_path),
            other => panic!("expected a lock error, got {other:?}"),
        }
    }

    #[test]
    fn an_uncreatable_state_dir_is_a_create_dir_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"").unwrap();
        match lock_queue(&file.join("queue.db")) {
            Err(WorkerError::CreateDir { path, .. }) => assert_eq!(path, file),
            other => panic!("expected a create-dir error, got {other:?}"),
        }
    }
}
