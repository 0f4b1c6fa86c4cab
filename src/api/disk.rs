//! Disk usage of every directory the configuration names: what `GET disk`,
//! `/metrics` (`contimg_disk_*_bytes`), the history's free-space trend and the
//! `low_disk` alert read. Measured by the producer every 30 s (statvfs), off the
//! async threads because statvfs can hang on a dead network mount.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use contimg_control::alerts::watched_dirs;
use contimg_core::config::StreamingConfig;

/// One configured directory and the filesystem it lives on. Directories on one
/// filesystem are each listed, with the same `filesystem` and numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DirUsage {
    /// The config field that names the directory: `input_dir`, `output_dir`,
    /// `scratch_dir`, `tmpfs_path` (when `stage_to_tmpfs`), `state_dir` (the queue
    /// DB's directory), `archive_dir` (when set).
    pub dir: String,
    pub path: String,
    /// The filesystem's device number `major:minor` (as in /proc/self/mountinfo).
    pub filesystem: Option<String>,
    pub total_bytes: Option<u64>,
    /// Used by anyone (total minus all free blocks), as `df` counts it.
    pub used_bytes: Option<u64>,
    /// Free for an unprivileged writer such as the worker (statvfs `f_bavail`);
    /// root's reserve is not counted.
    pub free_bytes: Option<u64>,
    /// Why the directory could not be measured (missing, unreadable).
    pub error: Option<String>,
}

impl DirUsage {
    /// Free percent of the filesystem, what the `low_disk` alert compares.
    pub fn free_percent(&self) -> Option<f64> {
        match (self.free_bytes, self.total_bytes) {
            (Some(free), Some(total)) if total > 0 => Some(free as f64 / total as f64 * 100.0),
            _ => None,
        }
    }
}

/// The directories of a configuration, in the order the dashboard lists them:
/// the ones the `low_disk` alert always watched, then staging and archive.
pub fn configured_dirs(config: &StreamingConfig) -> Vec<(String, PathBuf)> {
    let mut dirs = watched_dirs(config);
    if config.stage_to_tmpfs {
        dirs.push(("tmpfs_path".to_string(), config.tmpfs_path.clone()));
    }
    if let Some(archive) = &config.archive_dir {
        dirs.push(("archive_dir".to_string(), archive.clone()));
    }
    dirs
}

/// Measures each directory (blocking: statvfs).
pub fn measure(dirs: Vec<(String, PathBuf)>) -> Vec<DirUsage> {
    dirs.into_iter()
        .map(|(dir, path)| measure_one(dir, &path))
        .collect()
}

fn measure_one(dir: String, path: &Path) -> DirUsage {
    let mut usage = DirUsage {
        dir,
        path: path.display().to_string(),
        filesystem: None,
        total_bytes: None,
        used_bytes: None,
        free_bytes: None,
        error: None,
    };
    match nix::sys::stat::stat(path) {
        Ok(st) => {
            usage.filesystem = Some(format!(
                "{}:{}",
                nix::sys::stat::major(st.st_dev),
                nix::sys::stat::minor(st.st_dev)
            ));
        }
        Err(errno) => {
            usage.error = Some(format!("cannot stat {}: {errno}", path.display()));
            return usage;
        }
    }
    match nix::sys::statvfs::statvfs(path) {
        Ok(vfs) => {
            let block = vfs.fragment_size();
            let blocks = |n: u64| n.saturating_mul(block);
            let total = blocks(vfs.blocks());
            usage.total_bytes = Some(total);
            usage.used_bytes = Some(total.saturating_sub(blocks(vfs.blocks_free())));
            usage.free_bytes = Some(blocks(vfs.blocks_available()));
        }
        Err(errno) => {
            usage.error = Some(format!(
                "cannot stat the filesystem of {}: {errno}",
                path.display()
            ));
        }
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configured_dir_is_listed_even_on_one_filesystem() {
        let root = tempfile::tempdir().unwrap();
        let mut config = StreamingConfig::with_state_dir(&root.path().join("state"));
        for (name, field) in [
            ("in", &mut config.input_dir),
            ("out", &mut config.output_dir),
            ("scratch", &mut config.scratch_dir),
            ("shm", &mut config.tmpfs_path),
        ] {
            *field = root.path().join(name);
            std::fs::create_dir_all(&*field).unwrap();
        }
        std::fs::create_dir_all(root.path().join("state")).unwrap();
        let names = |config: &StreamingConfig| -> Vec<String> {
            configured_dirs(config)
                .into_iter()
                .map(|(d, _)| d)
                .collect()
        };
        assert_eq!(
            names(&config),
            ["input_dir", "output_dir", "scratch_dir", "state_dir"]
        );
        config.stage_to_tmpfs = true;
        assert_eq!(
            names(&config),
            [
                "input_dir",
                "output_dir",
                "scratch_dir",
                "state_dir",
                "tmpfs_path"
            ]
        );

        config.archive_dir = Some(root.path().join("archive"));
        assert_eq!(
            names(&config).last().map(String::as_str),
            Some("archive_dir")
        );
        config.archive_dir = None;

        let usage = measure(configured_dirs(&config));
        assert_eq!(usage.len(), 5);
        let first = &usage[0];
        assert!(first.error.is_none(), "{first:?}");
        let (total, used, free) = (
            first.total_bytes.unwrap(),
            first.used_bytes.unwrap(),
            first.free_bytes.unwrap(),
        );
        assert!(
            total > 0 && used <= total && free <= total - used,
            "{first:?}"
        );
        // One filesystem: the same identity and numbers for every dir on it.
        for other in &usage[1..] {
            assert_eq!(other.filesystem, first.filesystem, "{other:?}");
            assert_eq!(other.total_bytes, first.total_bytes);
        }
        assert!(
            first
                .free_percent()
                .is_some_and(|p| (0.0..=100.0).contains(&p))
        );
    }

    #[test]
    fn a_missing_dir_says_why_and_has_no_numbers() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("gone");
        let usage = measure(vec![("output_dir".to_string(), missing.clone())]);
        assert_eq!(usage[0].dir, "output_dir");
        assert_eq!(usage[0].total_bytes, None);
        assert_eq!(usage[0].free_percent(), None);
        let why = usage[0].error.as_deref().unwrap();
        assert!(why.contains(&missing.display().to_string()), "{why}");
    }
}
