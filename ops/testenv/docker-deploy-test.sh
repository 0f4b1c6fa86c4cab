#!/usr/bin/env bash
# docker-deploy-test.sh — `./ops/deploy.sh --backend docker --demo` against the test
# suite's private dockerd (ops/testenv/dockerd.sh: own socket and data root,
# --bridge=none, no iptables; the containers use network none or host, loopback only):
#
#   - the base image from Debian packages (packaging/docker/build-base.sh, mmdebstrap;
#     no registry; the rootfs tarball cached in target/docker-base/ between runs)
#   - deploy exits 0; API and worker containers run as the non-root image user, the
#     worker with no network; both Docker healthchecks turn healthy
#   - the demo's groups complete in the worker container
#   - `contimgctl --backend docker status` shows CPU and memory from the container
#   - the API controls the worker container as the dashboard does (restart, stop, start)
#   - packaging/docker/compose.yaml describes exactly the containers that run (compose
#     itself is not installed: the YAML is parsed and compared with `docker inspect`)
#   - a frozen worker turns unhealthy (its heartbeat goes stale), and healthy again
#   - exit codes: 2 for a bad env file or values check-config rejects, 1 for an
#     unreachable dockerd
#   - a second deploy converges (same worker container unless the image changed);
#     --mode manual stops the worker, --mode streaming serves no dashboard;
#     uninstall --purge removes containers and image; a docker-group member (nobody)
#     deploys without root, the containers then run as its UID
#
#   ops/testenv/docker-deploy-test.sh          # needs root, docker.io, mmdebstrap
#   DOCKER_TEST_NO_BUILD=1 …                   # reuse target/release and frontend/dist
#
# Prints `ok N - …` / `not ok N - …` and a summary; exits 1 on any failure. Cleans up
# containers, images, dockerd, the demo simulator and temp dirs, also on failure/Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

pass=0 fail=0 n=0
ok() { n=$((n + 1)); pass=$((pass + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $*"; }
check() {  # check "description" CMD… — ok if CMD succeeds
    local what=$1 out; shift
    if out=$("$@" 2>&1); then ok "$what"; else
        not_ok "$what"; tail -n 25 <<<"$out" | sed 's/^/#   /'
    fi
}

[[ $(id -u) == 0 ]] || { echo "docker-deploy-test.sh: needs root (dockerd)" >&2; exit 1; }
tmp=$(mktemp -d /tmp/contimg-docker-deploy.XXXXXX)
# The containers' user (10110) must reach the dirs below it.
chmod 0755 "$tmp"
# Which test run this is (ops/testenv/leak-check.sh).
echo "${CONTIMG_TEST_RUN:-none}" > "$tmp/.contimg-test-run"
dockerd_dir=""
env_file=$tmp/contimg.env
state=$tmp/state
cleanup() {
    local rc=$?
    if [[ -n $dockerd_dir ]]; then
        DOCKER_HOST=unix://$dockerd_dir/docker.sock \
            "$repo/ops/deploy.sh" --backend docker --env-file "$env_file" --uninstall --purge >/dev/null 2>&1 || true
        "$repo/ops/testenv/dockerd.sh" stop "$dockerd_dir" >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${DOCKER_TEST_NO_BUILD:-} ]]; then
    echo "# building the release binaries and the dashboard" >&2
    if ! { (cd "$repo" && cargo build --release --bins) &&
        (cd "$repo/frontend" && { [[ -d node_modules ]] || npm ci --no-audit --no-fund; } && npm run build); } \
        >"$tmp/build.log" 2>&1; then
        tail -n 30 "$tmp/build.log"; echo "docker-deploy-test.sh: build failed" >&2; exit 1
    fi
fi

# The harness stops dockerd itself if this script dies without its trap (SIGKILL).
harness=$(CONTIMG_HARNESS_OWNER=$$ "$repo/ops/testenv/dockerd.sh" start)
dockerd_dir=$(sed -n "s/^export DOCKERTEST_DIR='\(.*\)'$/\1/p" <<<"$harness")
socket=$dockerd_dir/docker.sock
export DOCKER_HOST=unix://$socket
export CONTIMG_BASE_CACHE=$repo/target/docker-base

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
printf '%s\n' "# docker-deploy-test.sh" "CONTIMG_STATE_DIR=$state" \
    "CONTIMG_INPUT_DIR=$tmp/data/incoming" "CONTIMG_OUTPUT_DIR=$tmp/data/ms" \
    "CONTIMG_API_PORT=$port" "CONTIMG_MAX_WORKERS=2" "CONTIMG_MIN_FREE_GB=1" > "$env_file"
ctl=("$repo/target/release/contimgctl" --backend docker --docker-socket "$socket" --state-dir "$state")
inspect() { docker inspect -f "$2" "$1" 2>/dev/null; }
post() {  # post PATH — as the dashboard does, with the token
    curl -sf --max-time 120 -X POST -H "Authorization: Bearer $(cat "$state/api.token")" "$url$1"
}
wait_for() {  # wait_for SECONDS CMD…
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do ((SECONDS < deadline)) || return 1; sleep 1; done
}
health_is() { [[ $(inspect "$1" '{{.State.Health.Status}}') == "$2" ]]; }
completed_groups() {
    curl -sf --max-time 5 "$url/api/streaming/metrics" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["queue_stats"].get("completed", 0))'
}
groups_completed() { local count; count=$(completed_groups) && ((count >= 1)); }
running_as() {  # running_as CONTAINER "USER NETWORK"
    [[ $(inspect "$1" '{{.State.Running}} {{.Config.User}} {{.HostConfig.NetworkMode}}') == "true $2" ]]
}
operation() {  # operation start|stop|restart — POST as the dashboard does; success:true
    post "/api/streaming/$1" | grep -q '"success":true'
}
restarted() { operation restart && [[ $(inspect contimg-stream '{{.State.StartedAt}}') != "$started_at" ]]; }
stopped() {
    operation stop && [[ $(inspect contimg-stream '{{.State.Running}}') == false ]] || return 1
    local rc=0
    "${ctl[@]}" status >/dev/null 2>&1 || rc=$?
    ((rc == 3))
}
started_again() { operation start && [[ $(inspect contimg-stream '{{.State.Running}}') == true ]]; }

echo "# ---- exit codes: 2 for settings, 1 for an unreachable dockerd"
printf '%s\n' "CONTIMG_STATE_DIR=relative/state" "CONTIMG_INPUT_DIR=$tmp/in" \
    "CONTIMG_OUTPUT_DIR=$tmp/out" "CONTIMG_NO_SUCH=1" "CONTIMG_API_PORT=99999" > "$tmp/bad.env"
printf '%s\n' "CONTIMG_STATE_DIR=$tmp/badvalues" "CONTIMG_INPUT_DIR=$tmp/in" \
    "CONTIMG_OUTPUT_DIR=$tmp/out" "CONTIMG_EXPECTED_SUBBANDS=0" > "$tmp/badvalues.env"
deploy_exit() {  # deploy_exit WANT ARGS… — deploy.sh --backend docker exits WANT, saying why
    local want=$1 rc=0 out; shift
    out=$("$repo/ops/deploy.sh" --backend docker --no-build "$@" 2>&1) || rc=$?
    echo "$out"
    ((rc == want))
}
bad_env_listed() {
    local out
    if out=$(deploy_exit 2 --env-file "$tmp/bad.env") && grep -q CONTIMG_NO_SUCH <<<"$out" &&
        grep -q relative/state <<<"$out" && grep -q CONTIMG_API_PORT <<<"$out"; then
        return 0
    fi
    echo "$out"
    return 1
}
unreachable_dockerd() { DOCKER_HOST=unix://$tmp/no.sock deploy_exit 1 --env-file "$tmp/badvalues.env"; }
check "bad env file: exit 2, every problem listed" bad_env_listed
check "values check-config rejects (expected_subbands 0): exit 2" deploy_exit 2 --env-file "$tmp/badvalues.env"
check "dockerd unreachable: exit 1" unreachable_dockerd

echo "# ---- deploy.sh --backend docker --demo (private dockerd $dockerd_dir)"
started=$SECONDS
check "deploy.sh --backend docker --demo exits 0" \
    "$repo/ops/deploy.sh" --backend docker --demo --no-build --env-file "$env_file"
echo "# deploy took $((SECONDS - started)) s"
# The env file is read as deploy.sh reads it (ops/lib/deploy-common.sh), every key included.
check "the env file's CONTIMG_MIN_FREE_GB reached the live config" \
    grep -Eq '^min_free_gb = 1(\.0)?$' "$state/streaming.toml"
check "no image came from a registry: only contimg-base (imported) and contimg" bash -c \
    "docker images --format '{{.Repository}}' | sort -u | tr '\n' ' ' | grep -qx 'contimg contimg-base '"
check "worker container runs as the image's non-root user with no network" \
    running_as contimg-stream "10110:10110 none"
check "API container runs as 10110 on the host network" running_as contimg-api "10110:10110 host"
check "worker's Docker healthcheck: healthy" wait_for 60 health_is contimg-stream healthy
check "API's Docker healthcheck: healthy" wait_for 60 health_is contimg-api healthy
check "dashboard served by the API container" bash -c "curl -sfL --max-time 10 '$url/streaming/' | grep -qi '<div id=\"root\"'"
check "demo groups complete in the worker container (within 150 s)" wait_for 150 groups_completed
echo "# completed groups: $(completed_groups || echo '?')"
check "a converted group's output exists" bash -c "ls '$tmp/data/ms' | grep -q ."

status_json=$("${ctl[@]}" --json status 2>&1 || true)
check "contimgctl --backend docker status: running, CPU and memory from the container" python3 -c '
import json, sys
s = json.loads(sys.argv[1])
assert s["backend"] == "docker" and s["running"] is True, s
assert isinstance(s["cpu_percent"], (int, float)), s
assert s["memory_mb"] > 0, s
assert s["queue_stats"]["completed"] >= 1, s
print(s["cpu_percent"], s["memory_mb"])' "$status_json"
echo "# status: $(python3 -c 'import json,sys; s=json.loads(sys.argv[1]); print("cpu", s.get("cpu_percent"), "% mem", s.get("memory_mb"), "MB pid", s.get("pid"))' "$status_json" 2>/dev/null)"

echo "# ---- the API (what the dashboard calls) controls the worker container"
started_at=$(inspect contimg-stream '{{.State.StartedAt}}')
check "POST restart restarts the container" restarted
check "POST stop stops it; contimgctl status then exits 3" stopped
check "POST start runs it again (the backend recreates it)" started_again

echo "# ---- compose.yaml describes the running containers (docker compose is not installed here)"
check "compose.yaml: parsed; worker and api equal docker inspect (image, entrypoint, command, user, network, mounts)" \
    python3 - "$repo/packaging/docker/compose.yaml" "$state/docker.env" <<'PY'
import json, os, re, subprocess, sys
import yaml

variables = dict(line.split("=", 1) for line in open(sys.argv[2]).read().splitlines()
                 if line and not line.startswith("#"))
def expand(text):
    def one(match):
        name, rest = match.group(1), match.group(2) or ""
        if name in variables:
            return variables[name]
        if rest.startswith(":-"):
            return rest[2:]
        raise SystemExit(f"compose.yaml needs {name}, which deploy-docker.sh did not write")
    return re.sub(r"\$\{([A-Z_]+)((?::[-?])[^}]*)?\}", one, text)
compose = yaml.safe_load(expand(open(sys.argv[1]).read()))
problems = []
for service in compose["services"].values():
    name = service["container_name"]
    info = json.loads(subprocess.check_output(["docker", "inspect", name]))[0]
    config, host = info["Config"], info["HostConfig"]
    entrypoint = service.get("entrypoint", ["/usr/bin/contimg-stream"])
    pairs = [
        ("image", service["image"], config["Image"]),
        ("entrypoint", entrypoint, config["Entrypoint"]),
        ("command", [str(c) for c in service["command"]], config["Cmd"]),
        ("user", service["user"], config["User"]),
        ("network", service["network_mode"], host["NetworkMode"]),
        ("mounts", sorted(service["volumes"]), sorted(host["Binds"])),
        ("group_add", [str(g) for g in service.get("group_add", [])], host.get("GroupAdd") or []),
    ]
    for what, want, have in pairs:
        if want != have:
            problems.append(f"{name} {what}: compose.yaml {want!r}, running {have!r}")
if problems:
    raise SystemExit("\n".join(problems))
print("compose.yaml matches", ", ".join(s["container_name"] for s in compose["services"].values()))
PY

if docker compose version >/dev/null 2>&1; then
    check "docker compose config accepts compose.yaml with deploy-docker.sh's variables" \
        docker compose --env-file "$state/docker.env" -f "$repo/packaging/docker/compose.yaml" config -q
else
    echo "# docker compose is not installed: compose.yaml checked by the YAML comparison above only"
fi

echo "# ---- the HEALTHCHECK can fail: a frozen worker writes no heartbeat"
worker_pid=$(inspect contimg-stream '{{.State.Pid}}')
kill -STOP "$worker_pid"
check "frozen worker (SIGSTOP) turns unhealthy (stale heartbeat; within 90 s)" wait_for 90 health_is contimg-stream unhealthy
kill -CONT "$worker_pid"
check "resumed worker turns healthy again" wait_for 60 health_is contimg-stream healthy

echo "# ---- converging redeploy, uninstall"
worker_id=$(inspect contimg-stream '{{.Id}}')
image_id=$(docker image inspect -f '{{.Id}}' contimg:local)
redeploy() { "$repo/ops/deploy.sh" --backend docker --no-build --env-file "$env_file" >"$tmp/redeploy.log" 2>&1 || { cat "$tmp/redeploy.log"; return 1; }; }
check "second deploy converges (exit 0)" redeploy
# Kept when the image is unchanged; otherwise (target/release rebuilt meanwhile, e.g.
# by another build in the same checkout) recreated from the new image.
converged_worker() {
    local image_now container_now
    image_now=$(docker image inspect -f '{{.Id}}' contimg:local)
    container_now=$(inspect contimg-stream '{{.Id}} {{.Image}} {{.State.Running}}')
    if [[ $image_now == "$image_id" ]]; then
        [[ $container_now == "$worker_id $image_id true" ]] && echo "# same image: worker container kept" && return 0
    else
        [[ $container_now == *" $image_now true" && $container_now != "$worker_id "* ]] &&
            echo "# new image (binaries rebuilt meanwhile): worker recreated from it" && return 0
    fi
    echo "image before $image_id, now $image_now; worker before $worker_id, now $container_now"
    cat "$tmp/redeploy.log"
    return 1
}
check "second deploy: the worker kept (same image) or recreated from the new image" converged_worker
[[ $(docker image inspect -f '{{.Id}}' contimg:local) == "$image_id" ]] &&
    echo "# image unchanged across the redeploy" || echo "# image rebuilt across the redeploy (new binaries)"
worker_stopped() { [[ $(inspect contimg-stream '{{.State.Running}}') == false ]]; }
dashboard_served() { curl -sfL --max-time 10 "$url/streaming/" | grep -qi '<div id="root"'; }
no_dashboard() { ! dashboard_served; }
check "--mode manual: exit 0" "$repo/ops/deploy.sh" --backend docker --no-build --mode manual --env-file "$env_file"
manual_mode() { worker_stopped && dashboard_served; }
check "--mode manual: worker container stopped, dashboard served" manual_mode
check "--mode streaming: exit 0" "$repo/ops/deploy.sh" --backend docker --no-build --mode streaming --env-file "$env_file"
streaming_mode() { running_as contimg-stream "10110:10110 none" && no_dashboard; }
check "--mode streaming: worker running, no dashboard" streaming_mode
check "uninstall --purge" "$repo/ops/deploy.sh" --backend docker --env-file "$env_file" --uninstall --purge
check "containers and the contimg image are gone, base image kept" bash -c \
    "! docker inspect contimg-stream contimg-api >/dev/null 2>&1 && ! docker image inspect contimg:local >/dev/null 2>&1 && docker image inspect contimg-base:bookworm >/dev/null"
check "state dir removed" test ! -e "$state"

echo "# ---- a member of the socket's group deploys without root"
# nobody with the socket's group; the containers then run as nobody's UID:GID.
nonroot=$tmp/nonroot
mkdir -p "$nonroot" && chown nobody:nogroup "$nonroot"
chmod 0755 "$dockerd_dir"   # the socket's dir (the socket itself stays root:docker 0660)
printf '%s\n' "CONTIMG_STATE_DIR=$nonroot/state" "CONTIMG_INPUT_DIR=$nonroot/in" \
    "CONTIMG_OUTPUT_DIR=$nonroot/out" "CONTIMG_API_PORT=$port" > "$tmp/nonroot.env"
as_nobody() {
    setpriv --reuid=nobody --regid=nogroup --groups="$(stat -c %g "$socket")" \
        env HOME="$nonroot" DOCKER_HOST="$DOCKER_HOST" "$@"
}
nobody_ids=$(id -u nobody):$(id -g nobody)
check "deploy.sh --backend docker as nobody (docker group): exit 0" \
    as_nobody "$repo/ops/deploy.sh" --backend docker --no-build --env-file "$tmp/nonroot.env"
check "containers run as nobody ($nobody_ids)" bash -c \
    "[[ \$(docker inspect -f '{{.Config.User}} {{.State.Running}}' contimg-stream contimg-api | sort -u) == '$nobody_ids true' ]]"
check "uninstall --purge as nobody" \
    as_nobody "$repo/ops/deploy.sh" --backend docker --env-file "$tmp/nonroot.env" --uninstall --purge

echo
echo "# docker-deploy-test: $pass passed, $fail failed"
((fail == 0))
