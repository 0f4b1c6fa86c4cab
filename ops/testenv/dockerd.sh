#!/usr/bin/env bash
# dockerd.sh — a private Docker Engine for integration tests (testing.md §3).
#
# No networking of its own (--bridge=none, no iptables/ip-forward/masquerade), all
# state under one temp dir (data-root, exec-root, pidfile, socket), its own socket
# (not /var/run/docker.sock), containers under its own cgroup parent. Needs root and
# `docker.io` (dockerd + containerd + runc). No registry is reachable: import images
# from a tarball (`docker import` / POST /images/create?fromSrc=-).
#
# Usage:
#   eval "$(ops/testenv/dockerd.sh start [DIR])"
#   curl --unix-socket "$DOCKERTEST_SOCKET" http://d/_ping
#   ops/testenv/dockerd.sh stop DIR
#
# `start` prints: DOCKERTEST_DIR, DOCKERTEST_SOCKET, DOCKER_HOST (unix://…, for the
# docker CLI in harness code), DOCKERD_PID. `stop` removes every container, stops
# dockerd (SIGTERM, SIGKILL after 15 s), kills its containerd and shims, unmounts
# what it mounted under DIR, removes its cgroups and DIR (if `start` created it).
set -euo pipefail

READY_TIMEOUT=${READY_TIMEOUT:-30}
die() { echo "dockerd.sh: $*" >&2; exit 1; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
SELF=$(readlink -f "$0")
# shellcheck source=ops/testenv/owner-watch.sh
. "$(dirname "$SELF")/owner-watch.sh"

start() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    command -v dockerd >/dev/null || die "dockerd not found (apt-get install docker.io)"
    local dir=${1:-}
    if [ -z "$dir" ]; then
        # Short path: containerd's sockets live under exec-root (108-byte limit).
        dir=$(mktemp -d /tmp/dkt.XXXXXX)
        touch "$dir/.created-by-dockerd-sh"
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local id
    id=$(basename "$dir")
    id=${id//[^A-Za-z0-9_.-]/_}
    # The caller learns DIR only when `start` returns: a signal before that must
    # not leave a half-started dockerd behind.
    # shellcheck disable=SC2064  # $dir is fixed now
    trap "stop '$dir' >&2 || true; exit 130" INT
    # shellcheck disable=SC2064
    trap "stop '$dir' >&2 || true; exit 143" TERM
    echo "dockertest-$id" > "$dir/cgroup-name"
    # Which test run this is (ops/testenv/leak-check.sh).
    echo "${CONTIMG_TEST_RUN:-none}" > "$dir/.contimg-test-run"
    echo '{}' > "$dir/daemon.json"
    local sock="$dir/docker.sock"
    setsid dockerd \
        --config-file "$dir/daemon.json" \
        --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
        --userland-proxy=false \
        --storage-driver=overlay2 \
        --data-root="$dir/data" --exec-root="$dir/exec" --pidfile="$dir/dockerd.pid" \
        --cgroup-parent="/dockertest-$id" \
        -H "unix://$sock" \
        </dev/null >"$dir/dockerd.log" 2>&1 &
    echo $! > "$dir/dockerd.launch.pid"
    local deadline=$((SECONDS + READY_TIMEOUT))
    until curl -sf --unix-socket "$sock" http://docker/_ping >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ] || ! alive "$(cat "$dir/dockerd.launch.pid")"; then
            echo "dockerd.sh: dockerd not answering; log:" >&2
            tail -n 30 "$dir/dockerd.log" >&2 || true
            stop "$dir" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    trap - INT TERM
    watch_owner "$dir"
    cat <<ENV
export DOCKERTEST_DIR='$dir'
export DOCKERTEST_SOCKET='$sock'
export DOCKER_HOST='unix://$sock'
export DOCKERD_PID='$(cat "$dir/dockerd.launch.pid")'
ENV
}

stop() {
    local dir=${1:-${DOCKERTEST_DIR:-}}
    if [ -z "$dir" ] || [ ! -d "$dir" ]; then die "stop: no such dir: ${dir:-<none>}"; fi
    local sock="$dir/docker.sock" pid cg
    pid=$(cat "$dir/dockerd.launch.pid" 2>/dev/null || true)
    cg=$(cat "$dir/cgroup-name" 2>/dev/null || true)
    stop_watcher "$dir"
    if alive "$pid" && [ -S "$sock" ]; then
        local ids
        ids=$(curl -sf --unix-socket "$sock" 'http://docker/containers/json?all=1' 2>/dev/null \
            | grep -o '"Id":"[0-9a-f]*"' | cut -d'"' -f4 || true)
        for c in $ids; do
            curl -sf -X DELETE --unix-socket "$sock" "http://docker/containers/$c?force=1&v=1" \
                >/dev/null 2>&1 || true
        done
    fi
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 150); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    # containerd and shims started by this dockerd (their command lines name our dir).
    local p
    for p in $(pgrep -f -- "$dir/" 2>/dev/null || true); do
        [ "$p" = "$$" ] && continue
        kill -KILL "$p" 2>/dev/null || true
    done
    # Mounts under our dir (overlay layers, netns, shm), deepest first.
    local m
    while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done < <(awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r)
    if [ -n "$cg" ]; then
        local mnt
        while read -r mnt; do
            [ -d "$mnt/$cg" ] || continue
            find "$mnt/$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        done < <(findmnt -rn -t cgroup,cgroup2 -o TARGET)
    fi
    if [ -f "$dir/.created-by-dockerd-sh" ]; then
        rm -rf "$dir" 2>/dev/null || true
    fi
    return 0
}

case "${1:-}" in
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    *) echo "usage: $0 start [DIR] | stop DIR" >&2; exit 2 ;;
esac
