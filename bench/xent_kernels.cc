// xent_kernels: the per-chunk SIMD kernels of the fused cross-entropy
// (src/cpu/kernels.h) on one cache-resident row, one thread, for A/B
// comparisons of kernel changes: what they cost without memory in the way.
//
//   xent_kernels [--cols N] [--reps R]          (default 4096 columns, 20000)
//
// Prints ns per element (the best of 9 rounds of R calls) for: the statistics
// pass (a row that finds its maximum first; one that starts from a given
// reference, as a long row's later chunks do; with label-smoothing
// coefficients; with a soft target row), the gradient pass recomputing its exps and from stored exps,
// and the exp alone.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "cpu/kernels.h"

namespace {

template <class F>
double best_ns_per_element(std::size_t n, int reps, F&& f) {
  double best = 1e30;
  for (int round = 0; round < 9; ++round) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) f();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s * 1e9 / reps / static_cast<double>(n));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace xent::cpu;
  std::size_t n = 4096;
  int reps = 20000;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--cols" && i + 1 < argc) {
      n = std::strtoul(argv[++i], nullptr, 10);
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--cols N] [--reps R]\n", argv[0]);
      return 2;
    }
  }
  std::vector<float> z(n), g(n), e(n);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0, 4);
  for (auto& x : z) x = nd(rng);
  ChunkStats st;
  std::vector<float> prob(n, 1.0f / static_cast<float>(n));  // a soft target row
  CoefSpec plain, from_ref, coef, soft;
  from_ref.init_ref = 20.0;  // above every logit: no raise, as in a long row's later chunk
  coef.want_coef = true;
  soft.want_coef = true;
  soft.p = prob.data();
  auto stats = [&](const CoefSpec& cs) {
    return best_ns_per_element(n, reps, [&] {
      ChunkStatsF32(z.data(), n, cs, &st);
      asm volatile("" : : "r"(&st) : "memory");
    });
  };
  std::printf("SIMD target %s, %zu columns, ns per element (one thread, in cache)\n", KernelTargetName(), n);
  std::printf("stats, maximum first       %.4f\n", stats(plain));
  std::printf("stats, given reference     %.4f\n", stats(from_ref));
  std::printf("stats, smoothing coefs     %.4f\n", stats(coef));
  std::printf("stats, soft targets        %.4f\n", stats(soft));
  ChunkStatsF32(z.data(), n, plain, &st);
  GradSpec gs;
  gs.max = st.max;
  gs.alpha = 1.0 / st.sum_exp;
  gs.subtract = true;
  gs.beta = 1e-5;
  gs.fix_index = n / 3;
  gs.fix_value = -0.5;
  auto grad = [&](const GradSpec& spec, const float* in) {
    return best_ns_per_element(n, reps, [&] {
      ChunkGradF32(in, n, g.data(), spec);
      asm volatile("" : : "r"(g.data()) : "memory");
    });
  };
  std::printf("gradient, recomputed exps  %.4f\n", grad(gs, z.data()));
  ExpRowF32(z.data(), e.data(), n);  // stand-in exps (values do not matter for speed)
  GradSpec from_e = gs;
  from_e.from_exp = true;
  std::printf("gradient, stored exps      %.4f\n", grad(from_e, e.data()));
  for (auto& x : z) x = -std::abs(x);
  std::printf("exp alone                  %.4f\n", best_ns_per_element(n, reps, [&] {
                ExpRowF32(z.data(), e.data(), n);
                asm volatile("" : : "r"(e.data()) : "memory");
              }));
  return 0;
}
