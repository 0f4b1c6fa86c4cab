#!/usr/bin/env bash
# End-to-end test of the dashboard: headless Chromium (Playwright) against the real
# contimg-api, which controls the real worker as a unit of a real, isolated systemd
# user manager (ops/testenv/user-manager.sh), with the simulator feeding UVH5 data.
#
#   ops/testenv/e2e.sh        # builds what is missing, runs `npm run e2e`, cleans up
#
# Needs root (the user-manager harness), chromium, node/npm. Leaves nothing running;
# artifacts (screenshots, traces, logs) stay in frontend/test-results/.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
bin=$root/target/debug

command -v chromium >/dev/null || { echo "e2e: chromium is not installed (ops/install-deps.sh)" >&2; exit 1; }

# Every process this script starts carries this marker: the cleanup's last step
# stops whatever of them is left (units of the user manager are stopped with it).
CONTIMG_E2E_RUN=$(cat /proc/sys/kernel/random/uuid)
export CONTIMG_E2E_RUN
work=$(mktemp -d /tmp/contimg-e2e.XXXXXX)
echo "${CONTIMG_TEST_RUN:-none}" > "$work/.contimg-test-run"  # for leak-check.sh
api_pid=""
sim_pid=""
tests_pid=""
manager_dir=""
# Stops a process group started with setsid (its leader's PID is the group ID):
# the simulator's and Playwright's children (contimg-stream simulate, Chromium)
# go with it even when the leader dies first.
stop_group() {
  local leader=$1
  kill -TERM -- "-$leader" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 -- "-$leader" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$leader" 2>/dev/null
  wait "$leader" 2>/dev/null
}
# shellcheck disable=SC2317,SC2329  # called by the EXIT trap
cleanup() {
  local rc=$?
  set +e
  if [[ -n $tests_pid ]]; then stop_group "$tests_pid"; fi
  if [[ -n $sim_pid ]]; then stop_group "$sim_pid"; fi
  if [[ -n $api_pid ]]; then kill "$api_pid" 2>/dev/null; wait "$api_pid" 2>/dev/null; fi
  if [[ -d $manager_dir ]]; then
    mkdir -p "$root/frontend/test-results"
    cp "$work/state/logs/contimg-stream.log" "$root/frontend/test-results/worker.log" 2>/dev/null || true
    cp "$work/api.log" "$root/frontend/test-results/api.log" 2>/dev/null || true
    "$root/ops/testenv/user-manager.sh" stop "$manager_dir" >/dev/null 2>&1 || true
  fi
  "$root/ops/testenv/leak-check.sh" stop-marked CONTIMG_E2E_RUN
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Long steps run in the background and are waited for: a trapped signal ends the
# wait at once (a foreground child would delay the trap until it exits).
if [[ ! -x $bin/contimg-stream || ! -x $bin/contimg-api || ! -x $bin/contimgctl ]]; then
  cargo build --bins &
  wait $!
fi
if [[ ! -f frontend/dist/index.html ]]; then
  (cd frontend && npm ci --no-audit --no-fund && npm run build) &
  wait $!
fi
if [[ ! -d frontend/node_modules ]]; then
  (cd frontend && npm ci --no-audit --no-fund) &
  wait $!
fi

# Known before `start` returns, so a signal during the start still stops it.
manager_dir=$work/manager
eval "$(ops/testenv/user-manager.sh start "$manager_dir")"
export DBUS_SESSION_BUS_ADDRESS XDG_RUNTIME_DIR

state=$work/state
mkdir -p "$state/logs" "$work/incoming" "$work/output" "$work/scratch"
cat > "$state/streaming.toml" <<TOML
input_dir = "$work/incoming"
output_dir = "$work/output"
scratch_dir = "$work/scratch"
expected_subbands = 4
poll_interval = 1.0
worker_poll_interval = 0.5
monitor_interval = 5.0
incomplete_timeout_s = 4.0
retry_backoff_s = 1.0
# The host's free space must not decide whether the dashboard sees groups complete.
min_free_gb = 0.0
TOML

cat > "$SDTEST_UNIT_DIR/contimg-stream.service" <<UNIT
[Unit]
Description=contimg streaming worker (e2e)
[Service]
Type=notify
NotifyAccess=main
ExecStart=$bin/contimg-stream --state-dir $state
ExecReload=/bin/kill -HUP \$MAINPID
WatchdogSec=30s
Restart=on-failure
RestartSec=1s
StandardOutput=append:$state/logs/contimg-stream.log
StandardError=append:$state/logs/contimg-stream.log
UNIT
systemctl --user daemon-reload

# One failed group for the retry test: 2 of 4 subbands, an hour before the demo data.
systemctl --user start contimg-stream.service
start_failed=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%S)
"$bin/contimgctl" simulate --input-dir "$work/incoming" --groups 1 --subbands 2 --profile small --start "$start_failed" >/dev/null
for _ in $(seq 1 60); do
  failed=$("$bin/contimgctl" --state-dir "$state" --user --json metrics 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["queue_stats"]["failed"])' 2>/dev/null || echo 0)
  [[ $failed -ge 1 ]] && break
  sleep 0.5
done
[[ ${failed:-0} -ge 1 ]] || { echo "e2e: the incomplete group did not fail" >&2; exit 1; }
systemctl --user stop contimg-stream.service

# Demo data keeps arriving while the tests run.
setsid "$bin/contimgctl" simulate --input-dir "$work/incoming" --groups 100 --interval 4 --subbands 4 --profile small \
  >"$work/simulate.log" 2>&1 &
sim_pid=$!

(umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/token")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/contimg-api" --listen "127.0.0.1:$port" --state-dir "$state" --token-file "$work/token" \
  --backend systemd --user --dashboard-dir "$root/frontend/dist" >"$work/api.log" 2>&1 &
api_pid=$!
for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$port/api/streaming/status" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/api/streaming/status" >/dev/null || { cat "$work/api.log" >&2; exit 1; }

# In its own process group, waited for in the background: a signal to this script
# runs the cleanup at once, which stops npm, Playwright and Chromium together.
cd frontend
CONTIMG_API_URL="http://127.0.0.1:$port" CONTIMG_API_TOKEN=$(cat "$work/token") \
  setsid npm run e2e </dev/null &
tests_pid=$!
wait "$tests_pid"
