//! Command-line options of `contimg-stream`: a config file or state directory,
//! plus the original worker's flags as overrides, so a unit written for the
//! Python worker still works.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};

use contimg_core::config::{
    ConfigError, ConfigSource, ConfigStore, STATE_DIR_ENV, StreamingConfig,
};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "contimg-stream",
    version,
    about = "The DSA-110 continuum-imaging streaming worker: watch, group, queue, convert, recover.",
    after_help = "Exit codes: 0 clean shutdown, 1 runtime failure, 2 invalid configuration or usage.\n\
                  Signals: SIGTERM/SIGINT drain and stop, SIGHUP reloads the configuration."
)]
pub struct StreamArgs {
    /// Configuration file (default: <state-dir>/streaming.toml).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// State directory holding streaming.toml, the queue DB and requests.
    #[arg(long, value_name = "DIR", env = STATE_DIR_ENV)]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: ConfigOverrides,
    #[command(subcommand)]
    pub command: Option<StreamCommand>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum StreamCommand {
    /// Validate the configuration (with overrides) and exit.
    CheckConfig,
    /// Internal: convert one group read as JSON from stdin (used in subprocess mode).
    #[command(hide = true)]
    ConvertGroup {
        #[arg(long, default_value = "builtin")]
        converter: String,
    },
    /// Internal: a UVH5 validator of the worker's pool (one hex-encoded path per
    /// stdin line, one answer per stdout line; see `worker::validator`).
    #[command(hide = true)]
    ValidateServer,
    /// Write simulated UVH5 subband groups into an input directory (what
    /// `contimgctl simulate` runs: the simulator writes HDF5, and only this binary
    /// links libhdf5).
    Simulate {
        #[command(flatten)]
        args: contimg_uvh5::simulate::SimulateArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The original worker's flags. Each overrides the config file for this run only.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigOverrides {
    #[arg(long, value_name = "DIR")]
    pub input_dir: Option<PathBuf>,
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    #[arg(long, value_name = "PATH")]
    pub queue_db: Option<PathBuf>,
    #[arg(long, value_name = "PATH")]
    pub registry_db: Option<PathBuf>,
    #[arg(long, value_name = "DIR")]
    pub scratch_dir: Option<PathBuf>,
    #[arg(long, value_name = "N")]
    pub expected_subbands: Option<u32>,
    #[arg(long, value_name = "MINUTES")]
    pub chunk_duration: Option<f64>,
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub use_subprocess: Option<bool>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub monitoring: Option<bool>,
    #[arg(long, value_name = "SECONDS")]
    pub monitor_interval: Option<f64>,
    #[arg(long, value_name = "SECONDS")]
    pub poll_interval: Option<f64>,
    #[arg(long, value_name = "SECONDS")]
    pub worker_poll_interval: Option<f64>,
    #[arg(long, value_name = "N")]
    pub max_workers: Option<u32>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub stage_to_tmpfs: Option<bool>,
    #[arg(long, value_name = "DIR")]
    pub tmpfs_path: Option<PathBuf>,
    #[arg(long, value_name = "GB")]
    pub min_free_gb: Option<f64>,
}

impl ConfigOverrides {
    fn to_patch(&self) -> Map<String, Value> {
        let mut patch = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                patch.insert(key.to_string(), value);
            }
        };
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| Value::String(p.to_string_lossy().into_owned()))
        };
        put("input_dir", path(&self.input_dir));
        put("output_dir", path(&self.output_dir));
        put("queue_db", path(&self.queue_db));
        put("registry_db", path(&self.registry_db));
        put("scratch_dir", path(&self.scratch_dir));
        put("tmpfs_path", path(&self.tmpfs_path));
        put("expected_subbands", self.expected_subbands.map(Value::from));
        put("chunk_duration", self.chunk_duration.map(Value::from));
        put("log_level", self.log_level.clone().map(Value::from));
        put("use_subprocess", self.use_subprocess.map(Value::from));
        put("monitoring", self.monitoring.map(Value::from));
        put("monitor_interval", self.monitor_interval.map(Value::from));
        put("poll_interval", self.poll_interval.map(Value::from));
        put(
            "worker_poll_interval",
            self.worker_poll_interval.map(Value::from),
        );
        put("max_workers", self.max_workers.map(Value::from));
        put("stage_to_tmpfs", self.stage_to_tmpfs.map(Value::from));
        put("min_free_gb", self.min_free_gb.map(Value::from));
        patch
    }
}

impl StreamArgs {
    /// The state directory: `--state-dir`, else the config file's directory, else
    /// `CONTIMG_STATE_DIR` / `./state`.
    pub fn state_dir(&self) -> PathBuf {
        match (&self.state_dir, &self.config) {
            (Some(dir), _) => dir.clone(),
            (None, Some(config)) => config
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
            (None, None) => ConfigStore::state_dir_from(None),
        }
    }

    /// Loads the configuration (importing the original JSON on first start) and
    /// applies the command-line overrides.
    pub fn load_config(&self) -> Result<(StreamingConfig, ConfigSource), ConfigError> {
        let (config, source, path) = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let base = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."));
                (
                    ConfigStore::new(base).parse_toml(path, &text)?,
                    ConfigSource::Toml,
                    path.clone(),
                )
            }
            None => {
                let store = ConfigStore::new(self.state_dir());
                let (config, source) = store.load_or_init()?;
                (config, source, store.path())
            }
        };
        let patch = self.overrides.to_patch();
        if patch.is_empty() {
            return Ok((config, source));
        }
        let config = config
            .apply_patch(&patch)
            .map_err(|errors| ConfigError::Invalid {
                path: path.with_file_name("(command line)"),
                errors,
            })?;
        Ok((config, source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streaming.toml keys the deploy scripts map from their env file
    /// (ops/lib/deploy-common.sh): each goes to `contimg-stream check-config` as `--KEY=VALUE`.
    fn deploy_config_keys() -> Vec<String> {
        let script = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../ops/lib/deploy-common.sh"
        ))
        .expect("ops/lib/deploy-common.sh is readable");
        let start = script
            .find("declare -A config_key=(")
            .expect("deploy-common.sh declares config_key");
        let block = &script[start..];
        let block = &block[..block.find(')').expect("config_key block closes")];
        block
            .split_whitespace()
            .filter_map(|word| word.split_once("]=").map(|(_, key)| key.to_string()))
            .collect()
    }

    #[test]
    fn every_key_the_deploy_scripts_check_is_a_flag_of_contimg_stream() {
        let keys = deploy_config_keys();
        assert!(keys.len() >= 10, "parsed too few keys: {keys:?}");
        for key in keys {
            let flag = format!("--{}=1", key.replace('_', "-"));
            let parsed =
                StreamArgs::try_parse_from(["contimg-stream", flag.as_str(), "check-config"]);
            let args = parsed.unwrap_or_else(|e| panic!("the deploy scripts pass {flag}: {e}"));
            assert!(
                args.overrides.to_patch().contains_key(&key),
                "{flag} parses but does not override {key}"
            );
        }
    }
}
