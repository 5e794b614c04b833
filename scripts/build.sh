#!/usr/bin/env bash
# Configures and builds one build tree.  Usage: scripts/build.sh DIR [cmake args...]
set -euo pipefail
dir=$1; shift
root=$(cd "$(dirname "$0")/.." && pwd)
cmake -S "$root" -B "$dir" -DPython3_EXECUTABLE=/usr/bin/python3 "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
