#!/usr/bin/env bash
# build-deb.sh — builds target/debian/contimg_<version>-1_<arch>.deb with cargo-deb.
#
#   packaging/build-deb.sh [--no-build]     # --no-build: reuse target/release binaries
#
# Steps: cargo build --release (the three binaries); the dashboard (npm ci when
# node_modules is missing or stale, then the Vite build into target/pkg-assets/
# dashboard, leaving frontend/dist alone); man pages (contimgctl from `contimgctl
# man`, the two daemons with help2man when available) and shell completions from
# `contimgctl completions`; the changelog; then `cargo deb --no-build --strip`. The
# staged files are removed again on exit: Cargo.toml names the staged changelog, so a
# plain `cargo deb` (which could neither build them nor strip the binaries of the
# release profile) stops at once pointing here. Installs cargo-deb with `cargo
# install cargo-deb` if it is missing. Prints the .deb path last.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
assets=$root/target/pkg-assets
build=true
for arg in "$@"; do
    case $arg in
        --no-build) build=false ;;
        *) echo "usage: $0 [--no-build]" >&2; exit 2 ;;
    esac
done

log() { printf 'build-deb: %s\n' "$*" >&2; }

if ! command -v cargo-deb >/dev/null 2>&1; then
    log "installing cargo-deb (cargo install cargo-deb, ~90 s)"
    cargo install --locked cargo-deb >&2
fi

if $build; then
    log "cargo build --release"
    cargo build --release --bins >&2
fi
for bin in contimg-stream contimgctl contimg-api; do
    [[ -x target/release/$bin ]] || { log "target/release/$bin is missing (run without --no-build)"; exit 1; }
done

# One packaging run at a time in this checkout: the staging dir is shared, and plain
# `cargo deb` must not see another run's (ops/testenv/pkg-test.sh takes this lock too).
mkdir -p target
exec 9>target/.build-deb.lock
flock 9
rm -rf "$assets"
trap 'rm -rf "$assets"' EXIT
mkdir -p "$assets"/{man,completions,dashboard}
# The name is the message plain `cargo deb` prints when it is missing (Cargo.toml).
changelog=$(sed -n 's/^changelog = "\(target\/pkg-assets\/.*\)"$/\1/p' Cargo.toml)
[[ $changelog == target/pkg-assets/* ]] || { log "Cargo.toml: [package.metadata.deb] changelog is not under target/pkg-assets/"; exit 1; }
mkdir -p "$(dirname "$changelog")"
cp packaging/debian/changelog "$changelog"

log "dashboard"
(
    cd frontend
    if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
        npm ci --no-audit --no-fund >&2
    fi
    npm run build -- --outDir "$assets/dashboard" --emptyOutDir >&2
)
[[ -f $assets/dashboard/index.html ]] || { log "dashboard build produced no index.html"; exit 1; }

log "man pages and completions"
ctl=target/release/contimgctl
"$ctl" man > "$assets/man/contimgctl.1"
for bin in contimg-stream contimg-api; do
    if command -v help2man >/dev/null 2>&1; then
        help2man --no-info --section=1 --name="$("target/release/$bin" --help | head -n 1)" \
            "target/release/$bin" > "$assets/man/$bin.1"
    else
        log "help2man missing: no man page for $bin (apt-get install help2man)"
    fi
done
for page in "$assets"/man/*.1; do gzip -9n "$page"; done
"$ctl" completions bash > "$assets/completions/contimgctl"
"$ctl" completions zsh > "$assets/completions/_contimgctl"
"$ctl" completions fish > "$assets/completions/contimgctl.fish"

log "cargo deb --no-build"
deb=$(cargo deb --no-build --strip | tail -n 1)
[[ -f $deb ]] || { log "cargo deb printed no .deb path"; exit 1; }
echo "$deb"
