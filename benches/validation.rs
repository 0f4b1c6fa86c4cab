//! Registration throughput with UVH5 validation in the isolated validator pool
//! against in-process validation (the worker's behaviour before the pool), on the
//! same files in the same run. Run with `ops/bench/validation.sh` (= `cargo bench
//! --bench validation`). Prints files/s and the ratio; asserts nothing about time.
//!
//! Both sides do what registration does: inspect every file, then register the
//! batch in one transaction in a fresh queue DB. In-process inspects serially (as
//! the worker did, under its queue lock); the pool side uses the worker's pool
//! (2 validators) with the inspection journal in the queue DB.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use contimg::ingest::names::parse_subband_name;
use contimg::queue::{NewFile, Queue, unix_now};
use contimg::uvh5::simulate::{Profile, SimulateArgs, run};
use contimg::worker::validator::{
    InspectRequest, InspectionJournal, MAX_VALIDATORS, VALIDATION_TIMEOUT,
    VALIDATOR_ADDRESS_SPACE_BYTES, ValidatorPool, ValidatorSpec, Verdict,
};

const BATCH: usize = 2000;

fn new_file(path: &Path, meta_json: Option<String>) -> NewFile {
    let name = parse_subband_name(&path.file_name().unwrap().to_string_lossy()).unwrap();
    let metadata = std::fs::metadata(path).unwrap();
    NewFile {
        path: path.to_string_lossy().into_owned(),
        timestamp: name.timestamp,
        subband_idx: name.subband_idx,
        size_bytes: Some(metadata.len()),
        mtime: None,
        meta_json,
    }
}

fn in_process(files: &[PathBuf], db: &Path) -> f64 {
    let mut queue = Queue::open(db).unwrap();
    let start = Instant::now();
    for chunk in files.chunks(BATCH) {
        let batch: Vec<NewFile> = chunk
            .iter()
            .map(|path| {
                let meta = contimg::uvh5::inspect(path).unwrap();
                new_file(path, Some(serde_json::to_string(&meta).unwrap()))
            })
            .collect();
        queue.register_files(&batch, 16, 60.0, unix_now()).unwrap();
    }
    start.elapsed().as_secs_f64()
}

/// For the diagnostic run: what the pool costs without the journal's transactions.
struct NoJournal;

impl InspectionJournal for NoJournal {
    fn step(&self, _: Option<&Path>, _: Option<&InspectRequest>) -> Result<(), String> {
        Ok(())
    }
}

fn pooled(files: &[PathBuf], db: &Path, pool: &mut ValidatorPool, journalled: bool) -> f64 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let queue = Arc::new(Mutex::new(Queue::open(db).unwrap()));
    let start = Instant::now();
    for chunk in files.chunks(BATCH) {
        let requests: Vec<InspectRequest> = chunk
            .iter()
            .map(|path| InspectRequest {
                path: path.clone(),
                size_bytes: None,
                mtime: None,
            })
            .collect();
        let journal: Arc<dyn InspectionJournal> = if journalled {
            queue.clone()
        } else {
            Arc::new(NoJournal)
        };
        let verdicts = runtime.block_on(pool.inspect_all(&requests, journal));
        let batch: Vec<NewFile> = chunk
            .iter()
            .zip(verdicts)
            .map(|(path, verdict)| match verdict {
                Verdict::Valid { meta_json } => new_file(path, Some(meta_json)),
                other => panic!("{}: {other:?}", path.display()),
            })
            .collect();
        queue
            .lock()
            .unwrap()
            .register_files(&batch, 16, 60.0, unix_now())
            .unwrap();
    }
    start.elapsed().as_secs_f64()
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    // `cargo test --benches` runs this in test mode; only measure under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let groups: u32 = std::env::var("CONTIMG_BENCH_GROUPS")
        .ok()
        .and_then(|g| g.parse().ok())
        .unwrap_or(250);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let report = run(&SimulateArgs {
        input_dir: input.clone(),
        groups,
        interval: 0.0,
        jitter: 3.0,
        subbands: 16,
        profile: Profile::Small,
        corrupt_rate: 0.0,
        start: Some("2025-10-13T10:00:00".into()),
        seed: 1,
    })
    .unwrap();
    let files: Vec<PathBuf> = report
        .groups
        .iter()
        .flat_map(|g| g.files.iter().cloned())
        .collect();
    // Warm the page cache so both sides read from memory.
    for file in &files {
        std::hint::black_box(std::fs::read(file).unwrap());
    }
    let spec = ValidatorSpec {
        program: PathBuf::from(env!("CARGO_BIN_EXE_contimg-stream")),
        timeout: VALIDATION_TIMEOUT,
        address_space_bytes: VALIDATOR_ADDRESS_SPACE_BYTES,
    };
    let mut pool = ValidatorPool::new(spec, MAX_VALIDATORS);
    let cold = pooled(
        &files[..16],
        &dir.path().join("cold.sqlite3"),
        &mut pool,
        true,
    );
    let mut inproc = Vec::new();
    let mut isolated = Vec::new();
    let mut unjournalled = Vec::new();
    for round in 0..3 {
        inproc.push(in_process(
            &files,
            &dir.path().join(format!("inproc-{round}.sqlite3")),
        ));
        isolated.push(pooled(
            &files,
            &dir.path().join(format!("pool-{round}.sqlite3")),
            &mut pool,
            true,
        ));
        unjournalled.push(pooled(
            &files,
            &dir.path().join(format!("nojournal-{round}.sqlite3")),
            &mut pool,
            false,
        ));
    }
    let n = files.len() as f64;
    let inproc_rate = n / median(inproc.clone());
    let pool_rate = n / median(isolated.clone());
    println!(
        "registration with validation, {} small-profile files ({} bytes each), 3 alternating rounds:",
        files.len(),
        std::fs::metadata(&files[0]).unwrap().len()
    );
    println!(
        "  in-process (serial, the old path): median {inproc_rate:.0} files/s (rounds {inproc:.3?} s)"
    );
    println!(
        "  isolated pool ({} validators, journalled): median {pool_rate:.0} files/s (rounds {isolated:.3?} s); first 16 files incl. starting the pool {cold:.3} s",
        pool.size()
    );
    println!(
        "  (diagnostic) isolated pool without the journal: median {:.0} files/s (rounds {unjournalled:.3?} s)",
        n / median(unjournalled.clone())
    );
    println!("  ratio pool / in-process: {:.2}x", pool_rate / inproc_rate);
}
