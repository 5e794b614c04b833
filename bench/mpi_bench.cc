// Vocab-parallel cross-entropy on MPI (issue 9): time per step (forward +
// backward: loss, row lse and the gradient slice, written over the logits)
// and the bytes each rank passes to allreduce per token, for N × V float32
// logits split across the ranks. Under one rank it also times the
// single-process fused xent::cross_entropy_loss on the same full logits (the
// baseline). bench/mpi_bench.sh runs 1, 2 and 4 ranks back to back.
//
//   mpirun -np K mpi_bench [N] [V] [steps]      (default 8192 128256 1)
//
// Prints one line per measurement, from rank 0:
//   ranks K N V: vocab_parallel step S s (min over steps), bytes/rank/token B
//   ranks 1 N V: cross_entropy_loss (fused, T threads) step S s
#include <mpi.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "xent/loss.h"
#include "xent/mpi_communicator.h"
#include "xent/vocab_parallel.h"

namespace {

// Deterministic logits by global (row, column): the same values whatever the
// split. A cheap hash → roughly uniform in [-4, 4).
void fill(std::vector<float>& x, std::int64_t N, std::int64_t off, std::int64_t Vr) {
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < N; ++r)
    for (std::int64_t c = 0; c < Vr; ++c) {
      std::uint64_t h = std::uint64_t(r) * 0x9E3779B97F4A7C15ull + std::uint64_t(off + c) * 0xBF58476D1CE4E5B9ull;
      h ^= h >> 31;
      h *= 0x94D049BB133111EBull;
      h ^= h >> 29;
      x[std::size_t(r) * std::size_t(Vr) + std::size_t(c)] = float(double(h >> 11) * 0x1p-53 * 8.0 - 4.0);
    }
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  {
    const std::int64_t N = argc > 1 ? std::atoll(argv[1]) : 8192;
    const std::int64_t V = argc > 2 ? std::atoll(argv[2]) : 128256;
    const int steps = argc > 3 ? std::atoi(argv[3]) : 1;
    xent::MpiCommunicator comm;
    const int P = comm.size(), me = comm.rank();
    const std::int64_t off = V * me / P, Vr = V * (me + 1) / P - off;
    std::vector<float> x(std::size_t(N) * std::size_t(Vr));
    std::vector<std::int64_t> t(N);
    for (std::int64_t r = 0; r < N; ++r) t[r] = (r * 7919) % V;
    std::vector<float> lse(N);
    double best = 1e300;
    std::uint64_t bytes = 0;
    for (int s = 0; s < steps; ++s) {
      fill(x, N, off, Vr);  // the previous step overwrote them with the gradient
      const std::uint64_t b0 = comm.bytes_reduced();
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = now();
      xent::vocab_parallel_cross_entropy({x.data(), xent::DType::kF32, N, Vr, Vr}, off, V,
                                         xent::Targets::Index(t.data()), {}, comm,
                                         {nullptr, lse.data(), {x.data(), xent::DType::kF32, N, Vr, Vr}});
      MPI_Barrier(MPI_COMM_WORLD);
      best = std::min(best, now() - t0);
      bytes = comm.bytes_reduced() - b0;
    }
    if (me == 0)
      std::printf("ranks %d N %lld V %lld: vocab_parallel step %.3f s, bytes/rank/token %.2f\n", P,
                  (long long)N, (long long)V, best, double(bytes) / double(N));
    if (P == 1) {  // the single-process fused loss on the same logits
      double fbest = 1e300;
      for (int s = 0; s < steps; ++s) {
        fill(x, N, off, Vr);
        const double t0 = now();
        xent::cross_entropy_loss({x.data(), xent::DType::kF32, N, V, V}, xent::Targets::Index(t.data()), {},
                                 {nullptr, lse.data(), {x.data(), xent::DType::kF32, N, V, V}});
        fbest = std::min(fbest, now() - t0);
      }
      std::printf("ranks 1 N %lld V %lld: cross_entropy_loss (fused, %d threads) step %.3f s\n",
                  (long long)N, (long long)V, omp_get_max_threads(), fbest);
    }
  }
  MPI_Finalize();
  return 0;
}
