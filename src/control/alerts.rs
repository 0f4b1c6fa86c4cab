//! The alert engine: rules evaluated on every refresh of the service snapshot.
//! Each raise and clear is logged, pushed to SSE clients and, when configured,
//! POSTed to a webhook by a background task that never blocks evaluation.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::report::{HEARTBEAT_STALE_SECONDS, iso_from_unix};
use contimg_core::config::StreamingConfig;
use contimg_core::queue::{ClaimPause, GroupState, Heartbeat, QueueStats};

/// How many cleared alerts `GET /alerts` remembers.
const RECENT_LIMIT: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Warning,
}

/// What an alert is about. Serialized (JSON, the webhook, Prometheus' `rule`
/// label, the dashboard) as the snake_case names below; matches on it have no
/// `_ =>` arm, so a new rule fails the build where it is not handled.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertRule {
    /// The worker should run but does not (or failed).
    ServiceDown,
    /// The worker restarted `restart_count` times within `restart_window_s`.
    RestartLoop,
    FailedGroups,
    /// Work pending but nothing completed for `stall_after_s`.
    QueueStalled,
    /// More groups than `incomplete_groups` still collecting subbands.
    IncompleteGroups,
    /// A watched directory's filesystem is nearly full (id `low_disk:<field>`).
    LowDisk,
    /// The worker cannot write the queue DB (disk full, permissions).
    QueueDbUnwritable,
    /// The process-mode supervisor killed a worker whose heartbeat stopped.
    WorkerHung,
    /// The process-mode supervisor stopped restarting a crashing worker.
    SupervisorGaveUp,
    /// The worker claims no conversion: a directory it writes is short of space
    /// (id `claim_paused:<field>`; from the heartbeat row, see `worker::disk`).
    ClaimPaused,
    /// The Slurm executor cannot reach slurmctld: nothing is submitted and groups
    /// wait in pending (from the heartbeat row, see `worker::executor::slurm`).
    SchedulerUnreachable,
}

impl AlertRule {
    pub const ALL: [AlertRule; 11] = [
        AlertRule::ServiceDown,
        AlertRule::RestartLoop,
        AlertRule::FailedGroups,
        AlertRule::QueueStalled,
        AlertRule::IncompleteGroups,
        AlertRule::LowDisk,
        AlertRule::QueueDbUnwritable,
        AlertRule::WorkerHung,
        AlertRule::SupervisorGaveUp,
        AlertRule::ClaimPaused,
        AlertRule::SchedulerUnreachable,
    ];

    /// The serialized name, e.g. `queue_db_unwritable`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertRule::ServiceDown => "service_down",
            AlertRule::RestartLoop => "restart_loop",
            AlertRule::FailedGroups => "failed_groups",
            AlertRule::QueueStalled => "queue_stalled",
            AlertRule::IncompleteGroups => "incomplete_groups",
            AlertRule::LowDisk => "low_disk",
            AlertRule::QueueDbUnwritable => "queue_db_unwritable",
            AlertRule::WorkerHung => "worker_hung",
            AlertRule::SupervisorGaveUp => "supervisor_gave_up",
            AlertRule::ClaimPaused => "claim_paused",
            AlertRule::SchedulerUnreachable => "scheduler_unreachable",
        }
    }

    /// The alert id: the rule's name, or `rule:subject` for a rule that fires
    /// once per subject (`low_disk:output_dir`).
    pub fn id(self, subject: Option<&str>) -> String {
        match subject {
            Some(subject) => format!("{}:{subject}", self.as_str()),
            None => self.as_str().to_string(),
        }
    }
}

impl std::fmt::Display for AlertRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert, active (`cleared_at` null) or recent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    /// `rule` or `rule:subject` (e.g. `low_disk:output_dir`).
    pub id: String,
    pub rule: AlertRule,
    pub severity: Severity,
    pub message: String,
    pub raised_at: String,
    pub cleared_at: Option<String>,
}

/// `GET /api/streaming/alerts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertList {
    pub active: Vec<Alert>,
    /// Cleared alerts, newest first.
    pub recent: Vec<Alert>,
}

/// Thresholds of the rules (daemon config file `[alerts]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertThresholds {
    /// A service that should run but has not for this long is "down".
    pub service_down_grace_s: f64,
    /// `restart_loop` fires at this many restarts within `restart_window_s`.
    pub restart_count: u32,
    pub restart_window_s: f64,
    /// `failed_groups` fires when at least this many groups are failed.
    pub failed_groups: u64,
    /// `queue_stalled`: work pending but nothing completed for this long.
    pub stall_after_s: f64,
    /// `incomplete_groups` fires when more groups than this are collecting.
    pub incomplete_groups: u64,
    /// `low_disk` warning / critical below these free fractions (percent).
    pub disk_warning_percent: f64,
    pub disk_critical_percent: f64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        Self {
            service_down_grace_s: 10.0,
            restart_count: 3,
            restart_window_s: 600.0,
            failed_groups: 1,
            stall_after_s: 1800.0,
            incomplete_groups: 3,
            disk_warning_percent: 10.0,
            disk_critical_percent: 5.0,
        }
    }
}

/// What the rules look at; assembled by the event producer.
#[derive(Debug, Clone, Default)]
pub struct AlertInputs {
    pub now: f64,
    pub running: bool,
    pub failed_state: bool,
    /// Whether the service is meant to run (last operator action, or observed).
    pub should_run: bool,
    pub restart_count: u32,
    pub failed_groups: Option<u64>,
    pub collecting_groups: Option<u64>,
    pub pending_work: Option<u64>,
    pub last_completed_at: Option<f64>,
    pub oldest_pending_ts: Option<f64>,
    /// `(config field, path, free percent)` for input/output/scratch dirs and
    /// `state_dir` (the queue DB's directory).
    pub disks: Vec<(String, PathBuf, Option<f64>)>,
    /// Why the worker cannot write the queue DB (disk full, permissions), from
    /// `contimg_core::queue::writable::probe_queue_db_writable`.
    pub queue_db_unwritable: Option<String>,
    /// Alerts the process-mode supervisor raises about its own actions.
    pub supervisor: Vec<SupervisorAlert>,
    /// Why the worker claims no conversion (disk back-pressure), from a fresh
    /// heartbeat: see [`claim_pause_of`].
    pub claim_paused: Option<ClaimPause>,
    /// Since when the Slurm scheduler has not answered the worker, from a fresh
    /// heartbeat: see [`scheduler_unreachable_of`].
    pub scheduler_unreachable_since: Option<f64>,
}

impl AlertInputs {
    /// The inputs that come from the service state and the queue counts.
    pub fn from_state(
        now: f64,
        running: bool,
        failed_state: bool,
        should_run: bool,
        restart_count: u32,
        stats: Option<&QueueStats>,
    ) -> Self {
        Self {
            now,
            running,
            failed_state,
            should_run,
            restart_count,
            failed_groups: stats.map(|s| s.count(GroupState::Failed)),
            collecting_groups: stats.map(|s| s.count(GroupState::Collecting)),
            pending_work: stats
                .map(|s| s.count(GroupState::Pending) + s.count(GroupState::InProgress)),
            last_completed_at: stats.and_then(|s| s.last_completed_at),
            oldest_pending_ts: stats.and_then(|s| s.oldest_pending_ts),
            ..Default::default()
        }
    }
}

/// The worker's claim pause, from its heartbeat while that is fresh (a stopped
/// worker's last pause is history, and `service_down` speaks for it).
pub fn claim_pause_of(heartbeat: Option<&Heartbeat>, now: f64) -> Option<ClaimPause> {
    heartbeat
        .filter(|beat| now - beat.heartbeat_at <= HEARTBEAT_STALE_SECONDS)
        .and_then(|beat| beat.claim_paused.clone())
}

/// Since when the worker's Slurm scheduler has not answered, from its heartbeat
/// while that is fresh (a stopped worker says nothing about the scheduler now).
pub fn scheduler_unreachable_of(heartbeat: Option<&Heartbeat>, now: f64) -> Option<f64> {
    heartbeat
        .filter(|beat| now - beat.heartbeat_at <= HEARTBEAT_STALE_SECONDS)
        .and_then(|beat| beat.scheduler_unreachable_since)
}

/// The directories whose free space the `low_disk` rule watches: the config's
/// input, output and scratch dirs and the state dir holding the queue DB.
pub fn watched_dirs(config: &StreamingConfig) -> Vec<(String, PathBuf)> {
    let state_dir = match config.queue_db.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    vec![
        ("input_dir".to_string(), config.input_dir.clone()),
        ("output_dir".to_string(), config.output_dir.clone()),
        ("scratch_dir".to_string(), config.scratch_dir.clone()),
        ("state_dir".to_string(), state_dir),
    ]
}

/// Free percent of each dir (blocking: statvfs can hang on a dead network mount).
pub fn measure_disks(dirs: Vec<(String, PathBuf)>) -> Vec<(String, PathBuf, Option<f64>)> {
    dirs.into_iter()
        .map(|(field, path)| {
            let free = free_percent(&path);
            (field, path, free)
        })
        .collect()
}

/// The critical alerts `contimgctl health` sees in one snapshot, with the
/// default thresholds (the daemon's `[alerts]` may differ). Blocking (statvfs).
pub fn critical_for_snapshot(snapshot: &crate::report::Snapshot) -> Vec<String> {
    let status = &snapshot.status;
    let mut inputs = AlertInputs::from_state(
        snapshot.taken_at,
        status.running,
        status.active_state == "failed",
        false,
        status.restart_count,
        snapshot.queue.stats.as_ref(),
    );
    if let Some(config) = &snapshot.config {
        inputs.disks = measure_disks(watched_dirs(config));
    }
    inputs.queue_db_unwritable = snapshot
        .queue
        .writable
        .as_ref()
        .and_then(|w| w.as_ref().err().cloned());
    inputs.claim_paused = claim_pause_of(snapshot.queue.heartbeat.as_ref(), snapshot.taken_at);
    inputs.scheduler_unreachable_since =
        scheduler_unreachable_of(snapshot.queue.heartbeat.as_ref(), snapshot.taken_at);
    AlertEngine::critical_now(AlertThresholds::default(), &inputs)
}

/// An alert the supervisor raises (a hung worker it killed, giving up).
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorAlert {
    pub rule: AlertRule,
    pub severity: Severity,
    pub message: String,
}

/// The rules that fire right now: id → (rule, severity, message).
type Firing = BTreeMap<String, (AlertRule, Severity, String)>;

/// Whether an [`AlertChange`] raised or cleared its alert (`raised`/`cleared`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertEvent {
    Raised,
    Cleared,
}

/// A raise or a clear, as broadcast and sent to the webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertChange {
    pub event: AlertEvent,
    #[serde(flatten)]
    pub alert: Alert,
}

pub struct AlertEngine {
    thresholds: AlertThresholds,
    active: BTreeMap<String, Alert>,
    recent: VecDeque<Alert>,
    /// Unix times of observed restarts, for the loop rule.
    restarts: VecDeque<f64>,
    last_restart_count: Option<u32>,
    down_since: Option<f64>,
}

impl AlertEngine {
    pub fn new(thresholds: AlertThresholds) -> Self {
        Self {
            thresholds,
            active: BTreeMap::new(),
            recent: VecDeque::new(),
            restarts: VecDeque::new(),
            last_restart_count: None,
            down_since: None,
        }
    }

    pub fn list(&self) -> AlertList {
        AlertList {
            active: self.active.values().cloned().collect(),
            recent: self.recent.iter().cloned().collect(),
        }
    }

    pub fn active(&self) -> impl Iterator<Item = &Alert> {
        self.active.values()
    }

    pub fn has_critical(&self) -> bool {
        self.active
            .values()
            .any(|a| a.severity == Severity::Critical)
    }

    /// The critical alerts one look at `input` raises, without history (so no
    /// restart loop and no grace periods): what `contimgctl health` can judge on
    /// its own. Logs nothing.
    pub fn critical_now(thresholds: AlertThresholds, input: &AlertInputs) -> Vec<String> {
        Self::new(thresholds)
            .firing(input)
            .into_values()
            .filter(|(_, severity, _)| *severity == Severity::Critical)
            .map(|(_, _, message)| message)
            .collect()
    }

    /// Messages of the active critical alerts.
    pub fn critical_messages(&self) -> Vec<String> {
        self.active
            .values()
            .filter(|a| a.severity == Severity::Critical)
            .map(|a| a.message.clone())
            .collect()
    }

    /// Runs every rule; returns the raises and clears this evaluation caused.
    pub fn evaluate(&mut self, input: &AlertInputs) -> Vec<AlertChange> {
        let firing = self.firing(input);
        self.apply(input.now, firing)
    }

    fn firing(&mut self, input: &AlertInputs) -> Firing {
        let t = &self.thresholds;
        let mut firing = Firing::new();
        let mut fire =
            |rule: AlertRule, subject: Option<&str>, severity: Severity, message: String| {
                firing.insert(rule.id(subject), (rule, severity, message));
            };

        // Restarts: count increases of the backend's counter.
        if let Some(previous) = self.last_restart_count
            && input.restart_count > previous
        {
            for _ in previous..input.restart_count {
                self.restarts.push_back(input.now);
            }
        }
        self.last_restart_count = Some(input.restart_count);
        while self
            .restarts
            .front()
            .is_some_and(|ts| input.now - ts > t.restart_window_s)
        {
            self.restarts.pop_front();
        }
        if t.restart_count > 0 && self.restarts.len() >= t.restart_count as usize {
            fire(
                AlertRule::RestartLoop,
                None,
                Severity::Critical,
                format!(
                    "the worker restarted {} times in the last {:.0} s",
                    self.restarts.len(),
                    t.restart_window_s
                ),
            );
        }

        if input.running {
            self.down_since = None;
        } else if input.should_run || input.failed_state {
            let since = *self.down_since.get_or_insert(input.now);
            if input.failed_state || input.now - since >= t.service_down_grace_s {
                fire(
                    AlertRule::ServiceDown,
                    None,
                    Severity::Critical,
                    if input.failed_state {
                        "the worker failed and is not running".to_string()
                    } else {
                        format!(
                            "the worker has not been running for {:.0} s",
                            input.now - since
                        )
                    },
                );
            }
        } else {
            self.down_since = None;
        }

        if let Some(failed) = input.failed_groups
            && t.failed_groups > 0
            && failed >= t.failed_groups
        {
            fire(
                AlertRule::FailedGroups,
                None,
                Severity::Warning,
                format!("{failed} group(s) failed"),
            );
        }

        if let Some(pending) = input.pending_work
            && pending > 0
        {
            // Stalled: nothing completed for `stall_after_s`, measured from the
            // last completion or, if none, from the oldest pending group.
            let reference = input.last_completed_at.or(input.oldest_pending_ts);
            if let (Some(reference), Some(oldest)) = (reference, input.oldest_pending_ts) {
                let quiet_for = input.now - reference.max(oldest);
                if quiet_for >= t.stall_after_s {
                    fire(
                        AlertRule::QueueStalled,
                        None,
                        Severity::Warning,
                        format!(
                            "{pending} group(s) waiting and nothing completed for {:.0} min",
                            quiet_for / 60.0
                        ),
                    );
                }
            }
        }

        if let Some(collecting) = input.collecting_groups
            && collecting > t.incomplete_groups
        {
            fire(
                AlertRule::IncompleteGroups,
                None,
                Severity::Warning,
                format!("{collecting} groups are still collecting subbands"),
            );
        }

        for (field, path, free) in &input.disks {
            let Some(free) = free else { continue };
            let severity = if *free < t.disk_critical_percent {
                Severity::Critical
            } else if *free < t.disk_warning_percent {
                Severity::Warning
            } else {
                continue;
            };
            fire(
                AlertRule::LowDisk,
                Some(field),
                severity,
                format!("{} ({field}) has {free:.1} % free", path.display()),
            );
        }

        if let Some(why) = &input.queue_db_unwritable {
            fire(
                AlertRule::QueueDbUnwritable,
                None,
                Severity::Critical,
                format!(
                    "the worker cannot write the queue DB ({why}); it pauses registration \
                     and claiming until this is fixed"
                ),
            );
        }

        if let Some(pause) = &input.claim_paused {
            fire(
                AlertRule::ClaimPaused,
                Some(&pause.dir),
                Severity::Critical,
                format!(
                    "the worker claims no conversion, groups stay pending: {}; free space \
                     there (or lower min_free_gb / free_space_factor) and it resumes by itself",
                    pause.reason
                ),
            );
        }

        if let Some(since) = input.scheduler_unreachable_since {
            fire(
                AlertRule::SchedulerUnreachable,
                None,
                Severity::Critical,
                format!(
                    "the Slurm scheduler has not answered the worker since {}: nothing is \
                     submitted and groups wait in pending (none fails); submission resumes \
                     by itself when slurmctld answers",
                    iso_from_unix(since).unwrap_or_else(|| format!("{since:.0}"))
                ),
            );
        }

        for alert in &input.supervisor {
            fire(alert.rule, None, alert.severity, alert.message.clone());
        }
        firing
    }

    /// Turns what fires now into raises and clears against the active alerts.
    fn apply(&mut self, now: f64, firing: Firing) -> Vec<AlertChange> {
        let now_iso = iso_from_unix(now).unwrap_or_default();
        let mut changes = Vec::new();
        let cleared: Vec<String> = self
            .active
            .keys()
            .filter(|id| !firing.contains_key(*id))
            .cloned()
            .collect();
        for id in cleared {
            if let Some(mut alert) = self.active.remove(&id) {
                alert.cleared_at = Some(now_iso.clone());
                self.recent.push_front(alert.clone());
                self.recent.truncate(RECENT_LIMIT);
                changes.push(AlertChange {
                    event: AlertEvent::Cleared,
                    alert,
                });
            }
        }
        for (id, (rule, severity, message)) in firing {
            match self.active.get_mut(&id) {
                Some(existing) => {
                    // Keep the raise time; refresh the wording (counts move).
                    existing.message = message;
                    existing.severity = severity;
                }
                None => {
                    let alert = Alert {
                        id: id.clone(),
                        rule,
                        severity,
                        message,
                        raised_at: now_iso.clone(),
                        cleared_at: None,
                    };
                    self.active.insert(id, alert.clone());
                    changes.push(AlertChange {
                        event: AlertEvent::Raised,
                        alert,
                    });
                }
            }
        }
        for change in &changes {
            match change.event {
                AlertEvent::Raised => tracing::warn!(
                    alert = %change.alert.id, severity = ?change.alert.severity,
                    "alert raised: {}", change.alert.message
                ),
                AlertEvent::Cleared => {
                    tracing::info!(alert = %change.alert.id, "alert cleared: {}", change.alert.message)
                }
            }
        }
        changes
    }
}

/// Free space of the filesystem holding `path`, in percent (for unprivileged
/// users: `f_bavail`). `None` when the path does not exist.
pub fn free_percent(path: &std::path::Path) -> Option<f64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    let total = stat.blocks() as f64;
    if total <= 0.0 {
        return None;
    }
    Some(stat.blocks_available() as f64 / total * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(now: f64) -> AlertInputs {
        AlertInputs {
            now,
            running: true,
            should_run: true,
            ..Default::default()
        }
    }

    #[test]
    fn restart_loop_raises_then_clears_after_window() {
        let mut engine = AlertEngine::new(AlertThresholds::default());
        let mut input = base(1000.0);
        assert!(engine.evaluate(&input).is_empty());
        for i in 1..=3 {
            input.now = 1000.0 + f64::from(i);
            input.restart_count = i;
            let changes = engine.evaluate(&input);
            if i == 3 {
                assert_eq!(changes.len(), 1);
                assert_eq!(changes[0].alert.rule, AlertRule::RestartLoop);
            }
        }
        input.now = 1000.0 + 700.0;
        let changes = engine.evaluate(&input);
        assert_eq!(changes[0].event, AlertEvent::Cleared);
        assert_eq!(engine.list().recent.len(), 1);
    }

    #[test]
    fn service_down_waits_for_grace() {
        let mut engine = AlertEngine::new(AlertThresholds::default());
        let mut input = base(0.0);
        input.running = false;
        assert!(engine.evaluate(&input).is_empty());
        input.now = 11.0;
        assert_eq!(
            engine.evaluate(&input)[0].alert.rule,
            AlertRule::ServiceDown
        );
        assert!(engine.has_critical());
    }

    /// The names the API, the webhook, Prometheus' `rule` label and the
    /// dashboard (frontend/src/api/types.ts `AlertRule`) saw when rules were strings.
    #[test]
    fn rules_serialize_to_the_names_they_had_as_strings() {
        let names: Vec<String> = AlertRule::ALL
            .iter()
            .map(|rule| {
                serde_json::to_value(rule)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "service_down",
                "restart_loop",
                "failed_groups",
                "queue_stalled",
                "incomplete_groups",
                "low_disk",
                "queue_db_unwritable",
                "worker_hung",
                "supervisor_gave_up",
                "claim_paused",
                "scheduler_unreachable",
            ]
        );
        for rule in AlertRule::ALL {
            assert_eq!(rule.to_string(), rule.as_str());
            let back: AlertRule = serde_json::from_value(serde_json::json!(rule.as_str())).unwrap();
            assert_eq!(back, rule);
        }
    }

    /// The Slurm executor's outage flag in a fresh heartbeat raises
    /// `scheduler_unreachable` (critical); it clears when the worker clears the
    /// flag, and a stale heartbeat's flag raises nothing.
    #[test]
    fn an_unreachable_scheduler_in_a_fresh_heartbeat_raises_an_alert() {
        let mut beat = Heartbeat {
            pid: 7,
            started_at: 0.0,
            heartbeat_at: 999.0,
            version: String::new(),
            claim_paused: None,
            scheduler_unreachable_since: Some(970.0),
        };
        let mut engine = AlertEngine::new(AlertThresholds::default());
        let mut input = base(1000.0);
        input.scheduler_unreachable_since = scheduler_unreachable_of(Some(&beat), input.now);
        let raised = engine.evaluate(&input);
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].alert.rule, AlertRule::SchedulerUnreachable);
        assert_eq!(raised[0].alert.severity, Severity::Critical);
        assert!(
            raised[0].alert.message.contains("pending"),
            "{}",
            raised[0].alert.message
        );
        // Still down a poll later: the same alert, not a new one.
        input.now = 1005.0;
        assert!(engine.evaluate(&input).is_empty());
        beat.scheduler_unreachable_since = None;
        input.scheduler_unreachable_since = scheduler_unreachable_of(Some(&beat), input.now);
        assert_eq!(engine.evaluate(&input)[0].event, AlertEvent::Cleared);
        beat.scheduler_unreachable_since = Some(970.0);
        assert_eq!(
            scheduler_unreachable_of(Some(&beat), 999.0 + HEARTBEAT_STALE_SECONDS + 1.0),
            None
        );
    }

    /// Disk back-pressure: the worker's pause (from a fresh heartbeat) raises
    /// `claim_paused:<dir>` naming the directory; it clears when the pause ends,
    /// and a stale heartbeat's pause raises nothing.
    #[test]
    fn a_claim_pause_in_a_fresh_heartbeat_raises_an_alert_naming_the_dir() {
        let pause = ClaimPause {
            dir: "output_dir".into(),
            reason: "/data/ms (output_dir) has 1.0 GiB free, needs 10.0 GiB".into(),
            since: 990.0,
        };
        let mut beat = Heartbeat {
            pid: 7,
            started_at: 0.0,
            heartbeat_at: 999.0,
            version: String::new(),
            claim_paused: Some(pause.clone()),
            scheduler_unreachable_since: None,
        };
        let mut engine = AlertEngine::new(AlertThresholds::default());
        let mut input = base(1000.0);
        input.claim_paused = claim_pause_of(Some(&beat), input.now);
        let raised = engine.evaluate(&input);
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].alert.id, "claim_paused:output_dir");
        assert_eq!(raised[0].alert.severity, Severity::Critical);
        assert!(raised[0].alert.message.contains(&pause.reason));
        beat.claim_paused = None;
        input.claim_paused = claim_pause_of(Some(&beat), input.now);
        assert_eq!(engine.evaluate(&input)[0].event, AlertEvent::Cleared);
        beat.claim_paused = Some(pause);
        assert_eq!(
            claim_pause_of(Some(&beat), 999.0 + HEARTBEAT_STALE_SECONDS + 1.0),
            None
        );
    }

    #[test]
    fn an_alert_change_keeps_its_json_shape() {
        let mut engine = AlertEngine::new(AlertThresholds::default());
        let mut input = base(1000.0);
        input.disks = vec![("output_dir".into(), PathBuf::from("/data/ms"), Some(1.0))];
        let changes = engine.evaluate(&input);
        let json = serde_json::to_value(&changes[0]).unwrap();
        assert_eq!(json["event"], "raised");
        assert_eq!(json["id"], "low_disk:output_dir");
        assert_eq!(json["rule"], "low_disk");
        assert_eq!(json["severity"], "critical");
        let list = serde_json::to_value(engine.list()).unwrap();
        assert_eq!(list["active"][0]["rule"], "low_disk");
    }
}
