// xent_cputime: one-thread thread-CPU-time of the fused cross-entropy, for
// A/B comparisons of kernel changes on a shared machine. Wall time there
// swings by 2x between runs (other users' processes deschedule ours); the
// CPU time of a one-thread call still contains memory stalls but not the
// time spent descheduled, so it is the steadier figure (docs/performance.md).
//
//   xent_cputime [--reps R] [--shape NxV]...   (default shapes: 1024x32000,
//                                               16384x1000, 1048576x10)
// Prints, per shape, the minimum over R calls (ms of thread CPU time) of the
// row-wise ceiling, forward, forward+backward, label smoothing 0.1 and soft
// targets, on caller-owned, reused buffers.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "bandwidth.h"
#include "hwy/aligned_allocator.h"
#include "xent/loss.h"

namespace {

double thread_cpu_s() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

template <class F>
double best_ms(int reps, F&& f) {
  f();  // warm-up
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const double t0 = thread_cpu_s();
    f();
    best = std::min(best, thread_cpu_s() - t0);
  }
  return best * 1e3;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 15;
  std::vector<std::pair<long, long>> shapes;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    long n = 0, v = 0;
    if (a == "--reps" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else if (a == "--shape" && i + 1 < argc && std::sscanf(argv[++i], "%ldx%ld", &n, &v) == 2) {
      shapes.emplace_back(n, v);
    } else {
      std::fprintf(stderr, "usage: %s [--reps R] [--shape NxV]...\n", argv[0]);
      return 2;
    }
  }
  if (shapes.empty()) shapes = {{1024, 32000}, {16384, 1000}, {1048576, 10}};
  for (const auto& [N, V] : shapes) {
    const std::size_t n = static_cast<std::size_t>(N) * static_cast<std::size_t>(V);
    auto z = hwy::AllocateAligned<float>(n), g = hwy::AllocateAligned<float>(n),
         p = hwy::AllocateAligned<float>(n);
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 4.0f);
    for (std::size_t i = 0; i < n; ++i) z[i] = nd(rng), g[i] = 0.0f, p[i] = 0.0f;
    std::vector<std::int64_t> t(static_cast<std::size_t>(N));
    for (auto& x : t) x = static_cast<std::int64_t>(rng() % static_cast<unsigned long>(V));
    for (long r = 0; r < N; ++r) p[static_cast<std::size_t>(r * V + t[static_cast<std::size_t>(r)])] = 1.0f;
    const xent::MatrixView zv{z.get(), xent::DType::kF32, N, V, V}, pv{p.get(), xent::DType::kF32, N, V, V};
    xent::CrossEntropyOptions o;
    o.num_threads = 1;
    xent::CrossEntropyOptions ls = o;
    ls.label_smoothing = 0.1;
    xent::CrossEntropyOutputs og;
    og.grad = {g.get(), xent::DType::kF32, N, V, V};
    volatile double sink = 0;
    const double c = best_ms(reps, [&] { sink = sink + xent::bench::RowCeiling(z.get(), g.get(), N, V, 1); });
    const double f = best_ms(reps, [&] { xent::cross_entropy_loss(zv, xent::Targets::Index(t.data()), o); });
    const double fb = best_ms(reps, [&] { xent::cross_entropy_loss(zv, xent::Targets::Index(t.data()), o, og); });
    const double l = best_ms(reps, [&] { xent::cross_entropy_loss(zv, xent::Targets::Index(t.data()), ls, og); });
    const double s = best_ms(reps, [&] { xent::cross_entropy_loss(zv, xent::Targets::Soft(pv), o, og); });
    std::printf("%ldx%ld thread-CPU ms (min of %d): ceiling %.2f  fwd %.2f  fwd+bwd %.2f  "
                "smoothing %.2f  soft %.2f\n",
                N, V, reps, c, f, fb, l, s);
  }
  return 0;
}
