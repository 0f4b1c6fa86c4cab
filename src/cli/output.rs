//! Human output in the style of `systemctl status`: a coloured state dot (only on
//! a terminal and without `NO_COLOR`), aligned `Key: value` lines.

use std::io::IsTerminal;

use chrono::{DateTime, Local, Utc};

use contimg_control::report::Snapshot;
use contimg_control::{ControlOutcome, LogEntry};

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
    contimg_control::report::scaled_bytes(bytes, &["B", "K", "M", "G", "T"], "")
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

pub fn status_text(snapshot: &Snapshot, backend_detail: &str) -> String {
    let s = &snapshot.status;
    let mut out = format!(
        "{} {} - DSA-110 streaming worker\n",
        dot(&s.active_state),
        s.unit
    );
    let mut line = |key: &str, value: String| {
        out.push_str(&format!("{key:>12}: {value}\n"));
    };
    line("Backend", backend_detail.to_string());
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
        (None, Some(error)) => line("Queue", format!("unavailable: {error}")),
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
        out.push_str(&format!(" (PID {pid})"));
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
}
