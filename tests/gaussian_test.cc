// Closed forms for univariate Gaussians (xent/gaussian.h) against the
// long-double reference, the identity H(p,q) = h(p) + KL(p‖q), and the KL of
// nearly equal densities, which must keep its relative accuracy (not cancel
// to 0 or go negative) — checked against a long-double series oracle, since
// the reference's own log(σq/σp) + … − ½ cancels there too.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "reference/reference.h"
#include "test_util.h"
#include "xent/gaussian.h"

namespace {

using namespace xent_test;
using xent::Gaussian;
using xent::Unit;

// KL(p‖q) = ½ (r² − 1 − 2 log r) + (μp − μq)²/(2σq²), r = σp/σq = 1 + δ,
// in long double. Near r = 1, r² − 1 − 2 log r = δ² + Σ_{k≥2} 2(−1)^k δ^k/k
// (from r² − 1 = 2δ + δ² and the series of log(1 + δ)), summed without
// cancellation; δ = (σp − σq)/σq, where σp − σq is exact for close sigmas.
LD kl_oracle(Gaussian p, Gaussian q) {
  const LD sp = p.sigma, sq = q.sigma;
  const LD delta = (sp - sq) / sq;
  LD g;
  if (std::fabs(delta) < 0.01L) {
    g = delta * delta;
    LD power = delta * delta;  // δ^k, k = 2
    for (int k = 2; k < 40; ++k) {
      g += ((k % 2 == 0) ? 2 : -2) * power / k;
      power *= delta;
    }
  } else {
    const LD r = sp / sq;
    g = r * r - 1 - 2 * std::log(r);
  }
  const LD d = (LD(p.mu) - LD(q.mu)) / sq;
  return g / 2 + d * d / 2;
}

// The scale of the terms that the closed forms add (of either sign): the
// absolute error any evaluation in double can reach is ~eps times this.
LD ce_terms(Gaussian p, Gaussian q) {
  const LD r = LD(p.sigma) / q.sigma, d = (LD(p.mu) - q.mu) / q.sigma;
  return 0.5L * std::log(2 * std::numbers::pi_v<LD>) + std::fabs(std::log(LD(q.sigma))) +
         (r * r + d * d) / 2;
}

Gaussian random_gaussian(Rng& rng) {
  return {rng.uniform(-10, 10) * std::pow(10.0, rng.uniform(-3, 3)),
          std::pow(10.0, rng.uniform(-3, 3))};
}

TEST(Gaussian, AgainstReference) {
  Rng rng(1);
  for (int c = 0; c < 3000; ++c) {
    const Gaussian p = random_gaussian(rng);
    const Gaussian q = c % 3 == 0 ? Gaussian{p.mu + rng.normal() * p.sigma, p.sigma * rng.uniform(0.5, 2)}
                                  : random_gaussian(rng);
    SCOPED_TRACE(testing::Message() << "case " << c << ": p N(" << p.mu << ", " << p.sigma
                                    << "²), q N(" << q.mu << ", " << q.sigma << "²)");
    const LD h = xent::reference::gaussian_entropy(p.mu, p.sigma);
    EXPECT_TRUE(near_ref<double>("gaussian_entropy", xent::gaussian_entropy(p), h));
    EXPECT_TRUE(near_ref<double>("gaussian_entropy", xent::gaussian_entropy(p, Unit::kBits),
                                 h / kLn2L))
        << "bits";
    const LD ce = xent::reference::gaussian_cross_entropy(p.mu, p.sigma, q.mu, q.sigma);
    EXPECT_TRUE(near_ref<double>("gaussian_cross_entropy", xent::gaussian_cross_entropy(p, q),
                                 ce));
    // KL ≥ 0 and has no cancellation in the implementation; the oracle is
    // accurate everywhere (the reference's formula cancels near p = q).
    const double kl = xent::gaussian_kl_divergence(p, q);
    EXPECT_GE(kl, 0);
    EXPECT_TRUE(near_ref<double>("gaussian_kl_divergence", kl, kl_oracle(p, q),
                                 strict_rel<double>()));
    EXPECT_TRUE(near_ref<double>("gaussian_kl_divergence",
                                 xent::gaussian_kl_divergence(p, q, Unit::kBits),
                                 kl_oracle(p, q) / kLn2L, strict_rel<double>()))
        << "bits";
    // The oracle agrees with the reference where the reference can be
    // trusted: log(σq/σp) + (σp² + Δμ²)/(2σq²) − ½ has terms of size ce_terms.
    const LD kl_ref = xent::reference::gaussian_kl_divergence(p.mu, p.sigma, q.mu, q.sigma);
    EXPECT_LE(std::fabs(kl_oracle(p, q) - kl_ref), 1e-17L * ce_terms(p, q));
    if (::testing::Test::HasFailure()) break;
  }
}

TEST(Gaussian, CrossEntropyIsEntropyPlusKL) {
  Rng rng(2);
  for (int c = 0; c < 3000; ++c) {
    const Gaussian p = random_gaussian(rng), q = random_gaussian(rng);
    const double h = xent::gaussian_entropy(p), kl = xent::gaussian_kl_divergence(p, q);
    const double ce = xent::gaussian_cross_entropy(p, q);
    EXPECT_LE(std::fabs(LD(ce) - (LD(h) + LD(kl))), 3 * bar<double>().rel * (ce_terms(p, q) + std::fabs(LD(h))))
        << "case " << c;
  }
}

// σp/σq = 1 ± 10^-k for k = 1..15, at several absolute scales of σ, and
// mean shifts down to 1e-12 σ: KL ~ δ² down to ~1e-30, relative accuracy
// 1e-13 against the series oracle, never 0 or negative.
TEST(Gaussian, NearlyEqualDensities) {
  for (const double sigma_q : {1.0, 3.0, 1e-5, 7e3, 0.1}) {
    for (int k = 1; k <= 15; ++k) {
      for (const double sign : {1.0, -1.0}) {
        const Gaussian q{0.5, sigma_q};
        const Gaussian p{0.5, sigma_q * (1 + sign * std::pow(10.0, -k))};
        if (p.sigma == q.sigma) continue;
        const LD oracle = kl_oracle(p, q);
        const double kl = xent::gaussian_kl_divergence(p, q);
        EXPECT_GT(kl, 0) << "sigma_q " << sigma_q << ", ratio 1 ± 1e-" << k;
        EXPECT_TRUE(near_ref<double>("gaussian_kl_divergence", kl, oracle, strict_rel<double>()))
            << "sigma_q " << sigma_q << ", ratio 1 " << (sign > 0 ? "+" : "-") << " 1e-" << k;
        // Mean shift only.
        const Gaussian shifted{q.mu + sign * sigma_q * std::pow(10.0, -k), sigma_q};
        EXPECT_TRUE(near_ref<double>("gaussian_kl_divergence",
                                     xent::gaussian_kl_divergence(shifted, q),
                                     kl_oracle(shifted, q), strict_rel<double>()))
            << "sigma " << sigma_q << ", mean shift 1e-" << k << " sigma";
      }
    }
  }
  // The example of the issue: sigma ratio 1 + 1e-9, KL ≈ 1e-18.
  const Gaussian q{0, 1}, p{0, 1 + 1e-9};
  const LD oracle = kl_oracle(p, q);
  const double delta = p.sigma - 1;  // exact; 1 + 1e-9 rounds to 1 + 1.00000008e-9
  EXPECT_NEAR(double(oracle), delta * delta, 1e-26);  // KL = δ² − (2/3)δ³ + …
  EXPECT_TRUE(near_ref<double>("gaussian_kl_divergence", xent::gaussian_kl_divergence(p, q),
                               oracle, strict_rel<double>()));
  // Equal densities: exactly 0.
  EXPECT_EQ(xent::gaussian_kl_divergence(q, q), 0.0);
  EXPECT_EQ(xent::gaussian_kl_divergence(Gaussian{-3, 0.25}, Gaussian{-3, 0.25}), 0.0);
}

TEST(Gaussian, ClosedFormValues) {
  // h(N(0, 1)) = ½ log(2πe) = 1.4189385332046727...
  EXPECT_TRUE(near_ref<double>("gaussian_entropy", xent::gaussian_entropy({0, 1}),
                               0.5L * std::log(2 * std::numbers::pi_v<LD> * std::numbers::e_v<LD>),
                               strict_rel<double>()));
  // A narrow density has negative differential entropy.
  EXPECT_LT(xent::gaussian_entropy({0, 0.01}), 0);
  // h is independent of the mean.
  EXPECT_EQ(xent::gaussian_entropy({1e6, 2}), xent::gaussian_entropy({-4, 2}));
  // KL(N(0,1) ‖ N(1,1)) = ½; KL(N(0,1) ‖ N(0,2)) = log 2 + 1/8 − ½.
  EXPECT_TRUE(near_ref<double>("gaussian_kl_divergence",
                               xent::gaussian_kl_divergence({0, 1}, {1, 1}), 0.5L,
                               strict_rel<double>()));
  EXPECT_TRUE(near_ref<double>("gaussian_kl_divergence",
                               xent::gaussian_kl_divergence({0, 1}, {0, 2}),
                               std::log(2.0L) + 0.125L - 0.5L, strict_rel<double>()));
  // Extreme ratios: finite where the closed form is.
  EXPECT_TRUE(near_ref<double>(
      "gaussian_kl_divergence", xent::gaussian_kl_divergence({0, 1e-300}, {0, 1e300}),
      xent::reference::gaussian_kl_divergence(0, 1e-300, 0, 1e300), strict_rel<double>()));
}

}  // namespace
