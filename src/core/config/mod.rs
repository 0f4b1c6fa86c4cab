//! The streaming service's configuration: the seed's 16 fields with the original
//! pipeline's defaults, plus what a robust worker needs.
//!
//! Stored as TOML at `<state_dir>/streaming.toml`. Every way in (TOML file, the
//! original pipeline's JSON, an API patch, `contimgctl config set`) goes through
//! [`StreamingConfig::apply_patch`], so every problem is reported at once, per field.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod checks;
mod error;
mod executor;
mod store;
#[cfg(test)]
mod tests;

use checks::*;
pub use error::{ConfigError, FieldError, ValidationErrors};
pub use executor::{ExecutorKind, SlurmConfig};
pub use store::{ConfigSource, ConfigStore};

/// File name of the configuration inside the state directory.
pub const CONFIG_FILE_NAME: &str = "streaming.toml";
/// What the original Python pipeline wrote; imported when no TOML exists.
pub const LEGACY_JSON_FILE_NAME: &str = "streaming_config.json";
/// Environment variable naming the state directory.
pub const STATE_DIR_ENV: &str = "CONTIMG_STATE_DIR";

const LOG_LEVELS: [&str; 5] = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

/// Placeholders a converter command's argv may contain.
pub const CONVERTER_PLACEHOLDERS: [&str; 10] = [
    "{group_id}",
    "{start}",
    "{end}",
    "{input_dir}",
    "{output_dir}",
    "{scratch_dir}",
    "{files}",
    "{output}",
    "{max_workers}",
    "{tmpfs_path}",
];

/// How a group is converted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ConverterConfig {
    /// The converter built into `contimg-stream`: merges the group's UVH5
    /// subbands into one UVH5 file.
    Builtin,
    /// Verifies every file is readable and writes a JSON manifest of the group;
    /// a dry run of the pipeline without conversion.
    Manifest,
    /// An external command, e.g. the production CASA orchestrator. `argv` may use
    /// the placeholders in [`CONVERTER_PLACEHOLDERS`]; `{files}` expands to one
    /// argument per input file.
    Command {
        argv: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
    },
}

/// The streaming service configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamingConfig {
    /// Directory the correlator writes subband files into.
    pub input_dir: PathBuf,
    /// Where converted groups are written.
    pub output_dir: PathBuf,
    /// The SQLite queue database.
    pub queue_db: PathBuf,
    /// Calibration registry (kept for compatibility; read by the production converter).
    pub registry_db: PathBuf,
    pub scratch_dir: PathBuf,
    pub expected_subbands: u32,
    /// Minutes per group.
    pub chunk_duration: f64,
    pub log_level: String,
    pub use_subprocess: bool,
    pub monitoring: bool,
    /// Seconds between queue-count log lines (and history samples in the API).
    pub monitor_interval: f64,
    /// Seconds between directory scans when inotify is unavailable or as a safety net.
    pub poll_interval: f64,
    /// Seconds between checks for claimable groups.
    pub worker_poll_interval: f64,
    pub max_workers: u32,
    pub stage_to_tmpfs: bool,
    pub tmpfs_path: PathBuf,

    /// Subband files whose timestamps lie within this many seconds of a group's
    /// first file belong to that group (real subbands are seconds apart).
    pub group_tolerance_s: f64,
    /// A group still collecting after this many seconds fails, naming the missing subbands.
    pub incomplete_timeout_s: f64,
    /// Conversion attempts after the first before a group fails for good.
    pub max_retries: u32,
    /// First retry delay; doubles with each retry up to `retry_backoff_max_s`.
    pub retry_backoff_s: f64,
    pub retry_backoff_max_s: f64,
    /// A conversion running longer than this is killed and counts as a failure.
    pub convert_timeout_s: f64,
    /// On SIGTERM, how long running conversions may take to finish before they
    /// are killed and requeued.
    pub drain_timeout_s: f64,
    /// Check each subband file's UVH5 layout when it is registered.
    pub validate_uvh5: bool,

    /// Inputs of a completed group are removed (or moved to `archive_dir`) this
    /// many hours after the group completed.
    pub retain_input_hours: f64,
    /// Where retention moves inputs instead of deleting them; unset means delete.
    pub archive_dir: Option<PathBuf>,
    /// Inputs of failed and never-completed groups are kept this many days for
    /// inspection.
    pub retain_failed_days: f64,
    /// Outputs older than this many days are removed; unset means never.
    pub retain_output_days: Option<f64>,
    /// Seconds between retention sweeps (the original pipeline's was hourly).
    pub retention_interval_s: f64,
    /// The worker claims no conversion while a directory it writes has less
    /// free space than this.
    pub min_free_gb: f64,
    /// ... nor while it has less than the group's input size times this factor.
    pub free_space_factor: f64,

    /// Where conversions run.
    pub executor: ExecutorKind,
    pub converter: ConverterConfig,
    /// Used when `executor = "slurm"`.
    pub slurm: SlurmConfig,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        Self::with_state_dir(Path::new("state"))
    }
}

impl StreamingConfig {
    /// Defaults, with the databases inside `state_dir` (the original kept them in `state/`).
    pub fn with_state_dir(state_dir: &Path) -> Self {
        Self {
            input_dir: PathBuf::from("/data/incoming"),
            output_dir: PathBuf::from("/data/ms"),
            queue_db: state_dir.join("ingest.sqlite3"),
            registry_db: state_dir.join("cal_registry.sqlite3"),
            scratch_dir: PathBuf::from("/scratch/dsa110-contimg"),
            expected_subbands: 16,
            chunk_duration: 5.0,
            log_level: "INFO".to_string(),
            use_subprocess: true,
            monitoring: true,
            monitor_interval: 60.0,
            poll_interval: 5.0,
            worker_poll_interval: 5.0,
            max_workers: 4,
            stage_to_tmpfs: false,
            tmpfs_path: PathBuf::from("/dev/shm"),
            group_tolerance_s: 60.0,
            incomplete_timeout_s: 900.0,
            max_retries: 3,
            retry_backoff_s: 30.0,
            retry_backoff_max_s: 1800.0,
            convert_timeout_s: 3600.0,
            drain_timeout_s: 60.0,
            validate_uvh5: true,
            retain_input_hours: 48.0,
            archive_dir: None,
            retain_failed_days: 14.0,
            retain_output_days: None,
            retention_interval_s: 3600.0,
            min_free_gb: 10.0,
            free_space_factor: 2.0,
            executor: ExecutorKind::Local,
            converter: ConverterConfig::Builtin,
            slurm: SlurmConfig::default(),
        }
    }

    /// `min_free_gb` in bytes. Decimal gigabytes, as disks are sold: the worker's
    /// claim check, the API's gauge and the dashboard all use this one conversion.
    pub fn min_free_bytes(&self) -> u64 {
        (self.min_free_gb.max(0.0) * 1e9).round() as u64
    }

    /// Field names, in declaration order.
    pub fn field_names() -> Vec<String> {
        match serde_json::to_value(Self::default()) {
            Ok(Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// This config as a JSON object (the API's shape).
    pub fn to_json(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }

    /// Applies a partial config on top of `self`. Unknown keys and values of the
    /// wrong type are reported per field, together with every range/path problem
    /// found by [`validate`](Self::validate). On error `self` is unchanged.
    pub fn apply_patch(&self, patch: &Map<String, Value>) -> Result<Self, ValidationErrors> {
        let base = self.to_json();
        let mut errors = ValidationErrors::default();
        let mut merged = base.clone();
        for (key, value) in patch {
            if !base.contains_key(key) {
                errors.push(key, "unknown field");
                continue;
            }
            if key == "converter" && !check_converter_keys(&mut errors, value) {
                continue;
            }
            // A `[slurm]` patch names only the keys it changes; the rest keep
            // their current values.
            let value = match (key.as_str(), value, base.get(key)) {
                ("slurm", Value::Object(changes), Some(Value::Object(current))) => {
                    let mut table = current.clone();
                    for (sub, sub_value) in changes {
                        if current.contains_key(sub) {
                            table.insert(sub.clone(), sub_value.clone());
                        } else {
                            errors.push(&format!("slurm.{sub}"), "unknown field");
                        }
                    }
                    Value::Object(table)
                }
                // An operator clears an optional setting with an empty value.
                ("archive_dir" | "retain_output_days", Value::String(text), _)
                    if text.is_empty() =>
                {
                    Value::Null
                }
                _ => value.clone(),
            };
            // Deserialize with only this key changed, so a type error is attributed
            // to the field that caused it.
            let mut trial = base.clone();
            trial.insert(key.clone(), value.clone());
            match serde_json::from_value::<Self>(Value::Object(trial)) {
                Ok(_) => {
                    merged.insert(key.clone(), value);
                }
                Err(err) => errors.push(key, &describe_type_error(&err.to_string())),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut config: Self = serde_json::from_value(Value::Object(merged)).map_err(|err| {
            let mut errors = ValidationErrors::default();
            errors.push("config", &err.to_string());
            errors
        })?;
        config.log_level = config.log_level.to_ascii_uppercase();
        config.validate()?;
        Ok(config)
    }

    /// Applies `KEY=VALUE` assignments as typed by an operator. A value is read as
    /// a TOML literal (`4`, `true`, `2.5`, `["a", "b"]`) and, failing that, as a string.
    pub fn apply_assignments(&self, assignments: &[String]) -> Result<Self, ValidationErrors> {
        let mut patch = Map::new();
        let mut errors = ValidationErrors::default();
        for assignment in assignments {
            let Some((key, raw)) = assignment.split_once('=') else {
                errors.push(assignment, "expected KEY=VALUE");
                continue;
            };
            let key = key.trim();
            let raw = raw.trim();
            let value = parse_operator_value(raw);
            // Table fields: converter.kind=command, converter.argv=[...], slurm.partition=gpu
            if let Some((table, sub)) = key.split_once('.')
                && let Some(current) = self.to_json().get(table).filter(|v| v.is_object())
            {
                let entry = patch
                    .entry(table.to_string())
                    .or_insert_with(|| current.clone());
                if let Value::Object(obj) = entry {
                    obj.insert(sub.to_string(), value);
                }
                continue;
            }
            patch.insert(key.to_string(), value);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        self.apply_patch(&patch)
    }

    /// Checks every field; returns every problem at once.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let mut range = |field: &str, value: f64, min: f64, max: f64| {
            if !value.is_finite() || value < min || value > max {
                errors.push(
                    field,
                    &format!("must be between {min} and {max}, got {value}"),
                );
            }
        };
        range(
            "expected_subbands",
            self.expected_subbands.into(),
            1.0,
            99.0,
        );
        range("chunk_duration", self.chunk_duration, 0.1, 1440.0);
        range("monitor_interval", self.monitor_interval, 1.0, 86_400.0);
        range("poll_interval", self.poll_interval, 0.05, 3600.0);
        range(
            "worker_poll_interval",
            self.worker_poll_interval,
            0.05,
            3600.0,
        );
        range("max_workers", self.max_workers.into(), 1.0, 64.0);
        range("group_tolerance_s", self.group_tolerance_s, 0.0, 3600.0);
        range(
            "incomplete_timeout_s",
            self.incomplete_timeout_s,
            1.0,
            7.0 * 86_400.0,
        );
        range("max_retries", self.max_retries.into(), 0.0, 100.0);
        range("retry_backoff_s", self.retry_backoff_s, 0.0, 86_400.0);
        range(
            "retry_backoff_max_s",
            self.retry_backoff_max_s,
            0.0,
            7.0 * 86_400.0,
        );
        range(
            "convert_timeout_s",
            self.convert_timeout_s,
            1.0,
            7.0 * 86_400.0,
        );
        range("drain_timeout_s", self.drain_timeout_s, 0.0, 86_400.0);
        range("retain_input_hours", self.retain_input_hours, 0.0, 87_600.0);
        range("retain_failed_days", self.retain_failed_days, 0.0, 36_500.0);
        if let Some(days) = self.retain_output_days {
            range("retain_output_days", days, 0.01, 36_500.0);
        }
        range(
            "retention_interval_s",
            self.retention_interval_s,
            10.0,
            86_400.0,
        );
        range("min_free_gb", self.min_free_gb, 0.0, 1_000_000.0);
        range("free_space_factor", self.free_space_factor, 0.0, 100.0);

        if self.retry_backoff_max_s < self.retry_backoff_s {
            errors.push(
                "retry_backoff_max_s",
                "must not be smaller than retry_backoff_s",
            );
        }
        if self.chunk_duration.is_finite() && self.group_tolerance_s >= self.chunk_duration * 60.0 {
            errors.push(
                "group_tolerance_s",
                &format!(
                    "must be shorter than one group ({} s), or consecutive groups merge",
                    self.chunk_duration * 60.0
                ),
            );
        }
        if !LOG_LEVELS.contains(&self.log_level.to_ascii_uppercase().as_str()) {
            errors.push(
                "log_level",
                &format!(
                    "must be one of {}, got {:?}",
                    LOG_LEVELS.join(", "),
                    self.log_level
                ),
            );
        }

        check_text(&mut errors, "log_level", &self.log_level);
        // A path with a control character is refused before it is looked up, so
        // validation never creates or probes such a name.
        let clean_path = |errors: &mut ValidationErrors, field: &str, path: &Path| {
            check_text(errors, field, &path.to_string_lossy())
        };
        if clean_path(&mut errors, "input_dir", &self.input_dir) {
            check_dir(&mut errors, "input_dir", &self.input_dir, false);
        }
        if clean_path(&mut errors, "output_dir", &self.output_dir) {
            check_dir(&mut errors, "output_dir", &self.output_dir, true);
        }
        if clean_path(&mut errors, "scratch_dir", &self.scratch_dir) {
            check_dir(&mut errors, "scratch_dir", &self.scratch_dir, true);
        }
        if clean_path(&mut errors, "queue_db", &self.queue_db) {
            check_database_file(&mut errors, "queue_db", &self.queue_db);
            check_lock_file(&mut errors, "queue_db", &self.queue_db);
        }
        if clean_path(&mut errors, "registry_db", &self.registry_db) {
            check_database_file(&mut errors, "registry_db", &self.registry_db);
        }
        if clean_path(&mut errors, "tmpfs_path", &self.tmpfs_path) {
            if self.stage_to_tmpfs {
                check_dir(&mut errors, "tmpfs_path", &self.tmpfs_path, true);
            } else if self.tmpfs_path.as_os_str().is_empty() {
                errors.push("tmpfs_path", "must not be empty");
            }
        }

        if let Some(archive_dir) = &self.archive_dir
            && clean_path(&mut errors, "archive_dir", archive_dir)
        {
            check_dir(&mut errors, "archive_dir", archive_dir, true);
        }
        self.slurm.check(&mut errors);

        if let ConverterConfig::Command { argv, env } = &self.converter {
            if argv.is_empty() || argv[0].trim().is_empty() {
                errors.push("converter.argv", "must name a program to run");
            }
            for arg in argv {
                check_text(&mut errors, "converter.argv", arg);
                for token in placeholders_in(arg) {
                    if !CONVERTER_PLACEHOLDERS.contains(&token.as_str()) {
                        errors.push(
                            "converter.argv",
                            &format!(
                                "unknown placeholder {token}; known: {}",
                                CONVERTER_PLACEHOLDERS.join(" ")
                            ),
                        );
                    }
                }
            }
            for (key, value) in env {
                if key.is_empty() || key.contains('=') {
                    errors.push("converter.env", &format!("invalid variable name {key:?}"));
                }
                check_text(&mut errors, "converter.env", key);
                check_text(&mut errors, "converter.env", value);
            }
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Renders this config as the TOML stored on disk.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        let body =
            toml::to_string_pretty(self).map_err(|err| ConfigError::Serialize(err.to_string()))?;
        Ok(format!(
            "# contimg streaming service configuration.\n\
             # Written by contimg; edit with `contimgctl config edit` or `config set KEY=VALUE`.\n\
             # Relative paths are relative to this file's directory.\n\n{body}"
        ))
    }

    /// A stable fingerprint of the configuration, used as the API's ETag.
    pub fn etag(&self) -> String {
        let canonical = serde_json::to_string(self).unwrap_or_default();
        format!("\"{:016x}\"", crate::hash::fnv1a64(canonical.as_bytes()))
    }

    /// The fields whose values differ, as `(field, old, new)` JSON renderings.
    pub fn diff(&self, other: &Self) -> Vec<(String, String, String)> {
        let old = self.to_json();
        let new = other.to_json();
        old.iter()
            .filter_map(|(key, old_value)| {
                let new_value = new.get(key)?;
                (old_value != new_value)
                    .then(|| (key.clone(), old_value.to_string(), new_value.to_string()))
            })
            .collect()
    }

    /// Resolves relative paths against `base` (the directory of the config file).
    fn resolve_paths(&mut self, base: &Path) {
        for path in [
            &mut self.input_dir,
            &mut self.output_dir,
            &mut self.queue_db,
            &mut self.registry_db,
            &mut self.scratch_dir,
            &mut self.tmpfs_path,
        ]
        .into_iter()
        .chain(self.archive_dir.as_mut())
        {
            if path.is_relative() && !path.as_os_str().is_empty() {
                *path = base.join(&*path);
            }
        }
    }
}
