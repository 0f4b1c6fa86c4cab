//! SIGHUP: re-read the configuration, and what a changed configuration needs
//! redone (directories, the input directory's watcher).

use sd_notify::NotifyState;

use crate::ingest::watch::watch_directory;
use crate::{Worker, WorkerError};
use contimg_core::config::StreamingConfig;

pub(crate) fn prepare_directories(config: &StreamingConfig) -> Result<(), WorkerError> {
    let mut dirs = vec![&config.input_dir, &config.output_dir, &config.scratch_dir];
    if config.stage_to_tmpfs {
        dirs.push(&config.tmpfs_path);
    }
    for dir in dirs {
        std::fs::create_dir_all(dir).map_err(|source| WorkerError::CreateDir {
            path: dir.clone(),
            source,
        })?;
    }
    Ok(())
}

impl Worker {
    pub(crate) fn arm_watcher(&mut self) {
        self.watcher = match watch_directory(&self.config.input_dir, self.file_events.clone()) {
            Ok(watcher) => Some(watcher),
            Err(err) => {
                tracing::warn!(
                    "{err}; falling back to polling every {} s",
                    self.config.poll_interval
                );
                None
            }
        };
    }

    /// SIGHUP: re-read the configuration. Settings that need a new queue DB keep
    /// their old value until a restart.
    pub(crate) async fn reload(&mut self) {
        let mut reloading = vec![NotifyState::Reloading];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            reloading.push(now);
        }
        let _ = sd_notify::notify(&reloading);
        match self.args.load_config() {
            Ok((mut config, _)) => {
                if config.queue_db != self.config.queue_db {
                    tracing::warn!("queue_db changed; it takes effect at the next restart");
                    config.queue_db = self.config.queue_db.clone();
                }
                let input_changed = config.input_dir != self.config.input_dir;
                for change in self.config.diff(&config) {
                    tracing::info!("config {}: {} -> {}", change.0, change.1, change.2);
                }
                self.log.set_level(&config.log_level);
                self.config = config;
                if let Err(err) = prepare_directories(&self.config) {
                    tracing::error!("{err}");
                }
                self.reconfigure_slurm();
                if input_changed {
                    self.seen.clear();
                    self.refused.clear();
                    self.arm_watcher();
                }
                tracing::info!("configuration reloaded");
            }
            Err(err) => tracing::error!("reload failed, keeping the running configuration: {err}"),
        }
        let _ = sd_notify::notify(&[NotifyState::Ready]);
    }
}
