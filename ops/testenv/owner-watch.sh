# shellcheck shell=bash
# owner-watch.sh — sourced by user-manager.sh and dockerd.sh (which set SELF to
# their own path and define `stop DIR`).

# With CONTIMG_HARNESS_OWNER=PID (tests/common does this), a watcher stops DIR
# when that process dies first: a killed test binary never runs its Drop guard.
watch_owner() {
    local dir=$1 owner=${CONTIMG_HARNESS_OWNER:-}
    [ -n "$owner" ] || return 0
    (
        trap - INT TERM
        while kill -0 "$owner" 2>/dev/null && [ -d "$dir" ]; do sleep 0.5; done
        if [ -d "$dir" ]; then bash "$SELF" stop "$dir"; fi
    ) </dev/null >/dev/null 2>&1 &
    echo $! > "$dir/watch.pid"
}

# The owner watcher, unless it is the one stopping.
stop_watcher() {
    local watcher
    watcher=$(cat "$1/watch.pid" 2>/dev/null || true)
    if [ -n "$watcher" ] && [ "$watcher" != "$PPID" ]; then kill "$watcher" 2>/dev/null || true; fi
}
