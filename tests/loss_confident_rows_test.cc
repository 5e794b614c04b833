// Confident rows through every way the statistics pass picks its exp
// reference (src/cpu/cross_entropy-inl.h): a short row (its maximum found
// first), a long row whose maximum is in its first chunk, and one whose
// maximum is in a later chunk (a rescale from the first chunk's maximum).
// In all of them the non-maximum mass s − 1 is tiny, so the loss ≈ s − 1 and
// the true-class gradient −(s − 1)/s keep their relative accuracy only if the
// exactly-1 term of the maximum never shares a float32 partial sum with the
// small terms. Checked against long double computed here from the same
// float32 logits. The widest gaps make s − 1 ~1e-13 to ~1e-16, where even an
// fp64 s = 1 + (s − 1) keeps only a few digits of it: the exactly-1 terms
// must stay apart through the chunk merges and the row's finish too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "xent/loss.h"

namespace xent {
namespace {

struct Truth {
  long double loss, grad_t;
};

Truth long_double_truth(const float* z, std::int64_t V, std::int64_t t, double temperature) {
  auto zt = [&](std::int64_t j) { return static_cast<long double>(z[j]) / temperature; };
  long double m = -INFINITY;
  for (std::int64_t j = 0; j < V; ++j) m = std::max(m, zt(j));
  long double rest = 0;  // Σ_{j≠argmax} exp(z_j − m): the target is the max here
  for (std::int64_t j = 0; j < V; ++j)
    if (j != t) rest += std::exp(zt(j) - m);
  const long double s = 1 + rest;
  return {std::log1p(rest) + (m - zt(t)), -rest / s / temperature};
}

void check_confident(std::int64_t V, std::int64_t t, float gap, int threads, double temperature = 1.0) {
  std::mt19937 rng(static_cast<unsigned>(V + t));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const std::int64_t N = 2;
  std::vector<float> z(static_cast<std::size_t>(N * V)), g(z.size());
  for (auto& x : z) x = nd(rng);
  std::vector<std::int64_t> targets = {t, t};
  for (std::int64_t r = 0; r < N; ++r) z[static_cast<std::size_t>(r * V + t)] = gap + static_cast<float>(r);
  CrossEntropyOptions o;
  o.reduction = Reduction::kSum;
  o.num_threads = threads;
  o.temperature = temperature;
  std::vector<float> row_loss(static_cast<std::size_t>(N));
  CrossEntropyOutputs outs;
  outs.grad = {g.data(), DType::kF32, N, V, V};
  outs.row_loss = row_loss.data();
  cross_entropy_loss({z.data(), DType::kF32, N, V, V}, Targets::Index(targets.data()), o, outs);
  for (std::int64_t r = 0; r < N; ++r) {
    const Truth want = long_double_truth(z.data() + r * V, V, t, temperature);
    const double loss_err = std::fabs(row_loss[static_cast<std::size_t>(r)] - static_cast<double>(want.loss)) /
                            static_cast<double>(want.loss);
    const double g_err = std::fabs(g[static_cast<std::size_t>(r * V + t)] - static_cast<double>(want.grad_t)) /
                         std::fabs(static_cast<double>(want.grad_t));
    EXPECT_LE(loss_err, 5e-7) << "V " << V << " t " << t << " row " << r << " loss " << row_loss[r];
    EXPECT_LE(g_err, 5e-7) << "V " << V << " t " << t << " row " << r << " grad_t " << g[r * V + t];
  }
}

TEST(ConfidentRows, ShortRowMaximumFoundFirst) {
  for (float gap : {14.0f, 18.0f, 40.0f, 45.0f}) check_confident(5000, 4321, gap, 1);
}

TEST(ConfidentRows, ShortRowsOnePerLane) {
  // V ≤ 128: the short-row tiles (src/cpu/small_rows-inl.h).
  for (float gap : {14.0f, 30.0f, 40.0f, 45.0f}) check_confident(100, 37, gap, 1);
}

TEST(ConfidentRows, LongRowMaximumInFirstChunk) {
  for (float gap : {16.0f, 20.0f, 40.0f, 45.0f}) check_confident(100000, 100, gap, 1);
}

TEST(ConfidentRows, LongRowMaximumInLaterChunk) {
  // Row-wise (1 thread) and chunk-parallel (N = 2 < 2·3 threads).
  for (int threads : {1, 3})
    for (float gap : {16.0f, 20.0f, 40.0f, 45.0f}) check_confident(100000, 90000, gap, threads);
}

TEST(ConfidentRows, ScalarPathWithTemperature) {
  // Temperature ≠ 1 takes the per-row fp64 path (loss.cc slow_row); z/T
  // widens the gaps to 40 and 50.
  for (float gap : {8.0f, 20.0f, 25.0f}) check_confident(5000, 17, gap, 1, 0.5);
}

}  // namespace
}  // namespace xent
