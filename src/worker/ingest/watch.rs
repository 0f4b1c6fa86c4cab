//! Finding new subband files: inotify through `notify`, a directory scan used at
//! start-up and as a polling safety net, and the admission check every path
//! passes before it is registered.
//!
//! Admission trusts nothing about an entry but what the kernel says about it
//! relative to `input_dir`'s own file descriptor: the entry must be a regular
//! file directly inside the directory (`fstatat` without following symlinks,
//! then `openat` with `O_NOFOLLOW | O_NONBLOCK` and `fstat` on the open file, so
//! a FIFO is never waited on and a symlink swapped in between is refused).
//! Symlinks are refused whatever they point at: the correlator writes regular
//! files and renames them into place, so a link is never its work. Hard links
//! are accepted: the inode does live in `input_dir`.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::names::{
    NameRules, NameVerdict, SubbandName, classify_file_name, is_temporary_name, parse_subband_name,
};

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
    #[error("cannot read directory {path}: {source}")]
    Scan {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open input directory {path}: {source}")]
    OpenDir { path: PathBuf, source: Errno },
}

/// What identifies one version of a file: a replaced or rewritten file differs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub size: u64,
    /// Unix seconds.
    pub mtime: f64,
}

impl FileIdentity {
    fn of(stat: &FileStat) -> Self {
        Self {
            dev: stat.st_dev,
            ino: stat.st_ino,
            mode: stat.st_mode,
            size: u64::try_from(stat.st_size).unwrap_or(0),
            mtime: stat.st_mtime as f64 + stat.st_mtime_nsec as f64 / 1e9,
        }
    }
}

/// A regular file directly inside `input_dir` under a valid subband name.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub path: PathBuf,
    pub name: SubbandName,
    /// The file as admitted (from `fstat` on the opened file).
    pub identity: FileIdentity,
}

impl Candidate {
    /// Whether `path` still names the file that was admitted: the same inode,
    /// size and mtime, still a regular file (lstat, never following a link).
    /// Call it after inspection: a file swapped for a symlink or rewritten in
    /// between must be judged again, not registered on the old verdict.
    pub fn is_unchanged(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(&self.path).is_ok_and(|now| {
            now.file_type().is_file()
                && FileIdentity {
                    dev: now.dev(),
                    ino: now.ino(),
                    mode: now.mode(),
                    size: now.size(),
                    mtime: now.mtime() as f64 + now.mtime_nsec() as f64 / 1e9,
                } == self.identity
        })
    }
}

/// A directory entry that will not be registered, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub path: PathBuf,
    pub reason: String,
    pub size_bytes: Option<u64>,
    /// `None` when the entry could not be looked at (it is refused all the same).
    pub identity: Option<FileIdentity>,
}

/// The verdict on one path reported by the watcher or a scan.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    Subband(Candidate),
    /// A temp name: the correlator is still writing it.
    Temporary,
    /// Gone before it could be looked at (renamed away or deleted).
    Vanished,
    Refused(Refusal),
}

/// `input_dir`, held open so every check is relative to the directory itself.
pub struct InputDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl InputDir {
    pub fn open(path: &Path) -> Result<Self, WatchError> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| WatchError::OpenDir {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            fd,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Decides whether `path` may be registered: its name, its place and its type.
    pub fn admit(&self, path: &Path, rules: &NameRules) -> Admission {
        let refuse = |reason: String, identity: Option<FileIdentity>| {
            Admission::Refused(Refusal {
                path: path.to_path_buf(),
                reason,
                size_bytes: identity.map(|i| i.size),
                identity,
            })
        };
        let Some(name) = path.file_name() else {
            return refuse("not a file name".to_string(), None);
        };
        if path.parent() != Some(self.path.as_path()) {
            return refuse("not directly inside input_dir".to_string(), None);
        }
        let verdict = classify_file_name(name, rules);
        if verdict == NameVerdict::Temporary {
            return Admission::Temporary;
        }
        // Never follows a symlink: a link is judged as a link.
        let stat = match nix::sys::stat::fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) => return Admission::Vanished,
            Err(errno) => return refuse(format!("cannot stat: {}", errno.desc()), None),
        };
        let subband = match verdict {
            NameVerdict::Subband(subband) => subband,
            NameVerdict::Unrecognised(reason) => {
                return refuse(reason, Some(FileIdentity::of(&stat)));
            }
            NameVerdict::Temporary => return Admission::Temporary,
        };
        if let Some(kind) = not_regular(&stat) {
            let reason = if kind == "symbolic link" {
                match nix::fcntl::readlinkat(&self.fd, name) {
                    Ok(target) => format!(
                        "a symbolic link (to {target:?}); only regular files in input_dir are registered"
                    ),
                    Err(_) => "a symbolic link; only regular files in input_dir are registered"
                        .to_string(),
                }
            } else {
                format!("not a regular file ({kind})")
            };
            return refuse(reason, Some(FileIdentity::of(&stat)));
        }
        match self.open_regular(name) {
            Ok(opened) => Admission::Subband(Candidate {
                path: path.to_path_buf(),
                name: subband,
                identity: FileIdentity::of(&opened),
            }),
            Err(OpenRefusal::Vanished) => Admission::Vanished,
            Err(OpenRefusal::Refused(reason, opened)) => refuse(reason, opened),
        }
    }

    /// Checks a registered file again before it is read (e.g. by a converter):
    /// still a regular file directly inside the directory, not a symlink, not a
    /// FIFO. Returns the reason when it no longer is.
    pub fn recheck(&self, path: &Path) -> Result<FileIdentity, String> {
        let name = match path.file_name() {
            Some(name) if path.parent() == Some(self.path.as_path()) => name,
            _ => return Err("not directly inside input_dir".to_string()),
        };
        match nix::sys::stat::fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => {
                if let Some(kind) = not_regular(&stat) {
                    return Err(format!("no longer a regular file ({kind})"));
                }
            }
            Err(errno) => return Err(format!("cannot stat: {}", errno.desc())),
        }
        match self.open_regular(name) {
            Ok(stat) => Ok(FileIdentity::of(&stat)),
            Err(OpenRefusal::Vanished) => Err("the file is gone".to_string()),
            Err(OpenRefusal::Refused(reason, _)) => Err(reason),
        }
    }

    /// Opens `name` without following a symlink and without waiting on a FIFO,
    /// and checks on the open file that it is a regular file.
    fn open_regular(&self, name: &OsStr) -> Result<FileStat, OpenRefusal> {
        let file = nix::fcntl::openat(
            &self.fd,
            name,
            OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_NOCTTY
                | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
        let file = match file {
            Ok(file) => file,
            Err(Errno::ENOENT) => return Err(OpenRefusal::Vanished),
            // O_NOFOLLOW on a symlink swapped in after the first look.
            Err(Errno::ELOOP) => {
                return Err(OpenRefusal::Refused(
                    "a symbolic link; only regular files in input_dir are registered".into(),
                    None,
                ));
            }
            Err(errno) => {
                return Err(OpenRefusal::Refused(
                    format!("cannot open: {}", errno.desc()),
                    None,
                ));
            }
        };
        let stat = nix::sys::stat::fstat(&file).map_err(|errno| {
            OpenRefusal::Refused(format!("cannot stat the open file: {}", errno.desc()), None)
        })?;
        match not_regular(&stat) {
            Some(kind) => Err(OpenRefusal::Refused(
                format!("not a regular file ({kind})"),
                Some(FileIdentity::of(&stat)),
            )),
            None => Ok(stat),
        }
    }
}

enum OpenRefusal {
    Vanished,
    Refused(String, Option<FileIdentity>),
}

/// The kind of a non-regular file, `None` for a regular one.
fn not_regular(stat: &FileStat) -> Option<&'static str> {
    let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
    match kind {
        SFlag::S_IFREG => None,
        SFlag::S_IFLNK => Some("symbolic link"),
        SFlag::S_IFIFO => Some("FIFO"),
        SFlag::S_IFSOCK => Some("socket"),
        SFlag::S_IFCHR => Some("character device"),
        SFlag::S_IFBLK => Some("block device"),
        SFlag::S_IFDIR => Some("directory"),
        _ => Some("unknown file type"),
    }
}

/// Watches `dir` (not recursively) and sends every path that appears under a final
/// name: closed after writing, or renamed into place. Keep the returned
/// watcher alive as long as events are wanted.
pub fn watch_directory(
    dir: &Path,
    sender: mpsc::UnboundedSender<PathBuf>,
) -> Result<notify::RecommendedWatcher, WatchError> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // Not plain creation: a file written in place under its final name is
        // complete only at close; links and copies the events miss are found by
        // the poll scan.
        let relevant = matches!(
            event.kind,
            EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Modify(ModifyKind::Name(
                    RenameMode::To | RenameMode::Both | RenameMode::Any
                ))
        );
        if !relevant {
            return;
        }
        // For RenameMode::Both the destination is the last path.
        if let Some(path) = event.paths.last() {
            let _ = sender.send(path.clone());
        }
    })
    .map_err(|source| WatchError::Watch {
        path: dir.to_path_buf(),
        source,
    })?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError::Watch {
            path: dir.to_path_buf(),
            source,
        })?;
    Ok(watcher)
}

/// Every entry of `dir` except temp names: subband-shaped names first, oldest
/// timestamp first, then the rest by path. Nothing is judged here; each path
/// still goes through [`InputDir::admit`].
pub fn scan_directory(dir: &Path) -> Result<Vec<PathBuf>, WatchError> {
    let entries = std::fs::read_dir(dir).map_err(|source| WatchError::Scan {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut found: Vec<(Option<SubbandName>, PathBuf)> = entries
        .flatten()
        .filter(|entry| !is_temporary_name(&entry.file_name()))
        .map(|entry| {
            let name = entry.file_name().to_str().and_then(parse_subband_name);
            (name, entry.path())
        })
        .collect();
    found.sort_by(
        |(a_name, a_path), (b_name, b_path)| match (a_name, b_name) {
            (Some(a), Some(b)) => a
                .timestamp
                .total_cmp(&b.timestamp)
                .then(a.subband_idx.cmp(&b.subband_idx))
                .then_with(|| a_path.cmp(b_path)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a_path.cmp(b_path),
        },
    );
    Ok(found.into_iter().map(|(_, path)| path).collect())
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;
    use crate::ingest::names::subband_file_name;

    const TS: f64 = 1_760_362_083.0;
    const RULES: NameRules = NameRules {
        expected_subbands: 16,
        now: 1_760_400_000.0,
    };

    fn refusal_reason(admission: Admission) -> String {
        match admission {
            Admission::Refused(refusal) => refusal.reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn admits_a_regular_file_with_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(subband_file_name(TS, 3));
        std::fs::write(&path, b"12345").unwrap();
        let input = InputDir::open(dir.path()).unwrap();
        match input.admit(&path, &RULES) {
            Admission::Subband(candidate) => {
                assert_eq!(candidate.name.subband_idx, 3);
                assert_eq!(candidate.identity.size, 5);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_links_fifos_sockets_and_directories_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("real.hdf5");
        std::fs::write(&target, b"data").unwrap();
        let inside_target = dir.path().join(subband_file_name(TS, 0));
        std::fs::write(&inside_target, b"data").unwrap();
        let name = |sb| dir.path().join(subband_file_name(TS, sb));

        std::os::unix::fs::symlink(&target, name(1)).unwrap();
        std::os::unix::fs::symlink(&inside_target, name(2)).unwrap();
        std::os::unix::fs::symlink(dir.path().join("missing"), name(3)).unwrap();
        nix::unistd::mkfifo(&name(4), Mode::from_bits_truncate(0o600)).unwrap();
        let _socket = UnixListener::bind(name(5)).unwrap();
        std::fs::create_dir(name(6)).unwrap();

        let input = InputDir::open(dir.path()).unwrap();
        let outside_reason = refusal_reason(input.admit(&name(1), &RULES));
        assert!(
            outside_reason.contains("a symbolic link (to \""),
            "{outside_reason}"
        );
        assert!(outside_reason.contains("real.hdf5"), "{outside_reason}");
        // Links that stay inside input_dir are refused too: the correlator never makes them.
        assert!(refusal_reason(input.admit(&name(2), &RULES)).contains("symbolic link"));
        assert!(refusal_reason(input.admit(&name(3), &RULES)).contains("symbolic link"));
        assert_eq!(
            refusal_reason(input.admit(&name(4), &RULES)),
            "not a regular file (FIFO)"
        );
        assert_eq!(
            refusal_reason(input.admit(&name(5), &RULES)),
            "not a regular file (socket)"
        );
        assert_eq!(
            refusal_reason(input.admit(&name(6), &RULES)),
            "not a regular file (directory)"
        );
    }

    #[test]
    fn a_fifo_is_never_opened_for_a_blocking_read() {
        // Even past the first look (a FIFO swapped in after fstatat), O_NONBLOCK
        // returns at once and fstat on the open file refuses it.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join(subband_file_name(TS, 0));
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        let input = InputDir::open(dir.path()).unwrap();
        match input.open_regular(fifo.file_name().unwrap()) {
            Err(OpenRefusal::Refused(reason, Some(_))) => {
                assert_eq!(reason, "not a regular file (FIFO)")
            }
            Err(OpenRefusal::Refused(reason, None)) => panic!("{reason}"),
            Err(OpenRefusal::Vanished) => panic!("vanished"),
            Ok(_) => panic!("a FIFO was admitted"),
        }
    }

    #[test]
    fn a_file_swapped_for_a_symlink_after_admission_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("secret");
        std::fs::write(&target, b"data").unwrap();
        let path = dir.path().join(subband_file_name(TS, 0));
        std::fs::write(&path, b"data").unwrap();
        let input = InputDir::open(dir.path()).unwrap();
        let Admission::Subband(candidate) = input.admit(&path, &RULES) else {
            panic!("not admitted");
        };
        assert!(candidate.is_unchanged());
        assert!(input.recheck(&path).is_ok());
        let swap = dir.path().join(".swap");
        std::os::unix::fs::symlink(&target, &swap).unwrap();
        std::fs::rename(&swap, &path).unwrap();
        assert!(!candidate.is_unchanged());
        let reason = input.recheck(&path).unwrap_err();
        assert!(reason.contains("symbolic link"), "{reason}");
        // Rewritten in place as a regular file: a different version too.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"other data").unwrap();
        assert!(!candidate.is_unchanged());
        assert!(input.recheck(&path).is_ok());
    }

    #[test]
    fn refuses_paths_outside_the_directory_and_ignores_temp_names() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("nested");
        std::fs::create_dir(&sub).unwrap();
        let nested = sub.join(subband_file_name(TS, 0));
        std::fs::write(&nested, b"data").unwrap();
        let input = InputDir::open(dir.path()).unwrap();
        assert_eq!(
            refusal_reason(input.admit(&nested, &RULES)),
            "not directly inside input_dir"
        );
        let dotdot = dir.path().join("..");
        assert!(matches!(
            input.admit(&dotdot, &RULES),
            Admission::Refused(_)
        ));
        let temp = dir.path().join("2025-10-13T13:28:03_sb00_incomplete.hdf5");
        std::fs::write(&temp, b"x").unwrap();
        assert_eq!(input.admit(&temp, &RULES), Admission::Temporary);
        let gone = dir.path().join(subband_file_name(TS, 9));
        assert_eq!(input.admit(&gone, &RULES), Admission::Vanished);
    }

    #[test]
    fn unrecognised_names_carry_their_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("2025-10-13T13:28:03_sb42.hdf5");
        std::fs::write(&path, b"123").unwrap();
        let input = InputDir::open(dir.path()).unwrap();
        match input.admit(&path, &RULES) {
            Admission::Refused(refusal) => {
                assert!(refusal.reason.contains("sb42"), "{}", refusal.reason);
                assert_eq!(refusal.size_bytes, Some(3));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scan_lists_subbands_in_time_order_then_the_rest_without_temp_names() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            subband_file_name(TS + 10.0, 0),
            subband_file_name(TS, 1),
            subband_file_name(TS, 0),
            "zz.txt".to_string(),
            ".hidden".to_string(),
            "x_incomplete.hdf5".to_string(),
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let names: Vec<String> = scan_directory(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                subband_file_name(TS, 0),
                subband_file_name(TS, 1),
                subband_file_name(TS + 10.0, 0),
                "zz.txt".to_string()
            ]
        );
    }
}
