#!/usr/bin/env bash
# build-base.sh — the base image of packaging/docker/Dockerfile, made from Debian
# packages only: an `mmdebstrap` rootfs (essential packages + the HDF5 runtime + the
# `contimg` user) `docker import`ed under the tag the Dockerfile's FROM names. No
# container registry is contacted; apt fetches the .debs from the host's own sources
# (/etc/apt/sources.list.d/*.sources, or a mirror/proxy given in CONTIMG_BASE_MIRROR).
#
#   packaging/docker/build-base.sh [--rebuild]
#
# Uses the docker CLI with the caller's DOCKER_HOST. Cached: if the tag exists the
# script does nothing (--rebuild forces a new rootfs). With CONTIMG_BASE_CACHE=DIR the
# rootfs tarball is also kept there (named by suite, packages and uid) and imported
# from it next time: for a fresh dockerd, e.g. each test run's private one. Needs root
# (mmdebstrap --mode=root; as non-root it tries --mode=unshare). Prints the tag.
# Exit codes: 0 the tag exists; 1 failure (mmdebstrap, docker); 2 usage.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The FROM line of the Dockerfile is the one truth for the tag.
tag=$(sed -n 's/^FROM[[:space:]]\{1,\}\([^[:space:]]*\).*/\1/p' "$here/Dockerfile" | head -n 1)
suite=bookworm
# The image's service user; must match USER in the Dockerfile.
uid=$(sed -n 's/^USER[[:space:]]\{1,\}\([0-9]\{1,\}\):.*/\1/p' "$here/Dockerfile")
# Runtime packages: libhdf5 (contimg-stream links it; it pulls curl, krb5, ldap, …).
# contimg-api and contimgctl need only libc. bash runs the healthcheck.
packages=(libhdf5-103-1)
rebuild=false

case ${1:-} in
    "") ;;
    --rebuild) rebuild=true ;;
    *) echo "usage: $0 [--rebuild]" >&2; exit 2 ;;
esac
[[ -n $tag && -n $uid ]] || { echo "build-base.sh: no FROM tag or USER uid in $here/Dockerfile" >&2; exit 1; }
command -v docker >/dev/null || { echo "build-base.sh: docker CLI not found (apt-get install docker.io)" >&2; exit 1; }

if ! $rebuild && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "build-base.sh: $tag exists (cached; --rebuild to make it again)" >&2
    echo "$tag"
    exit 0
fi
import_rootfs() {  # import_rootfs ROOTFS_TAR
    docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'CMD ["/bin/bash"]' \
        -m "contimg base: mmdebstrap $suite --variant=essential ${packages[*]}" \
        "$1" "$tag" >/dev/null
}
cached=""
if [[ -n ${CONTIMG_BASE_CACHE:-} ]]; then
    cached=$CONTIMG_BASE_CACHE/contimg-base-$suite-$(echo "${packages[*]} uid=$uid" | sha256sum | cut -c1-12).tar
    if ! $rebuild && [[ -s $cached ]]; then
        import_rootfs "$cached"
        echo "build-base.sh: $tag imported from the cached rootfs $cached" >&2
        echo "$tag"
        exit 0
    fi
fi
command -v mmdebstrap >/dev/null ||
    { echo "build-base.sh: mmdebstrap not found (apt-get install mmdebstrap)" >&2; exit 1; }

mode=root
[[ $(id -u) == 0 ]] || mode=unshare
mirror=${CONTIMG_BASE_MIRROR:-}
if [[ -z $mirror ]]; then
    for sources in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
        [[ -s $sources ]] && { mirror=$sources; break; }
    done
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/contimg-base.XXXXXX")
trap 'rm -rf "$work"' EXIT

started=$SECONDS
echo "build-base.sh: mmdebstrap $suite (${packages[*]}) → $tag" >&2
# Docs, man pages and locales are left out (size); the copyright files stay.
mmdebstrap --mode="$mode" --variant=essential --include="$(IFS=,; echo "${packages[*]}")" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="echo 'contimg:x:$uid:$uid:contimg:/var/lib/contimg:/usr/sbin/nologin' >> \"\$1/etc/passwd\"" \
    --customize-hook="echo 'contimg:x:$uid:' >> \"\$1/etc/group\"" \
    --customize-hook="install -d -o $uid -g $uid -m 0750 \"\$1/var/lib/contimg\"" \
    --customize-hook="rm -rf \"\$1/var/cache/apt\"/*.bin \"\$1/var/lib/apt/lists\"/*" \
    "$suite" "$work/rootfs.tar" ${mirror:+"$mirror"} >"$work/mmdebstrap.log" 2>&1 || {
        tail -n 30 "$work/mmdebstrap.log" >&2
        echo "build-base.sh: mmdebstrap failed (is the Debian mirror or an apt proxy reachable?)" >&2
        exit 1
    }
import_rootfs "$work/rootfs.tar"
if [[ -n $cached ]]; then
    mkdir -p "$CONTIMG_BASE_CACHE"
    cp "$work/rootfs.tar" "$cached.new" && mv -f "$cached.new" "$cached"
fi
echo "build-base.sh: $tag built in $((SECONDS - started)) s ($(du -m "$work/rootfs.tar" | cut -f1) MB rootfs)" >&2
echo "$tag"
