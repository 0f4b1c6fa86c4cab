//! Atomic file replacement, the one implementation every writer uses: the
//! configuration, PID files, converter records, converter outputs, the merge's
//! HDF5 output and the simulator's subband files.
//!
//! The content goes to a temporary created fresh beside the target, and is
//! renamed over it once complete, so readers and crashes see the old or the new
//! file, never a mix. A symlink planted at the temporary or the final name never
//! redirects the write: the temporary is created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW` after unlinking whatever had its name (unlinking
//! a symlink removes the link, never its target), writers that need a path (HDF5)
//! get `/proc/self/fd/N` of that very inode, and the name is checked to still be
//! that inode before the rename (which replaces a symlink, it does not follow it).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Suffix of temporaries: anything with it is half-written by definition, and
/// crash recovery removes it.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Whether [`AtomicFile::commit`] makes the new content durable before and
/// after the rename (fsync of the file, then of the directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file before the rename and the directory after it.
    Durable,
    /// Rename only: for files that are cheap to recreate (simulated data).
    RenameOnly,
}

/// A file under construction, removed on drop unless committed.
#[derive(Debug)]
pub struct AtomicFile {
    temp: PathBuf,
    file: fs::File,
    committed: bool,
}

impl AtomicFile {
    /// A fresh temporary beside `target`: `.<name>.<pid>-<n>.partial`, unique
    /// among concurrent writers (threads or processes) of the same target.
    pub fn beside(target: &Path) -> std::io::Result<Self> {
        let name = target.file_name().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} has no file name", target.display()),
            )
        })?;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let temp = parent_dir(target).join(format!(
            ".{}.{}-{}{PARTIAL_SUFFIX}",
            name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        Self::at(temp)
    }

    /// A fresh temporary at exactly `temp` (a name the caller owns, such as the
    /// correlator-style `_incomplete` name). Whatever is at that name is
    /// unlinked first: a crashed run's leftover is garbage.
    pub fn at(temp: PathBuf) -> std::io::Result<Self> {
        let file = create_fresh(&temp)?;
        Ok(Self {
            temp,
            file,
            committed: false,
        })
    }

    /// The temporary's name.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The open temporary, for writing.
    pub fn file(&mut self) -> &mut fs::File {
        &mut self.file
    }

    /// A path that opens this very inode whatever the temporary name points to
    /// by then, for libraries that open files by name (HDF5). Checked, so a
    /// missing or fake /proc is an error rather than a write elsewhere.
    pub fn proc_fd_path(&self) -> std::io::Result<PathBuf> {
        use std::os::fd::AsRawFd;
        let proc_path = PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
        if same_inode(&fs::metadata(&proc_path)?, &self.file.metadata()?) {
            Ok(proc_path)
        } else {
            Err(std::io::Error::other(
                "/proc/self/fd does not lead to the temporary file (is /proc mounted?)",
            ))
        }
    }

    /// Gives the new file `target`'s current permissions, when `target` exists
    /// (e.g. 0640 set by packaging).
    pub fn keep_permissions_of(&self, target: &Path) -> std::io::Result<()> {
        match fs::metadata(target) {
            Ok(meta) => self.file.set_permissions(meta.permissions()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Renames the temporary over `target` once its name is checked to still be
    /// ours; with [`Durability::Durable`], fsyncs the file before and the
    /// directory after. Returns the size of the file.
    pub fn commit(mut self, target: &Path, durability: Durability) -> std::io::Result<u64> {
        if durability == Durability::Durable {
            self.file.sync_all()?;
        }
        let size = self.file.metadata()?.len();
        if !self.name_is_ours()? {
            return Err(std::io::Error::other(format!(
                "the temporary file {} was replaced while it was written",
                self.temp.display()
            )));
        }
        fs::rename(&self.temp, target)?;
        self.committed = true;
        if durability == Durability::Durable {
            fs::File::open(parent_dir(target))?.sync_all()?;
        }
        Ok(size)
    }

    /// True when the temporary name still names our file (not a symlink or
    /// another file put in its place).
    fn name_is_ours(&self) -> std::io::Result<bool> {
        let at_name = fs::symlink_metadata(&self.temp)?;
        Ok(at_name.file_type().is_file() && same_inode(&at_name, &self.file.metadata()?))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Only our own file: whatever else was put at the name is left alone.
        if !self.committed && self.name_is_ours().unwrap_or(false) {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Writes `bytes` to `path` (creating its directory) so that readers and
/// crashes see the old or the new content, never a mix; the existing file's
/// permissions are kept.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(parent_dir(path))?;
    let mut temp = AtomicFile::beside(path)?;
    temp.file().write_all(bytes)?;
    temp.keep_permissions_of(path)?;
    temp.commit(path, Durability::Durable).map(|_| ())
}

/// Creates `path` as a new, empty regular file of ours (mode 0644 before the
/// umask). Whatever is at that name is unlinked first, and the create refuses to
/// follow or reuse anything that appears there again.
pub fn create_fresh(path: &Path) -> std::io::Result<fs::File> {
    let _ = fs::remove_file(path);
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."))
}

fn same_inode(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_replaces_content_and_keeps_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub").join("streaming.toml");
        atomic_write(&target, b"old").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
        atomic_write(&target, b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let leftovers: Vec<_> = fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "streaming.toml")
            .collect();
        assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");
    }

    #[test]
    fn a_symlink_planted_at_the_temp_name_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let temp_name = dir.path().join("out_incomplete.hdf5");
        std::os::unix::fs::symlink(&victim, &temp_name).unwrap();
        let mut temp = AtomicFile::at(temp_name).unwrap();
        temp.file().write_all(b"data").unwrap();
        temp.commit(&dir.path().join("out.hdf5"), Durability::Durable)
            .unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(dir.path().join("out.hdf5")).unwrap(), b"data");
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let target = dir.path().join("group.json");
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        atomic_write(&target, b"manifest").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(fs::symlink_metadata(&target).unwrap().is_file());
    }

    #[test]
    fn a_temp_swapped_before_commit_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.uvh5");
        let temp = AtomicFile::beside(&target).unwrap();
        let temp_name = temp.temp_path().to_path_buf();
        fs::remove_file(&temp_name).unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &temp_name).unwrap();
        let err = temp.commit(&target, Durability::Durable).unwrap_err();
        assert!(err.to_string().contains("was replaced"), "{err}");
        assert!(!target.exists());
        // The planted link is not ours: drop left it in place.
        assert!(fs::symlink_metadata(&temp_name).unwrap().is_symlink());
    }

    #[test]
    fn an_uncommitted_temp_is_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let temp = AtomicFile::beside(&dir.path().join("out.uvh5")).unwrap();
        let name = temp.temp_path().to_path_buf();
        assert!(name.to_string_lossy().ends_with(PARTIAL_SUFFIX));
        drop(temp);
        assert!(!name.exists());
    }

    #[test]
    fn the_proc_fd_path_opens_the_temporary_itself() {
        let dir = tempfile::tempdir().unwrap();
        let temp = AtomicFile::beside(&dir.path().join("out.uvh5")).unwrap();
        let via_proc = temp.proc_fd_path().unwrap();
        fs::write(&via_proc, b"through proc").unwrap();
        assert_eq!(fs::read(temp.temp_path()).unwrap(), b"through proc");
    }
}
