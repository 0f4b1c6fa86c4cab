//! `GET /metrics` in the Prometheus text exposition format, rendered from the
//! snapshot by hand (a dozen series do not need a registry).

use std::fmt::Write;

use super::disk::DirUsage;
use super::models::StatusResponse;
use contimg_control::alerts::AlertRule;
use contimg_control::report::QueueView;
use contimg_core::config::StreamingConfig;
use contimg_core::queue::retention::RemovalTotal;
use contimg_core::queue::{GroupState, QueueStats, RemovalKind};

/// Upper bounds (seconds) of the group-duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 11] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

/// Histogram of completed groups' total conversion times
/// (`contimg_group_duration_seconds`), accumulated by the queue watcher.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DurationHistogram {
    /// Per bucket of [`DURATION_BUCKETS`], non-cumulative; the last is +Inf.
    pub counts: [u64; DURATION_BUCKETS.len() + 1],
    pub sum: f64,
    pub count: u64,
}

impl DurationHistogram {
    pub fn observe(&mut self, seconds: f64) {
        let index = DURATION_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(DURATION_BUCKETS.len());
        self.counts[index] += 1;
        self.sum += seconds;
        self.count += 1;
    }
}

/// `firing`: the rule of each active alert (one entry per alert); `disks`: the
/// configured directories as last measured; `config`: the live configuration,
/// when readable, for the thresholds alerting rules compare against.
pub fn render(
    status: &StatusResponse,
    queue: &QueueView,
    durations: &DurationHistogram,
    firing: &[AlertRule],
    disks: &[DirUsage],
    config: Option<&StreamingConfig>,
) -> String {
    let mut out = String::with_capacity(2048);
    let _ = writeln!(
        out,
        "# HELP contimg_up 1 when the streaming worker runs.\n# TYPE contimg_up gauge"
    );
    let _ = writeln!(out, "contimg_up {}", u8::from(status.running));
    let _ = writeln!(
        out,
        "# HELP contimg_cpu_seconds_total CPU time used by the worker's processes.\n\
         # TYPE contimg_cpu_seconds_total counter"
    );
    if let Some(cpu) = status.cpu_usage_seconds {
        let _ = writeln!(out, "contimg_cpu_seconds_total {cpu}");
    }
    let _ = writeln!(
        out,
        "# HELP contimg_memory_bytes Memory used by the worker.\n# TYPE contimg_memory_bytes gauge"
    );
    if let Some(memory) = status.memory_bytes {
        let _ = writeln!(out, "contimg_memory_bytes {memory}");
    }
    let _ = writeln!(
        out,
        "# HELP contimg_restarts_total Automatic restarts of the worker.\n\
         # TYPE contimg_restarts_total counter\ncontimg_restarts_total {}",
        status.restart_count
    );
    if let Some(stats) = &queue.stats {
        let _ = writeln!(
            out,
            "# HELP contimg_groups Groups in the queue by state.\n# TYPE contimg_groups gauge"
        );
        for state in GroupState::ALL {
            let _ = writeln!(
                out,
                "contimg_groups{{state=\"{}\"}} {}",
                state.as_str(),
                stats.count(state)
            );
        }
        let _ = writeln!(
            out,
            "# HELP contimg_groups_completed_total Groups converted successfully.\n\
             # TYPE contimg_groups_completed_total counter\ncontimg_groups_completed_total {}",
            stats.count(GroupState::Completed)
        );
        let _ = writeln!(
            out,
            "# HELP contimg_unrecognised_files Entries of input_dir refused for their name, place or type.\n\
             # TYPE contimg_unrecognised_files gauge\ncontimg_unrecognised_files {}\n\
             # HELP contimg_late_files Subbands that arrived after their group was closed.\n\
             # TYPE contimg_late_files gauge\ncontimg_late_files {}",
            stats.unrecognised_files, stats.late_files
        );
        render_retention(&mut out, stats);
    }
    let _ = writeln!(
        out,
        "# HELP contimg_queue_up 1 when the queue DB is readable.\n\
         # TYPE contimg_queue_up gauge\ncontimg_queue_up {}",
        u8::from(queue.stats.is_some())
    );
    let h = durations;
    let _ = writeln!(
        out,
        "# HELP contimg_group_duration_seconds Total conversion time of completed groups.\n\
         # TYPE contimg_group_duration_seconds histogram"
    );
    let mut cumulative = 0;
    for (bound, count) in DURATION_BUCKETS.iter().zip(h.counts.iter()) {
        cumulative += count;
        let _ = writeln!(
            out,
            "contimg_group_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "contimg_group_duration_seconds_bucket{{le=\"+Inf\"}} {}\n\
         contimg_group_duration_seconds_sum {}\ncontimg_group_duration_seconds_count {}",
        h.count, h.sum, h.count
    );
    let _ = writeln!(
        out,
        "# HELP contimg_alerts_firing Active alerts per rule.\n# TYPE contimg_alerts_firing gauge"
    );
    // Every rule, so a quiet one has a 0 series rather than none.
    for rule in AlertRule::ALL {
        let n = firing.iter().filter(|firing| **firing == rule).count();
        let _ = writeln!(out, "contimg_alerts_firing{{rule=\"{rule}\"}} {n}");
    }
    render_executor(&mut out, status);
    render_disks(&mut out, disks);
    if let Some(config) = config {
        render_config(&mut out, config);
    }
    out
}

/// What retention removed, per kind, with a 0 series for a kind with nothing
/// removed yet (counters from the queue DB's trigger-kept totals).
fn render_retention(out: &mut String, stats: &QueueStats) {
    type Pick = fn(&RemovalTotal) -> u64;
    let counters: [(&str, &str, Pick); 2] = [
        (
            "contimg_retention_freed_bytes_total",
            "Bytes retention deleted or moved to archive_dir, per kind (input, output, scratch, stray_input, job_log).",
            |t| t.bytes,
        ),
        (
            "contimg_retention_removed_files_total",
            "Files retention deleted or moved to archive_dir, per kind.",
            |t| t.files,
        ),
    ];
    for (name, help, pick) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for kind in RemovalKind::ALL {
            let total = stats.removed.get(&kind).copied().unwrap_or_default();
            let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {}", pick(&total));
        }
    }
}

/// Where conversions run, and with the Slurm executor whether the worker reaches
/// the scheduler and how many jobs it has in flight. `contimg_slurm_scheduler_up`
/// has a sample only with `executor = "slurm"` and a running worker: a local
/// executor has no scheduler to be down (a constant 1 would hide a wrong config),
/// and a stopped worker asks no one.
fn render_executor(out: &mut String, status: &StatusResponse) {
    let _ = writeln!(
        out,
        "# HELP contimg_executor_info Where conversions run (the executor setting), always 1.\n\
         # TYPE contimg_executor_info gauge"
    );
    if let Some(executor) = &status.executor {
        let _ = writeln!(
            out,
            "contimg_executor_info{{executor=\"{}\"}} 1",
            label_value(executor)
        );
    }
    let _ = writeln!(
        out,
        "# HELP contimg_slurm_scheduler_up 1 when the worker reaches the Slurm scheduler (executor = slurm only).\n\
         # TYPE contimg_slurm_scheduler_up gauge"
    );
    if let Some(reachable) = status.scheduler_reachable {
        let _ = writeln!(out, "contimg_slurm_scheduler_up {}", u8::from(reachable));
    }
    let _ = writeln!(
        out,
        "# HELP contimg_slurm_jobs Batch jobs in flight by Slurm state (pending includes jobs being submitted).\n\
         # TYPE contimg_slurm_jobs gauge"
    );
    if let (Some("slurm"), Some(jobs)) = (status.executor.as_deref(), status.jobs_in_flight) {
        let _ = writeln!(
            out,
            "contimg_slurm_jobs{{state=\"pending\"}} {}\ncontimg_slurm_jobs{{state=\"running\"}} {}",
            jobs.queued, jobs.running
        );
    }
}

/// One series per configured directory, even when several share a filesystem
/// (the `filesystem` label tells them apart, so sums can deduplicate).
fn render_disks(out: &mut String, disks: &[DirUsage]) {
    type Pick = fn(&DirUsage) -> Option<u64>;
    let gauges: [(&str, &str, Pick); 2] = [
        (
            "contimg_disk_free_bytes",
            "Bytes an unprivileged writer may still use on the filesystem of each configured directory.",
            |d| d.free_bytes,
        ),
        (
            "contimg_disk_total_bytes",
            "Size of the filesystem of each configured directory.",
            |d| d.total_bytes,
        ),
    ];
    for (name, help, pick) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for usage in disks {
            if let Some(value) = pick(usage) {
                let _ = writeln!(
                    out,
                    "{name}{{dir=\"{}\",path=\"{}\",filesystem=\"{}\"}} {value}",
                    label_value(&usage.dir),
                    label_value(&usage.path),
                    label_value(usage.filesystem.as_deref().unwrap_or_default()),
                );
            }
        }
    }
}

/// The thresholds the packaged alerting rules compare the gauges with, so a
/// rule follows the live config instead of a copy of it.
fn render_config(out: &mut String, config: &StreamingConfig) {
    let _ = writeln!(
        out,
        "# HELP contimg_config_min_free_bytes min_free_gb: the worker claims no conversion while a directory it writes has less free space.\n\
         # TYPE contimg_config_min_free_bytes gauge\ncontimg_config_min_free_bytes {}",
        config.min_free_bytes()
    );
    let _ = writeln!(
        out,
        "# HELP contimg_config_free_space_factor free_space_factor: a claim also needs the group's input size times this free.\n\
         # TYPE contimg_config_free_space_factor gauge\ncontimg_config_free_space_factor {}",
        config.free_space_factor
    );
}

/// A label value in the text format: backslash, double quote and newline escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use contimg_control::ControlError;

    fn stopped() -> StatusResponse {
        StatusResponse::assemble(
            "systemd",
            "contimg-stream.service",
            &Err(ControlError::Unavailable("not read".into())),
            None,
            None,
        )
    }

    /// Issue 13: the executor, the scheduler's reachability and the jobs in
    /// flight; the scheduler gauge only with the Slurm executor.
    #[test]
    fn the_executor_and_the_slurm_jobs_have_series() {
        let render_status = |status: &StatusResponse| {
            render(
                status,
                &QueueView::default(),
                &DurationHistogram::default(),
                &[],
                &[],
                None,
            )
        };
        let mut slurm = stopped();
        slurm.executor = Some("slurm".into());
        slurm.scheduler_reachable = Some(false);
        slurm.jobs_in_flight = Some(contimg_core::queue::JobsInFlight {
            queued: 3,
            running: 2,
        });
        let text = render_status(&slurm);
        for line in [
            "contimg_executor_info{executor=\"slurm\"} 1",
            "contimg_slurm_scheduler_up 0",
            "contimg_slurm_jobs{state=\"pending\"} 3",
            "contimg_slurm_jobs{state=\"running\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        let mut local = stopped();
        local.executor = Some("local".into());
        local.jobs_in_flight = Some(contimg_core::queue::JobsInFlight::default());
        let text = render_status(&local);
        assert!(
            text.contains("contimg_executor_info{executor=\"local\"} 1"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l == "# TYPE contimg_slurm_scheduler_up gauge"),
            "{text}"
        );
        assert!(
            !text.lines().any(|l| l.starts_with("contimg_slurm_")),
            "no Slurm sample without the Slurm executor:\n{text}"
        );
    }

    #[test]
    fn counts_alerts_per_rule_and_every_rule_has_a_series() {
        let text = render(
            &stopped(),
            &QueueView::default(),
            &DurationHistogram::default(),
            &[
                AlertRule::LowDisk,
                AlertRule::LowDisk,
                AlertRule::WorkerHung,
            ],
            &[],
            None,
        );
        assert!(
            text.contains("contimg_alerts_firing{rule=\"low_disk\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("contimg_alerts_firing{rule=\"worker_hung\"} 1\n"));
        assert!(text.contains("contimg_alerts_firing{rule=\"supervisor_gave_up\"} 0\n"));
        assert_eq!(
            text.matches("contimg_alerts_firing{").count(),
            AlertRule::ALL.len()
        );
        // No stats read: no per-state gauges, and the queue is down.
        assert!(!text.contains("contimg_groups{"));
        assert!(text.contains("contimg_queue_up 0\n"));
    }

    #[test]
    fn the_duration_histogram_is_cumulative_with_an_inf_bucket() {
        let mut histogram = DurationHistogram::default();
        for seconds in [0.5, 1.0, 7.0, 4000.0] {
            histogram.observe(seconds);
        }
        let text = render(
            &stopped(),
            &QueueView::default(),
            &histogram,
            &[],
            &[],
            None,
        );
        assert!(
            text.contains("contimg_group_duration_seconds_bucket{le=\"1\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("contimg_group_duration_seconds_bucket{le=\"10\"} 3\n"));
        assert!(text.contains("contimg_group_duration_seconds_bucket{le=\"3600\"} 3\n"));
        assert!(text.contains("contimg_group_duration_seconds_bucket{le=\"+Inf\"} 4\n"));
        assert!(text.contains("contimg_group_duration_seconds_count 4\n"));
        assert!(text.contains("contimg_group_duration_seconds_sum 4008.5\n"));
    }

    #[test]
    fn retention_counters_have_a_series_per_kind() {
        let mut stats = QueueStats::default();
        stats.removed.insert(
            RemovalKind::Input,
            RemovalTotal {
                files: 16,
                bytes: 2_300_000_000,
            },
        );
        let queue = QueueView {
            stats: Some(stats),
            ..QueueView::default()
        };
        let text = render(
            &stopped(),
            &queue,
            &DurationHistogram::default(),
            &[],
            &[],
            None,
        );
        for line in [
            "# TYPE contimg_retention_freed_bytes_total counter\n",
            "contimg_retention_freed_bytes_total{kind=\"input\"} 2300000000\n",
            "contimg_retention_freed_bytes_total{kind=\"scratch\"} 0\n",
            "contimg_retention_removed_files_total{kind=\"input\"} 16\n",
            "contimg_retention_removed_files_total{kind=\"output\"} 0\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn every_configured_dir_has_its_own_disk_series_with_escaped_labels() {
        let dir = |name: &str, path: &str, free: Option<u64>| DirUsage {
            dir: name.to_string(),
            path: path.to_string(),
            filesystem: Some("0:42".to_string()),
            total_bytes: free.map(|_| 1000),
            used_bytes: free.map(|f| 1000 - f),
            free_bytes: free,
            error: None,
        };
        let disks = [
            dir("output_dir", "/data/out", Some(250)),
            dir("scratch_dir", "/data/a \"quoted\" \\dir", Some(250)),
            dir("input_dir", "/gone", None),
        ];
        let text = render(
            &stopped(),
            &QueueView::default(),
            &DurationHistogram::default(),
            &[],
            &disks,
            None,
        );
        assert!(
            text.contains(
                "contimg_disk_free_bytes{dir=\"output_dir\",path=\"/data/out\",filesystem=\"0:42\"} 250\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "contimg_disk_total_bytes{dir=\"scratch_dir\",path=\"/data/a \\\"quoted\\\" \\\\dir\",filesystem=\"0:42\"} 1000\n"
        ), "{text}");
        // A dir that could not be measured has no series rather than a made-up 0.
        assert!(!text.contains("dir=\"input_dir\""), "{text}");
        assert_eq!(
            text.matches("# TYPE contimg_disk_free_bytes gauge").count(),
            1
        );
        // No config read: no threshold series.
        assert!(!text.contains("contimg_config_min_free_bytes"), "{text}");
    }

    #[test]
    fn the_free_space_threshold_is_exported_in_bytes() {
        let config = StreamingConfig {
            min_free_gb: 20.5,
            ..StreamingConfig::default()
        };
        let text = render(
            &stopped(),
            &QueueView::default(),
            &DurationHistogram::default(),
            &[],
            &[],
            Some(&config),
        );
        assert!(
            text.contains("\ncontimg_config_min_free_bytes 20500000000\n"),
            "{text}"
        );
        assert!(
            text.contains("\ncontimg_config_free_space_factor 2\n"),
            "{text}"
        );
    }
}
