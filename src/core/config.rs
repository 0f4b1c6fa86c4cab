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
    pub converter: ConverterConfig,
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
            converter: ConverterConfig::Builtin,
        }
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
            // Deserialize with only this key changed, so a type error is attributed
            // to the field that caused it.
            let mut trial = base.clone();
            trial.insert(key.clone(), value.clone());
            match serde_json::from_value::<Self>(Value::Object(trial)) {
                Ok(_) => {
                    merged.insert(key.clone(), value.clone());
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
            // Nested converter fields: converter.kind=command, converter.argv=[...]
            if let Some(sub) = key.strip_prefix("converter.") {
                let entry = patch.entry("converter".to_string()).or_insert_with(|| {
                    serde_json::to_value(&self.converter).unwrap_or(Value::Null)
                });
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
        ] {
            if path.is_relative() && !path.as_os_str().is_empty() {
                *path = base.join(&*path);
            }
        }
    }
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}", self.render())]
pub struct ValidationErrors {
    pub errors: Vec<FieldError>,
}

impl ValidationErrors {
    pub fn push(&mut self, field: &str, message: &str) {
        self.errors.push(FieldError {
            field: field.to_string(),
            message: message.to_string(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    fn render(&self) -> String {
        let lines: Vec<String> = self
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        format!("invalid configuration:\n  {}", lines.join("\n  "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid {format}: {message}")]
    Parse {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    #[error("{path}: {errors}")]
    Invalid {
        path: PathBuf,
        errors: ValidationErrors,
    },
    #[error("cannot serialize the configuration: {0}")]
    Serialize(String),
}

impl ConfigError {
    /// The per-field problems, when that is what went wrong.
    pub fn validation_errors(&self) -> Option<&ValidationErrors> {
        match self {
            ConfigError::Invalid { errors, .. } => Some(errors),
            _ => None,
        }
    }
}

/// Where a loaded configuration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigSource {
    Toml,
    ImportedJson,
    Defaults,
}

/// The configuration file of one state directory.
#[derive(Debug, Clone)]
pub struct ConfigStore {
    state_dir: PathBuf,
}

impl ConfigStore {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
        }
    }

    /// The state directory from `--state-dir`, else `CONTIMG_STATE_DIR`, else `./state`.
    pub fn state_dir_from(flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf)
            .or_else(|| std::env::var_os(STATE_DIR_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("state"))
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn path(&self) -> PathBuf {
        self.state_dir.join(CONFIG_FILE_NAME)
    }

    pub fn legacy_json_path(&self) -> PathBuf {
        self.state_dir.join(LEGACY_JSON_FILE_NAME)
    }

    /// Loads `streaming.toml`; without it, the original pipeline's JSON; without
    /// that, the defaults. Never writes.
    pub fn load(&self) -> Result<(StreamingConfig, ConfigSource), ConfigError> {
        let toml_path = self.path();
        match fs::read_to_string(&toml_path) {
            Ok(text) => return Ok((self.parse_toml(&toml_path, &text)?, ConfigSource::Toml)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ConfigError::Read {
                    path: toml_path,
                    source,
                });
            }
        }
        let json_path = self.legacy_json_path();
        match fs::read_to_string(&json_path) {
            Ok(text) => Ok((
                self.import_legacy_json(&json_path, &text)?,
                ConfigSource::ImportedJson,
            )),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Ok((self.defaults(), ConfigSource::Defaults))
            }
            Err(source) => Err(ConfigError::Read {
                path: json_path,
                source,
            }),
        }
    }

    /// Like [`load`](Self::load), and persists an imported or default config as TOML
    /// so the next start reads the same thing.
    pub fn load_or_init(&self) -> Result<(StreamingConfig, ConfigSource), ConfigError> {
        let (config, source) = self.load()?;
        if source == ConfigSource::ImportedJson {
            self.save(&config)?;
            tracing::info!(path = %self.path().display(), "imported the original pipeline's streaming_config.json");
        }
        Ok((config, source))
    }

    pub fn defaults(&self) -> StreamingConfig {
        let mut config = StreamingConfig::with_state_dir(Path::new("."));
        config.resolve_paths(&self.state_dir);
        config
    }

    /// Parses TOML text as a config for this store (relative paths against the state dir).
    pub fn parse_toml(&self, path: &Path, text: &str) -> Result<StreamingConfig, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: path.to_path_buf(),
            format: "TOML",
            message: err.to_string(),
        })?;
        let patch = match serde_json::to_value(table) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        self.config_from_patch(path, &patch)
    }

    fn import_legacy_json(&self, path: &Path, text: &str) -> Result<StreamingConfig, ConfigError> {
        let value: Value = serde_json::from_str(text).map_err(|err| ConfigError::Parse {
            path: path.to_path_buf(),
            format: "JSON",
            message: err.to_string(),
        })?;
        let Value::Object(mut patch) = value else {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                format: "JSON",
                message: "expected an object".to_string(),
            });
        };
        // The original stored keys we don't model; keep going without them.
        let known = StreamingConfig::field_names();
        patch.retain(|key, _| {
            let keep = known.contains(key);
            if !keep {
                tracing::warn!(
                    key,
                    "ignoring unknown key in the original streaming_config.json"
                );
            }
            keep
        });
        // The original's relative paths were relative to the pipeline checkout, the
        // parent of its state directory.
        let base = self
            .state_dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut config = self.config_from_patch(path, &patch)?;
        for (key, value) in &patch {
            if let Some(raw) = value.as_str() {
                let raw_path = Path::new(raw);
                if raw_path.is_relative() {
                    let resolved = base.join(raw_path);
                    let target = match key.as_str() {
                        "input_dir" => &mut config.input_dir,
                        "output_dir" => &mut config.output_dir,
                        "queue_db" => &mut config.queue_db,
                        "registry_db" => &mut config.registry_db,
                        "scratch_dir" => &mut config.scratch_dir,
                        "tmpfs_path" => &mut config.tmpfs_path,
                        _ => continue,
                    };
                    *target = resolved;
                }
            }
        }
        Ok(config)
    }

    fn config_from_patch(
        &self,
        path: &Path,
        patch: &Map<String, Value>,
    ) -> Result<StreamingConfig, ConfigError> {
        // Resolve relative paths before validation so directory checks look in the right place.
        let mut resolved = patch.clone();
        for key in [
            "input_dir",
            "output_dir",
            "queue_db",
            "registry_db",
            "scratch_dir",
            "tmpfs_path",
        ] {
            if let Some(Value::String(raw)) = resolved.get(key) {
                let raw_path = Path::new(raw);
                if raw_path.is_relative() && !raw.is_empty() {
                    let joined = self.state_dir.join(raw_path).to_string_lossy().into_owned();
                    resolved.insert(key.to_string(), Value::String(joined));
                }
            }
        }
        self.defaults()
            .apply_patch(&resolved)
            .map_err(|errors| ConfigError::Invalid {
                path: path.to_path_buf(),
                errors,
            })
    }

    /// Validates and writes the config atomically: temp file, fsync, rename, fsync
    /// of the directory. A crash leaves either the old or the new file, never half.
    pub fn save(&self, config: &StreamingConfig) -> Result<(), ConfigError> {
        config.validate().map_err(|errors| ConfigError::Invalid {
            path: self.path(),
            errors,
        })?;
        let text = config.to_toml()?;
        let path = self.path();
        crate::fsutil::atomic_write(&path, text.as_bytes())
            .map_err(|source| ConfigError::Write { path, source })
    }
}

fn parse_operator_value(raw: &str) -> Value {
    let wrapped = format!("v = {raw}");
    if let Ok(table) = toml::from_str::<toml::Table>(&wrapped)
        && let Some(value) = table.get("v")
        && let Ok(json) = serde_json::to_value(value)
    {
        return json;
    }
    Value::String(raw.to_string())
}

fn describe_type_error(message: &str) -> String {
    // serde_json appends " at line 0 column 0" to errors from `from_value`.
    let trimmed = message.split(" at line ").next().unwrap_or(message);
    trimmed.replace("invalid type: ", "wrong type: ")
}

fn placeholders_in(arg: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = arg;
    while let Some(start) = rest.find('{') {
        let after = &rest[start..];
        match after.find('}') {
            Some(end) => {
                found.push(after[..=end].to_string());
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    found
}

fn check_dir(errors: &mut ValidationErrors, field: &str, dir: &Path, needs_write: bool) {
    if dir.as_os_str().is_empty() {
        errors.push(field, "must not be empty");
        return;
    }
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => {
            errors.push(field, &format!("{} is not a directory", dir.display()))
        }
        Ok(_) => {
            let mode = if needs_write {
                nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK
            } else {
                nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::X_OK
            };
            if nix::unistd::access(dir, mode).is_err() {
                let what = if needs_write { "writable" } else { "readable" };
                errors.push(field, &format!("{} is not {what}", dir.display()));
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if let Some(problem) = uncreatable_reason(dir) {
                errors.push(
                    field,
                    &format!(
                        "{} does not exist and cannot be created: {problem}",
                        dir.display()
                    ),
                );
            }
        }
        Err(err) => errors.push(field, &format!("{}: {err}", dir.display())),
    }
}

/// The first 16 bytes of every SQLite 3 database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Refuses NUL and every other control character (C0, DEL, C1) in `text`: they
/// end C strings early, split log lines and argv, and hide what a name really is.
/// Returns whether `text` is clean.
fn check_text(errors: &mut ValidationErrors, field: &str, text: &str) -> bool {
    match text.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, c)) => {
            errors.push(
                field,
                &format!(
                    "contains the control character U+{:04X} at byte {at}: {:?}",
                    u32::from(c),
                    text
                ),
            );
            false
        }
        None => true,
    }
}

/// Keys a `converter` table may have, by kind; anything else is reported as
/// `converter.<key>`. Returns whether the table may go on to typed parsing.
fn check_converter_keys(errors: &mut ValidationErrors, value: &Value) -> bool {
    let Value::Object(table) = value else {
        return true;
    };
    let allowed: &[&str] = match table.get("kind").and_then(Value::as_str) {
        Some("command") => &["kind", "argv", "env"],
        Some("builtin" | "manifest") => &["kind"],
        // A missing or unknown kind is reported by the typed parse.
        _ => return true,
    };
    let mut clean = true;
    for key in table.keys().filter(|key| !allowed.contains(&key.as_str())) {
        errors.push(
            &format!("converter.{key}"),
            &format!("unknown field; allowed here: {}", allowed.join(", ")),
        );
        clean = false;
    }
    clean
}

/// A database path must be an SQLite 3 file we can read and write, an empty
/// file, or a name that can be created: anything else would only be found when
/// the worker (or the API) opens it, after the config was saved.
fn check_database_file(errors: &mut ValidationErrors, field: &str, file: &Path) {
    if file.as_os_str().is_empty() {
        errors.push(field, "must not be empty");
        return;
    }
    match fs::metadata(file) {
        Ok(meta) if meta.is_dir() => {
            errors.push(
                field,
                &format!(
                    "{} is a directory, expected a database file",
                    file.display()
                ),
            );
            return;
        }
        Ok(meta) if !meta.is_file() => {
            errors.push(
                field,
                &format!(
                    "{} is not a regular file (a FIFO, socket or device), expected a database file",
                    file.display()
                ),
            );
            return;
        }
        Ok(meta) => {
            if let Some(problem) = sqlite_file_problem(file, meta.len()) {
                errors.push(field, &format!("{}: {problem}", file.display()));
                return;
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            errors.push(field, &format!("{}: {err}", file.display()));
            return;
        }
    }
    let parent = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    check_dir(errors, field, parent, true);
}

/// Why an existing regular file cannot serve as an SQLite database, if it cannot.
fn sqlite_file_problem(file: &Path, len: u64) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let access = nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK;
    if nix::unistd::access(file, access).is_err() {
        return Some("not readable and writable".to_string());
    }
    if len == 0 {
        return None;
    }
    // Non-blocking, in case the name was swapped for a FIFO since the stat.
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(file);
    let mut header = [0u8; 16];
    match opened.and_then(|mut f| f.read_exact(&mut header)) {
        Ok(()) if &header == SQLITE_HEADER => None,
        Ok(()) => Some("not an SQLite 3 database (wrong file header)".to_string()),
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
            Some("not an SQLite 3 database (shorter than its header)".to_string())
        }
        Err(err) => Some(format!("cannot read its header: {err}")),
    }
}

/// The worker locks `<queue_db>.lock`; it must be a regular file or creatable.
fn check_lock_file(errors: &mut ValidationErrors, field: &str, queue_db: &Path) {
    let mut lock = queue_db.as_os_str().to_owned();
    lock.push(".lock");
    let lock = PathBuf::from(lock);
    match fs::metadata(&lock) {
        Ok(meta) if !meta.is_file() => errors.push(
            field,
            &format!(
                "its lock file {} exists and is not a regular file",
                lock.display()
            ),
        ),
        Ok(_) => {
            let access = nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK;
            if nix::unistd::access(&lock, access).is_err() {
                errors.push(
                    field,
                    &format!(
                        "its lock file {} is not readable and writable",
                        lock.display()
                    ),
                );
            }
        }
        Err(_) => {}
    }
}

/// Why a missing directory could not be created by us, judged from its nearest
/// existing ancestor; `None` if it can be.
fn uncreatable_reason(dir: &Path) -> Option<String> {
    let mut ancestor = dir.parent();
    while let Some(candidate) = ancestor {
        let candidate = if candidate.as_os_str().is_empty() {
            Path::new(".")
        } else {
            candidate
        };
        match fs::metadata(candidate) {
            Ok(meta) if !meta.is_dir() => {
                return Some(format!("{} is not a directory", candidate.display()));
            }
            Ok(_) => {
                let writable = nix::unistd::access(
                    candidate,
                    nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
                )
                .is_ok();
                return (!writable).then(|| format!("{} is not writable", candidate.display()));
            }
            Err(_) => ancestor = candidate.parent(),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store_with_dirs() -> (tempfile::TempDir, ConfigStore) {
        let tmp = tempfile::tempdir().unwrap();
        let store = ConfigStore::new(tmp.path().join("state"));
        fs::create_dir_all(store.state_dir()).unwrap();
        (tmp, store)
    }

    fn valid_config(tmp: &Path) -> StreamingConfig {
        let mut config = StreamingConfig::with_state_dir(&tmp.join("state"));
        config.input_dir = tmp.join("in");
        config.output_dir = tmp.join("out");
        config.scratch_dir = tmp.join("scratch");
        config
    }

    #[test]
    fn defaults_match_the_original_pipeline() {
        let config = StreamingConfig::default();
        assert_eq!(config.expected_subbands, 16);
        assert_eq!(config.chunk_duration, 5.0);
        assert_eq!(config.poll_interval, 5.0);
        assert_eq!(config.worker_poll_interval, 5.0);
        assert_eq!(config.max_workers, 4);
        assert_eq!(config.monitor_interval, 60.0);
        assert_eq!(config.tmpfs_path, PathBuf::from("/dev/shm"));
        assert_eq!(config.queue_db, PathBuf::from("state/ingest.sqlite3"));
        assert_eq!(config.log_level, "INFO");
        assert_eq!(config.group_tolerance_s, 60.0);
    }

    #[test]
    fn patch_reports_every_problem_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let base = valid_config(tmp.path());
        let patch = json!({
            "max_workers": 0,
            "log_level": "LOUD",
            "poll_interval": "fast",
            "bogus": 1,
        });
        let errors = base.apply_patch(patch.as_object().unwrap()).unwrap_err();
        let fields: Vec<&str> = errors.errors.iter().map(|e| e.field.as_str()).collect();
        // Type and unknown-key errors are found first; range errors need a typed config.
        assert!(fields.contains(&"poll_interval"), "{errors}");
        assert!(fields.contains(&"bogus"), "{errors}");

        let patch = json!({"max_workers": 0, "log_level": "LOUD", "chunk_duration": -1.0});
        let errors = base.apply_patch(patch.as_object().unwrap()).unwrap_err();
        let fields: Vec<&str> = errors.errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"max_workers"), "{errors}");
        assert!(fields.contains(&"log_level"), "{errors}");
        assert!(fields.contains(&"chunk_duration"), "{errors}");
    }

    #[test]
    fn patch_leaves_the_original_unchanged_and_normalises_log_level() {
        let tmp = tempfile::tempdir().unwrap();
        let base = valid_config(tmp.path());
        let patched = base
            .apply_patch(
                json!({"max_workers": 8, "log_level": "debug"})
                    .as_object()
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(patched.max_workers, 8);
        assert_eq!(patched.log_level, "DEBUG");
        assert_eq!(base.max_workers, 4);
        assert_eq!(base.diff(&patched).len(), 2);
    }

    #[test]
    fn uncreatable_directories_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = valid_config(tmp.path());
        let file = tmp.path().join("a-file");
        fs::write(&file, b"x").unwrap();
        config.output_dir = file.join("sub");
        config.input_dir = file.clone();
        let errors = config.validate().unwrap_err();
        let fields: Vec<&str> = errors.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["input_dir", "output_dir"], "{errors}");
    }

    #[test]
    fn tolerance_must_be_shorter_than_a_group() {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = valid_config(tmp.path());
        config.group_tolerance_s = 400.0;
        let errors = config.validate().unwrap_err();
        assert_eq!(errors.errors[0].field, "group_tolerance_s");
    }

    #[test]
    fn command_converter_placeholders_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = valid_config(tmp.path());
        config.converter = ConverterConfig::Command {
            argv: vec!["convert".into(), "{files}".into(), "{nonsense}".into()],
            env: BTreeMap::new(),
        };
        let errors = config.validate().unwrap_err();
        assert!(errors.errors[0].message.contains("{nonsense}"), "{errors}");
    }

    fn fields_of(errors: &ValidationErrors) -> Vec<&str> {
        errors.errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn control_characters_are_refused_in_every_string_field() {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = valid_config(tmp.path());
        config.input_dir = tmp.path().join("in\u{0}x");
        config.output_dir = tmp.path().join("out\nx");
        config.scratch_dir = tmp.path().join("s\u{9b}x");
        config.tmpfs_path = PathBuf::from("/dev/shm\u{7f}");
        config.log_level = "INFO\r".into();
        config.converter = ConverterConfig::Command {
            argv: vec!["/bin/true".into(), "a\u{1b}b".into()],
            env: BTreeMap::from([("K\tX".to_string(), "v".to_string())]),
        };
        let errors = config.validate().unwrap_err();
        let fields = fields_of(&errors);
        for field in [
            "input_dir",
            "output_dir",
            "scratch_dir",
            "tmpfs_path",
            "log_level",
            "converter.argv",
            "converter.env",
        ] {
            assert!(fields.contains(&field), "{field} not refused: {errors}");
        }
        // Refused before being looked up: nothing was created.
        assert!(!tmp.path().join("out\nx").exists());
    }

    #[test]
    fn databases_must_be_sqlite_files_or_creatable() {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = valid_config(tmp.path());
        fs::create_dir_all(tmp.path().join("state")).unwrap();
        let text = tmp.path().join("notes.txt");
        fs::write(&text, "not a database, but longer than sixteen bytes").unwrap();
        let short = tmp.path().join("short");
        fs::write(&short, "SQLite").unwrap();
        let fifo = tmp.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        for bad in [&text, &short, &fifo] {
            config.queue_db = bad.clone();
            let errors = config.validate().unwrap_err();
            assert_eq!(fields_of(&errors), vec!["queue_db"], "{}", bad.display());
        }
        let mut sqlite = SQLITE_HEADER.to_vec();
        sqlite.resize(4096, 0);
        let real = tmp.path().join("real.sqlite3");
        fs::write(&real, &sqlite).unwrap();
        let empty = tmp.path().join("empty.sqlite3");
        fs::write(&empty, b"").unwrap();
        for good in [&real, &empty, &tmp.path().join("new.sqlite3")] {
            config.queue_db = good.clone();
            config.validate().unwrap();
        }
        config.registry_db = text.clone();
        let errors = config.validate().unwrap_err();
        assert_eq!(fields_of(&errors), vec!["registry_db"]);
    }

    #[test]
    fn unknown_converter_keys_are_reported_with_their_path() {
        let tmp = tempfile::tempdir().unwrap();
        let base = valid_config(tmp.path());
        let patch = json!({"converter": {"kind": "builtin", "argv": ["x"], "bogus": 1}});
        let errors = base.apply_patch(patch.as_object().unwrap()).unwrap_err();
        assert_eq!(
            fields_of(&errors),
            vec!["converter.argv", "converter.bogus"],
            "{errors}"
        );
        let patch = json!({"converter": {"kind": "command", "argv": ["/bin/true"], "envv": {}}});
        let errors = base.apply_patch(patch.as_object().unwrap()).unwrap_err();
        assert_eq!(fields_of(&errors), vec!["converter.envv"], "{errors}");
        let patch = json!({"converter": {"kind": "command", "argv": ["/bin/true"], "env": {}}});
        base.apply_patch(patch.as_object().unwrap()).unwrap();
    }

    #[test]
    fn assignments_parse_typed_values() {
        let tmp = tempfile::tempdir().unwrap();
        let base = valid_config(tmp.path());
        let updated = base
            .apply_assignments(&[
                "max_workers=2".into(),
                "stage_to_tmpfs=true".into(),
                "log_level=WARNING".into(),
                "converter.kind=command".into(),
                "converter.argv=[\"/bin/true\", \"{files}\"]".into(),
            ])
            .unwrap();
        assert_eq!(updated.max_workers, 2);
        assert!(updated.stage_to_tmpfs);
        assert_eq!(updated.log_level, "WARNING");
        assert!(matches!(updated.converter, ConverterConfig::Command { .. }));
        assert!(base.apply_assignments(&["max_workers".into()]).is_err());
    }

    #[test]
    fn save_and_load_round_trip() {
        let (tmp, store) = store_with_dirs();
        let mut config = valid_config(tmp.path());
        config.max_workers = 3;
        store.save(&config).unwrap();
        let (loaded, source) = store.load().unwrap();
        assert_eq!(source, ConfigSource::Toml);
        assert_eq!(loaded, config);
        assert_eq!(loaded.etag(), config.etag());
        // No temp files left behind.
        let leftovers: Vec<_> = fs::read_dir(store.state_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn invalid_save_changes_nothing_on_disk() {
        let (tmp, store) = store_with_dirs();
        let config = valid_config(tmp.path());
        store.save(&config).unwrap();
        let before = fs::read(store.path()).unwrap();
        let mut bad = config.clone();
        bad.max_workers = 0;
        assert!(store.save(&bad).is_err());
        assert_eq!(fs::read(store.path()).unwrap(), before);
    }

    #[test]
    fn toml_errors_name_the_file_and_fields() {
        let (_tmp, store) = store_with_dirs();
        fs::write(store.path(), "max_workers = \"many\"\nunknown_key = 1\n").unwrap();
        let err = store.load().unwrap_err();
        let errors = err.validation_errors().unwrap();
        assert_eq!(errors.errors.len(), 2, "{err}");
        fs::write(store.path(), "max_workers = [").unwrap();
        assert!(matches!(
            store.load().unwrap_err(),
            ConfigError::Parse { .. }
        ));
    }

    #[test]
    fn relative_paths_are_relative_to_the_state_dir() {
        let (_tmp, store) = store_with_dirs();
        fs::write(store.path(), "queue_db = \"q.sqlite3\"\n").unwrap();
        let (config, _) = store.load().unwrap();
        assert_eq!(config.queue_db, store.state_dir().join("q.sqlite3"));
    }

    #[test]
    fn legacy_json_is_imported_once() {
        let (tmp, store) = store_with_dirs();
        let json = json!({
            "input_dir": tmp.path().join("in"),
            "output_dir": tmp.path().join("out"),
            "queue_db": "state/ingest.sqlite3",
            "registry_db": "state/cal_registry.sqlite3",
            "scratch_dir": tmp.path().join("scratch"),
            "expected_subbands": 16,
            "chunk_duration": 5.0,
            "log_level": "INFO",
            "use_subprocess": true,
            "monitoring": true,
            "monitor_interval": 60,
            "poll_interval": 5,
            "worker_poll_interval": 5,
            "max_workers": 4,
            "stage_to_tmpfs": false,
            "tmpfs_path": "/dev/shm",
            "something_else": "ignored"
        });
        fs::write(store.legacy_json_path(), json.to_string()).unwrap();
        let (config, source) = store.load_or_init().unwrap();
        assert_eq!(source, ConfigSource::ImportedJson);
        // "state/ingest.sqlite3" was relative to the pipeline checkout (the state dir's parent).
        assert_eq!(config.queue_db, tmp.path().join("state/ingest.sqlite3"));
        assert_eq!(config.monitor_interval, 60.0);
        assert!(store.path().exists());
        let (again, source) = store.load().unwrap();
        assert_eq!(source, ConfigSource::Toml);
        assert_eq!(again, config);
    }
}
