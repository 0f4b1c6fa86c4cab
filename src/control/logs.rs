//! Log sources shared by the backends: `journalctl -o json` output, the worker's
//! own stderr format (`<RFC 3339 time>  LEVEL message key=value…`), and the
//! filtering of [`LogQuery`].

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use super::{ControlError, LogEntry, LogQuery};

/// Lines read when a filter (grep, group, level) may drop most of them.
const FILTERED_SCAN_LINES: usize = 20_000;

fn level_rank(level: &str) -> u8 {
    match level.to_ascii_uppercase().as_str() {
        "ERROR" | "CRITICAL" => 0,
        "WARNING" | "WARN" => 1,
        "INFO" => 2,
        _ => 3,
    }
}

/// syslog priority → our level names.
fn level_from_priority(priority: u8) -> &'static str {
    match priority {
        0..=3 => "ERROR",
        4 => "WARNING",
        5 | 6 => "INFO",
        _ => "DEBUG",
    }
}

fn normalise_level(level: &str) -> String {
    match level.to_ascii_uppercase().as_str() {
        "ERROR" | "CRITICAL" | "FATAL" => "ERROR",
        "WARN" | "WARNING" => "WARNING",
        "INFO" => "INFO",
        _ => "DEBUG",
    }
    .to_string()
}

/// Whether an entry passes the query's filters (not the line count).
pub fn matches(entry: &LogEntry, query: &LogQuery) -> bool {
    if let Some(since) = query.since
        && entry.timestamp < since
    {
        return false;
    }
    if let Some(grep) = &query.grep
        && !entry.message.to_lowercase().contains(&grep.to_lowercase())
    {
        return false;
    }
    if let Some(group) = &query.group_id
        && entry.group_id.as_deref() != Some(group.as_str())
        && !entry.message.contains(group.as_str())
    {
        return false;
    }
    if let Some(min) = &query.min_level
        && level_rank(&entry.level) > level_rank(min)
    {
        return false;
    }
    true
}

/// Applies the filters and keeps the last `query.lines` (0 = all) entries.
pub fn select(entries: Vec<LogEntry>, query: &LogQuery) -> Vec<LogEntry> {
    let mut kept: Vec<LogEntry> = entries.into_iter().filter(|e| matches(e, query)).collect();
    if query.lines > 0 && kept.len() > query.lines {
        kept.drain(..kept.len() - query.lines);
    }
    kept
}

fn has_content_filters(query: &LogQuery) -> bool {
    query.grep.is_some() || query.group_id.is_some() || query.min_level.is_some()
}

/// `group_id=…` / `group=…` in a message, as the worker logs it.
fn group_from_message(message: &str) -> Option<String> {
    message.split_whitespace().find_map(|token| {
        let value = token
            .strip_prefix("group_id=")
            .or_else(|| token.strip_prefix("group="))?;
        let value = value.trim_matches(|c| c == '"' || c == ',' || c == '\'');
        (!value.is_empty()).then(|| value.to_string())
    })
}

/// One line of the worker's stderr (tracing's fmt layer: `2026-…Z  INFO message`).
/// Lines without a timestamp (panics, converter output) keep `fallback_time`.
pub fn parse_text_line(line: &str, fallback_time: DateTime<Utc>) -> Option<LogEntry> {
    let line = line.trim_end();
    if line.is_empty() {
        return None;
    }
    let mut parts = line.splitn(2, char::is_whitespace);
    let first = parts.next().unwrap_or_default();
    let (timestamp, rest) = match DateTime::parse_from_rfc3339(first) {
        Ok(time) => (
            time.with_timezone(&Utc),
            parts.next().unwrap_or_default().trim_start(),
        ),
        Err(_) => (fallback_time, line),
    };
    let mut rest_parts = rest.splitn(2, char::is_whitespace);
    let candidate = rest_parts.next().unwrap_or_default();
    let (level, message) = match candidate.to_ascii_uppercase().as_str() {
        "ERROR" | "WARN" | "WARNING" | "INFO" | "DEBUG" | "TRACE" | "CRITICAL" => (
            normalise_level(candidate),
            rest_parts
                .next()
                .unwrap_or_default()
                .trim_start()
                .to_string(),
        ),
        _ => ("INFO".to_string(), rest.to_string()),
    };
    Some(LogEntry {
        timestamp,
        level,
        group_id: group_from_message(&message),
        message,
        pid: None,
    })
}

/// One `journalctl -o json` record. `MESSAGE` may be a byte array (non-UTF-8).
pub fn parse_journal_json(line: &str) -> Option<LogEntry> {
    let record: Value = serde_json::from_str(line).ok()?;
    let field_text = |name: &str| -> Option<String> {
        match record.get(name)? {
            Value::String(text) => Some(text.clone()),
            Value::Array(bytes) => {
                let bytes: Vec<u8> = bytes
                    .iter()
                    .filter_map(|b| b.as_u64().map(|b| b as u8))
                    .collect();
                Some(String::from_utf8_lossy(&bytes).into_owned())
            }
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        }
    };
    let micros: i64 = field_text("__REALTIME_TIMESTAMP")?.parse().ok()?;
    let timestamp = DateTime::<Utc>::from_timestamp_micros(micros)?;
    let message = field_text("MESSAGE").unwrap_or_default();
    let level = field_text("PRIORITY")
        .and_then(|p| p.parse::<u8>().ok())
        .map(level_from_priority)
        .unwrap_or("INFO")
        .to_string();
    let group_id = field_text("GROUP_ID").or_else(|| group_from_message(&message));
    Some(LogEntry {
        timestamp,
        level,
        message,
        group_id,
        pid: field_text("_PID").and_then(|p| p.parse().ok()),
    })
}

/// `journalctl` arguments selecting one unit of the system or the user manager.
fn journal_unit_args(unit: &str, user: bool) -> Vec<String> {
    let mut args = vec!["-o".into(), "json".into(), "--no-pager".into()];
    if user {
        args.push("--user-unit".into());
    } else {
        args.push("-u".into());
    }
    args.push(unit.into());
    args
}

/// The unit's last lines from the journal. `Ok(empty)` when journalctl is missing
/// or knows nothing (no journald) — the caller may then fall back to a log file.
pub async fn journal_entries(
    unit: &str,
    user: bool,
    query: &LogQuery,
) -> Result<Vec<LogEntry>, ControlError> {
    let mut args = journal_unit_args(unit, user);
    let scan = if has_content_filters(query) || query.lines == 0 {
        FILTERED_SCAN_LINES
    } else {
        query.lines
    };
    args.push("-n".into());
    args.push(scan.to_string());
    if let Some(since) = query.since {
        args.push(format!("--since=@{}", since.timestamp()));
    }
    let output = match tokio::process::Command::new("journalctl")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .await
    {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err.into()),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let entries = text.lines().filter_map(parse_journal_json).collect();
    Ok(select(entries, query))
}

/// Follows the journal for a unit (`journalctl -f`), starting with the last
/// `query.lines` entries. The child is killed when the stream is dropped.
pub fn follow_journal(
    unit: &str,
    user: bool,
    query: &LogQuery,
) -> Result<BoxStream<'static, Result<LogEntry, ControlError>>, ControlError> {
    let mut args = journal_unit_args(unit, user);
    args.push("-f".into());
    args.push("-n".into());
    args.push(query.lines.to_string());
    let mut child = tokio::process::Command::new("journalctl")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| ControlError::Io(std::io::Error::other("journalctl has no stdout")))?;
    let query = query.clone();
    let lines = tokio::io::BufReader::new(stdout).lines();
    let stream = futures_util::stream::unfold((lines, child), |(mut lines, child)| async move {
        match lines.next_line().await {
            Ok(Some(line)) => Some((Ok(Some(line)), (lines, child))),
            Ok(None) => None,
            Err(err) => Some((Err(ControlError::Io(err)), (lines, child))),
        }
    })
    .filter_map(move |item| {
        let query = query.clone();
        async move {
            match item {
                Ok(Some(line)) => parse_journal_json(&line)
                    .filter(|entry| matches(entry, &query))
                    .map(Ok),
                Ok(None) => None,
                Err(err) => Some(Err(err)),
            }
        }
    });
    Ok(stream.boxed())
}

/// The last lines of a text log file (and its rotated predecessor `<file>.1`).
pub fn file_entries(path: &Path, query: &LogQuery) -> Result<Vec<LogEntry>, ControlError> {
    let mut text = String::new();
    let rotated = rotated_path(path);
    if let Ok(old) = std::fs::read(&rotated) {
        text.push_str(&String::from_utf8_lossy(&old));
    }
    match std::fs::read(path) {
        Ok(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err.into()),
    }
    let mut last_time = DateTime::<Utc>::UNIX_EPOCH;
    let entries = text
        .lines()
        .filter_map(|line| {
            let entry = parse_text_line(line, last_time)?;
            last_time = entry.timestamp;
            Some(entry)
        })
        .collect();
    Ok(select(entries, query))
}

pub fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".1");
    path.with_file_name(name)
}

/// Follows a text log file by polling (it may be rotated or truncated underneath).
pub fn follow_file(
    path: &Path,
    query: &LogQuery,
) -> Result<BoxStream<'static, Result<LogEntry, ControlError>>, ControlError> {
    let initial = file_entries(path, query)?;
    let start_offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let path = path.to_path_buf();
    let query = query.clone();
    let tail = futures_util::stream::unfold(
        (path, start_offset, String::new()),
        move |(path, mut offset, mut partial)| {
            let query = query.clone();
            async move {
                loop {
                    let length = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    if length < offset {
                        // Rotated or truncated: start again from the beginning.
                        offset = 0;
                    }
                    if length > offset
                        && let Ok(mut file) = std::fs::File::open(&path)
                        && file.seek(SeekFrom::Start(offset)).is_ok()
                    {
                        let mut bytes = Vec::new();
                        if file.read_to_end(&mut bytes).is_ok() {
                            offset += bytes.len() as u64;
                            partial.push_str(&String::from_utf8_lossy(&bytes));
                        }
                    }
                    if let Some(newline) = partial.find('\n') {
                        let line: String = partial.drain(..=newline).collect();
                        if let Some(entry) = parse_text_line(&line, Utc::now())
                            && matches(&entry, &query)
                        {
                            return Some((Ok(entry), (path, offset, partial)));
                        }
                        continue;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        },
    );
    Ok(futures_util::stream::iter(initial.into_iter().map(Ok))
        .chain(tail)
        .boxed())
}

/// A minimum level that is none of ERROR, WARNING, INFO, DEBUG (or their aliases).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown level {0:?} (ERROR, WARNING, INFO, DEBUG)")]
pub struct LevelError(pub String);

/// A minimum level (`contimgctl logs --level`, `GET logs?level=`), case-insensitive,
/// as [`LogQuery::min_level`] takes it: `ERROR` (also `CRITICAL`), `WARNING`
/// (also `WARN`), `INFO` or `DEBUG`.
pub fn parse_level(text: &str) -> Result<&'static str, LevelError> {
    match text.trim().to_ascii_uppercase().as_str() {
        "ERROR" | "CRITICAL" => Ok("ERROR"),
        "WARNING" | "WARN" => Ok("WARNING"),
        "INFO" => Ok("INFO"),
        "DEBUG" => Ok("DEBUG"),
        _ => Err(LevelError(text.to_string())),
    }
}

/// Why a `since` (`contimgctl logs --since`, `GET /api/streaming/logs?since=`)
/// was refused; both report it as a usage error (exit 2, HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinceError {
    #[error("{text:?}: expected an RFC 3339 time or a duration such as 10m ({reason})")]
    Unparsable { text: String, reason: String },
    #[error("{text:?} is too far back")]
    TooFarBack { text: String },
}

/// `since` as an absolute time: an RFC 3339 time, or a duration (`10m`, `2h 30m`)
/// counted back from now.
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, SinceError> {
    parse_since_at(text, Utc::now())
}

/// [`parse_since`] with the clock passed in.
pub fn parse_since_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, SinceError> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let ago = humantime::parse_duration(text).map_err(|err| SinceError::Unparsable {
        text: text.to_string(),
        reason: err.to_string(),
    })?;
    let too_far = || SinceError::TooFarBack {
        text: text.to_string(),
    };
    let ago = chrono::Duration::from_std(ago).map_err(|_| too_far())?;
    now.checked_sub_signed(ago).ok_or_else(too_far)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_worker_stderr_lines() {
        let entry = parse_text_line(
            "2026-11-25T10:00:00.123456Z  WARN conversion failed group_id=2026-11-25T09:55:00 attempt=1",
            Utc::now(),
        )
        .unwrap();
        assert_eq!(entry.level, "WARNING");
        assert_eq!(entry.group_id.as_deref(), Some("2026-11-25T09:55:00"));
        assert!(entry.message.starts_with("conversion failed"));
        let plain = parse_text_line("thread panicked", DateTime::<Utc>::UNIX_EPOCH).unwrap();
        assert_eq!(plain.level, "INFO");
        assert_eq!(plain.message, "thread panicked");
    }

    #[test]
    fn parses_journal_json_with_byte_array_message() {
        let line = r#"{"__REALTIME_TIMESTAMP":"1764064800000000","MESSAGE":[104,105,255],"PRIORITY":"3","_PID":"42","GROUP_ID":"g1"}"#;
        let entry = parse_journal_json(line).unwrap();
        assert_eq!(entry.message, "hi\u{fffd}");
        assert_eq!(entry.level, "ERROR");
        assert_eq!(entry.pid, Some(42));
        assert_eq!(entry.group_id.as_deref(), Some("g1"));
    }

    #[test]
    fn select_filters_then_keeps_the_last_lines() {
        let now = Utc::now();
        let entries: Vec<LogEntry> = ["INFO a", "ERROR b", "INFO c", "ERROR d"]
            .iter()
            .filter_map(|line| parse_text_line(line, now))
            .collect();
        let query = LogQuery {
            lines: 1,
            min_level: Some("ERROR".into()),
            ..Default::default()
        };
        let kept = select(entries, &query);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].message, "d");
    }

    #[test]
    fn since_takes_rfc3339_times_and_durations_back_from_now() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = parse_since_at("2026-11-29T11:00:00+01:00", now).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-29T10:00:00+00:00");
        let ago = parse_since_at(" 10m ", now).unwrap();
        assert_eq!(now - ago, chrono::Duration::minutes(10));
        assert!(matches!(
            parse_since_at("yesterday-ish", now),
            Err(SinceError::Unparsable { text, .. }) if text == "yesterday-ish"
        ));
        assert_eq!(
            parse_since_at("500000000y", now),
            Err(SinceError::TooFarBack {
                text: "500000000y".into()
            })
        );
    }

    #[test]
    fn levels_take_aliases_in_any_case_and_refuse_the_rest() {
        assert_eq!(parse_level("critical"), Ok("ERROR"));
        assert_eq!(parse_level(" Warn "), Ok("WARNING"));
        assert_eq!(parse_level("debug"), Ok("DEBUG"));
        assert_eq!(parse_level("verbose"), Err(LevelError("verbose".into())));
    }
}
