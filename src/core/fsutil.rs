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

/// A file [`place_copy_in`] put into a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedCopy {
    pub path: PathBuf,
    pub bytes: u64,
    /// A hard link (same filesystem) rather than a copy.
    pub linked: bool,
}

/// Puts the regular file `source` into `dir` under its own name, durably, and
/// leaves `source` for the caller to remove: a hard link when both are on one
/// filesystem, else a copy written beside the target, fsynced, then linked into
/// place. Never follows a symlink at `source` (not a regular file: an error) and
/// never replaces anything in `dir`; a target that already is this file (a link
/// from an interrupted run) or a complete copy of its size is accepted, since
/// only finished copies ever get the name.
pub fn place_copy_in(source: &Path, dir: &Path) -> std::io::Result<PlacedCopy> {
    use std::io::ErrorKind;
    let name = source.file_name().ok_or_else(|| {
        std::io::Error::new(
            ErrorKind::InvalidInput,
            format!("{} has no file name", source.display()),
        )
    })?;
    let target = dir.join(name);
    let meta = fs::symlink_metadata(source)?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            format!("{} is not a regular file", source.display()),
        ));
    }
    let linked = match fs::hard_link(source, &target) {
        Ok(()) => true,
        Err(err) if err.raw_os_error() == Some(libc::EXDEV) => {
            copy_then_link(source, &target)?;
            false
        }
        Err(err) if err.kind() == ErrorKind::AlreadyExists => false,
        Err(err) => return Err(err),
    };
    // Whatever now has the name must be this file (linked) or a same-size
    // regular file: not a symlink that a swap of `source` slipped in.
    let placed = fs::symlink_metadata(&target)?;
    let ours = placed.file_type().is_file()
        && (same_inode(&placed, &meta) || (!linked && placed.len() == meta.len()));
    if !ours {
        if linked {
            let _ = fs::remove_file(&target);
        }
        return Err(std::io::Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} already exists and is not a copy of {}",
                target.display(),
                source.display()
            ),
        ));
    }
    fs::File::open(dir)?.sync_all()?;
    Ok(PlacedCopy {
        path: target,
        bytes: meta.len(),
        linked,
    })
}

fn copy_then_link(source: &Path, target: &Path) -> std::io::Result<()> {
    let mut from = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(source)?;
    let from_meta = from.metadata()?;
    if !from_meta.file_type().is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", source.display()),
        ));
    }
    let mut temp = AtomicFile::beside(target)?;
    std::io::copy(&mut from, temp.file())?;
    if let Ok(modified) = from_meta.modified() {
        let _ = temp.file().set_modified(modified);
    }
    temp.file().sync_all()?;
    // A link, unlike a rename, never replaces what has the name already; the
    // temporary is then dropped (unlinked), the target keeps the inode.
    match fs::hard_link(temp.temp_path(), target) {
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Renames `path` to a fresh hidden name in its own directory
/// (`.<tag>-<pid>-<n>`), refusing to replace anything, so a tree can be
/// deleted at leisure after it stopped being visible under its name.
pub fn rename_aside(path: &Path, tag: &str) -> std::io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let aside = parent_dir(path).join(format!(
        ".{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        path,
        nix::fcntl::AT_FDCWD,
        &aside,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    )
    .map_err(std::io::Error::from)?;
    Ok(aside)
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
    fn place_copy_in_links_without_replacing_and_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("archive");
        fs::create_dir(&archive).unwrap();
        let source = dir.path().join("a.hdf5");
        fs::write(&source, b"subband").unwrap();
        let placed = place_copy_in(&source, &archive).unwrap();
        assert_eq!((placed.bytes, placed.linked), (7, true));
        assert_eq!(fs::read(archive.join("a.hdf5")).unwrap(), b"subband");
        // Again (an interrupted run): the same inode is accepted.
        assert!(place_copy_in(&source, &archive).is_ok());
        // A different file already there is never replaced.
        let other = dir.path().join("b.hdf5");
        fs::write(&other, b"other!!!").unwrap();
        fs::write(archive.join("b.hdf5"), b"theirs").unwrap();
        let err = place_copy_in(&other, &archive).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(fs::read(archive.join("b.hdf5")).unwrap(), b"theirs");
        // A symlink is not followed.
        let link = dir.path().join("c.hdf5");
        std::os::unix::fs::symlink(&other, &link).unwrap();
        assert!(place_copy_in(&link, &archive).is_err());
        assert!(!archive.join("c.hdf5").exists());
    }

    #[test]
    fn the_copy_path_writes_a_complete_file_and_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("s.hdf5");
        fs::write(&source, vec![7u8; 100_000]).unwrap();
        let target = dir.path().join("out").join("s.hdf5");
        fs::create_dir(target.parent().unwrap()).unwrap();
        copy_then_link(&source, &target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), vec![7u8; 100_000]);
        let names: Vec<_> = fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["s.hdf5"]);
    }

    #[test]
    fn rename_aside_hides_an_entry_under_a_fresh_name() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("leftover");
        fs::create_dir(&entry).unwrap();
        fs::write(entry.join("f"), b"x").unwrap();
        let aside = rename_aside(&entry, "gc").unwrap();
        assert!(!entry.exists());
        assert_eq!(fs::read(aside.join("f")).unwrap(), b"x");
        assert!(
            aside
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".gc-")
        );
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
