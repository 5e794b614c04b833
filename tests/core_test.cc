// Accuracy of every row function of xent/core.h and xent/smoothing.h, float32
// and float64, against the long-double reference over thousands of seeded
// random rows (logit scales from 1e-3 to 1e4, offsets up to 1e4, -inf masks,
// sparse and peaked distributions). The bars are in test_util.h; the worst
// error per function is printed as "[accuracy]" lines at the end of the run.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "reference/reference.h"
#include "row_checks.h"
#include "test_util.h"
#include "xent/core.h"
#include "xent/smoothing.h"

namespace {

using namespace xent_test;

template <class T>
class CoreAccuracy : public ::testing::Test {};
TYPED_TEST_SUITE(CoreAccuracy, RowTypes);

constexpr std::size_t kSizes[] = {1, 2, 3, 4, 7, 16, 33, 100, 257, 1000};
constexpr double kScales[] = {1e-3, 0.3, 1, 4, 20, 100, 1e4};
constexpr double kOffsets[] = {0, 50, -50, 1e3, -1e4};

TEST(Core, SeedExample) {
  // The worked example of the docs: logits [2, 1.2, 0.3, -0.8, -2], class 0.
  const std::vector<double> z = {2, 1.2, 0.3, -0.8, -2};
  const double loss = xent::cross_entropy_from_logits<double>(0, z);
  EXPECT_NEAR(loss, 0.5372, 1e-4);
  EXPECT_TRUE(near_ref<double>("cross_entropy_from_logits(index)", loss,
                               xent::reference::cross_entropy_from_logits(0, to_ref(z))));
}

TYPED_TEST(CoreAccuracy, LogitsRows) {
  using T = TypeParam;
  Rng rng(20261125);
  for (int c = 0; c < 2000; ++c) {
    const std::size_t k = kSizes[rng.index(std::size(kSizes))];
    const double scale = kScales[rng.index(std::size(kScales))];
    const double offset = kOffsets[rng.index(std::size(kOffsets))];
    const double mask = rng.chance(0.3) ? 0.3 : 0.0;
    const auto z = random_logits<T>(rng, k, scale, offset, mask);
    const auto argmax = static_cast<std::size_t>(std::max_element(z.begin(), z.end()) - z.begin());
    SCOPED_TRACE(testing::Message() << "case " << c << ", K " << k << ", scale " << scale
                                    << ", offset " << offset << ", mask " << mask);
    // The argmax (a confident row's tiny loss) and a random class (possibly
    // masked: +inf).
    check_logits_row<T>(z, {argmax, rng.index(k)});
    if (::testing::Test::HasFailure()) break;  // one case is enough to debug
  }
}

TYPED_TEST(CoreAccuracy, SoftTargets) {
  using T = TypeParam;
  Rng rng(777);
  for (int c = 0; c < 2000; ++c) {
    const std::size_t k = kSizes[rng.index(std::size(kSizes))];
    const double scale = kScales[rng.index(std::size(kScales))];
    const double offset = kOffsets[rng.index(std::size(kOffsets))];
    const double mask = rng.chance(0.2) ? 0.2 : 0.0;
    const auto z = random_logits<T>(rng, k, scale, offset, mask);
    std::vector<T> p;
    switch (c % 4) {
      case 0: p = random_distribution<T>(rng, k, 0.5); break;
      case 1: p = random_distribution<T>(rng, k, 4, 0.5); break;
      case 2: p = one_hot<T>(k, rng.index(k)); break;
      default: {
        // p = 0 exactly on the masked classes: 0·log 0 = 0, finite loss.
        std::vector<LD> w(k);
        for (std::size_t i = 0; i < k; ++i) w[i] = std::isinf(z[i]) ? 0 : rng.uniform(0.01, 1);
        p = normalize<T>(w);
      }
    }
    SCOPED_TRACE(testing::Message() << "case " << c << ", K " << k << ", scale " << scale);
    check_soft_target_row<T>(p, z);
    if (::testing::Test::HasFailure()) break;
  }
}

TYPED_TEST(CoreAccuracy, DistributionPairs) {
  using T = TypeParam;
  Rng rng(4242);
  for (int c = 0; c < 2000; ++c) {
    const std::size_t k = kSizes[rng.index(std::size(kSizes))];
    const double peak = rng.uniform(0, 6);
    const auto p = random_distribution<T>(rng, k, peak, rng.chance(0.3) ? 0.4 : 0.0);
    std::vector<T> q;
    switch (c % 4) {
      case 0: q = random_distribution<T>(rng, k, peak); break;
      case 1: q = p; break;  // KL = 0
      case 2: {
        // q a small relative perturbation of p: KL tiny but positive.
        std::vector<LD> w(k);
        for (std::size_t i = 0; i < k; ++i) w[i] = p[i] * (1 + 1e-3L * rng.normal());
        q = normalize<T>(w);
        break;
      }
      default: q = random_distribution<T>(rng, k, peak, 0.3);  // may be +inf
    }
    SCOPED_TRACE(testing::Message() << "case " << c << ", K " << k << ", peak " << peak);
    check_distribution_pair<T>(p, q);
    if (::testing::Test::HasFailure()) break;
  }
}

// A probability in [0, 1] drawn to hit the interesting places: exact 0 and
// 1, tiny, next to 1, and ordinary values.
template <class T>
T random_probability(Rng& rng) {
  switch (rng.index(6)) {
    case 0: return T(0);
    case 1: return T(1);
    case 2: return static_cast<T>(std::pow(10.0, -rng.uniform(1, 30)));
    case 3: return static_cast<T>(1 - std::pow(10.0, -rng.uniform(1, 7)));
    default: return static_cast<T>(rng.uniform());
  }
}

TYPED_TEST(CoreAccuracy, BinaryCrossEntropy) {
  using T = TypeParam;
  Rng rng(99);
  for (int c = 0; c < 3000; ++c) {
    const T y = random_probability<T>(rng), p = random_probability<T>(rng);
    const LD ref = xent::reference::binary_cross_entropy(y, p);
    EXPECT_TRUE(near_ref<T>("binary_cross_entropy", xent::binary_cross_entropy<T>(y, p), ref))
        << "y " << y << " p " << p;
    EXPECT_TRUE(near_ref<T>("binary_cross_entropy",
                            xent::binary_cross_entropy<T>(y, p, xent::Unit::kBits),
                            ref / kLn2L))
        << "y " << y << " p " << p << ", bits";
  }
  // Multi-label rows: the sum of the per-output BCEs.
  for (int c = 0; c < 300; ++c) {
    const std::size_t k = kSizes[rng.index(std::size(kSizes))];
    std::vector<T> y(k), p(k);
    LD ref = 0;
    for (std::size_t i = 0; i < k; ++i) {
      y[i] = rng.chance(0.5) ? T(rng.chance(0.5)) : static_cast<T>(rng.uniform());
      p[i] = static_cast<T>(rng.uniform(1e-6, 1 - 1e-6));
      ref += xent::reference::binary_cross_entropy(y[i], p[i]);
    }
    EXPECT_TRUE(near_ref<T>("binary_cross_entropy(row)",
                            xent::binary_cross_entropy<T>(std::span<const T>(y),
                                                          std::span<const T>(p)),
                            ref));
  }
}

TYPED_TEST(CoreAccuracy, BinaryCrossEntropyWithLogits) {
  using T = TypeParam;
  Rng rng(1234);
  for (int c = 0; c < 3000; ++c) {
    const T y = random_probability<T>(rng);
    const T z = static_cast<T>(kScales[rng.index(std::size(kScales))] * rng.normal());
    const LD ref = xent::reference::binary_cross_entropy_with_logits(y, z);
    EXPECT_TRUE(near_ref<T>("binary_cross_entropy_with_logits",
                            xent::binary_cross_entropy_with_logits<T>(y, z), ref))
        << "y " << y << " z " << z;
    EXPECT_TRUE(near_ref<T>("binary_cross_entropy_with_logits",
                            xent::binary_cross_entropy_with_logits<T>(y, z, xent::Unit::kBits),
                            ref / kLn2L))
        << "y " << y << " z " << z << ", bits";
    EXPECT_TRUE(near_ref<T>("binary_cross_entropy_with_logits_grad",
                            xent::binary_cross_entropy_with_logits_grad<T>(y, z),
                            xent::reference::binary_cross_entropy_with_logits_grad(y, z)))
        << "y " << y << " z " << z;
  }
  for (int c = 0; c < 300; ++c) {
    const std::size_t k = kSizes[rng.index(std::size(kSizes))];
    const double scale = kScales[rng.index(std::size(kScales))];
    std::vector<T> y(k), z(k), grad(k);
    LD ref = 0;
    RefRow ref_grad(k);
    for (std::size_t i = 0; i < k; ++i) {
      y[i] = random_probability<T>(rng);
      z[i] = static_cast<T>(scale * rng.normal());
      ref += xent::reference::binary_cross_entropy_with_logits(y[i], z[i]);
      ref_grad[i] = xent::reference::binary_cross_entropy_with_logits_grad(y[i], z[i]);
    }
    const std::span<const T> ys(y), zs(z);
    EXPECT_TRUE(near_ref<T>("binary_cross_entropy_with_logits(row)",
                            xent::binary_cross_entropy_with_logits<T>(ys, zs), ref));
    xent::binary_cross_entropy_with_logits_grad<T>(ys, zs, grad);
    EXPECT_TRUE(near_ref<T>("binary_cross_entropy_with_logits_grad(row)", grad, ref_grad));
  }
}

TYPED_TEST(CoreAccuracy, Perplexity) {
  using T = TypeParam;
  Rng rng(5);
  // Up to where exp overflows T, and past it (→ +inf).
  const double h_max = std::is_same_v<T, float> ? 95 : 720;
  for (int c = 0; c < 2000; ++c) {
    const T h = static_cast<T>(c % 10 == 0 ? rng.uniform(0, 1e-6) : rng.uniform(0, h_max));
    EXPECT_TRUE(near_ref<T>("perplexity", xent::perplexity<T>(h), std::exp(static_cast<LD>(h))))
        << "H " << h << " nats";
    EXPECT_TRUE(near_ref<T>("perplexity", xent::perplexity<T>(h, xent::Unit::kBits),
                            std::exp2(static_cast<LD>(h))))
        << "H " << h << " bits";
  }
}

TYPED_TEST(CoreAccuracy, SmoothOneHot) {
  using T = TypeParam;
  Rng rng(31);
  for (int c = 0; c < 1000; ++c) {
    const std::size_t k = kSizes[rng.index(std::size(kSizes))];
    const std::size_t t = rng.index(k);
    const T eps = c % 10 == 0 ? T(c % 20 == 0) : static_cast<T>(rng.uniform());
    std::vector<T> out(k);
    xent::smooth_target<T>(t, eps, xent::Smoothing::kUniform, std::span<T>(out));
    EXPECT_TRUE(near_ref<T>("smooth_target(index, uniform)", out,
                            xent::reference::smooth_uniform(t, k, eps)));
    xent::smooth_target<T>(t, eps, xent::Smoothing::kOffTarget, std::span<T>(out));
    EXPECT_TRUE(near_ref<T>("smooth_target(index, off-target)", out,
                            xent::reference::smooth_off_target(t, k, eps)));
  }
}

TYPED_TEST(CoreAccuracy, SmoothSoftTarget) {
  using T = TypeParam;
  Rng rng(32);
  for (int c = 0; c < 1000; ++c) {
    const std::size_t k = kSizes[rng.index(std::size(kSizes))];
    const auto p = random_distribution<T>(rng, k, 2, 0.3);
    const T eps = static_cast<T>(rng.uniform());
    const LD e = eps;
    // The definitions of smoothing.h, in long double.
    RefRow uniform(k), off(k);
    for (std::size_t i = 0; i < k; ++i) {
      uniform[i] = (1 - e) * p[i] + e / k;
      off[i] = k == 1 ? LD(p[i]) : (1 - e) * p[i] + e * (1 - LD(p[i])) / (k - 1);
    }
    std::vector<T> out(k);
    xent::smooth_target<T>(std::span<const T>(p), eps, xent::Smoothing::kUniform, out);
    EXPECT_TRUE(near_ref<T>("smooth_target(soft, uniform)", out, uniform));
    xent::smooth_target<T>(std::span<const T>(p), eps, xent::Smoothing::kOffTarget, out);
    EXPECT_TRUE(near_ref<T>("smooth_target(soft, off-target)", out, off));
  }
}

// Outputs may alias inputs (core.h, smoothing.h): in place gives exactly the
// out-of-place result.
TYPED_TEST(CoreAccuracy, OutputsMayAliasInputs) {
  using T = TypeParam;
  Rng rng(33);
  for (int c = 0; c < 300; ++c) {
    const std::size_t k = kSizes[rng.index(std::size(kSizes))];
    const auto z = random_logits<T>(rng, k, 5, 0, 0.1);
    const auto p = random_distribution<T>(rng, k, 2, 0.3);
    const std::size_t t = rng.index(k);
    const std::span<const T> zs(z), ps(p);
    std::vector<T> expect(k), inplace;
    using Fill = void (*)(std::span<const T>, std::span<T>);
    for (const Fill f : {Fill(&xent::softmax<T>), Fill(&xent::log_softmax<T>)}) {
      f(zs, expect);
      inplace = z;
      f(std::span<const T>(inplace), std::span<T>(inplace));
      EXPECT_EQ(inplace, expect) << "case " << c;
    }
    xent::cross_entropy_grad<T>(t, zs, expect);
    inplace = z;
    xent::cross_entropy_grad<T>(t, std::span<const T>(inplace), std::span<T>(inplace));
    EXPECT_EQ(inplace, expect) << "case " << c;
    xent::cross_entropy_grad<T>(ps, zs, expect);
    inplace = z;
    xent::cross_entropy_grad<T>(ps, std::span<const T>(inplace), std::span<T>(inplace));
    EXPECT_EQ(inplace, expect) << "case " << c;
    const T eps = static_cast<T>(rng.uniform());
    for (const auto mode : {xent::Smoothing::kUniform, xent::Smoothing::kOffTarget}) {
      xent::smooth_target<T>(ps, eps, mode, std::span<T>(expect));
      inplace = p;
      xent::smooth_target<T>(std::span<const T>(inplace), eps, mode, std::span<T>(inplace));
      EXPECT_EQ(inplace, expect) << "case " << c << ", " << xent::SmoothingName(mode);
    }
  }
}

}  // namespace
