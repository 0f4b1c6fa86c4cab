//! /proc readers for the process backend: identity (PID + start time, so a reused
//! PID is never mistaken for ours) and resource use of a process group.

use std::path::{Path, PathBuf};

use nix::unistd::{SysconfVar, sysconf};

/// Fields of `/proc/PID/stat` we use.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcStat {
    pub pid: u32,
    /// R, S, D, Z, T, …
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    pub session: u32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub num_threads: u64,
    /// Start time after boot, in clock ticks (field 22): with the PID, a unique id.
    pub start_ticks: u64,
    pub rss_pages: u64,
}

/// The /proc mount (a parameter so tests can use a fixture tree).
#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        Self::new("/proc")
    }
}

impl ProcFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn stat(&self, pid: u32) -> Option<ProcStat> {
        let text = std::fs::read_to_string(self.root.join(pid.to_string()).join("stat")).ok()?;
        parse_stat(&text)
    }

    /// Seconds since boot (`btime` in /proc/stat), for turning start ticks into times.
    pub fn boot_time(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.root.join("stat")).ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
    }

    /// Every live process whose process group is `pgrp` (the worker and its
    /// converter subprocesses, which inherit the group).
    pub fn group_members(&self, pgrp: u32) -> Vec<ProcStat> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| self.stat(pid))
            .filter(|stat| stat.pgrp == pgrp && stat.state != 'Z')
            .collect()
    }
}

/// Parses `/proc/PID/stat`. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let field = |n: usize| rest.get(n - 3).copied();
    let number = |n: usize| field(n)?.parse::<u64>().ok();
    Some(ProcStat {
        pid,
        state: field(3)?.chars().next()?,
        ppid: number(4)? as u32,
        pgrp: number(5)? as u32,
        session: number(6)? as u32,
        cpu_ticks: number(14)? + number(15)?,
        num_threads: number(20)?,
        start_ticks: number(22)?,
        rss_pages: number(24)?,
    })
}

/// Clock ticks per second (`getconf CLK_TCK`), the unit of `/proc/PID/stat` times;
/// 100, the Linux value, if sysconf cannot say.
pub fn clock_ticks_per_second() -> u64 {
    positive_sysconf(SysconfVar::CLK_TCK).unwrap_or(100)
}

/// Bytes per page (`getconf PAGESIZE`), the unit of `rss_pages`; 4096 if sysconf
/// cannot say.
pub fn page_size() -> u64 {
    positive_sysconf(SysconfVar::PAGE_SIZE).unwrap_or(4096)
}

fn positive_sysconf(var: SysconfVar) -> Option<u64> {
    match sysconf(var) {
        Ok(Some(value)) if value > 0 => u64::try_from(value).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "4242 (contimg (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 123456 1000000 512 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.pid, 4242);
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.pgrp, 4242);
        assert_eq!(stat.cpu_ticks, 300);
        assert_eq!(stat.start_ticks, 123456);
        assert_eq!(stat.rss_pages, 512);
    }

    #[test]
    fn reads_this_process() {
        let procfs = ProcFs::default();
        let stat = procfs.stat(std::process::id()).unwrap();
        assert_eq!(stat.pid, std::process::id());
        assert!(procfs.boot_time().unwrap() > 0);
    }

    fn getconf(name: &str) -> u64 {
        let out = std::process::Command::new("getconf")
            .arg(name)
            .output()
            .unwrap();
        assert!(out.status.success(), "getconf {name}");
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn clock_ticks_and_page_size_match_getconf() {
        assert_eq!(clock_ticks_per_second(), getconf("CLK_TCK"));
        assert_eq!(page_size(), getconf("PAGESIZE"));
    }
}
