//! `contimgctl completions SHELL` and `contimgctl man`.

use clap::CommandFactory;
use contimg_control::exit_code;

use super::write_stdout;
use crate::{Cli, CliError};

pub fn completions(shell: clap_complete::Shell) -> Result<i32, CliError> {
    let mut command = Cli::command();
    // Into a buffer: clap_complete panics on write errors (e.g. `| head`).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "contimgctl", &mut script);
    write_stdout(&script)?;
    Ok(exit_code::OK)
}

pub fn man() -> Result<i32, CliError> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    write_stdout(&page)?;
    Ok(exit_code::OK)
}
