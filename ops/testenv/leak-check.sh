#!/usr/bin/env bash
# leak-check.sh — finds what a test run left behind: processes, harness cgroups,
# mounts and harness temp dirs that outlived the run.
#
#   ops/testenv/leak-check.sh snapshot FILE        # before the run: what exists now
#   ops/testenv/leak-check.sh check FILE [--reap]  # after it: list leftovers, exit 1 if any
#   ops/testenv/leak-check.sh self-test            # shows that `check` catches leaks
#   ops/testenv/leak-check.sh stop-marked VAR      # a harness's cleanup: stop every
#       process whose environment has VAR with the caller's value of $VAR (SIGTERM,
#       SIGKILL after 3 s), except the caller's ancestry
#
# A process belongs to the run when its environment carries CONTIMG_TEST_RUN with
# this run's value (ops/test.sh exports a fresh one). The marker survives
# reparenting to PID 1 and `setsid`; harnesses that start from a clean environment
# (user-manager.sh, nspawn.sh run) pass it through. Processes that cannot carry it
# (inside an nspawn container or a docker container) are found by their cgroup: a
# harness cgroup (sdtest-*, nsp-*, dockertest-*) that did not exist at `snapshot`.
# Exempt: the checker's own ancestry (the runner itself) and the ancestors' direct
# children (pipeline peers such as `| tee`); a stage's leftovers are never among
# them, as they are reparented when the stage's script exits. `check` compares the
# other objects with the snapshot by identity (PID + start time, mount ID + target,
# path), so whatever existed before the run is never blamed on it.
#
# Harness dirs name their run in .contimg-test-run (CONTIMG_TEST_RUN, or "none"):
# a dir of another run, with the mounts under it and the harness cgroup named
# after it, belongs to someone else working on the same machine and is not
# counted. A dir without that file is counted.
#
# --reap SIGKILLs the leaked processes (by PID, start time re-checked) and removes
# the leaked, now empty harness cgroups, so the next run starts clean; the run
# still fails. Mounts and temp dirs are only reported.
set -euo pipefail

usage() {
    echo "usage: $0 snapshot FILE | check FILE [--reap] | self-test | stop-marked VAR" >&2
    exit 2
}

scan() {
    python3 - "$@" <<'PY'
import json
import os
import re
import signal
import sys
import time

HARNESS_CGROUP = re.compile(r"^(sdtest|nsp|dockertest)-")
HARNESS_TMP = re.compile(r"^(sdtest|dkt|contimg-e2e|contimg-fuzz|contimg-pkg-test|contimg-docker-deploy|slurmtest|contimg-leak-selftest)\.")
TEMP_DIRS = ("/tmp", "/run/contimg-nspawn")
MOUNT_PREFIXES = ("/tmp/", "/var/tmp/", "/run/contimg-nspawn/", "/run/docker/", "/run/containerd/")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None


def stat_fields(pid):
    """(ppid, starttime) from /proc/PID/stat, or None for a process that is gone."""
    text = read(f"/proc/{pid}/stat")
    if text is None:
        return None
    rest = text[text.rfind(")") + 2:].split()
    return int(rest[1]), int(rest[19])


def processes():
    result = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        fields = stat_fields(pid)
        if fields is None:
            continue
        cmdline = read(f"/proc/{pid}/cmdline", "rb") or b""
        result[pid] = {
            "ppid": fields[0],
            "start": fields[1],
            "cmd": cmdline.replace(b"\0", b" ").decode(errors="replace").strip(),
        }
    return result


def harness_cgroups():
    found = []
    for line in (read("/proc/self/mountinfo") or "").splitlines():
        parts = line.split()
        fstype = parts[parts.index("-") + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        root = parts[4]
        try:
            names = os.listdir(root)
        except OSError:
            continue
        found += [os.path.join(root, n) for n in names
                  if HARNESS_CGROUP.match(n) and os.path.isdir(os.path.join(root, n))]
    return sorted(found)


def mounts():
    found = []
    for line in (read("/proc/self/mountinfo") or "").splitlines():
        parts = line.split()
        found.append([parts[0], parts[4]])
    return found


def temp_dirs():
    found = []
    for base in TEMP_DIRS:
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            if base != "/tmp" or HARNESS_TMP.match(name):
                found.append(os.path.join(base, name))
    return sorted(found)


RUN_FILE = ".contimg-test-run"


def foreign(path, marker):
    """True when the harness dir `path` names another run than `marker`."""
    value = read(os.path.join(path, RUN_FILE))
    return value is not None and value.strip() != marker


def cgroup_dir(name):
    """The harness dir a harness cgroup is named after (sdtest-ID, dockertest-ID:
    /tmp/ID; nsp-NAME: /run/contimg-nspawn/NAME)."""
    prefix, _, rest = name.partition("-")
    return f"/run/contimg-nspawn/{rest}" if prefix == "nsp" else f"/tmp/{rest}"


def ancestry():
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        fields = stat_fields(pid)
        if fields is None:
            break
        pid = fields[0]
    return pids


def cgroup_paths(pid):
    paths = []
    for line in (read(f"/proc/{pid}/cgroup") or "").splitlines():
        paths.append(line.split(":", 2)[2])
    return paths


def marked(wanted, exempt):
    """Live processes (PID -> start time) whose environment holds `wanted`."""
    found = {}
    for pid, proc in processes().items():
        if pid in exempt:
            continue
        environ = read(f"/proc/{pid}/environ", "rb") or b""
        if wanted in environ.split(b"\0"):
            found[pid] = proc["start"]
    return found


def stop_marked(var):
    value = os.environ.get(var, "")
    if not value:
        print(f"leak-check: stop-marked: ${var} is not set", file=sys.stderr)
        return 2
    wanted = f"{var}={value}".encode()
    exempt = ancestry()
    targets = marked(wanted, exempt)
    for pid, start in targets.items():
        kill_if_same(pid, start, signal.SIGTERM)
    deadline = time.monotonic() + 3
    while targets and time.monotonic() < deadline:
        time.sleep(0.1)
        targets = {pid: start for pid, start in targets.items() if alive_same(pid, start)}
    for pid, start in targets.items():
        kill_if_same(pid, start, signal.SIGKILL)
    return 0


def alive_same(pid, start):
    fields = stat_fields(pid)
    if fields is None or fields[1] != start:
        return False
    state = read(f"/proc/{pid}/stat") or ""
    return state[state.rfind(")") + 2:][:1] != "Z"


def kill_if_same(pid, start, sig):
    """Signals PID only if it is still the process that started at `start`."""
    if alive_same(pid, start):
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def snapshot(path):
    state = {
        "processes": [[pid, p["start"]] for pid, p in processes().items()],
        "cgroups": harness_cgroups(),
        "mounts": mounts(),
        "temp_dirs": temp_dirs(),
    }
    with open(path, "w") as f:
        json.dump(state, f)


def age(start):
    uptime = float(read("/proc/uptime").split()[0])
    return f"{uptime - start / CLK_TCK:.0f}s"


def check(path, reap):
    marker = os.environ.get("CONTIMG_TEST_RUN", "")
    if not marker:
        print("leak-check: CONTIMG_TEST_RUN is not set; cannot tell this run's processes", file=sys.stderr)
        return 2
    with open(path) as f:
        before = json.load(f)
    seen_before = {(pid, start) for pid, start in before["processes"]}
    new_cgroups = [c for c in harness_cgroups() if c not in set(before["cgroups"])
                   and not foreign(cgroup_dir(os.path.basename(c)), marker)]
    new_cgroup_names = {os.path.basename(c) for c in new_cgroups}
    wanted = f"CONTIMG_TEST_RUN={marker}".encode()
    exempt = ancestry()
    exempt |= {pid for pid, proc in processes().items() if proc["ppid"] in exempt}

    leaked = []
    for pid, proc in sorted(processes().items()):
        if pid in exempt or (pid, proc["start"]) in seen_before:
            continue
        environ = read(f"/proc/{pid}/environ", "rb") or b""
        groups = cgroup_paths(pid)
        in_new_cgroup = any(part in new_cgroup_names for g in groups for part in g.split("/"))
        if wanted in environ.split(b"\0"):
            why = "marker"
        elif in_new_cgroup:
            why = "cgroup"
        else:
            continue
        unified = next((g for g in groups if HARNESS_CGROUP.match(g.lstrip("/"))),
                       groups[-1] if groups else "?")
        leaked.append((pid, proc, why, unified))

    known_mounts = {tuple(m) for m in before["mounts"]}
    others = [d for d in temp_dirs() if foreign(d, marker)]
    new_mounts = [m for m in mounts() if tuple(m) not in known_mounts
                  and m[1].startswith(MOUNT_PREFIXES)
                  and not any(m[1] == d or m[1].startswith(d + "/") for d in others)]
    new_temp = [d for d in temp_dirs() if d not in set(before["temp_dirs"]) and d not in others]

    for pid, proc, why, cgroup in leaked:
        print(f"leak-check: process {pid} (parent {proc['ppid']}, age {age(proc['start'])}, "
              f"found by {why}, cgroup {cgroup}): {proc['cmd'][:300]}")
    for cgroup in new_cgroups:
        print(f"leak-check: harness cgroup left behind: {cgroup}")
    for mount_id, target in new_mounts:
        print(f"leak-check: mount left behind: {target} (mount ID {mount_id})")
    for d in new_temp:
        print(f"leak-check: harness temp dir left behind: {d}")

    if reap:
        for pid, proc, _, _ in leaked:
            kill_if_same(pid, proc["start"], signal.SIGKILL)
        time.sleep(0.3)
        for cgroup in new_cgroups:
            for dirpath, _, _ in sorted(os.walk(cgroup), key=lambda w: -w[0].count("/")):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
        if leaked:
            print(f"leak-check: killed {len(leaked)} leaked process(es) by PID")

    total = len(leaked) + len(new_cgroups) + len(new_mounts) + len(new_temp)
    if total:
        print(f"leak-check: FAILED: {len(leaked)} process(es), {len(new_cgroups)} cgroup(s), "
              f"{len(new_mounts)} mount(s), {len(new_temp)} temp dir(s) outlived the run")
        return 1
    print("leak-check: nothing left behind (processes, harness cgroups, mounts, harness temp dirs)")
    return 0


command = sys.argv[1]
if command == "snapshot":
    snapshot(sys.argv[2])
    sys.exit(0)
if command == "stop-marked":
    sys.exit(stop_marked(sys.argv[2]))
sys.exit(check(sys.argv[2], "--reap" in sys.argv[3:]))
PY
}

# shellcheck disable=SC2317,SC2329  # called by the EXIT trap
self_test_cleanup() {
    set +e
    if [ -n "$sleeper" ]; then kill -KILL "$sleeper" 2>/dev/null; fi
    if [ -n "$stripped" ]; then kill -KILL "$stripped" 2>/dev/null; fi
    sleep 0.1
    if [ -n "$cg" ] && [ -d "$cg" ]; then rmdir "$cg"; fi
    if mountpoint -q "$planted"; then umount "$planted"; fi
    if mountpoint -q "$foreign_dir/data"; then umount "$foreign_dir/data"; fi
    rm -rf "$foreign_dir"
    if [ -d "$planted" ]; then rmdir "$planted"; fi
    rm -rf "$work"
}

# Plants one leak of each kind the check must see, in a throwaway run of its own
# (its own marker), and fails unless `check` reports each and passes once they
# are gone. Everything it starts is killed by PID.
self_test() {
    [ "$(id -u)" = 0 ] || { echo "leak-check self-test: needs root (cgroups)" >&2; return 1; }
    work=$(mktemp -d /tmp/contimg-leak-selftest-work.XXXXXX)
    sleeper="" stripped="" cg="" planted=/tmp/contimg-leak-selftest.$$
    foreign_dir=/tmp/contimg-leak-selftest.other-$$
    local out rc=0
    trap self_test_cleanup EXIT
    export CONTIMG_TEST_RUN
    CONTIMG_TEST_RUN=selftest-$(cat /proc/sys/kernel/random/uuid)
    scan snapshot "$work/before.json"

    if ! out=$(scan check "$work/before.json" 2>&1); then
        echo "leak-check self-test: a clean run was reported as leaking:" >&2
        echo "$out" >&2
        return 1
    fi

    # 1. A marked process, detached (setsid) and reparented, as a leaked daemon is.
    # shellcheck disable=SC2016  # $! belongs to the inner shell
    sleeper=$(setsid sh -c 'sleep 300 </dev/null >/dev/null 2>&1 & echo $!')
    # 2. A process that lost the marker (clean environment) but sits in a harness
    #    cgroup created during the run, as a container's processes do.
    cg=/sys/fs/cgroup/unified/sdtest-leak-selftest-$$
    mkdir "$cg"
    # shellcheck disable=SC2016  # $1 and $! belong to the inner shell
    stripped=$(setsid env -i sh -c 'sh -c "echo \$\$ > $1/cgroup.procs; exec sleep 300" </dev/null >/dev/null 2>&1 & echo $!' sh "$cg")
    # 3. A harness temp dir that was not removed, with a mount left on it.
    mkdir "$planted"
    mount -t tmpfs -o size=1m tmpfs "$planted"
    # 4. Not ours: another run's harness dir with a mount under it.
    mkdir -p "$foreign_dir/data"
    echo other-run > "$foreign_dir/.contimg-test-run"
    mount -t tmpfs -o size=1m tmpfs "$foreign_dir/data"
    sleep 0.3

    set +e
    out=$(scan check "$work/before.json" 2>&1)
    rc=$?
    set -e
    umount "$planted"
    # What the check said about the planted leaks (expected to fail), set apart
    # from a real report.
    local line
    while IFS= read -r line; do echo "    [self-test, planted] $line"; done <<<"$out"
    local missing=()
    [ $rc = 1 ] || missing+=("exit status 1 (got $rc)")
    grep -q "process $sleeper .*found by marker" <<<"$out" || missing+=("the marked sleeper $sleeper")
    grep -q "process $stripped .*found by cgroup" <<<"$out" || missing+=("the unmarked process $stripped in $cg")
    grep -q "harness cgroup left behind: $cg" <<<"$out" || missing+=("the cgroup $cg")
    grep -q "mount left behind: $planted " <<<"$out" || missing+=("the mount on $planted")
    grep -q "temp dir left behind: $planted" <<<"$out" || missing+=("the temp dir $planted")
    if grep -q "$foreign_dir" <<<"$out"; then missing+=("(wrongly reported) another run's $foreign_dir"); fi
    umount "$foreign_dir/data"
    rm -rf "$foreign_dir"
    if ((${#missing[@]})); then
        echo "leak-check self-test: FAILED, the check missed: ${missing[*]}" >&2
        return 1
    fi

    # --reap must clean up what it reported, and a second check must then pass.
    set +e
    out=$(scan check "$work/before.json" --reap 2>&1)
    set -e
    rmdir "$planted"
    if ! out=$(scan check "$work/before.json" 2>&1); then
        echo "leak-check self-test: FAILED, still leaking after --reap:" >&2
        echo "$out" >&2
        return 1
    fi
    sleeper="" stripped=""

    # stop-marked: a harness's cleanup stops its detached processes by marker.
    export CONTIMG_SELFTEST_HARNESS
    CONTIMG_SELFTEST_HARNESS=$(cat /proc/sys/kernel/random/uuid)
    # shellcheck disable=SC2016  # $! belongs to the inner shell
    sleeper=$(setsid sh -c 'sleep 300 </dev/null >/dev/null 2>&1 & echo $!')
    scan stop-marked CONTIMG_SELFTEST_HARNESS
    sleep 0.2
    if kill -0 "$sleeper" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$sleeper/stat" 2>/dev/null)" != Z ]; then
        echo "leak-check self-test: FAILED, stop-marked left $sleeper running" >&2
        return 1
    fi
    sleeper=""
    echo "leak-check self-test: ok (found a detached marked process, an unmarked process in a new harness cgroup, the cgroup, a mount and a temp dir; --reap cleaned up; stop-marked stopped a detached process)"
}

case "${1:-}" in
    snapshot) [ $# = 2 ] || usage; scan snapshot "$2" ;;
    check) [ $# -ge 2 ] || usage; scan check "$2" "${3:-}" ;;
    self-test) self_test ;;
    stop-marked) [ $# = 2 ] || usage; scan stop-marked "$2" ;;
    *) usage ;;
esac
