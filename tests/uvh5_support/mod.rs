//! Shared helpers of the `uvh5_*` integration tests: running the Python
//! (pyuvdata/h5py) scripts in `tests/py/` and building fixture groups.
//!
//! Python is required: when `python3` (or `$CONTIMG_PYTHON`) or pyuvdata is
//! missing the tests fail with a message saying so, they never skip.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use contimg::uvh5::simulate::{Profile, SimulateArgs};

/// The interpreter to run: `$CONTIMG_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("CONTIMG_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(name)
}

/// Runs a script from `tests/py/`; returns (success, stdout + stderr).
pub fn run_script(name: &str, args: &[&str]) -> (bool, String) {
    let mut command = Command::new(python());
    command.arg(script(name)).args(args);
    // Another test's in-process merge may hold an HDF5 file open (and flocked):
    // a Python child inheriting it would keep the lock for its whole run.
    contimg::process::inherit_only_stdio(&mut command);
    let output = command.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {} (set CONTIMG_PYTHON to a Python with pyuvdata): {e}",
            python()
        )
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Runs a script that must succeed; returns its stdout + stderr.
pub fn run_script_ok(name: &str, args: &[&str]) -> String {
    let (ok, text) = run_script(name, args);
    assert!(ok, "{name} {args:?} failed:\n{text}");
    text
}

/// Writes a group of pyuvdata-made subband files into `dir` and returns
/// (subband index, path) pairs, sb00 first. `extra` goes to make_fixtures.py.
pub fn pyuvdata_group(dir: &Path, extra: &[&str]) -> Vec<(u32, PathBuf)> {
    let dir_text = dir.to_str().unwrap();
    let mut args = vec![dir_text];
    args.extend_from_slice(extra);
    let out = run_script_ok("make_fixtures.py", &args);
    let paths: Vec<PathBuf> = out
        .lines()
        .filter(|l| l.ends_with(".hdf5"))
        .map(PathBuf::from)
        .collect();
    assert!(!paths.is_empty(), "make_fixtures.py wrote nothing:\n{out}");
    paths.into_iter().map(|p| (subband_of(&p), p)).collect()
}

/// The NN of `..._sbNN.hdf5`.
pub fn subband_of(path: &Path) -> u32 {
    let stem = path.file_stem().unwrap().to_str().unwrap();
    let at = stem.rfind("_sb").unwrap();
    stem[at + 3..at + 5].parse().unwrap()
}

pub fn path_args(paths: &[PathBuf]) -> Vec<&str> {
    paths.iter().map(|p| p.to_str().unwrap()).collect()
}

/// Names of the entries of a directory, sorted.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Simulator arguments for one 16-subband `small` group starting at `start`.
pub fn small_sim_args(dir: &Path, start: &str, seed: u64) -> SimulateArgs {
    SimulateArgs {
        input_dir: dir.to_path_buf(),
        groups: 1,
        interval: 0.0,
        jitter: 3.0,
        subbands: 16,
        profile: Profile::Small,
        corrupt_rate: 0.0,
        start: Some(start.to_string()),
        seed,
    }
}

/// Replaces the scalar integer `Header/<name>` of an open file by `value`.
pub fn replace_header_count(file: &hdf5::File, name: &str, value: i64) {
    let header = file.group("Header").unwrap();
    header.unlink(name).unwrap();
    header
        .new_dataset::<i64>()
        .create(name)
        .unwrap()
        .write_scalar(&value)
        .unwrap();
}
