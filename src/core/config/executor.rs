//! Where conversions run: on the worker's own host, or as Slurm batch jobs.
//!
//! The `[slurm]` table is read only when `executor = "slurm"`; the Slurm clients
//! find the cluster themselves (`SLURM_CONF`, else `/etc/slurm/slurm.conf`).

use super::*;

/// Where each group's conversion runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// A child process of the worker, at most `max_workers` at once.
    #[default]
    Local,
    /// One Slurm batch job per group attempt, at most `slurm.max_jobs` in flight.
    Slurm,
}

impl ExecutorKind {
    /// The name stored with each attempt (`group_attempts.executor`) and written
    /// in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::Local => "local",
            ExecutorKind::Slurm => "slurm",
        }
    }
}

/// How conversions are submitted to Slurm. Empty strings leave the choice to the
/// cluster's defaults (the partition's time limit, the default partition, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmConfig {
    pub partition: String,
    pub account: String,
    pub qos: String,
    /// Slurm's time format: `MM`, `HH:MM:SS`, `D-HH`, `D-HH:MM:SS`, …
    pub time_limit: String,
    pub cpus_per_task: u32,
    /// Slurm's memory format, e.g. `4G` or `2000M`.
    pub mem: String,
    /// Groups in flight (queued or running in Slurm) at once.
    pub max_jobs: u32,
    /// Further `sbatch` options, one argument each, e.g. `["--constraint=ib"]`.
    pub extra_args: Vec<String>,
    /// On SIGTERM, cancel submitted jobs instead of leaving them to be adopted at
    /// the next start.
    pub cancel_on_stop: bool,
    /// Seconds between two looks at the jobs in flight (one `squeue` call each).
    pub poll_interval_s: f64,
    /// Where each attempt's log and exit-status file go; must be on storage the
    /// compute nodes share with the worker. Empty: `<scratch_dir>/slurm-jobs`.
    pub log_dir: PathBuf,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        Self {
            partition: String::new(),
            account: String::new(),
            qos: String::new(),
            time_limit: String::new(),
            cpus_per_task: 1,
            mem: String::new(),
            max_jobs: 16,
            extra_args: Vec::new(),
            cancel_on_stop: false,
            poll_interval_s: 5.0,
            log_dir: PathBuf::new(),
        }
    }
}

/// `sbatch` options the executor sets itself: an `extra_args` entry naming one
/// would make the job's name, log or dependency bookkeeping lie.
const RESERVED_SBATCH_OPTIONS: [&str; 8] = [
    "--job-name",
    "--comment",
    "--output",
    "--error",
    "--parsable",
    "--chdir",
    "--wrap",
    "--array",
];

impl SlurmConfig {
    /// The directory of the jobs' logs and exit-status files.
    pub fn log_dir_for(&self, scratch_dir: &Path) -> PathBuf {
        if self.log_dir.as_os_str().is_empty() {
            scratch_dir.join("slurm-jobs")
        } else {
            self.log_dir.clone()
        }
    }

    pub(super) fn check(&self, errors: &mut ValidationErrors) {
        for (field, value) in [
            ("slurm.partition", &self.partition),
            ("slurm.account", &self.account),
            ("slurm.qos", &self.qos),
        ] {
            if check_text(errors, field, value) && value.chars().any(char::is_whitespace) {
                errors.push(
                    field,
                    &format!("must not contain whitespace, got {value:?}"),
                );
            }
        }
        if check_text(errors, "slurm.time_limit", &self.time_limit)
            && !self.time_limit.is_empty()
            && !is_slurm_time(&self.time_limit)
        {
            errors.push(
                "slurm.time_limit",
                &format!(
                    "must be Slurm's time format (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED), got {:?}",
                    self.time_limit
                ),
            );
        }
        if check_text(errors, "slurm.mem", &self.mem)
            && !self.mem.is_empty()
            && !is_slurm_memory(&self.mem)
        {
            errors.push(
                "slurm.mem",
                &format!(
                    "must be a whole number with an optional K, M, G or T suffix, got {:?}",
                    self.mem
                ),
            );
        }
        if !(1..=4096).contains(&self.cpus_per_task) {
            errors.push(
                "slurm.cpus_per_task",
                &format!("must be between 1 and 4096, got {}", self.cpus_per_task),
            );
        }
        if !(1..=10_000).contains(&self.max_jobs) {
            errors.push(
                "slurm.max_jobs",
                &format!("must be between 1 and 10000, got {}", self.max_jobs),
            );
        }
        if !self.poll_interval_s.is_finite() || !(0.1..=3600.0).contains(&self.poll_interval_s) {
            errors.push(
                "slurm.poll_interval_s",
                &format!("must be between 0.1 and 3600, got {}", self.poll_interval_s),
            );
        }
        let log_dir = self.log_dir.to_string_lossy();
        if check_text(errors, "slurm.log_dir", &log_dir)
            && !log_dir.is_empty()
            && !self.log_dir.is_absolute()
        {
            errors.push(
                "slurm.log_dir",
                &format!("must be an absolute path on storage every node sees, got {log_dir:?}"),
            );
        }
        for arg in &self.extra_args {
            if !check_text(errors, "slurm.extra_args", arg) {
                continue;
            }
            if !arg.starts_with('-') {
                errors.push(
                    "slurm.extra_args",
                    &format!("{arg:?} is not an option; write each as --name=value"),
                );
                continue;
            }
            let name = arg.split('=').next().unwrap_or(arg);
            if RESERVED_SBATCH_OPTIONS.contains(&name) {
                errors.push(
                    "slurm.extra_args",
                    &format!("{name} is set by contimg for every job"),
                );
            }
        }
    }
}

fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Slurm's `--time` formats (sbatch(1)).
fn is_slurm_time(text: &str) -> bool {
    if matches!(text.to_ascii_uppercase().as_str(), "UNLIMITED" | "INFINITE") {
        return true;
    }
    let (days, clock) = match text.split_once('-') {
        Some((days, clock)) => (Some(days), clock),
        None => (None, text),
    };
    if days.is_some_and(|days| !all_digits(days)) {
        return false;
    }
    let parts: Vec<&str> = clock.split(':').collect();
    parts.len() <= 3 && parts.iter().all(|part| all_digits(part))
}

/// Slurm's `--mem` format: a count with an optional unit suffix.
fn is_slurm_memory(text: &str) -> bool {
    let digits = text.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    all_digits(digits) && text.len() - digits.len() <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_time_formats_are_sbatchs() {
        for good in [
            "30",
            "30:00",
            "1:00:00",
            "2-0",
            "2-12:00",
            "2-12:00:00",
            "UNLIMITED",
        ] {
            assert!(is_slurm_time(good), "{good}");
        }
        for bad in ["", "1h", "1:2:3:4", "-1", "a-1", "1:", "1 hour"] {
            assert!(!is_slurm_time(bad), "{bad}");
        }
    }

    #[test]
    fn slurm_memory_is_a_count_with_an_optional_unit() {
        for good in ["4000", "4G", "512m", "1T"] {
            assert!(is_slurm_memory(good), "{good}");
        }
        for bad in ["", "G", "4GB", "4.5G", "-1G"] {
            assert!(!is_slurm_memory(bad), "{bad}");
        }
    }

    #[test]
    fn poll_interval_and_log_dir_are_checked_per_field() {
        let config = SlurmConfig {
            poll_interval_s: 0.0,
            log_dir: PathBuf::from("relative/logs"),
            ..SlurmConfig::default()
        };
        let mut errors = ValidationErrors::default();
        config.check(&mut errors);
        let fields: Vec<_> = errors.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["slurm.poll_interval_s", "slurm.log_dir"]);
        assert_eq!(
            SlurmConfig::default().log_dir_for(Path::new("/scratch")),
            PathBuf::from("/scratch/slurm-jobs")
        );
    }

    #[test]
    fn options_contimg_sets_itself_are_refused_in_extra_args() {
        let config = SlurmConfig {
            extra_args: vec![
                "--output=/tmp/x".into(),
                "--constraint=ib".into(),
                "x".into(),
            ],
            ..SlurmConfig::default()
        };
        let mut errors = ValidationErrors::default();
        config.check(&mut errors);
        let messages: Vec<_> = errors.errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(errors.errors.len(), 2, "{messages:?}");
        assert!(messages[0].contains("--output"));
        assert!(messages[1].contains("not an option"));
    }
}
