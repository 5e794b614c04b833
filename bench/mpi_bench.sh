#!/bin/sh
# Issue 9 benchmark: mpi_bench on 1, 2 and 4 ranks back to back (one run, so
# the ratios share the machine's load), with the load printed before and after.
# Ranks are not bound to cores; each gets nproc / ranks OpenMP threads (at
# least 1), so 1 rank uses every core for both the fused baseline and the
# vocab-parallel kernel.
# Usage: mpi_bench.sh PATH/TO/mpi_bench [N] [V] [steps]
set -e
bin=$1; shift
cores=$(nproc)
uptime
for np in 1 2 4; do
  t=$((cores / np)); [ "$t" -ge 1 ] || t=1
  mpirun --allow-run-as-root --oversubscribe --bind-to none -x OMP_NUM_THREADS=$t -np "$np" "$bin" "$@"
done
uptime
