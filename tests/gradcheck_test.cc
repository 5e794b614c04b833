// xent::gradcheck (xent/gradcheck.h): the analytic gradients of xent agree
// with central differences of the losses they differentiate (both the
// library's double functions and the long-double reference), over thousands
// of seeded random rows; and the checker itself measures what it claims
// (exact on polynomials, catches a wrong entry and names it, validates its
// arguments).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "reference/reference.h"
#include "test_util.h"
#include "xent/core.h"
#include "xent/gradcheck.h"

namespace {

using namespace xent_test;
using xent::ErrorCode;
using xent::GradcheckOptions;
using Fn = std::function<double(std::span<const double>)>;

// Bounds on the finite-difference error for losses of size ≲ 50 with O(1)
// higher derivatives: order 2 (h = 1e-6·max(1,|x|)): rounding ~eps·|f|/h ≈
// 1e-8, truncation h² ≈ 1e-12; order 4 (h = 1e-3): rounding ~1e-11,
// truncation h⁴ ≈ 1e-12.
constexpr double kOrder2Abs = 1e-7;
constexpr double kOrder4Abs = 1e-9;

struct Case {
  std::vector<double> z, p;
  std::size_t target;
};

Case random_case(Rng& rng) {
  const std::size_t k = 1 + rng.index(12);
  Case c{random_logits<double>(rng, k, rng.uniform(0.1, 8)), random_distribution<double>(rng, k, 2, 0.3),
         rng.index(k)};
  return c;
}

TEST(Gradcheck, CrossEntropyGradients) {
  Rng rng(1);
  double worst2 = 0, worst4 = 0;
  for (int c = 0; c < 1500; ++c) {
    const Case cs = random_case(rng);
    const std::size_t k = cs.z.size();
    std::vector<double> g_soft(k), g_index(k);
    xent::cross_entropy_grad<double>(std::span<const double>(cs.p), std::span<const double>(cs.z),
                                     g_soft);
    xent::cross_entropy_grad<double>(cs.target, std::span<const double>(cs.z), g_index);
    const Fn soft = [&](std::span<const double> x) {
      return xent::cross_entropy_from_logits<double>(std::span<const double>(cs.p), x);
    };
    const Fn index = [&](std::span<const double> x) {
      return xent::cross_entropy_from_logits<double>(cs.target, x);
    };
    // The reference (long double) as the function, too.
    const Fn soft_ref = [&](std::span<const double> x) {
      return double(xent::reference::cross_entropy_from_logits(to_ref(cs.p),
                                                               RefRow(x.begin(), x.end())));
    };
    const Fn index_ref = [&](std::span<const double> x) {
      return double(
          xent::reference::cross_entropy_from_logits(cs.target, RefRow(x.begin(), x.end())));
    };
    for (const auto& [f, g] : {std::pair{soft, &g_soft}, std::pair{index, &g_index},
                               std::pair{soft_ref, &g_soft}, std::pair{index_ref, &g_index}}) {
      const auto r2 = xent::gradcheck(f, cs.z, *g);
      const auto r4 = xent::gradcheck(f, cs.z, *g, GradcheckOptions{.order = 4});
      EXPECT_LE(r2.max_abs_error, kOrder2Abs) << "case " << c << ", K " << k;
      EXPECT_LE(r4.max_abs_error, kOrder4Abs) << "case " << c << ", K " << k;
      worst2 = std::max(worst2, r2.max_abs_error);
      worst4 = std::max(worst4, r4.max_abs_error);
    }
    if (::testing::Test::HasFailure()) break;
  }
  std::printf("[gradcheck] cross-entropy: worst max_abs_error order 2 %.3g, order 4 %.3g\n",
              worst2, worst4);
}

TEST(Gradcheck, BinaryCrossEntropyWithLogitsGradient) {
  Rng rng(2);
  double worst = 0;
  for (int c = 0; c < 1000; ++c) {
    const std::size_t k = 1 + rng.index(8);
    std::vector<double> y(k), z(k), g(k);
    for (std::size_t i = 0; i < k; ++i) {
      y[i] = rng.chance(0.3) ? double(rng.chance(0.5)) : rng.uniform();
      z[i] = rng.uniform(-30, 30);
    }
    xent::binary_cross_entropy_with_logits_grad<double>(std::span<const double>(y),
                                                        std::span<const double>(z), g);
    const Fn f = [&](std::span<const double> x) {
      return xent::binary_cross_entropy_with_logits<double>(std::span<const double>(y), x);
    };
    const auto r = xent::gradcheck(f, z, g, GradcheckOptions{.order = 4});
    EXPECT_LE(r.max_abs_error, kOrder4Abs) << "case " << c;
    worst = std::max(worst, r.max_abs_error);
  }
  std::printf("[gradcheck] BCE with logits: worst max_abs_error order 4 %.3g\n", worst);
}

TEST(Gradcheck, ExactOnPolynomials) {
  // f = Σ x_i³ + x_0 x_1: grad_i = 3 x_i² + (x_1, x_0, 0).
  const Fn f = [](std::span<const double> x) {
    double s = x[0] * x[1];
    for (double v : x) s += v * v * v;
    return s;
  };
  const std::vector<double> x = {1, -2, 3};
  const std::vector<double> g = {3 + -2.0, 12 + 1.0, 27};
  const auto r4 = xent::gradcheck(f, x, g, GradcheckOptions{.order = 4});
  EXPECT_LE(r4.max_abs_error, 1e-11);  // the 5-point stencil is exact on cubics
  const auto r2 = xent::gradcheck(f, x, g);
  EXPECT_LE(r2.max_abs_error, 1e-7);
  EXPECT_GT(r2.max_abs_error, 0);  // a real finite difference, not the gradient itself
  EXPECT_LE(r2.max_rel_error, 1e-8);
}

TEST(Gradcheck, CatchesAWrongGradientAndNamesIt) {
  const std::vector<double> z = {0.3, -1.2, 2.0, 0.7};
  std::vector<double> g(4);
  xent::cross_entropy_grad<double>(2, std::span<const double>(z), g);
  const Fn f = [](std::span<const double> x) {
    return xent::cross_entropy_from_logits<double>(2, x);
  };
  auto wrong = g;
  wrong[1] += 1e-3;
  const auto r = xent::gradcheck(f, z, wrong);
  EXPECT_NEAR(r.max_abs_error, 1e-3, 1e-7);
  EXPECT_EQ(r.worst_index, 1u);
  EXPECT_NEAR(r.max_rel_error, 1e-3 / std::fabs(wrong[1]), 1e-6);
  // The sign convention q − onehot, flipped, is caught everywhere.
  auto flipped = g;
  for (double& v : flipped) v = -v;
  EXPECT_GT(xent::gradcheck(f, z, flipped).max_rel_error, 1.9);
  // A step the caller chooses.
  const auto r_step = xent::gradcheck(f, z, g, GradcheckOptions{.order = 2, .step = 1e-4});
  EXPECT_LE(r_step.max_abs_error, 1e-8);
  EXPECT_GT(r_step.max_abs_error, 1e-13);  // truncation ~h² is visible at this h
}

TEST(Gradcheck, ArgumentErrors) {
  const Fn f = [](std::span<const double> x) { return x[0]; };
  const std::vector<double> x = {1, 2}, g1 = {1}, g2 = {1, 0}, none;
  EXPECT_TRUE(throws_error([&] { xent::gradcheck(f, none, none); }, ErrorCode::kEmpty,
                           {"gradcheck", "x"}));
  EXPECT_TRUE(throws_error([&] { xent::gradcheck(f, x, g1); }, ErrorCode::kShapeMismatch,
                           {"gradcheck", "2", "1"}));
  EXPECT_TRUE(throws_error([&] { xent::gradcheck(f, x, g2, GradcheckOptions{.order = 3}); },
                           ErrorCode::kInvalidArgument, {"order", "3"}));
  EXPECT_TRUE(throws_error([&] { xent::gradcheck(f, x, g2, GradcheckOptions{.step = -1}); },
                           ErrorCode::kInvalidArgument, {"step"}));
  EXPECT_TRUE(throws_error(
      [&] { xent::gradcheck(f, x, g2, GradcheckOptions{.step = std::nan("")}); },
      ErrorCode::kInvalidArgument, {"step"}));
  // f non-finite at a probe: named coordinate.
  const Fn blows_up = [](std::span<const double> x) { return x[1] > 2 ? std::log(-1.0) : x[1]; };
  EXPECT_TRUE(throws_error([&] { xent::gradcheck(blows_up, x, g2); }, ErrorCode::kNonFinite,
                           {"gradcheck", "x[1]"}));
}

}  // namespace
