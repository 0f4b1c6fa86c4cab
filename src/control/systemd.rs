//! The systemd backend: the worker's unit on the system or user manager, over
//! D-Bus (`zbus` + `zbus_systemd` proxies).
//!
//! Jobs are awaited through `JobRemoved` (stream created before the job is queued,
//! matched on the returned job path, since auto-restarts emit `JobRemoved` too);
//! status comes from the 13 properties it needs, read with pipelined `Get` calls on
//! the unit's well-known object path (one round trip, no `LoadUnit`, and systemd
//! does not compute the ~400 properties a `GetAll` would), plus the unit's cgroup
//! files, which are the only CPU source on hybrid hosts where `CPUUsageNSec` is
//! unset.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use zbus::proxy::CacheProperties;
use zbus::{Connection, OwnedObjectPath, OwnedVariant};
use zbus_systemd::systemd1::ManagerProxy;

use super::{
    Backend, BackendKind, ControlError, ControlOptions, ControlOutcome, JobResult, LogEntry,
    LogQuery, Operation, ResourceLimits, ResourceUsage, ServiceStatus, logs,
};
use contimg_core::metrics::CpuSampler;
use contimg_core::metrics::cgroup::CgroupRoot;

const UNIT_INTERFACE: &str = "org.freedesktop.systemd1.Unit";
const SERVICE_INTERFACE: &str = "org.freedesktop.systemd1.Service";
/// "not set" for accounting values and "no limit" for limits.
const UNSET: u64 = u64::MAX;
/// Log lines attached to a failed job's outcome.
const FAILURE_LOG_LINES: usize = 20;

/// Which manager a [`SystemdBackend`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagerScope {
    System,
    User,
}

impl ManagerScope {
    /// `system` or `user`, as in "the system manager".
    pub fn as_str(self) -> &'static str {
        match self {
            ManagerScope::System => "system",
            ManagerScope::User => "user",
        }
    }
}

pub struct SystemdBackend {
    connection: Connection,
    manager: ManagerProxy<'static>,
    unit: String,
    /// [`unit_object_path`] of `unit`.
    object_path: String,
    scope: ManagerScope,
    cgroups: CgroupRoot,
    cpu: CpuSampler,
    log_file: Option<PathBuf>,
    subscribed: std::sync::atomic::AtomicBool,
}

/// Maps a D-Bus error onto the shared vocabulary: polkit denial, unknown unit and
/// an unreachable manager each get their own variant (and exit code).
pub fn map_dbus_error(error: zbus::Error, unit: &str) -> ControlError {
    let (name, message) = match &error {
        zbus::Error::MethodError(name, message, _) => (
            name.as_str().to_string(),
            message.clone().unwrap_or_default(),
        ),
        zbus::Error::FDO(fdo) => {
            let text = fdo.to_string();
            let name = match fdo.as_ref() {
                zbus::fdo::Error::AccessDenied(_) => "org.freedesktop.DBus.Error.AccessDenied",
                zbus::fdo::Error::InteractiveAuthorizationRequired(_) => {
                    "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
                }
                zbus::fdo::Error::ServiceUnknown(_) => "org.freedesktop.DBus.Error.ServiceUnknown",
                zbus::fdo::Error::NoReply(_) => "org.freedesktop.DBus.Error.NoReply",
                zbus::fdo::Error::Disconnected(_) => "org.freedesktop.DBus.Error.Disconnected",
                zbus::fdo::Error::UnknownProperty(_) => {
                    "org.freedesktop.DBus.Error.UnknownProperty"
                }
                _ => "",
            };
            (name.to_string(), text)
        }
        zbus::Error::InputOutput(_)
        | zbus::Error::Address(_)
        | zbus::Error::Handshake(_)
        | zbus::Error::Connection(..) => {
            return ControlError::Unavailable(error.to_string());
        }
        _ => return ControlError::Manager(format!("D-Bus: {error}")),
    };
    match name.as_str() {
        "org.freedesktop.systemd1.NoSuchUnit" | "org.freedesktop.systemd1.LoadFailed" => {
            ControlError::UnknownUnit(unit.to_string())
        }
        "org.freedesktop.DBus.Error.AccessDenied"
        | "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
        | "org.freedesktop.DBus.Error.AuthFailed" => ControlError::PermissionDenied(format!(
            "{message} (polkit: the caller may not manage {unit})"
        )),
        "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NoReply"
        | "org.freedesktop.DBus.Error.Disconnected"
        | "org.freedesktop.DBus.Error.NoServer"
        | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
            ControlError::Unavailable(format!("{name}: {message}"))
        }
        _ => ControlError::Manager(format!("{name}: {message}")),
    }
}

fn job_result(text: &str) -> JobResult {
    match text {
        "done" => JobResult::Done,
        "canceled" => JobResult::Canceled,
        "timeout" => JobResult::Timeout,
        "dependency" => JobResult::Dependency,
        "skipped" => JobResult::Skipped,
        _ => JobResult::Failed,
    }
}

/// Typed reads from property answers; absent or mistyped = `None` (properties
/// newer than the host's systemd simply are not there).
struct Properties(HashMap<&'static str, OwnedVariant>);

/// The unit properties `status` reads (interface, name).
const STATUS_PROPERTIES: &[(&str, &str)] = &[
    (UNIT_INTERFACE, "LoadState"),
    (UNIT_INTERFACE, "ActiveState"),
    (UNIT_INTERFACE, "SubState"),
    (SERVICE_INTERFACE, "MainPID"),
    (SERVICE_INTERFACE, "ExecMainStartTimestamp"),
    (SERVICE_INTERFACE, "ControlGroup"),
    (SERVICE_INTERFACE, "CPUUsageNSec"),
    (SERVICE_INTERFACE, "MemoryCurrent"),
    (SERVICE_INTERFACE, "MemoryMax"),
    (SERVICE_INTERFACE, "TasksCurrent"),
    (SERVICE_INTERFACE, "Result"),
    (SERVICE_INTERFACE, "StatusText"),
    (SERVICE_INTERFACE, "NRestarts"),
];

/// The properties `limits` reads.
const LIMIT_PROPERTIES: &[(&str, &str)] = &[
    (SERVICE_INTERFACE, "MemoryMax"),
    (SERVICE_INTERFACE, "CPUQuotaPerSecUSec"),
];

/// The manager's object path for a unit, as sd-bus encodes it
/// (`bus_path_encode`): every byte that is not an ASCII letter or digit (and a
/// leading digit) becomes `_xx`. systemd loads the unit on demand when this path is
/// addressed, so `systemctl` never calls `LoadUnit` either; that saves a round trip.
pub fn unit_object_path(unit: &str) -> String {
    let mut path = String::from("/org/freedesktop/systemd1/unit/");
    if unit.is_empty() {
        path.push('_');
        return path;
    }
    for (index, byte) in unit.bytes().enumerate() {
        if byte.is_ascii_alphabetic() || (byte.is_ascii_digit() && index > 0) {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("_{byte:02x}"));
        }
    }
    path
}

impl Properties {
    fn u64(&self, name: &str) -> Option<u64> {
        self.0.get(name).and_then(|v| u64::try_from(v).ok())
    }
    fn u32(&self, name: &str) -> Option<u32> {
        self.0.get(name).and_then(|v| u32::try_from(v).ok())
    }
    fn string(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .and_then(|v| <&str>::try_from(v).ok())
            .map(str::to_string)
    }
    /// An accounting value, with `u64::MAX` meaning "not set".
    fn accounted(&self, name: &str) -> Option<u64> {
        self.u64(name).filter(|value| *value != UNSET)
    }
}

impl SystemdBackend {
    /// Connects to the system bus, or the session bus (`DBUS_SESSION_BUS_ADDRESS`)
    /// for the user manager.
    pub async fn connect(
        scope: ManagerScope,
        options: &ControlOptions,
    ) -> Result<Self, ControlError> {
        let unit = options.unit_name();
        let connection = match (&options.bus_address, scope) {
            (Some(address), _) => {
                zbus::connection::Builder::address(address.as_str())
                    .build()
                    .await
            }
            (None, ManagerScope::System) => Connection::system().await,
            (None, ManagerScope::User) => Connection::session().await,
        }
        .map_err(|err| {
            ControlError::Unavailable(format!(
                "{} bus: {err}",
                match scope {
                    ManagerScope::System => "system",
                    ManagerScope::User => "session",
                }
            ))
        })?;
        let manager = ManagerProxy::new(&connection)
            .await
            .map_err(|err| map_dbus_error(err, &unit))?;
        Ok(Self {
            connection,
            manager,
            object_path: unit_object_path(&unit),
            unit,
            scope,
            cgroups: CgroupRoot::new(&options.cgroup_root),
            cpu: CpuSampler::new(),
            log_file: options.effective_log_file(),
            subscribed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn scope(&self) -> ManagerScope {
        self.scope
    }

    /// `Subscribe` once per connection: systemd answers a second call on the same
    /// connection with `AlreadySubscribed`, which a long-lived caller (the API
    /// daemon running several jobs) would otherwise see as a failure.
    async fn ensure_subscribed(&self) -> Result<(), ControlError> {
        if self.subscribed.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        match self.manager.subscribe().await {
            Ok(()) => {}
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed" => {}
            Err(err) => return Err(self.map_err(err)),
        }
        self.subscribed
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    fn map_err(&self, err: zbus::Error) -> ControlError {
        map_dbus_error(err, &self.unit)
    }

    /// The unit's `LoadState` (`loaded`, `not-found`, `masked`, …): one `Get`.
    pub async fn load_state(&self) -> Result<String, ControlError> {
        let unit = self
            .get_properties(&[(UNIT_INTERFACE, "LoadState")])
            .await?;
        Ok(unit.string("LoadState").unwrap_or_default())
    }

    async fn unit_path(&self) -> Result<OwnedObjectPath, ControlError> {
        // LoadUnit, unlike GetUnit, also answers for a unit that is not loaded yet;
        // `watch` uses it so the unit stays loaded while it is watched.
        self.manager
            .load_unit(self.unit.clone())
            .await
            .map_err(|err| self.map_err(err))
    }

    /// Reads the named properties of the unit with one `Properties.Get` each, all
    /// sent before the first answer is awaited (so one round trip in total). A
    /// property the host's systemd does not have is left out, not an error.
    async fn get_properties(
        &self,
        names: &[(&'static str, &'static str)],
    ) -> Result<Properties, ControlError> {
        let path = zbus::ObjectPath::try_from(self.object_path.as_str())
            .map_err(|err| ControlError::Manager(format!("unit object path: {err}")))?;
        let calls = names.iter().map(|(interface, name)| {
            let path = path.clone();
            async move {
                let reply = self
                    .connection
                    .call_method(
                        Some("org.freedesktop.systemd1"),
                        path,
                        Some("org.freedesktop.DBus.Properties"),
                        "Get",
                        &(*interface, *name),
                    )
                    .await;
                (*name, reply)
            }
        });
        let mut properties = HashMap::with_capacity(names.len());
        for (name, reply) in futures_util::future::join_all(calls).await {
            match reply {
                Ok(message) => {
                    let value: OwnedVariant = message
                        .body()
                        .deserialize()
                        .map_err(|err| ControlError::Manager(format!("D-Bus {name}: {err}")))?;
                    properties.insert(name, value);
                }
                Err(zbus::Error::MethodError(error, _, _))
                    if error.as_str() == "org.freedesktop.DBus.Error.UnknownProperty" =>
                {
                    tracing::debug!(name, "the manager does not have this property");
                }
                Err(err) => return Err(self.map_err(err)),
            }
        }
        Ok(Properties(properties))
    }

    /// Queues a job and waits for its `JobRemoved`.
    async fn run_job(
        &self,
        operation: Operation,
        timeout: Duration,
    ) -> Result<ControlOutcome, ControlError> {
        self.ensure_subscribed().await?;
        // The stream must exist before the job is queued, or a fast job's signal is lost.
        let mut removed = self
            .manager
            .receive_job_removed()
            .await
            .map_err(|err| self.map_err(err))?;
        let unit = self.unit.clone();
        let mode = "replace".to_string();
        let job = match operation {
            Operation::Start => self.manager.start_unit(unit, mode).await,
            Operation::Stop => self.manager.stop_unit(unit, mode).await,
            Operation::Restart => self.manager.restart_unit(unit, mode).await,
        }
        .map_err(|err| self.map_err(err))?;
        tracing::debug!(job = %job.as_str(), %operation, unit = %self.unit, "queued systemd job");

        let wait = async {
            while let Some(signal) = removed.next().await {
                if let Ok(args) = signal.args()
                    && args.job.as_str() == job.as_str()
                {
                    return Some(args.result.to_string());
                }
            }
            None
        };
        let result_text = match tokio::time::timeout(timeout, wait).await {
            Ok(Some(text)) => text,
            Ok(None) => {
                return Err(ControlError::Unavailable(
                    "the D-Bus connection closed while waiting for the job".into(),
                ));
            }
            Err(_) => "timeout-waiting".to_string(),
        };
        let result = if result_text == "timeout-waiting" {
            JobResult::Timeout
        } else {
            job_result(&result_text)
        };
        let status = self.status().await.ok();
        let pid = status.as_ref().and_then(|s| s.pid);
        let success = result == JobResult::Done;
        let message = if success {
            format!("{} {}", operation.past_tense(), self.unit)
        } else if result_text == "timeout-waiting" {
            format!(
                "{operation} of {} did not finish within {timeout:?} (the job keeps running)",
                self.unit
            )
        } else {
            let detail = status
                .as_ref()
                .and_then(|s| s.error.clone())
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            format!(
                "{operation} of {} ended with '{result_text}'{detail}",
                self.unit
            )
        };
        let recent_logs = if success {
            Vec::new()
        } else {
            self.logs(&LogQuery {
                lines: FAILURE_LOG_LINES,
                ..Default::default()
            })
            .await
            .unwrap_or_default()
        };
        Ok(ControlOutcome {
            success,
            result,
            message,
            pid,
            recent_logs,
        })
    }
}

#[async_trait]
impl Backend for SystemdBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Systemd
    }

    fn target(&self) -> &str {
        &self.unit
    }

    fn describe(&self) -> String {
        BackendKind::Systemd.describe(&self.unit, Some(self.scope.as_str()))
    }

    async fn start(&self, timeout: Duration) -> Result<ControlOutcome, ControlError> {
        self.run_job(Operation::Start, timeout).await
    }

    async fn stop(&self, timeout: Duration) -> Result<ControlOutcome, ControlError> {
        self.run_job(Operation::Stop, timeout).await
    }

    async fn restart(&self, timeout: Duration) -> Result<ControlOutcome, ControlError> {
        self.run_job(Operation::Restart, timeout).await
    }

    async fn status(&self) -> Result<ServiceStatus, ControlError> {
        // Unit and service properties come from one batch: a unit that is not found
        // still answers the service interface's (with defaults), and we check first.
        let service = self.get_properties(STATUS_PROPERTIES).await?;
        let unit = &service;
        let load_state = unit.string("LoadState").unwrap_or_default();
        if load_state == "not-found" {
            return Err(ControlError::UnknownUnit(self.unit.clone()));
        }
        let active_state = unit.string("ActiveState").unwrap_or_default();
        let sub_state = unit.string("SubState").unwrap_or_default();
        let running = matches!(active_state.as_str(), "active" | "reloading");
        let pid = service.u32("MainPID").filter(|pid| *pid != 0);
        let started_micros = service
            .u64("ExecMainStartTimestamp")
            .filter(|us| *us != 0 && *us != UNSET);
        let started_at =
            started_micros.and_then(|us| DateTime::<Utc>::from_timestamp_micros(us as i64));
        let uptime_seconds = if running {
            started_at.map(|at| ((Utc::now() - at).num_milliseconds() as f64 / 1000.0).max(0.0))
        } else {
            None
        };

        let control_group = service.string("ControlGroup").unwrap_or_default();
        let snapshot = if running || !control_group.is_empty() {
            self.cgroups.read(&control_group)
        } else {
            None
        };
        let cpu_usage_seconds = service
            .accounted("CPUUsageNSec")
            .map(|ns| ns as f64 / 1e9)
            .or_else(|| snapshot.as_ref().and_then(|s| s.cpu_usage_seconds));
        let cpu_percent = match (running, cpu_usage_seconds) {
            (true, Some(usage)) => self.cpu.percent(
                &format!("{control_group}@{}", started_micros.unwrap_or(0)),
                usage,
                uptime_seconds,
            ),
            _ => None,
        };
        let memory_bytes = service
            .accounted("MemoryCurrent")
            .or_else(|| snapshot.as_ref().and_then(|s| s.memory_bytes));
        let memory_limit_bytes = service
            .accounted("MemoryMax")
            .or_else(|| snapshot.as_ref().and_then(|s| s.memory_limit_bytes));
        let tasks = service
            .accounted("TasksCurrent")
            .or_else(|| snapshot.as_ref().and_then(|s| s.tasks));

        let result = service.string("Result").unwrap_or_default();
        let error = if !result.is_empty() && result != "success" {
            Some(describe_result(&result))
        } else {
            None
        };
        let status_text = service.string("StatusText").filter(|t| !t.is_empty());
        Ok(ServiceStatus {
            backend: BackendKind::Systemd,
            unit: self.unit.clone(),
            running,
            active_state,
            sub_state,
            pid,
            started_at,
            uptime_seconds,
            restart_count: service.u32("NRestarts").unwrap_or(0),
            status_text,
            resources: ResourceUsage {
                cpu_percent,
                cpu_usage_seconds: if running { cpu_usage_seconds } else { None },
                memory_bytes: if running { memory_bytes } else { None },
                memory_limit_bytes,
                tasks: if running { tasks } else { None },
            },
            error,
        })
    }

    async fn limits(&self) -> Result<ResourceLimits, ControlError> {
        let service = self.get_properties(LIMIT_PROPERTIES).await?;
        Ok(ResourceLimits {
            memory_max_bytes: service.accounted("MemoryMax"),
            cpu_quota_percent: service
                .accounted("CPUQuotaPerSecUSec")
                .map(|usec| usec as f64 / 10_000.0),
        })
    }

    async fn set_limits(
        &self,
        limits: &ResourceLimits,
        persistent: bool,
    ) -> Result<ResourceLimits, ControlError> {
        let memory = limits.memory_max_bytes.unwrap_or(UNSET);
        let quota = match limits.cpu_quota_percent {
            Some(percent) if percent > 0.0 && percent.is_finite() => {
                (percent * 10_000.0).round() as u64
            }
            Some(percent) => {
                return Err(ControlError::Invalid(format!(
                    "CPU quota must be positive, got {percent}%"
                )));
            }
            None => UNSET,
        };
        let to_variant = |value: u64| {
            OwnedVariant::try_from(zbus::zvariant::Variant::from(value))
                .map_err(|err| ControlError::Manager(err.to_string()))
        };
        let properties = vec![
            ("MemoryMax".to_string(), to_variant(memory)?),
            ("CPUQuotaPerSecUSec".to_string(), to_variant(quota)?),
        ];
        self.manager
            .set_unit_properties(self.unit.clone(), !persistent, properties)
            .await
            .map_err(|err| self.map_err(err))?;
        self.limits().await
    }

    async fn logs(&self, query: &LogQuery) -> Result<Vec<LogEntry>, ControlError> {
        let journal =
            logs::journal_entries(&self.unit, self.scope == ManagerScope::User, query).await?;
        if !journal.is_empty() {
            return Ok(journal);
        }
        match &self.log_file {
            Some(path) => logs::file_entries(path, query),
            None => Ok(journal),
        }
    }

    async fn follow_logs(
        &self,
        query: &LogQuery,
    ) -> Result<BoxStream<'static, Result<LogEntry, ControlError>>, ControlError> {
        match &self.log_file {
            Some(path) => logs::follow_file(path, query),
            None => logs::follow_journal(&self.unit, self.scope == ManagerScope::User, query),
        }
    }

    async fn watch(&self) -> Result<BoxStream<'static, ()>, ControlError> {
        // Without Subscribe the manager sends no PropertiesChanged for units.
        self.ensure_subscribed().await?;
        let path = self.unit_path().await?;
        let proxy = zbus::fdo::PropertiesProxy::builder(&self.connection)
            .destination("org.freedesktop.systemd1")
            .path(path)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|err| self.map_err(err))?;
        let changes = proxy
            .receive_properties_changed()
            .await
            .map_err(|err| self.map_err(err))?;
        // The stream owns what it needs; keep the manager proxy alive for Subscribe.
        let manager = self.manager.clone();
        Ok(changes
            .map(move |_| {
                let _keep_subscribed = &manager;
            })
            .boxed())
    }
}

/// A human reading of the service's `Result=`.
fn describe_result(result: &str) -> String {
    let why = match result {
        "exit-code" => "the worker exited with a non-zero status",
        "signal" => "the worker was killed by a signal",
        "core-dump" => "the worker dumped core",
        "watchdog" => "watchdog timeout: the worker stopped sending WATCHDOG=1",
        "timeout" => "a start or stop timed out",
        "start-limit-hit" => "restarted too often (start limit hit)",
        "oom-kill" => "killed by the OOM killer (memory limit)",
        "resources" => "systemd could not set up the service's resources",
        "protocol" => "the worker broke the sd_notify protocol",
        _ => "",
    };
    if why.is_empty() {
        format!("last run failed: {result}")
    } else {
        format!("last run failed ({result}): {why}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_object_paths_are_escaped_like_sd_bus() {
        assert_eq!(
            unit_object_path("contimg-stream.service"),
            "/org/freedesktop/systemd1/unit/contimg_2dstream_2eservice"
        );
        assert_eq!(
            unit_object_path("contimg-stream@b_1.service"),
            "/org/freedesktop/systemd1/unit/contimg_2dstream_40b_5f1_2eservice"
        );
        assert_eq!(
            unit_object_path("0x.service"),
            "/org/freedesktop/systemd1/unit/_30x_2eservice"
        );
        assert_eq!(unit_object_path(""), "/org/freedesktop/systemd1/unit/_");
    }
}
