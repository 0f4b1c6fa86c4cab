#!/usr/bin/env bash
# Runs every test of contimg: formatting, lints, Rust unit + integration tests
# (real SQLite, real systemd user manager, real dockerd, real UVH5 via pyuvdata),
# the dashboard's unit tests and build, and its end-to-end tests in Chromium.
#
#   ./ops/test.sh              # everything
#   ./ops/test.sh --install    # install system/Python packages first (CI does this)
#   CONTIMG_TEST_STAGES="rust" ./ops/test.sh   # only some stages: lint rust api-fuzz frontend e2e pkg
#
# Integration tests need root (cgroups, mount namespaces) as on the CI machine.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

install=false
[[ ${CI:-} == true ]] && install=true
for arg in "$@"; do
  case $arg in
    --install) install=true ;;
    *) echo "usage: $0 [--install]" >&2; exit 2 ;;
  esac
done
stages=${CONTIMG_TEST_STAGES:-"lint rust api-fuzz frontend e2e pkg"}

log_dir=${CONTIMG_TEST_LOGS:-$root/target/test-logs}
mkdir -p "$log_dir"
failed_stages=()
passed=0
failed=0

stage() { printf '\n==== %s ====\n' "$*"; }

count_cargo_results() {
  # Sum "test result: ok. N passed; M failed" lines of a cargo test log.
  local file=$1 p f
  p=$(grep -oE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$file" | awk '{s+=$4} END {print s+0}')
  f=$(grep -oE '[0-9]+ failed;' "$file" | awk '{s+=$1} END {print s+0}')
  passed=$((passed + p)); failed=$((failed + f))
}

if $install; then
  stage "installing dependencies"
  ./ops/install-deps.sh || { echo "dependency installation failed" >&2; exit 1; }
fi

if [[ " $stages " == *" lint "* ]]; then
  stage "cargo fmt --check"
  cargo fmt --check || failed_stages+=("fmt")
  stage "cargo clippy --all-targets -- -D warnings"
  cargo clippy --all-targets -- -D warnings || failed_stages+=("clippy")
fi

if [[ " $stages " == *" rust "* ]]; then
  stage "cargo test (unit + integration)"
  cargo build --all-targets 2>&1 | tail -3
  cargo test --all-targets --no-fail-fast 2>&1 | tee "$log_dir/cargo-test.log"
  rc=${PIPESTATUS[0]}
  count_cargo_results "$log_dir/cargo-test.log"
  [[ $rc -eq 0 ]] || failed_stages+=("cargo-test")
  stage "cargo test --doc"
  cargo test --doc 2>&1 | tee "$log_dir/cargo-doctest.log"
  rc=${PIPESTATUS[0]}
  count_cargo_results "$log_dir/cargo-doctest.log"
  [[ $rc -eq 0 ]] || failed_stages+=("doctest")
fi

if [[ " $stages " == *" api-fuzz "* ]]; then
  stage "API fuzz: schemathesis against the real contimg-api and its OpenAPI document"
  ops/testenv/schemathesis.sh 2>&1 | tee "$log_dir/api-fuzz.log"
  rc=${PIPESTATUS[0]}
  summary=$(grep -E '^api-fuzz: [0-9]+ passed, [0-9]+ failed' "$log_dir/api-fuzz.log" | tail -1)
  f_pass=$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+')
  f_fail=$(grep -oE '[0-9]+ failed' <<<"$summary" | grep -oE '[0-9]+')
  passed=$((passed + ${f_pass:-0})); failed=$((failed + ${f_fail:-1}))
  [[ $rc -eq 0 ]] || failed_stages+=("api-fuzz")
fi

if [[ " $stages " == *" frontend "* ]]; then
  stage "frontend: npm ci, lint, typecheck, unit tests, build"
  (
    cd frontend &&
      npm ci --no-audit --no-fund &&
      npm run lint &&
      npm run typecheck &&
      npm test 2>&1 | tee "$log_dir/vitest.log" && test "${PIPESTATUS[0]}" -eq 0 &&
      npm run build
  )
  rc=$?
  # vitest colours its summary even into a pipe; strip the escapes before counting.
  summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log_dir/vitest.log" 2>/dev/null | grep -E '^ *Tests +' | tail -1)
  v_pass=$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+')
  v_fail=$(grep -oE '[0-9]+ failed' <<<"$summary" | grep -oE '[0-9]+')
  passed=$((passed + ${v_pass:-0})); failed=$((failed + ${v_fail:-0}))
  [[ $rc -eq 0 ]] || failed_stages+=("frontend")
fi

if [[ " $stages " == *" e2e "* ]]; then
  if [[ -x ops/testenv/e2e.sh ]]; then
    stage "dashboard end-to-end (Chromium, real API, real systemd user manager)"
    ops/testenv/e2e.sh 2>&1 | tee "$log_dir/e2e.log"
    rc=${PIPESTATUS[0]}
    e_pass=$(grep -oE '[0-9]+ passed' "$log_dir/e2e.log" | tail -1 | grep -oE '[0-9]+')
    e_fail=$(grep -oE '[0-9]+ failed' "$log_dir/e2e.log" | tail -1 | grep -oE '[0-9]+')
    passed=$((passed + ${e_pass:-0})); failed=$((failed + ${e_fail:-0}))
    [[ $rc -eq 0 ]] || failed_stages+=("e2e")
  else
    echo "e2e: ops/testenv/e2e.sh is missing" >&2
    failed_stages+=("e2e-missing")
  fi
fi

if [[ " $stages " == *" pkg "* ]]; then
  stage "packaging: .deb in a booted systemd (nspawn), deploy.sh (process, user manager, system)"
  ops/testenv/pkg-test.sh 2>&1 | tee "$log_dir/pkg.log"
  rc=${PIPESTATUS[0]}
  passed=$((passed + $(grep -c '^ok ' "$log_dir/pkg.log"))); failed=$((failed + $(grep -c '^not ok ' "$log_dir/pkg.log")))
  [[ $rc -eq 0 ]] || failed_stages+=("pkg")
fi

echo
if ((${#failed_stages[@]})); then
  echo "FAILED stages: ${failed_stages[*]}"
  echo "tests: $passed passed, $((failed > 0 ? failed : 1)) failed"
  exit 1
fi
echo "all stages passed ($stages)"
echo "tests: $passed passed, $failed failed"
