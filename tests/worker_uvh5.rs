//! The worker with real UVH5 data: simulator files (some corrupted) flow through
//! validation and the builtin merge converter; pyuvdata reads what it wrote.

mod common;

use std::time::Duration;

use common::worker::{WorkerEnv, wait_until};
use contimg::queue::GroupState;
use contimg::uvh5::simulate::{Profile, SimulateArgs, run};

fn python() -> String {
    std::env::var("CONTIMG_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

#[test]
fn good_groups_merge_while_corrupt_files_are_rejected() {
    let env = WorkerEnv::new();
    env.write_config("expected_subbands = 4\nvalidate_uvh5 = true\nincomplete_timeout_s = 3.0\nuse_subprocess = true\n[converter]\nkind = \"builtin\"\n");
    let worker = env.spawn();
    assert!(
        wait_until(Duration::from_secs(10), || worker.log().contains("ready")),
        "{}",
        worker.log()
    );

    // Three good groups, then one group with some corrupted members.
    let good = run(&SimulateArgs {
        input_dir: env.input_dir.clone(),
        groups: 3,
        interval: 0.0,
        jitter: 3.0,
        subbands: 4,
        profile: Profile::Small,
        corrupt_rate: 0.0,
        start: Some("2025-10-13T10:00:00".into()),
        seed: 7,
    })
    .expect("simulate good groups");
    let bad = run(&SimulateArgs {
        input_dir: env.input_dir.clone(),
        groups: 1,
        interval: 0.0,
        jitter: 3.0,
        subbands: 4,
        profile: Profile::Small,
        corrupt_rate: 0.5,
        start: Some("2025-10-13T12:00:00".into()),
        seed: 11,
    })
    .expect("simulate a damaged group");
    let corrupted = bad.groups[0].corrupted.len();
    assert!(
        corrupted >= 1,
        "seed 11 should corrupt at least one file: {bad:?}"
    );
    // A stray file that is not HDF5 at all under a valid name.
    std::fs::write(
        env.input_dir.join("2025-10-13T14:00:00_sb00.hdf5"),
        b"not hdf5",
    )
    .unwrap();

    let settled = wait_until(Duration::from_secs(60), || {
        env.count(GroupState::Completed) == 3 && env.count(GroupState::Failed) == 1
    });
    assert!(settled, "{:?}\n{}", env.stats(), worker.log());
    let reader = env.reader();
    let rejected = reader.rejected_files(100).unwrap();
    assert_eq!(rejected.len(), corrupted + 1, "{rejected:?}");
    for file in &rejected {
        assert!(!file.reason.is_empty());
    }
    assert!(
        rejected
            .iter()
            .any(|r| r.reason.contains("not an HDF5 file")),
        "{rejected:?}"
    );
    // The damaged group failed as incomplete, naming what is missing.
    let failed = reader
        .groups(&contimg::queue::GroupFilter {
            state: Some(GroupState::Failed),
            limit: Some(5),
            before: None,
        })
        .unwrap();
    assert!(
        failed[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("missing sb"),
        "{failed:?}"
    );

    let outputs: Vec<_> = good
        .groups
        .iter()
        .map(|g| {
            let detail = reader
                .groups(&contimg::queue::GroupFilter {
                    state: Some(GroupState::Completed),
                    limit: Some(10),
                    before: None,
                })
                .unwrap();
            let group = detail
                .into_iter()
                .find(|d| d.group_id.starts_with(&g.timestamp[..15]))
                .expect("completed group for each simulated one");
            let path = std::path::PathBuf::from(group.output_path.expect("output path recorded"));
            assert!(path.exists(), "{}", path.display());
            path
        })
        .collect();
    // Per-file metadata was stored for the dashboard.
    let some = reader.groups(&Default::default()).unwrap();
    let detail = reader
        .group(
            &some
                .iter()
                .find(|g| g.state == GroupState::Completed)
                .unwrap()
                .group_id,
        )
        .unwrap()
        .unwrap();
    assert!(detail.files.iter().all(|f| {
        f.meta
            .as_ref()
            .is_some_and(|m| m["nfreqs"].as_u64().is_some())
    }));
    assert_eq!(
        detail
            .timings
            .unwrap()
            .writer_type
            .as_deref()
            .map(|w| w.starts_with("contimg-merge")),
        Some(true)
    );

    let checked = std::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/check_readable.py"
        ))
        .args(&outputs)
        .output()
        .expect("python3 (with pyuvdata) is required for this test");
    assert!(
        checked.status.success(),
        "pyuvdata rejected the merged output: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert_eq!(worker.stop(), Some(0));
}
