//! `uvh5::inspect` and `uvh5::check_group` on files written by pyuvdata during
//! the test run, and on broken files of every kind the worker must reject.

mod uvh5_support;

use std::path::{Path, PathBuf};

use contimg::uvh5::{self, Uvh5Error};
use uvh5_support::{pyuvdata_group, replace_header_count};

fn fixture_group(dir: &Path) -> Vec<(u32, PathBuf)> {
    pyuvdata_group(dir, &["--subbands", "16", "--nfreqs", "8", "--ntimes", "4"])
}

fn reason(path: &Path) -> String {
    match uvh5::inspect(path) {
        Ok(meta) => panic!("{} was accepted: {meta:?}", path.display()),
        Err(e) => e.to_string(),
    }
}

/// A copy of `src` in `dir` under `name`, for damaging.
fn copy_as(src: &Path, dir: &Path, name: &str) -> PathBuf {
    let dst = dir.join(name);
    std::fs::copy(src, &dst).unwrap();
    dst
}

#[test]
fn pyuvdata_files_are_accepted_with_their_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let group = fixture_group(tmp.path());
    assert_eq!(group.len(), 16);
    let mut members = Vec::new();
    for (subband, path) in &group {
        let meta = uvh5::inspect(path).unwrap_or_else(|e| panic!("{e}"));
        // 5 antennas with autos, 4 integrations, 8 channels, XX/YY.
        assert_eq!(meta.nbls, 15);
        assert_eq!(meta.nblts, 60);
        assert_eq!(meta.ntimes, 4);
        assert_eq!(meta.nfreqs, 8);
        assert_eq!(meta.npols, 2);
        assert_eq!(meta.nspws, 1);
        assert_eq!(meta.polarization_array, vec![-5, -6]);
        assert_eq!(meta.data_shape, vec![60, 8, 2]);
        assert_eq!(meta.unique_times_jd.len(), 4);
        assert!(meta.freq_ascending);
        assert!((meta.channel_width_hz - 244_140.625).abs() < 1e-6);
        assert!((meta.integration_time_s - 12.884_901_888).abs() < 1e-9);
        assert!(meta.time_min_jd < meta.time_max_jd);
        assert!((meta.freq_max_hz - meta.freq_min_hz - 7.0 * 244_140.625).abs() < 1e-3);
        assert_eq!(meta.telescope_name.as_deref(), Some("DSA-110-test"));
        assert_eq!(meta.file_size_bytes, std::fs::metadata(path).unwrap().len());
        members.push((*subband, meta));
    }
    // sb00 is the highest band.
    for pair in members.windows(2) {
        assert!(pair[0].1.freq_min_hz > pair[1].1.freq_max_hz);
    }
    uvh5::check_group(&members).unwrap();
    // The metadata round-trips through JSON (the queue stores it that way).
    let json = serde_json::to_string(&members[0].1).unwrap();
    let back: uvh5::SubbandMeta = serde_json::from_str(&json).unwrap();
    assert_eq!(back, members[0].1);
}

#[test]
fn truncated_files_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let group = fixture_group(tmp.path());
    let good = &group[0].1;
    let size = std::fs::metadata(good).unwrap().len();
    for keep in [0, 7, 100, 2048, size / 4, size / 2, size * 9 / 10, size - 1] {
        let path = copy_as(good, tmp.path(), &format!("cut_{keep}.hdf5"));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(keep)
            .unwrap();
        let why = reason(&path);
        assert!(
            why.contains("truncated") || why.contains("not an HDF5 file"),
            "cut at {keep}: {why}"
        );
        if keep >= 100 {
            assert!(why.contains("truncated"), "cut at {keep}: {why}");
        }
    }
}

#[test]
fn random_bytes_are_not_hdf5() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("2025-01-02T03:04:05_sb00.hdf5");
    let mut state = 0x1234_5678_u64;
    let bytes: Vec<u8> = (0..100_000)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 56) as u8
        })
        .collect();
    std::fs::write(&path, bytes).unwrap();
    let err = uvh5::inspect(&path).unwrap_err();
    assert!(matches!(err, Uvh5Error::NotHdf5 { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "2025-01-02T03:04:05_sb00.hdf5: not an HDF5 file"
    );
}

#[test]
fn missing_and_unreadable_paths_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(reason(&tmp.path().join("absent.hdf5")).contains("cannot read"));
    assert!(reason(tmp.path()).contains("not a regular file"));
    let empty = tmp.path().join("empty.hdf5");
    std::fs::write(&empty, b"").unwrap();
    assert_eq!(
        reason(&empty),
        "empty.hdf5: truncated: file is empty (0 bytes)"
    );
}

/// Applies `damage` to a fresh copy of a good file and returns the rejection reason.
fn damaged(good: &Path, dir: &Path, name: &str, damage: impl FnOnce(&hdf5::File)) -> String {
    let path = copy_as(good, dir, name);
    {
        let file = hdf5::File::open_rw(&path).unwrap();
        damage(&file);
    }
    reason(&path)
}

#[test]
fn wrong_layouts_are_rejected_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let group = fixture_group(tmp.path());
    let good = &group[3].1;
    let dir = tmp.path();

    let why = damaged(good, dir, "novis.hdf5", |f| {
        f.unlink("Data/visdata").unwrap()
    });
    assert_eq!(why, "novis.hdf5: not UVH5: missing Data/visdata");

    let why = damaged(good, dir, "nofreq.hdf5", |f| {
        f.unlink("Header/freq_array").unwrap()
    });
    assert_eq!(why, "nofreq.hdf5: not UVH5: missing Header/freq_array");

    let why = damaged(good, dir, "nodata.hdf5", |f| f.unlink("Data").unwrap());
    assert_eq!(why, "nodata.hdf5: not UVH5: missing group Data");

    let why = damaged(good, dir, "badshape.hdf5", |f| {
        f.unlink("Data/flags").unwrap();
        f.group("Data")
            .unwrap()
            .new_dataset::<bool>()
            .shape((60, 7, 2))
            .create("flags")
            .unwrap();
    });
    assert_eq!(
        why,
        "badshape.hdf5: bad UVH5 layout: Data/flags has shape [60, 7, 2] but Data/visdata has [60, 8, 2]"
    );

    let why = damaged(good, dir, "nfreqs.hdf5", |f| {
        replace_header_count(f, "Nfreqs", 9)
    });
    assert!(
        why.starts_with(
            "nfreqs.hdf5: bad UVH5 layout: Header/freq_array has shape [8], expected [9]"
        ),
        "{why}"
    );

    let why = damaged(good, dir, "ntimes.hdf5", |f| {
        replace_header_count(f, "Ntimes", 5)
    });
    assert_eq!(
        why,
        "ntimes.hdf5: bad UVH5 layout: Ntimes is 5 but time_array holds 4 distinct times"
    );

    let why = damaged(good, dir, "floatvis.hdf5", |f| {
        f.unlink("Data/visdata").unwrap();
        f.group("Data")
            .unwrap()
            .new_dataset::<f32>()
            .shape((60, 8, 2))
            .create("visdata")
            .unwrap();
    });
    assert!(why.contains("Data/visdata should be complex"), "{why}");

    // Valid HDF5 that has nothing to do with UVH5.
    let plain = dir.join("plain.hdf5");
    {
        let f = hdf5::File::create(&plain).unwrap();
        f.new_dataset::<f64>().shape(10).create("x").unwrap();
    }
    assert_eq!(reason(&plain), "plain.hdf5: not UVH5: missing group Header");
}

#[test]
fn corrupted_bytes_never_panic() {
    // Flip bytes all over a valid file: inspect must answer Ok or Err, never panic.
    let tmp = tempfile::tempdir().unwrap();
    let group = pyuvdata_group(tmp.path(), &["--subbands", "1"]);
    let good = std::fs::read(&group[0].1).unwrap();
    let path = tmp.path().join("flipped.hdf5");
    let mut state = 42_u64;
    let mut rejected = 0;
    for round in 0..150 {
        let mut bytes = good.clone();
        for _ in 0..(1 + round % 4) {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1442695040888963407);
            let at = (state >> 33) as usize % bytes.len();
            bytes[at] ^= 1 << ((state >> 20) % 8);
        }
        std::fs::write(&path, &bytes).unwrap();
        if uvh5::inspect(&path).is_err() {
            rejected += 1;
        }
    }
    // Most flips land in raw data (accepted); some hit metadata (rejected).
    assert!(rejected < 150);
}

#[test]
fn group_with_mismatched_shapes_is_rejected_naming_subbands() {
    let tmp = tempfile::tempdir().unwrap();
    let four = pyuvdata_group(&tmp.path().join("a"), &["--subbands", "4", "--ntimes", "4"]);
    let three = pyuvdata_group(&tmp.path().join("b"), &["--subbands", "4", "--ntimes", "3"]);
    // sb01 and sb02 come from the 3-integration set.
    let members: Vec<_> = [&four[0], &three[1], &three[2], &four[3]]
        .iter()
        .map(|(sb, path)| (*sb, uvh5::inspect(path).unwrap()))
        .collect();
    let err = uvh5::check_group(&members).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("subbands sb01, sb02: Ntimes 3 != 4"),
        "{text}"
    );
    assert!(text.contains("Nblts 45 != 60"), "{text}");
    assert_eq!(err.offending_subbands(), vec![1, 2]);
}
