//! Resource metrics for the worker: cgroup files (v2, v1 and hybrid hosts) for
//! systemd units and containers, /proc for a directly spawned process, and CPU
//! percent from two samples of cumulative CPU time.

pub mod cgroup;
pub mod procfs;

use std::sync::Mutex;
use std::time::Instant;

/// Turns cumulative CPU time into a percentage of one core.
///
/// A long-lived owner (the API daemon) gets Δusage/Δwall between two calls. The
/// first call of a short-lived one (`contimgctl status`) has no previous sample, so
/// it reports the average over the process lifetime instead of sleeping to take a
/// second sample — `status` must stay as fast as `systemctl status`.
#[derive(Debug, Default)]
pub struct CpuSampler {
    last: Mutex<Option<CpuSample>>,
}

#[derive(Debug, Clone)]
struct CpuSample {
    /// Identifies the run (cgroup path + start time, or PID + start time): a sample
    /// from an earlier run must not be subtracted from this one.
    key: String,
    at: Instant,
    usage_seconds: f64,
}

/// Samples closer together than this are too noisy; reuse the lifetime average.
const MIN_SAMPLE_INTERVAL_SECONDS: f64 = 0.05;

impl CpuSampler {
    pub fn new() -> Self {
        Self::default()
    }

    /// `usage_seconds` is the cumulative CPU time of the run identified by `key`;
    /// `lifetime_seconds` how long that run has existed (for the first-call average).
    pub fn percent(
        &self,
        key: &str,
        usage_seconds: f64,
        lifetime_seconds: Option<f64>,
    ) -> Option<f64> {
        let now = Instant::now();
        let mut guard = match self.last.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let previous = guard.clone();
        let mut result = lifetime_seconds
            .filter(|seconds| *seconds > 0.0)
            .map(|seconds| usage_seconds / seconds * 100.0);
        if let Some(previous) = previous.as_ref().filter(|p| p.key == key) {
            let wall = now.duration_since(previous.at).as_secs_f64();
            if wall >= MIN_SAMPLE_INTERVAL_SECONDS && usage_seconds >= previous.usage_seconds {
                result = Some((usage_seconds - previous.usage_seconds) / wall * 100.0);
            } else {
                // Keep the older sample so the next call spans a useful interval.
                return result;
            }
        }
        *guard = Some(CpuSample {
            key: key.to_string(),
            at: now,
            usage_seconds,
        });
        result.map(|percent| (percent * 100.0).round() / 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_is_the_lifetime_average() {
        let sampler = CpuSampler::new();
        assert_eq!(sampler.percent("a", 5.0, Some(10.0)), Some(50.0));
        assert_eq!(sampler.percent("b", 5.0, None), None);
    }

    #[test]
    fn later_samples_use_the_delta() {
        let sampler = CpuSampler::new();
        sampler.percent("a", 1.0, Some(100.0));
        std::thread::sleep(std::time::Duration::from_millis(100));
        let percent = sampler.percent("a", 1.05, Some(100.1)).unwrap();
        assert!(percent > 20.0 && percent < 60.0, "{percent}");
    }
}
