#!/usr/bin/env bash
# install-deps.sh — the Debian 12 packages (and tools) contimg needs, in sets:
#
#   build    compile the binaries and the dashboard: a C compiler (rusqlite's bundled
#            SQLite), pkg-config and libhdf5-dev (hdf5-metno), curl; checks that the
#            Rust toolchain (edition 2024: rustup, not Debian's rustc) and Node.js
#            (Vite needs ^20.19 or >=22.12; Debian 12 ships 18) are there, then
#            `npm ci` for the frontend when node_modules is missing or stale
#   deb      build the .deb (packaging/build-deb.sh): dpkg-dev (dpkg-shlibdeps for the
#            package's library dependencies), help2man, cargo-deb
#   runtime  run and health-check a deployment: the HDF5 runtime library, curl,
#            python3, procps, util-linux (runuser, setsid)
#   test     everything the test suite needs on top (systemd-container, Docker,
#            Chromium, lintian, shellcheck, Slurm, mmdebstrap, promtool, the Python
#            packages, cargo-machete, …)
#
#   ./ops/install-deps.sh [SET…]            # install the sets (default: all four); root
#                                           # for the apt part, idempotent
#   ./ops/install-deps.sh --packages SET…   # print the sets' apt packages, one a line
#   ./ops/install-deps.sh --missing SET…    # print those not installed (dpkg-query; no root)
#   ./ops/install-deps.sh --apt-only SET…   # only the apt packages of the sets, only the
#                                           # missing ones (ops/deploy.sh uses this)
#   ./ops/install-deps.sh --check-node      # exit 1 (and say why) unless node/npm can
#                                           # build the dashboard
#
# Without root the apt part is skipped with the packages named (exit 0, as before);
# CI runs it as root through ./ops/test.sh --install. Exit codes: 0 done, 1 a step
# failed, 2 usage.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# apt packages per set (a package may be in several sets)
declare -A set_packages_of=(
  [build]="gcc libc6-dev pkg-config libhdf5-dev curl"
  [deb]="dpkg-dev help2man"
  [runtime]="libhdf5-103-1 curl python3 procps util-linux"
  # util-linux procps psmisc jq curl: unshare/setsid/script, ps, fuser, test tooling;
  # docker.io: Docker backend tests; chromium: dashboard end-to-end tests; wrk
  # hyperfine: benchmarks; lintian dpkg-dev: .deb checks; help2man shellcheck polkitd:
  # man pages, script lint, polkit rule tests; dbus-user-session: the user manager
  # harness; slurm-wlm munge: the Slurm test cluster; mmdebstrap: the offline Docker
  # base image; prometheus: promtool (checks/tests the shipped alerting rules)
  [test]="util-linux procps psmisc jq curl docker.io chromium wrk hyperfine lintian dpkg-dev
          help2man shellcheck polkitd dbus-user-session slurm-wlm munge mmdebstrap prometheus"
)
all_sets=(build deb runtime test)

usage() { sed -n '/^set -euo/q; 2,$p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "install-deps.sh: $*" >&2; exit 1; }

action=install
case ${1:-} in
  --packages) action=packages; shift ;;
  --missing) action=missing; shift ;;
  --apt-only) action='apt-only'; shift ;;
  --check-node) action=check-node; shift ;;
  -h|--help) usage ;;
  -*) echo "install-deps.sh: unknown option $1" >&2; usage ;;
esac
sets=("$@")
((${#sets[@]})) || sets=("${all_sets[@]}")
for set in "${sets[@]}"; do
  case $set in build|deb|runtime|test) ;; *) echo "install-deps.sh: unknown set '$set' (build deb runtime test)" >&2; exit 2 ;; esac
done
has_set() { [[ " ${sets[*]} " == *" $1 "* ]]; }

# The sets' apt packages, each once, in the order given.
set_packages() {
  local set pkg
  declare -A seen=()
  for set in "${sets[@]}"; do
    for pkg in ${set_packages_of[$set]}; do
      [[ -n ${seen[$pkg]:-} ]] && continue
      seen[$pkg]=1
      echo "$pkg"
    done
  done
}
# Installed means dpkg's status "install ok installed" (a removed package keeps "deinstall ok config-files").
missing_packages() {
  local pkg
  while read -r pkg; do
    [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) == "install ok installed" ]] || echo "$pkg"
  done < <(set_packages)
}

# Vite (frontend/package.json) needs Node.js ^20.19 or >=22.12.
check_node() {
  if command -v node >/dev/null && command -v npm >/dev/null && node -e '
      const [a, b] = process.versions.node.split(".").map(Number);
      process.exit((a === 20 && b >= 19) || (a === 22 && b >= 12) || a > 22 ? 0 : 1)'; then
    return 0
  fi
  echo "install-deps.sh: building the dashboard needs Node.js ^20.19 or >=22.12 with npm" \
    "(found: node $(node --version 2>/dev/null || echo none), npm $(npm --version 2>/dev/null || echo none));" \
    "Debian 12's nodejs is 18: install NodeSource's nodejs 20 or 22 (it includes npm)" >&2
  return 1
}

case $action in
  packages) set_packages; exit 0 ;;
  missing) missing_packages; exit 0 ;;
  check-node) check_node; exit ;;
esac

# Installs the missing ones. The local package lists are tried first (no network when
# the archives are cached); `apt-get update` only when that fails (empty or old lists).
apt_install() {  # apt_install PKG…
  (($#)) || return 0
  export DEBIAN_FRONTEND=noninteractive
  local apt=(apt-get install -y -qq --no-install-recommends "$@")
  if ! "${apt[@]}" 2>/dev/null; then
    apt-get update -qq || echo "install-deps.sh: apt-get update failed; trying the lists there are" >&2
    "${apt[@]}" || die "apt-get install $* failed"
  fi
}

install_apt() {
  local missing
  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]} == 0)); then return 0; fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps.sh: not root: skipping apt packages; run: apt-get install -y --no-install-recommends ${missing[*]}" >&2
    return 0
  fi
  local had_prometheus=false
  [[ $(dpkg-query -W -f='${Status}' prometheus 2>/dev/null) == "install ok installed" ]] && had_prometheus=true
  apt_install "${missing[@]}"
  # prometheus is here for promtool only. Its postinst enables prometheus.service
  # (and would start it under a systemd PID 1): keep the server off, on this host and
  # in the nspawn containers booted over its root (ops/testenv/nspawn.sh). On a host
  # without systemd as PID 1 nothing starts (seen: no prometheus process after install).
  if ! $had_prometheus && [[ " ${missing[*]} " == *" prometheus "* ]]; then
    systemctl disable prometheus.service >/dev/null 2>&1 || true
    if [[ -d /run/systemd/system ]]; then systemctl stop prometheus.service >/dev/null 2>&1 || true; fi
  fi
}

install_apt
[[ $action == apt-only ]] && exit 0

if has_set test && [[ $(id -u) -eq 0 ]]; then
  # systemd and dbus come with the machine; never upgrade them here. nspawn is pinned
  # to the installed systemd so apt does not upgrade the host's systemd with it.
  systemd_version=$(dpkg-query -W -f='${Version}' systemd)
  if [[ $(dpkg-query -W -f='${Version}' systemd-container 2>/dev/null) != "$systemd_version" ]]; then
    apt_install "systemd-container=${systemd_version}"
  fi
fi

if has_set build; then
  command -v cargo >/dev/null ||
    echo "install-deps.sh: cargo not found: install Rust with rustup (https://rustup.rs; Debian's rustc is too old for edition 2024)" >&2
  if ! check_node; then
    :  # said why; the Rust side and the other sets go on
  elif [[ ! -f frontend/node_modules/.package-lock.json || frontend/package-lock.json -nt frontend/node_modules/.package-lock.json ]]; then
    (cd frontend && npm ci --no-audit --no-fund) || die "npm ci (frontend) failed"
  fi
fi

# cargo-deb builds the .deb (packaging/build-deb.sh); ~90 s from crates.io.
if has_set deb && command -v cargo >/dev/null && ! command -v cargo-deb >/dev/null; then
  cargo install --locked cargo-deb
fi

if has_set test; then
  # cargo-machete: the lint stage's unused-dependency check; ~2.5 min from crates.io
  # on 2 cores (once per machine).
  if command -v cargo >/dev/null && ! command -v cargo-machete >/dev/null; then
    cargo install --locked cargo-machete
  fi
  # The tests run `python3` from PATH; install into that interpreter. Debian's own
  # python3 has no pip and refuses system-wide installs unless told otherwise.
  python_packages=('pyuvdata>=3.1' h5py numpy 'schemathesis>=4,<5')
  if ! python3 -m pip --version >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
    apt_install python3-pip
  fi
  python3 -m pip install -q --disable-pip-version-check "${python_packages[@]}" ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages "${python_packages[@]}"
fi
