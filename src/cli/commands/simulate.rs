//! `contimgctl simulate …`: hands its arguments to `contimg-stream simulate`.

use std::ffi::OsString;

use crate::{Cli, CliError};

/// Becomes `contimg-stream simulate` (next to this binary, or `--worker-bin`) with
/// the operator's arguments: exec, not a child, so a signal to `contimgctl`
/// reaches the simulator itself and nothing outlives a killed CLI. Not
/// in-process: the simulator writes HDF5, and linking libhdf5 (which pulls in
/// curl, GnuTLS, Kerberos, LDAP, …) into `contimgctl` cost ~3.4 ms of dynamic
/// loading on every invocation, most of `status`'s budget. Returns only when the
/// exec failed.
pub fn exec(cli: &Cli, args: &[OsString]) -> CliError {
    use std::os::unix::process::CommandExt;
    let worker = cli
        .worker_bin
        .clone()
        .unwrap_or_else(contimg_control::process::default_worker_bin);
    let mut command = std::process::Command::new(&worker);
    command.arg("simulate").args(args);
    if cli.json {
        command.arg("--json");
    }
    let source = command.stdin(std::process::Stdio::null()).exec();
    CliError::WorkerBinary {
        path: worker,
        source,
    }
}
