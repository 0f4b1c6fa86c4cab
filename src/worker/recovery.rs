//! After a crash or an interrupted conversion: requeue what was in progress and
//! remove what it half-wrote (outputs, `.partial` files, stale staging copies).

use std::path::Path;

use crate::convert::PARTIAL_SUFFIX;
use crate::staging::stage_root;
use crate::{Worker, WorkerError, with_queue};
use contimg_core::queue::{GroupState, unix_now};

impl Worker {
    /// After a crash: requeue interrupted groups, remove what they half-wrote and
    /// any stale staging copies.
    pub(crate) async fn recover(&mut self) -> Result<(), WorkerError> {
        // Jobs a previous run left in Slurm are adopted, not requeued: their
        // groups stay in progress and their partial outputs stay.
        self.start_slurm().await?;
        let recovered = with_queue(&self.queue, |q| q.recover_in_progress(unix_now())).await?;
        for group_id in &recovered {
            tracing::warn!(group_id = %group_id, state = %GroupState::Pending, "recovered a group interrupted by a previous run");
            remove_outputs_of(&self.config.output_dir, group_id);
        }
        let in_slurm = self.slurm_groups();
        remove_partials(&self.config.output_dir, &in_slurm);
        let stage = stage_root(&self.config);
        if stage.exists()
            && let Err(err) = std::fs::remove_dir_all(&stage)
        {
            tracing::warn!("cannot remove stale staging dir {}: {err}", stage.display());
        }
        Ok(())
    }
}

/// Removes everything a conversion of `group_id` may have left in `output_dir`.
pub(crate) fn remove_outputs_of(output_dir: &Path, group_id: &str) {
    let Ok(entries) = std::fs::read_dir(output_dir) else {
        return;
    };
    let visible = format!("{group_id}.");
    let hidden = format!(".{group_id}.");
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&visible) || name.starts_with(&hidden) {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {
                    tracing::info!(group_id = %group_id, "removed unfinished output {}", path.display())
                }
                Err(err) => {
                    tracing::warn!(group_id = %group_id, "cannot remove {}: {err}", path.display())
                }
            }
        }
    }
}

/// Removes half-written outputs (`.*.partial`) left by a crash, except those of
/// the groups in `keep` (converting in Slurm jobs right now).
fn remove_partials(output_dir: &Path, keep: &[String]) {
    let Ok(entries) = std::fs::read_dir(output_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let kept = keep
            .iter()
            .any(|group_id| name.starts_with(&format!(".{group_id}.")));
        if name.starts_with('.') && name.ends_with(PARTIAL_SUFFIX) && !kept {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
