//! Criterion benchmark of `uvh5::merge` on a simulated 16-subband group of the
//! `small` profile (per-call overhead: validation, header rewrite, chunk copy).
//! The full-size comparison against `cat` and pyuvdata is `ops/bench/uvh5-merge.sh`.

use std::path::PathBuf;

use contimg::uvh5::{self, simulate};
use criterion::{Criterion, criterion_group, criterion_main};

fn simulated_group(dir: &std::path::Path) -> Vec<(u32, PathBuf)> {
    let report = simulate::run(&simulate::SimulateArgs {
        input_dir: dir.to_path_buf(),
        groups: 1,
        interval: 0.0,
        jitter: 0.0,
        subbands: 16,
        profile: simulate::Profile::Small,
        corrupt_rate: 0.0,
        start: Some("2025-01-02T03:04:05".into()),
        seed: 1,
    })
    .expect("simulate a group");
    report.groups[0]
        .files
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u32, p.clone()))
        .collect()
}

fn bench_merge(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = simulated_group(&tmp.path().join("in"));
    let output = tmp.path().join("merged.uvh5");
    let mut group = c.benchmark_group("uvh5");
    group.sample_size(30);
    group.bench_function("merge_small_16_subbands", |b| {
        b.iter(|| uvh5::merge(&inputs, &output).expect("merge"))
    });
    group.bench_function("inspect_small_subband", |b| {
        b.iter(|| uvh5::inspect(&inputs[0].1).expect("inspect"))
    });
    group.finish();
}

criterion_group!(benches, bench_merge);
criterion_main!(benches);
