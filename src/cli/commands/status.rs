//! `contimgctl status`: state, PID, resources, queue counts (exit 3 if not running).

use contimg_control::{exit_code, report};

use super::{config_store, connect, print_json};
use crate::{Cli, CliError, output};

pub async fn run(cli: &Cli) -> Result<i32, CliError> {
    let detected = connect(cli).await?;
    let backend = detected.backend.as_ref();
    let snapshot = report::gather(backend, &config_store(cli)).await?;
    if cli.json {
        print_json(&snapshot.status_report())?;
    } else {
        let detail = format!("{} ({})", backend.kind(), detected.reason);
        print!("{}", output::status_text(&snapshot, &detail));
    }
    Ok(if snapshot.status.running {
        exit_code::OK
    } else {
        exit_code::NOT_RUNNING
    })
}
