#!/usr/bin/env bash
# Retention: one sweep over 100,000 completed groups (16 files each) as the
# worker runs it, against the plain due SELECT and `find -delete` of the same
# files, then the steady-state hourly sweep. Release build.
#   ./ops/bench/retention.sh
#   CONTIMG_BENCH_GROUPS=10000 CONTIMG_BENCH_FILES=4 ./ops/bench/retention.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench --bench retention 2>&1 | grep -vE '^\s+(Compiling|Finished|Running)'
