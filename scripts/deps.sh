#!/usr/bin/env bash
# Installs the Debian packages xent needs (idempotent: apt runs only when
# something is missing). Run as root on Debian bookworm.
set -euo pipefail

PACKAGES=(
  cmake g++ make pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  libhwy-dev libopenblas-dev libopenblas-openmp-dev
  libcli11-dev libfmt-dev nlohmann-json3-dev librapidcheck-dev
  pybind11-dev python3-pybind11 python3-dev python3-numpy python3-torch python3-pytest
  python3-sklearn zlib1g-dev
  # [serve] `xent serve` (cpp-httplib) and its browser test (chromium + node)
  libcpp-httplib-dev chromium nodejs
  # [mpi] vocab-parallel cross-entropy (issue 9): the xent_mpi target and its tests
  libopenmpi-dev openmpi-bin
)
# npm: Debian's package, unless nodejs already brings its own (NodeSource).
command -v npm >/dev/null || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
