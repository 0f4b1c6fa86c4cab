//! `contimgctl metrics`: the API's `metrics` document.

use contimg_control::{exit_code, report};

use super::{config_store, connect_backend, print_json};
use crate::{Cli, CliError, output};

pub async fn run(cli: &Cli) -> Result<i32, CliError> {
    let backend = connect_backend(cli).await?;
    let snapshot = report::gather(backend.as_ref(), &config_store(cli)?).await?;
    if cli.json {
        print_json(&snapshot.metrics_report())?;
    } else {
        print!("{}", output::metrics_text(&snapshot));
    }
    Ok(exit_code::OK)
}
