//! `contimgctl queue [show GROUP | retry GROUP]`: the queue DB, read directly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use contimg_control::exit_code;
use contimg_core::queue::{
    GroupFilter, GroupState, QueueError, QueueReader, request_retry, unix_now,
};

use super::{connect_backend, existing_config_store, print_json};
use crate::args::QueueArgs;
use crate::{Cli, CliError, output, seconds};

/// How many unrecognised and late files the text listing shows.
const INPUT_PROBLEMS_SHOWN: usize = 5;

fn open_queue(cli: &Cli) -> Result<QueueReader, CliError> {
    let (config, _) = existing_config_store(cli)?.load()?;
    open_reader(cli, &config.queue_db)
}

/// Opens the queue DB; a missing one is reported with the state dir's rule.
pub(super) fn open_reader(cli: &Cli, queue_db: &Path) -> Result<QueueReader, CliError> {
    QueueReader::open(queue_db).map_err(|err| match (err, cli.state_dir()) {
        (QueueError::Missing(path), Ok(state_dir)) => CliError::MissingInStateDir {
            what: "queue DB",
            path,
            hint: " (has the worker ever run?)",
            state_dir: state_dir.clone(),
        },
        (err, _) => err.into(),
    })
}

pub fn list(cli: &Cli, args: &QueueArgs) -> Result<i32, CliError> {
    let state = match &args.state {
        Some(text) => Some(GroupState::parse(text).ok_or_else(|| {
            CliError::Usage(format!(
                "unknown state {text:?} (collecting, pending, in_progress, completed, failed)"
            ))
        })?),
        None => None,
    };
    let reader = open_queue(cli)?;
    let stats = reader.stats(unix_now())?;
    let groups = reader.groups(&GroupFilter {
        state,
        limit: Some(args.limit),
        before: None,
    })?;
    let unrecognised = reader.unrecognised_files(args.limit)?;
    let late = reader.late_files(args.limit)?;
    if cli.json {
        return print_json(&serde_json::json!({"queue_stats": stats.counts, "processing_rate_per_hour": stats.processing_rate_per_hour, "groups": groups,
            "unrecognised_files_total": stats.unrecognised_files, "unrecognised_files": unrecognised,
            "late_files_total": stats.late_files, "late_files": late}))
            .map(|_| exit_code::OK);
    }
    println!("{}", stats.summary_line());
    print!(
        "{}",
        output::input_problems_text(&stats, &unrecognised, &late, INPUT_PROBLEMS_SHOWN)
    );
    print!("{}", output::groups_table(&groups));
    Ok(exit_code::OK)
}

pub fn show(cli: &Cli, group_id: &str) -> Result<i32, CliError> {
    let reader = open_queue(cli)?;
    let Some(detail) = reader.group(group_id)? else {
        return Err(QueueError::UnknownGroup(group_id.to_string()).into());
    };
    if cli.json {
        return print_json(&detail).map(|_| exit_code::OK);
    }
    print!("{}", output::group_text(&detail));
    Ok(exit_code::OK)
}

/// Asks the worker to retry a failed group and waits up to `wait` seconds for
/// it to leave `failed` (when the worker runs).
pub async fn retry(cli: &Cli, group_id: &str, wait: f64) -> Result<i32, CliError> {
    let store = existing_config_store(cli)?;
    let backend = connect_backend(cli).await?;
    let (config, _) = store.load()?;
    let queue_db = config.queue_db.clone();
    // Reported with the state dir's rule when the DB is missing.
    drop(open_reader(cli, &queue_db)?);
    let read_state = move |queue_db: PathBuf, group: String| {
        QueueReader::open(&queue_db)
            .and_then(|reader| reader.group(&group))
            .map(|detail| detail.map(|d| d.summary.state))
    };
    let state = read_state(queue_db.clone(), group_id.to_string())?;
    match state {
        None => return Err(QueueError::UnknownGroup(group_id.to_string()).into()),
        Some(GroupState::Failed) => {}
        Some(
            other @ (GroupState::Collecting
            | GroupState::Pending
            | GroupState::InProgress
            | GroupState::Completed),
        ) => {
            return Err(CliError::NotRetryable {
                group_id: group_id.to_string(),
                state: other,
            });
        }
    }
    request_retry(store.state_dir(), group_id)?;
    let running = backend.status().await.map(|s| s.running).unwrap_or(false);
    let mut new_state = GroupState::Failed;
    if running {
        let deadline = tokio::time::Instant::now() + seconds(wait);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Ok(Some(state)) = read_state(queue_db.clone(), group_id.to_string())
                && state != GroupState::Failed
            {
                new_state = state;
                break;
            }
        }
    }
    let message = if !running {
        format!(
            "retry of {group_id} requested; the worker is not running, it will pick it up when started"
        )
    } else if new_state == GroupState::Failed {
        format!("retry of {group_id} requested; the worker has not picked it up yet")
    } else {
        format!("{group_id} is now {new_state}")
    };
    if cli.json {
        print_json(&serde_json::json!({"success": true, "message": message, "state": new_state}))?;
    } else {
        println!("{message}");
    }
    Ok(exit_code::OK)
}
