#!/usr/bin/env bash
# Installs the build tree into a temporary prefix and builds tests/mpi/consumer
# with find_package(xent) and xent::xent_mpi, then runs it on 2 ranks.
# Usage: install_mpi_test.sh BUILD_DIR SOURCE_DIR MPIRUN [MPIRUN_ARGS...]
set -euo pipefail
build=$1 src=$2
shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
test -f "$tmp/prefix/include/xent/mpi_communicator.h"
cmake -S "$src/tests/mpi/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
"$@" -np 2 "$tmp/consumer/consumer"
echo "install test: find_package(xent) provides xent::xent_mpi, which builds and runs"
