#!/usr/bin/env bash
# deploy-docker.sh — contimg in Docker containers; what `./ops/deploy.sh --backend
# docker` runs (deploy.sh hands over with the same flags).
#
#   ./ops/deploy.sh --backend docker [--mode streaming|manual|both] [--env-file PATH]
#                   [--demo] [--no-build] [--uninstall [--purge]]
#
# Steps: read the env file (the same KEY=VALUE file as deploy.sh's other backends) →
# cargo build --release (and the dashboard unless --mode streaming) → `contimg-stream
# check-config` judges the values (exit 2 if it rejects them) → the base image from
# Debian packages if missing (packaging/docker/build-base.sh: mmdebstrap + docker
# import, cached; no registry is contacted) → the runtime image
# (packaging/docker/build-image.sh, tag CONTIMG_DOCKER_IMAGE, default contimg:local) →
# host dirs owned by the containers' user → live config (`contimgctl config set`) →
# the API container `contimg-api` (host network, listening on CONTIMG_API_HOST:PORT,
# the Docker socket mounted, `--backend docker`) → the worker container
# `contimg-stream`, started through the API as the dashboard starts it (modes
# streaming/both; manual stops it) → --demo: simulated groups → health checks →
# summary. The two containers are the ones packaging/docker/compose.yaml describes;
# the variables it needs are written to <state>/docker.env.
#
# The containers run as a non-root user: the deploying user's UID:GID, or, when
# deployed by root, the image's `contimg` user (10110), which then owns the dirs.
# Docker: the CLI's DOCKER_HOST (unix:// only) or /var/run/docker.sock.
# Exit codes: 0 deployed and healthy; 1 a step or health check failed; 2 usage, an
# invalid env file, or values the binary rejects.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=both env_file="" demo=false build=true uninstall=false purge=false
image=${CONTIMG_DOCKER_IMAGE:-contimg:local}
api_container=contimg-api
worker_container=contimg-stream   # contimg_control::DEFAULT_CONTAINER
image_uid=10110                   # USER of packaging/docker/Dockerfile

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
warn() { printf 'deploy-docker.sh: warning: %s\n' "$*" >&2; }
die() { printf 'deploy-docker.sh: %s\n' "$*" >&2; exit 1; }
usage_error() { printf 'deploy-docker.sh: %s\n' "$*" >&2; exit 2; }

while (($#)); do
    case $1 in
        --backend) [[ ${2:-} == docker ]] || usage_error "only --backend docker comes here"; shift 2 ;;
        --backend=docker) shift ;;
        --mode) mode=${2:-}; shift 2 || usage_error "--mode needs a value" ;;
        --mode=*) mode=${1#*=}; shift ;;
        --env-file) env_file=${2:-}; shift 2 || usage_error "--env-file needs a value" ;;
        --env-file=*) env_file=${1#*=}; shift ;;
        --demo) demo=true; shift ;;
        --no-build) build=false; shift ;;
        --uninstall) uninstall=true; shift ;;
        --purge) purge=true; shift ;;
        -h|--help) sed -n '/^set -euo/q; 2,$p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
done
case $mode in streaming|manual|both) ;; *) usage_error "--mode must be streaming, manual or both" ;; esac
if $purge && ! $uninstall; then usage_error "--purge only goes with --uninstall"; fi

# ---------------------------------------------------------------- env file
# The same file, form and keys as deploy.sh's other backends (ops/lib/deploy-common.sh);
# the values are judged by check-config below.
# shellcheck source=ops/lib/deploy-common.sh
source "$repo/ops/lib/deploy-common.sh"
problems=()
problem() { problems+=("$1"); }
if [[ -n $env_file ]]; then
    [[ -f $env_file && -r $env_file ]] || usage_error "env file $env_file: not a readable file"
    read_env_file "$env_file"
fi
if [[ $(id -u) == 0 ]]; then default_state=/var/lib/contimg
else default_state=${XDG_STATE_HOME:-$HOME/.local/state}/contimg; fi
# The paths, and the streaming.toml keys written from the env file (the rest of the
# live config stays).
deploy_paths "$default_state"
# Each dir is bind-mounted at its own path, so it must be absolute; the DBs must lie
# in a mounted dir.
for dir in "$state_dir" "$input_dir" "$output_dir" "$scratch_dir"; do
    [[ $dir == /* && $dir != *:* ]] || problems+=("$dir: the docker backend needs absolute paths without ':'")
done
for db in "$queue_db" "$registry_db"; do
    case $db in "$state_dir"/*|"$input_dir"/*|"$output_dir"/*|"$scratch_dir"/*) ;;
        *) problems+=("$db: the docker backend mounts only the state, input, output and scratch dirs; put the DB in one") ;;
    esac
done
[[ $api_port =~ ^[0-9]+$ ]] && ((10#$api_port >= 1 && 10#$api_port <= 65535)) ||
    problems+=("CONTIMG_API_PORT: must be a port number 1-65535 (got '$api_port')")
[[ $api_host =~ ^[0-9.]+$ || $api_host =~ ^[0-9A-Fa-f:]+$ ]] ||
    problems+=("CONTIMG_API_HOST: must be an IP address (got '$api_host')")
if ((${#problems[@]})); then
    printf 'deploy-docker.sh: invalid settings%s:\n' "${env_file:+ in $env_file}" >&2
    printf '  - %s\n' "${problems[@]}" >&2
    exit 2
fi

listen=$api_host:$api_port api_url=http://$api_host:$api_port
[[ $api_host == *:* ]] && listen="[$api_host]:$api_port" api_url="http://[$api_host]:$api_port"
record=$state_dir/deploy.env compose_env=$state_dir/docker.env
token_file=$state_dir/api.token run_dir=$state_dir/run log_dir=$state_dir/logs
ctl_bin=$repo/target/release/contimgctl

# ---------------------------------------------------------------- docker access
command -v docker >/dev/null || die "the docker CLI is missing (apt-get install docker.io)"
socket=/var/run/docker.sock
case ${DOCKER_HOST:-} in
    "") ;;
    unix://*) socket=${DOCKER_HOST#unix://} ;;
    *) die "DOCKER_HOST=$DOCKER_HOST: only a unix socket is supported (the API mounts it)" ;;
esac
docker version >/dev/null 2>&1 || die "dockerd does not answer on $socket (is it running? may $(id -un) use it?)"
docker_gid=$(stat -c %g "$socket")
if [[ $(id -u) == 0 ]]; then run_uid=$image_uid run_gid=$image_uid
else run_uid=$(id -u) run_gid=$(id -g); fi
ctl=("$ctl_bin" --backend docker --docker-socket "$socket" --docker-image "$image"
    --state-dir "$state_dir")

api() {  # api METHOD PATH — the API with the token; prints the body
    curl -s --max-time 120 -X "$1" -H "Authorization: Bearer $(cat "$token_file")" "$api_url$2"
}
container_state() { docker inspect -f "$2" "$1" 2>/dev/null || true; }
as_service_user() {  # as_service_user CMD… — as the containers' UID:GID
    if [[ $(id -u) == 0 ]]; then setpriv --reuid="$run_uid" --regid="$run_gid" --clear-groups -- "$@"
    else "$@"; fi
}
stop_demo() {  # the simulator's session (setsid), once we know the PID is still ours
    local pid comm
    pid=$(cat "$run_dir/demo.pid" 2>/dev/null || true)
    comm=$(cat "/proc/${pid:-none}/comm" 2>/dev/null || true)
    # contimgctl simulate execs `contimg-stream simulate`.
    if [[ $comm == contimgctl || $comm == contimg-stream ]]; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    fi
    rm -f "$run_dir/demo.pid"
}
remove_containers() {
    local name
    for name in "$api_container" "$worker_container"; do
        docker rm -f "$name" >/dev/null 2>&1 || true
    done
}

# ---------------------------------------------------------------- uninstall
if $uninstall; then
    if ! grep -qsx 'DEPLOY_BACKEND=docker' "$record"; then
        die "nothing to uninstall: $record names no docker deployment (pass the --env-file used to deploy)"
    fi
    log "uninstalling the docker deployment (containers $api_container, $worker_container)"
    stop_demo
    remove_containers
    rm -f "$record" "$compose_env"
    if $purge; then
        [[ $state_dir == / || $state_dir == "$HOME" ]] && die "refusing to remove $state_dir"
        docker image rm "$image" >/dev/null 2>&1 || true
        rm -rf "$state_dir"
        log "removed $state_dir and the image $image (kept: the base image, input $input_dir, output $output_dir)"
    else
        log "kept the state dir $state_dir, the image $image and the input/output dirs (--purge removes state and image)"
    fi
    exit 0
fi
if [[ -f $record ]] && ! grep -qx 'DEPLOY_BACKEND=docker' "$record"; then
    die "$state_dir holds a deployment of another backend ($(sed -n 's/^DEPLOY_BACKEND=//p' "$record")): remove it first with ./ops/deploy.sh${env_file:+ --env-file $env_file} --uninstall"
fi

# ---------------------------------------------------------------- build
log "deploying: mode $mode, backend docker ($socket), image $image, state $state_dir, API $api_url"
want_dashboard=true; [[ $mode == streaming ]] && want_dashboard=false
# Host packages: ops/install-deps.sh's runtime set (check-config runs the host's
# contimg-stream; curl and python3 do the health checks), build when building, and
# mmdebstrap when the base image is still to be made. Root installs what is missing.
if command -v dpkg-query >/dev/null; then
    sets=(runtime); $build && sets+=(build)
    need=$("$repo/ops/install-deps.sh" --missing "${sets[@]}" | tr '\n' ' ') ||
        die "ops/install-deps.sh --missing ${sets[*]} failed"
    base_tag=$(sed -n 's/^FROM[[:space:]]\{1,\}\([^[:space:]]*\).*/\1/p' "$repo/packaging/docker/Dockerfile")
    if ! docker image inspect "$base_tag" >/dev/null 2>&1 && ! command -v mmdebstrap >/dev/null; then
        need+="mmdebstrap "
    fi
    if [[ -n ${need// /} && $(id -u) != 0 ]]; then
        die "missing packages: ${need% }; as root run: apt-get install -y --no-install-recommends ${need% }"
    elif [[ -n ${need// /} ]]; then
        log "installing missing packages: ${need% }"
        if ! { "$repo/ops/install-deps.sh" --apt-only "${sets[@]}" &&
            if [[ $need == *mmdebstrap* ]]; then apt-get install -y -qq --no-install-recommends mmdebstrap; fi; } >&2; then
            die "installing failed; run: apt-get install -y --no-install-recommends ${need% }"
        fi
    fi
fi
if $build; then
    command -v cargo >/dev/null || die "cargo not found (install Rust: https://rustup.rs)"
    log "cargo build --release"
    (cd "$repo" && cargo build --release --bins) ||
        die "cargo build failed (missing build packages? run ops/install-deps.sh as root)"
    if $want_dashboard; then
        command -v npm >/dev/null || die "npm not found (apt-get install nodejs npm)"
        log "dashboard: npm ci && npm run build"
        (cd "$repo/frontend" && npm ci --no-audit --no-fund && npm run build) >&2 || die "the dashboard build failed"
    fi
fi
[[ -x $ctl_bin ]] || die "target/release/contimgctl missing (run without --no-build)"
check_config
log "images (base: Debian packages via mmdebstrap, cached; no registry)"
dashboard_flag=(); $want_dashboard || dashboard_flag=(--no-dashboard)
CONTIMG_DOCKER_IMAGE=$image "$repo/packaging/docker/build-image.sh" "${dashboard_flag[@]}" >/dev/null ||
    die "building the image failed"
new_image=$(docker image inspect -f '{{.Id}}' "$image")

# ---------------------------------------------------------------- dirs, token, config
for dir in "$state_dir" "$input_dir" "$output_dir" "$scratch_dir" "$run_dir" "$log_dir"; do
    mkdir -p "$dir"
    [[ $(id -u) == 0 ]] && chown "$run_uid:$run_gid" "$dir"
done
chmod 0750 "$state_dir"
if [[ ! -s $token_file ]]; then
    (umask 077 && head -c 32 /dev/urandom | base64 > "$token_file.new") && mv -f "$token_file.new" "$token_file"
fi
chmod 0640 "$token_file"
# The state dir's own files (token, config, DBs, history) belong to the containers'
# user, also those a root contimgctl or an earlier deploy wrote; the data below is left alone.
[[ $(id -u) == 0 ]] && find "$state_dir" -maxdepth 2 \! -user "$run_uid" -exec chown "$run_uid:$run_gid" {} +
before=$(sha256sum "$state_dir/streaming.toml" 2>/dev/null || true)
rc=0
out=$(as_service_user "$ctl_bin" --backend process --state-dir "$state_dir" config set "${config_settings[@]}" --no-restart 2>&1) || rc=$?
((rc == 0)) || reject_config "contimgctl config set" "$rc" "$out"
config_changed=false
[[ $before != "$(sha256sum "$state_dir/streaming.toml")" ]] && config_changed=true

# The variables of packaging/docker/compose.yaml: what the containers below run with.
dashboard_dir=/usr/share/contimg/dashboard
$want_dashboard || dashboard_dir=/usr/share/contimg/no-dashboard
cat > "$compose_env" <<EOF
# written by ops/deploy-docker.sh: docker compose --env-file $compose_env -f $repo/packaging/docker/compose.yaml …
CONTIMG_IMAGE=$image
CONTIMG_UID=$run_uid
CONTIMG_GID=$run_gid
DOCKER_GID=$docker_gid
DOCKER_SOCKET=$socket
CONTIMG_STATE_DIR=$state_dir
CONTIMG_INPUT_DIR=$input_dir
CONTIMG_OUTPUT_DIR=$output_dir
CONTIMG_SCRATCH_DIR=$scratch_dir
CONTIMG_API_LISTEN=$listen
CONTIMG_DASHBOARD_DIR=$dashboard_dir
EOF
cat > "$record" <<EOF
# written by ops/deploy-docker.sh; read by ./ops/deploy.sh --backend docker --uninstall
DEPLOY_BACKEND=docker
DEPLOY_MODE=$mode
DEPLOY_IMAGE=$image
DEPLOY_API_URL=$api_url
EOF

# ---------------------------------------------------------------- containers
stop_demo
mounts=()
for dir in "$state_dir" "$input_dir" "$output_dir" "$scratch_dir"; do mounts+=(-v "$dir:$dir"); done
log "API container $api_container on $listen (host network, --backend docker)"
docker rm -f "$api_container" >/dev/null 2>&1 || true
docker run -d --name "$api_container" --restart unless-stopped \
    --network host --user "$run_uid:$run_gid" --group-add "$docker_gid" \
    "${mounts[@]}" -v "$socket:/var/run/docker.sock" \
    --entrypoint /usr/bin/contimg-api "$image" \
    --state-dir "$state_dir" --listen "$listen" --backend docker \
    --docker-socket /var/run/docker.sock --docker-image "$image" \
    --docker-mount "$input_dir" --docker-mount "$output_dir" --docker-mount "$scratch_dir" \
    --dashboard-dir "$dashboard_dir" >/dev/null || die "docker run $api_container failed"
retry 60 0.5 api_healthy || {
    docker logs --tail 20 "$api_container" >&2 || true
    die "the API container does not answer $api_url/api/streaming/health"
}
worker_image=$(container_state "$worker_container" '{{.Image}}')
if [[ $mode == manual ]]; then
    log "mode manual: the worker container stays stopped"
    api POST /api/streaming/stop >/dev/null || true
else
    # A worker from an older image or config is stopped first: the backend recreates
    # a stopped container with the current image and options on start.
    why=""
    [[ -n $worker_image && $worker_image != "$new_image" ]] && why="a new image ${new_image:7:12}, it runs ${worker_image:7:12}"
    [[ -n $worker_image ]] && $config_changed && why="${why:+$why; }the config changed"
    if [[ -n $why ]]; then
        log "stopping the old worker container ($why)"
        api POST /api/streaming/stop >/dev/null || true
    fi
    log "starting the worker container $worker_container through the API (as the dashboard does)"
    outcome=$(api POST /api/streaming/start) || die "POST /api/streaming/start failed"
    grep -q '"success":true' <<<"$outcome" || die "the API could not start the worker: $outcome"
fi

if $demo; then
    log "demo: simulating 6 subband groups (one every 10 s) into $input_dir"
    subbands=$("$ctl_bin" --state-dir "$state_dir" --json config show |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["expected_subbands"])')
    simulate=("$ctl_bin" simulate --input-dir "$input_dir" --profile small --groups 6 --interval 10
        --subbands "$subbands")
    # setpriv execs: the PID is the simulator's, in its own session (stop_demo).
    [[ $(id -u) == 0 ]] && simulate=(setpriv --reuid="$run_uid" --regid="$run_gid" --clear-groups -- "${simulate[@]}")
    setsid "${simulate[@]}" </dev/null >>"$log_dir/demo.log" 2>&1 &
    echo $! > "$run_dir/demo.pid"
fi

# ---------------------------------------------------------------- health checks
log "health checks"
failures=()
api_healthy || failures+=("API: $api_url/api/streaming/health does not answer 200")
if $want_dashboard; then
    code=$(http_code -L "$api_url/streaming/")
    [[ $code == 200 ]] || failures+=("dashboard: $api_url/streaming/ answered ${code:-nothing}")
fi
healthy() { [[ $(container_state "$1" '{{.State.Health.Status}}') == healthy ]]; }
retry 60 1 healthy "$api_container" || failures+=("$api_container: Docker healthcheck not healthy ($(container_state "$api_container" '{{.State.Health.Status}}'))")
if [[ $mode != manual ]]; then
    retry 60 0.5 api_running || failures+=("worker: the API does not see it running")
    retry 20 0.5 "${ctl[@]}" status >/dev/null 2>&1 || failures+=("worker: ${ctl[*]} status does not report it running")
    retry 60 1 healthy "$worker_container" ||
        failures+=("$worker_container: Docker healthcheck not healthy ($(container_state "$worker_container" '{{.State.Health.Status}}'))")
elif api_running; then
    failures+=("worker: running, but mode manual keeps it stopped")
fi
if $demo && [[ $mode != manual ]]; then
    retry 60 1 demo_group_queued || failures+=("demo: no group reached the queue within 60 s")
fi
if ((${#failures[@]})); then
    echo "deploy-docker.sh: health checks failed:" >&2
    printf '  - %s\n' "${failures[@]}" >&2
    echo "  logs: docker logs $api_container; docker logs $worker_container; ${ctl[*]} logs" >&2
    exit 1
fi

cat <<EOF

contimg is deployed (mode $mode, backend docker, image $image).
  API          $api_url/api/streaming/status   (container $api_container)
$($want_dashboard && echo "  Dashboard    $api_url/streaming/")
  Worker       container $worker_container, $([[ $mode == manual ]] && echo "stopped (manual mode)" || echo running), as UID $run_uid
  Token        $token_file
  State        $state_dir   (compose variables: $compose_env)
  Input        $input_dir
  Output       $output_dir
Useful commands:
  ${ctl[*]} status
  ${ctl[*]} logs -f
  docker ps --filter name=contimg
  $repo/ops/deploy.sh --backend docker${env_file:+ --env-file $env_file} --uninstall
EOF
