//! A real, small filesystem for disk-space tests: a size-limited tmpfs mounted on
//! its own temp dir (needs root), unmounted lazily and removed on drop, so a
//! failing test or a process still holding a file leaves no mount behind.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tmpfs {
    mountpoint: tempfile::TempDir,
}

impl Tmpfs {
    /// `size` as mount(8) takes it: `64m`, `1g`.
    pub fn mount(size: &str) -> Self {
        let mountpoint = tempfile::tempdir().expect("mountpoint");
        let options = format!("size={size},mode=0755");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(mountpoint.path())
            .status()
            .expect("run mount (the test needs root)");
        assert!(
            status.success(),
            "mount tmpfs failed (needs root): {status}"
        );
        Self { mountpoint }
    }

    pub fn path(&self) -> &Path {
        self.mountpoint.path()
    }

    /// Bytes an unprivileged writer may still use, as contimg measures it.
    pub fn available_bytes(&self) -> u64 {
        let stat = nix::sys::statvfs::statvfs(self.path()).expect("statvfs");
        stat.blocks_available() * stat.fragment_size()
    }

    /// Changes the size limit in place (tmpfs keeps its files).
    pub fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "remount tmpfs: {status}");
    }

    /// Fills the filesystem with `name` until ENOSPC; returns its path.
    pub fn fill(&self, name: &str) -> PathBuf {
        let filler = self.path().join(name);
        let mut file = std::fs::File::create(&filler).expect("create filler");
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) if err.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(err) => panic!("filling the tmpfs: {err}"),
            }
        }
        // Single bytes too, so not even a small page fits.
        while file.write(&[0u8]).is_ok_and(|n| n == 1) {}
        filler
    }

    /// Writes `name` until at most `leave` bytes stay free; returns its path.
    pub fn fill_leaving(&self, name: &str, leave: u64) -> PathBuf {
        let filler = self.path().join(name);
        let mut file = std::fs::File::create(&filler).expect("create filler");
        let chunk = vec![0u8; 64 * 1024];
        while self.available_bytes() > leave {
            let n = (self.available_bytes() - leave).min(chunk.len() as u64);
            file.write_all(&chunk[..n.max(1) as usize])
                .expect("fill the tmpfs");
        }
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.mountpoint.path())
            .status();
    }
}
