//! Finding new subband files: inotify through `notify`, plus a directory scan used
//! at start-up and as a polling safety net.

use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::names::{SubbandName, parse_subband_name};

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
}

/// A candidate subband file under its final name.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub path: PathBuf,
    pub name: SubbandName,
}

impl Candidate {
    /// A candidate if `path`'s file name is a final subband name.
    pub fn from_path(path: &Path) -> Option<Self> {
        let file_name = path.file_name()?.to_str()?;
        let name = parse_subband_name(file_name)?;
        Some(Self {
            path: path.to_path_buf(),
            name,
        })
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

/// Every final-named subband file in `dir`, oldest timestamp first. Other entries
/// are skipped with a debug line.
pub fn scan_directory(dir: &Path) -> Result<Vec<Candidate>, WatchError> {
    let entries = std::fs::read_dir(dir).map_err(|source| WatchError::Scan {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        match Candidate::from_path(&path) {
            Some(candidate) => found.push(candidate),
            None => {
                tracing::debug!(path = %path.display(), "ignoring: not a final subband file name")
            }
        }
    }
    found.sort_by(|a, b| {
        a.name
            .timestamp
            .total_cmp(&b.name.timestamp)
            .then(a.name.subband_idx.cmp(&b.name.subband_idx))
    });
    Ok(found)
}
