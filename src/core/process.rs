//! Children start with only the file descriptors they are given.
//!
//! libhdf5 1.10 opens files without `O_CLOEXEC` and takes an `flock` on them. A
//! child forked while such a file is open inherits the descriptor and, once it
//! has exec'd, keeps the lock for its whole life: a validator or converter
//! started during an in-process merge made every later reader of the merged
//! file fail with "unable to lock file" (EAGAIN). Rust's `Command` closes only
//! what it opened itself, so every child contimg starts goes through
//! [`inherit_only_stdio`].

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Descriptors above this are not looked at by the fallback for kernels without
/// `close_range(CLOSE_RANGE_CLOEXEC)` (before 5.11).
const FALLBACK_FD_LIMIT: libc::c_int = 65_536;

/// Makes `command` exec with only stdin, stdout and stderr open, whatever the
/// parent has open at the time.
pub fn inherit_only_stdio(command: &mut Command) {
    // SAFETY: the closure runs in the forked child after Command has set up fds
    // 0-2, where only async-signal-safe calls are allowed: close_range and fcntl
    // are single system calls that allocate nothing, and they only mark the
    // child's own descriptors close-on-exec.
    unsafe {
        command.pre_exec(|| {
            let flags = libc::CLOSE_RANGE_CLOEXEC as libc::c_int;
            if libc::close_range(3, libc::c_uint::MAX, flags) != 0 {
                for fd in 3..FALLBACK_FD_LIMIT {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Whether a child started with `command_setup` can still read the open
    /// descriptor `fd` of its parent.
    fn child_sees(fd: i32, command_setup: impl FnOnce(&mut Command)) -> bool {
        let mut command = Command::new("readlink");
        command.arg(format!("/proc/self/fd/{fd}"));
        command_setup(&mut command);
        command.output().expect("run readlink").status.success()
    }

    #[test]
    fn a_child_does_not_inherit_descriptors_opened_without_cloexec() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("held");
        // As libhdf5 does it: a plain open(2), no O_CLOEXEC.
        let held = nix::fcntl::open(
            &path,
            nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_RDWR,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .unwrap();
        let fd = held.as_raw_fd();
        assert!(child_sees(fd, |_| {}), "a plain Command passes it on");
        assert!(!child_sees(fd, inherit_only_stdio));
    }
}
