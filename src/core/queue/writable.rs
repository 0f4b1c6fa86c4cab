//! Whether the worker could write the queue DB now (permissions, free space).

use std::path::Path;

use crate::units::scaled_bytes;

/// Below this much free space the queue DB's filesystem counts as full: SQLite
/// needs room for WAL frames and a checkpoint, not just one page.
pub const STATE_DIR_MIN_FREE_BYTES: u64 = 4 * 1024 * 1024;

/// Whether the worker could write the queue DB now: the file (and its WAL and
/// shared-memory files, when present) and its directory are writable by this
/// process, and the filesystem has at least [`STATE_DIR_MIN_FREE_BYTES`] free.
/// `Ok` says how much is free; `Err` says what is wrong, naming the path ("disk
/// full: ..."). Checked with this process's credentials: run the CLI as the
/// worker's user for an exact answer. Blocking (statvfs).
pub fn probe_queue_db_writable(queue_db: &Path) -> Result<String, String> {
    use nix::unistd::{AccessFlags, access};
    let dir = match queue_db.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut files = vec![queue_db.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = queue_db.as_os_str().to_owned();
        name.push(suffix);
        files.push(name.into());
    }
    for file in &files {
        // A DB not created yet is created in the directory checked below; the
        // WAL and shm files exist only while a connection is open.
        if !file.exists() {
            continue;
        }
        if let Err(errno) = access(file.as_path(), AccessFlags::W_OK) {
            return Err(format!("not writable: {}: {errno}", file.display()));
        }
    }
    if let Err(errno) = access(dir, AccessFlags::W_OK | AccessFlags::X_OK) {
        return Err(format!("not writable: {}: {errno}", dir.display()));
    }
    let stat = nix::sys::statvfs::statvfs(dir)
        .map_err(|errno| format!("cannot stat the filesystem of {}: {errno}", dir.display()))?;
    let free = (stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64);
    if free < STATE_DIR_MIN_FREE_BYTES {
        return Err(format!(
            "disk full: {} has {} free (needs at least {})",
            dir.display(),
            human_bytes(free),
            human_bytes(STATE_DIR_MIN_FREE_BYTES)
        ));
    }
    Ok(format!(
        "writable, {} free in {}",
        human_bytes(free),
        dir.display()
    ))
}

/// Health details spell sizes with binary unit names ("41.2 GiB").
fn human_bytes(bytes: u64) -> String {
    scaled_bytes(bytes, &["B", "KiB", "MiB", "GiB", "TiB"], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_details_use_binary_unit_names() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(4 * 1024 * 1024), "4.0 MiB");
        assert_eq!(human_bytes(44_238_597_734), "41.2 GiB");
    }

    #[test]
    fn probe_names_the_directory_and_accepts_a_db_not_created_yet() {
        let dir = tempfile::tempdir().unwrap();
        let detail = probe_queue_db_writable(&dir.path().join("ingest.sqlite3")).unwrap();
        assert!(
            detail.contains(&dir.path().display().to_string()),
            "{detail}"
        );
        let missing_dir = dir.path().join("absent").join("ingest.sqlite3");
        assert!(probe_queue_db_writable(&missing_dir).is_err());
    }
}
