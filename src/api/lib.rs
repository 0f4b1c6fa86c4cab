//! `contimg-api`: the HTTP control plane. The seed's `/api/streaming/*` endpoints
//! and more, server-sent events, Prometheus `/metrics`, history, alerts and the
//! built dashboard.
//!
//! One producer task ([`events`]) keeps a snapshot of status, metrics and
//! Prometheus text fresh (driven by the backend's change signals and the queue
//! DB's `data_version`); handlers serve from it, so a GET never costs a D-Bus call.

pub mod alert_webhook;
pub mod auth;
pub mod connections;
pub mod dashboard;
pub mod disk;
pub mod error;
pub mod events;
pub mod handlers;
pub mod history;
pub mod models;
pub mod prometheus;
pub mod supervisor;

pub use handlers::router;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{Notify, broadcast};

use contimg_control::state_dir::{
    ExplicitSetting, HostProbe, StateDir, StateDirError, StateDirRule, discover_after,
};
use contimg_control::{Backend, BackendChoice, ControlError, ControlOptions};
use contimg_core::config::ConfigStore;

use auth::AuthPolicy;
use contimg_control::alerts::{self, AlertEngine, AlertThresholds};
use events::{Event, Snapshot};
use history::History;

/// Request bodies above this are refused with 413.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8010";
/// Name of the daemon's own config file inside the state dir.
pub const DAEMON_CONFIG_FILE: &str = "api.toml";
pub const TOKEN_FILE: &str = "api.token";

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot read {path}: {source}")]
    ConfigRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    ConfigParse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid setting listen = {0:?}: not IP:PORT")]
    ListenAddress(String),
    #[error("invalid setting control_timeout = {0}")]
    ControlTimeout(f64),
    #[error(
        "invalid setting webhook_url = {0:?}: only http:// is supported (no TLS in this build)"
    )]
    WebhookUrl(String),
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    #[error("unusable socket activation (LISTEN_PID/LISTEN_FDS): {0}")]
    Activation(std::io::Error),
    #[error(transparent)]
    StateDir(#[from] StateDirError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    History(#[from] history::HistoryError),
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// Command-line flags; each may also be set in the daemon config file
/// (`--config`, default `<state_dir>/api.toml`). Flags win.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "contimg-api",
    version,
    about = "HTTP API daemon of the contimg streaming service"
)]
pub struct ApiArgs {
    /// Daemon config file (TOML with the same keys as these flags, plus `[alerts]`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on (ignored under systemd socket activation).
    #[arg(long)]
    pub listen: Option<String>,
    /// State directory (streaming.toml, queue DB, history, token). Without it:
    /// `state_dir` in the config file, then CONTIMG_STATE_DIR, then what the
    /// worker's unit (with `instance`: its instance) says, then the packaged
    /// /var/lib/contimg, then ./state in a checkout: contimgctl's rules.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// File holding the bearer token for mutations (default `<state_dir>/api.token`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// How to reach the worker (default auto).
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// Control the worker in the calling user's systemd manager.
    #[arg(long)]
    pub user: bool,
    /// Worker unit name (default contimg-stream.service).
    #[arg(long)]
    pub unit: Option<String>,
    /// Template instance (`contimg-stream@NAME.service`).
    #[arg(long)]
    pub instance: Option<String>,
    /// Built dashboard to serve at /streaming.
    #[arg(long)]
    pub dashboard_dir: Option<PathBuf>,
    /// Require the token for reads too.
    #[arg(long)]
    pub read_requires_token: bool,
    /// Alerts are POSTed here as JSON (http:// only; built without TLS).
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// Seconds a start/stop/restart may take.
    #[arg(long)]
    pub control_timeout: Option<f64>,
    /// process backend: the worker binary.
    #[arg(long)]
    pub worker_bin: Option<PathBuf>,
    /// Enable `GET /api/bench/static` (benchmark baseline).
    #[arg(long)]
    pub bench_routes: bool,
    /// docker backend: the Docker Engine socket (default /var/run/docker.sock).
    #[arg(long, env = "CONTIMG_DOCKER_SOCKET")]
    pub docker_socket: Option<PathBuf>,
    /// docker backend: the worker image (its entrypoint must be contimg-stream).
    #[arg(long, env = "CONTIMG_DOCKER_IMAGE")]
    pub docker_image: Option<String>,
    /// docker backend: the worker container's name (default contimg-stream).
    #[arg(long)]
    pub docker_container: Option<String>,
    /// docker backend: a host dir bind-mounted at the same path into the worker
    /// container (input/output dirs; the state dir always is). Repeatable.
    #[arg(long = "docker-mount", value_name = "DIR")]
    pub docker_mounts: Vec<PathBuf>,
}

/// The daemon config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonFile {
    pub listen: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub backend: Option<BackendChoice>,
    pub user: Option<bool>,
    pub unit: Option<String>,
    pub instance: Option<String>,
    pub dashboard_dir: Option<PathBuf>,
    pub read_requires_token: Option<bool>,
    pub webhook_url: Option<String>,
    pub control_timeout: Option<f64>,
    pub worker_bin: Option<PathBuf>,
    pub alerts: Option<AlertThresholds>,
    pub docker_socket: Option<PathBuf>,
    pub docker_image: Option<String>,
    pub docker_container: Option<String>,
    pub docker_mounts: Option<Vec<PathBuf>>,
}

/// Resolved daemon settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Canonical (`control::state_dir`), chosen by `state_dir_rule`.
    pub state_dir: PathBuf,
    pub state_dir_rule: StateDirRule,
    pub token_file: PathBuf,
    pub read_requires_token: bool,
    pub control: ControlOptions,
    pub dashboard_dir: Option<PathBuf>,
    pub webhook_url: Option<String>,
    pub control_timeout: Duration,
    pub alerts: AlertThresholds,
    pub bench_routes: bool,
}

impl Settings {
    /// Merges flags over the config file over defaults; the state dir by
    /// `control::state_dir`'s rules, as `contimgctl` finds it.
    pub async fn resolve(args: &ApiArgs) -> Result<Self, DaemonError> {
        Self::resolve_on(args, &HostProbe::from_host()).await
    }

    /// [`resolve`](Self::resolve) with the environment, dpkg database and
    /// current directory of `probe`.
    pub async fn resolve_on(args: &ApiArgs, probe: &HostProbe) -> Result<Self, DaemonError> {
        let config_path = match &args.config {
            Some(path) => Some(path.clone()),
            None => default_config_path(args, probe).await,
        };
        let file = match &config_path {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| DaemonError::ConfigRead {
                        path: path.clone(),
                        source,
                    })?;
                toml::from_str::<DaemonFile>(&text).map_err(|source| DaemonError::ConfigParse {
                    path: path.clone(),
                    source,
                })?
            }
            None => DaemonFile::default(),
        };
        let listen_text = args
            .listen
            .clone()
            .or(file.listen.clone())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|_| DaemonError::ListenAddress(listen_text.clone()))?;
        let backend = args.backend.or(file.backend).unwrap_or_default();
        let mut control = ControlOptions {
            backend,
            user: args.user || file.user.unwrap_or(false),
            state_dir: PathBuf::new(),
            instance: args.instance.clone().or(file.instance.clone()),
            worker_bin: args.worker_bin.clone().or(file.worker_bin.clone()),
            docker_socket: args.docker_socket.clone().or(file.docker_socket.clone()),
            docker_image: args.docker_image.clone().or(file.docker_image.clone()),
            ..ControlOptions::default()
        };
        if let Some(container) = args
            .docker_container
            .clone()
            .or(file.docker_container.clone())
        {
            control.docker_container = container;
        }
        control.docker_mounts = if args.docker_mounts.is_empty() {
            file.docker_mounts.clone().unwrap_or_default()
        } else {
            args.docker_mounts.clone()
        };
        if let Some(unit) = args.unit.clone().or(file.unit.clone()) {
            control.unit = unit;
        }
        // The explicit settings first (the flag, then the file's key), then the
        // rules contimgctl uses, for this daemon's unit and instance.
        let mut explicit = vec![ExplicitSetting {
            dir: args.state_dir.as_deref(),
            rule: StateDirRule::Flag,
        }];
        if let Some(path) = &config_path {
            explicit.push(ExplicitSetting {
                dir: file.state_dir.as_deref(),
                rule: StateDirRule::ConfigFile { path: path.clone() },
            });
        }
        let StateDir {
            path: state_dir,
            rule: state_dir_rule,
        } = discover_after(&explicit, &control, probe).await?;
        tracing::info!(
            state_dir = %state_dir.display(),
            rule = %state_dir_rule,
            "state dir {} (from {state_dir_rule})",
            state_dir.display()
        );
        control.state_dir = state_dir.clone();
        let timeout_s = args
            .control_timeout
            .or(file.control_timeout)
            .unwrap_or(90.0);
        if !(timeout_s.is_finite() && timeout_s > 0.0) {
            return Err(DaemonError::ControlTimeout(timeout_s));
        }
        let webhook_url = args.webhook_url.clone().or(file.webhook_url.clone());
        if let Some(url) = &webhook_url
            && !url.starts_with("http://")
        {
            return Err(DaemonError::WebhookUrl(url.clone()));
        }
        Ok(Self {
            listen,
            token_file: args
                .token_file
                .clone()
                .or(file.token_file.clone())
                .unwrap_or_else(|| state_dir.join(TOKEN_FILE)),
            // Beyond loopback, reads need the token too.
            read_requires_token: args.read_requires_token
                || file.read_requires_token.unwrap_or(false)
                || !listen.ip().is_loopback(),
            control,
            dashboard_dir: args
                .dashboard_dir
                .clone()
                .or(file.dashboard_dir.clone())
                .or_else(dashboard::default_dir),
            webhook_url,
            control_timeout: Duration::from_secs_f64(timeout_s),
            alerts: file.alerts.clone().unwrap_or_default(),
            bench_routes: args.bench_routes,
            state_dir,
            state_dir_rule,
        })
    }
}

/// `api.toml` in the state dir when `--config` is not given: the dir of
/// `--state-dir` or `CONTIMG_STATE_DIR`, else the one the rules find for the
/// unit the flags name (the file may then name another unit or dir).
async fn default_config_path(args: &ApiArgs, probe: &HostProbe) -> Option<PathBuf> {
    let explicit = args.state_dir.clone().or_else(|| {
        probe
            .env
            .clone()
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    });
    let dir = match explicit {
        Some(dir) => ConfigStore::state_dir_from(Some(&dir)),
        None => {
            let mut options = ControlOptions {
                backend: args.backend.unwrap_or_default(),
                user: args.user,
                instance: args.instance.clone(),
                ..ControlOptions::default()
            };
            if let Some(unit) = &args.unit {
                options.unit = unit.clone();
            }
            discover_after(&[], &options, probe).await.ok()?.path
        }
    };
    let default = dir.join(DAEMON_CONFIG_FILE);
    default.exists().then_some(default)
}

/// Everything handlers and background tasks share.
pub struct AppState {
    pub settings: Settings,
    pub backend: Arc<dyn Backend>,
    pub store: ConfigStore,
    pub auth: AuthPolicy,
    /// Serializes start/stop/restart/config so concurrent requests cannot interleave.
    pub control_lock: tokio::sync::Mutex<()>,
    pub snapshot: RwLock<Arc<Snapshot>>,
    pub events: broadcast::Sender<Event>,
    pub alerts: Mutex<AlertEngine>,
    pub history: History,
    /// Wakes the producer to re-read the status now (after a control operation).
    pub refresh: Notify,
    /// Whether the service is meant to run: set by control operations, used by the
    /// service-down alert and the process-mode supervisor.
    pub should_run: AtomicBool,
    pub supervisor: supervisor::SupervisorState,
    pub alert_sink: Option<tokio::sync::mpsc::Sender<alerts::AlertChange>>,
}

impl AppState {
    pub fn new(settings: Settings, backend: Arc<dyn Backend>) -> Result<Arc<Self>, DaemonError> {
        let history = History::open(&settings.state_dir.join("history.sqlite3"))?;
        let (events, _) = broadcast::channel(256);
        let store = ConfigStore::new(settings.state_dir.clone());
        let snapshot = Snapshot::initial(&*backend, &store, &settings);
        Ok(Arc::new(Self {
            auth: AuthPolicy {
                token_file: settings.token_file.clone(),
                read_requires_token: settings.read_requires_token,
            },
            alerts: Mutex::new(AlertEngine::new(settings.alerts.clone())),
            alert_sink: alert_webhook::spawn_webhook(settings.webhook_url.clone()),
            settings,
            backend,
            store,
            control_lock: tokio::sync::Mutex::new(()),
            snapshot: RwLock::new(Arc::new(snapshot)),
            events,
            history,
            refresh: Notify::new(),
            should_run: AtomicBool::new(false),
            supervisor: supervisor::SupervisorState::default(),
        }))
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set_should_run(&self, value: bool) {
        self.should_run.store(value, Ordering::SeqCst);
    }
}

/// The listening socket systemd passed (socket activation, `contimg-api.socket`).
#[derive(Debug)]
pub struct ActivationSocket {
    listener: std::net::TcpListener,
    /// Further passed fds, closed: the packaged socket unit passes one.
    ignored_fds: usize,
}

/// Takes the socket systemd passed, if it passed one to this process. The
/// sd-notify crate checks that `LISTEN_PID` names this process (a variable
/// inherited from another daemon is not ours), counts `LISTEN_FDS` and marks
/// the fds close-on-exec, so the worker the process backend spawns does not
/// inherit the API's port; then the variables are unset, so no child sees them.
///
/// # Safety
/// It unsets environment variables: call it before any other thread exists
/// (first thing in `main`, before the runtime is built).
pub unsafe fn take_activation_socket() -> Result<Option<ActivationSocket>, DaemonError> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: the caller guarantees that no other thread runs yet.
    let fds = unsafe { sd_notify::listen_fds_and_unset_env() }.map_err(DaemonError::Activation)?;
    // SAFETY: sd-notify yields the fds from SD_LISTEN_FDS_START on that systemd
    // opened for this process (LISTEN_PID checked) and that nothing here has
    // touched; the variables are gone now, so no second owner can take them.
    let mut fds = fds.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    let Some(first) = fds.next() else {
        return Ok(None);
    };
    let ignored_fds = fds.count();
    let listener = std::net::TcpListener::from(first);
    // Not a TCP socket (a FIFO, a unix socket): refuse it rather than fail on accept.
    listener.local_addr().map_err(DaemonError::Activation)?;
    Ok(Some(ActivationSocket {
        listener,
        ignored_fds,
    }))
}

/// A TCP listener: the one systemd passed (socket activation) or a new one.
pub async fn listener(
    settings: &Settings,
    activation: Option<ActivationSocket>,
) -> Result<tokio::net::TcpListener, DaemonError> {
    if let Some(ActivationSocket {
        listener,
        ignored_fds,
    }) = activation
    {
        listener
            .set_nonblocking(true)
            .map_err(DaemonError::Listen)?;
        tracing::info!("using the socket passed by systemd (LISTEN_FDS)");
        if ignored_fds > 0 {
            tracing::warn!(
                ignored_fds,
                "systemd passed more than one socket; serving the first only"
            );
        }
        return tokio::net::TcpListener::from_std(listener).map_err(DaemonError::Listen);
    }
    tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(DaemonError::Listen)
}

/// Runs the daemon until SIGTERM/SIGINT; `activation` from
/// [`take_activation_socket`].
pub async fn run(
    settings: Settings,
    activation: Option<ActivationSocket>,
) -> Result<(), DaemonError> {
    let backend = contimg_control::connect(&settings.control).await?;
    tracing::info!(backend = %backend.kind(), target = backend.target(), "connected");
    let listener = listener(&settings, activation).await?;
    serve(settings, backend, listener).await
}

/// Serves on `listener` with `backend`; split from [`run`] so tests can inject.
pub async fn serve(
    settings: Settings,
    backend: Arc<dyn Backend>,
    listener: tokio::net::TcpListener,
) -> Result<(), DaemonError> {
    if let Err(why) = auth::load_token(&settings.token_file) {
        tracing::warn!("{why}");
    }
    let state = AppState::new(settings, backend)?;
    events::spawn_producer(state.clone());
    events::spawn_history_sampler(state.clone());
    let app = router(state.clone());
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "listening");
    }
    let max_connections = connections::connection_cap();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = connections::serve(listener, app, max_connections, stop_rx);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result.map_err(DaemonError::Serve),
        _ = shutdown_signal() => {}
    }
    let _ = stop_tx.send(true);
    // Open SSE streams never end by themselves: give in-flight requests a moment,
    // then stop regardless.
    match tokio::time::timeout(Duration::from_secs(2), server).await {
        Ok(result) => result.map_err(DaemonError::Serve),
        Err(_) => Ok(()),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: ApiArgs, api_toml: Option<&str>) -> Result<Settings, DaemonError> {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(text) = api_toml {
            std::fs::write(dir.path().join(DAEMON_CONFIG_FILE), text).expect("api.toml");
        }
        let probe = HostProbe {
            env: None,
            dpkg_status: dir.path().join("no-dpkg/status"),
            cwd: Some(dir.path().to_path_buf()),
        };
        block_on(Settings::resolve_on(
            &ApiArgs {
                state_dir: Some(dir.path().to_path_buf()),
                ..args
            },
            &probe,
        ))
    }

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    /// Each bad setting is its own variant, naming the value (the daemon exits
    /// with it; the message is the one it always printed).
    #[test]
    fn bad_settings_are_refused_with_what_is_wrong() {
        let err = resolve(
            ApiArgs {
                listen: Some("localhost".into()),
                ..ApiArgs::default()
            },
            None,
        )
        .expect_err("no port");
        assert!(matches!(&err, DaemonError::ListenAddress(text) if text == "localhost"));
        assert_eq!(
            err.to_string(),
            "invalid setting listen = \"localhost\": not IP:PORT"
        );
        let err = resolve(
            ApiArgs {
                control_timeout: Some(-1.0),
                ..ApiArgs::default()
            },
            None,
        )
        .expect_err("negative timeout");
        assert!(matches!(err, DaemonError::ControlTimeout(t) if t == -1.0));
        let err =
            resolve(ApiArgs::default(), Some("webhook_url = \"https://x\"\n")).expect_err("https");
        assert!(matches!(&err, DaemonError::WebhookUrl(url) if url == "https://x"));
        let err = resolve(ApiArgs::default(), Some("listen = [\n")).expect_err("bad toml");
        assert!(matches!(err, DaemonError::ConfigParse { .. }), "{err}");
        let err = resolve(ApiArgs::default(), Some("no_such_key = 1\n")).expect_err("unknown");
        assert!(matches!(err, DaemonError::ConfigParse { .. }), "{err}");
        let ok = resolve(ApiArgs::default(), Some("listen = \"0.0.0.0:9000\"\n")).expect("valid");
        assert!(
            ok.read_requires_token,
            "beyond loopback, reads need the token"
        );
    }

    /// `--state-dir` wins over `state_dir` in api.toml, which wins over the
    /// environment (tests/api_state_dir.rs runs the rest against systemd).
    #[test]
    fn the_state_dir_flag_comes_first_then_api_toml() {
        let file = "state_dir = \"/from/api-toml\"\n";
        let flagged = resolve(ApiArgs::default(), Some(file)).expect("valid");
        assert_eq!(flagged.state_dir_rule, StateDirRule::Flag);
        assert_eq!(flagged.control.state_dir, flagged.state_dir);
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("api.toml");
        std::fs::write(&config, file).expect("api.toml");
        let probe = HostProbe {
            env: Some("/from/env".into()),
            dpkg_status: dir.path().join("no-dpkg/status"),
            cwd: Some(dir.path().to_path_buf()),
        };
        let args = ApiArgs {
            config: Some(config.clone()),
            backend: Some(BackendChoice::Process),
            ..ApiArgs::default()
        };
        let from_file = block_on(Settings::resolve_on(&args, &probe)).expect("valid");
        assert_eq!(from_file.state_dir, PathBuf::from("/from/api-toml"));
        assert_eq!(
            from_file.state_dir_rule,
            StateDirRule::ConfigFile { path: config }
        );
        std::fs::write(dir.path().join("api.toml"), "").expect("api.toml");
        let from_env = block_on(Settings::resolve_on(&args, &probe)).expect("valid");
        assert_eq!(from_env.state_dir_rule, StateDirRule::Environment);
        assert_eq!(from_env.token_file, PathBuf::from("/from/env/api.token"));
    }

    /// The docker backend's socket, image, container and mounts reach the control
    /// options (ops/deploy-docker.sh runs the API with them); flags win over api.toml.
    #[test]
    fn docker_settings_reach_the_backend_options() {
        let file = "docker_socket = \"/run/file.sock\"\ndocker_image = \"file:1\"\n\
                    docker_container = \"from-file\"\ndocker_mounts = [\"/data/in\"]\n";
        let from_file = resolve(ApiArgs::default(), Some(file)).expect("valid");
        assert_eq!(
            from_file.control.docker_socket.as_deref(),
            Some(std::path::Path::new("/run/file.sock"))
        );
        assert_eq!(from_file.control.docker_image.as_deref(), Some("file:1"));
        assert_eq!(from_file.control.docker_container, "from-file");
        assert_eq!(from_file.control.docker_mounts, [PathBuf::from("/data/in")]);
        let flags = resolve(
            ApiArgs {
                docker_image: Some("flag:2".into()),
                docker_container: Some("from-flag".into()),
                docker_mounts: vec!["/data/out".into(), "/data/in".into()],
                ..ApiArgs::default()
            },
            Some(file),
        )
        .expect("valid");
        assert_eq!(flags.control.docker_image.as_deref(), Some("flag:2"));
        assert_eq!(flags.control.docker_container, "from-flag");
        assert_eq!(
            flags.control.docker_mounts,
            [PathBuf::from("/data/out"), PathBuf::from("/data/in")]
        );
        let defaults = resolve(ApiArgs::default(), None).expect("valid");
        assert_eq!(
            defaults.control.docker_container,
            contimg_control::DEFAULT_CONTAINER
        );
        assert!(defaults.control.docker_image.is_none());
    }
}
