//! UVH5 (HDF5) subband files: validation, group checks, a streaming merge and a
//! correlator simulator.
//!
//! Everything here is plain blocking code on top of the HDF5 C library (through
//! `hdf5-metno`); call it from `spawn_blocking` or a thread. HDF5 calls are
//! serialised process-wide by hdf5-metno's lock, so concurrent callers are safe
//! but do not run HDF5 work in parallel.
//!
//! - [`inspect`] opens one file and checks the UVH5 layout, returning its
//!   [`SubbandMeta`] (what the queue stores per file).
//! - [`check_group`] compares the metadata of a group's subbands before converting.
//! - [`merge`] writes one UVH5 file with all subbands concatenated along the
//!   frequency axis, copying compressed chunks as they are whenever it can.
//! - [`simulate`] writes correlator-like subband files for tests and demos.
//!
//! The HDF5 C calls hdf5-metno does not wrap live in `raw`; each `unsafe`
//! block there says why it is sound, and the build enforces that.

mod group;
mod inspect;
mod merge;
mod raw;
pub mod simulate;

use std::path::{Path, PathBuf};

pub use group::check_group;
pub use inspect::inspect;
pub use merge::{CopyMethod, MergeReport, merge, merge_order};

/// Makes this process's HDF5 library safe for files it does not trust, once:
/// - filter plugins are never loaded (HDF5 would otherwise `dlopen` every
///   `lib*.so` under `$HDF5_PLUGIN_PATH` or its default directory when it
///   meets an unknown filter);
/// - external links cannot be traversed at all (their link class is
///   unregistered), so nothing opened by name can lead into another file.
///
/// [`inspect`], [`merge`] and [`simulate::run`] call it before any HDF5 open;
/// other code that opens untrusted files with HDF5 must call it first too.
pub fn harden_library() -> Result<(), Uvh5Error> {
    static HARDENED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    HARDENED
        .get_or_init(raw::harden)
        .clone()
        .map_err(Uvh5Error::Hardening)
}

/// Time stamps closer than this are "the same" (pyuvdata's own time tolerance is 1 ms).
pub const TIME_TOLERANCE_DAYS: f64 = 1e-3 / 86_400.0;

/// What one subband file contains, as read from its `Header` and `Data` groups.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SubbandMeta {
    pub nbls: u64,
    pub nblts: u64,
    pub nfreqs: u64,
    pub npols: u64,
    pub ntimes: u64,
    pub nspws: u64,
    /// Lowest and highest channel centre frequency.
    pub freq_min_hz: f64,
    pub freq_max_hz: f64,
    /// Width of the first channel as stored (negative when channels descend).
    pub channel_width_hz: f64,
    /// Earliest and latest integration centre (Julian date, UTC).
    pub time_min_jd: f64,
    pub time_max_jd: f64,
    /// Integration time of the first baseline-time.
    pub integration_time_s: f64,
    /// The distinct integration centres, ascending (Ntimes values).
    pub unique_times_jd: Vec<f64>,
    /// AIPS polarization codes (-5 = XX, -6 = YY, …).
    pub polarization_array: Vec<i64>,
    /// True when the first channel is the lowest frequency.
    pub freq_ascending: bool,
    /// Shape of `Data/visdata`: (Nblts, Nfreqs, Npols) or (Nblts, 1, Nfreqs, Npols).
    pub data_shape: Vec<u64>,
    pub telescope_name: Option<String>,
    pub file_size_bytes: u64,
}

impl SubbandMeta {
    /// Centre frequency of the band, handy for sorting subbands.
    pub fn freq_center_hz(&self) -> f64 {
        0.5 * (self.freq_min_hz + self.freq_max_hz)
    }
}

/// Why a file or a group was rejected, or why a merge failed.
///
/// The `Display` text is meant for operators: it names the file (or the
/// subbands) and the reason, and is what the queue records as the rejection
/// reason.
#[derive(Debug, thiserror::Error)]
pub enum Uvh5Error {
    #[error("{}: cannot read: {source}", display_name(path))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not an HDF5 file", display_name(path))]
    NotHdf5 { path: PathBuf },
    #[error("{}: truncated: {detail}", display_name(path))]
    Truncated { path: PathBuf, detail: String },
    #[error("{}: unreadable HDF5: {detail}", display_name(path))]
    Unreadable { path: PathBuf, detail: String },
    #[error("{}: not UVH5: missing {object}", display_name(path))]
    Missing { path: PathBuf, object: String },
    #[error("{}: bad UVH5 layout: {detail}", display_name(path))]
    Layout { path: PathBuf, detail: String },
    /// The file uses an HDF5 feature that can reach outside it (external
    /// storage, external/soft/user-defined links, virtual datasets) or needs a
    /// filter plugin; it is refused before any of its data is read.
    #[error("{}: refused: {detail}", display_name(path))]
    Refused { path: PathBuf, detail: String },
    #[error("cannot make the HDF5 library safe for untrusted files: {0}")]
    Hardening(String),
    #[error("{}", format_group_problems(problems))]
    GroupMismatch { problems: Vec<GroupProblem> },
    #[error("cannot merge: {0}")]
    Unsupported(String),
    #[error("{}: {context}: {source}", display_name(path))]
    Hdf5 {
        path: PathBuf,
        context: String,
        #[source]
        source: hdf5::Error,
    },
    #[error("{}: cannot write: {source}", display_name(path))]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Uvh5Error {
    /// The same error, naming `path`: for work done through another name of
    /// the file (HDF5 writes temporaries through `/proc/self/fd/N`).
    pub(crate) fn about(mut self, path: &Path) -> Self {
        match &mut self {
            Uvh5Error::Io { path: named, .. }
            | Uvh5Error::NotHdf5 { path: named }
            | Uvh5Error::Truncated { path: named, .. }
            | Uvh5Error::Unreadable { path: named, .. }
            | Uvh5Error::Missing { path: named, .. }
            | Uvh5Error::Layout { path: named, .. }
            | Uvh5Error::Refused { path: named, .. }
            | Uvh5Error::Hdf5 { path: named, .. }
            | Uvh5Error::Output { path: named, .. } => *named = path.to_path_buf(),
            Uvh5Error::GroupMismatch { .. }
            | Uvh5Error::Unsupported(_)
            | Uvh5Error::Hardening(_)
            | Uvh5Error::InvalidArgument(_) => {}
        }
        self
    }

    /// Subband indices named by a group check failure (empty for other errors).
    pub fn offending_subbands(&self) -> Vec<u32> {
        match self {
            Uvh5Error::GroupMismatch { problems } => {
                let mut all: Vec<u32> = problems
                    .iter()
                    .flat_map(|p| p.subbands.iter().copied())
                    .collect();
                all.sort_unstable();
                all.dedup();
                all
            }
            _ => Vec::new(),
        }
    }
}

/// One inconsistency between the subbands of a group.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupProblem {
    /// The subbands at fault (for a value mismatch, those that disagree with the majority).
    pub subbands: Vec<u32>,
    pub detail: String,
}

impl std::fmt::Display for GroupProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.subbands.is_empty() {
            return write!(f, "{}", self.detail);
        }
        let names: Vec<String> = self.subbands.iter().map(|s| subband_name(*s)).collect();
        let noun = if names.len() == 1 {
            "subband"
        } else {
            "subbands"
        };
        write!(f, "{noun} {}: {}", names.join(", "), self.detail)
    }
}

/// `sb03` for subband 3, the way file names spell it.
pub fn subband_name(index: u32) -> String {
    format!("sb{index:02}")
}

fn format_group_problems(problems: &[GroupProblem]) -> String {
    let parts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

/// `map_err` adapter: an HDF5 failure while doing `context` on `path`.
pub(crate) fn hdf5_error(
    path: &Path,
    context: &str,
) -> impl FnOnce(hdf5::Error) -> Uvh5Error + use<> {
    let path = path.to_path_buf();
    let context = context.to_string();
    move |source| Uvh5Error::Hdf5 {
        path,
        context,
        source,
    }
}

/// The file name alone keeps messages short; the worker knows the directory.
fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
