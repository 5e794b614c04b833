// detail::cross_entropy_loss_in_region (linear_cross_entropy's small chunks)
// against cross_entropy_loss with one thread: the same bits for every output,
// on every path it can take (short rows, row-wise with a gradient that
// recomputes its exps, smoothing, weights, z-loss, soft targets, the scalar
// path, in place), called from inside a parallel region, and the same errors.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "loss_in_region.h"
#include "xent/loss.h"

namespace xent {
namespace {

struct Case {
  std::int64_t N, V;
  bool grad = true, inplace = false, soft = false;
  CrossEntropyOptions o;
};

struct Out {
  CrossEntropyResult res;
  std::vector<float> row_loss, row_lse, grad;
  std::string error;
};

Out run(const Case& c, const std::vector<float>& z0, const std::vector<float>& p,
        const std::vector<std::int64_t>& t, bool in_region) {
  Out out;
  std::vector<float> z = z0;
  out.row_loss.assign(static_cast<std::size_t>(c.N), -1.0f);
  out.row_lse.assign(static_cast<std::size_t>(c.N), -1.0f);
  out.grad.assign(z.size(), -1.0f);
  CrossEntropyOutputs outs;
  outs.row_loss = out.row_loss.data();
  outs.row_lse = out.row_lse.data();
  float* g = c.inplace ? z.data() : out.grad.data();
  if (c.grad) outs.grad = MutableMatrixView{g, DType::kF32, c.N, c.V, 0};
  const MatrixView lv{z.data(), DType::kF32, c.N, c.V, 0};
  const Targets tg = c.soft ? Targets::Soft(MatrixView{p.data(), DType::kF32, c.N, c.V, 0})
                            : Targets::Index(t.data());
  CrossEntropyOptions o = c.o;
  o.num_threads = 1;
  try {
    out.res = in_region ? detail::cross_entropy_loss_in_region(lv, tg, o, outs) : cross_entropy_loss(lv, tg, o, outs);
  } catch (const Error& e) {
    out.error = e.what();
  }
  if (c.inplace) out.grad = z;
  return out;
}

void expect_same(const Out& a, const Out& b) {
  EXPECT_EQ(a.error, b.error);
  EXPECT_EQ(std::memcmp(&a.res.loss, &b.res.loss, sizeof(double)), 0) << a.res.loss << " vs " << b.res.loss;
  EXPECT_EQ(std::memcmp(&a.res.z_loss, &b.res.z_loss, sizeof(double)), 0);
  EXPECT_EQ(a.res.correct, b.res.correct);
  EXPECT_EQ(a.res.count, b.res.count);
  EXPECT_EQ(std::memcmp(a.row_loss.data(), b.row_loss.data(), a.row_loss.size() * 4), 0);
  EXPECT_EQ(std::memcmp(a.row_lse.data(), b.row_lse.data(), a.row_lse.size() * 4), 0);
  EXPECT_EQ(std::memcmp(a.grad.data(), b.grad.data(), a.grad.size() * 4), 0);
}

TEST(CrossEntropyLossInRegion, SameBitsAsOneThreadOnEveryPath) {
  std::vector<Case> cases;
  for (std::int64_t v : {10, 130, 1000, 5000}) {  // short rows, row-wise, row-wise interleaved
    for (int variant = 0; variant < 7; ++variant) {
      Case c{7, v};
      if (variant == 1) c.inplace = true, c.o.label_smoothing = 0.1;
      if (variant == 2) c.o.z_loss = 1e-3, c.o.reduction = Reduction::kSum, c.o.compute_accuracy = true;
      if (variant == 3) c.soft = true;
      if (variant == 4) c.grad = false, c.o.label_smoothing = 0.2, c.o.smoothing = Smoothing::kOffTarget;
      if (variant == 5) c.o.softcap = 20, c.o.temperature = 1.5, c.inplace = true;  // the scalar path
      if (variant == 6) c.o.ignore_index = 3, c.o.focal_gamma = 2;
      cases.push_back(c);
    }
  }
  // Rows past kRecomputeMaxV (stored exps become recomputed ones), one row
  // past a chunk (the few-long-rows path becomes the row-wise one), and 2-3
  // rows (the inline bookkeeping).
  for (const auto& [n, v] : {std::pair<std::int64_t, std::int64_t>{3, 70000}, {1, 40000}, {2, 300}, {3, 12}}) {
    Case c{n, v};
    cases.push_back(c);
    c.inplace = true;
    c.o.label_smoothing = 0.1;
    cases.push_back(c);
    c.soft = true;
    cases.push_back(c);
  }
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (const Case& c : cases) {
    SCOPED_TRACE("N=" + std::to_string(c.N) + " V=" + std::to_string(c.V) + " soft=" + std::to_string(c.soft) +
                 " grad=" + std::to_string(c.grad) + " inplace=" + std::to_string(c.inplace));
    std::vector<float> z(static_cast<std::size_t>(c.N * c.V)), p(z.size(), 0.0f);
    for (auto& x : z) x = nd(rng);
    z[3] = -INFINITY;  // a mask
    std::vector<std::int64_t> t(static_cast<std::size_t>(c.N));
    for (std::int64_t r = 0; r < c.N; ++r) {
      t[static_cast<std::size_t>(r)] = static_cast<std::int64_t>(rng() % static_cast<unsigned>(c.V));
      p[static_cast<std::size_t>(r * c.V + t[static_cast<std::size_t>(r)])] += 0.75f;
      p[static_cast<std::size_t>(r * c.V + (t[static_cast<std::size_t>(r)] + 1) % c.V)] += 0.25f;
    }
    if (c.N > 2) t[2] = 3;  // the ignore index of variant 6
    const Out want = run(c, z, p, t, false);
    ASSERT_TRUE(want.error.empty()) << want.error;
    // From inside a parallel region, as linear_cross_entropy calls it: each
    // thread on its own copy of everything.
    Out got[2];
    int team = 0;
#pragma omp parallel num_threads(2)
    {
#pragma omp single
      team = omp_get_num_threads();
      got[omp_get_thread_num()] = run(c, z, p, t, true);
    }
    ASSERT_GE(team, 1);
    for (int k = 0; k < team; ++k) expect_same(want, got[k]);
  }
}

TEST(CrossEntropyLossInRegion, SameErrors) {
  Case c{5, 300};
  std::vector<float> z(static_cast<std::size_t>(c.N * c.V), 0.5f), p;
  std::vector<std::int64_t> t = {0, 1, 2, 3, 4};
  z[2 * 300 + 7] = NAN;
  expect_same(run(c, z, p, t, false), run(c, z, p, t, true));
  EXPECT_NE(run(c, z, p, t, true).error.find("logits[2][7] = nan"), std::string::npos);
  z[2 * 300 + 7] = 0.5f;
  t[4] = 300;  // out of range
  const Out bad = run(c, z, p, t, true);
  expect_same(run(c, z, p, t, false), bad);
  EXPECT_NE(bad.error.find("targets[4] = 300"), std::string::npos) << bad.error;
}

}  // namespace
}  // namespace xent
