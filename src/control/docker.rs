//! The docker backend (optional): the worker in a container, driven through the
//! Docker Engine API over its unix socket with `bollard` — never the docker CLI.
//!
//! The configured image's entrypoint must be `contimg-stream`; the container gets
//! `--state-dir <dir>` (and `--config`) as its command, the state dir and the extra
//! mounts bind-mounted at the same paths, `--network none`, and runs as the calling
//! user so the files it writes stay the operator's.

use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerUpdateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RestartContainerOptionsBuilder, StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::{
    Backend, BackendKind, ControlError, ControlOptions, ControlOutcome, JobResult, LogEntry,
    LogQuery, Operation, ResourceLimits, ResourceUsage, ServiceStatus, logs,
};
use contimg_core::metrics::CpuSampler;

pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
const REQUEST_TIMEOUT_SECONDS: u64 = 120;

pub struct DockerBackend {
    docker: Docker,
    container: String,
    image: Option<String>,
    command: Vec<String>,
    binds: Vec<String>,
    stop_timeout: Duration,
    cpu: CpuSampler,
}

fn map_error(error: bollard::errors::Error, container: &str) -> ControlError {
    use bollard::errors::Error as E;
    match error {
        E::DockerResponseServerError {
            status_code: 404,
            message,
        } => {
            if message.contains("image") {
                ControlError::Manager(format!("docker: {message}"))
            } else {
                ControlError::UnknownUnit(container.to_string())
            }
        }
        E::DockerResponseServerError {
            status_code: 401 | 403,
            message,
        } => ControlError::PermissionDenied(format!("docker: {message}")),
        E::DockerResponseServerError {
            status_code,
            message,
        } => ControlError::Manager(format!("docker ({status_code}): {message}")),
        E::IOError { err } if err.kind() == std::io::ErrorKind::PermissionDenied => {
            ControlError::PermissionDenied(format!("docker socket: {err}"))
        }
        other => {
            let text = other.to_string();
            if text.contains("ermission denied") {
                ControlError::PermissionDenied(format!("docker socket: {text}"))
            } else {
                ControlError::Unavailable(format!("docker: {text}"))
            }
        }
    }
}

fn parse_docker_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    let time = DateTime::parse_from_rfc3339(text?)
        .ok()?
        .with_timezone(&Utc);
    // Docker reports "never" as the zero time 0001-01-01.
    (time.timestamp() > 0).then_some(time)
}

impl DockerBackend {
    /// Connects to the socket and negotiates the API version (dockerd 20.10 speaks
    /// 1.41; bollard defaults to newer).
    pub async fn connect(options: &ControlOptions) -> Result<Self, ControlError> {
        let socket = options
            .docker_socket
            .clone()
            .unwrap_or_else(|| DEFAULT_SOCKET.into());
        let socket_text = socket.to_string_lossy().to_string();
        if !socket.exists() {
            return Err(ControlError::Unavailable(format!(
                "docker socket {socket_text} does not exist"
            )));
        }
        let docker = Docker::connect_with_unix(
            &socket_text,
            REQUEST_TIMEOUT_SECONDS,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|err| map_error(err, &options.docker_container))?
        .negotiate_version()
        .await
        .map_err(|err| map_error(err, &options.docker_container))?;
        let state_dir = std::path::absolute(&options.state_dir)?;
        let mut command = vec![
            "--state-dir".to_string(),
            state_dir.to_string_lossy().to_string(),
        ];
        if let Some(config) = &options.config_path {
            command.push("--config".into());
            command.push(std::path::absolute(config)?.to_string_lossy().to_string());
        }
        command.extend(options.worker_args.iter().cloned());
        let mut binds = vec![format!("{0}:{0}", state_dir.display())];
        for mount in &options.docker_mounts {
            let mount = std::path::absolute(mount)?;
            binds.push(format!("{0}:{0}", mount.display()));
        }
        Ok(Self {
            docker,
            container: options.docker_container.clone(),
            image: options.docker_image.clone(),
            command,
            binds,
            stop_timeout: options.stop_timeout,
            cpu: CpuSampler::new(),
        })
    }

    /// Whether the daemon answers `/_ping` (for auto-detection).
    pub async fn ping(&self) -> bool {
        self.docker.ping().await.is_ok()
    }

    fn err(&self, error: bollard::errors::Error) -> ControlError {
        map_error(error, &self.container)
    }

    async fn exists(&self) -> Result<Option<bool>, ControlError> {
        match self.docker.inspect_container(&self.container, None).await {
            Ok(info) => Ok(Some(info.state.and_then(|s| s.running).unwrap_or(false))),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(err) => Err(self.err(err)),
        }
    }

    async fn create(&self) -> Result<(), ControlError> {
        let image = self.image.clone().ok_or_else(|| {
            ControlError::Invalid("the docker backend needs an image (--docker-image)".into())
        })?;
        let user = format!("{}:{}", nix::unistd::geteuid(), nix::unistd::getegid());
        let body = ContainerCreateBody {
            image: Some(image),
            cmd: Some(self.command.clone()),
            user: Some(user),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                binds: Some(self.binds.clone()),
                network_mode: Some("none".into()),
                init: Some(false),
                // A worker that dies comes back, as systemd's Restart= does for the
                // unit; one an operator stopped stays stopped, also across a dockerd
                // restart.
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new()
            .name(&self.container)
            .build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(|err| self.err(err))?;
        Ok(())
    }

    async fn outcome(
        &self,
        operation: Operation,
        success: bool,
        message: String,
    ) -> ControlOutcome {
        let status = self.status().await.ok();
        let recent_logs = if success {
            Vec::new()
        } else {
            self.logs(&LogQuery {
                lines: 20,
                ..Default::default()
            })
            .await
            .unwrap_or_default()
        };
        tracing::debug!(%operation, success, "docker job finished");
        ControlOutcome {
            success,
            result: if success {
                JobResult::Done
            } else {
                JobResult::Failed
            },
            message,
            pid: status.and_then(|s| s.pid),
            recent_logs,
        }
    }

    fn stop_seconds(&self, timeout: Duration) -> i32 {
        self.stop_timeout.min(timeout).as_secs().max(1) as i32
    }
}

#[async_trait]
impl Backend for DockerBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Docker
    }

    fn target(&self) -> &str {
        &self.container
    }

    async fn start(&self, timeout: Duration) -> Result<ControlOutcome, ControlError> {
        match self.exists().await? {
            Some(true) => {
                return Ok(self
                    .outcome(
                        Operation::Start,
                        true,
                        format!("{} is already running", self.container),
                    )
                    .await);
            }
            Some(false) => {
                // Recreate, so changed options (image, mounts, args) take effect.
                self.docker
                    .remove_container(
                        &self.container,
                        Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                    )
                    .await
                    .map_err(|err| self.err(err))?;
                self.create().await?;
            }
            None => self.create().await?,
        }
        tokio::time::timeout(timeout, self.docker.start_container(&self.container, None))
            .await
            .map_err(|_| ControlError::Timeout(timeout, format!("start of {}", self.container)))?
            .map_err(|err| self.err(err))?;
        // A worker that exits at once (bad config) is a failed start.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let running = self.exists().await?.unwrap_or(false);
        let message = if running {
            format!("started container {}", self.container)
        } else {
            format!("container {} exited right after starting", self.container)
        };
        Ok(self.outcome(Operation::Start, running, message).await)
    }

    async fn stop(&self, timeout: Duration) -> Result<ControlOutcome, ControlError> {
        if self.exists().await?.is_none() {
            return Ok(self
                .outcome(
                    Operation::Stop,
                    true,
                    format!("{} does not exist", self.container),
                )
                .await);
        }
        let options = StopContainerOptionsBuilder::new()
            .t(self.stop_seconds(timeout))
            .build();
        match self
            .docker
            .stop_container(&self.container, Some(options))
            .await
        {
            // 304: already stopped.
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(err) => return Err(self.err(err)),
        }
        Ok(self
            .outcome(
                Operation::Stop,
                true,
                format!("stopped container {}", self.container),
            )
            .await)
    }

    async fn restart(&self, timeout: Duration) -> Result<ControlOutcome, ControlError> {
        if self.exists().await?.is_none() {
            return self.start(timeout).await;
        }
        let options = RestartContainerOptionsBuilder::new()
            .t(self.stop_seconds(timeout))
            .build();
        self.docker
            .restart_container(&self.container, Some(options))
            .await
            .map_err(|err| self.err(err))?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let running = self.exists().await?.unwrap_or(false);
        Ok(self
            .outcome(
                Operation::Restart,
                running,
                format!("restarted container {}", self.container),
            )
            .await)
    }

    async fn status(&self) -> Result<ServiceStatus, ControlError> {
        let info = self
            .docker
            .inspect_container(&self.container, None)
            .await
            .map_err(|err| self.err(err))?;
        let state = info.state.clone().unwrap_or_default();
        let running = state.running.unwrap_or(false);
        let started_at = parse_docker_time(state.started_at.as_deref());
        let uptime_seconds = if running {
            started_at.map(|at| ((Utc::now() - at).num_milliseconds() as f64 / 1000.0).max(0.0))
        } else {
            None
        };
        let status_word = state
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into());
        let exit_code = state.exit_code.unwrap_or(0);
        let (active_state, sub_state) = if running {
            ("active", "running")
        } else if exit_code != 0 || state.oom_killed == Some(true) {
            ("failed", "dead")
        } else {
            ("inactive", "dead")
        };
        let error = if state.oom_killed == Some(true) {
            Some("killed by the OOM killer (memory limit)".to_string())
        } else if let Some(error) = state.error.filter(|e| !e.is_empty()) {
            Some(error)
        } else if !running && exit_code != 0 {
            Some(format!("the worker exited with status {exit_code}"))
        } else {
            None
        };
        let mut resources = ResourceUsage::default();
        let host = info.host_config.clone().unwrap_or_default();
        resources.memory_limit_bytes = host.memory.filter(|m| *m > 0).map(|m| m as u64);
        if running {
            let options = StatsOptionsBuilder::new()
                .stream(false)
                .one_shot(true)
                .build();
            let mut stats = self.docker.stats(&self.container, Some(options));
            if let Some(Ok(stats)) = stats.next().await {
                let cpu_seconds = stats
                    .cpu_stats
                    .as_ref()
                    .and_then(|c| c.cpu_usage.as_ref())
                    .and_then(|u| u.total_usage)
                    .map(|ns| ns as f64 / 1e9);
                if let Some(cpu_seconds) = cpu_seconds {
                    resources.cpu_usage_seconds = Some(cpu_seconds);
                    resources.cpu_percent = self.cpu.percent(
                        &format!(
                            "{}@{}",
                            self.container,
                            state.started_at.unwrap_or_default()
                        ),
                        cpu_seconds,
                        uptime_seconds,
                    );
                }
                if let Some(memory) = stats.memory_stats {
                    let inactive = memory
                        .stats
                        .as_ref()
                        .and_then(|s| {
                            s.get("inactive_file")
                                .or_else(|| s.get("total_inactive_file"))
                        })
                        .copied()
                        .unwrap_or(0);
                    resources.memory_bytes = memory.usage.map(|u| u.saturating_sub(inactive));
                    if resources.memory_limit_bytes.is_none() {
                        // Docker reports the host's memory as the limit when unlimited.
                        resources.memory_limit_bytes = None;
                    }
                }
                resources.tasks = stats.pids_stats.and_then(|p| p.current);
            }
        }
        Ok(ServiceStatus {
            backend: BackendKind::Docker,
            unit: self.container.clone(),
            running,
            active_state: active_state.into(),
            sub_state: if running {
                sub_state.into()
            } else {
                status_word
            },
            pid: state.pid.filter(|p| *p > 0).map(|p| p as u32),
            started_at,
            uptime_seconds,
            restart_count: info.restart_count.unwrap_or(0).max(0) as u32,
            status_text: None,
            resources,
            error,
        })
    }

    async fn limits(&self) -> Result<ResourceLimits, ControlError> {
        let info = self
            .docker
            .inspect_container(&self.container, None)
            .await
            .map_err(|err| self.err(err))?;
        let host = info.host_config.unwrap_or_default();
        Ok(ResourceLimits {
            memory_max_bytes: host.memory.filter(|m| *m > 0).map(|m| m as u64),
            cpu_quota_percent: host.nano_cpus.filter(|n| *n > 0).map(|n| n as f64 / 1e7),
        })
    }

    async fn set_limits(
        &self,
        limits: &ResourceLimits,
        persistent: bool,
    ) -> Result<ResourceLimits, ControlError> {
        if !persistent {
            tracing::debug!("docker limits always last for the container's lifetime");
        }
        let body = ContainerUpdateBody {
            memory: Some(limits.memory_max_bytes.map(|m| m as i64).unwrap_or(0)),
            // Docker needs a swap limit at least as high as the memory limit; -1 = unlimited.
            memory_swap: Some(-1),
            nano_cpus: Some(
                limits
                    .cpu_quota_percent
                    .map(|p| (p * 1e7).round() as i64)
                    .unwrap_or(0),
            ),
            ..Default::default()
        };
        self.docker
            .update_container(&self.container, body)
            .await
            .map_err(|err| self.err(err))?;
        self.limits().await
    }

    async fn logs(&self, query: &LogQuery) -> Result<Vec<LogEntry>, ControlError> {
        let tail = if query.lines == 0 || query.grep.is_some() || query.min_level.is_some() {
            "all".to_string()
        } else {
            query.lines.to_string()
        };
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .tail(&tail)
            .build();
        let mut stream = self.docker.logs(&self.container, Some(options));
        let mut entries = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|err| self.err(err))?;
            entries.extend(parse_chunk(&chunk.to_string()));
        }
        Ok(logs::select(entries, query))
    }

    async fn follow_logs(
        &self,
        query: &LogQuery,
    ) -> Result<BoxStream<'static, Result<LogEntry, ControlError>>, ControlError> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .follow(true)
            .tail(&query.lines.to_string())
            .build();
        let container = self.container.clone();
        let query = query.clone();
        let stream = self
            .docker
            .logs(&self.container, Some(options))
            .flat_map(move |chunk| {
                let items: Vec<Result<LogEntry, ControlError>> = match chunk {
                    Ok(chunk) => parse_chunk(&chunk.to_string())
                        .into_iter()
                        .filter(|e| logs::matches(e, &query))
                        .map(Ok)
                        .collect(),
                    Err(err) => vec![Err(map_error(err, &container))],
                };
                futures_util::stream::iter(items)
            });
        Ok(stream.boxed())
    }

    async fn watch(&self) -> Result<BoxStream<'static, ()>, ControlError> {
        let docker = self.docker.clone();
        let container = self.container.clone();
        let stream = futures_util::stream::unfold(None::<(bool, i64)>, move |last| {
            let docker = docker.clone();
            let container = container.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let current = match docker.inspect_container(&container, None).await {
                        Ok(info) => {
                            let state = info.state.unwrap_or_default();
                            (state.running.unwrap_or(false), state.pid.unwrap_or(0))
                        }
                        Err(_) => (false, 0),
                    };
                    if last != Some(current) {
                        return Some(((), Some(current)));
                    }
                }
            }
        });
        Ok(stream.boxed())
    }
}

/// Docker prefixes each line with its own RFC 3339 time (`timestamps=true`); the
/// worker's line follows (with its own time, which wins when present).
fn parse_chunk(chunk: &str) -> Vec<LogEntry> {
    chunk
        .lines()
        .filter_map(|line| {
            let (docker_time, rest) = line.split_once(' ').unwrap_or((line, ""));
            let fallback = DateTime::parse_from_rfc3339(docker_time)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|_| Utc::now());
            logs::parse_text_line(rest, fallback)
        })
        .collect()
}
