#!/usr/bin/env bash
# deploy.sh — build, install, start and health-check contimg in one command.
#
#   ./ops/deploy.sh [--mode streaming|manual|both] [--env-file PATH] [--demo]
#                   [--backend auto|system|user|process|docker] [--no-build] [--uninstall [--purge]]
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
#              CONTIMG_PREFIX; the units under systemd/ copied unchanged into the
#              manager's unit dir, the per-deploy values in drop-ins (50-deploy.conf)
#   process    neither: contimg-api runs in the background (PID file in the state
#              dir) and supervises the worker itself (the process backend)
# Steps: check the env file's syntax (every problem listed at once, exit 2) → the
# Debian packages building and running need (ops/install-deps.sh's sets build and
# runtime, plus deb for the system backend; only runtime with --no-build): the
# missing ones are installed when root, else exit 1 with the `apt-get install` line
# to run; a complete host needs no root and no apt (dpkg-query only) → build
# (cargo build --release; unless --mode streaming: npm ci when node_modules is
# missing or older than the lock file, npm run build; Node.js ^20.19 or >=22.12
# checked before the build starts) → ask the
# binary whether the values make a valid config (`contimg-stream check-config`, exit
# 2 if not; deploy.sh judges no config value itself) → create the directories (owned
# by the service user) → install → write the live config with `contimgctl config set`
# (<state>/streaming.toml: the env file's values; other keys kept) → start/stop per mode →
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
# Exit codes: 0 deployed and healthy; 1 a step or health check failed (missing
# packages without root, a failed cargo/npm build: the step is named, never the
# compiler's own exit code); 2 usage, an invalid env file, or values the binary
# rejects (its check-config verdict).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=both
env_file=""
demo=false
backend=auto
build=true
uninstall=false
purge=false

# --backend docker: images and containers, deployed by ops/deploy-docker.sh (same flags).
for ((arg = 1; arg <= $#; arg++)); do
    next=$((arg + 1))
    if [[ ${!arg} == --backend=docker || (${!arg} == --backend && ${!next:-} == docker) ]]; then
        exec "$repo/ops/deploy-docker.sh" "$@"
    fi
done

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
log() { current_step=$*; printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
warn() { printf 'deploy.sh: warning: %s\n' "$*" >&2; }
die() { printf 'deploy.sh: %s\n' "$*" >&2; exit 1; }
# Any command that fails outside a test (set -e) ends deploy.sh with exit 1 and the
# step it was in, whatever that command's own code (cargo's 101, systemctl's 5, …):
# the exit codes stay 0, 1, 2. Subshells (set -E) exit 1 quietly; their parent reports.
current_step="preparing"
on_error() {
    local rc=$? cmd=$BASH_COMMAND
    if [[ $BASHPID == "$$" ]]; then
        printf 'deploy.sh: step "%s" failed: %s exited %s\n' "$current_step" "'$cmd'" "$rc" >&2
    fi
    exit 1
}
set -E
trap on_error ERR

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
        -h|--help) sed -n '/^set -euo/q; 2,$p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
# The env file's form and keys, the config keys, check_config and the HTTP checks are
# shared with ops/deploy-docker.sh.
# shellcheck source=ops/lib/deploy-common.sh
source "$repo/ops/lib/deploy-common.sh"
errors=()
problem() { errors+=("$1"); }

if [[ -n $env_file ]]; then
    if [[ ! -f $env_file || ! -r $env_file ]]; then
        echo "deploy.sh: env file $env_file: not a readable file" >&2; exit 2
    fi
    read_env_file "$env_file"
fi

# Defaults. Only the paths get one here (deploy.sh creates those directories and
# opens them in the units); a config value the env file does not set is not written,
# so whatever the live config has (e.g. from `contimgctl config set`) stays.
if [[ $backend == system ]]; then
    default_state=/var/lib/contimg
else
    default_state=${XDG_STATE_HOME:-$HOME/.local/state}/contimg
fi
deploy_paths "$default_state"
prefix=${env[CONTIMG_PREFIX]:-${XDG_DATA_HOME:-$HOME/.local/share}/contimg}

# What remains for deploy.sh to check is the file's form and the settings no binary
# reads from the config: paths it creates and writes into unit files (absolute), the
# API address (a socket unit / --listen) and the prefix.
at() { [[ -n ${env_line[$1]:-} ]] && printf 'line %s: ' "${env_line[$1]}"; return 0; }
for pair in "CONTIMG_STATE_DIR:$state_dir" "CONTIMG_INPUT_DIR:$input_dir" \
    "CONTIMG_OUTPUT_DIR:$output_dir" "CONTIMG_SCRATCH_DIR:$scratch_dir" \
    "CONTIMG_QUEUE_DB:$queue_db" "CONTIMG_REGISTRY_DB:$registry_db" "CONTIMG_PREFIX:$prefix"; do
    key=${pair%%:*} value=${pair#*:}
    # Defaults derive from the state dir (checked itself); a missing required key is
    # reported once, above.
    [[ -n ${env_line[$key]:-} || $key == CONTIMG_STATE_DIR || $key == CONTIMG_PREFIX ]] || continue
    if [[ $value != /* ]]; then
        problem "$(at "$key")$key: must be an absolute path (got '$value')"
    elif [[ $value =~ [[:space:]%] ]]; then
        problem "$(at "$key")$key: a path in a unit file may not contain blanks or '%' (got '$value')"
    fi
done
if ! [[ $api_port =~ ^[0-9]+$ ]] || ((10#$api_port < 1 || 10#$api_port > 65535)); then
    problem "$(at CONTIMG_API_PORT)CONTIMG_API_PORT: must be a port number 1-65535 (got '$api_port')"
fi
if ! [[ $api_host =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ || $api_host =~ ^[0-9A-Fa-f:]+$ ]]; then
    problem "$(at CONTIMG_API_HOST)CONTIMG_API_HOST: must be an IP address (got '$api_host')"
fi
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
listen_stream=$api_host:$api_port     # ListenStream= of contimg-api.socket
if [[ $api_host == *:* ]]; then api_url="http://[$api_host]:$api_port" listen_stream="[$api_host]:$api_port"; fi
record=$state_dir/deploy.env          # what this script installed (for --uninstall)
token_file=$state_dir/api.token
run_dir=$state_dir/run
log_dir=$state_dir/logs
want_worker=false; [[ $mode != manual ]] && want_worker=true
want_dashboard=false; [[ $mode != streaming ]] && want_dashboard=true

api_post() {  # api_post PATH — with the token; prints the body
    curl -s --max-time 120 -X POST -H "Authorization: Bearer $(cat "$token_file")" "$api_url$1"
}
pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

ensure_token() {  # ensure_token OWNER_GROUP
    if [[ ! -s $token_file ]]; then
        (umask 077 && head -c 32 /dev/urandom | base64 > "$token_file.new")
        mv -f "$token_file.new" "$token_file"
    fi
    [[ -n ${1:-} ]] && chown "root:$1" "$token_file"
    chmod 0640 "$token_file"
}

# Writes the env file's values into <state>/streaming.toml with `contimgctl config set`
# (it validates, keeps every other key and table, and creates the file if missing).
# Sets config_changed=true if the file's bytes changed.
apply_config() {  # apply_config CONTIMGCTL_BACKEND_ARGS…
    local file=$state_dir/streaming.toml before="" after="" out rc=0
    local ctl=("$bin_dir/contimgctl" "$@" --state-dir "$state_dir" config set "${config_settings[@]}" --no-restart)
    [[ -n ${service_user:-} ]] && ctl=(runuser -u "$service_user" -- "${ctl[@]}")
    [[ -f $file ]] && before=$(sha256sum "$file")
    out=$("${ctl[@]}" 2>&1) || rc=$?
    ((rc == 0)) || reject_config "contimgctl config set" "$rc" "$out"
    [[ -f $file ]] && after=$(sha256sum "$file")
    config_changed=false
    if [[ $before != "$after" ]]; then config_changed=true; fi
}

# One value of the live config (what the worker runs with).
config_value() {  # config_value KEY
    "$bin_dir/contimgctl" --state-dir "$state_dir" --json config show |
        python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# Installs FILE (content on stdin) unless it already has that content. True if it changed.
put_file() {  # put_file FILE MODE < CONTENT
    local dir new
    dir=$(dirname "$1")
    mkdir -p "$dir"
    # A dot name with a random suffix: neither a unit nor a *.conf drop-in meanwhile.
    new=$(mktemp "$dir/.$(basename "$1").XXXXXX")
    cat > "$new"
    if [[ -f $1 ]] && cmp -s "$new" "$1"; then rm -f "$new"; return 1; fi
    chmod "$2" "$new"
    mv -f "$new" "$1"
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

# The Debian packages of ops/install-deps.sh's sets that this deploy needs; only the
# missing ones are installed (as root), so a rerun on a complete host is quick and
# needs no root. Not root and something missing: exit 1 with the line to run.
ensure_packages() {
    command -v dpkg-query >/dev/null || { warn "no dpkg-query (not Debian?): not checking the system packages"; return 0; }
    local sets=(runtime) missing
    if $build; then
        sets+=(build)
        [[ $backend == system ]] && sets+=(deb)
    fi
    missing=$("$repo/ops/install-deps.sh" --missing "${sets[@]}") || die "ops/install-deps.sh --missing ${sets[*]} failed"
    missing=$(tr '\n' ' ' <<<"$missing")
    missing=${missing% }
    [[ -z $missing ]] && return 0
    if [[ $(id -u) != 0 ]]; then
        {
            echo "deploy.sh: packages needed for building and running contimg are missing: $missing"
            echo "As root, run:"
            echo "  apt-get install -y --no-install-recommends $missing"
            echo "then run deploy.sh again (run as root, deploy.sh installs them itself)."
        } >&2
        exit 1
    fi
    log "installing missing packages: $missing (ops/install-deps.sh --apt-only ${sets[*]})"
    "$repo/ops/install-deps.sh" --apt-only "${sets[@]}" ||
        die "installing the packages failed (ops/install-deps.sh --apt-only ${sets[*]}); run: apt-get install -y --no-install-recommends $missing"
}

build_all() {
    $build || { log "skipping the build (--no-build)"; return 0; }
    command -v cargo >/dev/null || die "cargo not found (install Rust with rustup: https://rustup.rs; Debian's rustc is too old)"
    local dashboard=false
    if $want_dashboard || [[ $backend == system ]]; then
        dashboard=true
        # Before the long cargo build: the dashboard's toolchain.
        "$repo/ops/install-deps.sh" --check-node || exit 1
    fi
    log "cargo build --release (several minutes on a cold tree)"
    (cd "$repo" && cargo build --release --bins) ||
        die "step \"cargo build --release\" failed (cargo exit $?; its errors are above)"
    if $dashboard; then
        local fe=$repo/frontend
        # npm ci only when node_modules is missing or older than the lock file (as
        # packaging/build-deb.sh): it deletes and refetches everything, minutes on 2 cores.
        if [[ ! -f $fe/node_modules/.package-lock.json || $fe/package-lock.json -nt $fe/node_modules/.package-lock.json ]]; then
            log "dashboard: npm ci"
            (cd "$fe" && npm ci --no-audit --no-fund) ||
                die "step \"npm ci\" (frontend) failed (npm exit $?; its errors are above)"
        fi
        log "dashboard: npm run build"
        (cd "$repo/frontend" && npm run build) ||
            die "step \"npm run build\" (frontend) failed (npm exit $?; its errors are above)"
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
    apply_config --backend process
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
            if $config_changed; then log "config changed: restarting the worker"; api_post /api/streaming/restart >/dev/null; fi
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
# The units under systemd/ are installed unchanged; what differs per deploy is in
# drop-ins (<unit>.d/50-deploy.conf). A user manager runs every service as its own
# user, so the system units' service user, supplementary groups and state directory
# are reset (empty assignments reset these in a drop-in). Two lines of the shipped
# units cannot be reset that way and are harmless here: OnFailure= (a dependency; the
# manager logs "Failed to enqueue OnFailure= job, ignoring: … not found": the alert
# handler is a system unit; the API raises service_down itself) and After= on
# system targets (ordering only). The system sandbox drop-in of the worker
# (systemd/contimg-stream.service.d/10-sandbox.conf, with its /usr/libexec seeding
# step) is not installed; the API's inline sandbox stays, minus what would hide or
# freeze the user's own dirs (state, prefix, data in $HOME or /tmp).
user_units() {  # sets stream_unit_changed, socket_unit_changed
    local dash="" stream_log=$log_dir/contimg-stream.log api_log=$log_dir/contimg-api.log
    $want_dashboard && dash=" --dashboard-dir $prefix/dashboard"
    stream_unit_changed=false socket_unit_changed=false
    put_file "$unit_dir/contimg-stream.service" 0644 < "$repo/systemd/contimg-stream.service" &&
        stream_unit_changed=true
    put_file "$unit_dir/contimg-stream.service.d/50-deploy.conf" 0644 <<EOF && stream_unit_changed=true
# written by ops/deploy.sh (user backend): this deploy's values over contimg-stream.service
[Service]
ExecStart=
ExecStart=$bin_dir/contimg-stream --state-dir $state_dir
Environment=CONTIMG_STATE_DIR=$state_dir
User=
Group=
StateDirectory=
# A user manager may have no journald: \`contimgctl logs\` reads this file.
StandardOutput=append:$stream_log
StandardError=append:$stream_log
EOF
    # (The API is restarted by every deploy: whether its unit changed does not matter.)
    put_file "$unit_dir/contimg-api.service" 0644 < "$repo/systemd/contimg-api.service" || true
    put_file "$unit_dir/contimg-api.service.d/50-deploy.conf" 0644 <<EOF || true
# written by ops/deploy.sh (user backend, mode $mode): this deploy's values over contimg-api.service
[Service]
ExecStart=
ExecStart=$bin_dir/contimg-api --state-dir $state_dir --backend systemd --user --token-file $token_file$dash
WorkingDirectory=$state_dir
Environment=CONTIMG_LOG_FILE=$stream_log
User=
Group=
SupplementaryGroups=
StateDirectory=
ProtectSystem=no
ProtectHome=no
PrivateTmp=no
# A user manager failed to build their mount namespace ("/proc/kallsyms: No such
# file or directory", 226/NAMESPACE; ops/testenv/user-manager.sh on this kernel).
ProtectKernelTunables=no
ProtectKernelLogs=no
StandardOutput=append:$api_log
StandardError=append:$api_log
EOF
    put_file "$unit_dir/contimg-api.socket" 0644 < "$repo/systemd/contimg-api.socket" &&
        socket_unit_changed=true
    put_file "$unit_dir/contimg-api.socket.d/50-deploy.conf" 0644 <<EOF && socket_unit_changed=true
# written by ops/deploy.sh (user backend): the env file's API address
[Socket]
ListenStream=
ListenStream=$listen_stream
EOF
    return 0
}

# Enablement = the [Install] symlink, made here: `systemctl --user enable` resolves
# unit files with the *caller's* XDG dirs, which need not be the manager's. (The
# shipped units say WantedBy=multi-user.target, a system target.)
user_enable() {  # user_enable UNIT TARGET
    mkdir -p "$unit_dir/$2.wants"
    ln -sfn "../$1" "$unit_dir/$2.wants/$1"
}
user_disable() { rm -f "$unit_dir/$2.wants/$1"; }

deploy_user() {
    bin_dir=$prefix/bin
    unit_dir=$(user_unit_dir)
    mkdir -p "$unit_dir"
    install_files
    make_dirs ""
    ensure_token ""
    user_units
    systemctl --user daemon-reload
    log "user manager: units in $unit_dir"
    apply_config --backend systemd --user
    user_enable contimg-api.socket sockets.target
    user_enable contimg-api.service default.target
    if $socket_unit_changed; then
        # Another address: the API lets go of the old socket before it is re-bound.
        systemctl --user stop contimg-api.service
        systemctl --user restart contimg-api.socket
    else
        systemctl --user start contimg-api.socket
    fi
    # Restarted in any case, so that it runs the binaries just installed.
    systemctl --user restart contimg-api.service
    if $want_worker; then
        user_enable contimg-stream.service default.target
        if $config_changed || $stream_unit_changed; then
            systemctl --user restart contimg-stream.service
        else
            systemctl --user start contimg-stream.service
        fi
    else
        user_disable contimg-stream.service default.target
        systemctl --user stop contimg-stream.service
    fi
}

# ---------------------------------------------------------------- system backend
deploy_system() {
    service_user=contimg
    local deb
    if $build; then
        log "building the .deb (packaging/build-deb.sh)"
        deb=$("$repo/packaging/build-deb.sh" --no-build) ||
            die "step \"packaging/build-deb.sh --no-build\" failed (exit $?; its errors are above)"
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
    # The package installs the units under systemd/ unchanged; this deploy's values go
    # into drop-ins: extra writable dirs, listen address, mode.
    local rw="" d dropins=/etc/systemd/system api_extra=""
    for d in "$input_dir" "$output_dir" "$scratch_dir" "$(dirname "$queue_db")" "$(dirname "$registry_db")"; do
        [[ $d == /var/lib/contimg* ]] || rw="$rw $d"
    done
    local stream_changed=false socket_changed=false api_changed=false
    # (An empty ReadWritePaths= would reset the sandbox's list: only with paths.)
    put_file "$dropins/contimg-stream.service.d/50-deploy.conf" 0644 <<EOF && stream_changed=true
# written by ops/deploy.sh (system backend): this deploy's values over contimg-stream.service
[Service]
${rw:+ReadWritePaths=${rw# }}
EOF
    put_file "$dropins/contimg-api.socket.d/50-deploy.conf" 0644 <<EOF && socket_changed=true
# written by ops/deploy.sh (system backend): the env file's API address
[Socket]
ListenStream=
ListenStream=$listen_stream
EOF
    # Mode streaming: no dashboard (the package ships it; the API must not see it).
    $want_dashboard || api_extra="InaccessiblePaths=/usr/share/contimg/dashboard"
    put_file "$dropins/contimg-api.service.d/50-deploy.conf" 0644 <<EOF && api_changed=true
# written by ops/deploy.sh (system backend, mode $mode)
[Service]
$api_extra
EOF
    systemctl daemon-reload
    apply_config --backend systemd
    systemctl enable contimg-api.socket contimg-api.service >/dev/null 2>&1
    if $socket_changed; then
        systemctl stop contimg-api.service
        systemctl restart contimg-api.socket
    fi
    if $socket_changed || $api_changed; then systemctl restart contimg-api.service
    else systemctl start contimg-api.service; fi
    if $want_worker; then
        systemctl enable contimg-stream.service >/dev/null 2>&1
        if $config_changed || $stream_changed; then systemctl restart contimg-stream.service
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
            local u units=(contimg-stream.service contimg-api.service contimg-api.socket)
            systemctl --user stop "${units[@]}" >/dev/null 2>&1 || true
            if [[ -n $udir ]]; then
                for u in "${units[@]}"; do
                    rm -f "$udir/$u" "$udir/$u.d/50-deploy.conf" \
                        "$udir/default.target.wants/$u" "$udir/sockets.target.wants/$u"
                    rmdir "$udir/$u.d" 2>/dev/null || true
                done
                rmdir "$udir/default.target.wants" "$udir/sockets.target.wants" 2>/dev/null || true
            fi
            systemctl --user daemon-reload 2>/dev/null || true
            systemctl --user reset-failed "${units[@]}" >/dev/null 2>&1 || true
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
ensure_packages
build_all
check_config
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
         --interval 10 --subbands "$(config_value expected_subbands)")
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
    retry 60 1 demo_group_queued || failures+=("demo: no group reached the queue within 60 s")
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
