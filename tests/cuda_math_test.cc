// The CUDA kernels' math, tested on the CPU: cuda/row_math.h (the XENT_HD
// functions the kernels call per element and per row) compiled by g++ and
// driven in the kernels' order — elements striped over 256 "threads", the
// per-thread statistics merged by the same fixed tree as block_reduce, then
// finalize and the gradient formula — against the long-double reference
// (src/reference/loss_reference.h). No GPU needed: this is what checks the
// formulas of cuda/*.cu on every build; tests/cuda_test.cc checks the
// kernels themselves on a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "../cuda/row_math.h"
#include "reference/loss_reference.h"

namespace xent {
namespace {

using cuda_math::CallParams;
using cuda_math::RowFinal;
using cuda_math::RowStats;
using reference::Real;
using reference::Row;

constexpr int kThreads = 256;  // cuda/cross_entropy.cu's kRowThreads
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Case {
  const char* name;
  std::int64_t N = 6, V = 1000;
  bool soft = false, weights = false, off_target = false;
  double eps = 0, temperature = 1, softcap = 0, z_loss = 0, gamma = 0;
  reference::RefReduction reduction = reference::RefReduction::kMean;
  double spread = 3;           // logits ~ spread·N(0, 1)
  bool masks = false;          // some non-target logits -inf
  bool ignore = false;         // rows 1 and 4 ignored
  double boost = 0;            // added to the target logit (confident rows)
  double rtol = 2e-6;          // loss, relative
  double gtol = 2e-6;          // gradient, relative to the row's largest entry
};

struct Emulated {
  double ce = 0, zl = 0, weight_sum = 0;
  long long count = 0;
  std::vector<double> row_loss, row_lse;
  std::vector<std::vector<float>> grad;
};

// The kernel's block_reduce order: part i absorbs part i + h, h = P/2, ..., 1.
template <class T, class Op>
T tree_reduce(std::vector<T> parts, Op op) {
  for (std::size_t h = parts.size() / 2; h > 0; h /= 2)
    for (std::size_t i = 0; i < h; ++i) op(parts[i], parts[i + h]);
  return parts[0];
}

// cuda/cross_entropy.cu's ce_rows + prep_targets + the host's reduction, on
// the CPU with the same functions.
Emulated emulate(const Case& c, const std::vector<std::vector<float>>& x,
                 const std::vector<std::int64_t>& t, const std::vector<std::vector<float>>& p,
                 const std::vector<float>& w, std::int64_t ignore_index) {
  const std::int64_t N = c.N, V = c.V;
  CallParams cp;
  cp.V = V;
  cp.softcap = static_cast<float>(c.softcap);
  cp.inv_temp = static_cast<float>(1.0 / c.temperature);
  cp.transform = c.softcap > 0 || c.temperature != 1.0;
  cp.gamma = c.gamma;
  cp.z_loss = c.z_loss;
  cuda_math::smoothing_coefs(c.eps, V, c.off_target, &cp.a, &cp.b);
  const bool coef = c.soft || c.eps > 0;
  Emulated out;
  // prep_targets
  for (std::int64_t r = 0; r < N; ++r) {
    if (c.soft) { out.weight_sum += 1; ++out.count; continue; }
    if (t[r] == ignore_index) continue;
    out.weight_sum += w.empty() ? 1.0 : w[t[r]];
    ++out.count;
  }
  const bool mean = c.reduction == reference::RefReduction::kMean;
  const double scale_ce = mean ? (out.weight_sum > 0 ? 1 / out.weight_sum : 0) : 1;
  const double scale_z = mean ? (out.count > 0 ? 1.0 / out.count : 0) : 1;
  out.row_loss.assign(N, 0);
  out.row_lse.assign(N, 0);
  out.grad.assign(N, std::vector<float>(V, 0.f));
  for (std::int64_t r = 0; r < N; ++r) {
    const bool ignored = !c.soft && t[r] == ignore_index;
    auto coef_of = [&](std::int64_t j) -> double {
      const double wj = w.empty() ? 1.0 : w[j];
      if (c.soft) return wj * (cp.a * p[r][j] + cp.b);
      if (coef) return wj * (cp.a * (j == t[r] ? 1.0 : 0.0) + cp.b);
      return j == t[r] ? wj * cp.a : 0.0;
    };
    auto tz = [&](float v, float* dd) {
      *dd = 1.f;
      return cp.transform ? cuda_math::transform_logit(v, cp, dd) : v;
    };
    std::vector<RowStats> parts(kThreads);
    for (std::int64_t j = 0; j < V; ++j) {
      float dd;
      const float z = tz(x[r][j], &dd);
      RowStats& s = parts[static_cast<std::size_t>(j % kThreads)];
      s.add(z);
      if (coef) s.add_coef(z, coef_of(j));
    }
    const RowStats st = tree_reduce(parts, [](RowStats& a, const RowStats& b) { a.merge(b); });
    RowFinal f;
    EXPECT_EQ(cuda_math::finalize_stats(st, false, &f), cuda_math::kRowOk) << c.name << " row " << r;
    out.row_lse[r] = f.lse;
    if (ignored) continue;
    if (coef) {
      cuda_math::finalize_coef_loss(st, &f);
    } else {
      float dd;
      const float zt = tz(x[r][t[r]], &dd);
      cuda_math::finalize_hard_loss(zt, (w.empty() ? 1.0 : w[t[r]]) * cp.a, cp.gamma, &f);
    }
    if (c.gamma > 0 && coef) {
      std::vector<double> lp(kThreads, 0), cp2(kThreads, 0);
      for (std::int64_t j = 0; j < V; ++j) {
        float dd;
        cuda_math::focal_accumulate(tz(x[r][j], &dd), coef_of(j), c.gamma, f,
                                    &lp[j % kThreads], &cp2[j % kThreads]);
      }
      f.ce = tree_reduce(lp, [](double& a, double b) { a += b; });
      f.CH = tree_reduce(cp2, [](double& a, double b) { a += b; });
    }
    cuda_math::finalize_scales(cp, scale_ce, scale_z, 1.0, &f);
    out.row_loss[r] = f.ce + f.zl;
    out.ce += f.ce;
    out.zl += f.zl;
    for (std::int64_t j = 0; j < V; ++j) {
      float dd;
      const float z = tz(x[r][j], &dd);
      out.grad[r][j] = cuda_math::grad_entry(z, dd, coef_of(j), c.gamma, f);
    }
  }
  return out;
}

// |got − want| ≤ tol, with equal infinities accepted (a weighted class at
// -inf makes the loss +inf on both sides).
::testing::AssertionResult close(double got, double want, double tol) {
  if (std::isinf(want) && got == want) return ::testing::AssertionSuccess();
  if (std::fabs(got - want) <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << got << ", want " << want << " (tol " << tol << ")";
}

void run_case(const Case& c, std::uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0, 1);
  std::uniform_int_distribution<std::int64_t> cls(0, c.V - 1);
  const std::int64_t ignore_index = -100;
  std::vector<std::vector<float>> x(c.N, std::vector<float>(c.V));
  std::vector<std::int64_t> t(c.N);
  std::vector<std::vector<float>> p;
  std::vector<float> w;
  for (std::int64_t r = 0; r < c.N; ++r) {
    for (auto& v : x[r]) v = static_cast<float>(c.spread * nd(rng));
    t[r] = cls(rng);
    x[r][t[r]] += static_cast<float>(c.boost);
    if (c.ignore && (r == 1 || r == 4)) t[r] = ignore_index;
    if (c.masks)
      for (std::int64_t j = 0; j < c.V; j += 7)
        if (j != t[r]) x[r][j] = kNegInf;
  }
  if (c.soft) {
    p.assign(c.N, std::vector<float>(c.V));
    for (std::int64_t r = 0; r < c.N; ++r) {
      double s = 0;
      std::vector<double> raw(c.V);
      for (auto& v : raw) { v = std::exp(2 * nd(rng)); s += v; }
      for (std::int64_t j = 0; j < c.V; ++j) p[r][j] = static_cast<float>(raw[j] / s);
    }
  }
  if (c.weights) {
    w.resize(c.V);
    std::uniform_real_distribution<float> u(0.25f, 2.f);
    for (auto& v : w) v = u(rng);
  }
  const Emulated em = emulate(c, x, t, p, w, ignore_index);

  std::vector<Row> xr(c.N, Row(c.V)), pr;
  for (std::int64_t r = 0; r < c.N; ++r)
    for (std::int64_t j = 0; j < c.V; ++j) xr[r][j] = x[r][j];
  if (c.soft) {
    pr.assign(c.N, Row(c.V));
    for (std::int64_t r = 0; r < c.N; ++r)
      for (std::int64_t j = 0; j < c.V; ++j) pr[r][j] = p[r][j];
  }
  reference::CeRefOptions o;
  o.reduction = c.reduction;
  o.ignore_index = ignore_index;
  for (float v : w) o.weight.push_back(v);
  o.epsilon = c.eps;
  o.off_target = c.off_target;
  o.temperature = c.temperature;
  o.softcap = c.softcap;
  o.z_loss = c.z_loss;
  o.gamma = c.gamma;
  const auto ref = reference::cross_entropy_batch(xr, c.soft ? std::vector<std::int64_t>{} : t, pr, o);

  const bool mean = c.reduction == reference::RefReduction::kMean;
  const double loss = mean ? em.ce / em.weight_sum + (c.z_loss > 0 ? em.zl / em.count : 0.0)
                           : em.ce + em.zl;
  EXPECT_TRUE(close(loss, static_cast<double>(ref.loss), c.rtol * std::fabs(static_cast<double>(ref.loss)) + 1e-12))
      << c.name;
  EXPECT_EQ(em.count, ref.count) << c.name;
  for (std::int64_t r = 0; r < c.N; ++r) {
    const double rl = static_cast<double>(ref.row_loss[r]);
    EXPECT_TRUE(close(em.row_loss[r], rl, c.rtol * std::fabs(rl) + 1e-12)) << c.name << " row " << r;
    EXPECT_NEAR(em.row_lse[r], static_cast<double>(ref.row_lse[r]),
                2e-7 * std::fabs(static_cast<double>(ref.row_lse[r])) + 1e-7) << c.name << " row " << r;
    double gmax = 0;
    for (Real g : ref.grad[r]) gmax = std::max(gmax, std::fabs(static_cast<double>(g)));
    for (std::int64_t j = 0; j < c.V; ++j) {
      const double g = static_cast<double>(ref.grad[r][j]);
      ASSERT_NEAR(em.grad[r][j], g, c.gtol * gmax + 4e-7 * std::fabs(g) + 1e-30)
          << c.name << " row " << r << " col " << j;
    }
  }
}

using reference::RefReduction;

TEST(CudaMath, PlainIndexTargets) { run_case({.name = "plain"}); }
TEST(CudaMath, SumAndNone) {
  run_case({.name = "sum", .reduction = RefReduction::kSum});
  run_case({.name = "none", .reduction = RefReduction::kNone});
}
TEST(CudaMath, ClassWeightsWeightedMean) { run_case({.name = "weights", .weights = true}); }
TEST(CudaMath, LabelSmoothingBothConventions) {
  run_case({.name = "uniform", .eps = 0.1});
  run_case({.name = "off_target+weights", .weights = true, .off_target = true, .eps = 0.2});
}
TEST(CudaMath, TemperatureSoftcapZLoss) {
  // float32 tanh of logits up to ~30: a few ulps of 30 in z''.
  run_case({.name = "T+cap+z", .temperature = 2, .softcap = 30, .z_loss = 1e-3, .spread = 20,
            .rtol = 1e-5, .gtol = 1e-5});
  run_case({.name = "z only", .z_loss = 1e-2});
}
TEST(CudaMath, Focal) {
  run_case({.name = "focal hard", .gamma = 2});
  run_case({.name = "focal + smoothing", .eps = 0.1, .gamma = 1.5, .rtol = 1e-5, .gtol = 1e-5});
  run_case({.name = "focal soft", .soft = true, .gamma = 2, .rtol = 1e-5, .gtol = 1e-5});
}
TEST(CudaMath, SoftTargets) {
  run_case({.name = "soft", .soft = true});
  run_case({.name = "soft+weights+smoothing", .soft = true, .weights = true, .eps = 0.05});
}
TEST(CudaMath, IgnoreIndexAndMasks) {
  run_case({.name = "ignore", .ignore = true});
  run_case({.name = "masks", .masks = true});
  run_case({.name = "masks+smoothing", .eps = 0.1, .masks = true});
}
TEST(CudaMath, ConfidentRowsKeepTheTargetGradient) {
  // spread 40: q_t ≈ 1 in most rows; the target's 1 − q comes from S − 1.
  run_case({.name = "confident", .spread = 40});
  // q_t = 1 − ~3e-6: float32 1 − q_t would be off by ~2%.
  run_case({.name = "very confident", .spread = 1, .boost = 20});
}

// 1 − q_t below float64's 2^-53: S = 1 + 1e-19 would be 1.0 in float64, so
// S − e_t (the previous formula) gave a target gradient of exactly 0 and a
// row loss of 0 (cuda_test's "confident rows", σ = 60, caught it on an
// H100). The long-double reference cannot check this either (its 1 − q_t
// has 64 bits): the exact values come from the sum of the other terms.
TEST(CudaMath, ExtremelyConfidentRowsKeepOneMinusQ) {
  const std::int64_t V = 1000;
  // The target's logit; the others ~ N(0, 1), so 1 − q_t ≈ 1650·e^−boost:
  // 3e-19, 3e-32, 1e-16, and every q_j stays a normal float (e^−83 > 2^-126).
  const double boosts[] = {50, 80, 44};
  const std::int64_t N = 4;
  std::mt19937 rng(5);
  std::normal_distribution<double> nd(0, 1);
  std::vector<std::vector<float>> x(N, std::vector<float>(V));
  std::vector<std::int64_t> t = {17, 500, 999, 3};
  for (auto& row : x)
    for (auto& v : row) v = static_cast<float>(nd(rng));
  for (int r = 0; r < 3; ++r) x[r][t[r]] = static_cast<float>(boosts[r]);
  // Row 3: a tie at the maximum (the target and class 700), both 60 above
  // the rest: q_t = 1/(2 + tiny), 1 − q_t = (1 + tiny)/(2 + tiny).
  x[3][t[3]] = 60.f;
  x[3][700] = 60.f;
  const Case c{.name = "extremely confident", .N = N, .V = V};
  const Emulated em = emulate(c, x, t, {}, {}, -100);
  for (std::int64_t r = 0; r < N; ++r) {
    const long double M = x[r][t[r]];
    long double others = 0;  // Σ_{j≠t} exp(z_j − M), in long double
    for (std::int64_t j = 0; j < V; ++j)
      if (j != t[r]) others += std::exp(static_cast<long double>(x[r][j]) - M);
    const long double S = 1 + others;
    const long double scale = 1.0L / N;  // mean over N rows, no weights
    // exp(z − M) takes z − M in float32, rounded by up to 2^-24·|z − M|:
    // a relative error of that size in every q_j (and so in Σ_{j≠t} q_j).
    const double span = static_cast<double>(M) - *std::min_element(x[r].begin(), x[r].end());
    const double rel = 2e-7 + 0x1p-24 * span;
    // −log q_t = log(1 + others).
    const double want_loss = static_cast<double>(std::log1p(others));
    EXPECT_TRUE(close(em.row_loss[r], want_loss, rel * want_loss)) << "row " << r;
    for (std::int64_t j = 0; j < V; ++j) {
      // g_t = −(1 − q_t)/N = −others/(S·N); g_j = q_j/N.
      const long double want = j == t[r] ? -others / S * scale
                                         : std::exp(static_cast<long double>(x[r][j]) - M) / S * scale;
      ASSERT_NE(want, 0.0L);
      ASSERT_TRUE(close(em.grad[r][j], static_cast<double>(want), rel * std::fabs(static_cast<double>(want))))
          << "row " << r << " col " << j;
    }
  }
}

// A lone maximum's ones = 1 and the rest apart; merging keeps them apart,
// whatever the order; ties at the maximum add up in ones.
TEST(CudaMath, StatsCountTheMaximumApart) {
  RowStats a, b;
  a.add(1.f);
  a.add(30.f);  // raise: the 1's term joins rest, rescaled to exp(−29)
  EXPECT_EQ(a.ones, 1.0);
  EXPECT_NEAR(a.rest, std::exp(-29.0), 1e-6 * std::exp(-29.0));
  b.add(30.f);
  b.add(-5.f);
  a.merge(b);
  EXPECT_EQ(a.ones, 2.0);
  const double rest = std::exp(-29.0) + std::exp(-35.0);
  EXPECT_NEAR(a.rest, rest, 1e-6 * rest);
  RowStats lower;
  lower.add(29.f);
  lower.merge(a);  // the lower part's maximum joins rest
  EXPECT_EQ(lower.m, 30.f);
  EXPECT_EQ(lower.ones, 2.0);
  EXPECT_NEAR(lower.rest, std::exp(-1.0) + rest, 1e-6);
  RowFinal f;
  ASSERT_EQ(cuda_math::finalize_stats(lower, false, &f), cuda_math::kRowOk);
  EXPECT_NEAR(f.S_m1, 1 + std::exp(-1.0), 1e-6);
  EXPECT_NEAR(f.lse, 30 + std::log(2 + std::exp(-1.0)), 1e-6);
  // A lone maximum: S − 1 is the rest alone, exactly.
  RowStats one;
  one.add(0.f);
  one.add(-50.f);
  ASSERT_EQ(cuda_math::finalize_stats(one, false, &f), cuda_math::kRowOk);
  EXPECT_EQ(f.S_m1, static_cast<double>(std::exp(-50.f)));
  EXPECT_GT(f.log_s, 0.0);
}

TEST(CudaMath, HugeVocabulary) {
  // V = 262144: the float64 row sums keep float32-level accuracy.
  run_case({.name = "V=262144", .N = 2, .V = 262144, .rtol = 1e-6});
}

TEST(CudaMath, StatsErrors) {
  RowStats all_masked;
  for (int j = 0; j < 10; ++j) all_masked.add(kNegInf);
  RowFinal f;
  EXPECT_EQ(cuda_math::finalize_stats(all_masked, false, &f), cuda_math::kRowAllNegInf);
  EXPECT_EQ(f.lse, -std::numeric_limits<double>::infinity());
  RowStats ok;
  ok.add(1.f);
  EXPECT_EQ(cuda_math::finalize_stats(ok, true, &f), cuda_math::kRowNonFinite);
  EXPECT_TRUE(std::isnan(f.lse));
  // Merge with an empty part (a thread that saw no element) is the identity.
  RowStats a, empty;
  a.add(3.f);
  a.add(-2.f);
  const RowStats before = a;
  a.merge(empty);
  EXPECT_EQ(a.m, before.m);
  EXPECT_EQ(a.ones, before.ones);
  EXPECT_EQ(a.rest, before.rest);
}

TEST(CudaMath, MergeOrderDoesNotMatterBeyondRounding) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0, 5);
  std::vector<float> z(4096);
  for (auto& v : z) v = nd(rng);
  RowStats seq;
  for (float v : z) seq.add(v);
  std::vector<RowStats> parts(64);
  for (std::size_t j = 0; j < z.size(); ++j) parts[j % 64].add(z[j]);
  const RowStats tree = tree_reduce(parts, [](RowStats& a, const RowStats& b) { a.merge(b); });
  Row zr(z.begin(), z.end());
  const double lse = static_cast<double>(reference::logsumexp(zr));
  EXPECT_NEAR(seq.m + std::log(seq.sum()), lse, 1e-6);
  EXPECT_NEAR(tree.m + std::log(tree.sum()), lse, 1e-6);
}

TEST(CudaMath, BceElementAgainstReference) {
  const float xs[] = {-std::numeric_limits<float>::infinity(), -200.f, -20.f, -1.5f, -1e-3f, 0.f,
                      1e-3f, 0.7f, 15.f, 200.f, std::numeric_limits<float>::infinity()};
  const float ys[] = {0.f, 0.25f, 0.5f, 1.f};
  const float ws[] = {0.f, 0.5f, 1.f, 3.f};
  const float pws[] = {1.f, 0.3f, 4.f};
  for (float x : xs)
    for (float y : ys)
      for (float w : ws)
        for (float pw : pws) {
          const auto e = cuda_math::bce_elem(x, y, w, pw);
          const auto ref = reference::bce_with_logits_batch({Row{x}}, {Row{y}}, {Row{w}}, Row{pw},
                                                            reference::RefReduction::kSum);
          const double rl = static_cast<double>(ref.elem_loss[0][0]);
          const double rg = static_cast<double>(ref.grad[0][0]);
          if (std::isinf(rl) || (w == 0 && std::isnan(rl))) {
            if (w == 0) {
              EXPECT_EQ(e.loss, 0.f);
            } else {
              EXPECT_EQ(e.loss, std::numeric_limits<float>::infinity()) << x << " " << y;
            }
          } else {
            EXPECT_NEAR(e.loss, rl, 1e-6 * std::fabs(rl) + 1e-7) << x << " " << y << " " << w << " " << pw;
          }
          if (!std::isnan(rg)) {
            EXPECT_NEAR(e.grad, rg, 1e-6 * std::fabs(rg) + 1e-7) << x << " " << y;
          }
        }
}

// The BCE gradient where it crosses 0 (lw·σ(x) ≈ pw·y): num's two terms
// cancel, and float32 terms (expf's 1–2 ulps above all) gave relative errors
// of 3e-6 (cuda_test on an H100: x = −0.745088518, y = 0.192513794,
// w = 1.30620098, pw = 2.02981758) up to O(1) for y one ulp from σ(x). The
// float64 numerator keeps the gradient within a float32 rounding of the
// exact value (long double, the same cancellation-free formula).
TEST(CudaMath, BceGradientWhereItCrossesZero) {
  auto exact = [](float x, float y, float w, float pw) {
    const long double e = std::exp(-std::fabs(static_cast<long double>(x)));
    const long double yl = y, pwy = static_cast<long double>(pw) * yl;
    const long double num = x >= 0 ? (1 - yl) - pwy * e : (1 - yl) * e - pwy;
    return static_cast<double>(w * num / (1 + e));
  };
  auto check = [&](float x, float y, float w, float pw) {
    const double want = exact(x, y, w, pw);
    const double got = cuda_math::bce_elem(x, y, w, pw).grad;
    // The magnitude of num's two terms, times w/(1 + e): what any rounding
    // inside num is relative to.
    const double e = std::exp(-std::fabs(static_cast<double>(x)));
    const double terms = w * ((1.0 - y) * (x >= 0 ? 1.0 : e) + static_cast<double>(pw) * y * (x >= 0 ? e : 1.0)) / (1 + e);
    // 2e-7·|g|: float32-level (the kernel then rounds the value to float32
    // once, after the reduction's scale); 1e-15·terms: the float64 numerator's own
    // error (a few 2^-53 of its terms). float32 terms would be off by
    // ~6e-8·terms, far beyond both where num cancels.
    return close(got, want, 2e-7 * std::fabs(want) + 1e-15 * terms)
           << " x=" << x << " y=" << y << " w=" << w << " pw=" << pw;
  };
  EXPECT_TRUE(check(-0.745088518f, 0.192513794f, 1.30620098f, 2.02981758f));
  for (float x : {-12.f, -3.f, -0.745088518f, -1e-3f, 0.f, 2e-3f, 0.5f, 4.f, 15.f}) {
    for (float pw : {1.f, 0.3f, 2.02981758f}) {
      // y solving lw·σ(x) = pw·y: y = σ/(pw − (pw − 1)·σ), then the floats
      // around it, the gradient a few float32 ulps of its terms from 0.
      const long double sg = 1 / (1 + std::exp(-static_cast<long double>(x)));
      float y = static_cast<float>(sg / (pw - (pw - 1) * sg));
      for (int k = 0; k < 3; ++k) y = std::nextafter(y, 0.f);
      for (int k = 0; k < 6; ++k, y = std::nextafter(y, 1.f)) {
        if (exact(x, y, 1.f, pw) == 0) continue;
        EXPECT_TRUE(check(x, y, 1.f, pw));
        EXPECT_TRUE(check(x, y, 0.7f, pw));
      }
    }
  }
}

TEST(CudaMath, SmoothingCoefficients) {
  double a, b;
  cuda_math::smoothing_coefs(0.1, 10, false, &a, &b);
  EXPECT_DOUBLE_EQ(a, 0.9);
  EXPECT_DOUBLE_EQ(b, 0.01);
  // off-target: target gets 1 − ε, every other class ε/(V − 1).
  cuda_math::smoothing_coefs(0.1, 11, true, &a, &b);
  EXPECT_NEAR(a + b, 0.9, 1e-15);
  EXPECT_NEAR(b, 0.01, 1e-15);
  cuda_math::smoothing_coefs(0.3, 1, true, &a, &b);
  EXPECT_EQ(a, 1.0);
  EXPECT_EQ(b, 0.0);
}

}  // namespace
}  // namespace xent
