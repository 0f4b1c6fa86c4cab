#!/usr/bin/env bash
# Benchmark contimg-api with wrk: GET /api/streaming/status and /metrics against
# the static baseline handler (/api/bench/static, enabled by --bench-routes) in
# the same binary; then RSS after 1,000,000 requests.
#
# Usage: ops/bench/api-wrk.sh [DURATION_SECONDS]   (release build; process backend,
# worker running, on a throwaway state dir; loopback only)
set -euo pipefail
cd "$(dirname "$0")/../.."
duration="${1:-15}"
connections=64
threads=2
port="${PORT:-18911}"
cargo build --release --bin contimg-api --bin contimg-stream >/dev/null
root="$(mktemp -d)"
api_pid=""
cleanup() {
  if [ -n "$api_pid" ]; then
    curl -s -X POST -H "Authorization: Bearer bench-token-0123456789" "http://127.0.0.1:$port/api/streaming/stop" >/dev/null || true
    kill "$api_pid" 2>/dev/null || true
    wait "$api_pid" 2>/dev/null || true
  fi
  rm -rf "$root"
}
trap cleanup EXIT
mkdir -p "$root/state" "$root/in" "$root/out" "$root/scratch"
printf 'input_dir = "%s/in"\noutput_dir = "%s/out"\nscratch_dir = "%s/scratch"\nvalidate_uvh5 = false\n' \
  "$root" "$root" "$root" > "$root/state/streaming.toml"
(umask 077 && echo bench-token-0123456789 > "$root/state/api.token")  # the daemon refuses loose modes and short tokens
./target/release/contimg-api --state-dir "$root/state" --listen "127.0.0.1:$port" \
  --backend process --worker-bin ./target/release/contimg-stream --bench-routes \
  >"$root/api.log" 2>&1 &
api_pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/api/streaming/status" >/dev/null && break
  sleep 0.1
done
curl -sf -X POST -H "Authorization: Bearer bench-token-0123456789" "http://127.0.0.1:$port/api/streaming/start" >/dev/null
sleep 2

run() { # path -> "requests_per_sec p99_ms total_requests"
  local out
  out="$(wrk -t"$threads" -c"$connections" -d"${duration}s" --latency "http://127.0.0.1:$port$1")"
  local rps p99 total
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
  total="$(awk '/requests in/ {print $1}' <<<"$out")"
  # normalise p99 to ms
  case "$p99" in
    *us) p99="$(awk -v v="${p99%us}" 'BEGIN {printf "%.3f", v / 1000}')" ;;
    *ms) p99="${p99%ms}" ;;
    *s) p99="$(awk -v v="${p99%s}" 'BEGIN {printf "%.3f", v * 1000}')" ;;
  esac
  echo "$rps $p99 $total"
}

read -r static_rps static_p99 static_n <<<"$(run /api/bench/static)"
read -r status_rps status_p99 status_n <<<"$(run /api/streaming/status)"
read -r metrics_rps metrics_p99 metrics_n <<<"$(run /metrics)"
served=$((static_n + status_n + metrics_n))
# Top up to 1,000,000 requests in total before measuring RSS.
while [ "$served" -lt 1000000 ]; do
  read -r _ _ n <<<"$(run /api/streaming/status)"
  served=$((served + n))
done
rss_kb="$(awk '/VmRSS/ {print $2}' "/proc/$api_pid/status")"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo "connections=$connections threads=$threads duration=${duration}s (wrk), release build, $(nproc) cores"
printf '%-24s %12s %10s %8s\n' endpoint req/s p99_ms ratio
printf '%-24s %12s %10s %8s\n' /api/bench/static "$static_rps" "$static_p99" 1.00
printf '%-24s %12s %10s %8s\n' /api/streaming/status "$status_rps" "$status_p99" "$(ratio "$status_rps" "$static_rps")"
printf '%-24s %12s %10s %8s\n' /metrics "$metrics_rps" "$metrics_p99" "$(ratio "$metrics_rps" "$static_rps")"
echo "requests served: $served; RSS: $((rss_kb / 1024)) MB ($rss_kb kB)"
