#!/usr/bin/env bash
# build-image.sh — the contimg runtime image from the host's release build, offline.
#
#   packaging/docker/build-image.sh [--tag TAG] [--no-dashboard]
#
# Needs target/release/{contimg-stream,contimg-api,contimgctl} (cargo build --release)
# and frontend/dist (npm run build) unless --no-dashboard. Makes the base image first
# if it is missing (build-base.sh: mmdebstrap + docker import, cached), then builds
# packaging/docker/Dockerfile from a small context in a temp dir: the stripped
# binaries, the dashboard and the healthcheck (the repository itself, with its
# multi-GB target/, is never sent to dockerd). Uses the caller's DOCKER_HOST.
# Prints the tag on stdout. Exit codes: 0 built; 1 failure; 2 usage.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
tag=${CONTIMG_DOCKER_IMAGE:-contimg:local}
dashboard=true
while (($#)); do
    case $1 in
        --tag) tag=${2:?--tag needs a value}; shift 2 ;;
        --no-dashboard) dashboard=false; shift ;;
        *) echo "usage: $0 [--tag TAG] [--no-dashboard]" >&2; exit 2 ;;
    esac
done

"$here/build-base.sh" >/dev/null
context=$(mktemp -d "${TMPDIR:-/tmp}/contimg-image.XXXXXX")
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/bin" "$context/dashboard"
for binary in contimg-stream contimg-api contimgctl; do
    [[ -x $repo/target/release/$binary ]] ||
        { echo "build-image.sh: target/release/$binary missing (cargo build --release)" >&2; exit 1; }
    # Stripped copies: the release profile keeps line tables for the host's backtraces.
    strip -o "$context/bin/$binary" "$repo/target/release/$binary"
done
if $dashboard; then
    [[ -f $repo/frontend/dist/index.html ]] ||
        { echo "build-image.sh: frontend/dist is not built (cd frontend && npm ci && npm run build)" >&2; exit 1; }
    cp -r "$repo/frontend/dist/." "$context/dashboard/"
fi
install -m 0755 "$here/healthcheck.sh" "$context/healthcheck.sh"
cp "$here/Dockerfile" "$here/.dockerignore" "$context/"

started=$SECONDS
# The classic builder: dockerd 20.10 without buildx; the Dockerfile has no RUN, so
# no build container (and no network) is needed. No label with the git revision:
# the same binaries give the same image ID, so a redeploy keeps the worker container.
DOCKER_BUILDKIT=0 docker build --quiet -t "$tag" "$context" >/dev/null
echo "build-image.sh: $tag built in $((SECONDS - started)) s ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}'))" >&2
echo "$tag"
