#!/usr/bin/env bash
# UVH5 merge benchmark on one dsa110-profile group (16 subbands × ~139 MB).
#
# Compares, RUNS times each (default 3, medians reported):
#   cat        cat of the 16 inputs into one file, then fsync of it (the I/O limit
#              for a durable copy; our merge fsyncs before its rename)
#   cat-nosync the same without the fsync (page cache only), for reference
#   contimg    the merge (release build of examples/uvh5_merge), incl. fsync + rename
#   pyuvdata   UVData.read of each file + fast_concat(axis="freq") + write_uvh5
# Peak RSS from /usr/bin/time (%M). Inputs are simulated into a temp dir on the
# same disk as the repo (override with BENCH_DIR) and everything is deleted at
# the end. VERIFY=0 skips the full-size check of our output against pyuvdata.
#
#   ./ops/bench/uvh5-merge.sh
#   RUNS=5 BENCH_DIR=/data/tmp ./ops/bench/uvh5-merge.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-3}
VERIFY=${VERIFY:-1}
PY=${CONTIMG_PYTHON:-python3}
BENCH_PARENT=${BENCH_DIR:-$PWD/target/tmp}
mkdir -p "$BENCH_PARENT"
WORK=$(mktemp -d "$BENCH_PARENT/uvh5-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

cargo build --release --example uvh5_merge 2>&1 | grep -vE '^\s+(Compiling|Blocking)' || true
BIN=target/release/examples/uvh5_merge

echo "simulating one dsa110 group into $WORK/in ..."
/usr/bin/time -f "%e s" "$BIN" simulate --input-dir "$WORK/in" --profile dsa110 --groups 1 \
    --jitter 0 --start 2025-01-02T03:04:05 --seed 1 > "$WORK/simulate.json"
INPUTS=("$WORK"/in/*.hdf5)
BYTES=$(cat "${INPUTS[@]}" | wc -c)
echo "inputs: ${#INPUTS[@]} files, $BYTES bytes"

# timed LABEL CMD... : runs CMD under /usr/bin/time, appends "LABEL seconds maxrss_kib".
timed() {
    local label=$1
    shift
    sync
    if ! /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" > "$WORK/log.$label" 2>&1; then
        cat "$WORK/log.$label"
        exit 1
    fi
    echo "$label $(cat "$WORK/time")" >> "$WORK/results"
    rm -f "$WORK"/out.*
}

for run in $(seq "$RUNS"); do
    echo "run $run/$RUNS"
    # shellcheck disable=SC2016  # $0 and $@ belong to the inner shell
    timed cat-nosync sh -c 'cat "$@" > "$0"' "$WORK/out.cat" "${INPUTS[@]}"
    # shellcheck disable=SC2016  # as above
    timed cat sh -c 'cat "$@" > "$0" && sync "$0"' "$WORK/out.cat" "${INPUTS[@]}"
    timed contimg "$BIN" merge "$WORK/out.uvh5" "${INPUTS[@]}"
    timed pyuvdata "$PY" tests/py/pyuvdata_merge.py "$WORK/out.pyuvdata.uvh5" "${INPUTS[@]}"
done
# Keep one merge report for the record.
"$BIN" merge "$WORK/merged.uvh5" "${INPUTS[@]}" > "$WORK/merge-report.json"
MERGED_BYTES=$(stat -c %s "$WORK/merged.uvh5")

if [ "$VERIFY" = 1 ]; then
    echo "verifying the full-size merge against pyuvdata fast_concat ..."
    "$PY" tests/py/compare_merge.py "$WORK/merged.uvh5" "${INPUTS[@]}"
fi

"$PY" - "$WORK/results" "$BYTES" "$MERGED_BYTES" "$RUNS" <<'PYEOF'
import statistics, sys
results, nbytes, merged_bytes, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rows = {}
for line in open(results):
    label, secs, rss = line.split()
    rows.setdefault(label, []).append((float(secs), int(rss)))
med = {k: statistics.median(s for s, _ in v) for k, v in rows.items()}
rss = {k: max(r for _, r in v) / 1024 for k, v in rows.items()}
print()
print(f"| {'step':<10} | median s (of {runs}) | min-max s   | MB/s in | peak RSS MiB |")
print("|------------|------------------|-------------|---------|--------------|")
for k in ["cat-nosync", "cat", "contimg", "pyuvdata"]:
    lo, hi = min(s for s, _ in rows[k]), max(s for s, _ in rows[k])
    print(
        f"| {k:<10} | {med[k]:16.2f} | {lo:5.2f}-{hi:5.2f} | {nbytes / med[k] / 1e6:7.0f} "
        f"| {rss[k]:12.0f} |"
    )
print()
print("per run (s):", {k: [s for s, _ in v] for k, v in rows.items()})
print()
print(f"input {nbytes / 1e6:.0f} MB in 16 files, merged file {merged_bytes / 1e6:.0f} MB")
print(f"merge throughput / cat+fsync throughput = {med['cat'] / med['contimg']:.2f} (target >= 0.7)")
print(f"merge throughput / cat (no fsync)       = {med['cat-nosync'] / med['contimg']:.2f}")
print(f"pyuvdata time / merge time              = {med['pyuvdata'] / med['contimg']:.1f}x (target >= 3x)")
print(f"merge peak RSS                          = {rss['contimg']:.0f} MiB (target <= 256)")
PYEOF
