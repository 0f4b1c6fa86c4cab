//! A stand-in for the DSA-110 correlator: writes UVH5 subband files the way
//! it does (a temporary name, then a rename to `YYYY-MM-DDTHH:MM:SS_sbNN.hdf5`),
//! with per-subband timestamp jitter in the names, a configurable pace, and
//! optionally some deliberately broken files.
//!
//! Files are valid UVH5 that pyuvdata reads and `run_check`s: drift-scan
//! ("unprojected") data of a T-shaped array at OVRO, channels ascending inside
//! each subband, sb00 the highest band, auto-correlations real and positive.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdf5::types::FixedAscii;
use hdf5::{File, Group, H5Type};

use super::merge::TempFile;
use super::{Uvh5Error, hdf5_error};
use contimg_core::fsutil::Durability;

/// DSA-110 sits at OVRO.
const LATITUDE_DEG: f64 = 37.233_386;
const LONGITUDE_DEG: f64 = -118.283_405;
const ALTITUDE_M: f64 = 1_188.0;
/// The correlator's integration: 2^? samples; 24 of them make a ~309 s group.
const INTEGRATION_TIME_S: f64 = 12.884_901_888;
/// Integrations the correlator writes per group (~309 s).
const CORRELATOR_INTEGRATIONS_PER_GROUP: f64 = 24.0;
/// 768 channels of 244.140625 kHz over 1311.25–1498.75 MHz, 48 per subband.
const CHANNEL_WIDTH_HZ: f64 = 244_140.625;
const TOP_OF_BAND_HZ: f64 = 1_498.75e6;
const UNIX_EPOCH_JD: f64 = 2_440_587.5;

/// Visibility as h5py/pyuvdata store complex64: a compound `{r, i}` of f32.
#[derive(H5Type, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct Visibility {
    pub r: f32,
    pub i: f32,
}

/// Size presets.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Tiny files for tests and demos: 6 antennas, 4 integrations, 8 channels (~20 kB).
    Small,
    /// Like real DSA-110 files: 96 antennas, 24 × 12.88 s integrations, 48
    /// channels × 2 polarizations per subband, uncompressed (~139 MB).
    Dsa110,
}

impl Profile {
    fn nants(self) -> usize {
        match self {
            Profile::Small => 6,
            Profile::Dsa110 => 96,
        }
    }

    fn ntimes(self) -> usize {
        match self {
            Profile::Small => 4,
            Profile::Dsa110 => 24,
        }
    }

    fn nfreqs(self) -> usize {
        match self {
            Profile::Small => 8,
            Profile::Dsa110 => 48,
        }
    }

    /// Small files compress flags and nsamples (exercising filtered chunks);
    /// dsa110 files are stored raw, as the correlator's ~139 MB files are.
    fn compression(self) -> Option<u8> {
        match self {
            Profile::Small => Some(4),
            Profile::Dsa110 => None,
        }
    }
}

/// `contimgctl simulate`: write groups of subband files into a directory.
#[derive(Debug, Clone, clap::Args, serde::Serialize, serde::Deserialize)]
pub struct SimulateArgs {
    /// Directory to write the subband files into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub input_dir: PathBuf,
    /// Number of groups to write.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub groups: u32,
    /// Wall-clock seconds between the starts of consecutive groups (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0, value_name = "SEC")]
    pub interval: f64,
    /// Largest spread, in seconds, of the file-name timestamps within one group.
    #[arg(long, default_value_t = 3.0, value_name = "SEC")]
    pub jitter: f64,
    /// Subbands per group (sb00 is the highest frequency).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub subbands: u32,
    /// File size preset.
    #[arg(long, value_enum, default_value_t = Profile::Small)]
    pub profile: Profile,
    /// Fraction of files to corrupt on purpose (truncated, wrong layout or garbage).
    #[arg(long, default_value_t = 0.0, value_name = "R")]
    pub corrupt_rate: f64,
    /// Observation start (UTC), e.g. 2025-01-02T03:04:05 [default: now].
    #[arg(long, value_name = "ISO_TIME")]
    pub start: Option<String>,
    /// Seed for data values, jitter and corruption choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// How a deliberately broken file is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Corruption {
    /// A complete file cut short.
    Truncated,
    /// Valid HDF5 whose `Data` group has no `visdata`.
    WrongLayout,
    /// Random bytes.
    Garbage,
}

/// One written group.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SimulatedGroup {
    /// Observation start of the group (the un-jittered name timestamp).
    pub timestamp: String,
    /// Final paths, sb00 first.
    pub files: Vec<PathBuf>,
    pub corrupted: Vec<(PathBuf, Corruption)>,
}

/// What [`run`] wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SimulateReport {
    pub groups: Vec<SimulatedGroup>,
    pub files_written: u64,
    pub bytes_written: u64,
    pub elapsed_s: f64,
}

/// Everything needed to write one subband file.
#[derive(Debug, Clone, PartialEq)]
pub struct SubbandSpec {
    pub subband: u32,
    pub nants: usize,
    pub ntimes: usize,
    pub nfreqs: usize,
    /// Polarizations as AIPS codes (-5 XX, -6 YY).
    pub polarizations: Vec<i64>,
    /// Start of the first integration, Julian date (UTC).
    pub start_jd: f64,
    pub integration_time_s: f64,
    /// Centre of the lowest channel.
    pub freq_start_hz: f64,
    pub channel_width_hz: f64,
    /// Deflate level for flags and nsamples (visdata is stored raw, as pyuvdata does).
    pub compression: Option<u8>,
    pub seed: u64,
}

impl SubbandSpec {
    /// The spec of subband `subband` of a group starting at `start_jd`.
    pub fn for_profile(profile: Profile, subband: u32, start_jd: f64, seed: u64) -> Self {
        let nfreqs = profile.nfreqs();
        let band_top = TOP_OF_BAND_HZ - f64::from(subband) * nfreqs as f64 * CHANNEL_WIDTH_HZ;
        let band_bottom = band_top - nfreqs as f64 * CHANNEL_WIDTH_HZ;
        SubbandSpec {
            subband,
            nants: profile.nants(),
            ntimes: profile.ntimes(),
            nfreqs,
            polarizations: vec![-5, -6],
            start_jd,
            integration_time_s: INTEGRATION_TIME_S,
            freq_start_hz: band_bottom + 0.5 * CHANNEL_WIDTH_HZ,
            channel_width_hz: CHANNEL_WIDTH_HZ,
            compression: profile.compression(),
            seed: seed ^ (u64::from(subband) << 32),
        }
    }

    fn nbls(&self) -> usize {
        self.nants * (self.nants + 1) / 2
    }

    fn nblts(&self) -> usize {
        self.nbls() * self.ntimes
    }
}

/// Writes groups of subband files as described by `args`.
pub fn run(args: &SimulateArgs) -> Result<SimulateReport, Uvh5Error> {
    super::harden_library()?;
    validate(args)?;
    std::fs::create_dir_all(&args.input_dir).map_err(|source| Uvh5Error::Output {
        path: args.input_dir.clone(),
        source,
    })?;
    let start = parse_start(args.start.as_deref())?;
    let started = Instant::now();
    let mut rng = SplitMix64::new(args.seed);
    // Every profile keeps the correlator's cadence (24 integrations per group), so
    // groups stay further apart than the worker's grouping tolerance; the small
    // profile just records fewer integrations of each.
    let group_seconds = CORRELATOR_INTEGRATIONS_PER_GROUP * INTEGRATION_TIME_S;
    let mut report = SimulateReport {
        groups: Vec::new(),
        files_written: 0,
        bytes_written: 0,
        elapsed_s: 0.0,
    };
    for group in 0..args.groups {
        let due = Duration::from_secs_f64(args.interval * f64::from(group));
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let group_start = start
            + chrono::Duration::milliseconds(
                (group_seconds * 1000.0 * f64::from(group)).round() as i64
            );
        let start_jd = unix_to_jd(group_start.timestamp_millis() as f64 / 1000.0);
        let mut written = SimulatedGroup {
            timestamp: group_start.format("%Y-%m-%dT%H:%M:%S").to_string(),
            files: Vec::new(),
            corrupted: Vec::new(),
        };
        for subband in 0..args.subbands {
            // Each correlator node names its file when it starts writing: a few seconds apart.
            let jitter_s = (rng.next_f64() * (args.jitter + 1.0))
                .floor()
                .min(args.jitter.floor());
            let name_time = group_start + chrono::Duration::seconds(jitter_s as i64);
            let stamp = name_time.format("%Y-%m-%dT%H:%M:%S");
            let final_path = args.input_dir.join(format!("{stamp}_sb{subband:02}.hdf5"));
            let temp_path = args
                .input_dir
                .join(format!("{stamp}_sb{subband:02}_incomplete.hdf5"));
            let spec = SubbandSpec::for_profile(
                args.profile,
                subband,
                start_jd,
                args.seed.wrapping_add(u64::from(group) * 1_000_003),
            );
            let corruption =
                (rng.next_f64() < args.corrupt_rate).then(|| match rng.next_u64() % 3 {
                    0 => Corruption::Truncated,
                    1 => Corruption::WrongLayout,
                    _ => Corruption::Garbage,
                });
            // A symlink planted at either name never redirects the write (see TempFile).
            let temp = TempFile::at(temp_path.clone())?;
            let target = temp.hdf5_path()?;
            match corruption {
                None => write_subband(&target, &spec),
                Some(kind) => write_corrupt(&target, &spec, kind, &mut rng),
            }
            .map_err(|e| e.about(&temp_path))?;
            report.bytes_written += temp.rename_over(&final_path, Durability::RenameOnly)?;
            report.files_written += 1;
            if let Some(kind) = corruption {
                tracing::info!(path = %final_path.display(), ?kind, "wrote deliberately corrupt subband");
                written.corrupted.push((final_path.clone(), kind));
            }
            written.files.push(final_path);
        }
        tracing::info!(group = %written.timestamp, files = written.files.len(), "simulated group written");
        report.groups.push(written);
    }
    report.elapsed_s = started.elapsed().as_secs_f64();
    Ok(report)
}

fn validate(args: &SimulateArgs) -> Result<(), Uvh5Error> {
    let bad = |m: String| Err(Uvh5Error::InvalidArgument(m));
    if args.subbands == 0 || args.subbands > 16 {
        return bad(format!("--subbands must be 1..=16, got {}", args.subbands));
    }
    if !(0.0..=1.0).contains(&args.corrupt_rate) {
        return bad(format!(
            "--corrupt-rate must be within 0..=1, got {}",
            args.corrupt_rate
        ));
    }
    if !args.interval.is_finite() || args.interval < 0.0 {
        return bad(format!("--interval must be >= 0, got {}", args.interval));
    }
    if !args.jitter.is_finite() || args.jitter < 0.0 || args.jitter > 60.0 {
        return bad(format!(
            "--jitter must be within 0..=60 s, got {}",
            args.jitter
        ));
    }
    Ok(())
}

/// Accepts `2025-01-02T03:04:05` (UTC), with optional fraction, `Z` or offset.
fn parse_start(start: Option<&str>) -> Result<chrono::DateTime<chrono::Utc>, Uvh5Error> {
    use chrono::{NaiveDateTime, TimeZone, Utc};
    let Some(text) = start else {
        let now = Utc::now();
        return Ok(Utc
            .timestamp_opt(now.timestamp(), 0)
            .single()
            .unwrap_or(now));
    };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(Utc.from_utc_datetime(&t));
        }
    }
    Err(Uvh5Error::InvalidArgument(format!(
        "--start {text:?} is not an ISO time like 2025-01-02T03:04:05"
    )))
}

fn unix_to_jd(unix_s: f64) -> f64 {
    unix_s / 86_400.0 + UNIX_EPOCH_JD
}

/// Writes one valid UVH5 subband file at `path` (directly; callers that want the
/// correlator's write-then-rename behaviour use [`run`]).
pub fn write_subband(path: &Path, spec: &SubbandSpec) -> Result<(), Uvh5Error> {
    write_subband_inner(path, spec, true)
}

fn write_subband_inner(
    path: &Path,
    spec: &SubbandSpec,
    with_visdata: bool,
) -> Result<(), Uvh5Error> {
    if spec.nants == 0 || spec.ntimes == 0 || spec.nfreqs == 0 || spec.polarizations.is_empty() {
        return Err(Uvh5Error::InvalidArgument(format!(
            "empty subband spec: {spec:?}"
        )));
    }
    let h5 = |context: &str| hdf5_error(path, context);
    let file = File::create(path).map_err(h5("creating file"))?;
    let header = file.create_group("Header").map_err(h5("creating Header"))?;
    write_header(&header, spec).map_err(h5("writing Header"))?;
    let data = file.create_group("Data").map_err(h5("creating Data"))?;
    write_data(&data, spec, with_visdata).map_err(h5("writing Data"))?;
    file.close().map_err(h5("closing file"))
}

/// Antenna positions east/north/up (m) of a T-shaped array like DSA-110's:
/// an east-west arm with a north-south arm from its middle.
fn antenna_enu(nants: usize) -> Vec<[f64; 3]> {
    let ew = nants.div_ceil(3) * 2;
    (0..nants)
        .map(|i| {
            if i < ew {
                [(i as f64 - ew as f64 / 2.0) * 5.75, 0.0, 0.0]
            } else {
                [0.0, -((i - ew + 1) as f64) * 5.75 * 2.0, 0.0]
            }
        })
        .collect()
}

/// East/north/up offsets to ECEF offsets at the array's location (what UVH5's
/// relative `antenna_positions` hold).
fn enu_to_ecef_offset(enu: [f64; 3]) -> [f64; 3] {
    let (lat, lon) = (LATITUDE_DEG.to_radians(), LONGITUDE_DEG.to_radians());
    let [e, n, u] = enu;
    [
        -lon.sin() * e - lat.sin() * lon.cos() * n + lat.cos() * lon.cos() * u,
        lon.cos() * e - lat.sin() * lon.sin() * n + lat.cos() * lon.sin() * u,
        lat.cos() * n + lat.sin() * u,
    ]
}

fn write_header(header: &Group, spec: &SubbandSpec) -> hdf5::Result<()> {
    let nbls = spec.nbls();
    let nblts = spec.nblts();
    let scalar_i64 = |name: &str, value: usize| write_scalar(header, name, &(value as i64));
    let string = |name: &str, value: &str| -> hdf5::Result<()> {
        let fixed = FixedAscii::<256>::from_ascii(value.as_bytes())
            .map_err(|e| hdf5::Error::from(e.to_string()))?;
        header
            .new_dataset::<FixedAscii<256>>()
            .create(name)?
            .write_scalar(&fixed)
    };
    let f64_array = |name: &str, values: &[f64]| -> hdf5::Result<()> {
        header
            .new_dataset_builder()
            .with_data(values)
            .create(name)
            .map(|_| ())
    };
    let i64_array = |name: &str, values: &[i64]| -> hdf5::Result<()> {
        header
            .new_dataset_builder()
            .with_data(values)
            .create(name)
            .map(|_| ())
    };

    string("version", "1.2")?;
    string("telescope_name", "DSA-110")?;
    string("instrument", "DSA-110")?;
    string("telescope_frame", "itrs")?;
    string("vis_units", "uncalib")?;
    string("phase_type", "drift")?;
    string("object_name", "drift")?;
    string(
        "history",
        &format!(
            "Simulated DSA-110 subband sb{:02} written by contimg {} (seed {}).",
            spec.subband,
            env!("CARGO_PKG_VERSION"),
            spec.seed
        ),
    )?;
    write_scalar(header, "latitude", &LATITUDE_DEG)?;
    write_scalar(header, "longitude", &LONGITUDE_DEG)?;
    write_scalar(header, "altitude", &ALTITUDE_M)?;

    scalar_i64("Nants_data", spec.nants)?;
    scalar_i64("Nants_telescope", spec.nants)?;
    scalar_i64("Nbls", nbls)?;
    scalar_i64("Nblts", nblts)?;
    scalar_i64("Nfreqs", spec.nfreqs)?;
    scalar_i64("Npols", spec.polarizations.len())?;
    scalar_i64("Nspws", 1)?;
    scalar_i64("Ntimes", spec.ntimes)?;
    write_scalar(header, "blts_are_rectangular", &true)?;
    write_scalar(header, "time_axis_faster_than_bls", &false)?;

    let enu = antenna_enu(spec.nants);
    let names: Vec<FixedAscii<8>> = (0..spec.nants)
        .map(|i| FixedAscii::<8>::from_ascii(format!("pad{}", i + 1).as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|e| hdf5::Error::from(e.to_string()))?;
    header
        .new_dataset_builder()
        .with_data(&names)
        .create("antenna_names")?;
    let numbers: Vec<i64> = (0..spec.nants as i64).collect();
    i64_array("antenna_numbers", &numbers)?;
    let positions: Vec<f64> = enu.iter().flat_map(|p| enu_to_ecef_offset(*p)).collect();
    header
        .new_dataset_builder()
        .with_data(&ndarray_2d(&positions, spec.nants, 3)?)
        .create("antenna_positions")?;

    // Baseline-time axis: for each integration, every baseline (autos included).
    let mut ant1 = Vec::with_capacity(nblts);
    let mut ant2 = Vec::with_capacity(nblts);
    let mut times = Vec::with_capacity(nblts);
    let mut uvw = Vec::with_capacity(nblts * 3);
    for t in 0..spec.ntimes {
        let time = spec.start_jd + (t as f64 + 0.5) * spec.integration_time_s / 86_400.0;
        for a in 0..spec.nants {
            for b in a..spec.nants {
                ant1.push(a as i64);
                ant2.push(b as i64);
                times.push(time);
                // Unprojected (drift) data: uvw is the east/north/up baseline, ant2 - ant1.
                uvw.extend(enu[b].iter().zip(&enu[a]).map(|(pb, pa)| pb - pa));
            }
        }
    }
    i64_array("ant_1_array", &ant1)?;
    i64_array("ant_2_array", &ant2)?;
    f64_array("time_array", &times)?;
    f64_array("integration_time", &vec![spec.integration_time_s; nblts])?;
    header
        .new_dataset_builder()
        .with_data(&ndarray_2d(&uvw, nblts, 3)?)
        .create("uvw_array")?;

    let freqs: Vec<f64> = (0..spec.nfreqs)
        .map(|c| spec.freq_start_hz + c as f64 * spec.channel_width_hz)
        .collect();
    f64_array("freq_array", &freqs)?;
    f64_array("channel_width", &vec![spec.channel_width_hz; spec.nfreqs])?;
    i64_array("spw_array", &[0])?;
    i64_array("flex_spw_id_array", &vec![0; spec.nfreqs])?;
    i64_array("polarization_array", &spec.polarizations)?;

    // The real correlator records the pointing declination here.
    let extra = header.create_group("extra_keywords")?;
    write_scalar(&extra, "phase_center_dec", &LATITUDE_DEG.to_radians())?;
    Ok(())
}

fn write_scalar<T: H5Type>(group: &Group, name: &str, value: &T) -> hdf5::Result<()> {
    group.new_dataset::<T>().create(name)?.write_scalar(value)
}

fn ndarray_2d(values: &[f64], rows: usize, cols: usize) -> hdf5::Result<ndarray::Array2<f64>> {
    ndarray::Array2::from_shape_vec((rows, cols), values.to_vec())
        .map_err(|e| hdf5::Error::from(e.to_string()))
}

/// Data are written one integration at a time (one chunk each), so memory
/// stays at one integration whatever the profile.
fn write_data(data: &Group, spec: &SubbandSpec, with_visdata: bool) -> hdf5::Result<()> {
    let nbls = spec.nbls();
    let npols = spec.polarizations.len();
    let shape = (spec.nblts(), spec.nfreqs, npols);
    let chunk = (nbls, spec.nfreqs, npols);
    let visdata_name = if with_visdata { "visdata" } else { "vis" };
    let visdata = data
        .new_dataset::<Visibility>()
        .shape(shape)
        .chunk(chunk)
        .create(visdata_name)?;
    let mut flags_builder = data.new_dataset::<bool>().shape(shape).chunk(chunk);
    let mut nsamples_builder = data.new_dataset::<f32>().shape(shape).chunk(chunk);
    if let Some(level) = spec.compression {
        flags_builder = flags_builder.deflate(level);
        nsamples_builder = nsamples_builder.deflate(level);
    }
    let flags = flags_builder.create("flags")?;
    let nsamples = nsamples_builder.create("nsamples")?;

    let per_time = nbls * spec.nfreqs * npols;
    let mut rng = SplitMix64::new(spec.seed);
    let mut vis = vec![Visibility::default(); per_time];
    let mut flag_values = vec![false; per_time];
    let nsample_values = vec![1.0_f32; per_time];
    let autos: Vec<bool> = (0..spec.nants)
        .flat_map(|a| (a..spec.nants).map(move |b| a == b))
        .collect();
    for t in 0..spec.ntimes {
        for (bl, is_auto) in autos.iter().enumerate() {
            for cell in 0..spec.nfreqs * npols {
                let v = &mut vis[bl * spec.nfreqs * npols + cell];
                if *is_auto {
                    // Auto-correlations are real and positive.
                    *v = Visibility {
                        r: 100.0 + rng.next_f32(),
                        i: 0.0,
                    };
                } else {
                    *v = Visibility {
                        r: rng.next_f32() - 0.5,
                        i: rng.next_f32() - 0.5,
                    };
                }
            }
        }
        // A couple of flagged channels, as RFI excision would leave.
        for (i, flag) in flag_values.iter_mut().enumerate() {
            *flag = (i / npols) % spec.nfreqs == (t * 7 + spec.subband as usize) % spec.nfreqs;
        }
        let rows = t * nbls..(t + 1) * nbls;
        let block = (nbls, spec.nfreqs, npols);
        write_rows(&visdata, &vis, block, rows.clone())?;
        write_rows(&flags, &flag_values, block, rows.clone())?;
        write_rows(&nsamples, &nsample_values, block, rows)?;
    }
    Ok(())
}

/// Writes `values` (shaped `block`) to rows `rows` of a 3-d dataset.
fn write_rows<T: H5Type>(
    ds: &hdf5::Dataset,
    values: &[T],
    block: (usize, usize, usize),
    rows: std::ops::Range<usize>,
) -> hdf5::Result<()> {
    let view = ndarray::ArrayView3::from_shape(block, values)
        .map_err(|e| hdf5::Error::from(e.to_string()))?;
    ds.write_slice(&view, (rows, .., ..))
}

/// Writes a broken file of the given kind.
fn write_corrupt(
    path: &Path,
    spec: &SubbandSpec,
    kind: Corruption,
    rng: &mut SplitMix64,
) -> Result<(), Uvh5Error> {
    let out_err = |source| Uvh5Error::Output {
        path: path.to_path_buf(),
        source,
    };
    match kind {
        Corruption::Truncated => {
            write_subband(path, spec)?;
            let len = std::fs::metadata(path).map_err(out_err)?.len();
            let keep = (len as f64 * (0.2 + 0.6 * rng.next_f64())) as u64;
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(keep))
                .map_err(out_err)
        }
        Corruption::WrongLayout => write_subband_inner(path, spec, false),
        Corruption::Garbage => {
            let mut bytes = vec![0_u8; 64 * 1024];
            for chunk in bytes.chunks_mut(8) {
                let v = rng.next_u64().to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
            std::fs::File::create(path)
                .and_then(|mut f| f.write_all(&bytes))
                .map_err(out_err)
        }
    }
}

/// Small, fast, seedable generator (SplitMix64); statistical quality is plenty
/// for noise-like test data and avoids a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1_u32 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_formats() {
        let t = parse_start(Some("2025-01-02T03:04:05")).unwrap();
        assert_eq!(t.to_rfc3339(), "2025-01-02T03:04:05+00:00");
        let t = parse_start(Some("2025-01-02T03:04:05Z")).unwrap();
        assert_eq!(t.timestamp(), 1_735_787_045);
        assert!(parse_start(Some("yesterday")).is_err());
    }

    #[test]
    fn subband_zero_is_the_highest_band() {
        let sb00 = SubbandSpec::for_profile(Profile::Dsa110, 0, 2.46e6, 1);
        let sb15 = SubbandSpec::for_profile(Profile::Dsa110, 15, 2.46e6, 1);
        assert!(sb00.freq_start_hz > sb15.freq_start_hz);
        let sb00_top = sb00.freq_start_hz + 47.5 * CHANNEL_WIDTH_HZ;
        assert!((sb00_top - TOP_OF_BAND_HZ).abs() < 1e-3);
        let sb15_bottom = sb15.freq_start_hz - 0.5 * CHANNEL_WIDTH_HZ;
        assert!((sb15_bottom - 1_311.25e6).abs() < 1e-3);
    }

    #[test]
    fn dsa110_profile_is_about_139_mb() {
        let spec = SubbandSpec::for_profile(Profile::Dsa110, 0, 2.46e6, 1);
        let cells = spec.nblts() * spec.nfreqs * spec.polarizations.len();
        let bytes = cells * (8 + 1 + 4);
        assert!((135e6..145e6).contains(&(bytes as f64)), "{bytes}");
        assert!((spec.ntimes as f64 * spec.integration_time_s - 309.2).abs() < 0.1);
    }

    #[test]
    fn arguments_are_validated() {
        let mut args = SimulateArgs {
            input_dir: PathBuf::from("/nonexistent"),
            groups: 1,
            interval: 0.0,
            jitter: 3.0,
            subbands: 16,
            profile: Profile::Small,
            corrupt_rate: 1.5,
            start: None,
            seed: 1,
        };
        assert!(validate(&args).is_err());
        args.corrupt_rate = 0.1;
        args.subbands = 17;
        assert!(validate(&args).is_err());
        args.subbands = 16;
        validate(&args).unwrap();
    }

    #[test]
    fn enu_conversion_keeps_lengths() {
        let [x, y, z] = enu_to_ecef_offset([3.0, 4.0, 12.0]);
        assert!(((x * x + y * y + z * z).sqrt() - 13.0).abs() < 1e-9);
    }
}
