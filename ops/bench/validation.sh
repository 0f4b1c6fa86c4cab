#!/usr/bin/env bash
# Registration throughput with UVH5 validation in the isolated validator pool vs
# in-process validation, same files, same run (release build).
#   ./ops/bench/validation.sh                         # 250 groups x 16 = 4,000 files
#   CONTIMG_BENCH_GROUPS=1000 ./ops/bench/validation.sh
# Bootstrap of 100,000 files with validation on: CONTIMG_BENCH=bootstrap-validated ./ops/bench/core.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench --bench validation 2>&1 | grep -vE '^\s+(Compiling|Finished|Running)'
