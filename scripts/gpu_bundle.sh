#!/usr/bin/env bash
# Stages, from THIS (Debian) machine, the build dependencies that the GPU
# machine's image lacks (it has nvcc, CMake, ninja, python3 + torch, pip's
# pybind11; not Highway, GoogleTest or OpenBLAS), in a relocatable prefix:
#   build-gpu-bundle/{include,lib/x86_64-linux-gnu}   (~45 MB; an ignored path)
# Pass it to the device run with carry=["build-gpu-bundle"]; scripts/gpu_check.sh
# finds it there. Run: bash scripts/gpu_bundle.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
b="$root/build-gpu-bundle"
lib=/usr/lib/x86_64-linux-gnu
rm -rf "$b"
mkdir -p "$b/include" "$b/lib/x86_64-linux-gnu/cmake" "$b/lib/x86_64-linux-gnu/openblas-openmp"
cp -a /usr/include/hwy /usr/include/gtest "$b/include/"
cp -a "$lib"/libhwy*.so* "$lib"/libgtest*.a "$lib"/libgmock*.a "$b/lib/x86_64-linux-gnu/"
cp -a "$lib/cmake/hwy" "$lib/cmake/GTest" "$b/lib/x86_64-linux-gnu/cmake/"
cp -a "$lib"/openblas-openmp/libopenblas*.so* "$b/lib/x86_64-linux-gnu/openblas-openmp/"
cp -aL "$lib/libgfortran.so.5" "$lib/libquadmath.so.0" "$b/lib/x86_64-linux-gnu/"
du -sh "$b"
