//! Merging the subbands of a group into one UVH5 file along the frequency axis.
//!
//! The output is what `pyuvdata`'s `fast_concat(..., axis="freq")` produces
//! from the inputs taken in frequency order (see [`merge_order`]): data,
//! flags, nsamples and every frequency-axis header array concatenated, the
//! rest of the header copied from the first input.
//!
//! Data move in one of two ways, both with bounded memory:
//! - **chunk copy** (the usual case): when all inputs share datatype, filters
//!   and chunk shape, and no chunk straddles a subband edge, each stored chunk
//!   is copied as it is on disk (still compressed) to its place in the output
//!   with HDF5 direct chunk I/O. Nothing is decompressed; memory is one chunk.
//! - **rechunk**: otherwise, blocks of rows are read from every input,
//!   interleaved in memory and written as whole output chunks (same filters;
//!   the frequency chunk size is shrunk, if needed, so output chunks never
//!   straddle subbands). Memory is about two blocks (≤ 2 × 32 MiB).

use contimg_core::fsutil::{AtomicFile, Durability};
use std::path::{Path, PathBuf};
use std::time::Instant;

use hdf5::{Dataset, File, Group};

use super::inspect::{DATA_DATASETS, Reader, inspect_open_file, open_checked};
use super::raw::{self, RawError};
use super::{GroupProblem, SubbandMeta, TIME_TOLERANCE_DAYS, Uvh5Error, check_group, hdf5_error};

/// Upper bound on the row block the rechunk path holds in memory (per buffer).
const BLOCK_BYTES: usize = 32 << 20;

/// Header arrays whose last axis is the frequency axis: concatenated.
const FREQ_AXIS_HEADER: [&str; 4] = [
    "freq_array",
    "channel_width",
    "flex_spw_id_array",
    "eq_coeffs",
];

/// How the data were moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyMethod {
    /// Stored chunks copied byte for byte (no decompression).
    ChunkCopy,
    /// Rows read, interleaved and rewritten through the filter pipeline.
    Rechunk,
}

/// Timings and sizes of one merge, for the queue's `performance_metrics`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MergeReport {
    /// Opening and validating the inputs and writing the header.
    pub load_time_s: f64,
    /// Copying the data, closing, fsync and rename.
    pub write_time_s: f64,
    pub total_time_s: f64,
    /// Sum of the input file sizes.
    pub bytes_in: u64,
    /// Size of the merged file.
    pub bytes_out: u64,
    /// Input subbands in the order their channels appear in the output.
    pub subband_order: Vec<u32>,
    pub nfreqs: u64,
    pub nblts: u64,
    pub freq_min_hz: f64,
    pub freq_max_hz: f64,
    /// Method used for visdata, flags, nsamples (in that order).
    pub methods: Vec<CopyMethod>,
    /// Value for the queue's `writer_type` column.
    pub writer_type: String,
}

/// The order in which subbands are concatenated: ascending frequency when the
/// channels inside a subband ascend (the usual case, which makes the whole
/// output ascend), descending otherwise, so the output is monotonic either way.
/// Since sb00 is the highest band, ascending order is sb15, sb14, …, sb00.
pub fn merge_order(members: &[(u32, SubbandMeta)]) -> Vec<u32> {
    order_indices(members)
        .into_iter()
        .map(|i| members[i].0)
        .collect()
}

fn order_indices(members: &[(u32, SubbandMeta)]) -> Vec<usize> {
    let ascending = members.first().is_none_or(|(_, m)| m.freq_ascending);
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (members[a].1.freq_center_hz(), members[b].1.freq_center_hz());
        if ascending {
            fa.total_cmp(&fb)
        } else {
            fb.total_cmp(&fa)
        }
    });
    order
}

struct Input {
    subband: u32,
    path: PathBuf,
    file: File,
    meta: SubbandMeta,
}

/// Merges the subband files `inputs` (subband index, path) into one UVH5 file
/// at `output`.
///
/// The inputs are validated ([`inspect`](super::inspect) and
/// [`check_group`]), plus their baseline-time axes must match exactly. The
/// file is written as a hidden temporary in `output`'s directory, fsynced and
/// renamed over `output`; on any error the temporary is removed and `output`
/// is untouched.
pub fn merge(inputs: &[(u32, PathBuf)], output: &Path) -> Result<MergeReport, Uvh5Error> {
    let started = Instant::now();
    if inputs.is_empty() {
        return Err(Uvh5Error::InvalidArgument(
            "no input subbands to merge".into(),
        ));
    }
    refuse_output_among_inputs(inputs, output)?;
    let mut opened = Vec::with_capacity(inputs.len());
    for (subband, path) in inputs {
        let file = open_checked(path)?;
        let meta = inspect_open_file(path, &file.file, file.size)?;
        opened.push(Input {
            subband: *subband,
            path: path.clone(),
            file: file.file,
            meta,
        });
    }
    let members: Vec<(u32, SubbandMeta)> =
        opened.iter().map(|i| (i.subband, i.meta.clone())).collect();
    check_group(&members)?;
    let order = order_indices(&members);
    let mut slots: Vec<Option<Input>> = opened.into_iter().map(Some).collect();
    let ordered: Vec<Input> = order.iter().filter_map(|&i| slots[i].take()).collect();
    check_blt_axes(&ordered)?;

    let temp = TempFile::new(output)?;
    let (methods, load_time_s) = write_merged(&ordered, &temp, started)?;
    let bytes_out = temp.commit(output)?;

    let bytes_in = members.iter().map(|(_, m)| m.file_size_bytes).sum();
    let total_time_s = started.elapsed().as_secs_f64();
    let report = MergeReport {
        load_time_s,
        write_time_s: total_time_s - load_time_s,
        total_time_s,
        bytes_in,
        bytes_out,
        subband_order: order.iter().map(|&i| members[i].0).collect(),
        nfreqs: members.iter().map(|(_, m)| m.nfreqs).sum(),
        nblts: members[0].1.nblts,
        freq_min_hz: members
            .iter()
            .map(|(_, m)| m.freq_min_hz)
            .fold(f64::INFINITY, f64::min),
        freq_max_hz: members
            .iter()
            .map(|(_, m)| m.freq_max_hz)
            .fold(f64::NEG_INFINITY, f64::max),
        writer_type: format!("contimg-merge-{}", method_label(&methods)),
        methods,
    };
    tracing::info!(
        output = %output.display(),
        subbands = members.len(),
        bytes_out = report.bytes_out,
        seconds = report.total_time_s,
        method = %method_label(&report.methods),
        "merged subbands"
    );
    Ok(report)
}

fn method_label(methods: &[CopyMethod]) -> &'static str {
    if methods.iter().all(|m| *m == CopyMethod::ChunkCopy) {
        "chunk-copy"
    } else {
        "rechunk"
    }
}

/// Renaming the result over one of the inputs would destroy it.
fn refuse_output_among_inputs(inputs: &[(u32, PathBuf)], output: &Path) -> Result<(), Uvh5Error> {
    let Ok(output) = output.canonicalize() else {
        return Ok(()); // does not exist yet, so it is no input
    };
    for (_, path) in inputs {
        if path.canonicalize().is_ok_and(|p| p == output) {
            return Err(Uvh5Error::InvalidArgument(format!(
                "output {} is one of the inputs",
                output.display()
            )));
        }
    }
    Ok(())
}

/// Writes the merged file into `temp`; returns the copy methods and the time
/// spent before the data copy started.
fn write_merged(
    inputs: &[Input],
    temp: &TempFile,
    started: Instant,
) -> Result<(Vec<CopyMethod>, f64), Uvh5Error> {
    let path = temp.path();
    let hdf5_err = |context: &str| hdf5_error(path, context);
    let out = File::create(temp.hdf5_path()?).map_err(hdf5_err("creating the output file"))?;
    write_header(inputs, &out, path)?;
    let load_time_s = started.elapsed().as_secs_f64();

    let data_out = out
        .create_group("Data")
        .map_err(hdf5_err("creating group Data"))?;
    let mut methods = Vec::new();
    for name in DATA_DATASETS {
        let sources = inputs
            .iter()
            .map(|input| {
                Reader {
                    path: input.path.clone(),
                    file_size: input.meta.file_size_bytes,
                }
                .dataset(
                    &input.file.group("Data").map_err(hdf5_err("opening Data"))?,
                    "Data",
                    name,
                )
            })
            .collect::<Result<Vec<Dataset>, Uvh5Error>>()?;
        let nfreqs: Vec<u64> = inputs.iter().map(|i| i.meta.nfreqs).collect();
        methods.push(copy_data(&sources, &nfreqs, &data_out, name, path)?);
    }
    drop(data_out);
    out.close().map_err(hdf5_err("closing the output file"))?;
    Ok((methods, load_time_s))
}

/// Copies the first input's `Header`, then replaces the frequency-axis items
/// with their concatenation over all inputs.
fn write_header(inputs: &[Input], out: &File, out_path: &Path) -> Result<(), Uvh5Error> {
    let raw_err = |e: RawError| raw_to_uvh5(out_path, e);
    let hdf5_err = |context: &str| hdf5_error(out_path, context);
    let first = &inputs[0];
    raw::copy_object(&first.file, "Header", out).map_err(raw_err)?;
    let header = out.group("Header").map_err(hdf5_err("opening Header"))?;
    let input_headers = inputs
        .iter()
        .map(|i| i.file.group("Header"))
        .collect::<Result<Vec<Group>, hdf5::Error>>()
        .map_err(hdf5_err("opening an input Header"))?;

    for name in FREQ_AXIS_HEADER {
        if !header.link_exists(name) {
            continue;
        }
        concat_last_axis(inputs, &input_headers, &header, name, out_path)?;
    }

    let total_nfreqs: u64 = inputs.iter().map(|i| i.meta.nfreqs).sum();
    replace_i64_scalar(&header, "Nfreqs", total_nfreqs as i64)
        .map_err(hdf5_err("writing Nfreqs"))?;

    // Spectral windows by first appearance along the new frequency axis, as fast_concat does.
    let mut spws: Vec<i64> = Vec::new();
    for (input, input_header) in inputs.iter().zip(&input_headers) {
        let reader = Reader {
            path: input.path.clone(),
            file_size: input.meta.file_size_bytes,
        };
        let ids = if input_header.link_exists("flex_spw_id_array") {
            reader.i64_array(input_header, "flex_spw_id_array")?
        } else if input_header.link_exists("spw_array") {
            reader.i64_array(input_header, "spw_array")?
        } else {
            vec![0]
        };
        for id in ids {
            if !spws.contains(&id) {
                spws.push(id);
            }
        }
    }
    if header.link_exists("spw_array") {
        header
            .unlink("spw_array")
            .map_err(hdf5_err("replacing spw_array"))?;
        header
            .new_dataset_builder()
            .with_data(&spws)
            .create("spw_array")
            .map_err(hdf5_err("writing spw_array"))?;
    }
    if header.link_exists("Nspws") {
        replace_i64_scalar(&header, "Nspws", spws.len() as i64)
            .map_err(hdf5_err("writing Nspws"))?;
    }
    if header.link_exists("flex_spw_polarization_array") && spws.len() as u64 != first.meta.nspws {
        return Err(Uvh5Error::Unsupported(
            "inputs carry flex_spw_polarization_array with differing spectral windows".into(),
        ));
    }

    if header.link_exists("history") {
        let ds = header
            .dataset("history")
            .map_err(hdf5_err("opening history"))?;
        let mut history = raw::read_fixed_string(&ds).map_err(raw_err)?;
        drop(ds);
        history.extend_from_slice(
            format!(
                " Combined data along frequency axis using contimg {} (sb{} order).",
                env!("CARGO_PKG_VERSION"),
                inputs
                    .iter()
                    .map(|i| format!("{:02}", i.subband))
                    .collect::<Vec<_>>()
                    .join(",sb")
            )
            .as_bytes(),
        );
        header
            .unlink("history")
            .map_err(hdf5_err("replacing history"))?;
        raw::write_fixed_string(&header, "history", &history).map_err(raw_err)?;
    }
    Ok(())
}

fn replace_i64_scalar(group: &Group, name: &str, value: i64) -> hdf5::Result<()> {
    if group.link_exists(name) {
        group.unlink(name)?;
    }
    group
        .new_dataset::<i64>()
        .create(name)?
        .write_scalar(&value)
}

/// Replaces header dataset `name` by the concatenation of every input's
/// dataset along its last (frequency) axis, keeping the stored datatype. A
/// scalar (old files store one `channel_width`) must agree across inputs and is
/// kept as is.
fn concat_last_axis(
    inputs: &[Input],
    input_headers: &[Group],
    out_header: &Group,
    name: &str,
    out_path: &Path,
) -> Result<(), Uvh5Error> {
    let mut sources = Vec::with_capacity(inputs.len());
    for (input, header) in inputs.iter().zip(input_headers) {
        let reader = Reader {
            path: input.path.clone(),
            file_size: input.meta.file_size_bytes,
        };
        sources.push(reader.dataset(header, "Header", name)?);
    }
    let first_shape: Vec<u64> = sources[0].shape().iter().map(|d| *d as u64).collect();
    if first_shape.is_empty() {
        let values: Vec<f64> = sources
            .iter()
            .map(|ds| ds.read_scalar::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|source| Uvh5Error::Hdf5 {
                path: inputs[0].path.clone(),
                context: format!("reading Header/{name}"),
                source,
            })?;
        if values
            .iter()
            .any(|v| (v - values[0]).abs() > 1e-6 * values[0].abs().max(1.0))
        {
            return Err(Uvh5Error::Unsupported(format!(
                "inputs store a single Header/{name} and the values differ: {values:?}"
            )));
        }
        return Ok(());
    }
    let lead: Vec<u64> = first_shape[..first_shape.len() - 1].to_vec();
    let rows: u64 = lead.iter().product();
    let elem = raw::element_size(&sources[0]).map_err(|e| raw_to_uvh5(&inputs[0].path, e))?;
    let mut blocks = Vec::with_capacity(sources.len());
    let mut total_last = 0_u64;
    for (input, ds) in inputs.iter().zip(&sources) {
        let shape: Vec<u64> = ds.shape().iter().map(|d| *d as u64).collect();
        let same_type = raw::same_type(ds, &sources[0]).map_err(|e| raw_to_uvh5(&input.path, e))?;
        if shape.len() != first_shape.len() || shape[..shape.len() - 1] != lead[..] || !same_type {
            return Err(Uvh5Error::Unsupported(format!(
                "Header/{name} differs in shape or type between {} and {}",
                inputs[0].path.display(),
                input.path.display()
            )));
        }
        let last = shape[shape.len() - 1];
        let mut bytes = vec![0_u8; (rows * last) as usize * elem];
        let start = vec![0_u64; shape.len()];
        raw::read_block(ds, &start, &shape, &mut bytes).map_err(|e| raw_to_uvh5(&input.path, e))?;
        total_last += last;
        blocks.push((last, bytes));
    }
    let mut merged = Vec::with_capacity((rows * total_last) as usize * elem);
    for row in 0..rows as usize {
        for (last, bytes) in &blocks {
            let width = *last as usize * elem;
            merged.extend_from_slice(&bytes[row * width..(row + 1) * width]);
        }
    }
    let mut out_shape = lead;
    out_shape.push(total_last);
    out_header.unlink(name).map_err(|source| Uvh5Error::Hdf5 {
        path: out_path.to_path_buf(),
        context: format!("replacing Header/{name}"),
        source,
    })?;
    let chunk = raw::chunk_dims(&sources[0]).map_err(|e| raw_to_uvh5(&inputs[0].path, e))?;
    let out = raw::create_dataset_like(out_header, name, &sources[0], &out_shape, chunk.as_deref())
        .map_err(|e| raw_to_uvh5(out_path, e))?;
    let start = vec![0_u64; out_shape.len()];
    raw::write_block(&out, &start, &out_shape, &merged).map_err(|e| raw_to_uvh5(out_path, e))
}

/// time_array, ant_1_array, ant_2_array of one input.
type BltAxes = (Vec<f64>, Vec<i64>, Vec<i64>);

/// Verifies the inputs share one baseline-time axis (same times and baseline
/// order), which fast_concat also requires; otherwise rows would be mixed up.
fn check_blt_axes(inputs: &[Input]) -> Result<(), Uvh5Error> {
    let read_axes = |input: &Input| -> Result<BltAxes, Uvh5Error> {
        let reader = Reader {
            path: input.path.clone(),
            file_size: input.meta.file_size_bytes,
        };
        let header = reader.group(&input.file, "Header")?;
        Ok((
            reader.f64_array(&header, "time_array")?,
            reader.i64_array(&header, "ant_1_array")?,
            reader.i64_array(&header, "ant_2_array")?,
        ))
    };
    let (times0, ant1_0, ant2_0) = read_axes(&inputs[0])?;
    let mut problems = Vec::new();
    for input in &inputs[1..] {
        let (times, ant1, ant2) = read_axes(input)?;
        let times_match = times.len() == times0.len()
            && times
                .iter()
                .zip(&times0)
                .all(|(a, b)| (a - b).abs() <= TIME_TOLERANCE_DAYS);
        if !times_match {
            problems.push(GroupProblem {
                subbands: vec![input.subband],
                detail: format!(
                    "time_array (baseline-time order) differs from sb{:02}",
                    inputs[0].subband
                ),
            });
        } else if ant1 != ant1_0 || ant2 != ant2_0 {
            problems.push(GroupProblem {
                subbands: vec![input.subband],
                detail: format!("baseline order differs from sb{:02}", inputs[0].subband),
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Uvh5Error::GroupMismatch { problems })
    }
}

/// Shape facts shared by the copy paths.
struct DataGeometry {
    /// Dataset shape of the first input; only the frequency axis differs between inputs.
    shape: Vec<u64>,
    freq_axis: usize,
    /// Frequency offset of each input in the output.
    offsets: Vec<u64>,
    total_nfreqs: u64,
}

fn copy_data(
    sources: &[Dataset],
    nfreqs: &[u64],
    data_out: &Group,
    name: &str,
    out_path: &Path,
) -> Result<CopyMethod, Uvh5Error> {
    let raw_err = |e: RawError| raw_to_uvh5(out_path, e);
    let shape: Vec<u64> = sources[0].shape().iter().map(|d| *d as u64).collect();
    let freq_axis = shape.len() - 2;
    let mut offsets = Vec::with_capacity(sources.len());
    let mut total_nfreqs = 0;
    for n in nfreqs {
        offsets.push(total_nfreqs);
        total_nfreqs += n;
    }
    let geometry = DataGeometry {
        shape,
        freq_axis,
        offsets,
        total_nfreqs,
    };
    let mut out_shape = geometry.shape.clone();
    out_shape[freq_axis] = total_nfreqs;

    let first_chunk = raw::chunk_dims(&sources[0]).map_err(raw_err)?;
    if let Some(chunk) = &first_chunk
        && chunk_copy_possible(sources, nfreqs, chunk, freq_axis).map_err(raw_err)?
    {
        let out = raw::create_dataset_like(data_out, name, &sources[0], &out_shape, Some(chunk))
            .map_err(raw_err)?;
        copy_chunks(sources, &out, chunk, &geometry).map_err(raw_err)?;
        return Ok(CopyMethod::ChunkCopy);
    }

    // Output chunks must not straddle subbands: use a frequency chunk that
    // divides every subband's channel count.
    let out_chunk = first_chunk.map(|mut chunk| {
        let common = nfreqs.iter().fold(0, |g, n| gcd(g, *n));
        chunk[freq_axis] = largest_divisor_at_most(common, chunk[freq_axis]);
        chunk
    });
    let out = raw::create_dataset_like(
        data_out,
        name,
        &sources[0],
        &out_shape,
        out_chunk.as_deref(),
    )
    .map_err(raw_err)?;
    copy_rows(sources, &out, out_chunk.as_deref(), &geometry, out_path)?;
    Ok(CopyMethod::Rechunk)
}

/// Stored chunks can be copied verbatim when every input has the same chunk
/// shape, datatype and filter pipeline, and chunk boundaries fall on subband
/// boundaries along the frequency axis.
fn chunk_copy_possible(
    sources: &[Dataset],
    nfreqs: &[u64],
    chunk: &[u64],
    freq_axis: usize,
) -> Result<bool, RawError> {
    let filters = sources[0].filters();
    for (ds, n) in sources.iter().zip(nfreqs) {
        if raw::chunk_dims(ds)?.as_deref() != Some(chunk)
            || !raw::same_type(ds, &sources[0])?
            || ds.filters() != filters
            || chunk[freq_axis] == 0
            || !n.is_multiple_of(chunk[freq_axis])
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copies every stored chunk of every input to the output, shifted along the
/// frequency axis. Inputs are read one after the other, chunk by chunk.
fn copy_chunks(
    sources: &[Dataset],
    out: &Dataset,
    chunk: &[u64],
    geometry: &DataGeometry,
) -> Result<(), RawError> {
    let mut buf = Vec::new();
    for (index, ds) in sources.iter().enumerate() {
        let mut shape = geometry.shape.clone();
        shape[geometry.freq_axis] = ds.shape()[geometry.freq_axis] as u64;
        let mut offset = vec![0_u64; shape.len()];
        loop {
            if let Some(stored) = raw::read_chunk(ds, &offset, &mut buf)? {
                let mut out_offset = offset.clone();
                out_offset[geometry.freq_axis] += geometry.offsets[index];
                raw::write_chunk(out, &out_offset, stored.filter_mask, &buf[..stored.size])?;
            }
            if !next_chunk_offset(&mut offset, &shape, chunk) {
                break;
            }
        }
    }
    Ok(())
}

/// Advances a chunk offset in row-major order; false when past the end.
fn next_chunk_offset(offset: &mut [u64], shape: &[u64], chunk: &[u64]) -> bool {
    for axis in (0..offset.len()).rev() {
        offset[axis] += chunk[axis];
        if offset[axis] < shape[axis] {
            return true;
        }
        offset[axis] = 0;
    }
    false
}

/// Reads blocks of rows from every input, interleaves them along the
/// frequency axis and writes whole output rows.
fn copy_rows(
    sources: &[Dataset],
    out: &Dataset,
    out_chunk: Option<&[u64]>,
    geometry: &DataGeometry,
    out_path: &Path,
) -> Result<(), Uvh5Error> {
    let raw_err = |e: RawError| raw_to_uvh5(out_path, e);
    let shape = &geometry.shape;
    let freq_axis = geometry.freq_axis;
    // Axes between rows and frequency (the old spw axis) must be of length 1
    // for a row to be [freq][pol…] in memory.
    if shape[1..freq_axis].iter().any(|d| *d != 1) {
        return Err(Uvh5Error::Unsupported(format!(
            "data shape {shape:?} has a spectral-window axis longer than 1"
        )));
    }
    let elem = raw::element_size(&sources[0]).map_err(raw_err)?;
    let inner: u64 = shape[freq_axis + 1..].iter().product();
    let cell = inner as usize * elem; // bytes per (row, channel)
    let out_row = geometry.total_nfreqs as usize * cell;
    let nrows = shape[0];
    // Rows per block: whole output chunks along the row axis, up to BLOCK_BYTES.
    let row_quantum = out_chunk.map_or(1, |c| c[0].max(1));
    let quanta = (BLOCK_BYTES / (out_row.max(1) * row_quantum as usize)).max(1) as u64;
    let block_rows = (row_quantum * quanta).min(nrows.max(1));

    let mut out_buf = vec![0_u8; block_rows as usize * out_row];
    let mut in_buf: Vec<u8> = Vec::new();
    let mut row = 0;
    while row < nrows {
        let rows = block_rows.min(nrows - row);
        for (index, ds) in sources.iter().enumerate() {
            let nf = ds.shape()[freq_axis] as u64;
            let mut start = vec![0_u64; shape.len()];
            start[0] = row;
            let mut count = shape.clone();
            count[0] = rows;
            count[freq_axis] = nf;
            let segment = nf as usize * cell;
            in_buf.resize(rows as usize * segment, 0);
            raw::read_block(ds, &start, &count, &mut in_buf).map_err(raw_err)?;
            let dest_offset = geometry.offsets[index] as usize * cell;
            for r in 0..rows as usize {
                let dest = r * out_row + dest_offset;
                out_buf[dest..dest + segment]
                    .copy_from_slice(&in_buf[r * segment..(r + 1) * segment]);
            }
        }
        let mut start = vec![0_u64; shape.len()];
        start[0] = row;
        let mut count = shape.clone();
        count[0] = rows;
        count[freq_axis] = geometry.total_nfreqs;
        raw::write_block(out, &start, &count, &out_buf[..rows as usize * out_row])
            .map_err(raw_err)?;
        row += rows;
    }
    Ok(())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn largest_divisor_at_most(n: u64, limit: u64) -> u64 {
    (1..=limit.min(n).max(1))
        .rev()
        .find(|d| n.is_multiple_of(*d))
        .unwrap_or(1)
}

fn raw_to_uvh5(path: &Path, e: RawError) -> Uvh5Error {
    Uvh5Error::Hdf5 {
        path: path.to_path_buf(),
        context: e.context,
        source: e.source,
    }
}

/// The output under construction (see `contimg_core::fsutil` for why a planted
/// symlink never redirects the write), with errors naming the path.
pub(crate) struct TempFile(AtomicFile);

impl TempFile {
    /// A fresh temporary beside `output`.
    fn new(output: &Path) -> Result<Self, Uvh5Error> {
        AtomicFile::beside(output)
            .map(TempFile)
            .map_err(|source| Uvh5Error::Output {
                path: output.to_path_buf(),
                source,
            })
    }

    /// A fresh temporary at exactly `path`.
    pub(crate) fn at(path: PathBuf) -> Result<Self, Uvh5Error> {
        AtomicFile::at(path.clone())
            .map(TempFile)
            .map_err(|source| Uvh5Error::Output { path, source })
    }

    fn path(&self) -> &Path {
        self.0.temp_path()
    }

    /// The name HDF5 opens: our descriptor's inode, whatever the temporary name
    /// points to by then.
    pub(crate) fn hdf5_path(&self) -> Result<PathBuf, Uvh5Error> {
        self.0.proc_fd_path().map_err(|source| Uvh5Error::Output {
            path: self.path().to_path_buf(),
            source,
        })
    }

    /// fsync, rename over `output`, fsync the directory; returns the size.
    fn commit(self, output: &Path) -> Result<u64, Uvh5Error> {
        self.rename_over(output, Durability::Durable)
    }

    pub(crate) fn rename_over(
        self,
        output: &Path,
        durability: Durability,
    ) -> Result<u64, Uvh5Error> {
        self.0
            .commit(output, durability)
            .map_err(|source| Uvh5Error::Output {
                path: output.to_path_buf(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_offsets_walk_the_grid_row_major() {
        let shape = [5, 4, 2];
        let chunk = [2, 4, 1];
        let mut offset = vec![0, 0, 0];
        let mut seen = vec![offset.clone()];
        while next_chunk_offset(&mut offset, &shape, &chunk) {
            seen.push(offset.clone());
        }
        assert_eq!(
            seen,
            vec![
                vec![0, 0, 0],
                vec![0, 0, 1],
                vec![2, 0, 0],
                vec![2, 0, 1],
                vec![4, 0, 0],
                vec![4, 0, 1]
            ]
        );
    }

    #[test]
    fn divisor_helpers() {
        assert_eq!(gcd(48, 36), 12);
        assert_eq!(largest_divisor_at_most(8, 3), 2);
        assert_eq!(largest_divisor_at_most(48, 100), 48);
        assert_eq!(largest_divisor_at_most(7, 5), 1);
    }
}
