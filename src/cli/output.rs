//! Human output in the style of `systemctl status`: a coloured state dot (only on
//! a terminal and without `NO_COLOR`), aligned `Key: value` lines.

use std::fmt::Write;
use std::io::IsTerminal;

use chrono::{DateTime, Local, Utc};

use contimg_control::report::{HealthResponse, Snapshot};
use contimg_control::state_dir::StateDir;
use contimg_control::{BackendKind, ControlOutcome, LogEntry, ResourceLimits};
use contimg_core::queue::{
    AttemptJob, AttemptOutcome, GroupDetail, GroupState, GroupSummary, LateFile, QueueStats,
    UnrecognisedFile,
};

pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

fn paint(text: &str, code: &str) -> String {
    if color_enabled() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

pub fn dot(active_state: &str) -> String {
    match active_state {
        "active" | "reloading" => paint("●", "1;32"),
        "failed" => paint("×", "1;31"),
        "activating" | "deactivating" => paint("●", "1;33"),
        _ => "○".to_string(),
    }
}

pub fn human_bytes(bytes: u64) -> String {
    contimg_core::units::scaled_bytes(bytes, &["B", "K", "M", "G", "T"], "")
}

pub fn human_duration(seconds: f64) -> String {
    let total = seconds.max(0.0) as u64;
    let (days, hours, minutes, secs) = (
        total / 86_400,
        (total % 86_400) / 3600,
        (total % 3600) / 60,
        total % 60,
    );
    if days > 0 {
        format!("{days} days {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}min")
    } else if minutes > 0 {
        format!("{minutes}min {secs}s")
    } else {
        format!("{secs}s")
    }
}

fn local_time(time: DateTime<Utc>) -> String {
    time.with_timezone(&Local)
        .format("%a %Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

pub fn status_text(snapshot: &Snapshot, backend_detail: &str, state_dir: &StateDir) -> String {
    let s = &snapshot.status;
    // A unit name first, as `systemctl status`; the other backends' targets
    // ("process") would read as one, so they are named in words.
    let name = match s.backend {
        BackendKind::Systemd => s.unit.clone(),
        BackendKind::Process | BackendKind::Docker => s.backend.describe(&s.unit, None),
    };
    let mut out = format!(
        "{} {name} - DSA-110 streaming worker\n",
        dot(&s.active_state)
    );
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "{key:>12}: {value}");
    };
    line("Backend", backend_detail.to_string());
    let missing = if state_dir.path.is_dir() {
        ""
    } else {
        "; does not exist"
    };
    line("State dir", format!("{state_dir}{missing}"));
    let state_word = format!("{} ({})", s.active_state, s.sub_state);
    let state_word = match s.active_state.as_str() {
        "active" => paint(&state_word, "1;32"),
        "failed" => paint(&state_word, "1;31"),
        _ => state_word,
    };
    let since = match (s.started_at, s.running) {
        (Some(at), true) => format!(
            " since {}; {} ago",
            local_time(at),
            human_duration(s.uptime_seconds.unwrap_or(0.0))
        ),
        _ => String::new(),
    };
    line("Active", format!("{state_word}{since}"));
    if let Some(pid) = s.pid {
        line("Main PID", pid.to_string());
    }
    if let Some(text) = &s.status_text {
        line("Status", format!("\"{text}\""));
    }
    if let Some(tasks) = s.resources.tasks {
        line("Tasks", tasks.to_string());
    }
    if let Some(memory) = s.resources.memory_bytes {
        let limit = s
            .resources
            .memory_limit_bytes
            .map(|l| format!(" (max: {})", human_bytes(l)))
            .unwrap_or_default();
        line("Memory", format!("{}{limit}", human_bytes(memory)));
    } else if let Some(limit) = s.resources.memory_limit_bytes {
        line("Memory", format!("- (max: {})", human_bytes(limit)));
    }
    if let Some(percent) = s.resources.cpu_percent {
        let total = s
            .resources
            .cpu_usage_seconds
            .map(|t| format!(" ({t:.1}s total)"))
            .unwrap_or_default();
        line("CPU", format!("{percent:.1}%{total}"));
    }
    line("Restarts", s.restart_count.to_string());
    if let Some(beat) = &snapshot.queue.heartbeat {
        let age = (snapshot.taken_at - beat.heartbeat_at).max(0.0);
        line(
            "Heartbeat",
            format!("{} ago (PID {})", human_duration(age), beat.pid),
        );
    }
    let claim_pause = (snapshot.queue.heartbeat.as_ref())
        .and_then(|beat| beat.claim_paused.as_ref())
        .filter(|_| s.running);
    if let Some(pause) = claim_pause {
        let paused_for = human_duration((snapshot.taken_at - pause.since).max(0.0));
        line(
            "Claiming",
            paint(
                &format!("PAUSED for {paused_for}: {}", pause.reason),
                "1;33",
            ),
        );
    }
    if let Some(config) = &snapshot.config {
        line(
            "Executor",
            contimg_control::report::describe_executor(config),
        );
        if config.executor == contimg_core::config::ExecutorKind::Slurm {
            let report = snapshot.status_report();
            if let Some(jobs) = report.jobs_in_flight {
                line(
                    "Jobs",
                    format!(
                        "{} queued, {} running (max {})",
                        jobs.queued, jobs.running, config.slurm.max_jobs
                    ),
                );
            }
            line(
                "Scheduler",
                match (
                    report.scheduler_reachable,
                    &report.scheduler_unreachable_since,
                ) {
                    (Some(true), _) => "reachable".to_string(),
                    (Some(false), since) => paint(
                        &format!(
                            "UNREACHABLE since {}: groups wait in pending",
                            since.as_deref().unwrap_or("?")
                        ),
                        "1;31",
                    ),
                    (None, _) => "unknown (the worker is not running)".to_string(),
                },
            );
        }
    }
    match (&snapshot.queue.stats, &snapshot.queue.error) {
        (Some(stats), _) => {
            line("Queue", stats.summary_line());
            line(
                "Input files",
                format!(
                    "{} rejected, {} unrecognised, {} late",
                    stats.rejected_files, stats.unrecognised_files, stats.late_files
                ),
            );
        }
        (None, Some(error)) => line(
            "Queue",
            format!("unavailable: {error} (state dir from {})", state_dir.rule),
        ),
        _ => {}
    }
    if let Some(error) = s.error.clone().or_else(|| snapshot.config_error.clone()) {
        line("Error", paint(&error, "1;31"));
    }
    out
}

pub fn log_line(entry: &LogEntry) -> String {
    let level = match entry.level.as_str() {
        "ERROR" => paint("ERROR", "1;31"),
        "WARNING" => paint("WARN ", "1;33"),
        "DEBUG" => paint("DEBUG", "2"),
        _ => "INFO ".to_string(),
    };
    format!(
        "{} {level} {}",
        entry
            .timestamp
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        entry.message
    )
}

pub fn outcome_text(outcome: &ControlOutcome) -> String {
    let mut out = if outcome.success {
        format!("{} {}", paint("●", "1;32"), outcome.message)
    } else {
        format!("{} {}", paint("×", "1;31"), outcome.message)
    };
    if let Some(pid) = outcome.pid.filter(|_| outcome.success) {
        let _ = write!(out, " (PID {pid})");
    }
    if !outcome.recent_logs.is_empty() {
        out.push_str("\nLast log lines:");
        for entry in &outcome.recent_logs {
            out.push_str("\n  ");
            out.push_str(&log_line(entry));
        }
    }
    out
}

/// `contimgctl health`'s text: the verdict, then one line per check.
/// `contimgctl health`'s text: the verdict for `backend` (in words), each check,
/// and the state dir the queue and config checks read, with its rule.
pub fn health_text(
    health: &HealthResponse,
    active_state: &str,
    backend: &str,
    state_dir: &StateDir,
) -> String {
    let word = if health.healthy {
        "healthy"
    } else {
        "unhealthy"
    };
    let mut out = format!("{} {backend} is {word}\n", dot(active_state));
    for check in &health.checks {
        let mark = if check.ok { "ok  " } else { "FAIL" };
        let _ = writeln!(out, "  {mark} {:<16} {}", check.name, check.detail);
    }
    let _ = writeln!(out, "  state dir: {state_dir}");
    out
}

/// `contimgctl metrics`' text.
pub fn metrics_text(snapshot: &Snapshot) -> String {
    let m = snapshot.metrics_report();
    let mut out = format!(
        "{} running: {}\n",
        dot(&snapshot.status.active_state),
        m.service_running
    );
    if let Some(cpu) = m.cpu_percent {
        let _ = writeln!(out, "{:>12}: {cpu:.1}%", "CPU");
    }
    if let Some(memory) = m.memory_mb {
        let _ = writeln!(out, "{:>12}: {memory:.1} MB", "Memory");
    }
    for (state, count) in &m.queue_stats {
        let _ = writeln!(out, "{state:>12}: {count}");
    }
    let _ = writeln!(
        out,
        "{:>12}: {:.1} groups/h",
        "Rate", m.processing_rate_per_hour
    );
    let _ = writeln!(out, "{:>12}: {}", "Rejected", m.rejected_files);
    let _ = writeln!(out, "{:>12}: {}", "Unrecognised", m.unrecognised_files);
    let _ = writeln!(out, "{:>12}: {}", "Late", m.late_files);
    if let Some(error) = &m.queue_error {
        let _ = writeln!(out, "{:>12}: {error}", "Queue error");
    }
    out
}

/// `contimgctl limits`' text.
pub fn limits_text(limits: &ResourceLimits) -> String {
    format!(
        "{:>12}: {}\n{:>12}: {}\n",
        "MemoryMax",
        limits
            .memory_max_bytes
            .map(human_bytes)
            .unwrap_or_else(|| "infinity".into()),
        "CPUQuota",
        limits
            .cpu_quota_percent
            .map(|p| format!("{p:.0}%"))
            .unwrap_or_else(|| "none".into())
    )
}

/// A Unix time as `2026-11-25 10:00:00` (UTC).
pub fn format_time(seconds: f64) -> String {
    DateTime::<Utc>::from_timestamp_millis((seconds * 1000.0) as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The newest unrecognised and late input files, at most `shown` of each (paths
/// Debug-quoted: a hostile name cannot forge terminal output).
pub fn input_problems_text(
    stats: &QueueStats,
    unrecognised: &[UnrecognisedFile],
    late: &[LateFile],
    shown: usize,
) -> String {
    let mut out = String::new();
    if stats.unrecognised_files > 0 {
        let _ = writeln!(
            out,
            "unrecognised files: {} (newest first)",
            stats.unrecognised_files
        );
        for file in unrecognised.iter().take(shown) {
            let _ = writeln!(
                out,
                "  {}  {:?}  {}",
                format_time(file.last_seen_at),
                file.path,
                file.reason
            );
        }
    }
    if stats.late_files > 0 {
        let _ = writeln!(
            out,
            "late files: {} (newest first, not attached)",
            stats.late_files
        );
        for file in late.iter().take(shown) {
            let _ = writeln!(
                out,
                "  {}  {:?}  sb{:02} for {} ({})",
                format_time(file.seen_at),
                file.path,
                file.subband_idx,
                file.group_id,
                file.group_state
            );
        }
    }
    out
}

/// `contimgctl queue`'s table of groups (or `(no groups)`).
pub fn groups_table(groups: &[GroupSummary]) -> String {
    if groups.is_empty() {
        return "(no groups)\n".to_string();
    }
    // The JOB column only when a group ran as a batch job (the Slurm executor).
    let jobs = groups.iter().any(|g| g.job.is_some());
    let job_column = |job: Option<&AttemptJob>| match (jobs, job) {
        (false, _) => String::new(),
        (true, job) => format!("{:<34}  ", job.map(job_words).unwrap_or_default()),
    };
    let mut out = format!(
        "{:<21} {:<12} {:>8} {:>7}  {:<19}  {}ERROR\n",
        "GROUP",
        "STATE",
        "SUBBANDS",
        "RETRIES",
        "UPDATED",
        if jobs {
            format!("{:<34}  ", "JOB")
        } else {
            String::new()
        }
    );
    for group in groups {
        let expected = group
            .expected_subbands
            .map(|e| e.to_string())
            .unwrap_or_else(|| "?".into());
        let _ = writeln!(
            out,
            "{:<21} {:<12} {:>8} {:>7}  {:<19}  {}{}",
            group.group_id,
            // `as_str`: the padding applies to a str, not to Display's write_str.
            group.state.as_str(),
            format!("{}/{expected}", group.subbands),
            group.retry_count,
            format_time(group.last_update),
            job_column(group.job.as_ref()),
            group
                .error
                .as_deref()
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("")
        );
    }
    out
}

/// A batch job in a few words: whether it waits in Slurm, runs on which node or
/// finished, with its id ("1234 PENDING", "1234 RUNNING on n3",
/// "1234 FAILED on n2, exit 1").
pub fn job_words(job: &AttemptJob) -> String {
    let id = job.job_id.as_deref().unwrap_or("(no id yet)");
    let state = job.state.as_deref().unwrap_or("?");
    let node = job
        .node
        .as_deref()
        .map(|n| format!(" on {n}"))
        .unwrap_or_default();
    let exit = job
        .exit_code
        .map(|c| format!(", exit {c}"))
        .unwrap_or_default();
    match state {
        "PENDING" | "SUBMITTING" => format!("{id} {state} (waiting in Slurm)"),
        _ => format!("{id} {state}{node}{exit}"),
    }
}

/// `contimgctl queue show GROUP`'s text: state, timings, files, attempts.
pub fn group_text(detail: &GroupDetail) -> String {
    let s = &detail.summary;
    let mut out = format!(
        "{} {}\n",
        dot(match s.state {
            GroupState::Completed => "active",
            GroupState::Failed => "failed",
            GroupState::InProgress => "activating",
            GroupState::Collecting | GroupState::Pending => "inactive",
        }),
        s.group_id
    );
    let _ = writeln!(out, "{:>12}: {}", "State", s.state);
    if let Some(stage) = &s.processing_stage {
        let _ = writeln!(out, "{:>12}: {stage}", "Stage");
    }
    let _ = writeln!(out, "{:>12}: {}", "Received", format_time(s.received_at));
    let _ = writeln!(out, "{:>12}: {}", "Updated", format_time(s.last_update));
    let _ = writeln!(out, "{:>12}: {}", "Retries", s.retry_count);
    if let Some(output) = &s.output_path {
        let _ = writeln!(out, "{:>12}: {output}", "Output");
    }
    if let Some(error) = &s.error {
        let _ = writeln!(out, "{:>12}: {error}", "Error");
    }
    let _ = writeln!(out, "{:>12}: {}", "Files", detail.files.len());
    for file in &detail.files {
        let _ = writeln!(out, "    sb{:02} {}", file.subband_idx, file.path);
    }
    for attempt in &detail.attempts {
        let _ = writeln!(
            out,
            "{:>12}: #{} {} {}",
            "Attempt",
            attempt.attempt,
            attempt.outcome.map_or("running", AttemptOutcome::as_str),
            attempt.error.as_deref().unwrap_or("")
        );
        if let Some(job) = &attempt.job {
            let _ = writeln!(out, "{:>12}  Slurm job {}", "", job_words(job));
            if let Some(log) = &job.log_path {
                let _ = writeln!(out, "{:>12}  log {log}", "");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes_and_durations() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(8 * 1024 * 1024 * 1024), "8.0G");
        assert_eq!(human_duration(3725.0), "1h 2min");
        assert_eq!(human_duration(42.0), "42s");
    }

    /// The queue table's columns stay aligned now that a group's state is an
    /// enum (whose Display, `write_str`, would ignore `{:<12}`).
    #[test]
    fn the_groups_table_pads_the_state_column() {
        let group = |id: &str, state: GroupState| GroupSummary {
            group_id: id.into(),
            state,
            received_at: 0.0,
            last_update: 1_764_000_000.0,
            expected_subbands: Some(16),
            subbands: 3,
            retry_count: 0,
            error: Some("first line\nsecond".into()),
            processing_stage: None,
            next_attempt_at: None,
            started_at: None,
            completed_at: None,
            output_path: None,
            job: None,
        };
        let table = groups_table(&[
            group("2025-10-13T13:28:03", GroupState::Pending),
            group("2025-10-13T13:33:03", GroupState::InProgress),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        let column = |line: &str| line.find("3/16").unwrap();
        assert_eq!(column(lines[1]), column(lines[2]), "{table}");
        assert!(lines[1].contains("pending     "), "{table}");
        assert!(lines[1].ends_with("first line"), "{table}");
        assert_eq!(groups_table(&[]), "(no groups)\n");
        assert!(
            !table.contains("JOB"),
            "no JOB column without jobs: {table}"
        );

        let with_job = |state: &str, node: Option<&str>, exit_code: Option<i32>| GroupSummary {
            job: Some(AttemptJob {
                executor: "slurm".into(),
                job_id: Some("4711".into()),
                state: Some(state.into()),
                node: node.map(Into::into),
                exit_code,
                log_path: None,
                submitted_at: None,
            }),
            ..group("2025-10-13T13:38:03", GroupState::InProgress)
        };
        let table = groups_table(&[
            with_job("PENDING", None, None),
            with_job("RUNNING", Some("n3"), None),
            with_job("FAILED", Some("n2"), Some(1)),
            group("2025-10-13T13:28:03", GroupState::Pending),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("JOB"), "{table}");
        assert!(
            lines[1].contains("4711 PENDING (waiting in Slurm)"),
            "{table}"
        );
        assert!(lines[2].contains("4711 RUNNING on n3"), "{table}");
        assert!(lines[3].contains("4711 FAILED on n2, exit 1"), "{table}");
        let error_column = |line: &str| line.find("first line").unwrap();
        assert_eq!(error_column(lines[1]), error_column(lines[4]), "{table}");
    }
}
