#!/usr/bin/env bash
# The CUDA backend's checks on a GPU machine, as ONE command (issue 10):
#   configure + build with the machine's python3 (pybind11 from
#   `python3 -m pybind11 --cmakedir`), the GPU gtests (cuda_test) and the
#   host math test, the GPU pytest (python/tests/test_cuda.py), then the
#   benchmark table (bench/cuda_bench.py). Every output goes under $OUT (or
#   ./gpu-check-out). Dependencies the GPU image lacks (Highway, GoogleTest,
#   OpenBLAS) come from build-gpu-bundle/ when present (made on the
#   development machine by scripts/gpu_bundle.sh and carried along).
# Usage: bash scripts/gpu_check.sh [--quick] [--variants] [--torch-profile FILE]
#        (arguments go to bench/cuda_bench.py: --quick fewer iterations, --variants
#        the kernel under its benchmark knobs)
#        bash scripts/gpu_check.sh --profile   (build, then only Nsight Compute on
#        bench/cuda_profile.py: the fused CE kernels' speed-of-light, memory and
#        occupancy sections, into $OUT/profile.txt)
# Environment: OUT (outputs), PYTHON (default python3), BUILD_DIR (default build-gpu),
#   STEP_LIMIT (seconds each test or benchmark step may run, default 900: a
#   hung kernel must not eat the lease), GPU_ARCH (default 90).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${OUT:-$root/gpu-check-out}
mkdir -p "$out"
py=${PYTHON:-python3}
build=${BUILD_DIR:-build-gpu}
bench_args=("$@")
profile=0
if [ "${1:-}" = "--profile" ]; then profile=1; bench_args=(); fi
status=0
step_limit=${STEP_LIMIT:-900}
log() { echo "== $*" | tee -a "$out/summary.txt"; }

{ nvidia-smi; nvcc --version; $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"; } \
  > "$out/machine.txt" 2>&1
log "machine: $(grep -m1 '^torch' "$out/machine.txt" || echo 'torch sees no GPU (machine.txt)')"

# Build minutes are device minutes here: the GPU's own architecture only
# (GPU_ARCH, default 90: the lent H100 / H200), and the CPU kernels for AVX2
# and the scalar fallback only (the GPU tests compare against the CPU path,
# whichever SIMD target runs it).
cmake_args=(-DCMAKE_BUILD_TYPE=Release -DXENT_BUILD_CUDA=ON -DXENT_BUILD_PYTHON=ON
            -DXENT_BUILD_CLI=OFF -DXENT_BUILD_BENCH=OFF -DXENT_BUILD_TESTS=ON
            "-DCMAKE_CUDA_ARCHITECTURES=${GPU_ARCH:-90}" -DXENT_HWY_DISABLED_TARGETS=0x1980
            "-DPython3_EXECUTABLE=$(command -v "$py")"
            "-Dpybind11_DIR=$($py -m pybind11 --cmakedir)")
if [ -d build-gpu-bundle ]; then
  bundle="$root/build-gpu-bundle"
  cmake_args+=("-DCMAKE_PREFIX_PATH=$bundle"
               "-DXENT_OPENBLAS_OPENMP=$bundle/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so")
  export LD_LIBRARY_PATH="$bundle/lib/x86_64-linux-gnu:$bundle/lib/x86_64-linux-gnu/openblas-openmp:${LD_LIBRARY_PATH:-}"
  log "using the dependency bundle $bundle"
fi
command -v ninja > /dev/null && cmake_args+=(-G Ninja)

start=$(date +%s)
if ! cmake -S . -B "$build" "${cmake_args[@]}" > "$out/configure.log" 2>&1; then
  log "configure FAILED (see configure.log)"; tail -30 "$out/configure.log"; exit 1
fi
if ! cmake --build "$build" -j"$(nproc)" --target xent_cuda cuda_test cuda_math_test _xent _xent_cuda \
    > "$out/build.log" 2>&1; then
  log "build FAILED (see build.log)"; grep -m20 -E "error" "$out/build.log"; exit 1
fi
log "build: $(( $(date +%s) - start )) s"

if [ $profile = 1 ]; then
  ncu_bin=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  if [ -z "$ncu_bin" ]; then log "no ncu (Nsight Compute) on this machine"; exit 1; fi
  # ce_rows or ce_chunks (the one a plain call takes; not reduce_rows, whose
  # name holds "ce_rows") from the third call on (float32: two warm-up calls
  # skipped), and bfloat16.
  PYTHONPATH="$build"/python "$ncu_bin" --kernel-name regex:"(^|[^u])ce_(rows|chunks)" --launch-skip 2 --launch-count 4 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy \
    --section LaunchStats --section WarpStateStats \
    $py bench/cuda_profile.py > "$out/profile.txt" 2>&1 || status=1
  log "profile: $(grep -cE '(^|[^u])ce_(rows|chunks).*Context' "$out/profile.txt" || true) kernels (profile.txt)"
  exit $status
fi

timeout "$step_limit" "$build"/tests/cuda_math_test > "$out/cuda_math_test.log" 2>&1 || status=1
log "cuda_math_test: $(tail -1 "$out/cuda_math_test.log")"
timeout "$step_limit" "$build"/cuda/cuda_test > "$out/cuda_test.log" 2>&1 || status=1
log "cuda_test: $(grep -E '^\[  (PASSED|FAILED)  \] [0-9]|^\[  SKIPPED \] [0-9]+ test' "$out/cuda_test.log" | tr '\n' ' ')"
xdist=(); $py -c "import xdist" 2> /dev/null && xdist=(-n 4)
PYTHONPATH="$build"/python timeout "$step_limit" $py -m pytest -q -p no:cacheprovider "${xdist[@]}" python/tests/test_cuda.py \
  > "$out/pytest_cuda.log" 2>&1 || status=1
log "pytest test_cuda.py: $(tail -1 "$out/pytest_cuda.log")"
PYTHONPATH="$build"/python timeout "$step_limit" $py bench/cuda_bench.py "${bench_args[@]}" > "$out/bench.md" 2> "$out/bench.err" || status=1
log "benchmark: bench.md"
cat "$out/bench.md"
exit $status
