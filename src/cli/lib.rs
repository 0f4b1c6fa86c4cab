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
use contimg_control::{ControlError, ControlOptions, exit_code};
use contimg_core::config::{ConfigError, ConfigStore};
use contimg_core::queue::QueueError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
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
            CliError::Queue(_)
            | CliError::WorkerBinary { .. }
            | CliError::Editor(_)
            | CliError::NotRetryable { .. }
            | CliError::Serialize(_)
            | CliError::Io(_) => exit_code::FAILED,
        }
    }
}

impl Cli {
    pub fn state_dir(&self) -> PathBuf {
        ConfigStore::state_dir_from(self.state_dir.as_deref())
    }

    pub fn control_options(&self) -> ControlOptions {
        ControlOptions {
            backend: self.backend,
            user: self.user,
            unit: self.unit.clone(),
            instance: self.instance.clone(),
            state_dir: self.state_dir(),
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
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error}");
        }
    }
}
