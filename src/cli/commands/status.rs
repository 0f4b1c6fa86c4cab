//! `contimgctl status`: state, PID, resources, queue counts (exit 3 if not running).

use contimg_control::{exit_code, report};

use super::{config_store, connect, print_json};
use crate::{Cli, CliError, output};

pub async fn run(cli: &Cli) -> Result<i32, CliError> {
    let detected = connect(cli).await?;
    let backend = detected.backend.as_ref();
    let state_dir = cli.state_dir()?;
    let snapshot = report::gather(backend, &config_store(cli)?).await?;
    if cli.json {
        let mut status = snapshot.status_report();
        // With the manager ("systemd user unit …"), which the snapshot does not know.
        status.backend_description = backend.describe();
        let mut report = serde_json::to_value(status)?;
        if let Some(fields) = report.as_object_mut() {
            fields.insert(
                "state_dir".into(),
                state_dir.path.display().to_string().into(),
            );
            fields.insert("state_dir_rule".into(), state_dir.rule.to_string().into());
        }
        print_json(&report)?;
    } else {
        let backend_line = format!("{} (chosen: {})", backend.describe(), detected.reason);
        print!(
            "{}",
            output::status_text(&snapshot, &backend_line, state_dir)
        );
    }
    Ok(if snapshot.status.running {
        exit_code::OK
    } else {
        exit_code::NOT_RUNNING
    })
}
