//! Staging a group's inputs on tmpfs (when `stage_to_tmpfs` is set) around its
//! conversion, and where those copies live.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

use crate::convert::{ConvertError, ConvertJob, ConvertOutput, run_conversion};
use contimg_core::config::StreamingConfig;

/// Where staged copies of a group's inputs live. Keyed by the queue DB so several
/// instances sharing one tmpfs never clean up each other's files.
/// (Defined in core: retention removes staging leftovers too.)
pub(crate) fn stage_root(config: &StreamingConfig) -> PathBuf {
    contimg_core::retention::stage_root(config)
}

/// Stages inputs (when asked), converts, and always removes the staged copies.
pub(crate) async fn convert_group(
    mut job: ConvertJob,
    stage: Option<PathBuf>,
    converter: &contimg_core::config::ConverterConfig,
    use_subprocess: bool,
    timeout: Duration,
    cancel: watch::Receiver<bool>,
) -> Result<ConvertOutput, ConvertError> {
    if let Some(stage_dir) = &stage
        && let Err(err) = stage_inputs(&mut job, stage_dir).await
    {
        let _ = tokio::fs::remove_dir_all(stage_dir).await;
        return Err(ConvertError::Failed(format!(
            "staging to {} failed: {err}",
            stage_dir.display()
        )));
    }
    let result = run_conversion(&job, converter, use_subprocess, timeout, cancel).await;
    if let Some(stage_dir) = &stage
        && let Err(err) = tokio::fs::remove_dir_all(stage_dir).await
    {
        tracing::warn!(group_id = %job.group_id, "cannot remove staging dir {}: {err}", stage_dir.display());
    }
    result
}

async fn stage_inputs(job: &mut ConvertJob, stage_dir: &Path) -> std::io::Result<()> {
    tokio::fs::create_dir_all(stage_dir).await?;
    for (_, path) in job.files.iter_mut() {
        let Some(name) = path.file_name() else {
            continue;
        };
        let staged = stage_dir.join(name);
        tokio::fs::copy(&*path, &staged).await?;
        *path = staged;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Start-up recovery removes a crashed run's staging copies by this name, so
    /// it must come out the same in every release (FNV-1a of the queue DB path,
    /// the value the worker's own copy of the hash gave before it was shared).
    #[test]
    fn stage_root_name_is_stable() {
        let config = StreamingConfig {
            queue_db: PathBuf::from("/var/lib/contimg/queue.db"),
            tmpfs_path: PathBuf::from("/dev/shm"),
            ..StreamingConfig::default()
        };
        assert_eq!(
            stage_root(&config),
            Path::new("/dev/shm/contimg-stage-e272c64eb4c4db01")
        );
    }
}
