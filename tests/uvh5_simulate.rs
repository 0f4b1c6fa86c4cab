//! The correlator simulator: names, pacing, corruption, and files pyuvdata reads.

mod uvh5_support;

use std::path::PathBuf;
use std::time::Instant;

use contimg::uvh5::simulate::{self, Corruption, SimulateArgs};
use contimg::uvh5::{self, Uvh5Error};
use uvh5_support::{dir_entries, path_args, run_script_ok, small_sim_args, subband_of};

fn args(dir: &std::path::Path) -> SimulateArgs {
    small_sim_args(dir, "2025-01-02T03:04:05", 7)
}

#[test]
fn simulated_group_is_valid_uvh5_for_pyuvdata_and_for_us() {
    let tmp = tempfile::tempdir().unwrap();
    let report = simulate::run(&args(tmp.path())).unwrap();
    assert_eq!(report.groups.len(), 1);
    let files = &report.groups[0].files;
    assert_eq!(files.len(), 16);
    assert_eq!(report.files_written, 16);
    assert!(report.groups[0].corrupted.is_empty());

    // Correlator-style names, jittered by at most --jitter seconds, no temp files left.
    let names = dir_entries(tmp.path());
    assert_eq!(names.len(), 16, "{names:?}");
    for name in &names {
        assert!(!name.contains("incomplete"), "{name}");
        let stamp = &name[..19];
        let t = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S").unwrap();
        let start =
            chrono::NaiveDateTime::parse_from_str("2025-01-02T03:04:05", "%Y-%m-%dT%H:%M:%S")
                .unwrap();
        let offset = (t - start).num_seconds();
        assert!((0..=3).contains(&offset), "{name}");
        assert!(
            name.ends_with(".hdf5") && name[19..].starts_with("_sb"),
            "{name}"
        );
    }

    // pyuvdata reads every file and its full check passes without a single warning.
    let out = run_script_ok("check_readable.py", &{
        let mut a = vec!["--strict"];
        a.extend(path_args(files));
        a
    });
    assert_eq!(
        out.lines().filter(|l| l.contains("\"Nfreqs\": 8")).count(),
        16,
        "{out}"
    );

    // And our own reader agrees; the group is consistent with sb00 on top.
    let members: Vec<_> = files
        .iter()
        .map(|p| (subband_of(p), uvh5::inspect(p).unwrap()))
        .collect();
    uvh5::check_group(&members).unwrap();
    let sb00 = &members.iter().find(|(sb, _)| *sb == 0).unwrap().1;
    assert!(
        members
            .iter()
            .all(|(_, m)| m.freq_max_hz <= sb00.freq_max_hz)
    );
    assert!((sb00.freq_max_hz - (1_498.75e6 - 0.5 * 244_140.625)).abs() < 1e-3);
    assert_eq!(sb00.telescope_name.as_deref(), Some("DSA-110"));
}

#[test]
fn groups_follow_each_other_in_observation_time_and_wall_clock_pace() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = args(tmp.path());
    a.groups = 3;
    a.subbands = 2;
    a.interval = 0.4;
    a.jitter = 0.0;
    let started = Instant::now();
    let report = simulate::run(&a).unwrap();
    assert!(
        started.elapsed().as_secs_f64() >= 0.8,
        "groups were not paced"
    );
    let stamps: Vec<&str> = report.groups.iter().map(|g| g.timestamp.as_str()).collect();
    // Groups follow the correlator's ~309 s cadence even in the small profile.
    assert_eq!(
        stamps,
        vec![
            "2025-01-02T03:04:05",
            "2025-01-02T03:09:14",
            "2025-01-02T03:14:23"
        ]
    );
    let first = uvh5::inspect(&report.groups[0].files[0]).unwrap();
    let second = uvh5::inspect(&report.groups[1].files[0]).unwrap();
    assert!(second.time_min_jd > first.time_max_jd);
}

#[test]
fn corrupt_files_are_written_and_rejected_by_inspect() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = args(tmp.path());
    a.corrupt_rate = 1.0;
    a.groups = 2;
    let report = simulate::run(&a).unwrap();
    let corrupted: Vec<(PathBuf, Corruption)> = report
        .groups
        .iter()
        .flat_map(|g| g.corrupted.clone())
        .collect();
    assert_eq!(corrupted.len(), 32);
    let mut kinds_seen = std::collections::HashSet::new();
    for (path, kind) in corrupted {
        kinds_seen.insert(format!("{kind:?}"));
        let err = uvh5::inspect(&path).unwrap_err();
        match kind {
            Corruption::Truncated => {
                assert!(matches!(err, Uvh5Error::Truncated { .. }), "{err}")
            }
            Corruption::WrongLayout => {
                assert!(err.to_string().ends_with("missing Data/visdata"), "{err}")
            }
            Corruption::Garbage => assert!(matches!(err, Uvh5Error::NotHdf5 { .. }), "{err}"),
        }
    }
    assert_eq!(kinds_seen.len(), 3, "{kinds_seen:?}");
}

#[test]
fn some_files_corrupted_at_a_partial_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = args(tmp.path());
    a.corrupt_rate = 0.25;
    a.groups = 2;
    let report = simulate::run(&a).unwrap();
    let bad: usize = report.groups.iter().map(|g| g.corrupted.len()).sum();
    assert!((1..32).contains(&bad), "{bad} of 32 corrupted");
    for group in &report.groups {
        for file in &group.files {
            let is_bad = group.corrupted.iter().any(|(p, _)| p == file);
            assert_eq!(uvh5::inspect(file).is_err(), is_bad, "{}", file.display());
        }
    }
}

#[test]
fn invalid_arguments_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = args(tmp.path());
    a.start = Some("not a time".into());
    let err = simulate::run(&a).unwrap_err();
    assert!(err.to_string().contains("--start"), "{err}");
    a.start = None;
    a.subbands = 0;
    assert!(simulate::run(&a).is_err());
}
