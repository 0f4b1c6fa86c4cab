#!/usr/bin/env bash
# Installs every system and Python package that building and testing contimg needs
# on a fresh Debian 12 machine. Idempotent; run as root (CI does).
set -euo pipefail

apt_packages=(
  pkg-config libhdf5-dev            # hdf5-metno (UVH5)
  util-linux procps psmisc jq curl  # unshare/setsid/script, ps, fuser, test tooling
  docker.io                          # optional Docker backend tests
  chromium                           # dashboard end-to-end tests
  wrk hyperfine                      # benchmarks
  lintian dpkg-dev                   # .deb checks
  help2man shellcheck polkitd        # .deb man pages, script lint, polkit rule tests
)

if [[ $(id -u) -eq 0 ]]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"
  # systemd and dbus come with the machine; never upgrade them here. nspawn is pinned
  # to the installed systemd so apt does not upgrade the host's systemd with it.
  systemd_version=$(dpkg-query -W -f='${Version}' systemd)
  apt-get install -y -qq --no-install-recommends dbus-user-session \
    "systemd-container=${systemd_version}"
else
  echo "not root: skipping apt packages (${apt_packages[*]})" >&2
fi

# cargo-deb builds the .deb (packaging/build-deb.sh); ~90 s from crates.io.
if command -v cargo >/dev/null && ! command -v cargo-deb >/dev/null; then
  cargo install --locked cargo-deb
fi
# cargo-machete: the lint stage's unused-dependency check; ~2.5 min from crates.io
# on 2 cores (once per machine).
if command -v cargo >/dev/null && ! command -v cargo-machete >/dev/null; then
  cargo install --locked cargo-machete
fi

# The tests run `python3` from PATH; install into that interpreter. Debian's own
# python3 has no pip and refuses system-wide installs unless told otherwise.
python_packages=('pyuvdata>=3.1' h5py numpy 'schemathesis>=4,<5')
if ! python3 -m pip --version >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
  apt-get install -y -qq --no-install-recommends python3-pip
fi
python3 -m pip install -q --disable-pip-version-check "${python_packages[@]}" ||
  python3 -m pip install -q --disable-pip-version-check --break-system-packages "${python_packages[@]}"
