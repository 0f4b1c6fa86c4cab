//! `GET /metrics` in the Prometheus text exposition format, rendered from the
//! snapshot by hand (a dozen series do not need a registry).

use std::fmt::Write;

use super::events::{DURATION_BUCKETS, QueueSnapshot};
use super::models::StatusResponse;
use contimg_core::queue::GroupState;

/// Every alert rule, so `contimg_alerts_firing` has a 0 series for quiet rules.
pub const ALERT_RULES: [&str; 6] = [
    "service_down",
    "restart_loop",
    "failed_groups",
    "queue_stalled",
    "incomplete_groups",
    "low_disk",
];

/// `firing` = `(rule, id)` of each active alert.
pub fn render(
    status: &StatusResponse,
    queue: &QueueSnapshot,
    firing: &[(String, String)],
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
    if let Ok(stats) = &queue.stats {
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
    }
    let _ = writeln!(
        out,
        "# HELP contimg_queue_up 1 when the queue DB is readable.\n\
         # TYPE contimg_queue_up gauge\ncontimg_queue_up {}",
        u8::from(queue.stats.is_ok())
    );
    let h = &queue.durations;
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
    for rule in ALERT_RULES {
        let n = firing.iter().filter(|(r, _)| r == rule).count();
        let _ = writeln!(out, "contimg_alerts_firing{{rule=\"{rule}\"}} {n}");
    }
    out
}
