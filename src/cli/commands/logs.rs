//! `contimgctl logs`: the worker's log lines, filtered, optionally followed.

use futures_util::StreamExt;

use contimg_control::logs::parse_since;
use contimg_control::{LogEntry, LogQuery, exit_code};

use super::connect_backend;
use crate::args::LogsArgs;
use crate::{Cli, CliError, output};

pub async fn run(cli: &Cli, args: &LogsArgs) -> Result<i32, CliError> {
    let query = LogQuery {
        lines: args.lines,
        since: args.since.as_deref().map(parse_since).transpose()?,
        grep: args.grep.clone(),
        group_id: args.group.clone(),
        min_level: args.level.clone(),
    };
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
    }
    Ok(exit_code::OK)
}
