//! One file per verb or resource of `contimgctl`, dispatched by [`dispatch`]: one
//! exhaustive `match` on [`Command`] (no `_ =>` arm, so a new subcommand fails the
//! build until it is handled here).

pub mod completions;
pub mod config;
pub mod gc;
pub mod health;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod operation;
pub mod queue;
pub mod simulate;
pub mod status;

use std::io::Write;
use std::sync::Arc;

use crate::args::{Command, ConfigCommand, LimitsCommand, QueueAction};
use crate::{Cli, CliError};
use contimg_control::detect::Detected;
use contimg_control::{Backend, BackendKind, Operation};
use contimg_core::config::ConfigStore;

/// Runs the parsed command; returns the exit code.
pub async fn dispatch(cli: &Cli) -> Result<i32, CliError> {
    match &cli.command {
        Command::Start => operation::run(cli, Operation::Start).await,
        Command::Stop => operation::run(cli, Operation::Stop).await,
        Command::Restart => operation::run(cli, Operation::Restart).await,
        Command::Status => status::run(cli).await,
        Command::Health => health::run(cli).await,
        Command::Logs(args) => logs::run(cli, args).await,
        Command::Metrics => metrics::run(cli).await,
        Command::Config(ConfigCommand::Show) => config::show(cli),
        Command::Config(ConfigCommand::Set {
            assignments,
            no_restart,
        }) => config::set(cli, assignments, *no_restart).await,
        Command::Config(ConfigCommand::Edit { no_restart }) => config::edit(cli, *no_restart).await,
        Command::Config(ConfigCommand::Validate { file }) => config::validate(cli, file),
        Command::Queue(args) => match &args.action {
            None => queue::list(cli, args),
            Some(QueueAction::Show { group }) => queue::show(cli, group),
            Some(QueueAction::Retry { group, wait }) => queue::retry(cli, group, *wait).await,
        },
        Command::Gc { dry_run } => gc::run(cli, *dry_run),
        Command::Limits(LimitsCommand::Show) => limits::show(cli).await,
        Command::Limits(LimitsCommand::Set {
            memory_max,
            cpu_quota,
            persistent,
        }) => {
            limits::set(
                cli,
                memory_max.as_deref(),
                cpu_quota.as_deref(),
                *persistent,
            )
            .await
        }
        Command::Simulate(passthrough) => Err(simulate::exec(cli, &passthrough.args)),
        Command::Completions { shell } => completions::completions(*shell),
        Command::Man => completions::man(),
    }
}

/// Whether `command` works on the state dir, so [`crate::run`] looks for it
/// first (and talks to D-Bus for that only then).
pub fn uses_state_dir(command: &Command) -> bool {
    match command {
        Command::Start
        | Command::Stop
        | Command::Restart
        | Command::Status
        | Command::Health
        | Command::Logs(_)
        | Command::Metrics
        | Command::Config(_)
        | Command::Queue(_)
        | Command::Gc { .. }
        | Command::Limits(_) => true,
        Command::Simulate(_) | Command::Completions { .. } | Command::Man => false,
    }
}

/// The backend the flags select (auto-detected by default). The process and
/// Docker backends keep their PID file or mount in the state dir, so they need
/// one; a systemd unit runs without.
async fn connect(cli: &Cli) -> Result<Detected, CliError> {
    let detected = contimg_control::detect::detect(&cli.control_options()).await?;
    match detected.backend.kind() {
        BackendKind::Systemd => {}
        BackendKind::Process | BackendKind::Docker => {
            cli.state_dir()?;
        }
    }
    Ok(detected)
}

async fn connect_backend(cli: &Cli) -> Result<Arc<dyn Backend>, CliError> {
    Ok(connect(cli).await?.backend)
}

/// The config of the state dir that was found (which may not exist yet).
fn config_store(cli: &Cli) -> Result<ConfigStore, CliError> {
    Ok(ConfigStore::new(&cli.state_dir()?.path))
}

/// Like [`config_store`], for commands that read or write files in the state
/// dir: a missing dir is an error naming it and the rule that chose it (rather
/// than the defaults a missing `streaming.toml` would give).
fn existing_config_store(cli: &Cli) -> Result<ConfigStore, CliError> {
    let found = cli.state_dir()?;
    found.require_existing()?;
    Ok(ConfigStore::new(&found.path))
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)?;
    println!("{text}");
    Ok(())
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
