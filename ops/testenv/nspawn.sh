#!/usr/bin/env bash
# nspawn.sh — a full *system* systemd (PID 1 in a container) booted over a throwaway
# overlay of the host root, for the .deb, system-bus and polkit tests.
#
# Recipe: /work/shared/testing.md §2 (Debian 12, systemd 252, hybrid cgroups, PID 1 of
# the host is not systemd). Safe by construction:
#   - systemd never runs as PID 1 on the real root: it boots inside systemd-nspawn on
#     `--volatile=overlay` over a *non-recursive* bind mount of /, so every write
#     (dpkg -i, /etc, /var, /tmp) lands in a tmpfs that vanishes with the container;
#   - everything runs in a private mount namespace (`unshare -m`, private
#     propagation) with its own tmpfs on /run/systemd: the host's /run/systemd and
#     /tmp are never touched;
#   - `--private-network`: the container sees only its own loopback;
#   - its own cgroup `nsp-<name>` in every mounted hierarchy; `cleanup` SIGKILLs
#     whatever is left in it (only processes the container started) and removes it.
# Needs root, systemd-container pinned to the host's systemd version
# (ops/install-deps.sh), util-linux (unshare, nsenter, findmnt).
#
# Usage:
#   eval "$(ops/testenv/nspawn.sh boot [NAME])"   # prints NSPAWN_* lines (below)
#   ops/testenv/nspawn.sh run NAME CMD [ARG…]     # run inside (all namespaces), exit
#                                                 # code passed through; env is clean
#   ops/testenv/nspawn.sh copy-in NAME SRC DEST   # copy a host file into the container
#   ops/testenv/nspawn.sh poweroff NAME           # orderly shutdown, wait for nspawn
#   ops/testenv/nspawn.sh cleanup NAME            # poweroff if needed, then kill what
#                                                 # is left, remove cgroups and the dir
#   ops/testenv/nspawn.sh list                    # containers of this harness
# Env for `boot`: NSPAWN_BIND_RO="PATH …" binds host paths read-only at the same path
# inside (needed for anything under /tmp: nspawn gives the container its own /tmp).
# `boot` prints:
#   NSPAWN_NAME   the machine name (also the key for run/copy-in/cleanup)
#   NSPAWN_DIR    the harness dir (/run/contimg-nspawn/NAME: pids, console log)
#   NSPAWN_PID1   host PID of the container's systemd (PID 1 inside)
#   NSPAWN_ROOT   /proc/PID1/root: the container's filesystem seen from the host
#   NSPAWN_BUS    unix:path=… of the container's system bus, usable from the host
#   NSPAWN_LOG    the container's console output (boot log)
# A failed `boot` cleans up after itself. `cleanup` is idempotent; use it in traps:
#   trap 'ops/testenv/nspawn.sh cleanup "$NSPAWN_NAME"' EXIT
set -euo pipefail

BASE=${NSPAWN_BASE:-/run/contimg-nspawn}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-60}
# Host services that must not start in the container (they are installed on the CI
# machines for other tests and would fight over the host's resources).
# The host's test packages enable daemons the containers must not run (the Slurm
# test cluster and Prometheus are started by their tests, never as services).
MASKS=(docker.service docker.socket containerd.service postgresql.service
       systemd-networkd-wait-online.service munge.service slurmd.service
       slurmctld.service prometheus.service prometheus-node-exporter.service)

die() { echo "nspawn.sh: $*" >&2; exit 1; }
log() { echo "nspawn.sh: $*" >&2; }
alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }
cgroup_mounts() { findmnt -rn -t cgroup,cgroup2 -o TARGET; }

dir_of() {
    local name=${1:?machine name required}
    [[ $name =~ ^[A-Za-z0-9-]+$ ]] || die "bad machine name: $name"
    echo "$BASE/$name"
}

# The container's PID 1: the child of nspawn whose innermost NSpid is 1.
find_pid1() {
    local nspawn=$1 status pid ppid nspid
    for status in /proc/[0-9]*/status; do
        ppid=$(awk '/^PPid:/ {print $2}' "$status" 2>/dev/null) || continue
        [[ $ppid == "$nspawn" ]] || continue
        nspid=$(awk '/^NSpid:/ {print $NF}' "$status" 2>/dev/null) || continue
        if [[ $nspid == 1 ]]; then
            pid=${status#/proc/}; echo "${pid%/status}"; return 0
        fi
    done
    return 1
}

pid1_of() {
    local dir pid
    dir=$(dir_of "$1")
    pid=$(cat "$dir/pid1" 2>/dev/null || true)
    alive "$pid" || die "container $1 is not running (no PID 1)"
    echo "$pid"
}

boot() {
    [[ $(id -u) == 0 ]] || die "must run as root"
    command -v systemd-nspawn >/dev/null || die "systemd-nspawn missing (ops/install-deps.sh installs systemd-container)"
    local name=${1:-contimg-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')}
    local dir cg
    dir=$(dir_of "$name")
    [[ -e $dir ]] && die "$dir exists (container $name already booted? use cleanup)"
    mkdir -p "$dir/root"
    cg="nsp-$name"
    echo "$cg" > "$dir/cgroup-name"
    # Which test run this is (ops/testenv/leak-check.sh).
    echo "${CONTIMG_TEST_RUN:-none}" > "$dir/.contimg-test-run"
    # On any failure below: tear down what exists.
    trap 'log "boot failed; cleaning up"; tail -n 30 "$dir/console.log" >&2 2>/dev/null || true; cleanup "$name" >&2 || true' ERR
    # The caller learns the name only when `boot` returns: a signal before that
    # must not leave the half-booted container behind.
    trap 'log "boot interrupted; cleaning up"; cleanup "$name" >&2 || true; exit 130' INT
    trap 'log "boot interrupted; cleaning up"; cleanup "$name" >&2 || true; exit 143' TERM

    local join="" mnt
    while read -r mnt; do
        mkdir -p "$mnt/$cg"
        case "$mnt" in
            */unified|*/systemd|/sys/fs/cgroup) join="$join $mnt/$cg/cgroup.procs" ;;
        esac
    done < <(cgroup_mounts)

    local kargs="" unit binds="" path
    for unit in "${MASKS[@]}"; do kargs="$kargs systemd.mask=$unit"; done
    # nspawn mounts a fresh tmpfs on the container's /tmp, hiding anything under the
    # host's /tmp (a checkout there, say): bind such paths in explicitly, read-only.
    for path in ${NSPAWN_BIND_RO:-}; do binds="$binds --bind-ro=$path"; done
    cat > "$dir/inner.sh" <<INNER
#!/bin/sh
set -e
echo \$\$ > "$dir/inner.pid"
for procs in $join; do echo \$\$ > "\$procs"; done
# nspawn keeps lock dirs in /run/systemd: a private tmpfs keeps the host's untouched.
mount -t tmpfs tmpfs /run/systemd
# Non-recursive bind of /: nspawn refuses -D /; the overlay makes it throwaway.
mount --bind / "$dir/root"
exec systemd-nspawn --quiet --volatile=overlay -D "$dir/root" -M "$name" \
    --register=no --keep-unit --private-network --console=read-only $binds \
    --boot -- $kargs
INNER
    chmod 755 "$dir/inner.sh"
    setsid unshare -m --propagation private "$dir/inner.sh" \
        </dev/null >"$dir/console.log" 2>&1 &
    echo $! > "$dir/unshare.pid"

    # nspawn is the process that inner.sh exec'd; its child with NSpid 1 is PID 1.
    local deadline=$((SECONDS + BOOT_TIMEOUT)) nspawn="" pid1="" state=""
    while ((SECONDS < deadline)); do
        nspawn=$(cat "$dir/inner.pid" 2>/dev/null || true)
        alive "$nspawn" || { sleep 0.05; continue; }
        pid1=$(find_pid1 "$nspawn" || true)
        if [[ -n $pid1 ]]; then
            echo "$nspawn" > "$dir/nspawn.pid"
            echo "$pid1" > "$dir/pid1"
            state=$(run_in "$name" systemctl is-system-running 2>/dev/null || true)
            case $state in
                running) break ;;
                degraded)
                    log "container is degraded; failed units:"
                    run_in "$name" systemctl --failed --no-legend >&2 || true
                    break ;;
            esac
        fi
        if ! alive "$(cat "$dir/unshare.pid")"; then
            die "systemd-nspawn exited during boot"
        fi
        sleep 0.2
    done
    [[ $state == running || $state == degraded ]] || die "not booted after ${BOOT_TIMEOUT}s (state: ${state:-none})"
    trap - ERR INT TERM
    cat <<ENV
export NSPAWN_NAME='$name'
export NSPAWN_DIR='$dir'
export NSPAWN_PID1='$pid1'
export NSPAWN_ROOT='/proc/$pid1/root'
export NSPAWN_BUS='unix:path=/proc/$pid1/root/run/dbus/system_bus_socket'
export NSPAWN_LOG='$dir/console.log'
ENV
}

run_in() {
    local name=${1:?usage: run NAME CMD…}; shift
    (($#)) || die "run: no command"
    local pid1
    pid1=$(pid1_of "$name")
    # The clean environment keeps the test run's marker (ops/test.sh's leak check).
    local marker=()
    [[ -n ${CONTIMG_TEST_RUN:-} ]] && marker=("CONTIMG_TEST_RUN=$CONTIMG_TEST_RUN")
    nsenter -t "$pid1" -a -r -w -- env -i "${marker[@]}" \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root TERM=dumb LANG=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

copy_in() {
    local name=${1:?usage: copy-in NAME SRC DEST} src=${2:?SRC} dest=${3:?DEST}
    local pid1
    pid1=$(pid1_of "$name")
    [[ $dest == /* ]] || die "copy-in: DEST must be absolute"
    cp -a -- "$src" "/proc/$pid1/root$dest"
}

poweroff_c() {
    local name=${1:?usage: poweroff NAME} dir nspawn
    dir=$(dir_of "$name")
    nspawn=$(cat "$dir/nspawn.pid" 2>/dev/null || cat "$dir/inner.pid" 2>/dev/null || true)
    alive "$nspawn" || return 0
    # Before PID 1 is up (a boot interrupted early) nothing would shut the
    # container down: fail at once, `cleanup` kills it.
    [[ -f $dir/pid1 ]] && alive "$(cat "$dir/pid1")" || return 1
    run_in "$name" systemctl --no-block poweroff >/dev/null 2>&1 || return 1
    local deadline=$((SECONDS + 30))
    while alive "$nspawn" && ((SECONDS < deadline)); do sleep 0.1; done
    alive "$nspawn" && { log "nspawn did not exit after poweroff"; return 1; }
    return 0
}

cleanup() {
    local name=${1:?usage: cleanup NAME} dir cg mnt pid
    dir=$(dir_of "$name")
    [[ -d $dir ]] || return 0
    poweroff_c "$name" || true
    for pidfile in nspawn.pid inner.pid unshare.pid; do
        pid=$(cat "$dir/$pidfile" 2>/dev/null || true)
        if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
    cg=$(cat "$dir/cgroup-name" 2>/dev/null || true)
    if [[ -n $cg ]]; then
        # Whatever is left in the container's cgroup: it was started by the container.
        for _ in 1 2 3 4 5; do
            local left=0
            while read -r mnt; do
                [[ -d $mnt/$cg ]] || continue
                while read -r pid; do
                    [[ -n $pid ]] || continue
                    kill -KILL "$pid" 2>/dev/null || true
                    left=1
                done < <(find "$mnt/$cg" -name cgroup.procs -exec cat {} + 2>/dev/null)
            done < <(cgroup_mounts)
            ((left == 0)) && break
            sleep 0.2
        done
        while read -r mnt; do
            [[ -d $mnt/$cg ]] || continue
            for _ in $(seq 40); do
                find "$mnt/$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
                [[ -d $mnt/$cg ]] || break
                sleep 0.05
            done
            [[ -d $mnt/$cg ]] && log "could not remove $mnt/$cg"
        done < <(cgroup_mounts)
    fi
    # The bind mount of / lived only in the private namespace; refuse to delete
    # anything if it is somehow visible here.
    if mountpoint -q "$dir/root"; then
        die "$dir/root is still a mount point here; not removing $dir"
    fi
    rmdir "$dir/root" 2>/dev/null || true
    # nspawn's lock on the image dir stays behind when nspawn was killed.
    rm -f "$dir"/{inner.sh,inner.pid,unshare.pid,nspawn.pid,pid1,cgroup-name,console.log} "$dir/.#root.lck" "$dir/.contimg-test-run"
    rmdir "$dir" 2>/dev/null || log "$dir not empty; left in place"
    return 0
}

list() {
    local d
    for d in "$BASE"/*/; do
        [[ -d $d ]] || continue
        d=${d%/}
        printf '%s pid1=%s\n' "${d##*/}" "$(cat "$d/pid1" 2>/dev/null || echo -)"
    done
}

cmd=${1:-}
shift || true
case $cmd in
    boot) boot "$@" ;;
    run) run_in "$@" ;;
    copy-in) copy_in "$@" ;;
    poweroff) poweroff_c "$@" ;;
    cleanup) cleanup "$@" ;;
    list) list ;;
    *) echo "usage: $0 boot [NAME] | run NAME CMD… | copy-in NAME SRC DEST | poweroff NAME | cleanup NAME | list" >&2
       exit 2 ;;
esac
