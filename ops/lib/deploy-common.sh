# shellcheck shell=bash
# shellcheck disable=SC2154  # repo, state_dir, env_file, api_url, token_file: set by the sourcing script
# shellcheck disable=SC2034  # deploy_paths sets the sourcing script's variables
# deploy-common.sh — what ops/deploy.sh and ops/deploy-docker.sh share, sourced by both
# so one env file means the same on every backend: the env file's form and keys, the
# config keys it sets, the binary's verdict on them, and the HTTP health checks.
#
# The sourcing script defines: die MESSAGE (exit 1), warn MESSAGE, problem MESSAGE
# (collects an env-file problem; the script reports them all at once, exit 2), and
# the variables repo, state_dir, env_file, api_url, token_file as it learns them.

# Every key an env file may set (packaging/contimg.env.example documents each).
deploy_known_keys=(CONTIMG_INPUT_DIR CONTIMG_OUTPUT_DIR CONTIMG_STATE_DIR CONTIMG_SCRATCH_DIR
    CONTIMG_QUEUE_DB CONTIMG_REGISTRY_DB CONTIMG_API_HOST CONTIMG_API_PORT
    CONTIMG_EXPECTED_SUBBANDS CONTIMG_CHUNK_MINUTES CONTIMG_CHUNK_DURATION
    CONTIMG_MAX_WORKERS CONTIMG_LOG_LEVEL CONTIMG_MONITOR_INTERVAL CONTIMG_POLL_INTERVAL
    CONTIMG_MIN_FREE_GB CONTIMG_PREFIX)

# The config keys a deploy writes: env variable → streaming.toml key. Their values are
# judged by the binary alone (contimg-stream check-config, config.rs); each is also a
# flag of contimg-stream (src/worker/options.rs has a test that reads this map).
declare -A config_key=(
    [CONTIMG_INPUT_DIR]=input_dir [CONTIMG_OUTPUT_DIR]=output_dir
    [CONTIMG_SCRATCH_DIR]=scratch_dir [CONTIMG_QUEUE_DB]=queue_db
    [CONTIMG_REGISTRY_DB]=registry_db [CONTIMG_EXPECTED_SUBBANDS]=expected_subbands
    [CONTIMG_CHUNK_MINUTES]=chunk_duration [CONTIMG_CHUNK_DURATION]=chunk_duration
    [CONTIMG_MAX_WORKERS]=max_workers [CONTIMG_LOG_LEVEL]=log_level
    [CONTIMG_MONITOR_INTERVAL]=monitor_interval [CONTIMG_POLL_INTERVAL]=poll_interval
    [CONTIMG_MIN_FREE_GB]=min_free_gb)
# The keys above that are values, not paths: written only when the env file sets them,
# so a value set later with `contimgctl config set` survives a redeploy.
deploy_value_keys=(CONTIMG_EXPECTED_SUBBANDS CONTIMG_CHUNK_MINUTES CONTIMG_CHUNK_DURATION
    CONTIMG_MAX_WORKERS CONTIMG_LOG_LEVEL CONTIMG_MONITOR_INTERVAL CONTIMG_POLL_INTERVAL
    CONTIMG_MIN_FREE_GB)

declare -A env=() env_line=()

# read_env_file FILE — KEY=VALUE lines, optional `export`, quotes and trailing comments
# stripped, no expansion. Fills env (KEY → value) and env_line (KEY → line number);
# every problem of form goes to problem(). A readable file is the caller's check.
read_env_file() {
    local file=$1 n=0 line key value
    while IFS= read -r line || [[ -n $line ]]; do
        n=$((n + 1))
        line=${line%$'\r'}
        [[ $line =~ ^[[:space:]]*(#.*)?$ ]] && continue
        if [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then
            key=${BASH_REMATCH[2]} value=${BASH_REMATCH[3]}
            if [[ $value =~ ^\"(.*)\"[[:space:]]*(#.*)?$ || $value =~ ^\'(.*)\'[[:space:]]*(#.*)?$ ]]; then
                value=${BASH_REMATCH[1]}
            else
                value=${value%%[[:space:]]#*}
                value=${value%"${value##*[![:space:]]}"}
                value=${value#"${value%%[![:space:]]*}"}
            fi
            if [[ $key != CONTIMG_* ]]; then
                warn "$file:$n: $key is not a CONTIMG_ variable; ignored"
                continue
            fi
            if [[ " ${deploy_known_keys[*]} " != *" $key "* ]]; then
                problem "line $n: $key: unknown variable (known: ${deploy_known_keys[*]})"
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
    done < "$file"
    for key in CONTIMG_INPUT_DIR CONTIMG_OUTPUT_DIR CONTIMG_STATE_DIR; do
        [[ -n ${env[$key]:-} ]] || problem "$key: missing (required)"
    done
    return 0
}

# deploy_paths DEFAULT_STATE_DIR — the paths and the API address the env file sets,
# else their defaults (the dirs and DBs under the state dir), and config_settings
# (KEY=VALUE, for `contimgctl config set` and check-config's flags): the paths, and the
# values the env file sets.
deploy_paths() {
    local key
    state_dir=${env[CONTIMG_STATE_DIR]:-$1}
    input_dir=${env[CONTIMG_INPUT_DIR]:-$state_dir/incoming}
    output_dir=${env[CONTIMG_OUTPUT_DIR]:-$state_dir/ms}
    scratch_dir=${env[CONTIMG_SCRATCH_DIR]:-$state_dir/scratch}
    queue_db=${env[CONTIMG_QUEUE_DB]:-$state_dir/ingest.sqlite3}
    registry_db=${env[CONTIMG_REGISTRY_DB]:-$state_dir/cal_registry.sqlite3}
    api_host=${env[CONTIMG_API_HOST]:-127.0.0.1}
    api_port=${env[CONTIMG_API_PORT]:-8010}
    config_settings=("input_dir=$input_dir" "output_dir=$output_dir" "scratch_dir=$scratch_dir"
        "queue_db=$queue_db" "registry_db=$registry_db")
    for key in "${deploy_value_keys[@]}"; do
        [[ -n ${env_line[$key]:-} ]] && config_settings+=("${config_key[$key]}=${env[$key]}")
    done
    return 0
}

# The binary's verdict on the env file's values over the live config (as it is, or
# the defaults): `contimg-stream check-config` with them as flags. Nothing is written.
# Exit 2 (invalid) is passed through as the deploy's own exit 2.
check_config() {
    local bin=$repo/target/release/contimg-stream flags=() setting name out rc=0
    [[ -x $bin ]] || die "target/release/contimg-stream missing (run without --no-build)"
    for setting in "${config_settings[@]}"; do
        name=${setting%%=*}
        flags+=("--${name//_/-}=${setting#*=}")
    done
    out=$("$bin" --state-dir "$state_dir" "${flags[@]}" check-config 2>&1 >/dev/null) || rc=$?
    ((rc == 0)) && return 0
    reject_config "contimg-stream check-config" "$rc" "$out"
}

# Reports the binary's rejection (exit 2 → the deploy exits 2; anything else is a failed
# step, exit 1), naming the env lines behind the config keys it mentions.
reject_config() {  # reject_config WHO RC OUTPUT
    local key lines=()
    for key in "${!config_key[@]}"; do
        [[ -n ${env_line[$key]:-} ]] && lines+=("${env_line[$key]} ${config_key[$key]} ← $key (line ${env_line[$key]})")
    done
    {
        printf '%s\n' "$3"
        if (($2 == 2)); then
            echo "$(basename "$0"): $1 rejects the configuration${env_file:+ made from $env_file} (exit 2)."
            if ((${#lines[@]})); then
                echo "  config keys from the env file:"
                printf '%s\n' "${lines[@]}" | sort -n | cut -d' ' -f2- | sed 's/^/    /'
            fi
        fi
    } >&2
    (($2 == 2)) && exit 2
    die "$1 failed (exit $2)"
}

# ---------------------------------------------------------------- HTTP checks
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" 2>/dev/null || true; }
retry() {  # retry TRIES DELAY CMD… — true once CMD succeeds
    local tries=$1 delay=$2 i; shift 2
    for ((i = 0; i < tries; i++)); do "$@" && return 0; sleep "$delay"; done
    return 1
}
api_healthy() { [[ $(http_code "$api_url/api/streaming/health") == 200 ]]; }
api_running() { curl -s --max-time 5 "$api_url/api/streaming/status" 2>/dev/null | grep -q '"running":true'; }
# True once the worker has queued a group (--demo: the simulator's first group).
demo_group_queued() {
    curl -s --max-time 5 "$api_url/api/streaming/metrics" 2>/dev/null | python3 -c \
        'import json,sys; q=json.load(sys.stdin).get("queue_stats") or {}; sys.exit(0 if sum(q.values()) > 0 else 1)' 2>/dev/null
}
