#!/usr/bin/env bash
# Fuzzes the real contimg-api against its own OpenAPI document with schemathesis
# (bounded and seeded) and fails on any server error or any answer the document
# does not describe (status code, content type, headers, body schema).
#
#   ops/testenv/schemathesis.sh            # build, start, fuzz, stop
#
# The daemon runs with the process backend on a throwaway state dir, on a loopback
# port, as `nobody` when started as root: fuzzed start/stop/restart/config requests
# can only touch that dir. Every process it started is killed by PID at the end.
#
# Knobs (environment): CONTIMG_FUZZ_SEED (default 20261129),
# CONTIMG_FUZZ_EXAMPLES (test cases per operation and phase, default 30).
# Prints "api-fuzz: N passed, M failed" (operations) for ops/test.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
seed=${CONTIMG_FUZZ_SEED:-20261129}
examples=${CONTIMG_FUZZ_EXAMPLES:-30}

if ! command -v schemathesis >/dev/null; then
  echo "schemathesis is not installed (ops/install-deps.sh installs it: pip install schemathesis)" >&2
  echo "api-fuzz: 0 passed, 1 failed"
  exit 1
fi
echo "schemathesis: $(schemathesis --version)"

# Every process this script starts carries this marker, so the cleanup can stop
# them all (the cargo build, schemathesis, the daemon and its worker), also when a
# signal arrives mid-run.
CONTIMG_FUZZ_RUN=$(cat /proc/sys/kernel/random/uuid)
export CONTIMG_FUZZ_RUN
leak_check=$(pwd)/ops/testenv/leak-check.sh
work=""
api_pid=""
# shellcheck disable=SC2317,SC2329  # called by the EXIT trap
cleanup() {
  local pid
  if [[ -n $api_pid ]]; then
    kill -TERM "$api_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$api_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$api_pid" 2>/dev/null || true
    wait "$api_pid" 2>/dev/null || true
  fi
  "$leak_check" stop-marked CONTIMG_FUZZ_RUN || true
  [[ -n $work ]] || return 0
  # The process backend's worker outlives the daemon by design: kill, by PID,
  # every process whose command line names this run's directory.
  for pid in $(pgrep -f -- "$work/" || true); do
    if [[ $pid != "$$" ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Long steps run in the background and are waited for: a trapped signal ends the
# wait at once (a foreground child would delay the trap until it exits).
cargo build -q --bin contimg-api --bin contimg-stream &
wait $!

work=$(mktemp -d /tmp/contimg-fuzz.XXXXXX)
echo "${CONTIMG_TEST_RUN:-none}" > "$work/.contimg-test-run"  # for leak-check.sh

mkdir -p "$work"/{bin,state,in,out,scratch,report}
# A copy of the binaries: a concurrent cargo build cannot swap them mid-run, and
# `nobody` can run them.
cp target/debug/contimg-api target/debug/contimg-stream "$work/bin/"
printf 'input_dir = "%s/in"\noutput_dir = "%s/out"\nscratch_dir = "%s/scratch"\nqueue_db = "%s/state/ingest.sqlite3"\nvalidate_uvh5 = false\n' \
  "$work" "$work" "$work" "$work" >"$work/state/streaming.toml"
(umask 077 && head -c 32 /dev/urandom | base64 >"$work/state/api.token")
token=$(cat "$work/state/api.token")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

run_as=()
if [[ $(id -u) -eq 0 ]]; then
  chown -R 65534:65534 "$work"
  chmod 0755 "$work"
  run_as=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
fi
"${run_as[@]}" "$work/bin/contimg-api" --listen "127.0.0.1:$port" --state-dir "$work/state" \
  --backend process --worker-bin "$work/bin/contimg-stream" --control-timeout 20 \
  >"$work/api.log" 2>&1 &
api_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 150); do
  curl -sf --max-time 2 "$base/api/streaming/status" >/dev/null && break
  kill -0 "$api_pid" 2>/dev/null || { cat "$work/api.log" >&2; echo "api-fuzz: 0 passed, 1 failed"; exit 1; }
  sleep 0.2
done

# A first start creates the queue DB, so group lookups answer 404, not 503 "no
# queue DB yet" (documented, but a server error to the fuzzer).
curl -sf --max-time 30 -X POST -H "Authorization: Bearer $token" "$base/api/streaming/start" >/dev/null
for _ in $(seq 100); do [[ -e $work/state/ingest.sqlite3 ]] && break; sleep 0.1; done

# POST /limits answers 501 under the process backend (it has no cgroup to set
# limits on): documented, deliberate, and the only 5xx the fuzz accepts.
cat >"$work/schemathesis.toml" <<'EOF'
[[operations]]
include-path = "/api/streaming/limits"
include-method = "POST"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "501"]
EOF

# Live streams never end, so a request to them cannot complete: the event stream
# is left out, and the log route is fuzzed without `follow=true` (both are
# covered by tests/api_http.rs).
cat >"$work/fuzz_hooks.py" <<'EOF'
import schemathesis


@schemathesis.hook
def filter_query(ctx, query):
    if not query:
        return True
    return str(query.get("follow", "")).lower() not in ("true", "1")
EOF

set +e
# From $work: schemathesis keeps a cache (.schemathesis/) in its working directory.
cd "$work"
PYTHONPATH="$work" SCHEMATHESIS_HOOKS=fuzz_hooks timeout 900 schemathesis --config-file "$work/schemathesis.toml" run "$base/api/openapi.json" \
  --checks all \
  --exclude-checks positive_data_acceptance \
  --exclude-path /api/streaming/events \
  --seed "$seed" \
  --max-examples "$examples" \
  --workers 1 \
  --request-timeout 30 \
  --suppress-health-check all \
  -H "Authorization: Bearer $token" \
  --report junit --report-junit-path "$work/report/junit.xml" \
  --output-truncate false &
wait $!
rc=$?
set -e

# The daemon must still be up and answering after the fuzz.
if ! curl -sf --max-time 5 "$base/api/streaming/status" >/dev/null; then
  echo "the daemon stopped answering during the fuzz:" >&2
  tail -50 "$work/api.log" >&2
  rc=1
fi
if grep -q "panicked" "$work/api.log"; then
  echo "the daemon panicked during the fuzz:" >&2
  grep -A5 "panicked" "$work/api.log" >&2
  rc=1
fi

read -r ops failed < <(python3 - "$work/report/junit.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
try:
    tree = ET.parse(sys.argv[1])
except (OSError, ET.ParseError):
    print(0, 1)
    sys.exit()
cases = tree.getroot().iter("testcase")
total = failed = 0
for case in cases:
    total += 1
    if case.find("failure") is not None or case.find("error") is not None:
        failed += 1
print(total, failed)
EOF
)
if [[ $rc -ne 0 && $failed -eq 0 ]]; then
  failed=1
fi
echo "api-fuzz: $((ops - (failed > ops ? ops : failed))) passed, $failed failed (seed $seed, $examples examples per operation)"
exit "$rc"
