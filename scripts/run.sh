#!/usr/bin/env bash
# README's first command: install what is missing, build in Release, and run
# the main job on its built-in default.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/deps.sh
bash scripts/build.sh build -DCMAKE_BUILD_TYPE=Release -DXENT_BUILD_PYTHON=ON
./build/xent demo --report build/xent-demo.svg
