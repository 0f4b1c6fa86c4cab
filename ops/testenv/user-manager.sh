#!/usr/bin/env bash
# user-manager.sh — a real, isolated systemd *user* manager for integration tests.
#
# Recipe: /work/shared/testing.md §1 (verified on Debian 12, systemd 252, hybrid
# cgroups, PID 1 not systemd). It never boots systemd as PID 1 and never touches the
# host's /run/systemd: the manager runs in a private mount namespace with its own
# tmpfs /run/systemd, private XDG dirs, and its own cgroup `sdtest-<id>` in every
# mounted hierarchy. Needs root, systemd, dbus (dbus-daemon or dbus-broker, for the
# socket-activated session bus), util-linux (unshare, script, findmnt).
#
# Usage:
#   eval "$(ops/testenv/user-manager.sh start [DIR])"   # DIR: empty dir to use (default: mktemp)
#   systemctl --user daemon-reload; systemctl --user start foo.service …
#   ops/testenv/user-manager.sh stop DIR                # or: stop "$SDTEST_DIR"
#
# `start` prints shell-evaluable lines:
#   SDTEST_DIR                the private dir (runtime/ config/ data/ state/ cache/ home/)
#   SDTEST_UNIT_DIR           where unit files go ($SDTEST_DIR/config/systemd/user)
#   SDTEST_CGROUP             the instance cgroup name (sdtest-<id>); units land in
#                             /sdtest-<id>/app.slice/NAME.service
#   DBUS_SESSION_BUS_ADDRESS  the manager's session bus (what `systemctl --user` and
#                             `contimgctl --user` use)
#   XDG_RUNTIME_DIR           the manager's runtime dir
#   MANAGER_PID               PID of `systemd --user`
#   SDTEST_LOG                the manager's console log; services' stdout/stderr
#                             are inherited into it (there is no journald)
# `stop` exits the manager (`systemctl --user exit`, then SIGKILL after 5 s), SIGKILLs
# any process left in its cgroup and the `script` wrapper it started, removes the
# instance cgroups deepest-first in every hierarchy, and removes DIR if `start`
# created it. `stop` is idempotent and safe to call after a failed `start`.
# Several instances can run side by side.
set -euo pipefail

SYSTEMD_BIN=${SYSTEMD_BIN:-/lib/systemd/systemd}
READY_TIMEOUT=${READY_TIMEOUT:-15}

die() { echo "user-manager.sh: $*" >&2; exit 1; }

cgroup_mounts() { findmnt -rn -t cgroup,cgroup2 -o TARGET; }
SELF=$(readlink -f "$0")
# shellcheck source=ops/testenv/owner-watch.sh
. "$(dirname "$SELF")/owner-watch.sh"

start() {
    [ "$(id -u)" = 0 ] || die "must run as root (cgroup setup, mount namespace)"
    [ -x "$SYSTEMD_BIN" ] || die "$SYSTEMD_BIN not found (apt-get install systemd)"
    local dir=${1:-}
    if [ -z "$dir" ]; then
        dir=$(mktemp -d /tmp/sdtest.XXXXXX)
        touch "$dir/.created-by-user-manager"
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local id
    id=$(basename "$dir")
    id=${id//[^A-Za-z0-9_.-]/_}
    local cg="sdtest-$id"
    # The caller learns DIR only when `start` returns: a signal before that must
    # not leave a half-started manager behind.
    # shellcheck disable=SC2064  # $dir is fixed now
    trap "stop '$dir' >&2 || true; exit 130" INT
    # shellcheck disable=SC2064
    trap "stop '$dir' >&2 || true; exit 143" TERM
    mkdir -p "$dir"/{runtime,config/systemd/user,data,state,cache,home}
    # Which test run this is (ops/testenv/leak-check.sh).
    echo "${CONTIMG_TEST_RUN:-none}" > "$dir/.contimg-test-run"
    chmod 700 "$dir/runtime"
    # The user instance would run tmpfiles against our private dirs; not wanted.
    ln -sfn /dev/null "$dir/config/systemd/user/systemd-tmpfiles-setup.service"
    ln -sfn /dev/null "$dir/config/systemd/user/systemd-tmpfiles-clean.timer"
    printf '[Manager]\nDefaultStandardOutput=inherit\nDefaultStandardError=inherit\n' \
        > "$dir/config/systemd/user.conf"
    echo "$cg" > "$dir/cgroup-name"

    # Our own cgroup in every hierarchy: without the v1 memory/pids dirs the manager
    # reports MemoryCurrent/TasksCurrent as "not set"; without a private cgroup,
    # parallel managers would share /app.slice.
    local join=""
    while read -r mnt; do
        mkdir -p "$mnt/$cg"
        case "$mnt" in
            */unified|*/systemd|/sys/fs/cgroup) join="$join $mnt/$cg/cgroup.procs" ;;
        esac
    done < <(cgroup_mounts)

    cat > "$dir/inner.sh" <<INNER
#!/bin/sh
set -e
echo \$\$ > "$dir/manager.pid"
for procs in $join; do echo \$\$ > "\$procs"; done
# The user manager refuses to start unless /run/systemd/system exists; a private
# tmpfs keeps the host's /run/systemd untouched.
mount -t tmpfs tmpfs /run/systemd
mkdir /run/systemd/system
# systemd logs by reopening /dev/console, which must be a tty: make it ours.
mount --bind "\$(tty)" /dev/console
exec "$SYSTEMD_BIN" --user
INNER
    chmod 755 "$dir/inner.sh"

    local bus="unix:path=$dir/runtime/bus"
    # The clean environment keeps the test run's marker (ops/test.sh): the user
    # manager hands its environment to every unit, so the leak check can find
    # anything of this instance that outlives `stop`.
    local marker=()
    [ -n "${CONTIMG_TEST_RUN:-}" ] && marker=("CONTIMG_TEST_RUN=$CONTIMG_TEST_RUN")
    setsid env -i "${marker[@]}" \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME="$dir/home" USER=root LOGNAME=root \
        XDG_RUNTIME_DIR="$dir/runtime" XDG_CONFIG_HOME="$dir/config" \
        XDG_DATA_HOME="$dir/data" XDG_STATE_HOME="$dir/state" XDG_CACHE_HOME="$dir/cache" \
        DBUS_SESSION_BUS_ADDRESS="$bus" \
        script -qfec "unshare -m $dir/inner.sh" "$dir/manager.log" \
        </dev/null >/dev/null 2>&1 &
    echo $! > "$dir/script.pid"

    local deadline=$((SECONDS + READY_TIMEOUT)) state=""
    while [ $SECONDS -lt $deadline ]; do
        state=$(DBUS_SESSION_BUS_ADDRESS="$bus" busctl --user get-property \
            org.freedesktop.systemd1 /org/freedesktop/systemd1 \
            org.freedesktop.systemd1.Manager SystemState 2>/dev/null || true)
        case "$state" in
            *'"running"'*|*'"degraded"'*) break ;;
        esac
        sleep 0.05
    done
    case "$state" in
        *'"running"'*|*'"degraded"'*) ;;
        *)
            echo "user-manager.sh: manager not ready after ${READY_TIMEOUT}s (state: ${state:-none}); log:" >&2
            tail -n 30 "$dir/manager.log" >&2 2>/dev/null || true
            stop "$dir" >&2 || true
            exit 1
            ;;
    esac
    trap - INT TERM
    watch_owner "$dir"
    cat <<ENV
export SDTEST_DIR='$dir'
export SDTEST_UNIT_DIR='$dir/config/systemd/user'
export SDTEST_CGROUP='$cg'
export SDTEST_LOG='$dir/manager.log'
export DBUS_SESSION_BUS_ADDRESS='$bus'
export XDG_RUNTIME_DIR='$dir/runtime'
export MANAGER_PID='$(cat "$dir/manager.pid")'
ENV
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

stop() {
    local dir=${1:-${SDTEST_DIR:-}}
    if [ -z "$dir" ] || [ ! -d "$dir" ]; then die "stop: no such dir: ${dir:-<none>}"; fi
    local cg manager script_pid
    cg=$(cat "$dir/cgroup-name" 2>/dev/null || true)
    manager=$(cat "$dir/manager.pid" 2>/dev/null || true)
    script_pid=$(cat "$dir/script.pid" 2>/dev/null || true)
    stop_watcher "$dir"
    if alive "$manager"; then
        DBUS_SESSION_BUS_ADDRESS="unix:path=$dir/runtime/bus" timeout 5 \
            systemctl --user exit >/dev/null 2>&1 || kill -TERM "$manager" 2>/dev/null || true
        for _ in $(seq 100); do alive "$manager" || break; sleep 0.05; done
        if alive "$manager"; then kill -KILL "$manager" 2>/dev/null || true; fi
    fi
    # Whatever the manager left behind in its cgroup (it started them, so we did).
    if [ -n "$cg" ]; then
        local mnt pid
        for _ in 1 2 3; do
            local left=0
            while read -r mnt; do
                [ -d "$mnt/$cg" ] || continue
                while read -r pid; do
                    [ -n "$pid" ] || continue
                    kill -KILL "$pid" 2>/dev/null || true
                    left=1
                done < <(find "$mnt/$cg" -name cgroup.procs -exec cat {} + 2>/dev/null)
            done < <(cgroup_mounts)
            [ $left = 0 ] && break
            sleep 0.1
        done
    fi
    if alive "$script_pid"; then
        sleep 0.2
        kill -KILL "$script_pid" 2>/dev/null || true
    fi
    if [ -n "$cg" ]; then
        local mnt
        while read -r mnt; do
            [ -d "$mnt/$cg" ] || continue
            for _ in $(seq 20); do
                find "$mnt/$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
                [ -d "$mnt/$cg" ] || break
                sleep 0.05
            done
            [ -d "$mnt/$cg" ] && echo "user-manager.sh: could not remove $mnt/$cg" >&2
        done < <(cgroup_mounts)
    fi
    if [ -f "$dir/.created-by-user-manager" ]; then
        rm -rf "$dir"
    fi
    return 0
}

case "${1:-}" in
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    *) echo "usage: $0 start [DIR] | stop DIR" >&2; exit 2 ;;
esac
