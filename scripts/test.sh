#!/usr/bin/env bash
# README's second command: install what is missing, then build and run every
# test twice: a Release build (all tests, Python included) and an
# AddressSanitizer + UndefinedBehaviorSanitizer build (the C++ tests).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/deps.sh

echo "== Release build: all tests =="
bash scripts/build.sh build -DCMAKE_BUILD_TYPE=Release -DXENT_BUILD_PYTHON=ON
(cd build && ctest --output-on-failure -j"$(nproc)")

echo "== ASan + UBSan build: C++ tests =="
bash scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DXENT_SANITIZE=ON \
  -DXENT_BUILD_PYTHON=OFF -DXENT_BUILD_BENCH=OFF -DXENT_BUILD_CUDA=OFF
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -j"$(nproc)" -LE nosanitize)
