#!/usr/bin/env bash
# ctl-status.sh — `contimgctl status --json` (D-Bus + cgroup metrics + queue stats)
# against `systemctl --user show` and `systemctl --user status` for the same unit,
# in one hyperfine run against an isolated test user manager running the real
# worker (ops/testenv/user-manager.sh). Needs root, systemd, dbus, hyperfine and a
# release build (`cargo build --release --bin contimgctl --bin contimg-stream`).
#
# Usage: ops/bench/ctl-status.sh [--runs N] [--export-markdown FILE] [--export-json FILE]
# (the JSON export has the medians; the table shows means)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
RUNS=200
EXPORT=""
EXPORT_JSON=""
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --export-markdown) EXPORT=$2; shift 2 ;;
        --export-json) EXPORT_JSON=$2; shift 2 ;;
        *) echo "usage: $0 [--runs N] [--export-markdown FILE] [--export-json FILE]" >&2; exit 2 ;;
    esac
done
PROFILE=${PROFILE:-release}
CTL="$ROOT/target/$PROFILE/contimgctl"
WORKER="$ROOT/target/$PROFILE/contimg-stream"
if [ ! -x "$CTL" ] || [ ! -x "$WORKER" ]; then
    echo "build first: cargo build --release --bin contimgctl --bin contimg-stream" >&2
    exit 1
fi
command -v hyperfine >/dev/null || { echo "hyperfine not installed" >&2; exit 1; }

WORK=$(mktemp -d /tmp/ctlbench.XXXXXX)
MANAGER_DIR=""
cleanup() {
    if [ -n "$MANAGER_DIR" ]; then "$ROOT/ops/testenv/user-manager.sh" stop "$MANAGER_DIR" || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

STATE="$WORK/state"
mkdir -p "$STATE" "$WORK/in" "$WORK/out" "$WORK/scratch"
cat > "$STATE/streaming.toml" <<TOML
input_dir = "$WORK/in"
output_dir = "$WORK/out"
scratch_dir = "$WORK/scratch"
queue_db = "$STATE/ingest.sqlite3"
validate_uvh5 = false
TOML
eval "$("$ROOT/ops/testenv/user-manager.sh" start)"
MANAGER_DIR=$SDTEST_DIR
# The shipped unit, with the release worker and the temp state dir.
sed -e "s|^ExecStart=.*|ExecStart=$WORKER --state-dir $STATE|" \
    -e "s|^Environment=.*|Environment=CONTIMG_STATE_DIR=$STATE|" \
    -e '/^User=/d' -e '/^Group=/d' -e '/^StateDirectory=/d' \
    -e "s|^\[Service\]|[Service]\nStandardError=append:$WORK/worker.log|" \
    -e 's|^WantedBy=.*|WantedBy=default.target|' \
    systemd/contimg-stream.service > "$SDTEST_UNIT_DIR/contimg-stream.service"
systemctl --user daemon-reload
"$CTL" --user --state-dir "$STATE" start
# A few groups in the queue so the stats query does real work.
for i in $(seq 0 20); do
    ts=$(date -u -d "@$((1764064800 + i * 309))" +%Y-%m-%dT%H:%M:%S)
    echo x > "$WORK/in/${ts}_sb00.hdf5"
done
sleep 2
"$CTL" --user --state-dir "$STATE" status

export NO_COLOR=1 SYSTEMD_COLORS=0 SYSTEMD_PAGER=cat
args=(--warmup 10 --runs "$RUNS" -N --style basic)
[ -n "$EXPORT" ] && args+=(--export-markdown "$EXPORT")
[ -n "$EXPORT_JSON" ] && args+=(--export-json "$EXPORT_JSON")
hyperfine "${args[@]}" \
    -n "contimgctl status --json" "$CTL --user --state-dir $STATE status --json" \
    -n "systemctl --user show contimg-stream" "systemctl --user show contimg-stream" \
    -n "systemctl --user status contimg-stream" "systemctl --user status contimg-stream --no-pager"
"$CTL" --user --state-dir "$STATE" stop >/dev/null
