// Extreme inputs, float32 and float64, against the long-double reference and
// the edge semantics documented in xent/core.h: logits of ±1e4, ±1e30,
// ±FLT_MAX (and ±DBL_MAX), denormals, -inf masks, K up to 2^20, a one-hot
// target at probability ~1e-40, K = 1, an all -inf row; 0·log 0 = 0,
// p > 0 with q = 0 → +inf, BCE at p ∈ {0, 1} and z = ±inf.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <limits>
#include <vector>

#include "reference/reference.h"
#include "row_checks.h"
#include "test_util.h"
#include "xent/core.h"
#include "xent/smoothing.h"

namespace {

using namespace xent_test;
using xent::Unit;

template <class T>
class Extremes : public ::testing::Test {};
TYPED_TEST_SUITE(Extremes, RowTypes);

template <class T>
constexpr T kInf = std::numeric_limits<T>::infinity();

template <class T>
std::span<const T> cs(const std::vector<T>& v) {
  return std::span<const T>(v);
}

std::vector<std::size_t> all_classes(std::size_t k) {
  std::vector<std::size_t> t(k);
  for (std::size_t i = 0; i < k; ++i) t[i] = i;
  return t;
}

// Every row function on z, every target, and soft targets (uniform, one-hot,
// random, and zero on the masked classes).
template <class T>
void check_everything(const std::vector<T>& z, Rng& rng) {
  const std::size_t k = z.size();
  check_logits_row<T>(z, all_classes(k));
  if (all_neg_inf(to_ref(z))) return;
  std::vector<LD> finite_w(k);
  for (std::size_t i = 0; i < k; ++i) finite_w[i] = std::isinf(z[i]) ? 0 : 1;
  check_soft_target_row<T>(normalize<T>(std::vector<LD>(k, 1)), z);
  check_soft_target_row<T>(normalize<T>(finite_w), z);
  check_soft_target_row<T>(random_distribution<T>(rng, k, 2), z);
  for (std::size_t t = 0; t < k; ++t) check_soft_target_row<T>(one_hot<T>(k, t), z);
}

TYPED_TEST(Extremes, HugeLogits) {
  using T = TypeParam;
  const T big = std::numeric_limits<T>::max();
  const T fmax = FLT_MAX;
  const std::vector<std::vector<T>> rows = {
      {1e4, -1e4, 0, 1e4 - 1, T(9999.5)},
      {-1e4, -1e4 + 3, -1e4 + T(0.25)},
      {1e30, -1e30, 0, 1e30},
      {-1e30, T(-1e30 * 0.999999)},
      {fmax, -fmax, 0, fmax},
      {-fmax, -fmax, -fmax},
      {fmax, fmax / 2, -kInf<T>},
      {big, -big, 0},
      {-big, T(-big * 0.5), -kInf<T>},
      {big, big},
  };
  Rng rng(1);
  for (const auto& z : rows) {
    SCOPED_TRACE(testing::Message() << "row starting " << z[0] << ", K " << z.size());
    check_everything<T>(z, rng);
  }
  // A soft loss near the top of T's range: finite, although m − z_i is not.
  const std::vector<T> zb = {big, -big, 0}, pb = {T(0.5), T(0.25), T(0.25)};
  check_soft_target_row<T>(pb, zb);
  EXPECT_TRUE(std::isfinite(xent::cross_entropy_from_logits<T>(cs(pb), cs(zb))));
  // BCE with logits far out in both tails, every kind of y.
  for (const T z : {T(1e4), T(-1e4), T(1e30), T(-1e30), fmax, -fmax, big, -big, T(88), T(-745)})
    for (const T y : {T(0), T(1), T(0.5), T(1e-30), T(1) - std::numeric_limits<T>::epsilon()}) {
      EXPECT_TRUE(near_ref<T>("binary_cross_entropy_with_logits",
                              xent::binary_cross_entropy_with_logits<T>(y, z),
                              xent::reference::binary_cross_entropy_with_logits(y, z)))
          << "y " << y << " z " << z;
      EXPECT_TRUE(near_ref<T>("binary_cross_entropy_with_logits_grad",
                              xent::binary_cross_entropy_with_logits_grad<T>(y, z),
                              xent::reference::binary_cross_entropy_with_logits_grad(y, z)))
          << "y " << y << " z " << z;
    }
}

TYPED_TEST(Extremes, Denormals) {
  using T = TypeParam;
  const T tiny = std::numeric_limits<T>::denorm_min();
  const T sub = std::numeric_limits<T>::min() / 1024;  // a subnormal with 13 bits fewer
  Rng rng(2);
  // Denormal logits: a softmax of nearly uniform rows.
  for (const auto& z : std::vector<std::vector<T>>{{tiny, -tiny, 0}, {sub, T(0), -sub, tiny},
                                                   {-tiny, -kInf<T>, sub}}) {
    SCOPED_TRACE(testing::Message() << "denormal logits, K " << z.size());
    check_everything<T>(z, rng);
  }
  // Denormal probabilities in p and q (the rest of the mass on entry 0).
  const std::vector<std::vector<T>> dists = {
      {1, tiny}, {1, sub, tiny, 0}, {T(0.5), T(0.5), tiny}, {1 - T(1e-6), T(1e-6) - sub, sub}};
  for (const auto& p : dists)
    for (const auto& q : dists) {
      if (p.size() != q.size()) continue;
      SCOPED_TRACE(testing::Message() << "denormal distributions, K " << p.size());
      check_distribution_pair<T>(p, q);
    }
  // KL with q denormal where p is not: p/q overflows double for float64.
  for (const T q1 : {tiny, sub, T(1e-300), T(1e-30)}) {
    const std::vector<T> p = {T(0.5), T(0.5)}, q = {1 - q1, q1};
    SCOPED_TRACE(testing::Message() << "q1 " << q1);
    check_distribution_pair<T>(p, q);
    check_distribution_pair<T>(q, p);
  }
  // BCE at denormal p and y.
  for (const T y : {T(0), tiny, sub, T(0.5), T(1)})
    for (const T p : {tiny, sub, T(0.5), 1 - std::numeric_limits<T>::epsilon() / 2})
      EXPECT_TRUE(near_ref<T>("binary_cross_entropy", xent::binary_cross_entropy<T>(y, p),
                              xent::reference::binary_cross_entropy(y, p)))
          << "y " << y << " p " << p;
}

TYPED_TEST(Extremes, MinusInfinityMasks) {
  using T = TypeParam;
  const T ninf = -kInf<T>;
  const std::vector<T> z = {ninf, 2, ninf, T(0.5), ninf};
  Rng rng(3);
  check_everything<T>(z, rng);
  // The masked classes: probability exactly 0, log-probability -inf, index
  // loss +inf, gradient entry 0 (index) and -p (soft).
  std::vector<T> out(z.size());
  xent::softmax<T>(cs(z), out);
  EXPECT_EQ(out[0], T(0));
  EXPECT_EQ(out[2], T(0));
  xent::log_softmax<T>(cs(z), out);
  EXPECT_EQ(out[0], ninf);
  EXPECT_EQ(xent::cross_entropy_from_logits<T>(0, cs(z)), kInf<T>);
  xent::cross_entropy_grad<T>(1, cs(z), out);
  EXPECT_EQ(out[0], T(0));
  EXPECT_EQ(out[4], T(0));
  const std::vector<T> p = {T(0.25), T(0.25), T(0), T(0.5), T(0)};
  EXPECT_EQ(xent::cross_entropy_from_logits<T>(cs(p), cs(z)), kInf<T>);
  xent::cross_entropy_grad<T>(cs(p), cs(z), out);
  EXPECT_EQ(out[0], T(-0.25));
  // A single finite logit among masks: softmax exactly one-hot, loss 0.
  const std::vector<T> single = {ninf, ninf, T(-3), ninf};
  xent::softmax<T>(cs(single), out = std::vector<T>(4));
  EXPECT_EQ(out, (std::vector<T>{0, 0, 1, 0}));
  EXPECT_EQ(xent::cross_entropy_from_logits<T>(2, cs(single)), T(0));
  EXPECT_EQ(xent::logsumexp<T>(cs(single)), T(-3));
}

TYPED_TEST(Extremes, AllMinusInfinityRow) {
  using T = TypeParam;
  for (std::size_t k : {1, 2, 7}) {
    const std::vector<T> z(k, -kInf<T>);
    EXPECT_EQ(xent::logsumexp<T>(cs(z)), -kInf<T>) << "K " << k;  // log 0, defined
    EXPECT_EQ(xent::reference::logsumexp(to_ref(z)), -std::numeric_limits<LD>::infinity());
  }
}

TYPED_TEST(Extremes, SingleClass) {
  using T = TypeParam;
  for (const T z0 : {T(0), T(-3.5), T(1e30), -std::numeric_limits<T>::max(),
                     std::numeric_limits<T>::max()}) {
    const std::vector<T> z = {z0}, p = {1};
    std::vector<T> out(1);
    EXPECT_EQ(xent::logsumexp<T>(cs(z)), z0);
    xent::softmax<T>(cs(z), out);
    EXPECT_EQ(out[0], T(1));
    xent::log_softmax<T>(cs(z), out);
    EXPECT_EQ(out[0], T(0));
    EXPECT_EQ(xent::cross_entropy_from_logits<T>(0, cs(z)), T(0));
    EXPECT_EQ(xent::cross_entropy_from_logits<T>(cs(p), cs(z)), T(0));
    xent::cross_entropy_grad<T>(0, cs(z), out);
    EXPECT_EQ(out[0], T(0));
    xent::cross_entropy_grad<T>(cs(p), cs(z), out);
    EXPECT_EQ(out[0], T(0));
    EXPECT_EQ(xent::entropy<T>(cs(p)), T(0));
    EXPECT_EQ(xent::cross_entropy<T>(cs(p), cs(p)), T(0));
    EXPECT_EQ(xent::kl_divergence<T>(cs(p), cs(p)), T(0));
    EXPECT_EQ(xent::perplexity<T>(xent::cross_entropy<T>(cs(p), cs(p))), T(1));
    for (const auto mode : {xent::Smoothing::kUniform, xent::Smoothing::kOffTarget}) {
      xent::smooth_target<T>(0, T(0.3), mode, std::span<T>(out));
      EXPECT_EQ(out[0], T(1)) << xent::SmoothingName(mode);
    }
  }
}

// K = 2^20 (a large vocabulary), logits N(0, 3²) with 1% masks, both types,
// every function. Compensated sums keep the error independent of K. (The
// sanitizer build sets XENT_TEST_HUGE_K_LOG2 = 17 to stay fast.)
TYPED_TEST(Extremes, HugeRows) {
  using T = TypeParam;
#ifdef XENT_TEST_HUGE_K_LOG2
  const std::size_t k = std::size_t{1} << XENT_TEST_HUGE_K_LOG2;
#else
  const std::size_t k = std::size_t{1} << 20;
#endif
  Rng rng(4);
  const auto z = random_logits<T>(rng, k, 3, 0, 0.01);
  const auto argmax = static_cast<std::size_t>(std::max_element(z.begin(), z.end()) - z.begin());
  check_logits_row<T>(z, {argmax, rng.index(k)});
  const auto p = random_distribution<T>(rng, k, 1);
  std::vector<LD> w(k);
  for (std::size_t i = 0; i < k; ++i) w[i] = std::isinf(z[i]) ? 0 : std::exp(LD(rng.normal()));
  const auto p_finite = normalize<T>(w);
  check_soft_target_row<T>(p_finite, z);
  check_distribution_pair<T>(p, random_distribution<T>(rng, k, 1));
  // A confident row at this K: one logit 40 above N(0,1) others.
  auto zc = random_logits<T>(rng, k, 1);
  zc[17] = 40;
  check_logits_row<T>(zc, {17});
  check_soft_target_row<T>(one_hot<T>(k, 17), zc);
}

// A one-hot target whose probability is ~1e-40: its logit 92 below the max.
// The loss is 92 + log S, the probability 1e-40 (a float32 subnormal), and
// the gradient's target entry −1 + 1e-40. Conversely, a confident row (the
// target the max, every other logit 92 below) has a loss of ~K·1e-40, which
// must keep its relative accuracy (log1p, not log).
TYPED_TEST(Extremes, TargetAtProbability1e40) {
  using T = TypeParam;
  Rng rng(5);
  for (std::size_t k : {2, 10, 1000}) {
    auto z = random_logits<T>(rng, k, 1);
    const T m = *std::max_element(z.begin(), z.end());
    const std::size_t t = (std::max_element(z.begin(), z.end()) - z.begin() + 1) % k;
    z[t] = m - 92;
    SCOPED_TRACE(testing::Message() << "K " << k);
    check_logits_row<T>(z, {t});
    check_soft_target_row<T>(one_hot<T>(k, t), z);
    const RefRow q = xent::reference::softmax(to_ref(z));
    EXPECT_LT(q[t], 1e-39L);
    EXPECT_GT(q[t], 1e-42L);
    std::vector<T> out(k);
    xent::softmax<T>(cs(z), out);
    if (std::is_same_v<T, double>)  // a normal double: full relative accuracy
      EXPECT_TRUE(near_ref<T>("softmax", out[t], q[t], strict_rel<T>()));
    else  // a float32 subnormal: within half its spacing
      EXPECT_LE(std::fabs(out[t] - q[t]), LD(std::numeric_limits<T>::denorm_min()) / 2);

    // The confident row: every other logit 92 below the target's.
    std::vector<T> zc(k);
    for (std::size_t i = 0; i < k; ++i) zc[i] = i == t ? T(5) : T(5 - 92) - T(rng.uniform(0, 1));
    const RefRow zr = to_ref(zc);
    // The reference's log Σ exp rounds 1 + 1e-40 to 1 even in long double;
    // the loss from its definition, lse − z_t = log1p(Σ_{j≠t} e^{z_j − z_t})
    // (t the max), keeps the digits.
    LD rest = 0;
    for (std::size_t i = 0; i < k; ++i)
      if (i != t) rest += std::exp(zr[i] - zr[t]);
    const LD loss_ref = std::log1p(rest);
    EXPECT_LT(loss_ref, 1e-36L);
    EXPECT_TRUE(near_ref<T>("cross_entropy_from_logits(index)",
                            xent::cross_entropy_from_logits<T>(t, cs(zc)), loss_ref,
                            strict_rel<T>()));
    EXPECT_TRUE(near_ref<T>("cross_entropy_from_logits(soft)",
                            xent::cross_entropy_from_logits<T>(cs(one_hot<T>(k, t)), cs(zc)),
                            loss_ref, strict_rel<T>()));
    // Gradient: q_t − 1 = −Σ_{j≠t} q_j, tiny, relative accuracy; the
    // reference's own q_t − 1 cancels in long double, so the expected value
    // is −Σ_{j≠t} q_j from its softmax.
    const RefRow qc = xent::reference::softmax(zr);
    LD others = 0;
    for (std::size_t i = 0; i < k; ++i)
      if (i != t) others += qc[i];
    xent::cross_entropy_grad<T>(t, cs(zc), out);
    EXPECT_TRUE(near_ref<T>("cross_entropy_grad(index)", out[t], -others, strict_rel<T>()));
    xent::cross_entropy_grad<T>(cs(one_hot<T>(k, t)), cs(zc), out);
    EXPECT_TRUE(near_ref<T>("cross_entropy_grad(soft)", out[t], -others, strict_rel<T>()));
  }
}

// 0·log 0 = 0 and p > 0 with q = 0 → +inf, exactly.
TYPED_TEST(Extremes, ZeroTimesLogZeroAndInfiniteCrossEntropy) {
  using T = TypeParam;
  const std::vector<T> p = {T(0.5), T(0.5), T(0)}, q = {T(0.25), T(0.75), T(0)};
  const std::vector<T> p2 = {T(0.5), T(0.5)}, q2 = {T(0.25), T(0.75)};
  // A zero class contributes nothing, even where q is 0 too.
  EXPECT_EQ(xent::entropy<T>(cs(p)), xent::entropy<T>(cs(p2)));
  EXPECT_EQ(xent::cross_entropy<T>(cs(p), cs(q)), xent::cross_entropy<T>(cs(p2), cs(q2)));
  EXPECT_EQ(xent::kl_divergence<T>(cs(p), cs(q)), xent::kl_divergence<T>(cs(p2), cs(q2)));
  EXPECT_TRUE(near_ref<T>("entropy", xent::entropy<T>(cs(p)), std::log(2.0L)));
  // p > 0 where q = 0: +inf, not NaN, not a clamp.
  const std::vector<T> q0 = {T(1), T(0), T(0)};
  EXPECT_EQ(xent::cross_entropy<T>(cs(p), cs(q0)), kInf<T>);
  EXPECT_EQ(xent::kl_divergence<T>(cs(p), cs(q0)), kInf<T>);
  EXPECT_EQ(xent::cross_entropy<T>(cs(p), cs(q0), Unit::kBits), kInf<T>);
  EXPECT_EQ(xent::perplexity<T>(kInf<T>), kInf<T>);
  // Logits: p = 0 on a masked class is fine, p > 0 on one is +inf.
  const std::vector<T> z = {T(1), T(2), -kInf<T>};
  EXPECT_TRUE(near_ref<T>("cross_entropy_from_logits(soft)",
                          xent::cross_entropy_from_logits<T>(cs(p), cs(z)),
                          xent::reference::cross_entropy_from_logits(to_ref(p), to_ref(z))));
  const std::vector<T> p_masked = {T(0.5), T(0.25), T(0.25)};
  EXPECT_EQ(xent::cross_entropy_from_logits<T>(cs(p_masked), cs(z)), kInf<T>);
}

TYPED_TEST(Extremes, BinaryCrossEntropyEdges) {
  using T = TypeParam;
  const T inf = kInf<T>;
  // Probabilities: 0·log 0 = 0, no −100 clamp as in PyTorch.
  EXPECT_EQ(xent::binary_cross_entropy<T>(T(1), T(0)), inf);
  EXPECT_EQ(xent::binary_cross_entropy<T>(T(0), T(1)), inf);
  EXPECT_EQ(xent::binary_cross_entropy<T>(T(0.5), T(0)), inf);
  EXPECT_EQ(xent::binary_cross_entropy<T>(T(1), T(1)), T(0));
  EXPECT_EQ(xent::binary_cross_entropy<T>(T(0), T(0)), T(0));
  const std::vector<T> y = {T(1), T(0)}, pr = {T(1), T(0)}, pr_bad = {T(0), T(0)};
  EXPECT_EQ(xent::binary_cross_entropy<T>(cs(y), cs(pr)), T(0));
  EXPECT_EQ(xent::binary_cross_entropy<T>(cs(y), cs(pr_bad)), inf);
  // Logits at ±inf: exact limits.
  EXPECT_EQ(xent::binary_cross_entropy_with_logits<T>(T(1), inf), T(0));
  EXPECT_EQ(xent::binary_cross_entropy_with_logits<T>(T(0), -inf), T(0));
  EXPECT_EQ(xent::binary_cross_entropy_with_logits<T>(T(0.5), inf), inf);
  EXPECT_EQ(xent::binary_cross_entropy_with_logits<T>(T(0), inf), inf);
  EXPECT_EQ(xent::binary_cross_entropy_with_logits<T>(T(0.3), -inf), inf);
  EXPECT_EQ(xent::binary_cross_entropy_with_logits<T>(T(1), -inf), inf);
  EXPECT_EQ(xent::binary_cross_entropy_with_logits_grad<T>(T(1), inf), T(0));
  EXPECT_EQ(xent::binary_cross_entropy_with_logits_grad<T>(T(0.25), inf), T(0.75));
  EXPECT_EQ(xent::binary_cross_entropy_with_logits_grad<T>(T(0.25), -inf), T(-0.25));
  EXPECT_EQ(xent::binary_cross_entropy_with_logits_grad<T>(T(0), -inf), T(0));
  const std::vector<T> zi = {inf, -inf}, yi = {T(1), T(0)};
  EXPECT_EQ(xent::binary_cross_entropy_with_logits<T>(cs(yi), cs(zi)), T(0));
  std::vector<T> g(2);
  xent::binary_cross_entropy_with_logits_grad<T>(cs(yi), cs(zi), g);
  EXPECT_EQ(g, (std::vector<T>{0, 0}));
  // Large finite logits agree with the probability form's limits: a
  // confidently right logit costs ~e^{−|z|}, kept to full relative accuracy.
  EXPECT_TRUE(near_ref<T>("binary_cross_entropy_with_logits",
                          xent::binary_cross_entropy_with_logits<T>(T(1), T(80)),
                          xent::reference::binary_cross_entropy_with_logits(1, 80),
                          strict_rel<T>()));
  EXPECT_TRUE(near_ref<T>("binary_cross_entropy_with_logits_grad",
                          xent::binary_cross_entropy_with_logits_grad<T>(T(1), T(30)),
                          -std::exp(-30.0L) / (1 + std::exp(-30.0L)), strict_rel<T>()));
}

}  // namespace
