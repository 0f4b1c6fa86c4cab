//! clap definitions of `contimgctl` (also the source of its completions and man page).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use contimg_control::state_dir::{StateDir, StateDirError};
use contimg_control::{BackendChoice, DEFAULT_UNIT};

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  the operation failed (job failed or timed out, worker crashed, …)
  2  usage error or invalid configuration
  3  not running (status, health), like `systemctl status`
  4  permission denied (polkit, docker socket)
  5  unknown unit (the service manager does not know it)
  6  the service manager (D-Bus, dockerd) cannot be reached

Backends (--backend auto picks the first that applies):
  systemd   the system manager if it knows the unit, else the user manager
  docker    if --docker-image is set and dockerd answers
  process   direct child process with a PID file in the state dir";

#[derive(Debug, Parser)]
#[command(
    name = "contimgctl",
    version,
    about = "Control the DSA-110 continuum-imaging streaming worker (contimg-stream)",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// How to reach the worker.
    #[arg(long, global = true, value_enum, default_value_t = BackendChoice::Auto, env = "CONTIMG_BACKEND")]
    pub backend: BackendChoice,
    /// Use the calling user's systemd manager instead of the system one.
    #[arg(long, global = true)]
    pub user: bool,
    /// The worker's unit (or, with --instance, the template's name).
    #[arg(long, global = true, default_value = DEFAULT_UNIT, value_name = "UNIT")]
    pub unit: String,
    /// Template instance: controls contimg-stream@NAME.service.
    #[arg(long, global = true, value_name = "NAME")]
    pub instance: Option<String>,
    /// State directory (config, queue DB, PID and log files). Without it:
    /// $CONTIMG_STATE_DIR, else what the worker's unit says (ExecStart=
    /// --state-dir, Environment=CONTIMG_STATE_DIR), else /var/lib/contimg if the
    /// contimg package is installed, else ./state at the top of a contimg checkout.
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The state dir `run` found for the command (see `contimg_control::state_dir`);
    /// read through [`Cli::state_dir`](crate::Cli::state_dir).
    #[arg(skip)]
    pub found_state_dir: std::sync::OnceLock<Result<StateDir, StateDirError>>,
    /// Machine-readable output (the API's field names).
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for a start/stop/restart job.
    #[arg(long, global = true, default_value_t = 90.0, value_name = "SECONDS")]
    pub timeout: f64,
    /// process/docker: seconds between SIGTERM and SIGKILL on stop.
    #[arg(long, global = true, default_value_t = 30.0, value_name = "SECONDS")]
    pub stop_timeout: f64,
    /// The worker binary, for the process backend and `simulate` (default:
    /// contimg-stream next to contimgctl).
    #[arg(long, global = true, value_name = "PATH")]
    pub worker_bin: Option<PathBuf>,
    /// A log file the worker writes, read by `logs` when the journal has nothing.
    #[arg(long, global = true, value_name = "PATH", env = "CONTIMG_LOG_FILE")]
    pub log_file: Option<PathBuf>,
    /// Docker Engine socket.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "CONTIMG_DOCKER_SOCKET"
    )]
    pub docker_socket: Option<PathBuf>,
    /// Image for the docker backend (its entrypoint must be contimg-stream).
    #[arg(
        long,
        global = true,
        value_name = "IMAGE",
        env = "CONTIMG_DOCKER_IMAGE"
    )]
    pub docker_image: Option<String>,
    /// Container name for the docker backend.
    #[arg(long, global = true, default_value = contimg_control::DEFAULT_CONTAINER, value_name = "NAME")]
    pub docker_container: String,
    /// Extra directories bind-mounted into the container (input/output dirs).
    #[arg(long = "docker-mount", global = true, value_name = "DIR")]
    pub docker_mounts: Vec<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the worker and wait for the outcome.
    Start,
    /// Stop the worker and wait for the outcome.
    Stop,
    /// Restart the worker and wait for the outcome.
    Restart,
    /// State, PID, uptime, CPU, memory, restarts, queue counts (exit 3 if not running).
    Status,
    /// Running, queue DB readable and writable, heartbeat at most 20 s old, valid
    /// config, no critical alert (exit 3 if not running, 1 if unhealthy).
    Health,
    /// The worker's log lines.
    Logs(LogsArgs),
    /// Service and queue metrics (the API's `metrics` document).
    Metrics,
    /// Show, change or check the streaming configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List queue groups, show one, or retry a failed one.
    Queue(QueueArgs),
    /// Remove what the retention policy says is due (inputs of completed groups
    /// after retain_input_hours, of failed ones after retain_failed_days, outputs
    /// after retain_output_days when set, scratch leftovers), as the worker does
    /// every retention_interval_s. Exit 1 if any file could not be removed.
    Gc {
        /// Only list what would be removed, with the bytes per kind.
        #[arg(long)]
        dry_run: bool,
    },
    /// Resource limits of the worker (memory max, CPU quota).
    #[command(subcommand)]
    Limits(LimitsCommand),
    /// Write simulated UVH5 subband groups into an input directory
    /// (`contimgctl simulate --help` lists the simulator's options).
    #[command(disable_help_flag = true)]
    Simulate(SimulatePassthrough),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new lines.
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub lines: usize,
    /// Only lines containing this text (case-insensitive).
    #[arg(long)]
    pub grep: Option<String>,
    /// Only lines about this group.
    #[arg(long)]
    pub group: Option<String>,
    /// Minimum level: ERROR, WARNING, INFO, DEBUG.
    #[arg(long)]
    pub level: Option<String>,
    /// Only lines newer than this: an RFC 3339 time or a duration such as 10m.
    #[arg(long)]
    pub since: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the configuration (TOML, or JSON with --json).
    Show,
    /// Change fields: KEY=VALUE… (validated, saved atomically, service restarted).
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        assignments: Vec<String>,
        /// Do not restart a running worker.
        #[arg(long)]
        no_restart: bool,
    },
    /// Edit in $VISUAL/$EDITOR; re-opens the editor on validation errors.
    Edit {
        #[arg(long)]
        no_restart: bool,
    },
    /// Check a TOML file without applying it (exit 2 if invalid).
    Validate { file: PathBuf },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct QueueArgs {
    /// Only groups in this state (collecting, pending, in_progress, completed, failed).
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    #[command(subcommand)]
    pub action: Option<QueueAction>,
}

#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// One group: files, timings, attempts.
    Show { group: String },
    /// Ask the worker to retry a failed group.
    Retry {
        group: String,
        /// Seconds to wait for the group to leave `failed` (when the worker runs).
        #[arg(long, default_value_t = 10.0)]
        wait: f64,
    },
}

#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    Show,
    /// Set limits; `max` removes one. Unmentioned limits stay as they are.
    Set {
        /// e.g. 8G, 512M, max
        #[arg(long, value_name = "SIZE")]
        memory_max: Option<String>,
        /// Percent of one core, e.g. 200%, max
        #[arg(long, value_name = "PERCENT")]
        cpu_quota: Option<String>,
        /// Keep across daemon-reload/reboot (systemd drop-in) instead of runtime only.
        #[arg(long)]
        persistent: bool,
    },
}

/// `contimgctl simulate`'s arguments, handed unchanged to `contimg-stream
/// simulate`, which defines them: the simulator writes HDF5, and only the worker
/// binary links libhdf5.
#[derive(Debug, Args)]
pub struct SimulatePassthrough {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<std::ffi::OsString>,
}
