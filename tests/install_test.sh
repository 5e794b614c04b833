#!/usr/bin/env bash
# Installs the build tree into a temporary prefix and builds examples/cpp as a
# downstream project would: with find_package(xent), and with pkg-config.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src/examples/cpp" -B "$tmp/example" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/example" >/dev/null
out=$("$tmp/example/minimal")
echo "$out"
grep -q "one row: 0.537159" <<<"$out"   # the seed example: −log softmax(z)_0 = 0.537159 nats
# pkg-config: compile the same program with the flags the .pc file gives.
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
g++ -std=c++20 "$src/examples/cpp/minimal.cc" -o "$tmp/minimal_pc" $(pkg-config --cflags --libs --static xent)
"$tmp/minimal_pc" | grep -q "one row: 0.537159"
echo "install test: find_package(xent) and pkg-config both build and run"
