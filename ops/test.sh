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
# After each stage a leak check (ops/testenv/leak-check.sh) fails the run as
# "leaks:<stage>" if a process, harness cgroup, mount or harness temp dir that the
# stage created outlived it.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
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

# Each stage's wall time, printed before the summary (CI runs on 2 cores with a time
# limit: these say where the minutes go).
stage_times=() stage_name="" stage_started=$SECONDS
stage_done() {
  [[ -n $stage_name ]] && stage_times+=("$(printf '%5d s  %s' $((SECONDS - stage_started)) "$stage_name")")
  stage_name=""
}
stage() { stage_done; stage_name=$*; stage_started=$SECONDS; printf '\n==== %s ====\n' "$*"; }

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

# Every process of the run inherits this marker; harnesses that start from a clean
# environment pass it on. The leak check finds what carries it after a stage.
CONTIMG_TEST_RUN=$(cat /proc/sys/kernel/random/uuid)
export CONTIMG_TEST_RUN
leak_snapshot=$log_dir/leak-snapshot.json

leak_begin() { ops/testenv/leak-check.sh snapshot "$leak_snapshot"; }
leak_end() {
  ops/testenv/leak-check.sh check "$leak_snapshot" --reap || failed_stages+=("leaks:$1")
}

# Shell scripts: by shebang (or a shellcheck directive) under ops/ and packaging/.
shell_scripts() {
  local file first
  while IFS= read -r -d '' file; do
    IFS= read -r first <"$file" || true
    if [[ $first =~ ^\#!.*[/\ ](ba|da)?sh([[:space:]]|$) || $first == "# shellcheck shell="* || $file == *.sh ]]; then
      printf '%s\n' "$file"
    fi
  done < <(find ops packaging -type f -print0 | sort -z)
}

# The build enforces the layering (docs/architecture.md); this names the breach.
# forbid PACKAGE CRATE-PREFIX...: PACKAGE's normal dependencies include none of them.
forbid() {
  local package=$1 prefix crate bad=0
  shift
  local deps
  deps=$(cargo tree -q -p "$package" -e normal --prefix none --format '{p}' 2>&1) ||
    { echo "dependency direction: cargo tree -p $package failed: $deps"; return 1; }
  for prefix in "$@"; do
    for crate in $(awk '{print $1}' <<<"$deps" | sort -u | grep -E "^$prefix" || true); do
      echo "dependency direction: $package must not depend on $crate; it does through:"
      cargo tree -q -p "$package" -e normal -i "$crate"
      bad=1
    done
  done
  return "$bad"
}

dependency_direction() {
  local bad=0 cli core
  # Package names from the members' manifests, so a rename does not skip the check.
  read -r cli core < <(cargo metadata -q --no-deps --format-version 1 | python3 -c '
import json, sys
packages = json.load(sys.stdin)["packages"]
def named(suffix):
    return next((p["name"] for p in packages if p["manifest_path"].endswith(suffix)), "-")
print(named("/src/cli/Cargo.toml"), named("/src/core/Cargo.toml"))')
  if [[ $cli == - || $core == - ]]; then
    echo "dependency direction: no workspace members src/cli and src/core"
    return 1
  fi
  forbid "$cli" hdf5 axum || bad=1
  forbid "$core" axum zbus hdf5 || bad=1
  cargo build -q --bin contimgctl || return 1
  if ldd target/debug/contimgctl | grep -i libhdf5; then
    echo "dependency direction: target/debug/contimgctl links libhdf5 (see ldd above)"
    bad=1
  fi
  return "$bad"
}

if [[ " $stages " == *" lint "* ]]; then
  leak_begin
  stage "cargo fmt --all --check"
  cargo fmt --all --check || failed_stages+=("fmt")
  stage "cargo clippy --workspace --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets -- -D warnings || failed_stages+=("clippy")
  stage "shellcheck (every shell script in ops/ and packaging/)"
  mapfile -t scripts < <(shell_scripts)
  echo "${#scripts[@]} scripts"
  shellcheck -x "${scripts[@]}" || failed_stages+=("shellcheck")
  stage "Prometheus rules (promtool check rules, promtool test rules)"
  (cd packaging/prometheus && promtool check rules contimg-rules.yml &&
    promtool test rules contimg-rules.test.yml) || failed_stages+=("promtool")
  stage "unused dependencies (cargo machete, every workspace member)"
  cargo machete || failed_stages+=("unused-deps")
  stage "dependency direction (contimgctl: no hdf5/axum; core: no axum/zbus/hdf5)"
  dependency_direction || failed_stages+=("dependency-direction")
  stage "leak check self-test (it must see a planted leak)"
  ops/testenv/leak-check.sh self-test || failed_stages+=("leak-check-self-test")
  leak_end lint
fi

if [[ " $stages " == *" rust "* ]]; then
  leak_begin
  stage "cargo test (unit + integration)"
  cargo build --workspace --all-targets 2>&1 | tail -3
  cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee "$log_dir/cargo-test.log"
  rc=${PIPESTATUS[0]}
  count_cargo_results "$log_dir/cargo-test.log"
  [[ $rc -eq 0 ]] || failed_stages+=("cargo-test")
  stage "cargo test --doc"
  cargo test --workspace --doc 2>&1 | tee "$log_dir/cargo-doctest.log"
  rc=${PIPESTATUS[0]}
  count_cargo_results "$log_dir/cargo-doctest.log"
  [[ $rc -eq 0 ]] || failed_stages+=("doctest")
  leak_end rust
fi

if [[ " $stages " == *" api-fuzz "* ]]; then
  leak_begin
  stage "API fuzz: schemathesis against the real contimg-api and its OpenAPI document"
  ops/testenv/schemathesis.sh 2>&1 | tee "$log_dir/api-fuzz.log"
  rc=${PIPESTATUS[0]}
  summary=$(grep -E '^api-fuzz: [0-9]+ passed, [0-9]+ failed' "$log_dir/api-fuzz.log" | tail -1)
  f_pass=$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+')
  f_fail=$(grep -oE '[0-9]+ failed' <<<"$summary" | grep -oE '[0-9]+')
  passed=$((passed + ${f_pass:-0})); failed=$((failed + ${f_fail:-1}))
  [[ $rc -eq 0 ]] || failed_stages+=("api-fuzz")
  leak_end api-fuzz
fi

if [[ " $stages " == *" frontend "* ]]; then
  leak_begin
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
  leak_end frontend
fi

if [[ " $stages " == *" e2e "* ]]; then
  leak_begin
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
  leak_end e2e
fi

if [[ " $stages " == *" pkg "* ]]; then
  leak_begin
  stage "packaging: .deb in a booted systemd (nspawn), deploy.sh (process, user manager, system)"
  ops/testenv/pkg-test.sh 2>&1 | tee "$log_dir/pkg.log"
  rc=${PIPESTATUS[0]}
  passed=$((passed + $(grep -c '^ok ' "$log_dir/pkg.log"))); failed=$((failed + $(grep -c '^not ok ' "$log_dir/pkg.log")))
  [[ $rc -eq 0 ]] || failed_stages+=("pkg")
  stage "packaging: deploy.sh --backend docker (private dockerd, image from Debian packages)"
  ops/testenv/docker-deploy-test.sh 2>&1 | tee "$log_dir/docker-deploy.log"
  rc=${PIPESTATUS[0]}
  passed=$((passed + $(grep -c '^ok ' "$log_dir/docker-deploy.log"))); failed=$((failed + $(grep -c '^not ok ' "$log_dir/docker-deploy.log")))
  [[ $rc -eq 0 ]] || failed_stages+=("docker-deploy")
  leak_end pkg
fi

stage_done
echo
echo "stage wall times (total $((SECONDS / 60)) min):"
printf '  %s\n' "${stage_times[@]}"
if ((${#failed_stages[@]})); then
  echo "FAILED stages: ${failed_stages[*]}"
  echo "tests: $passed passed, $((failed > 0 ? failed : 1)) failed"
  exit 1
fi
echo "all stages passed ($stages)"
echo "tests: $passed passed, $failed failed"
