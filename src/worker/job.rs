//! What a converter is given and what it returns: shared by the dispatcher
//! ([`crate::convert`]), the builtin converters ([`crate::builtin`]) and the
//! `convert-group` child. A leaf module, so neither of the first two needs the other's types.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use contimg_core::queue::Timings;

/// Everything a converter needs to know about one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvertJob {
    pub group_id: String,
    /// Unix seconds of the group's first file.
    pub group_ts: f64,
    pub chunk_minutes: f64,
    /// (subband index, path) by subband index; staged copies when staging is on.
    pub files: Vec<(u32, PathBuf)>,
    pub input_dir: PathBuf,
    pub output_dir: PathBuf,
    pub scratch_dir: PathBuf,
    pub tmpfs_path: PathBuf,
    pub max_workers: u32,
    pub stage_to_tmpfs: bool,
}

/// A successful conversion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConvertOutput {
    pub timings: Timings,
    pub output_path: Option<PathBuf>,
}
