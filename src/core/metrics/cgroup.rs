//! Readers for a cgroup's accounting files on cgroup v2, v1 and hybrid hosts.
//!
//! Hybrid hosts (v1 controllers under `/sys/fs/cgroup/<controller>` plus cgroup2 at
//! `/sys/fs/cgroup/unified`) keep `cpu.stat` only in `unified/` while memory and
//! pids live in the v1 hierarchies, so every value is looked up per file: the v2
//! file first, then the v1 one. A cgroup that has vanished (the unit stopped between
//! reading `ControlGroup` and the files) is "stopped", not an error.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// v1 reports "no limit" as a page-rounded `i64::MAX`; anything this large is unlimited.
const V1_UNLIMITED_THRESHOLD: u64 = 1 << 62;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup2 mounted at the root.
    Unified,
    /// v1 controllers plus cgroup2 at `<root>/unified`.
    Hybrid,
    /// v1 controllers only.
    Legacy,
}

/// One reading of a cgroup's accounting files. `None` = not available here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupSnapshot {
    pub memory_bytes: Option<u64>,
    /// `memory.current − inactive_file` (what the kernel would not reclaim first).
    pub memory_working_set_bytes: Option<u64>,
    /// `None` = unlimited (`max`).
    pub memory_limit_bytes: Option<u64>,
    pub cpu_usage_seconds: Option<f64>,
    pub tasks: Option<u64>,
}

/// The mount point of the cgroup filesystems (normally `/sys/fs/cgroup`).
#[derive(Debug, Clone)]
pub struct CgroupRoot {
    root: PathBuf,
}

impl Default for CgroupRoot {
    fn default() -> Self {
        Self::new("/sys/fs/cgroup")
    }
}

impl CgroupRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn layout(&self) -> CgroupLayout {
        if self.root.join("cgroup.controllers").exists() {
            CgroupLayout::Unified
        } else if self.root.join("unified").is_dir() {
            CgroupLayout::Hybrid
        } else {
            CgroupLayout::Legacy
        }
    }

    fn v2_dir(&self, cgroup: &str) -> Option<PathBuf> {
        let relative = cgroup.trim_start_matches('/');
        match self.layout() {
            CgroupLayout::Unified => Some(self.root.join(relative)),
            CgroupLayout::Hybrid => Some(self.root.join("unified").join(relative)),
            CgroupLayout::Legacy => None,
        }
    }

    fn v1_dir(&self, controller: &str, cgroup: &str) -> Option<PathBuf> {
        if self.layout() == CgroupLayout::Unified {
            return None;
        }
        Some(
            self.root
                .join(controller)
                .join(cgroup.trim_start_matches('/')),
        )
    }

    /// Reads the cgroup at `cgroup` (a `ControlGroup` path such as
    /// `/system.slice/contimg-stream.service`). `None` when it exists in no
    /// hierarchy, i.e. the unit is not running.
    pub fn read(&self, cgroup: &str) -> Option<CgroupSnapshot> {
        if cgroup.is_empty() {
            return None;
        }
        let v2 = self.v2_dir(cgroup).filter(|dir| dir.is_dir());
        let v1_memory = self.v1_dir("memory", cgroup).filter(|dir| dir.is_dir());
        let v1_cpuacct = self.v1_dir("cpuacct", cgroup).filter(|dir| dir.is_dir());
        let v1_pids = self.v1_dir("pids", cgroup).filter(|dir| dir.is_dir());
        if v2.is_none() && v1_memory.is_none() && v1_cpuacct.is_none() && v1_pids.is_none() {
            return None;
        }
        let mut snapshot = CgroupSnapshot::default();

        if let Some(dir) = &v2 {
            snapshot.memory_bytes = read_u64(&dir.join("memory.current"));
            if snapshot.memory_bytes.is_some() {
                snapshot.memory_limit_bytes = read_limit(&dir.join("memory.max")).flatten();
                let inactive = read_keyed(&dir.join("memory.stat"), "inactive_file");
                snapshot.memory_working_set_bytes = snapshot
                    .memory_bytes
                    .map(|current| current.saturating_sub(inactive.unwrap_or(0)));
            }
            snapshot.cpu_usage_seconds =
                read_keyed(&dir.join("cpu.stat"), "usage_usec").map(|usec| usec as f64 / 1e6);
            snapshot.tasks = read_u64(&dir.join("pids.current"));
        }
        if snapshot.memory_bytes.is_none()
            && let Some(dir) = &v1_memory
        {
            snapshot.memory_bytes = read_u64(&dir.join("memory.usage_in_bytes"));
            snapshot.memory_limit_bytes = read_u64(&dir.join("memory.limit_in_bytes"))
                .filter(|limit| *limit < V1_UNLIMITED_THRESHOLD);
            let inactive = read_keyed(&dir.join("memory.stat"), "total_inactive_file")
                .or_else(|| read_keyed(&dir.join("memory.stat"), "inactive_file"));
            snapshot.memory_working_set_bytes = snapshot
                .memory_bytes
                .map(|current| current.saturating_sub(inactive.unwrap_or(0)));
        }
        if snapshot.cpu_usage_seconds.is_none()
            && let Some(dir) = &v1_cpuacct
        {
            snapshot.cpu_usage_seconds =
                read_u64(&dir.join("cpuacct.usage")).map(|nsec| nsec as f64 / 1e9);
        }
        if snapshot.tasks.is_none()
            && let Some(dir) = &v1_pids
        {
            snapshot.tasks = read_u64(&dir.join("pids.current"));
        }
        Some(snapshot)
    }
}

/// Reads a file holding one number. Missing, vanished (ENODEV) or unparsable = `None`.
fn read_u64(path: &Path) -> Option<u64> {
    read_text(path)?.trim().parse().ok()
}

/// `Some(None)` for `max` (unlimited), `Some(Some(n))` for a number.
fn read_limit(path: &Path) -> Option<Option<u64>> {
    let text = read_text(path)?;
    let text = text.trim();
    if text == "max" {
        return Some(None);
    }
    text.parse().ok().map(Some)
}

/// A `key value` line from a flat-keyed file such as `cpu.stat` or `memory.stat`.
fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    let text = read_text(path)?;
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        if parts.next() == Some(key) {
            parts.next()?.parse().ok()
        } else {
            None
        }
    })
}

fn read_text(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(err) => {
            // ENOENT / ENODEV: the cgroup went away or the controller is absent.
            if err.kind() != ErrorKind::NotFound && err.raw_os_error() != Some(libc::ENODEV) {
                tracing::debug!(path = %path.display(), error = %err, "cannot read cgroup file");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const CG: &str = "/app.slice/contimg-stream.service";

    fn write(root: &Path, relative: &str, text: &str) {
        let path = root.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn unified_v2_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "cgroup.controllers", "cpu memory pids\n");
        let cg = "app.slice/contimg-stream.service";
        write(root, &format!("{cg}/memory.current"), "104857600\n");
        write(root, &format!("{cg}/memory.max"), "8589934592\n");
        write(
            root,
            &format!("{cg}/memory.stat"),
            "anon 1\ninactive_file 4857600\nactive_file 2\n",
        );
        write(
            root,
            &format!("{cg}/cpu.stat"),
            "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
        );
        write(root, &format!("{cg}/pids.current"), "7\n");
        let cgroups = CgroupRoot::new(root);
        assert_eq!(cgroups.layout(), CgroupLayout::Unified);
        let snap = cgroups.read(CG).unwrap();
        assert_eq!(snap.memory_bytes, Some(104_857_600));
        assert_eq!(snap.memory_working_set_bytes, Some(100_000_000));
        assert_eq!(snap.memory_limit_bytes, Some(8_589_934_592));
        assert_eq!(snap.cpu_usage_seconds, Some(2.5));
        assert_eq!(snap.tasks, Some(7));
    }

    #[test]
    fn max_limit_is_unlimited() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "cgroup.controllers", "memory\n");
        write(root, "x.service/memory.current", "10\n");
        write(root, "x.service/memory.max", "max\n");
        let snap = CgroupRoot::new(root).read("/x.service").unwrap();
        assert_eq!(snap.memory_limit_bytes, None);
        assert_eq!(snap.memory_bytes, Some(10));
        assert_eq!(snap.cpu_usage_seconds, None);
    }

    #[test]
    fn legacy_v1_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, &format!("memory{CG}/memory.usage_in_bytes"), "2048\n");
        write(
            root,
            &format!("memory{CG}/memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        write(
            root,
            &format!("memory{CG}/memory.stat"),
            "cache 0\ntotal_inactive_file 48\n",
        );
        write(root, &format!("cpuacct{CG}/cpuacct.usage"), "1500000000\n");
        write(root, &format!("pids{CG}/pids.current"), "3\n");
        let cgroups = CgroupRoot::new(root);
        assert_eq!(cgroups.layout(), CgroupLayout::Legacy);
        let snap = cgroups.read(CG).unwrap();
        assert_eq!(snap.memory_bytes, Some(2048));
        assert_eq!(snap.memory_working_set_bytes, Some(2000));
        assert_eq!(
            snap.memory_limit_bytes, None,
            "page-rounded i64::MAX = unlimited"
        );
        assert_eq!(snap.cpu_usage_seconds, Some(1.5));
        assert_eq!(snap.tasks, Some(3));
    }

    #[test]
    fn hybrid_tree_takes_cpu_from_unified_and_memory_from_v1() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // unified/ has only the core files and cpu.stat, like this machine.
        write(root, &format!("unified{CG}/cgroup.procs"), "42\n");
        write(
            root,
            &format!("unified{CG}/cpu.stat"),
            "usage_usec 750000\n",
        );
        write(root, &format!("memory{CG}/memory.usage_in_bytes"), "4096\n");
        write(
            root,
            &format!("memory{CG}/memory.limit_in_bytes"),
            "1048576\n",
        );
        write(root, &format!("pids{CG}/pids.current"), "2\n");
        let cgroups = CgroupRoot::new(root);
        assert_eq!(cgroups.layout(), CgroupLayout::Hybrid);
        let snap = cgroups.read(CG).unwrap();
        assert_eq!(snap.cpu_usage_seconds, Some(0.75));
        assert_eq!(snap.memory_bytes, Some(4096));
        assert_eq!(snap.memory_limit_bytes, Some(1_048_576));
        assert_eq!(snap.tasks, Some(2));
    }

    #[test]
    fn vanished_cgroup_is_stopped_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("unified")).unwrap();
        fs::create_dir_all(root.join("memory")).unwrap();
        let cgroups = CgroupRoot::new(root);
        assert_eq!(cgroups.read(CG), None);
        assert_eq!(cgroups.read(""), None);
        // A cgroup whose files vanish between the directory check and the read
        // yields empty values, not an error.
        fs::create_dir_all(root.join(format!("unified{CG}"))).unwrap();
        assert_eq!(cgroups.read(CG), Some(CgroupSnapshot::default()));
    }
}
