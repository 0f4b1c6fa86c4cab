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

/// Why a builtin converter failed; its text becomes the group's error.
#[derive(Debug, thiserror::Error)]
pub enum ConverterError {
    /// An input subband cannot be read to its end (the manifest converter).
    #[error("sb{subband_idx:02} {}: {source}", path.display())]
    ReadInput {
        subband_idx: u32,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The subbands do not merge (the UVH5 merge converter).
    #[error(transparent)]
    Merge(#[from] contimg_uvh5::Uvh5Error),
    #[error("cannot encode the manifest: {0}")]
    EncodeManifest(#[source] serde_json::Error),
    #[error("cannot write {}: {source}", path.display())]
    WriteOutput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Only the builtin converters run in-process; a command always runs as one.
    #[error("a command converter cannot run in-process")]
    CommandInProcess,
}
