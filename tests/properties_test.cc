// Properties of the quantities, each over thousands of seeded random cases,
// float32 and float64: the identities that hold in exact arithmetic must hold
// to within the rounding of the results involved (the bars of test_util.h),
// and the signs that hold exactly must hold exactly.
//   H(p,q) = H(p) + KL(p‖q);  KL ≥ 0, = 0 iff p = q;  H(p,q) ≥ H(p);
//   shift invariance and permutation equivariance of the logits;
//   every gradient row sums to 0;  bits = nats / ln 2;
//   perplexity = exp(H) = 2^(H in bits);  Σ softmax = 1;
//   label smoothing (both conventions) decomposes the loss as defined.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "reference/reference.h"
#include "test_util.h"
#include "xent/core.h"
#include "xent/smoothing.h"

namespace {

using namespace xent_test;
using xent::Unit;

template <class T>
class Properties : public ::testing::Test {};
TYPED_TEST_SUITE(Properties, RowTypes);

constexpr int kCases = 3000;

template <class T>
constexpr LD eps() {
  return std::numeric_limits<T>::epsilon();
}

// The bar's bound on the error of a result of magnitude v.
template <class T>
LD allowance(LD v) {
  return std::max<LD>(bar<T>().rel * std::fabs(v), bar<T>().abs);
}

std::size_t random_k(Rng& rng) { return 1 + rng.index(rng.chance(0.8) ? 16 : 300); }

template <class T>
std::span<const T> cs(const std::vector<T>& v) {
  return std::span<const T>(v);
}

TYPED_TEST(Properties, CrossEntropyIsEntropyPlusKL) {
  using T = TypeParam;
  Rng rng(1);
  for (int c = 0; c < kCases; ++c) {
    const std::size_t k = random_k(rng);
    const auto p = random_distribution<T>(rng, k, rng.uniform(0, 5), 0.2);
    const auto q = random_distribution<T>(rng, k, rng.uniform(0, 5), c % 5 == 0 ? 0.3 : 0.0);
    const T h = xent::entropy<T>(cs(p));
    const T ce = xent::cross_entropy<T>(cs(p), cs(q));
    const T kl = xent::kl_divergence<T>(cs(p), cs(q));
    if (std::isinf(ce)) {  // some p_i > 0 where q_i = 0: both infinite
      EXPECT_EQ(kl, std::numeric_limits<T>::infinity()) << "case " << c;
      continue;
    }
    const LD diff = std::fabs(LD(ce) - (LD(h) + LD(kl)));
    EXPECT_LE(diff, allowance<T>(ce) + allowance<T>(h) + allowance<T>(kl))
        << "case " << c << ": H(p,q) " << ce << " H(p) " << h << " KL " << kl;
  }
}

TYPED_TEST(Properties, KLIsNonNegativeAndZeroIffEqual) {
  using T = TypeParam;
  Rng rng(2);
  for (int c = 0; c < kCases; ++c) {
    const std::size_t k = 2 + rng.index(30);
    const auto p = random_distribution<T>(rng, k, rng.uniform(0, 3));
    EXPECT_EQ(xent::kl_divergence<T>(cs(p), cs(p)), T(0)) << "case " << c;
    std::vector<T> q;
    if (c % 2 == 0) {
      q = random_distribution<T>(rng, k, rng.uniform(0, 3));
    } else {
      // q = p moved by a few ulps in a few entries, not renormalized: still a
      // valid distribution (within NormTolerance), KL tiny, and it must still
      // be > 0 — the hardest case for the sign.
      q = p;
      for (int n = 0; n < 3; ++n) {
        const std::size_t i = rng.index(k);
        if (q[i] < T(1e-3)) continue;  // keep the true KL above T's underflow
        const int steps = 1 + static_cast<int>(rng.index(4));
        for (int s = 0; s < steps; ++s)
          q[i] = std::nextafter(q[i], rng.chance(0.5) ? T(0) : T(1));
      }
      if (q == p) q[std::max_element(q.begin(), q.end()) - q.begin()] *= T(1) - eps<T>();
    }
    const T kl = xent::kl_divergence<T>(cs(p), cs(q));
    if (q == p)
      EXPECT_EQ(kl, T(0)) << "case " << c;
    else
      EXPECT_GT(kl, T(0)) << "case " << c << ": p != q but KL = " << kl;
  }
}

TYPED_TEST(Properties, CrossEntropyIsAtLeastEntropy) {
  using T = TypeParam;
  Rng rng(3);
  for (int c = 0; c < kCases; ++c) {
    const std::size_t k = random_k(rng);
    const auto p = random_distribution<T>(rng, k, rng.uniform(0, 5), 0.2);
    // Every third q is p itself or a slight perturbation, where the two are
    // equal up to rounding.
    std::vector<T> q;
    if (c % 3 == 0) {
      std::vector<LD> w(k);
      for (std::size_t i = 0; i < k; ++i) w[i] = p[i] * (1 + 1e-6L * rng.normal());
      q = normalize<T>(w);
    } else {
      q = random_distribution<T>(rng, k, rng.uniform(0, 5));
    }
    const T h = xent::entropy<T>(cs(p)), ce = xent::cross_entropy<T>(cs(p), cs(q));
    EXPECT_GE(LD(ce), LD(h) - allowance<T>(h) - allowance<T>(ce))
        << "case " << c << ": H(p,q) " << ce << " < H(p) " << h;
    // H(p, p) = H(p), to the rounding of the two results.
    EXPECT_LE(std::fabs(LD(xent::cross_entropy<T>(cs(p), cs(p))) - LD(h)), 2 * allowance<T>(h))
        << "case " << c;
  }
}

// Logits on a grid (multiples of 2^-10, |z| < 16) shifted by integers
// (|c| < 256) so that z + c is exact in float and double: the shifted row is
// mathematically the same softmax, and the results must match the
// reference of the unshifted row.
TYPED_TEST(Properties, ShiftInvariance) {
  using T = TypeParam;
  Rng rng(4);
  for (int c = 0; c < kCases; ++c) {
    const std::size_t k = random_k(rng);
    std::vector<T> z(k), zs(k);
    const T shift = static_cast<T>(static_cast<int>(rng.index(511)) - 255);
    for (std::size_t i = 0; i < k; ++i) {
      z[i] = static_cast<T>(std::ldexp(std::round(rng.uniform(-16, 16) * 1024), -10));
      zs[i] = z[i] + shift;
    }
    const auto p = random_distribution<T>(rng, k, 2, 0.2);
    const std::size_t t = rng.index(k);
    const RefRow zr = to_ref(z);
    SCOPED_TRACE(testing::Message() << "case " << c << ", K " << k << ", shift " << shift);

    std::vector<T> out(k);
    xent::softmax<T>(cs(zs), out);
    EXPECT_TRUE(near_ref<T>("softmax", out, xent::reference::softmax(zr)));
    xent::log_softmax<T>(cs(zs), out);
    EXPECT_TRUE(near_ref<T>("log_softmax", out, xent::reference::log_softmax(zr)));
    EXPECT_TRUE(near_ref<T>("logsumexp", xent::logsumexp<T>(cs(zs)),
                            xent::reference::logsumexp(zr) + shift));
    EXPECT_TRUE(near_ref<T>("cross_entropy_from_logits(index)",
                            xent::cross_entropy_from_logits<T>(t, cs(zs)),
                            xent::reference::cross_entropy_from_logits(t, zr)));
    EXPECT_TRUE(near_ref<T>("cross_entropy_from_logits(soft)",
                            xent::cross_entropy_from_logits<T>(cs(p), cs(zs)),
                            xent::reference::cross_entropy_from_logits(to_ref(p), zr)));
    xent::cross_entropy_grad<T>(t, cs(zs), out);
    EXPECT_TRUE(near_ref<T>("cross_entropy_grad(index)", out,
                            xent::reference::cross_entropy_grad(t, zr)));
    xent::cross_entropy_grad<T>(cs(p), cs(zs), out);
    EXPECT_TRUE(near_ref<T>("cross_entropy_grad(soft)", out,
                            xent::reference::cross_entropy_grad(to_ref(p), zr)));
    if (::testing::Test::HasFailure()) break;
  }
}

template <class V>
V permuted(const V& v, const std::vector<std::size_t>& perm) {
  V out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = v[perm[i]];
  return out;
}

// Permuting the classes permutes softmax, log_softmax and the gradients the
// same way and leaves every scalar unchanged: checked against the reference
// of the unpermuted row.
TYPED_TEST(Properties, PermutationEquivariance) {
  using T = TypeParam;
  Rng rng(5);
  for (int c = 0; c < kCases; ++c) {
    const std::size_t k = random_k(rng);
    const auto z = random_logits<T>(rng, k, rng.uniform(0.1, 20), 0, 0.1);
    const auto p = random_distribution<T>(rng, k, 2, 0.3);
    auto q = random_distribution<T>(rng, k, 2);
    std::vector<std::size_t> perm(k);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng.engine());
    const std::size_t t = rng.index(k);
    // The class that perm moves the target to.
    const std::size_t t_new = static_cast<std::size_t>(std::find(perm.begin(), perm.end(), t) -
                                                       perm.begin());
    const auto zp = permuted(z, perm), pp = permuted(p, perm), qp = permuted(q, perm);
    const RefRow zr = to_ref(z), pr = to_ref(p), qr = to_ref(q);
    SCOPED_TRACE(testing::Message() << "case " << c << ", K " << k);

    std::vector<T> out(k);
    EXPECT_TRUE(near_ref<T>("logsumexp", xent::logsumexp<T>(cs(zp)),
                            xent::reference::logsumexp(zr)));
    if (std::all_of(z.begin(), z.end(), [](T v) { return std::isinf(v); })) continue;
    xent::softmax<T>(cs(zp), out);
    EXPECT_TRUE(near_ref<T>("softmax", out, permuted(xent::reference::softmax(zr), perm)));
    xent::log_softmax<T>(cs(zp), out);
    EXPECT_TRUE(
        near_ref<T>("log_softmax", out, permuted(xent::reference::log_softmax(zr), perm)));
    EXPECT_TRUE(near_ref<T>("cross_entropy_from_logits(index)",
                            xent::cross_entropy_from_logits<T>(t_new, cs(zp)),
                            xent::reference::cross_entropy_from_logits(t, zr)));
    EXPECT_TRUE(near_ref<T>("cross_entropy_from_logits(soft)",
                            xent::cross_entropy_from_logits<T>(cs(pp), cs(zp)),
                            xent::reference::cross_entropy_from_logits(pr, zr)));
    xent::cross_entropy_grad<T>(t_new, cs(zp), out);
    EXPECT_TRUE(near_ref<T>("cross_entropy_grad(index)", out,
                            permuted(xent::reference::cross_entropy_grad(t, zr), perm)));
    xent::cross_entropy_grad<T>(cs(pp), cs(zp), out);
    EXPECT_TRUE(near_ref<T>("cross_entropy_grad(soft)", out,
                            permuted(xent::reference::cross_entropy_grad(pr, zr), perm)));
    EXPECT_TRUE(near_ref<T>("entropy", xent::entropy<T>(cs(pp)), xent::reference::entropy(pr)));
    EXPECT_TRUE(near_ref<T>("cross_entropy", xent::cross_entropy<T>(cs(pp), cs(qp)),
                            xent::reference::cross_entropy(pr, qr)));
    EXPECT_TRUE(near_ref<T>("kl_divergence", xent::kl_divergence<T>(cs(pp), cs(qp)),
                            kl_expected(pr, qr)));
    if (::testing::Test::HasFailure()) break;
  }
}

// Σ_i (q_i − p_i) = 1 − Σ p = 0 up to the rounding of each entry and the
// normalization residual of p. The rounding is bounded by the mass outside
// the argmax m, Σ_{i≠m} (q_i + p_i): entry m is q_m − p_m = ((1 − p_m) −
// p_m·rest)/S, of that size, and so is every other entry. For a confident row
// with a one-hot target on m, the bound shrinks with the gradient itself, so
// a gradient that rounds q_m to 1 and cancels fails here.
TYPED_TEST(Properties, GradientsSumToZero) {
  using T = TypeParam;
  Rng rng(6);
  auto check = [](const std::vector<T>& g, const std::vector<T>& z, const std::vector<T>& p,
                  int c) {
    const RefRow q = xent::reference::softmax(to_ref(z));
    const auto m = static_cast<std::size_t>(std::max_element(z.begin(), z.end()) - z.begin());
    LD sum = 0, outside = 0, p_sum = 0;
    for (std::size_t i = 0; i < g.size(); ++i) {
      sum += g[i];
      p_sum += p[i];
      if (i != m) outside += q[i] + p[i];
    }
    const LD bound = 4 * eps<T>() * outside + std::fabs(1 - p_sum) +
                     g.size() * LD(std::numeric_limits<T>::denorm_min());
    EXPECT_LE(std::fabs(sum), bound) << "case " << c << ", K " << g.size();
  };
  for (int c = 0; c < kCases; ++c) {
    const std::size_t k = random_k(rng);
    const auto z = random_logits<T>(rng, k, rng.uniform(0.1, 50), 0, 0.1);
    if (std::all_of(z.begin(), z.end(), [](T v) { return std::isinf(v); })) continue;
    // Every fourth p is one-hot on the argmax: a confident row, where q_m
    // rounds to 1 and q_m − p_m must still keep its digits.
    const auto argmax = static_cast<std::size_t>(std::max_element(z.begin(), z.end()) - z.begin());
    const auto p = c % 4 == 0 ? one_hot<T>(k, argmax) : random_distribution<T>(rng, k, 2, 0.3);
    std::vector<T> g(k);
    const std::size_t t = c % 2 == 0 ? argmax : rng.index(k);
    xent::cross_entropy_grad<T>(t, cs(z), g);
    check(g, z, one_hot<T>(k, t), c);
    xent::cross_entropy_grad<T>(cs(p), cs(z), g);
    check(g, z, p, c);
  }
}

// A one-hot soft target is the index target: the two gradients agree to the
// rounding of each entry (including the confident rows, where the target's
// q_t − 1 is tiny).
TYPED_TEST(Properties, OneHotSoftGradientIsIndexGradient) {
  using T = TypeParam;
  Rng rng(11);
  for (int c = 0; c < kCases; ++c) {
    const std::size_t k = random_k(rng);
    const auto z = random_logits<T>(rng, k, rng.uniform(0.1, 80), 0, 0.1);
    const std::size_t t = c % 2 == 0
        ? static_cast<std::size_t>(std::max_element(z.begin(), z.end()) - z.begin())
        : rng.index(k);
    if (std::isinf(z[t])) continue;
    std::vector<T> g_index(k), g_soft(k);
    xent::cross_entropy_grad<T>(t, cs(z), g_index);
    xent::cross_entropy_grad<T>(cs(one_hot<T>(k, t)), cs(z), g_soft);
    for (std::size_t i = 0; i < k; ++i)
      EXPECT_LE(std::fabs(LD(g_soft[i]) - LD(g_index[i])),
                4 * eps<T>() * std::fabs(LD(g_index[i])) +
                    LD(std::numeric_limits<T>::denorm_min()))
          << "case " << c << ", K " << k << ", class " << i << " of target " << t;
    if (::testing::Test::HasFailure()) break;
  }
}

TYPED_TEST(Properties, SoftmaxSumsToOne) {
  using T = TypeParam;
  Rng rng(7);
  for (int c = 0; c < kCases; ++c) {
    const std::size_t k = random_k(rng);
    const auto z = random_logits<T>(rng, k, rng.uniform(0.1, 50), 0, 0.1);
    std::vector<T> q(k);
    xent::softmax<T>(cs(z), q);
    LD sum = 0;
    for (T v : q) {
      EXPECT_GE(v, T(0));
      EXPECT_LE(v, T(1));
      sum += v;
    }
    EXPECT_LE(std::fabs(sum - 1), 2 * eps<T>()) << "case " << c << ", K " << k;
    // A softmax output is always a valid distribution for the other calls.
    EXPECT_NO_THROW(xent::entropy<T>(cs(q)));
  }
}

// bits = nats / ln 2, converted once: the two results agree to within their
// own two roundings.
TYPED_TEST(Properties, BitsAreNatsOverLn2) {
  using T = TypeParam;
  Rng rng(8);
  auto same = [](T nats, T bits, const char* what, int c) {
    const LD expect = LD(nats) / kLn2L;
    EXPECT_LE(std::fabs(LD(bits) - expect),
              2 * eps<T>() * std::fabs(expect) + 4 * LD(std::numeric_limits<T>::denorm_min()))
        << what << ", case " << c << ": nats " << nats << " bits " << bits;
  };
  for (int c = 0; c < kCases; ++c) {
    const std::size_t k = random_k(rng);
    const auto z = random_logits<T>(rng, k, rng.uniform(0.1, 20));
    const auto p = random_distribution<T>(rng, k, 2, 0.2);
    const auto q = random_distribution<T>(rng, k, 2);
    const std::size_t t = rng.index(k);
    same(xent::entropy<T>(cs(p)), xent::entropy<T>(cs(p), Unit::kBits), "entropy", c);
    same(xent::cross_entropy<T>(cs(p), cs(q)), xent::cross_entropy<T>(cs(p), cs(q), Unit::kBits),
         "cross_entropy", c);
    same(xent::kl_divergence<T>(cs(p), cs(q)), xent::kl_divergence<T>(cs(p), cs(q), Unit::kBits),
         "kl_divergence", c);
    same(xent::cross_entropy_from_logits<T>(cs(p), cs(z)),
         xent::cross_entropy_from_logits<T>(cs(p), cs(z), Unit::kBits), "ce soft", c);
    same(xent::cross_entropy_from_logits<T>(t, cs(z)),
         xent::cross_entropy_from_logits<T>(t, cs(z), Unit::kBits), "ce index", c);
    const T y = static_cast<T>(rng.uniform()), pr = static_cast<T>(rng.uniform(1e-6, 1));
    same(xent::binary_cross_entropy<T>(y, pr), xent::binary_cross_entropy<T>(y, pr, Unit::kBits),
         "bce", c);
    same(xent::binary_cross_entropy_with_logits<T>(y, z[0]),
         xent::binary_cross_entropy_with_logits<T>(y, z[0], Unit::kBits), "bce logits", c);
    EXPECT_EQ(xent::to_unit<T>(T(1), Unit::kNats), T(1));
  }
}

// perplexity = exp(H nats) = 2^(H bits), both equal to exp of the reference
// H up to the rounding of H itself (the relative error of exp(x) is that of
// x times x).
TYPED_TEST(Properties, PerplexityIsExpOfCrossEntropy) {
  using T = TypeParam;
  Rng rng(9);
  for (int c = 0; c < kCases; ++c) {
    const std::size_t k = random_k(rng);
    const auto p = random_distribution<T>(rng, k, 2, 0.2);
    const auto q = random_distribution<T>(rng, k, 2);
    const LD h_ref = xent::reference::cross_entropy(to_ref(p), to_ref(q));
    const T h_nats = xent::cross_entropy<T>(cs(p), cs(q));
    const T h_bits = xent::cross_entropy<T>(cs(p), cs(q), Unit::kBits);
    const T ppl_nats = xent::perplexity<T>(h_nats), ppl_bits = xent::perplexity<T>(h_bits, Unit::kBits);
    const LD expect = std::exp(h_ref);
    const LD tol = (4 + 4 * h_ref) * eps<T>() * expect;
    EXPECT_LE(std::fabs(ppl_nats - expect), tol) << "case " << c << ", H " << h_ref;
    EXPECT_LE(std::fabs(ppl_bits - expect), tol) << "case " << c << ", H " << h_ref;
    // A uniform q over K classes and a one-hot p: perplexity K exactly.
    if (c % 100 == 0) {
      const std::vector<T> u(k, T(1) / T(k));
      LD sum = 0;
      for (T v : u) sum += v;
      if (std::fabs(sum - 1) > xent::NormTolerance<T>(k)) continue;
      EXPECT_NEAR(xent::perplexity<T>(xent::cross_entropy<T>(cs(one_hot<T>(k, 0)), cs(u))),
                  T(k), 8 * eps<T>() * k);
    }
  }
}

// Label smoothing is a target transform whose loss decomposes by definition:
//   uniform:    H(p', q) = (1 − ε)·(−log q_t) + (ε/K)·Σ_i (−log q_i)
//   off-target: H(p', q) = (1 − ε)·(−log q_t) + ε/(K−1)·Σ_{i≠t} (−log q_i)
// and p' sums to 1 with the named on-target and off-target values.
TYPED_TEST(Properties, SmoothingConventionsMatchDefinitions) {
  using T = TypeParam;
  Rng rng(10);
  for (int c = 0; c < kCases; ++c) {
    const std::size_t k = 1 + rng.index(40);
    const std::size_t t = rng.index(k);
    const T e = static_cast<T>(rng.uniform());
    const LD el = e;
    const auto z = random_logits<T>(rng, k, rng.uniform(0.1, 10));
    const RefRow log_q = xent::reference::log_softmax(to_ref(z));
    LD all = 0, others = 0;
    for (std::size_t i = 0; i < k; ++i) {
      all -= log_q[i];
      if (i != t) others -= log_q[i];
    }
    std::vector<T> pu(k), po(k);
    xent::smooth_target<T>(t, e, xent::Smoothing::kUniform, std::span<T>(pu));
    xent::smooth_target<T>(t, e, xent::Smoothing::kOffTarget, std::span<T>(po));
    SCOPED_TRACE(testing::Message() << "case " << c << ", K " << k << ", eps " << e);
    // The named values.
    EXPECT_TRUE(near_ref<T>("smooth_target(index, uniform)", pu[t], 1 - el + el / k));
    if (k > 1) {
      EXPECT_TRUE(near_ref<T>("smooth_target(index, off-target)", po[t], 1 - el));
      EXPECT_TRUE(near_ref<T>("smooth_target(index, off-target)", po[(t + 1) % k], el / (k - 1)));
      EXPECT_TRUE(near_ref<T>("smooth_target(index, uniform)", pu[(t + 1) % k], el / k));
    } else {
      EXPECT_EQ(po[0], T(1));  // K = 1: no other class to spread ε over
    }
    // Valid distributions (entropy would throw otherwise), and the losses.
    const LD ce_t = -log_q[t];
    // (Keyed apart from the accuracy sweep: p' carries its own rounding.)
    EXPECT_TRUE(near_ref<T>("smoothed loss vs its definition",
                            xent::cross_entropy_from_logits<T>(cs(pu), cs(z)),
                            (1 - el) * ce_t + el / k * all, {3 * bar<T>().rel, bar<T>().abs}))
        << "uniform";
    const LD off_expect = k > 1 ? (1 - el) * ce_t + el / (k - 1) * others : ce_t;
    EXPECT_TRUE(near_ref<T>("smoothed loss vs its definition",
                            xent::cross_entropy_from_logits<T>(cs(po), cs(z)), off_expect,
                            {3 * bar<T>().rel, bar<T>().abs}))
        << "off-target";
    // The soft-target transform of a one-hot target is the index transform.
    std::vector<T> su(k), so(k);
    const auto oh = one_hot<T>(k, t);
    xent::smooth_target<T>(cs(oh), e, xent::Smoothing::kUniform, std::span<T>(su));
    xent::smooth_target<T>(cs(oh), e, xent::Smoothing::kOffTarget, std::span<T>(so));
    EXPECT_EQ(su, pu);
    EXPECT_EQ(so, po);
    if (::testing::Test::HasFailure()) break;
  }
}

}  // namespace
