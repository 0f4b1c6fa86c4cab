//! The configuration file of one state directory: load (TOML, or the original
//! pipeline's JSON imported), patch, validate and save atomically.

use super::*;

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
            state_dir: without_dot_components(&state_dir.into()),
        }
    }

    /// The state directory from `--state-dir`, else `CONTIMG_STATE_DIR`, else
    /// `./state`; absolute, so every path shown from it is too. (`contimgctl`
    /// looks further: `contimg_control::state_dir`.)
    pub fn state_dir_from(flag: Option<&Path>) -> PathBuf {
        let dir = flag
            .map(Path::to_path_buf)
            .or_else(|| {
                std::env::var_os(STATE_DIR_ENV)
                    .filter(|value| !value.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from("state"));
        // `absolute` also drops `.` components (lexical: symlinks and `..` stay).
        std::path::absolute(&dir).unwrap_or(dir)
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
        // Relative defaults (not `./ingest.sqlite3`, which would be shown as
        // `<state dir>/./ingest.sqlite3`), made absolute against the state dir.
        let mut config = StreamingConfig::with_state_dir(Path::new(""));
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
                    let resolved = without_dot_components(&base.join(raw_path));
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
                    let joined = without_dot_components(&self.state_dir.join(raw_path))
                        .to_string_lossy()
                        .into_owned();
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

/// `path` without `.` components (`state/./ingest.sqlite3` → `state/ingest.sqlite3`,
/// `./state` → `state`), so a path is shown the one way it is meant. Lexical
/// only: `..` and symlinks stay as they are. `.` alone stays `.`.
fn without_dot_components(path: &Path) -> PathBuf {
    let tidy: PathBuf = path
        .components()
        .filter(|component| *component != std::path::Component::CurDir)
        .collect();
    if tidy.as_os_str().is_empty() && !path.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        tidy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text a user sees (`Path`'s `==` ignores `.` components, so it cannot
    /// tell `state/./x` from `state/x`).
    fn shown(path: impl AsRef<Path>) -> String {
        path.as_ref().display().to_string()
    }

    /// Issue 14: `contimgctl` and the dashboard showed `state/./ingest.sqlite3`.
    #[test]
    fn paths_from_a_state_dir_have_no_dot_components() {
        let store = ConfigStore::new("state");
        let defaults = store.defaults();
        assert_eq!(shown(defaults.queue_db), "state/ingest.sqlite3");
        assert_eq!(shown(defaults.registry_db), "state/cal_registry.sqlite3");

        let parsed = store
            .parse_toml(
                Path::new("state/streaming.toml"),
                "queue_db = \"./queue/../q.sqlite3\"\ninput_dir = \"./in/.\"\n",
            )
            .unwrap();
        assert_eq!(shown(parsed.queue_db), "state/queue/../q.sqlite3");
        assert_eq!(shown(parsed.input_dir), "state/in");

        let dotted = ConfigStore::new("./lab/./state/");
        assert_eq!(shown(dotted.state_dir()), "lab/state");
        assert_eq!(
            shown(dotted.defaults().queue_db),
            "lab/state/ingest.sqlite3"
        );
        assert_eq!(shown(ConfigStore::new(".").state_dir()), ".");
    }

    #[test]
    fn state_dir_from_is_absolute_without_dot_components() {
        let flag = ConfigStore::state_dir_from(Some(Path::new("./x/./state")));
        assert!(flag.is_absolute(), "{}", flag.display());
        assert!(flag.ends_with("x/state"), "{}", flag.display());
        assert!(
            !flag.to_string_lossy().contains("/./"),
            "{}",
            flag.display()
        );
    }
}
