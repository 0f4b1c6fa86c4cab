//! `contimgctl simulate …`: hands its arguments to `contimg-stream simulate`.

use std::ffi::OsString;

use contimg_control::exit_code;

use crate::{Cli, CliError};

/// Runs the simulator in `contimg-stream` (next to this binary, or `--worker-bin`)
/// with the operator's arguments, its output going straight to ours. Not
/// in-process: the simulator writes HDF5, and linking libhdf5 (which pulls in
/// curl, GnuTLS, Kerberos, LDAP, …) into `contimgctl` cost ~3.4 ms of dynamic
/// loading on every invocation, most of `status`'s budget.
pub async fn run(cli: &Cli, args: &[OsString]) -> Result<i32, CliError> {
    let worker = cli
        .worker_bin
        .clone()
        .unwrap_or_else(contimg_control::process::default_worker_bin);
    let mut command = tokio::process::Command::new(&worker);
    command.arg("simulate").args(args);
    if cli.json {
        command.arg("--json");
    }
    let status = command
        .stdin(std::process::Stdio::null())
        .status()
        .await
        .map_err(|source| CliError::WorkerBinary {
            path: worker.clone(),
            source,
        })?;
    Ok(status.code().unwrap_or(exit_code::FAILED))
}
