#!/usr/bin/env bash
# slurm.sh — a real Slurm cluster on this host for integration tests (testing.md §6):
# munged, slurmctld and NODES slurmd daemons n1..nNODES (Debian builds slurmd with
# multiple-slurmd support, so each runs as `slurmd -N nK` with its own port).
#
# Everything lives under DIR: munge key and socket, slurm.conf, state, spool, pid
# and log files. Every daemon listens on a free port on loopback (the host name
# must resolve to 127.0.0.0/8; `up` refuses otherwise), found free at `up`.
# SlurmUser=root: CI runs as root, and so do the jobs (their workdir and output
# files are ordinary root-owned paths on this host). Needs root and Debian's
# `slurm-wlm` + `munge`.
#
# Usage:
#   eval "$(ops/testenv/slurm.sh up DIR [NODES])"   # NODES: default 4
#   sbatch --parsable --wrap 'hostname'; squeue; sinfo
#   ops/testenv/slurm.sh env DIR                    # the same export lines again
#   ops/testenv/slurm.sh down DIR                   # also: stop DIR
#   ops/testenv/slurm.sh ctld-stop DIR | ctld-start DIR
#   ops/testenv/slurm.sh node-kill DIR nK | node-start DIR nK
#
# `up` prints: SLURM_CONF (what every Slurm client reads), SLURMTEST_DIR,
# SLURMTEST_CTLD_LOG (slurmctld's log: `_slurm_rpc_submit_batch_job` per sbatch,
# `Allocate JobId=… NodeList=…` per allocation), SLURMTEST_NODES (n[1-K]) and
# SLURMTEST_SQUEUE_JSON (1 when `squeue --json` works on this Slurm, else 0; Debian
# 12's 22.05 has it through openapi/v0.0.38, a build without that plugin does not).
# It returns once `sinfo` shows every node idle. `up` without DIR uses a fresh
# /tmp/slurmtest.XXXXXX; `down` removes DIR when it holds a file .remove-on-down
# (`up` writes it into the dir it creates; a caller may put it into its own).
#
# Settings worth knowing (see write_conf): MinJobAge=30 (a finished job stays
# visible to squeue/scontrol for 30 s, then Slurm forgets it: a client must not
# depend on Slurm still knowing a job), SlurmdTimeout=10 (a killed node is marked
# DOWN and its job NODE_FAIL within ~10-20 s, not the default 300 s),
# ReturnToService=2 (a restarted slurmd is usable again), MessageTimeout=5.
#
# Processes: each daemon inherits CONTIMG_TEST_RUN (ops/testenv/leak-check.sh finds
# any that outlive the run) and carries CONTIMG_SLURMTEST=<DIR> (slurmd also
# CONTIMG_SLURMTEST_NODE=<DIR>:nK), which its slurmstepd children inherit, so
# `down` and `node-kill` find exactly this cluster's processes. `down` cancels the
# jobs, then stops every slurmd (with its slurmstepd and the jobs below them),
# slurmctld and munged by PID file and by that marker (SIGTERM, SIGKILL after 5 s),
# and is safe after a partial `up`. A trap makes an interrupted `up` clean up, and
# with CONTIMG_HARNESS_OWNER=PID a watcher runs `down` when that process dies.
set -euo pipefail

READY_TIMEOUT=${READY_TIMEOUT:-30}
MIN_JOB_AGE=${SLURMTEST_MIN_JOB_AGE:-30}
die() { echo "slurm.sh: $*" >&2; exit 1; }
# A zombie is not alive (PID 1 here may not reap the daemons it inherits).
alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat:0:1}" != Z ]
}
SELF=$(readlink -f "$0")
# shellcheck source=ops/testenv/owner-watch.sh
. "$(dirname "$SELF")/owner-watch.sh"

# A TCP port nobody listens on now, on loopback.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# This cluster's live processes (zombies aside) and all their descendants: those
# whose environment holds exactly $1 (NAME=VALUE), or that hold a file open whose
# path starts with $2. slurmstepd overwrites its environment with its process title
# ("slurmstepd: [8.batch]"), so it is found by its open slurmd-nK.log instead; the
# job scripts below it carry the submitter's environment, so they are found as
# descendants.
cluster_pids() {
    python3 - "$1" "${2:-}" "$$" <<'PY'
import os
import sys

wanted, prefix, me = sys.argv[1].encode(), sys.argv[2], int(sys.argv[3])


def stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    rest = text[text.rfind(")") + 2:].split()
    return rest[0], int(rest[1])


def ours(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            if wanted in f.read().split(b"\0"):
                return True
    except OSError:
        pass
    if not prefix:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                return True
        except OSError:
            pass
    return False


parent, exempt = {}, set()
for name in os.listdir("/proc"):
    if name.isdigit():
        fields = stat(int(name))
        if fields is not None and fields[0] != "Z":
            parent[int(name)] = fields[1]
pid = me
while pid > 1:
    exempt.add(pid)
    pid = parent.get(pid, 1)
keep = {pid for pid in parent if pid not in exempt and ours(pid)}
grew = True
while grew:
    grew = False
    for pid, ppid in parent.items():
        if pid not in keep and pid not in exempt and ppid in keep:
            keep.add(pid)
            grew = True
print(" ".join(str(pid) for pid in sorted(keep)))
PY
}

# SIGTERM, then SIGKILL after $2 tenths of a second, for the PIDs in $1.
terminate() {
    local pids=$1 tenths=${2:-50} p
    [ -n "$pids" ] || return 0
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq "$tenths"); do
        local left=""
        for p in $pids; do alive "$p" && left="$left $p"; done
        [ -n "$left" ] || return 0
        sleep 0.1
    done
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
}

conf_of() { echo "$1/etc/slurm.conf"; }

write_conf() {
    local dir=$1 nodes=$2 host=$3 ctld_port=$4
    shift 4
    local conf
    conf=$(conf_of "$dir")
    cat > "$conf" <<CONF
# Written by ops/testenv/slurm.sh for a test cluster on one host.
ClusterName=contimgtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
# Finished jobs vanish from squeue/scontrol after this many seconds.
MinJobAge=$MIN_JOB_AGE
SlurmdTimeout=10
MessageTimeout=5
InactiveLimit=0
KillWait=5
# Listen on the host name's address (loopback, checked by up), not on every interface.
CommunicationParameters=NoInAddrAny
CONF
    local k=1 port
    for port in "$@"; do
        echo "NodeName=n$k NodeHostname=$host NodeAddr=127.0.0.1 Port=$port CPUs=1 RealMemory=2000 State=UNKNOWN" >> "$conf"
        k=$((k + 1))
    done
    echo "PartitionName=debug Nodes=n[1-$nodes] Default=YES MaxTime=INFINITE State=UP" >> "$conf"
    echo "PartitionName=other Nodes=n[1-$nodes] Default=NO MaxTime=INFINITE State=UP" >> "$conf"
}

print_env() {
    local dir=$1
    [ -f "$(conf_of "$dir")" ] || die "env: no cluster in $dir"
    cat <<ENV
export SLURM_CONF='$(conf_of "$dir")'
export SLURMTEST_DIR='$dir'
export SLURMTEST_CTLD_LOG='$dir/log/slurmctld.log'
export SLURMTEST_NODES='$(cat "$dir/nodes")'
export SLURMTEST_SQUEUE_JSON='$(cat "$dir/squeue-json")'
ENV
}

start_munged() {
    local dir=$1
    CONTIMG_SLURMTEST=$dir setsid munged --foreground --force \
        --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.sock" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munge.seed" \
        </dev/null >>"$dir/log/munged.out" 2>&1 &
    echo $! > "$dir/run/munged.launch.pid"
}

ctld_start() {
    local dir=$1
    # -D: in the foreground, so the PID we record is slurmctld's.
    SLURM_CONF=$(conf_of "$dir") CONTIMG_SLURMTEST=$dir CONTIMG_SLURMTEST_CTLD=$dir setsid slurmctld -D -i \
        </dev/null >>"$dir/log/slurmctld.out" 2>&1 &
    echo $! > "$dir/run/slurmctld.launch.pid"
    local deadline=$((SECONDS + READY_TIMEOUT))
    until SLURM_CONF=$(conf_of "$dir") scontrol ping 2>/dev/null | grep -q 'is UP'; do
        if [ $SECONDS -ge $deadline ] || ! alive "$(cat "$dir/run/slurmctld.launch.pid")"; then
            echo "slurm.sh: slurmctld not answering; log:" >&2
            tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmctld.out" >&2 2>/dev/null || true
            return 1
        fi
        sleep 0.1
    done
}

ctld_stop() {
    local dir=$1
    terminate "$(cluster_pids "CONTIMG_SLURMTEST_CTLD=$dir" "$dir/log/slurmctld")" 100
    rm -f "$dir/run/slurmctld.launch.pid"
}

node_start() {
    local dir=$1 node=$2
    mkdir -p "$dir/spool/$node"
    SLURM_CONF=$(conf_of "$dir") CONTIMG_SLURMTEST=$dir CONTIMG_SLURMTEST_NODES=$dir \
        CONTIMG_SLURMTEST_NODE="$dir:$node" \
        setsid slurmd -D -N "$node" </dev/null >>"$dir/log/slurmd-$node.out" 2>&1 &
    echo $! > "$dir/run/slurmd-$node.launch.pid"
}

# A node failure: SIGKILL for the node's slurmd, its slurmstepd processes and the
# jobs below them, all at once.
node_kill() {
    local dir=$1 node=$2 pids p
    pids=$(cluster_pids "CONTIMG_SLURMTEST_NODE=$dir:$node" "$dir/log/slurmd-$node.log")
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
    rm -f "$dir/run/slurmd-$node.launch.pid"
}

wait_idle() {
    local dir=$1 nodes=$2 deadline=$((SECONDS + READY_TIMEOUT)) idle
    while :; do
        idle=$(SLURM_CONF=$(conf_of "$dir") sinfo -h -N -t idle -o '%N' 2>/dev/null | sort -u | wc -l)
        [ "$idle" -ge "$nodes" ] && return 0
        if [ $SECONDS -ge $deadline ]; then
            echo "slurm.sh: only $idle of $nodes nodes idle after ${READY_TIMEOUT}s:" >&2
            SLURM_CONF=$(conf_of "$dir") sinfo -N -l >&2 || true
            tail -n 20 "$dir"/log/slurmd-*.log >&2 2>/dev/null || true
            return 1
        fi
        sleep 0.2
    done
}

up() {
    [ "$(id -u)" = 0 ] || die "must run as root (SlurmUser=root, munged)"
    local tool
    for tool in munged mungekey slurmctld slurmd sbatch squeue scontrol scancel sinfo; do
        command -v "$tool" >/dev/null || die "$tool not found (apt-get install slurm-wlm munge)"
    done
    local dir=${1:-} nodes=${2:-4}
    [[ "$nodes" =~ ^[1-9][0-9]?$ ]] || die "NODES must be 1..99, got $nodes"
    if [ -z "$dir" ]; then
        dir=$(mktemp -d /tmp/slurmtest.XXXXXX)
        touch "$dir/.remove-on-down"
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    # munged's socket path must fit a sockaddr_un (108 bytes).
    [ ${#dir} -le 80 ] || die "DIR path too long for munge's socket: $dir"
    local host
    host=$(hostname -s)
    local addr
    addr=$(getent ahostsv4 "$host" | awk 'NR == 1 {print $1}')
    [[ "$addr" == 127.* ]] || die "host name $host resolves to ${addr:-nothing}, not loopback; refusing"
    # The caller learns DIR only when `up` returns: a signal before that must not
    # leave half a cluster behind.
    # shellcheck disable=SC2064  # $dir is fixed now
    trap "down '$dir' >&2 || true; exit 130" INT
    # shellcheck disable=SC2064
    trap "down '$dir' >&2 || true; exit 143" TERM
    # shellcheck disable=SC2064
    trap "down '$dir' >&2 || true; exit 129" HUP
    # And any command failing under `set -e` before the cluster is up.
    # shellcheck disable=SC2064
    trap "down '$dir' >&2 || true" EXIT
    echo "${CONTIMG_TEST_RUN:-none}" > "$dir/.contimg-test-run"
    mkdir -p "$dir"/{etc,munge,state,spool,run,log,jobs}
    chmod 700 "$dir/munge"
    echo "n[1-$nodes]" > "$dir/nodes"

    local fail=0
    # A dir used before starts clean: no old key, job state, spool or logs.
    rm -rf "${dir:?}"/{munge,state,spool,run,log}/* "$dir/etc/slurm.conf"
    if ! mungekey --create --force --keyfile "$dir/munge/munge.key" 2>"$dir/log/mungekey.err"; then
        echo "slurm.sh: mungekey failed:" >&2
        cat "$dir/log/mungekey.err" >&2
        fail=1
    fi
    if [ $fail = 0 ]; then
        local ctld_port ports=() k
        ctld_port=$(free_port)
        for k in $(seq "$nodes"); do ports+=("$(free_port)"); done
        write_conf "$dir" "$nodes" "$host" "$ctld_port" "${ports[@]}"
        start_munged "$dir"
        local deadline=$((SECONDS + READY_TIMEOUT))
        until [ -S "$dir/munge/munge.sock" ]; do
            if [ $SECONDS -ge $deadline ]; then
                echo "slurm.sh: munged did not start:" >&2
                cat "$dir/log/munged.out" "$dir/log/munged.log" >&2 2>/dev/null || true
                fail=1
                break
            fi
            sleep 0.05
        done
    fi
    if [ $fail = 0 ]; then ctld_start "$dir" || fail=1; fi
    if [ $fail = 0 ]; then
        for k in $(seq "$nodes"); do node_start "$dir" "n$k"; done
        wait_idle "$dir" "$nodes" || fail=1
    fi
    if [ $fail = 1 ]; then
        exit 1 # the EXIT trap tears down what started
    fi
    # `squeue --json` needs Slurm's openapi + serializer plugins (22.05: data_parser
    # was not yet split out); ask the installed Slurm rather than its version.
    if SLURM_CONF=$(conf_of "$dir") squeue --json 2>/dev/null | python3 -c 'import json, sys; json.load(sys.stdin)["jobs"]' 2>/dev/null; then
        echo 1 > "$dir/squeue-json"
    else
        echo 0 > "$dir/squeue-json"
    fi
    trap - INT TERM HUP EXIT
    watch_owner "$dir"
    print_env "$dir"
}

down() {
    local dir=${1:-${SLURMTEST_DIR:-}}
    if [ -z "$dir" ] || [ ! -d "$dir" ]; then die "down: no such dir: ${dir:-<none>}"; fi
    dir=$(cd "$dir" && pwd)
    stop_watcher "$dir"
    local conf ctld
    conf=$(conf_of "$dir")
    ctld=$(cat "$dir/run/slurmctld.launch.pid" 2>/dev/null || true)
    # Cancel the jobs first, so their processes end the way Slurm ends them.
    if [ -f "$conf" ] && alive "$ctld"; then
        SLURM_CONF=$conf timeout 10 scancel --quiet --user=root 2>/dev/null || true
        for _ in $(seq 50); do
            [ -z "$(SLURM_CONF=$conf timeout 5 squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
    # Each slurmd with its slurmstepd and their jobs, then slurmctld, then munged,
    # then whatever still belongs to the cluster (a stray slurmstepd or job).
    terminate "$(cluster_pids "CONTIMG_SLURMTEST_NODES=$dir" "$dir/log/slurmd-")" 50
    local ctld_and_helpers
    ctld_and_helpers=$(cluster_pids "CONTIMG_SLURMTEST_CTLD=$dir" "$dir/log/slurmctld")
    if alive "$ctld"; then ctld_and_helpers="$ctld_and_helpers $ctld"; fi
    terminate "$ctld_and_helpers" 100
    local munged
    munged=$(cat "$dir/run/munged.launch.pid" 2>/dev/null || true)
    if alive "$munged"; then terminate "$munged" 50; fi
    terminate "$(cluster_pids "CONTIMG_SLURMTEST=$dir" "$dir/log/")" 20
    rm -f "$dir"/run/*.launch.pid
    if [ -f "$dir/.remove-on-down" ]; then
        rm -rf "$dir" 2>/dev/null || true
    fi
    return 0
}

case "${1:-}" in
    up | start) shift; up "$@" ;;
    down | stop) shift; down "$@" ;;
    env) [ $# = 2 ] || die "usage: $0 env DIR"; print_env "$(cd "$2" && pwd)" ;;
    ctld-stop) [ $# = 2 ] || die "usage: $0 ctld-stop DIR"; ctld_stop "$(cd "$2" && pwd)" ;;
    ctld-start) [ $# = 2 ] || die "usage: $0 ctld-start DIR"; ctld_start "$(cd "$2" && pwd)" ;;
    node-kill) [ $# = 3 ] || die "usage: $0 node-kill DIR nK"; node_kill "$(cd "$2" && pwd)" "$3" ;;
    node-start) [ $# = 3 ] || die "usage: $0 node-start DIR nK"; node_start "$(cd "$2" && pwd)" "$3" ;;
    *) echo "usage: $0 up DIR [NODES] | down DIR | env DIR | ctld-stop DIR | ctld-start DIR | node-kill DIR nK | node-start DIR nK" >&2; exit 2 ;;
esac
