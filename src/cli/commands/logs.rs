//! `contimgctl logs`: the worker's log lines, filtered, optionally followed.

use futures_util::StreamExt;

use contimg_control::job_log::{MAX_TAIL_BYTES, read_attempt_log};
use contimg_control::logs::{parse_level, parse_since};
use contimg_control::{LogEntry, LogQuery, exit_code};
use contimg_core::queue::GroupDetail;

use super::{config_store, connect_backend};
use crate::args::LogsArgs;
use crate::{Cli, CliError, output};

/// The backend query for the flags; a bad `--since` or `--level` is a usage error.
fn log_query(args: &LogsArgs) -> Result<LogQuery, CliError> {
    Ok(LogQuery {
        lines: args.lines,
        since: args.since.as_deref().map(parse_since).transpose()?,
        grep: args.grep.clone(),
        group_id: args.group.clone(),
        min_level: args
            .level
            .as_deref()
            .map(|text| parse_level(text).map(str::to_string))
            .transpose()?,
    })
}

pub async fn run(cli: &Cli, args: &LogsArgs) -> Result<i32, CliError> {
    let query = log_query(args)?;
    let backend = connect_backend(cli).await?;
    let print = |entry: &LogEntry| -> Result<(), CliError> {
        if cli.json {
            println!("{}", serde_json::to_string(entry)?);
        } else {
            println!("{}", output::log_line(entry));
        }
        Ok(())
    };
    if args.follow {
        let mut stream = backend.follow_logs(&query).await?;
        while let Some(entry) = stream.next().await {
            print(&entry?)?;
        }
    } else {
        for entry in backend.logs(&query).await? {
            print(&entry)?;
        }
        if let Some(group_id) = &args.group {
            print_job_logs(cli, group_id, args.lines)?;
        }
    }
    Ok(exit_code::OK)
}

/// With the Slurm executor a group's conversion output is in each attempt's job
/// log, not in the worker's journal: its last `lines` lines follow the journal's.
/// Nothing is printed for a group that never ran as a job or is not in the queue.
fn print_job_logs(cli: &Cli, group_id: &str, lines: usize) -> Result<(), CliError> {
    let Ok((config, _)) = config_store(cli)?.load() else {
        return Ok(());
    };
    let Ok(reader) = contimg_core::queue::QueueReader::open(&config.queue_db) else {
        return Ok(());
    };
    let Some(detail) = reader.group(group_id)? else {
        return Ok(());
    };
    for attempt in attempts_with_job_log(&detail) {
        match read_attempt_log(&detail, Some(attempt), MAX_TAIL_BYTES) {
            Ok(tail) => {
                let shown = last_lines(&tail.text, lines);
                if cli.json {
                    println!(
                        "{}",
                        serde_json::json!({"job_log": {"group_id": tail.group_id,
                            "attempt": tail.attempt, "job_id": tail.job_id,
                            "path": tail.path, "lines": shown}})
                    );
                } else {
                    println!(
                        "── {group_id} attempt {attempt}: Slurm job {} log {} ──",
                        tail.job_id.as_deref().unwrap_or("(no id)"),
                        tail.path.display()
                    );
                    for line in shown {
                        println!("{line}");
                    }
                }
            }
            // A missing or unreadable log is named; the other attempts still show.
            Err(err) => eprintln!("{err}"),
        }
    }
    Ok(())
}

fn attempts_with_job_log(detail: &GroupDetail) -> Vec<u32> {
    (detail.attempts.iter())
        .filter(|a| a.job.as_ref().is_some_and(|job| job.log_path.is_some()))
        .map(|a| a.attempt)
        .collect()
}

fn last_lines(text: &str, count: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use contimg_control::exit_code;

    fn query(flags: &[&str]) -> Result<LogQuery, CliError> {
        let cli = Cli::try_parse_from([&["contimgctl", "logs"], flags].concat()).unwrap();
        match &cli.command {
            crate::args::Command::Logs(args) => log_query(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn levels_are_the_apis_and_anything_else_is_a_usage_error() {
        let level = |text: &str| query(&["--level", text]).map(|q| q.min_level);
        assert_eq!(level("warn").unwrap().as_deref(), Some("WARNING"));
        assert_eq!(level("critical").unwrap().as_deref(), Some("ERROR"));
        assert_eq!(level("INFO").unwrap().as_deref(), Some("INFO"));
        let error = level("bogus").unwrap_err();
        assert_eq!(error.exit_code(), exit_code::USAGE, "{error}");
        assert!(query(&[]).unwrap().min_level.is_none());
    }

    #[test]
    fn a_bad_since_is_a_usage_error() {
        let error = query(&["--since", "last tuesday"]).unwrap_err();
        assert_eq!(error.exit_code(), exit_code::USAGE, "{error}");
        assert!(query(&["--since", "10m"]).unwrap().since.is_some());
    }
}
