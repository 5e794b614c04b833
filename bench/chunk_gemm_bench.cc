// The token chunk's three products (src/cpu/chunk_gemm.h) on our AVX-512
// kernels and on OpenBLAS, side by side, in GFLOP/s (best of --reps):
//
//   chunk_gemm_bench C D V [--reps R]
//
// e.g. 64 4096 32000 is one chunk of 4096×4096×32000 at the default budget.
// Threads: OMP_NUM_THREADS (both sides). Internal API: for kernel changes.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <random>
#include <string_view>
#include <vector>

#include "blas.h"
#include "cpu/chunk_gemm.h"

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s C D V [--reps R]\n", argv[0]);
    return 2;
  }
  const std::int64_t c = std::atoll(argv[1]), D = std::atoll(argv[2]), V = std::atoll(argv[3]);
  int reps = 3;
  for (int i = 4; i + 1 < argc; ++i)
    if (std::string_view(argv[i]) == "--reps") reps = std::atoi(argv[++i]);
  if (c <= 0 || D <= 0 || V <= 0 || reps <= 0) {
    std::fprintf(stderr, "C, D, V and R must be positive\n");
    return 2;
  }
  if (!xent::cpu::chunk_gemm_supported()) {
    std::fprintf(stderr, "this CPU has no AVX-512F: the chunk kernels do not run here\n");
    return 1;
  }
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  std::vector<float> H(c * D), W(V * D), G(c * V), gH(c * D), gW(V * D, 0.0f);
  for (auto* m : {&H, &W, &G})
    for (auto& x : *m) x = u(rng);
  const std::size_t ns = xent::cpu::chunk_logits_scratch(c, D);
  float* scratch = static_cast<float*>(::operator new[](ns * sizeof(float), std::align_val_t{64}));
  const int nt = omp_get_max_threads();
  const double flop = 2.0 * static_cast<double>(c) * static_cast<double>(D) * static_cast<double>(V);
  auto best = [&](auto f) {
    double t = 1e300;
    for (int r = 0; r < reps; ++r) {
      const double t0 = now_s();
      f();
      t = std::min(t, now_s() - t0);
    }
    return t;
  };
  using namespace xent;
  const double own[3] = {
      best([&] { cpu::chunk_logits(c, V, D, H.data(), D, W.data(), D, G.data(), V, scratch, nt); }),
      best([&] { cpu::chunk_grad_hidden(c, V, D, G.data(), V, W.data(), D, gH.data(), D, false, scratch, nt); }),
      best([&] { cpu::chunk_grad_weight(c, V, D, G.data(), V, H.data(), D, gW.data(), D, nt); })};
  const double obl[3] = {
      best([&] { blas::sgemm(false, true, c, V, D, 1.0f, H.data(), D, W.data(), D, 0.0f, G.data(), V); }),
      best([&] { blas::sgemm(false, false, c, D, V, 1.0f, G.data(), V, W.data(), D, 0.0f, gH.data(), D); }),
      best([&] { blas::sgemm(true, false, V, D, c, 1.0f, G.data(), V, H.data(), D, 1.0f, gW.data(), D); })};
  const char* names[3] = {"logits  H·Wᵀ", "grad_hidden G·W", "grad_weight Gᵀ·H"};
  std::printf("chunk %lld × D %lld × V %lld, %d threads, best of %d (ms, GFLOP/s)\n", static_cast<long long>(c),
              static_cast<long long>(D), static_cast<long long>(V), nt, reps);
  for (int k = 0; k < 3; ++k)
    std::printf("%-18s ours %8.2f ms %6.1f   OpenBLAS %8.2f ms %6.1f\n", names[k], own[k] * 1e3, flop / own[k] / 1e9,
                obl[k] * 1e3, flop / obl[k] / 1e9);
  ::operator delete[](scratch, std::align_val_t{64});
  return 0;
}
