#!/usr/bin/env bash
# Core benchmarks: queue stats on 1,000,000 groups (vs the original query),
# bootstrap of 100,000 files, rename->pending latency. Release build.
#   ./ops/bench/core.sh            # all three
#   CONTIMG_BENCH=stats ./ops/bench/core.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench --bench core 2>&1 | grep -vE '^\s+(Compiling|Finished|Running)'
