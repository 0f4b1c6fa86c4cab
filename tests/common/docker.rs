//! RAII guard around `ops/testenv/dockerd.sh`: a private dockerd per test (own
//! socket, data under a temp dir, no networking). `Drop` always cleans up. Needs
//! root and `docker.io`; a test using it fails (never skips) without them.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const HARNESS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ops/testenv/dockerd.sh");

pub struct Dockerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
}

impl Dockerd {
    pub fn start() -> Self {
        let harness = super::harness::HarnessOutput::start(HARNESS, "root and docker.io");
        let var = |name: &str| harness.var(name);
        Self {
            dir: PathBuf::from(var("DOCKERTEST_DIR")),
            socket: PathBuf::from(var("DOCKERTEST_SOCKET")),
        }
    }

    /// Builds a rootfs holding `binary` at `/contimg-stream` plus the shared
    /// libraries `ldd` names, and imports it as `tag` with that binary as the
    /// entrypoint (docker CLI: test harness only).
    pub fn import_worker_image(&self, binary: &Path, tag: &str) {
        let rootfs = self.dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("tmp")).expect("rootfs");
        std::fs::copy(binary, rootfs.join("contimg-stream")).expect("copy worker");
        let ldd = Command::new("ldd").arg(binary).output().expect("ldd");
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            // "libx.so => /lib/x86_64-linux-gnu/libx.so (0x…)" or "/lib64/ld-linux… (0x…)"
            let path = line
                .split("=>")
                .last()
                .and_then(|rest| rest.split_whitespace().next())
                .filter(|p| p.starts_with('/'));
            if let Some(path) = path {
                let source = Path::new(path);
                let target = rootfs.join(path.trim_start_matches('/'));
                std::fs::create_dir_all(target.parent().expect("parent")).expect("lib dir");
                std::fs::copy(source, &target).expect("copy lib");
            }
        }
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(self.dir.join("rootfs.tar"))
            .arg(".")
            .status()
            .expect("tar");
        assert!(tar.success());
        let import = Command::new("docker")
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .args(["import", "-c", "ENTRYPOINT [\"/contimg-stream\"]"])
            .arg(self.dir.join("rootfs.tar"))
            .arg(tag)
            .output()
            .expect("docker import");
        assert!(import.status.success(), "docker import: {import:?}");
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(HARNESS)
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}
