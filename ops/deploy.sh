#!/usr/bin/env bash
# deploy.sh — build, install, start and health-check contimg in one command.
#
#   ./ops/deploy.sh [--mode streaming|manual|both] [--env-file PATH] [--demo]
#                   [--backend auto|system|user|process] [--no-build] [--uninstall [--purge]]
#
# Modes (they differ):
#   streaming  the worker (started, enabled) + the API, no dashboard (headless node)
#   manual     the API + dashboard; the worker is installed but stopped (start it from
#              the dashboard, `contimgctl start` or the API when wanted)
#   both       everything (default)
# Backends (--backend auto picks the first that applies):
#   system     root on a host whose PID 1 is systemd: builds and installs the .deb
#              (packaging/build-deb.sh; units, polkit, sysusers, /etc/contimg), then
#              applies the env file as drop-ins (50-deploy.conf) and the live config
#   user       `systemctl --user` reaches a user manager: binaries and dashboard in
#              CONTIMG_PREFIX, user units in the manager's config unit dir
#   process    neither: contimg-api runs in the background (PID file in the state
#              dir) and supervises the worker itself (the process backend)
# Steps: validate the env file (every problem listed at once, exit 2) → build (cargo
# build --release; npm ci && npm run build unless --mode streaming) → create the
# directories (owned by the service user) → install → write the live config
# (<state>/streaming.toml: env values over what is there) → start/stop per mode →
# --demo: simulated subband groups into the input dir (dashboard data within a
# minute) → health checks with retries → summary. Running it again converges
# (changed config → worker restarted; mode switch → worker started/stopped; backend
# switch → the previous one is uninstalled). --uninstall removes what it installed
# (services, units, binaries, dashboard, drop-ins, PID files) and keeps data: the
# state dir (queue DB, config) unless --purge; input/output dirs always.
#
# Env file: KEY=VALUE lines, see packaging/contimg.env.example. Without --env-file:
# system backend → /var/lib/contimg/{,incoming,ms}; otherwise
# ${XDG_STATE_HOME:-~/.local/state}/contimg/{,incoming,ms}. Pass the same --env-file
# to --uninstall.
#
# Exit codes: 0 deployed and healthy; 1 a step or health check failed; 2 usage or
# invalid env file.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=both
env_file=""
demo=false
backend=auto
build=true
uninstall=false
purge=false

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
warn() { printf 'deploy.sh: warning: %s\n' "$*" >&2; }
die() { printf 'deploy.sh: %s\n' "$*" >&2; exit 1; }

while (($#)); do
    case $1 in
        --mode) mode=${2:-}; shift 2 || usage ;;
        --mode=*) mode=${1#*=}; shift ;;
        --env-file) env_file=${2:-}; shift 2 || usage ;;
        --env-file=*) env_file=${1#*=}; shift ;;
        --backend) backend=${2:-}; shift 2 || usage ;;
        --backend=*) backend=${1#*=}; shift ;;
        --demo) demo=true; shift ;;
        --no-build) build=false; shift ;;
        --uninstall) uninstall=true; shift ;;
        --purge) purge=true; shift ;;
        -h|--help) sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "deploy.sh: unknown argument: $1" >&2; usage ;;
    esac
done
case $mode in streaming|manual|both) ;; *) echo "deploy.sh: --mode must be streaming, manual or both" >&2; exit 2 ;; esac
case $backend in auto|system|user|process) ;; *) echo "deploy.sh: --backend must be auto, system, user or process" >&2; exit 2 ;; esac
if $purge && ! $uninstall; then echo "deploy.sh: --purge only goes with --uninstall" >&2; exit 2; fi

# ---------------------------------------------------------------- backend detection
pid1_is_systemd() { [[ -d /run/systemd/system ]] && [[ $(ps -p 1 -o comm= 2>/dev/null) == systemd ]]; }
user_manager_reachable() { timeout 5 systemctl --user show-environment >/dev/null 2>&1; }
if [[ $backend == auto ]]; then
    if [[ $(id -u) == 0 ]] && pid1_is_systemd; then backend=system
    elif user_manager_reachable; then backend=user
    else backend=process
    fi
fi
if [[ $backend == system ]]; then
    [[ $(id -u) == 0 ]] || die "the system backend needs root"
    pid1_is_systemd || die "the system backend needs systemd as PID 1"
fi
if [[ $backend == user ]] && ! user_manager_reachable; then
    die "the user backend needs a reachable user manager (systemctl --user)"
fi

# ---------------------------------------------------------------- env file
known_keys=(CONTIMG_INPUT_DIR CONTIMG_OUTPUT_DIR CONTIMG_STATE_DIR CONTIMG_SCRATCH_DIR
    CONTIMG_QUEUE_DB CONTIMG_REGISTRY_DB CONTIMG_API_HOST CONTIMG_API_PORT
    CONTIMG_EXPECTED_SUBBANDS CONTIMG_CHUNK_MINUTES CONTIMG_CHUNK_DURATION
    CONTIMG_MAX_WORKERS CONTIMG_LOG_LEVEL CONTIMG_MONITOR_INTERVAL CONTIMG_POLL_INTERVAL
    CONTIMG_PREFIX)
declare -A env=() env_line=()
errors=()
problem() { errors+=("$1"); }

if [[ -n $env_file ]]; then
    if [[ ! -f $env_file || ! -r $env_file ]]; then
        echo "deploy.sh: env file $env_file: not a readable file" >&2; exit 2
    fi
    n=0
    while IFS= read -r line || [[ -n $line ]]; do
        n=$((n + 1))
        line=${line%$'\r'}
        [[ $line =~ ^[[:space:]]*(#.*)?$ ]] && continue
        if [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then
            key=${BASH_REMATCH[2]} value=${BASH_REMATCH[3]}
            # Strip an unquoted trailing comment, surrounding blanks and quotes.
            if [[ $value =~ ^\"(.*)\"[[:space:]]*(#.*)?$ || $value =~ ^\'(.*)\'[[:space:]]*(#.*)?$ ]]; then
                value=${BASH_REMATCH[1]}
            else
                value=${value%%[[:space:]]#*}
                value=${value%"${value##*[![:space:]]}"}
                value=${value#"${value%%[![:space:]]*}"}
            fi
            if [[ $key != CONTIMG_* ]]; then
                warn "$env_file:$n: $key is not a CONTIMG_ variable; ignored"
                continue
            fi
            if [[ " ${known_keys[*]} " != *" $key "* ]]; then
                problem "line $n: $key: unknown variable (known: ${known_keys[*]})"
                continue
            fi
            [[ -n ${env_line[$key]:-} ]] && problem "line $n: $key: set twice (also line ${env_line[$key]})"
            if [[ $value == *'$'* ]]; then
                problem "line $n: $key: variable expansion is not supported (write the value out)"
            fi
            env[$key]=$value
            env_line[$key]=$n
        else
            problem "line $n: not KEY=VALUE: $line"
        fi
    done < "$env_file"
    for key in CONTIMG_INPUT_DIR CONTIMG_OUTPUT_DIR CONTIMG_STATE_DIR; do
        [[ -n ${env[$key]:-} ]] || problem "$key: missing (required)"
    done
fi

# Defaults.
if [[ $backend == system ]]; then
    default_state=/var/lib/contimg
else
    default_state=${XDG_STATE_HOME:-$HOME/.local/state}/contimg
fi
state_dir=${env[CONTIMG_STATE_DIR]:-$default_state}
input_dir=${env[CONTIMG_INPUT_DIR]:-$state_dir/incoming}
output_dir=${env[CONTIMG_OUTPUT_DIR]:-$state_dir/ms}
scratch_dir=${env[CONTIMG_SCRATCH_DIR]:-$state_dir/scratch}
queue_db=${env[CONTIMG_QUEUE_DB]:-$state_dir/ingest.sqlite3}
registry_db=${env[CONTIMG_REGISTRY_DB]:-$state_dir/cal_registry.sqlite3}
api_host=${env[CONTIMG_API_HOST]:-127.0.0.1}
api_port=${env[CONTIMG_API_PORT]:-8010}
expected_subbands=${env[CONTIMG_EXPECTED_SUBBANDS]:-16}
chunk=${env[CONTIMG_CHUNK_MINUTES]:-${env[CONTIMG_CHUNK_DURATION]:-5.0}}
max_workers=${env[CONTIMG_MAX_WORKERS]:-4}
log_level=${env[CONTIMG_LOG_LEVEL]:-INFO}
monitor_interval=${env[CONTIMG_MONITOR_INTERVAL]:-60}
poll_interval=${env[CONTIMG_POLL_INTERVAL]:-5}
prefix=${env[CONTIMG_PREFIX]:-${XDG_DATA_HOME:-$HOME/.local/share}/contimg}

at() { [[ -n ${env_line[$1]:-} ]] && printf 'line %s: ' "${env_line[$1]}"; return 0; }
check_path() {  # KEY VALUE KIND(dir|file)
    local key=$1 value=$2 kind=$3 probe
    if [[ $value != /* ]]; then
        problem "$(at "$key")$key: must be an absolute path (got '$value')"; return
    fi
    if [[ $kind == dir && -e $value && ! -d $value ]]; then
        problem "$(at "$key")$key: $value exists and is not a directory"; return
    fi
    if [[ $kind == file && -d $value ]]; then
        problem "$(at "$key")$key: $value is a directory"; return
    fi
    probe=$value
    [[ $kind == file ]] && probe=$(dirname "$value")
    while [[ ! -e $probe ]]; do probe=$(dirname "$probe"); done
    if [[ ! -d $probe ]]; then
        problem "$(at "$key")$key: $probe is not a directory"
    elif [[ $probe != "$value" && $probe != "$(dirname "$value")" && ! -w $probe ]]; then
        problem "$(at "$key")$key: cannot create $value ($probe is not writable)"
    fi
}
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_number() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }
n_errors=${#errors[@]}
check_path CONTIMG_STATE_DIR "$state_dir" dir
state_ok=true; ((${#errors[@]} == n_errors)) || state_ok=false
# Paths derived from a broken (or missing) setting would only repeat its problem.
check_derived() {  # KEY VALUE KIND
    if [[ -n ${env_line[$1]:-} ]]; then check_path "$@"
    elif $state_ok && [[ -z $env_file || ($1 != CONTIMG_INPUT_DIR && $1 != CONTIMG_OUTPUT_DIR) ]]; then check_path "$@"
    fi
}
check_derived CONTIMG_INPUT_DIR "$input_dir" dir
check_derived CONTIMG_OUTPUT_DIR "$output_dir" dir
check_derived CONTIMG_SCRATCH_DIR "$scratch_dir" dir
check_derived CONTIMG_QUEUE_DB "$queue_db" file
check_derived CONTIMG_REGISTRY_DB "$registry_db" file
check_path CONTIMG_PREFIX "$prefix" dir
if ! is_uint "$api_port" || ((10#$api_port < 1 || 10#$api_port > 65535)); then
    problem "$(at CONTIMG_API_PORT)CONTIMG_API_PORT: must be a port number 1-65535 (got '$api_port')"
fi
if ! [[ $api_host =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ || $api_host =~ ^[0-9A-Fa-f:]+$ ]]; then
    problem "$(at CONTIMG_API_HOST)CONTIMG_API_HOST: must be an IP address (got '$api_host')"
fi
if ! is_uint "$expected_subbands" || ((10#$expected_subbands < 1 || 10#$expected_subbands > 64)); then
    problem "$(at CONTIMG_EXPECTED_SUBBANDS)CONTIMG_EXPECTED_SUBBANDS: must be an integer 1-64 (got '$expected_subbands')"
fi
if ! is_uint "$max_workers" || ((10#$max_workers < 1)); then
    problem "$(at CONTIMG_MAX_WORKERS)CONTIMG_MAX_WORKERS: must be an integer >= 1 (got '$max_workers')"
fi
for pair in "CONTIMG_CHUNK_MINUTES:$chunk" "CONTIMG_MONITOR_INTERVAL:$monitor_interval" "CONTIMG_POLL_INTERVAL:$poll_interval"; do
    key=${pair%%:*} value=${pair#*:}
    if ! is_number "$value" || [[ $value =~ ^0+([.]0*)?$ ]]; then
        [[ $key == CONTIMG_CHUNK_MINUTES && -n ${env[CONTIMG_CHUNK_DURATION]:-} ]] && key=CONTIMG_CHUNK_DURATION
        problem "$(at "$key")$key: must be a number > 0 (got '$value')"
    fi
done
case $log_level in DEBUG|INFO|WARNING|ERROR|CRITICAL) ;;
    *) problem "$(at CONTIMG_LOG_LEVEL)CONTIMG_LOG_LEVEL: must be DEBUG, INFO, WARNING, ERROR or CRITICAL (got '$log_level')" ;;
esac
if [[ -n ${env[CONTIMG_CHUNK_MINUTES]:-} && -n ${env[CONTIMG_CHUNK_DURATION]:-} ]]; then
    problem "CONTIMG_CHUNK_MINUTES and CONTIMG_CHUNK_DURATION: set only one"
fi
if [[ $backend == system && $state_dir != /var/lib/contimg* ]]; then
    problem "$(at CONTIMG_STATE_DIR)CONTIMG_STATE_DIR: the system backend keeps its state in /var/lib/contimg (got '$state_dir')"
fi
if ((${#errors[@]})); then
    {
        echo "deploy.sh: invalid settings${env_file:+ in $env_file} (${#errors[@]} problems):"
        printf '  - %s\n' "${errors[@]}"
        echo "See packaging/contimg.env.example."
    } >&2
    exit 2
fi

# ---------------------------------------------------------------- shared helpers
api_url="http://$api_host:$api_port"
[[ $api_host == *:* ]] && api_url="http://[$api_host]:$api_port"
record=$state_dir/deploy.env          # what this script installed (for --uninstall)
token_file=$state_dir/api.token
run_dir=$state_dir/run
log_dir=$state_dir/logs
want_worker=false; [[ $mode != manual ]] && want_worker=true
want_dashboard=false; [[ $mode != streaming ]] && want_dashboard=true

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" 2>/dev/null || true; }
retry() {  # retry TRIES DELAY CMD… — true once CMD succeeds
    local tries=$1 delay=$2 i; shift 2
    for ((i = 0; i < tries; i++)); do "$@" && return 0; sleep "$delay"; done
    return 1
}
api_healthy() { [[ $(http_code "$api_url/api/streaming/health") == 200 ]]; }
api_post() {  # api_post PATH — with the token; prints the body
    curl -s --max-time 120 -X POST -H "Authorization: Bearer $(cat "$token_file")" "$api_url$1"
}
api_running() { curl -s --max-time 5 "$api_url/api/streaming/status" 2>/dev/null | grep -q '"running":true'; }
pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

ensure_token() {  # ensure_token OWNER_GROUP
    if [[ ! -s $token_file ]]; then
        (umask 077 && head -c 32 /dev/urandom | base64 > "$token_file.new")
        mv -f "$token_file.new" "$token_file"
    fi
    [[ -n ${1:-} ]] && chown "root:$1" "$token_file"
    chmod 0640 "$token_file"
}

# Writes <state>/streaming.toml: the env values over the existing file (other keys
# and tables kept), then validates it with the worker. Prints "changed" if it changed.
write_config() {
    local file=$state_dir/streaming.toml tmp
    tmp=$(mktemp "$state_dir/.streaming.toml.deploy.XXXXXX")
    python3 - "$file" "$tmp" <<PY
import re, sys, os
src, dst = sys.argv[1], sys.argv[2]
values = {
    "input_dir": '"$input_dir"', "output_dir": '"$output_dir"', "scratch_dir": '"$scratch_dir"',
    "queue_db": '"$queue_db"', "registry_db": '"$registry_db"',
    "expected_subbands": "$expected_subbands", "chunk_duration": "$chunk",
    "max_workers": "$max_workers", "log_level": '"$log_level"',
    "monitor_interval": "$monitor_interval", "poll_interval": "$poll_interval",
}
lines = open(src).read().splitlines() if os.path.exists(src) else [
    "# contimg streaming service configuration (written by ops/deploy.sh from its env file;",
    "# other keys may be edited with \`contimgctl config set\` and are kept on redeploy).", ""]
out, seen, in_table = [], set(), False
for line in lines:
    if re.match(r"\s*\[", line):
        if not in_table:
            out += [f"{k} = {v}" for k, v in values.items() if k not in seen]
            seen.update(values)
        in_table = True
    m = re.match(r"\s*([A-Za-z_]+)\s*=", line)
    if not in_table and m and m.group(1) in values:
        out.append(f"{m.group(1)} = {values[m.group(1)]}")
        seen.add(m.group(1))
        continue
    out.append(line)
if not in_table:
    out += [f"{k} = {v}" for k, v in values.items() if k not in seen]
open(dst, "w").write("\n".join(out) + "\n")
PY
    local check=("$bin_dir/contimg-stream" --config "$tmp" --state-dir "$state_dir" check-config)
    if [[ -n ${service_user:-} ]]; then
        chown "$service_user:$service_user" "$tmp"
        check=(runuser -u "$service_user" -- "${check[@]}")
    fi
    if ! "${check[@]}" >/dev/null 2>"$tmp.err"; then
        cat "$tmp.err" >&2; rm -f "$tmp" "$tmp.err"
        die "the resulting configuration is invalid (see above)"
    fi
    rm -f "$tmp.err"
    if [[ -f $file ]] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"; return 0
    fi
    chmod 0640 "$tmp"
    mv -f "$tmp" "$file"
    echo changed
}

make_dirs() {  # make_dirs OWNER — state/input/output/scratch, logs, run
    local owner=${1:-} d
    for d in "$state_dir" "$input_dir" "$output_dir" "$scratch_dir" "$log_dir" "$run_dir" \
        "$(dirname "$queue_db")" "$(dirname "$registry_db")"; do
        mkdir -p "$d"
        [[ -n $owner ]] && chown "$owner:$owner" "$d"
    done
    chmod 0750 "$state_dir"
}

build_all() {
    $build || { log "skipping the build (--no-build)"; return 0; }
    command -v cargo >/dev/null || die "cargo not found (install Rust: https://rustup.rs)"
    log "cargo build --release (several minutes on a cold tree)"
    (cd "$repo" && cargo build --release --bins)
    if $want_dashboard || [[ $backend == system ]]; then
        command -v npm >/dev/null || die "npm not found (apt-get install nodejs npm)"
        log "dashboard: npm ci && npm run build"
        (cd "$repo/frontend" && npm ci --no-audit --no-fund && npm run build)
    fi
}

write_record() {
    cat > "$record" <<EOF
# written by ops/deploy.sh; read by ops/deploy.sh --uninstall
DEPLOY_BACKEND=$backend
DEPLOY_MODE=$mode
DEPLOY_PREFIX=$prefix
DEPLOY_UNIT_DIR=${unit_dir:-}
DEPLOY_API_URL=$api_url
DEPLOY_DEB_SHA256=${deb_sha256:-}
EOF
}
read_record() {  # sets prev_backend, prev_prefix, prev_unit_dir (empty if none)
    prev_backend="" prev_prefix="" prev_unit_dir=""
    [[ -f $record ]] || return 0
    prev_backend=$(sed -n 's/^DEPLOY_BACKEND=//p' "$record")
    prev_prefix=$(sed -n 's/^DEPLOY_PREFIX=//p' "$record")
    prev_unit_dir=$(sed -n 's/^DEPLOY_UNIT_DIR=//p' "$record")
}

# The user manager's own unit dir (its XDG config home), from its UnitPath.
user_unit_dir() {
    local path
    for path in $(systemctl --user show -p UnitPath --value 2>/dev/null); do
        case $path in
            /etc/*|/usr/*|/lib/*|/run/*|"${XDG_RUNTIME_DIR:-/nonexistent}"/*) continue ;;
            */systemd/user) echo "$path"; return 0 ;;
        esac
    done
    echo "${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"
}

# ---------------------------------------------------------------- process backend
process_api_pid() { local p; p=$(cat "$run_dir/contimg-api.pid" 2>/dev/null || true); pid_alive "$p" && echo "$p"; return 0; }
process_stop_api() {
    local pid; pid=$(process_api_pid)
    [[ -n $pid ]] || { rm -f "$run_dir/contimg-api.pid"; return 0; }
    # Only the process our PID file names, and only if it is contimg-api.
    if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == contimg-api ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        retry 100 0.1 bash -c "! kill -0 $pid 2>/dev/null" || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$run_dir/contimg-api.pid"
}
process_stop_worker() {
    local bin=${1:-$bin_dir}
    [[ -x $bin/contimgctl ]] || return 0
    "$bin/contimgctl" --backend process --state-dir "$state_dir" --worker-bin "$bin/contimg-stream" \
        --stop-timeout 30 stop >/dev/null 2>&1 || true
}
stop_demo() {
    local pid; pid=$(cat "$run_dir/demo.pid" 2>/dev/null || true)
    # The simulator runs in its own session (setsid), maybe under runuser: end the
    # whole process group, once we know the PID is still ours.
    if pid_alive "$pid"; then
        case $(cat "/proc/$pid/comm" 2>/dev/null) in
            contimgctl|runuser|setsid) kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true ;;
        esac
    fi
    rm -f "$run_dir/demo.pid"
}

install_files() {  # binaries + dashboard into the prefix (user/process backends)
    log "installing binaries and dashboard into $prefix"
    mkdir -p "$prefix/bin"
    local b
    for b in contimg-stream contimgctl contimg-api; do
        [[ -x $repo/target/release/$b ]] || die "target/release/$b missing (run without --no-build)"
        install -m 0755 "$repo/target/release/$b" "$prefix/bin/$b.new"
        mv -f "$prefix/bin/$b.new" "$prefix/bin/$b"
    done
    [[ -f $prefix/dashboard.new/.contimg-dashboard ]] && rm -rf "$prefix/dashboard.new"
    if $want_dashboard; then
        [[ -f $repo/frontend/dist/index.html ]] || die "frontend/dist is not built (run without --no-build)"
        cp -r "$repo/frontend/dist" "$prefix/dashboard.new"
        touch "$prefix/dashboard.new/.contimg-dashboard"
        [[ -e $prefix/dashboard && ! -f $prefix/dashboard/.contimg-dashboard ]] &&
            die "$prefix/dashboard exists and was not installed by deploy.sh"
        rm -rf "$prefix/dashboard"
        mv "$prefix/dashboard.new" "$prefix/dashboard"
    elif [[ -f $prefix/dashboard/.contimg-dashboard ]]; then
        rm -rf "$prefix/dashboard"
    fi
}

deploy_process() {
    bin_dir=$prefix/bin
    install_files
    make_dirs ""
    ensure_token ""
    local changed; changed=$(write_config)
    local dash_args=()
    $want_dashboard && dash_args=(--dashboard-dir "$prefix/dashboard")
    # The API is (re)started so that it runs the binaries just installed.
    process_stop_api
    log "starting contimg-api (process backend) on $api_url"
    (
        cd "$state_dir"
        setsid "$bin_dir/contimg-api" --state-dir "$state_dir" --listen "$api_host:$api_port" \
            --backend process --worker-bin "$bin_dir/contimg-stream" --token-file "$token_file" \
            "${dash_args[@]}" </dev/null >>"$log_dir/contimg-api.log" 2>&1 &
        echo $! > "$run_dir/contimg-api.pid"
    )
    retry 50 0.2 api_healthy || { tail -n 20 "$log_dir/contimg-api.log" >&2; die "contimg-api did not answer on $api_url"; }
    if $want_worker; then
        if api_running; then
            if [[ -n $changed ]]; then log "config changed: restarting the worker"; api_post /api/streaming/restart >/dev/null; fi
        else
            log "starting the worker through the API (it supervises it)"
            api_post /api/streaming/start >/dev/null
        fi
    elif api_running; then
        log "manual mode: stopping the worker"
        api_post /api/streaming/stop >/dev/null
    fi
}

# ---------------------------------------------------------------- user backend
user_units() {  # writes contimg-stream.service and contimg-api.service into $unit_dir
    local dash="" stream_log=$log_dir/contimg-stream.log api_log=$log_dir/contimg-api.log
    $want_dashboard && dash=" --dashboard-dir $prefix/dashboard"
    # The shipped unit, adapted: no User=/StateDirectory=/OnFailure= (a user manager
    # runs everything as its user), our paths, output appended to log files (a user
    # manager may have no journald; `contimgctl logs` reads the file).
    sed -e '/^User=/d' -e '/^Group=/d' -e '/^StateDirectory/d' -e '/^OnFailure=/d' \
        -e '/^After=/d' -e '/^Documentation=/d' \
        -e "s|^ExecStart=.*|ExecStart=$bin_dir/contimg-stream --state-dir $state_dir|" \
        -e "s|^Environment=CONTIMG_STATE_DIR=.*|Environment=CONTIMG_STATE_DIR=$state_dir\\nStandardOutput=append:$stream_log\\nStandardError=append:$stream_log|" \
        -e 's|^WantedBy=.*|WantedBy=default.target|' \
        "$repo/systemd/contimg-stream.service" > "$unit_dir/contimg-stream.service.new"
    cat > "$unit_dir/contimg-api.service.new" <<EOF
# contimg-api in a user manager (written by ops/deploy.sh).
[Unit]
Description=contimg API daemon and dashboard

[Service]
Type=notify
NotifyAccess=main
WorkingDirectory=$state_dir
ExecStart=$bin_dir/contimg-api --state-dir $state_dir --listen $api_host:$api_port --backend systemd --user --token-file $token_file$dash
Environment=CONTIMG_LOG_FILE=$stream_log
StandardOutput=append:$api_log
StandardError=append:$api_log
Restart=on-failure
RestartSec=2s

[Install]
WantedBy=default.target
EOF
    local u changed=""
    for u in contimg-stream.service contimg-api.service; do
        if [[ -f $unit_dir/$u ]] && cmp -s "$unit_dir/$u.new" "$unit_dir/$u"; then
            rm -f "$unit_dir/$u.new"
        else
            mv -f "$unit_dir/$u.new" "$unit_dir/$u"; changed=yes
        fi
    done
    echo "$changed"
}

# Enablement = the [Install] symlink, made here: `systemctl --user enable` resolves
# unit files with the *caller's* XDG dirs, which need not be the manager's.
user_enable() {
    mkdir -p "$unit_dir/default.target.wants"
    ln -sfn "../$1" "$unit_dir/default.target.wants/$1"
}
user_disable() { rm -f "$unit_dir/default.target.wants/$1"; }

deploy_user() {
    bin_dir=$prefix/bin
    unit_dir=$(user_unit_dir)
    mkdir -p "$unit_dir"
    install_files
    make_dirs ""
    ensure_token ""
    local changed units_changed
    changed=$(write_config)
    units_changed=$(user_units)
    systemctl --user daemon-reload
    log "user manager: units in $unit_dir"
    user_enable contimg-api.service
    systemctl --user restart contimg-api.service
    if $want_worker; then
        user_enable contimg-stream.service
        if [[ -n $changed || -n $units_changed ]]; then
            systemctl --user restart contimg-stream.service
        else
            systemctl --user start contimg-stream.service
        fi
    else
        user_disable contimg-stream.service
        systemctl --user stop contimg-stream.service
    fi
}

# ---------------------------------------------------------------- system backend
deploy_system() {
    service_user=contimg
    local deb
    if $build; then
        log "building the .deb (packaging/build-deb.sh)"
        deb=$("$repo/packaging/build-deb.sh" --no-build)
    else
        deb=$(find "$repo/target/debian" -name 'contimg_*.deb' -printf '%T@ %p\n' 2>/dev/null | sort -rn | head -n 1 | cut -d' ' -f2-)
        [[ -n $deb ]] || die "no .deb in target/debian (run without --no-build)"
    fi
    # The same .deb as last time is not reinstalled (that would restart the services).
    local sum; sum=$(sha256sum "$deb" | cut -d' ' -f1)
    if [[ -f $state_dir/deploy.env ]] && grep -qx "DEPLOY_DEB_SHA256=$sum" "$state_dir/deploy.env" &&
        dpkg-query -W -f='${Status}' contimg 2>/dev/null | grep -q 'install ok installed'; then
        log "$deb is installed already"
    else
        log "installing $deb"
        # apt resolves the dependencies (libhdf5, polkitd, …); dpkg alone when offline.
        apt-get install -y -qq "$deb" >/dev/null 2>&1 || dpkg -i "$deb" >/dev/null
    fi
    deb_sha256=$sum
    bin_dir=/usr/bin
    make_dirs contimg
    ensure_token contimg
    # Drop-ins carrying the env file: listen address, extra writable dirs, mode.
    local rw="" d
    for d in "$input_dir" "$output_dir" "$scratch_dir" "$(dirname "$queue_db")" "$(dirname "$registry_db")"; do
        [[ $d == /var/lib/contimg* ]] || rw="$rw $d"
    done
    write_dropin() {  # UNIT CONTENT — prints "changed" when the file changed
        local dir=/etc/systemd/system/$1.d new
        mkdir -p "$dir"
        new=$(mktemp "$dir/.50-deploy.XXXXXX")
        printf '%s\n' "$2" > "$new"
        if [[ -f $dir/50-deploy.conf ]] && cmp -s "$new" "$dir/50-deploy.conf"; then
            rm -f "$new"
        else
            chmod 0644 "$new"; mv -f "$new" "$dir/50-deploy.conf"; echo changed
        fi
    }
    local stream_changed socket_changed api_changed api_extra=""
    # (An empty ReadWritePaths= would reset the sandbox's list: only with paths.)
    stream_changed=$(write_dropin contimg-stream.service "# written by ops/deploy.sh
[Service]
${rw:+ReadWritePaths=${rw# }}")
    socket_changed=$(write_dropin contimg-api.socket "# written by ops/deploy.sh
[Socket]
ListenStream=
ListenStream=$api_host:$api_port")
    # Mode streaming: no dashboard (the package ships it; the API must not see it).
    $want_dashboard || api_extra="InaccessiblePaths=/usr/share/contimg/dashboard"
    api_changed=$(write_dropin contimg-api.service "# written by ops/deploy.sh (mode $mode)
[Service]
$api_extra")
    systemctl daemon-reload
    local changed; changed=$(write_config)
    systemctl enable contimg-api.socket contimg-api.service >/dev/null 2>&1
    if [[ -n $socket_changed ]]; then
        systemctl stop contimg-api.service
        systemctl restart contimg-api.socket
    fi
    if [[ -n $socket_changed || -n $api_changed ]]; then systemctl restart contimg-api.service
    else systemctl start contimg-api.service; fi
    if $want_worker; then
        systemctl enable contimg-stream.service >/dev/null 2>&1
        if [[ -n $changed || -n $stream_changed ]]; then systemctl restart contimg-stream.service
        else systemctl start contimg-stream.service; fi
    else
        systemctl disable contimg-stream.service >/dev/null 2>&1 || true
        systemctl stop contimg-stream.service
    fi
}

# ---------------------------------------------------------------- uninstall
remove_files() {  # only what install_files put there (the prefix may be shared)
    local pfx=${1:?} b
    for b in contimg-stream contimgctl contimg-api; do rm -f "$pfx/bin/$b" "$pfx/bin/$b.new"; done
    rmdir "$pfx/bin" 2>/dev/null || true
    for b in dashboard dashboard.new; do
        [[ -f $pfx/$b/.contimg-dashboard ]] && rm -rf "${pfx:?}/$b"
    done
    rmdir "$pfx" 2>/dev/null || true
}
uninstall_backend() {  # uninstall_backend BACKEND PREFIX UNIT_DIR
    local which=$1 pfx=$2 udir=$3
    stop_demo
    case $which in
        process)
            process_stop_api
            process_stop_worker "$pfx/bin"
            remove_files "$pfx"
            ;;
        user)
            systemctl --user stop contimg-stream.service contimg-api.service >/dev/null 2>&1 || true
            if [[ -n $udir ]]; then
                rm -f "$udir/contimg-stream.service" "$udir/contimg-api.service" \
                    "$udir/default.target.wants/contimg-stream.service" \
                    "$udir/default.target.wants/contimg-api.service"
                rmdir "$udir/default.target.wants" 2>/dev/null || true
            fi
            systemctl --user daemon-reload 2>/dev/null || true
            systemctl --user reset-failed contimg-stream.service contimg-api.service >/dev/null 2>&1 || true
            remove_files "$pfx"
            ;;
        system)
            local u
            for u in contimg-stream.service contimg-api.service contimg-api.socket; do
                rm -f "/etc/systemd/system/$u.d/50-deploy.conf"
                rmdir "/etc/systemd/system/$u.d" 2>/dev/null || true
            done
            if $purge; then dpkg --purge contimg >/dev/null; else dpkg --remove contimg >/dev/null; fi
            ;;
    esac
    rm -f "$run_dir"/*.pid
}

if $uninstall; then
    read_record
    if [[ -z $prev_backend ]]; then
        echo "deploy.sh: nothing to uninstall: no $record (pass the --env-file used to deploy)" >&2
        exit 1
    fi
    log "uninstalling the $prev_backend deployment"
    uninstall_backend "$prev_backend" "$prev_prefix" "$prev_unit_dir"
    rm -f "$record"
    if $purge; then
        [[ $state_dir == / || $state_dir == "$HOME" ]] && die "refusing to remove $state_dir"
        rm -rf "$state_dir"
        log "removed $state_dir (input $input_dir and output $output_dir are kept)"
    else
        log "kept the state dir $state_dir (queue DB, config, token; --purge removes it) and the input/output dirs"
    fi
    exit 0
fi

# ---------------------------------------------------------------- deploy
log "deploying: mode $mode, backend $backend, state $state_dir, API $api_url"
build_all
mkdir -p "$state_dir"
read_record
if [[ -n $prev_backend && $prev_backend != "$backend" ]]; then
    log "switching from the $prev_backend backend: uninstalling it first"
    uninstall_backend "$prev_backend" "$prev_prefix" "$prev_unit_dir"
fi
stop_demo
case $backend in
    process) deploy_process ;;
    user) deploy_user ;;
    system) deploy_system ;;
esac
write_record

if $demo; then
    if $want_worker; then
        log "demo: simulating 6 subband groups (one every 10 s) into $input_dir"
    else
        warn "demo: manual mode does not run the worker; the groups wait in $input_dir until it starts"
    fi
    sim=("$bin_dir/contimgctl" simulate --input-dir "$input_dir" --profile small --groups 6
         --interval 10 --subbands "$expected_subbands")
    [[ ${service_user:-} ]] && sim=(runuser -u "$service_user" -- "${sim[@]}")
    setsid "${sim[@]}" </dev/null >>"$log_dir/demo.log" 2>&1 &
    echo $! > "$run_dir/demo.pid"
fi

# ---------------------------------------------------------------- health checks
log "health checks"
failures=()
retry 60 0.5 api_healthy || failures+=("API health: $api_url/api/streaming/health does not answer 200")
if $want_dashboard; then
    code=""
    for _ in $(seq 30); do code=$(http_code -L "$api_url/streaming/"); [[ $code == 200 ]] && break; sleep 0.5; done
    [[ $code == 200 ]] || failures+=("dashboard: $api_url/streaming/ answered ${code:-nothing}")
fi
ctl=("$bin_dir/contimgctl" --state-dir "$state_dir")
case $backend in
    process) ctl+=(--backend process) ;;
    user) ctl+=(--backend systemd --user) ;;
    system) ctl+=(--backend systemd) ;;
esac
if $want_worker; then
    retry 60 0.5 api_running || failures+=("worker: not running (${ctl[*]} status)")
    if [[ $backend != process ]]; then
        retry 20 0.5 "${ctl[@]}" status >/dev/null 2>&1 || failures+=("worker: ${ctl[*]} status does not report it running")
    fi
else
    if api_running; then failures+=("worker: running, but mode manual keeps it stopped"); fi
fi
if $demo && $want_worker; then
    # Within a minute the first simulated group is queued (the worker saw it).
    seen=false
    for _ in $(seq 60); do
        if curl -s --max-time 5 "$api_url/api/streaming/metrics" | python3 -c \
            'import json,sys; q=json.load(sys.stdin).get("queue_stats") or {}; sys.exit(0 if sum(q.values()) > 0 else 1)' 2>/dev/null; then
            seen=true; break
        fi
        sleep 1
    done
    $seen || failures+=("demo: no group reached the queue within 60 s")
fi

if ((${#failures[@]})); then
    echo "deploy.sh: health checks failed:" >&2
    printf '  - %s\n' "${failures[@]}" >&2
    case $backend in
        process) echo "  logs: $log_dir/contimg-api.log, $log_dir/contimg-stream.log" >&2 ;;
        user) echo "  logs: $log_dir/; systemctl --user status contimg-stream contimg-api" >&2 ;;
        system) echo "  logs: journalctl -u contimg-stream -u contimg-api -n 50" >&2 ;;
    esac
    exit 1
fi

# ---------------------------------------------------------------- summary
verb=start; $want_worker && verb=stop
stop_hint="${ctl[*]} $verb"
# The API supervises a process-backend worker: control it through the API.
[[ $backend == process ]] && stop_hint="curl -X POST -H \"Authorization: Bearer \$(cat $token_file)\" $api_url/api/streaming/$verb"
cat <<EOF

contimg is deployed (mode $mode, backend $backend).
  API          $api_url/api/streaming/status   (OpenAPI: $api_url/api/openapi.json)
$($want_dashboard && echo "  Dashboard    $api_url/streaming/")
  Token        $token_file   (POSTs: -H "Authorization: Bearer \$(cat $token_file)")
  State        $state_dir   (config streaming.toml, queue DB $(basename "$queue_db"))
  Input        $input_dir
  Output       $output_dir
  Worker       $($want_worker && echo running || echo "installed, stopped (manual mode)")
Useful commands:
  ${ctl[*]} status
  ${ctl[*]} logs -f
  $stop_hint
  ${ctl[*]} config set max_workers=8
  $repo/ops/deploy.sh${env_file:+ --env-file $env_file} --uninstall
EOF
case $backend in
    system) echo "  systemctl status contimg-stream contimg-api" ;;
    user) echo "  systemctl --user status contimg-stream contimg-api" ;;
    process) echo "  API PID file $run_dir/contimg-api.pid, logs in $log_dir" ;;
esac
