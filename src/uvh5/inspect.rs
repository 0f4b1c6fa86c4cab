//! Opening one subband file and checking that it is UVH5.

use std::io::Read;
use std::path::{Path, PathBuf};

use hdf5::types::{FixedAscii, TypeDescriptor};
use hdf5::{Dataset, File, Group};

use super::{SubbandMeta, TIME_TOLERANCE_DAYS, Uvh5Error};

/// The 8-byte signature every HDF5 superblock starts with.
const HDF5_SIGNATURE: [u8; 8] = [0x89, b'H', b'D', b'F', b'\r', b'\n', 0x1a, b'\n'];

/// Header datasets a UVH5 file must have (checked in this order, so the first
/// missing one is the one reported).
const REQUIRED_HEADER: [&str; 13] = [
    "Nbls",
    "Nblts",
    "Nfreqs",
    "Npols",
    "Ntimes",
    "freq_array",
    "channel_width",
    "time_array",
    "integration_time",
    "uvw_array",
    "ant_1_array",
    "ant_2_array",
    "polarization_array",
];

/// The three data-like datasets of `Data`, all with the same shape.
pub(crate) const DATA_DATASETS: [&str; 3] = ["visdata", "flags", "nsamples"];

/// Opens `path` as HDF5 and verifies the UVH5 layout: the `Header` counts and
/// arrays with consistent lengths, and `Data/visdata`, `Data/flags`,
/// `Data/nsamples` with the shape (Nblts, Nfreqs, Npols) or (Nblts, 1, Nfreqs, Npols).
///
/// Never panics on any file content; every problem is a [`Uvh5Error`] whose
/// message says what is wrong.
pub fn inspect(path: &Path) -> Result<SubbandMeta, Uvh5Error> {
    let opened = open_checked(path)?;
    inspect_open_file(path, &opened.file, opened.size)
}

pub(crate) struct OpenedFile {
    pub file: File,
    pub size: u64,
}

/// Opens read-only after checking it is a non-empty regular file with an HDF5
/// signature, so the common failures get precise messages, then refuses it if
/// anything in it can reach outside the file ([`refuse_outside_references`]).
/// Every reader of untrusted files goes through here, so the check is made on
/// the very handle that is read afterwards (a file swapped after an earlier
/// validation is checked again).
pub(crate) fn open_checked(path: &Path) -> Result<OpenedFile, Uvh5Error> {
    super::harden_library()?;
    let io_err = |source| Uvh5Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(io_err)?;
    if !metadata.is_file() {
        return Err(io_err(std::io::Error::other("not a regular file")));
    }
    let size = metadata.len();
    if size == 0 {
        return Err(Uvh5Error::Truncated {
            path: path.to_path_buf(),
            detail: "file is empty (0 bytes)".into(),
        });
    }
    if !has_hdf5_signature(path, size).map_err(io_err)? {
        return Err(Uvh5Error::NotHdf5 {
            path: path.to_path_buf(),
        });
    }
    let file = File::open(path).map_err(|e| classify_open_error(path, size, &e))?;
    refuse_outside_references(path, &file)?;
    Ok(OpenedFile { file, size })
}

/// How many refused objects a rejection names before "and N more".
const FINDINGS_NAMED: usize = 4;

/// Refuses a file if any object in it, wherever it is (not only the datasets
/// UVH5 uses), is a soft, external or user-defined link, a dataset with
/// external storage or a virtual layout, or a dataset needing a filter this
/// process does not have. Nothing is read from the file's datasets before
/// this check passes.
pub(crate) fn refuse_outside_references(path: &Path, file: &File) -> Result<(), Uvh5Error> {
    let findings = super::raw::find_hazards(file).map_err(|e| Uvh5Error::Unreadable {
        path: path.to_path_buf(),
        detail: format!("{}: {}", e.context, e.source),
    })?;
    if findings.is_empty() {
        return Ok(());
    }
    let mut parts: Vec<String> = findings
        .iter()
        .take(FINDINGS_NAMED)
        .map(|f| format!("{} {}", f.object, f.hazard))
        .collect();
    if findings.len() > FINDINGS_NAMED {
        parts.push(format!("and {} more", findings.len() - FINDINGS_NAMED));
    }
    Err(Uvh5Error::Refused {
        path: path.to_path_buf(),
        detail: parts.join("; "),
    })
}

/// HDF5 looks for the superblock at 0, 512, 1024, 2048, … (a user block may precede it).
fn has_hdf5_signature(path: &Path, size: u64) -> std::io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let mut offset = 0_u64;
    loop {
        if offset + 8 > size {
            return Ok(false);
        }
        let mut magic = [0_u8; 8];
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut magic)?;
        if magic == HDF5_SIGNATURE {
            return Ok(true);
        }
        offset = if offset == 0 { 512 } else { offset * 2 };
    }
}

fn classify_open_error(path: &Path, size: u64, error: &hdf5::Error) -> Uvh5Error {
    let message = error.to_string();
    if message.contains("truncated") {
        Uvh5Error::Truncated {
            path: path.to_path_buf(),
            detail: format!("only {size} bytes on disk, the HDF5 superblock expects more"),
        }
    } else {
        Uvh5Error::Unreadable {
            path: path.to_path_buf(),
            detail: message,
        }
    }
}

/// Reads and validates the metadata of an already opened file.
pub(crate) fn inspect_open_file(
    path: &Path,
    file: &File,
    file_size: u64,
) -> Result<SubbandMeta, Uvh5Error> {
    let reader = Reader {
        path: path.to_path_buf(),
        file_size,
    };
    let header = reader.group(file, "Header")?;
    let data = reader.group(file, "Data")?;
    for name in REQUIRED_HEADER {
        reader.dataset(&header, "Header", name)?;
    }
    for name in DATA_DATASETS {
        reader.dataset(&data, "Data", name)?;
    }

    let nbls = reader.count(&header, "Nbls")?;
    let nblts = reader.count(&header, "Nblts")?;
    let nfreqs = reader.count(&header, "Nfreqs")?;
    let npols = reader.count(&header, "Npols")?;
    let ntimes = reader.count(&header, "Ntimes")?;
    let nspws = if header.link_exists("Nspws") {
        reader.count(&header, "Nspws")?
    } else {
        1
    };

    // Lengths of the per-baseline-time arrays.
    for name in [
        "time_array",
        "integration_time",
        "ant_1_array",
        "ant_2_array",
    ] {
        reader.expect_shape(&header, name, &[&[nblts]])?;
    }
    reader.expect_shape(&header, "uvw_array", &[&[nblts, 3]])?;
    reader.expect_shape(&header, "polarization_array", &[&[npols]])?;
    // Current files store freq_array as (Nfreqs); older ones as (1, Nfreqs).
    reader.expect_shape(&header, "freq_array", &[&[nfreqs], &[1, nfreqs]])?;
    reader.expect_shape(&header, "channel_width", &[&[nfreqs], &[]])?;

    let data_shape = reader.data_shape(&data, nblts, nfreqs, npols)?;
    reader.check_data_types(&data)?;

    let freqs = reader.f64_array(&header, "freq_array")?;
    if let Some(bad) = freqs.iter().find(|f| !f.is_finite() || **f <= 0.0) {
        return Err(reader.layout(format!("freq_array holds an invalid frequency {bad}")));
    }
    let freq_min_hz = freqs.iter().copied().fold(f64::INFINITY, f64::min);
    let freq_max_hz = freqs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let freq_ascending = match (freqs.first(), freqs.get(1)) {
        (Some(first), Some(second)) => second > first,
        _ => true,
    };
    let channel_width_hz = reader
        .f64_array(&header, "channel_width")?
        .first()
        .copied()
        .unwrap_or(0.0);

    let times = reader.f64_array(&header, "time_array")?;
    if times.iter().any(|t| !t.is_finite()) {
        return Err(reader.layout("time_array holds a non-finite time".into()));
    }
    let unique_times_jd = unique_sorted(&times, TIME_TOLERANCE_DAYS);
    if unique_times_jd.len() as u64 != ntimes {
        return Err(reader.layout(format!(
            "Ntimes is {ntimes} but time_array holds {} distinct times",
            unique_times_jd.len()
        )));
    }
    let time_min_jd = unique_times_jd.first().copied().unwrap_or(f64::NAN);
    let time_max_jd = unique_times_jd.last().copied().unwrap_or(f64::NAN);
    let integration_time_s = reader
        .f64_array(&header, "integration_time")?
        .first()
        .copied()
        .unwrap_or(f64::NAN);
    let polarization_array = reader.i64_array(&header, "polarization_array")?;
    let telescope_name = reader.optional_string(&header, "telescope_name");

    Ok(SubbandMeta {
        nbls,
        nblts,
        nfreqs,
        npols,
        ntimes,
        nspws,
        freq_min_hz,
        freq_max_hz,
        channel_width_hz,
        time_min_jd,
        time_max_jd,
        integration_time_s,
        unique_times_jd,
        polarization_array,
        freq_ascending,
        data_shape,
        telescope_name,
        file_size_bytes: file_size,
    })
}

/// Distinct values (closer than `tolerance` counts as equal), ascending.
pub(crate) fn unique_sorted(values: &[f64], tolerance: f64) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut unique: Vec<f64> = Vec::new();
    for v in sorted {
        match unique.last() {
            Some(last) if (v - last).abs() <= tolerance => {}
            _ => unique.push(v),
        }
    }
    unique
}

/// Reads objects of one file, turning every failure into an error that names it.
pub(crate) struct Reader {
    pub path: PathBuf,
    pub file_size: u64,
}

impl Reader {
    pub(crate) fn layout(&self, detail: String) -> Uvh5Error {
        Uvh5Error::Layout {
            path: self.path.clone(),
            detail,
        }
    }

    fn unreadable(&self, what: &str, error: &hdf5::Error) -> Uvh5Error {
        let message = error.to_string();
        if message.contains("truncated") || message.contains("addr overflow") {
            Uvh5Error::Truncated {
                path: self.path.clone(),
                detail: format!("{what} lies beyond the end of the file"),
            }
        } else {
            Uvh5Error::Unreadable {
                path: self.path.clone(),
                detail: format!("{what}: {message}"),
            }
        }
    }

    pub(crate) fn group(&self, parent: &Group, name: &str) -> Result<Group, Uvh5Error> {
        if !parent.link_exists(name) {
            return Err(Uvh5Error::Missing {
                path: self.path.clone(),
                object: format!("group {name}"),
            });
        }
        parent
            .group(name)
            .map_err(|_| self.layout(format!("{name} is not a group")))
    }

    pub(crate) fn dataset(
        &self,
        parent: &Group,
        parent_name: &str,
        name: &str,
    ) -> Result<Dataset, Uvh5Error> {
        let full = format!("{parent_name}/{name}");
        if !parent.link_exists(name) {
            return Err(Uvh5Error::Missing {
                path: self.path.clone(),
                object: full,
            });
        }
        parent
            .dataset(name)
            .map_err(|e| self.unreadable(&format!("{full} (not a readable dataset)"), &e))
    }

    fn header_dataset(&self, header: &Group, name: &str) -> Result<Dataset, Uvh5Error> {
        self.dataset(header, "Header", name)
    }

    /// A non-negative count stored as a scalar (or one-element) integer dataset.
    fn count(&self, header: &Group, name: &str) -> Result<u64, Uvh5Error> {
        let ds = self.header_dataset(header, name)?;
        if ds.size() != 1 {
            return Err(self.layout(format!(
                "Header/{name} should be a single number, has shape {:?}",
                ds.shape()
            )));
        }
        if !matches!(
            ds.dtype().and_then(|t| t.to_descriptor()),
            Ok(TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_))
        ) {
            return Err(self.layout(format!("Header/{name} is not an integer")));
        }
        let values = ds
            .read_raw::<i64>()
            .map_err(|e| self.unreadable(&format!("Header/{name}"), &e))?;
        match values.first() {
            Some(v) if *v > 0 => Ok(*v as u64),
            Some(v) => Err(self.layout(format!("Header/{name} is {v}, must be positive"))),
            None => Err(self.layout(format!("Header/{name} is empty"))),
        }
    }

    fn expect_shape(
        &self,
        header: &Group,
        name: &str,
        allowed: &[&[u64]],
    ) -> Result<(), Uvh5Error> {
        let ds = self.header_dataset(header, name)?;
        let shape: Vec<u64> = ds.shape().iter().map(|d| *d as u64).collect();
        if allowed.contains(&shape.as_slice()) {
            return Ok(());
        }
        let expected: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
        Err(self.layout(format!(
            "Header/{name} has shape {shape:?}, expected {}",
            expected.join(" or ")
        )))
    }

    /// Refuses to read arrays that could not possibly fit in the file: a corrupt
    /// dataspace must not make us allocate gigabytes.
    fn check_plausible_size(&self, ds: &Dataset, name: &str, elem: u64) -> Result<(), Uvh5Error> {
        let bytes = (ds.size() as u64).saturating_mul(elem);
        let limit = self.file_size.saturating_mul(4).saturating_add(1 << 20);
        if bytes > limit {
            return Err(self.layout(format!(
                "Header/{name} claims {bytes} bytes in a {}-byte file",
                self.file_size
            )));
        }
        Ok(())
    }

    pub(crate) fn f64_array(&self, header: &Group, name: &str) -> Result<Vec<f64>, Uvh5Error> {
        let ds = self.header_dataset(header, name)?;
        self.check_plausible_size(&ds, name, 8)?;
        ds.read_raw::<f64>()
            .map_err(|e| self.unreadable(&format!("Header/{name}"), &e))
    }

    pub(crate) fn i64_array(&self, header: &Group, name: &str) -> Result<Vec<i64>, Uvh5Error> {
        let ds = self.header_dataset(header, name)?;
        self.check_plausible_size(&ds, name, 8)?;
        ds.read_raw::<i64>()
            .map_err(|e| self.unreadable(&format!("Header/{name}"), &e))
    }

    fn optional_string(&self, header: &Group, name: &str) -> Option<String> {
        let ds = header.dataset(name).ok()?;
        let value = ds.read_scalar::<FixedAscii<256>>().ok()?;
        // `FixedAscii::as_str` assumes ASCII without checking; a crafted file can hold
        // any bytes there, so decode them ourselves.
        let text = String::from_utf8_lossy(value.as_bytes());
        Some(text.trim_end_matches('\0').trim().to_string())
    }

    /// Checks `visdata`, `flags` and `nsamples` share one shape of the form
    /// (Nblts, Nfreqs, Npols) or (Nblts, 1, Nfreqs, Npols) and returns it.
    fn data_shape(
        &self,
        data: &Group,
        nblts: u64,
        nfreqs: u64,
        npols: u64,
    ) -> Result<Vec<u64>, Uvh5Error> {
        let visdata = self.dataset(data, "Data", "visdata")?;
        let shape: Vec<u64> = visdata.shape().iter().map(|d| *d as u64).collect();
        let expected_new = vec![nblts, nfreqs, npols];
        let expected_old = vec![nblts, 1, nfreqs, npols];
        if shape != expected_new && shape != expected_old {
            return Err(self.layout(format!(
                "Data/visdata has shape {shape:?}, expected {expected_new:?} \
                 (Nblts, Nfreqs, Npols from Header)"
            )));
        }
        for name in ["flags", "nsamples"] {
            let ds = self.dataset(data, "Data", name)?;
            let other: Vec<u64> = ds.shape().iter().map(|d| *d as u64).collect();
            if other != shape {
                return Err(self.layout(format!(
                    "Data/{name} has shape {other:?} but Data/visdata has {shape:?}"
                )));
            }
        }
        Ok(shape)
    }

    fn check_data_types(&self, data: &Group) -> Result<(), Uvh5Error> {
        let describe = |name: &str| -> Result<TypeDescriptor, Uvh5Error> {
            let ds = self.dataset(data, "Data", name)?;
            ds.dtype()
                .and_then(|t| t.to_descriptor())
                .map_err(|e| self.unreadable(&format!("type of Data/{name}"), &e))
        };
        match describe("visdata")? {
            TypeDescriptor::Compound(c) if c.fields.len() == 2 => {}
            other => {
                return Err(self.layout(format!(
                    "Data/visdata should be complex (a compound of two numbers), is {other}"
                )));
            }
        }
        match describe("flags")? {
            TypeDescriptor::Boolean
            | TypeDescriptor::Enum(_)
            | TypeDescriptor::Integer(_)
            | TypeDescriptor::Unsigned(_) => {}
            other => return Err(self.layout(format!("Data/flags should be boolean, is {other}"))),
        }
        match describe("nsamples")? {
            TypeDescriptor::Float(_) | TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => {
            }
            other => {
                return Err(self.layout(format!("Data/nsamples should be numeric, is {other}")));
            }
        }
        Ok(())
    }
}
