// xent_accuracy: the worst error of cross_entropy_loss's float32 row losses
// and gradients against a long-double computation written from the
// definitions, on logits N(0, σ²) with a third of the rows made confident
// (z_t + 12), for label smoothing 0 and 0.1 (uniform), across V. For kernel
// changes that alter rounding (docs/performance.md, "Accumulation").
//
//   xent_accuracy [--elements E] [--threads T]     (default 4000000 per V, 2)
//
// Prints per (V, σ, smoothing): the worst |loss − ref| / ref over the rows,
// and the worst |g − ref| / max_j |ref_j| of a row. The reference takes the
// confident rows' loss as log1p of the non-maximum mass, so that it stays
// exact when the loss is ~1e-12 (lse − z_t in long double would not).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "xent/loss.h"

int main(int argc, char** argv) {
  long elements = 4000000;
  int threads = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--elements" && i + 1 < argc) {
      elements = std::atol(argv[++i]);
    } else if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--elements E] [--threads T]\n", argv[0]);
      return 2;
    }
  }
  std::printf("| V | σ | smoothing | row loss, max rel err | gradient, max err / max |g| of the row |\n");
  std::printf("|---:|---:|---:|---:|---:|\n");
  for (const long V : {1000L, 5000L, 32000L, 128256L, 262144L}) {
    for (const float sigma : {1.0f, 4.0f, 30.0f}) {
      for (const double eps : {0.0, 0.1}) {
        const long N = std::max(8L, elements / V);
        std::vector<float> z(static_cast<std::size_t>(N * V)), g(z.size()), row_loss(static_cast<std::size_t>(N));
        std::vector<std::int64_t> t(static_cast<std::size_t>(N));
        std::mt19937 rng(static_cast<unsigned>(V * 7 + static_cast<long>(sigma)));
        std::normal_distribution<float> nd(0, sigma);
        for (auto& x : z) x = nd(rng);
        for (long r = 0; r < N; ++r) {
          t[static_cast<std::size_t>(r)] = static_cast<std::int64_t>(rng() % static_cast<unsigned long>(V));
          if (r % 3 == 0) z[static_cast<std::size_t>(r * V + t[static_cast<std::size_t>(r)])] += 12;
        }
        xent::CrossEntropyOptions o;
        o.reduction = xent::Reduction::kNone;
        o.label_smoothing = eps;
        o.num_threads = threads;
        xent::CrossEntropyOutputs out;
        out.grad = {g.data(), xent::DType::kF32, N, V, V};
        out.row_loss = row_loss.data();
        xent::cross_entropy_loss({z.data(), xent::DType::kF32, N, V, V}, xent::Targets::Index(t.data()), o, out);
        double worst_loss = 0, worst_grad = 0;
        std::vector<long double> ref_g(static_cast<std::size_t>(V));
        for (long r = 0; r < N; ++r) {
          const float* zr = &z[static_cast<std::size_t>(r * V)];
          const long tr = static_cast<long>(t[static_cast<std::size_t>(r)]);
          long double m = -INFINITY;
          for (long j = 0; j < V; ++j) m = std::max<long double>(m, zr[j]);
          long double rest = -1;  // Σ_j exp(z_j − m) − 1: the mass beyond one maximum
          for (long j = 0; j < V; ++j) rest += zr[j] == m ? 1.0L : expl(static_cast<long double>(zr[j]) - m);
          const long double log_s = log1pl(rest), lse = m + log_s;
          long double loss = 0, gmax = 0;
          for (long j = 0; j < V; ++j) {
            const long double p = (j == tr ? 1 - eps : 0) + eps / static_cast<long double>(V);
            loss += p * ((m - zr[j]) + log_s);
            long double q = zr[j] == m ? 1 / (1 + rest) : expl(zr[j] - lse);
            ref_g[static_cast<std::size_t>(j)] = j == tr && zr[j] == m ? -rest / (1 + rest) + (1 - p) : q - p;
            gmax = std::max(gmax, fabsl(ref_g[static_cast<std::size_t>(j)]));
          }
          worst_loss = std::max<double>(worst_loss, fabsl((row_loss[static_cast<std::size_t>(r)] - loss) / loss));
          for (long j = 0; j < V; ++j)
            worst_grad = std::max<double>(
                worst_grad, fabsl(g[static_cast<std::size_t>(r * V + j)] - ref_g[static_cast<std::size_t>(j)]) / gmax);
        }
        std::printf("| %ld | %g | %g | %.2e | %.2e |\n", V, sigma, eps, worst_loss, worst_grad);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
