# shellcheck shell=sh
# contimg: point contimgctl at the packaged worker's state dir (queue DB, config)
# in login shells. Override per command with --state-dir or CONTIMG_STATE_DIR.
if [ -z "${CONTIMG_STATE_DIR:-}" ] && [ -d /var/lib/contimg ]; then
    export CONTIMG_STATE_DIR=/var/lib/contimg
fi
