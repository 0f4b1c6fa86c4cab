//! `uvh5::merge` against pyuvdata's own `fast_concat(..., axis="freq")`, for
//! every storage layout the merge handles, and its refusals.

mod uvh5_support;

use std::path::{Path, PathBuf};

use contimg::uvh5::simulate;
use contimg::uvh5::{self, Uvh5Error};
use uvh5_support::{
    dir_entries, path_args, pyuvdata_group, run_script, small_sim_args, subband_of,
};

/// Merges `inputs` into `out_dir/merged.uvh5` and asserts compare_merge.py
/// finds it identical to fast_concat of the same files.
fn merge_and_compare(inputs: &[(u32, PathBuf)], out_dir: &Path) -> uvh5::MergeReport {
    std::fs::create_dir_all(out_dir).unwrap();
    let output = out_dir.join("merged.uvh5");
    let report = uvh5::merge(inputs, &output).unwrap_or_else(|e| panic!("merge failed: {e}"));
    let mut args = vec![output.to_str().unwrap()];
    let paths: Vec<PathBuf> = inputs.iter().map(|(_, p)| p.clone()).collect();
    args.extend(path_args(&paths));
    let (ok, text) = run_script("compare_merge.py", &args);
    assert!(
        ok,
        "merged file differs from pyuvdata's fast_concat:\n{text}"
    );
    assert!(text.contains("OK:"), "{text}");
    // Only the result is left behind: no temporary file.
    assert_eq!(dir_entries(out_dir), vec!["merged.uvh5".to_string()]);
    assert_eq!(report.bytes_out, std::fs::metadata(&output).unwrap().len());
    report
}

#[test]
fn merge_of_pyuvdata_group_equals_fast_concat() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = pyuvdata_group(&tmp.path().join("in"), &["--subbands", "16"]);
    let report = merge_and_compare(&inputs, &tmp.path().join("out"));
    // Channels ascend inside each subband, so the bands go lowest first: sb15 .. sb00.
    assert_eq!(report.subband_order, (0..16).rev().collect::<Vec<u32>>());
    assert_eq!(report.nfreqs, 16 * 8);
    assert_eq!(report.nblts, 60);
    // pyuvdata's default layout (h5py chunks, lzf flags/nsamples) is copied chunk by chunk.
    assert_eq!(report.methods, vec![uvh5::CopyMethod::ChunkCopy; 3]);
    assert_eq!(report.writer_type, "contimg-merge-chunk-copy");
    assert!(report.total_time_s >= report.load_time_s);
    assert!(report.bytes_in > 0);
}

#[test]
fn inputs_are_ordered_by_frequency_whatever_the_order_given() {
    let tmp = tempfile::tempdir().unwrap();
    let mut inputs = pyuvdata_group(&tmp.path().join("in"), &["--subbands", "5"]);
    inputs.swap(0, 3);
    inputs.swap(1, 4);
    let report = merge_and_compare(&inputs, &tmp.path().join("out"));
    assert_eq!(report.subband_order, vec![4, 3, 2, 1, 0]);
}

#[test]
fn descending_channels_give_a_descending_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = pyuvdata_group(&tmp.path().join("in"), &["--subbands", "4", "--descending"]);
    let report = merge_and_compare(&inputs, &tmp.path().join("out"));
    assert_eq!(report.subband_order, vec![0, 1, 2, 3]);
}

#[test]
fn chunks_straddling_subbands_are_rechunked_through_the_filters() {
    // 6 channels per subband with 4-channel chunks: chunk edges do not fall on
    // subband edges, and visdata is gzip-compressed, flags/nsamples lzf.
    let tmp = tempfile::tempdir().unwrap();
    let inputs = pyuvdata_group(
        &tmp.path().join("in"),
        &[
            "--subbands",
            "4",
            "--nfreqs",
            "6",
            "--chunks",
            "7,4,1",
            "--data-compression",
            "gzip",
        ],
    );
    let report = merge_and_compare(&inputs, &tmp.path().join("out"));
    assert_eq!(report.methods, vec![uvh5::CopyMethod::Rechunk; 3]);
    let merged = hdf5::File::open(tmp.path().join("out/merged.uvh5")).unwrap();
    let visdata = merged.dataset("Data/visdata").unwrap();
    // Filters are kept; the frequency chunk shrinks to divide every subband.
    assert!(
        visdata
            .filters()
            .iter()
            .any(|f| matches!(f, hdf5::filters::Filter::Deflate(_))),
        "{:?}",
        visdata.filters()
    );
    assert_eq!(visdata.chunk(), Some(vec![7, 3, 1]));
}

#[test]
fn contiguous_inputs_are_merged() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = pyuvdata_group(&tmp.path().join("in"), &["--subbands", "3", "--contiguous"]);
    let report = merge_and_compare(&inputs, &tmp.path().join("out"));
    assert_eq!(report.methods, vec![uvh5::CopyMethod::Rechunk; 3]);
}

#[test]
fn simulated_group_merges_like_fast_concat() {
    let tmp = tempfile::tempdir().unwrap();
    let report = simulate::run(&small_sim_args(
        &tmp.path().join("in"),
        "2025-03-04T05:06:07",
        3,
    ))
    .unwrap();
    let inputs: Vec<(u32, PathBuf)> = report.groups[0]
        .files
        .iter()
        .map(|p| (subband_of(p), p.clone()))
        .collect();
    let merged = merge_and_compare(&inputs, &tmp.path().join("out"));
    assert_eq!(merged.methods, vec![uvh5::CopyMethod::ChunkCopy; 3]);
    let meta = uvh5::inspect(&tmp.path().join("out/merged.uvh5")).unwrap();
    assert_eq!(meta.nfreqs, 128);
    assert!(meta.freq_ascending);
}

#[test]
fn mismatched_group_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let four = pyuvdata_group(&tmp.path().join("a"), &["--subbands", "3", "--ntimes", "4"]);
    let three = pyuvdata_group(&tmp.path().join("b"), &["--subbands", "3", "--ntimes", "3"]);
    let inputs = vec![four[0].clone(), three[1].clone(), four[2].clone()];
    let out_dir = tmp.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let err = uvh5::merge(&inputs, &out_dir.join("merged.uvh5")).unwrap_err();
    assert!(matches!(err, Uvh5Error::GroupMismatch { .. }), "{err:?}");
    assert!(
        err.to_string().contains("subband sb01: Ntimes 3 != 4"),
        "{err}"
    );
    assert!(dir_entries(&out_dir).is_empty());
}

#[test]
fn broken_member_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = pyuvdata_group(&tmp.path().join("in"), &["--subbands", "3"]);
    let victim = &inputs[1].1;
    let size = std::fs::metadata(victim).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(victim)
        .unwrap()
        .set_len(size / 2)
        .unwrap();
    let out_dir = tmp.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let output = out_dir.join("merged.uvh5");
    // An older result at the output path survives a failed merge untouched.
    std::fs::write(&output, b"previous").unwrap();
    let err = uvh5::merge(&inputs, &output).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("_sb01.hdf5: truncated"), "{text}");
    assert_eq!(std::fs::read(&output).unwrap(), b"previous");
    assert_eq!(dir_entries(&out_dir), vec!["merged.uvh5".to_string()]);
}

#[test]
fn frequency_overlap_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = pyuvdata_group(&tmp.path().join("a"), &["--subbands", "2"]);
    // Same band again under another subband number.
    let inputs = vec![a[0].clone(), (5, a[0].1.clone()), a[1].clone()];
    let err = uvh5::merge(&inputs, &tmp.path().join("merged.uvh5")).unwrap_err();
    assert!(
        err.to_string().contains("frequency ranges overlap"),
        "{err}"
    );
    assert_eq!(err.offending_subbands(), vec![0, 5]);
}

#[test]
fn output_over_an_input_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = pyuvdata_group(&tmp.path().join("in"), &["--subbands", "2"]);
    let before = std::fs::read(&inputs[1].1).unwrap();
    let err = uvh5::merge(&inputs, &inputs[1].1).unwrap_err();
    assert!(err.to_string().contains("is one of the inputs"), "{err}");
    assert_eq!(std::fs::read(&inputs[1].1).unwrap(), before);
}

#[test]
fn merge_needs_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let err = uvh5::merge(&[], &tmp.path().join("x.uvh5")).unwrap_err();
    assert!(err.to_string().contains("no input subbands"), "{err}");
}
