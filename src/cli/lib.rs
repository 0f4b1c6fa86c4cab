//! `contimgctl`: the operator's CLI. The binary only parses arguments and calls
//! [`run`]; everything here is library code so tests and the API share it.
//!
//! Layout (after pueue's `client/commands/`): [`args`] defines the command line,
//! [`commands`] holds one file per verb or resource and the one exhaustive
//! `match` on [`args::Command`] that dispatches to them, [`output`] formats what
//! they print.

pub mod args;
pub mod commands;
pub mod output;

use std::path::PathBuf;
use std::time::Duration;

pub use args::Cli;
pub use commands::limits::{parse_percent, parse_size};

use contimg_control::logs::{LevelError, SinceError};
use contimg_control::state_dir::{self, StateDir, StateDirError};
use contimg_control::{ControlError, ControlOptions, exit_code};
use contimg_core::config::ConfigError;
use contimg_core::queue::QueueError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error(transparent)]
    StateDir(#[from] StateDirError),
    /// A file the state dir should hold is missing: says which rule chose the dir.
    #[error("{what} {} does not exist{hint}; state dir {state_dir}", path.display())]
    MissingInStateDir {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
        state_dir: StateDir,
    },
    #[error("{0}")]
    Usage(String),
    #[error("--since {0}")]
    Since(#[from] SinceError),
    #[error("--level: {0}")]
    Level(#[from] LevelError),
    /// `simulate` runs the simulator inside the worker binary.
    #[error("cannot run the simulator in {}: {source} (pass --worker-bin)", path.display())]
    WorkerBinary {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the editor exited with {0}")]
    Editor(std::process::ExitStatus),
    #[error("group {group_id} is {state}, not failed: nothing to retry")]
    NotRetryable {
        group_id: String,
        state: contimg_core::queue::GroupState,
    },
    #[error("cannot serialize the output: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    /// The exit code (table in `contimgctl --help` and docs/operations.md).
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Control(err) => err.exit_code(),
            CliError::Config(err) => match err {
                ConfigError::Invalid { .. } | ConfigError::Parse { .. } => exit_code::USAGE,
                _ => exit_code::FAILED,
            },
            CliError::Usage(_) | CliError::Since(_) | CliError::Level(_) => exit_code::USAGE,
            // Nothing says where the worker keeps its state: pass --state-dir.
            CliError::StateDir(StateDirError::NotFound { .. }) => exit_code::USAGE,
            CliError::StateDir(StateDirError::Missing { .. })
            | CliError::MissingInStateDir { .. }
            | CliError::Queue(_)
            | CliError::WorkerBinary { .. }
            | CliError::Editor(_)
            | CliError::NotRetryable { .. }
            | CliError::Serialize(_)
            | CliError::Io(_) => exit_code::FAILED,
        }
    }
}

impl Cli {
    /// The state dir the command works on and the rule that chose it (found by
    /// [`Cli::find_state_dir`], which [`run`] calls first).
    pub fn state_dir(&self) -> Result<&StateDir, CliError> {
        match self.found_state_dir.get() {
            Some(Ok(found)) => Ok(found),
            Some(Err(err)) => Err(err.clone().into()),
            None => Err(StateDirError::NotFound {
                tried: vec!["nothing: the state dir was not looked for".into()],
            }
            .into()),
        }
    }

    /// Looks for the state dir (`contimg_control::state_dir` has the rules).
    pub async fn find_state_dir(&self) -> &Result<StateDir, StateDirError> {
        if let Some(found) = self.found_state_dir.get() {
            return found;
        }
        let mut options = self.control_options();
        options.state_dir = PathBuf::new();
        let found = state_dir::discover(
            self.state_dir.as_deref(),
            &options,
            &state_dir::HostProbe::from_host(),
        )
        .await;
        self.found_state_dir.get_or_init(|| found)
    }

    /// The options for reaching the worker. Its `state_dir` is empty when none was
    /// found: only the systemd backend can do without one (see `commands::connect`).
    pub fn control_options(&self) -> ControlOptions {
        let state_dir = match self.found_state_dir.get() {
            Some(Ok(found)) => found.path.clone(),
            _ => PathBuf::new(),
        };
        ControlOptions {
            backend: self.backend,
            user: self.user,
            unit: self.unit.clone(),
            instance: self.instance.clone(),
            state_dir,
            worker_bin: self.worker_bin.clone(),
            log_file: self.log_file.clone(),
            docker_socket: self.docker_socket.clone(),
            docker_image: self.docker_image.clone(),
            docker_container: self.docker_container.clone(),
            docker_mounts: self.docker_mounts.clone(),
            stop_timeout: seconds(self.stop_timeout),
            ..ControlOptions::default()
        }
    }

    fn job_timeout(&self) -> Duration {
        seconds(self.timeout)
    }
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(Duration::from_secs(90))
}

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32, CliError> {
    if commands::uses_state_dir(&cli.command) {
        cli.find_state_dir().await;
    }
    commands::dispatch(&cli).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};
    use contimg_control::BackendChoice;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn backend_flag_is_the_control_crates_choice() {
        let cli = Cli::try_parse_from(["contimgctl", "--backend", "process", "status"]).unwrap();
        assert_eq!(cli.control_options().backend, BackendChoice::Process);
        assert!(Cli::try_parse_from(["contimgctl", "--backend", "podman", "status"]).is_err());
    }

    /// Each error's exit code, as documented in docs/operations.md.
    #[test]
    fn errors_map_to_the_documented_exit_codes() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let cases: Vec<(CliError, i32)> = vec![
            (
                ControlError::PermissionDenied("polkit".into()).into(),
                exit_code::PERMISSION_DENIED,
            ),
            (
                ControlError::UnknownUnit("x.service".into()).into(),
                exit_code::UNKNOWN_UNIT,
            ),
            (
                ControlError::Unavailable("no bus".into()).into(),
                exit_code::UNAVAILABLE,
            ),
            (
                ControlError::WorkerBinaryMissing {
                    path: "/nope".into(),
                }
                .into(),
                exit_code::FAILED,
            ),
            (CliError::Usage("bad".into()), exit_code::USAGE),
            (
                contimg_control::logs::parse_since("soon")
                    .unwrap_err()
                    .into(),
                exit_code::USAGE,
            ),
            (
                CliError::WorkerBinary {
                    path: "/nope".into(),
                    source: io(),
                },
                exit_code::FAILED,
            ),
            (
                CliError::NotRetryable {
                    group_id: "g".into(),
                    state: contimg_core::queue::GroupState::Completed,
                },
                exit_code::FAILED,
            ),
            (CliError::Io(io()), exit_code::FAILED),
            (
                StateDirError::NotFound { tried: Vec::new() }.into(),
                exit_code::USAGE,
            ),
            (
                StateDirError::Missing {
                    path: "/nope".into(),
                    rule: state_dir::StateDirRule::Flag,
                }
                .into(),
                exit_code::FAILED,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error}");
        }
    }
}
