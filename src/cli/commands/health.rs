//! `contimgctl health`: the one health verdict (`control::report`), exit 3 if not
//! running, 1 if unhealthy.

use contimg_control::{alerts, exit_code, report};

use super::{config_store, connect_backend, print_json};
use crate::{Cli, CliError, output};

pub async fn run(cli: &Cli) -> Result<i32, CliError> {
    let backend = connect_backend(cli).await?;
    let snapshot = report::gather(backend.as_ref(), &config_store(cli)?).await?;
    let critical = alerts::critical_for_snapshot(&snapshot);
    let health = snapshot.health_report(&critical);
    if cli.json {
        print_json(&health)?;
    } else {
        print!(
            "{}",
            output::health_text(
                &health,
                &snapshot.status.active_state,
                &backend.describe(),
                cli.state_dir()?,
            )
        );
    }
    Ok(if !health.running {
        exit_code::NOT_RUNNING
    } else if health.healthy {
        exit_code::OK
    } else {
        exit_code::FAILED
    })
}
