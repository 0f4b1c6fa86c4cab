#!/bin/bash
# The image's HEALTHCHECK. PID 1 is either the worker or the API (no init process):
#   contimg-stream  healthy when its heartbeat (written every 2 s into the queue DB
#                   of its --state-dir) is at most 20 s old, as `contimgctl health`
#                   judges it (the container itself has no service manager to ask);
#   contimg-api     healthy when GET /api/streaming/health on its --listen address
#                   answers 200 (the API is up; the worker's verdict is in the body).
# Exit 0 healthy, 1 unhealthy (Docker's convention).
set -uo pipefail

mapfile -d '' -t argv < /proc/1/cmdline
flag() {  # flag NAME DEFAULT — the value of --NAME X or --NAME=X on PID 1's command line
    local i
    for ((i = 1; i < ${#argv[@]}; i++)); do
        case ${argv[i]} in
            "--$1") echo "${argv[i + 1]:-}"; return ;;
            "--$1="*) echo "${argv[i]#*=}"; return ;;
        esac
    done
    echo "$2"
}

case ${argv[0]##*/} in
    contimg-stream)
        state_dir=$(flag state-dir "${CONTIMG_STATE_DIR:-/var/lib/contimg}")
        config=$(flag config "")
        verdict=$(contimgctl --backend process --state-dir "$state_dir" ${config:+--config "$config"} \
            --json health 2>&1)
        # `health` exits 3 here (no PID file: not started by the process backend), so
        # the heartbeat check is read from the verdict itself.
        if tr -d ' \n' <<<"$verdict" | grep -q '"name":"heartbeat","ok":true'; then exit 0; fi
        echo "worker heartbeat not fresh: $(tr -d '\n' <<<"$verdict" | grep -o '"name": "heartbeat"[^}]*')"
        exit 1
        ;;
    contimg-api)
        listen=$(flag listen 127.0.0.1:8010)
        host=${listen%:*} port=${listen##*:}
        host=${host#[} host=${host%]}
        [[ $host == 0.0.0.0 ]] && host=127.0.0.1
        [[ $host == :: ]] && host=::1
        # Beyond loopback the API wants the token for reads too.
        token_file=$(flag token-file "$(flag state-dir "${CONTIMG_STATE_DIR:-/var/lib/contimg}")/api.token")
        auth=""
        [[ -r $token_file ]] && auth="Authorization: Bearer $(< "$token_file")"$'\r\n'
        if ! exec 3<>"/dev/tcp/$host/$port"; then echo "API: nothing listens on $listen"; exit 1; fi
        printf 'GET /api/streaming/health HTTP/1.0\r\nHost: %s\r\n%s\r\n' "$listen" "$auth" >&3
        read -r -t 5 status_line <&3 || true
        exec 3<&-
        [[ $status_line == HTTP/*" 200"* ]] && exit 0
        echo "API health answered: ${status_line:-nothing}"
        exit 1
        ;;
    *)
        echo "healthcheck: PID 1 is ${argv[0]:-unknown}, neither contimg-stream nor contimg-api"
        exit 1
        ;;
esac
