//! `contimgctl start|stop|restart`: one [`Operation`], waited for.

use std::io::IsTerminal;
use std::time::Duration;

use contimg_control::{Backend, ControlOutcome, Operation, exit_code};

use super::{connect_backend, print_json};
use crate::{Cli, CliError, output};

pub async fn run(cli: &Cli, operation: Operation) -> Result<i32, CliError> {
    let backend = connect_backend(cli).await?;
    let outcome = with_spinner(cli, backend.as_ref(), operation).await?;
    report_outcome(cli, &outcome)?;
    Ok(if outcome.success {
        exit_code::OK
    } else {
        exit_code::FAILED
    })
}

/// Runs `operation` with a spinner on stderr when a person watches.
async fn with_spinner(
    cli: &Cli,
    backend: &dyn Backend,
    operation: Operation,
) -> Result<ControlOutcome, CliError> {
    let spinner = (!cli.json && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(format!("{operation} {} …", backend.target()));
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    });
    let result = backend.operate(operation, cli.job_timeout()).await;
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    Ok(result?)
}

fn report_outcome(cli: &Cli, outcome: &ControlOutcome) -> Result<(), CliError> {
    if cli.json {
        // The API's control shape plus the job result and, on failure, the logs.
        print_json(&serde_json::json!({
            "success": outcome.success,
            "message": outcome.message,
            "pid": outcome.pid,
            "result": outcome.result,
            "logs": outcome.recent_logs,
        }))
    } else {
        println!("{}", output::outcome_text(outcome));
        Ok(())
    }
}
