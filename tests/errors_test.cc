// Bad input is an xent::Error with the documented code and a message that
// names the function, the argument, the position and the value (error.h,
// core.h): NaN / +inf → kNonFinite, negative or non-normalized distributions
// → kNotDistribution, K = 0 → kEmpty, length mismatch → kShapeMismatch,
// out-of-range target → kTargetOutOfRange, all -inf logits → kUndefined,
// bad ε / σ / perplexity argument → kInvalidArgument.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "test_util.h"
#include "xent/core.h"
#include "xent/gaussian.h"
#include "xent/smoothing.h"

namespace {

using namespace xent_test;
using xent::ErrorCode;

template <class T>
class Errors : public ::testing::Test {};
TYPED_TEST_SUITE(Errors, RowTypes);

template <class T>
std::span<const T> cs(const std::vector<T>& v) {
  return std::span<const T>(v);
}

template <class T>
constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();
template <class T>
constexpr T kInf = std::numeric_limits<T>::infinity();

TEST(ErrorType, IsInvalidArgumentWithCodeNames) {
  static_assert(std::is_base_of_v<std::invalid_argument, xent::Error>);
  const xent::Error e(ErrorCode::kEmpty, "x");
  EXPECT_EQ(e.code(), ErrorCode::kEmpty);
  EXPECT_STREQ(e.what(), "x");
  EXPECT_STREQ(xent::ErrorCodeName(ErrorCode::kEmpty), "empty");
  EXPECT_STREQ(xent::ErrorCodeName(ErrorCode::kShapeMismatch), "shape_mismatch");
  EXPECT_STREQ(xent::ErrorCodeName(ErrorCode::kNonFinite), "non_finite");
  EXPECT_STREQ(xent::ErrorCodeName(ErrorCode::kNotDistribution), "not_distribution");
  EXPECT_STREQ(xent::ErrorCodeName(ErrorCode::kTargetOutOfRange), "target_out_of_range");
  EXPECT_STREQ(xent::ErrorCodeName(ErrorCode::kInvalidArgument), "invalid_argument");
  EXPECT_STREQ(xent::ErrorCodeName(ErrorCode::kUndefined), "undefined");
}

// NaN anywhere in logits, or +inf, names the function, "logits[i]" and the
// value, for every function that takes logits.
TYPED_TEST(Errors, NonFiniteLogits) {
  using T = TypeParam;
  for (const T bad : {kNaN<T>, kInf<T>}) {
    const char* value = std::isnan(bad) ? "nan" : "inf";
    std::vector<T> z = {T(1), T(2), T(0.5), bad, T(-1)}, out(5);
    const auto p = normalize<T>({1, 1, 1, 1, 1});
    const std::vector<std::string> where = {"logits[3]", value};
    auto with = [&](const char* fn) {
      std::vector<std::string> parts = where;
      parts.push_back(fn);
      return parts;
    };
    EXPECT_TRUE(throws_error([&] { xent::logsumexp<T>(cs(z)); }, ErrorCode::kNonFinite,
                             with("logsumexp")));
    EXPECT_TRUE(throws_error([&] { xent::softmax<T>(cs(z), out); }, ErrorCode::kNonFinite,
                             with("softmax")));
    EXPECT_TRUE(throws_error([&] { xent::log_softmax<T>(cs(z), out); }, ErrorCode::kNonFinite,
                             with("log_softmax")));
    EXPECT_TRUE(throws_error([&] { xent::cross_entropy_from_logits<T>(0, cs(z)); },
                             ErrorCode::kNonFinite, with("cross_entropy_from_logits")));
    EXPECT_TRUE(throws_error([&] { xent::cross_entropy_from_logits<T>(cs(p), cs(z)); },
                             ErrorCode::kNonFinite, with("cross_entropy_from_logits")));
    EXPECT_TRUE(throws_error([&] { xent::cross_entropy_grad<T>(1, cs(z), out); },
                             ErrorCode::kNonFinite, with("cross_entropy_grad")));
    EXPECT_TRUE(throws_error([&] { xent::cross_entropy_grad<T>(cs(p), cs(z), out); },
                             ErrorCode::kNonFinite, with("cross_entropy_grad")));
    // The error comes before anything is written.
    std::vector<T> untouched = {T(7), T(7), T(7), T(7), T(7)};
    EXPECT_THROW(xent::softmax<T>(cs(z), untouched), xent::Error);
    EXPECT_EQ(untouched, std::vector<T>(5, T(7)));
  }
  // -inf is a mask, not an error.
  const std::vector<T> masked = {T(1), -kInf<T>};
  EXPECT_NO_THROW(xent::logsumexp<T>(cs(masked)));
}

TYPED_TEST(Errors, NonFiniteProbabilities) {
  using T = TypeParam;
  const std::vector<T> good = {T(0.25), T(0.75)};
  const std::vector<T> nan_p = {T(0.25), kNaN<T>};
  const std::vector<T> z = {T(0), T(1)};
  EXPECT_TRUE(throws_error([&] { xent::entropy<T>(cs(nan_p)); }, ErrorCode::kNonFinite,
                           {"entropy", "p[1]", "nan"}));
  EXPECT_TRUE(throws_error([&] { xent::cross_entropy<T>(cs(good), cs(nan_p)); },
                           ErrorCode::kNonFinite, {"cross_entropy", "q[1]", "nan"}));
  EXPECT_TRUE(throws_error([&] { xent::kl_divergence<T>(cs(nan_p), cs(good)); },
                           ErrorCode::kNonFinite, {"kl_divergence", "p[1]", "nan"}));
  EXPECT_TRUE(throws_error([&] { xent::cross_entropy_from_logits<T>(cs(nan_p), cs(z)); },
                           ErrorCode::kNonFinite, {"p[1]"}));
  EXPECT_TRUE(throws_error([&] { xent::binary_cross_entropy<T>(kNaN<T>, T(0.5)); },
                           ErrorCode::kNonFinite, {"binary_cross_entropy", "y"}));
  EXPECT_TRUE(throws_error([&] { xent::binary_cross_entropy<T>(T(0.5), kNaN<T>); },
                           ErrorCode::kNonFinite, {"binary_cross_entropy", "p"}));
  EXPECT_TRUE(throws_error([&] { xent::binary_cross_entropy_with_logits<T>(T(0.5), kNaN<T>); },
                           ErrorCode::kNonFinite, {"binary_cross_entropy_with_logits", "z"}));
  EXPECT_TRUE(throws_error(
      [&] { xent::binary_cross_entropy_with_logits_grad<T>(T(0.5), kNaN<T>); },
      ErrorCode::kNonFinite, {"binary_cross_entropy_with_logits_grad", "z"}));
  const std::vector<T> zs = {T(0), kNaN<T>, T(1)}, ys = {T(0), T(1), T(1)};
  std::vector<T> g(3);
  EXPECT_TRUE(throws_error([&] { xent::binary_cross_entropy_with_logits<T>(cs(ys), cs(zs)); },
                           ErrorCode::kNonFinite, {"z[1]"}));
  EXPECT_TRUE(throws_error(
      [&] { xent::binary_cross_entropy_with_logits_grad<T>(cs(ys), cs(zs), g); },
      ErrorCode::kNonFinite, {"z[1]"}));
  EXPECT_TRUE(throws_error([&] { xent::perplexity<T>(kNaN<T>); }, ErrorCode::kNonFinite,
                           {"perplexity"}));
}

TYPED_TEST(Errors, NotADistribution) {
  using T = TypeParam;
  const std::vector<T> good = {T(0.5), T(0.5), T(0)};
  const std::vector<T> negative = {T(0.75), T(-0.25), T(0.5)};
  const std::vector<T> above_one = {T(0), T(1.5), T(-0.5)};
  const std::vector<T> low = {T(0.5), T(0.25), T(0)};  // sums to 0.75
  const std::vector<T> z = {T(0), T(1), T(2)};
  EXPECT_TRUE(throws_error([&] { xent::entropy<T>(cs(negative)); },
                           ErrorCode::kNotDistribution, {"entropy", "p[1]", "-0.25"}));
  EXPECT_TRUE(throws_error([&] { xent::entropy<T>(cs(above_one)); },
                           ErrorCode::kNotDistribution, {"p[1]", "1.5"}));
  EXPECT_TRUE(throws_error([&] { xent::entropy<T>(cs(low)); }, ErrorCode::kNotDistribution,
                           {"entropy", "sums to", "0.75"}));
  EXPECT_TRUE(throws_error([&] { xent::cross_entropy<T>(cs(good), cs(low)); },
                           ErrorCode::kNotDistribution, {"cross_entropy", "q", "0.75"}));
  EXPECT_TRUE(throws_error([&] { xent::kl_divergence<T>(cs(negative), cs(good)); },
                           ErrorCode::kNotDistribution, {"kl_divergence", "p[1]"}));
  EXPECT_TRUE(throws_error([&] { xent::kl_divergence<T>(cs(good), cs(low)); },
                           ErrorCode::kNotDistribution, {"kl_divergence", "q"}));
  EXPECT_TRUE(throws_error([&] { xent::cross_entropy_from_logits<T>(cs(low), cs(z)); },
                           ErrorCode::kNotDistribution, {"cross_entropy_from_logits", "p"}));
  std::vector<T> g(3);
  EXPECT_TRUE(throws_error([&] { xent::cross_entropy_grad<T>(cs(negative), cs(z), g); },
                           ErrorCode::kNotDistribution, {"cross_entropy_grad", "p[1]"}));
  EXPECT_TRUE(throws_error(
      [&] {
        std::vector<T> out(3);
        xent::smooth_target<T>(cs(low), T(0.1), xent::Smoothing::kUniform, std::span<T>(out));
      },
      ErrorCode::kNotDistribution, {"smooth_target", "p"}));
  // Nothing is renormalized silently: just outside the tolerance fails,
  // just inside passes.
  const T tol = xent::NormTolerance<T>(2);
  const std::vector<T> outside = {T(0.5), T(0.5) + 2 * tol}, inside = {T(0.5), T(0.5) + tol / 2};
  EXPECT_TRUE(throws_error([&] { xent::entropy<T>(cs(outside)); }, ErrorCode::kNotDistribution));
  EXPECT_NO_THROW(xent::entropy<T>(cs(inside)));
  // BCE: y and p in [0, 1].
  EXPECT_TRUE(throws_error([&] { xent::binary_cross_entropy<T>(T(1.5), T(0.5)); },
                           ErrorCode::kNotDistribution, {"binary_cross_entropy", "y", "1.5"}));
  EXPECT_TRUE(throws_error([&] { xent::binary_cross_entropy<T>(T(0.5), T(-0.5)); },
                           ErrorCode::kNotDistribution, {"p", "-0.5"}));
  EXPECT_TRUE(throws_error([&] { xent::binary_cross_entropy_with_logits<T>(T(-0.1), T(0)); },
                           ErrorCode::kNotDistribution, {"y"}));
  const std::vector<T> y_row = {T(0), T(2)}, p_row = {T(0.5), T(0.5)};
  EXPECT_TRUE(throws_error([&] { xent::binary_cross_entropy<T>(cs(y_row), cs(p_row)); },
                           ErrorCode::kNotDistribution, {"y[1]", "2"}));
}

TYPED_TEST(Errors, EmptyRows) {
  using T = TypeParam;
  const std::vector<T> none;
  std::vector<T> out;
  auto empty = [](auto&& f) { return throws_error(f, ErrorCode::kEmpty, {"K = 0"}); };
  EXPECT_TRUE(empty([&] { xent::logsumexp<T>(cs(none)); }));
  EXPECT_TRUE(empty([&] { xent::softmax<T>(cs(none), out); }));
  EXPECT_TRUE(empty([&] { xent::log_softmax<T>(cs(none), out); }));
  EXPECT_TRUE(empty([&] { xent::entropy<T>(cs(none)); }));
  EXPECT_TRUE(empty([&] { xent::cross_entropy<T>(cs(none), cs(none)); }));
  EXPECT_TRUE(empty([&] { xent::kl_divergence<T>(cs(none), cs(none)); }));
  EXPECT_TRUE(empty([&] { xent::cross_entropy_from_logits<T>(cs(none), cs(none)); }));
  EXPECT_TRUE(empty([&] { xent::cross_entropy_from_logits<T>(0, cs(none)); }));
  EXPECT_TRUE(empty([&] { xent::cross_entropy_grad<T>(cs(none), cs(none), out); }));
  EXPECT_TRUE(empty([&] { xent::cross_entropy_grad<T>(0, cs(none), out); }));
  EXPECT_TRUE(empty([&] { xent::binary_cross_entropy<T>(cs(none), cs(none)); }));
  EXPECT_TRUE(empty([&] { xent::binary_cross_entropy_with_logits<T>(cs(none), cs(none)); }));
  EXPECT_TRUE(
      empty([&] { xent::binary_cross_entropy_with_logits_grad<T>(cs(none), cs(none), out); }));
  EXPECT_TRUE(empty(
      [&] { xent::smooth_target<T>(0, T(0.1), xent::Smoothing::kUniform, std::span<T>(out)); }));
  EXPECT_TRUE(empty([&] {
    xent::smooth_target<T>(cs(none), T(0.1), xent::Smoothing::kUniform, std::span<T>(out));
  }));
}

TYPED_TEST(Errors, ShapeMismatch) {
  using T = TypeParam;
  const std::vector<T> p3 = {T(0.25), T(0.25), T(0.5)}, p2 = {T(0.5), T(0.5)};
  const std::vector<T> z3 = {T(0), T(1), T(2)};
  std::vector<T> out2(2), out3(3);
  auto mismatch = [](auto&& f, std::vector<std::string> parts) {
    parts.push_back("3");
    parts.push_back("2");
    return throws_error(f, ErrorCode::kShapeMismatch, parts);
  };
  EXPECT_TRUE(mismatch([&] { xent::softmax<T>(cs(z3), out2); }, {"softmax", "out"}));
  EXPECT_TRUE(mismatch([&] { xent::log_softmax<T>(cs(z3), out2); }, {"log_softmax", "out"}));
  EXPECT_TRUE(mismatch([&] { xent::cross_entropy<T>(cs(p3), cs(p2)); }, {"cross_entropy"}));
  EXPECT_TRUE(mismatch([&] { xent::kl_divergence<T>(cs(p3), cs(p2)); }, {"kl_divergence"}));
  EXPECT_TRUE(mismatch([&] { xent::cross_entropy_from_logits<T>(cs(p2), cs(z3)); },
                       {"cross_entropy_from_logits", "logits"}));
  EXPECT_TRUE(mismatch([&] { xent::cross_entropy_grad<T>(cs(p2), cs(z3), out3); },
                       {"cross_entropy_grad", "p"}));
  EXPECT_TRUE(mismatch([&] { xent::cross_entropy_grad<T>(cs(p3), cs(z3), out2); },
                       {"cross_entropy_grad", "grad"}));
  EXPECT_TRUE(mismatch([&] { xent::cross_entropy_grad<T>(0, cs(z3), out2); },
                       {"cross_entropy_grad", "grad"}));
  EXPECT_TRUE(mismatch([&] { xent::binary_cross_entropy<T>(cs(p3), cs(p2)); },
                       {"binary_cross_entropy"}));
  EXPECT_TRUE(mismatch([&] { xent::binary_cross_entropy_with_logits<T>(cs(p3), cs(p2)); },
                       {"binary_cross_entropy_with_logits"}));
  EXPECT_TRUE(mismatch(
      [&] { xent::binary_cross_entropy_with_logits_grad<T>(cs(p3), cs(z3), out2); }, {"grad"}));
  EXPECT_TRUE(mismatch([&] {
    xent::smooth_target<T>(cs(p3), T(0.1), xent::Smoothing::kOffTarget, std::span<T>(out2));
  }, {"smooth_target"}));
}

TYPED_TEST(Errors, TargetOutOfRange) {
  using T = TypeParam;
  const std::vector<T> z = {T(0), T(1), T(2)};
  std::vector<T> out(3);
  for (const std::size_t t : {std::size_t{3}, std::size_t{1000}, std::size_t(-1)}) {
    const std::string ts = std::to_string(t);
    EXPECT_TRUE(throws_error([&] { xent::cross_entropy_from_logits<T>(t, cs(z)); },
                             ErrorCode::kTargetOutOfRange,
                             {"cross_entropy_from_logits", ts, "[0, 3)"}));
    EXPECT_TRUE(throws_error([&] { xent::cross_entropy_grad<T>(t, cs(z), out); },
                             ErrorCode::kTargetOutOfRange, {"cross_entropy_grad", ts, "[0, 3)"}));
    EXPECT_TRUE(throws_error(
        [&] { xent::smooth_target<T>(t, T(0.1), xent::Smoothing::kUniform, std::span<T>(out)); },
        ErrorCode::kTargetOutOfRange, {"smooth_target", ts, "[0, 3)"}));
  }
}

// All -inf: logsumexp is -inf (log 0); everything that needs the softmax
// (0/0) throws kUndefined.
TYPED_TEST(Errors, AllMinusInfinityIsUndefined) {
  using T = TypeParam;
  const std::vector<T> z(4, -kInf<T>);
  const auto p = normalize<T>({1, 1, 1, 1});
  std::vector<T> out(4);
  EXPECT_EQ(xent::logsumexp<T>(cs(z)), -kInf<T>);
  auto undefined = [](auto&& f, const char* fn) {
    return throws_error(f, ErrorCode::kUndefined, {fn, "-inf"});
  };
  EXPECT_TRUE(undefined([&] { xent::softmax<T>(cs(z), out); }, "softmax"));
  EXPECT_TRUE(undefined([&] { xent::log_softmax<T>(cs(z), out); }, "log_softmax"));
  EXPECT_TRUE(undefined([&] { xent::cross_entropy_from_logits<T>(1, cs(z)); },
                        "cross_entropy_from_logits"));
  EXPECT_TRUE(undefined([&] { xent::cross_entropy_from_logits<T>(cs(p), cs(z)); },
                        "cross_entropy_from_logits"));
  EXPECT_TRUE(undefined([&] { xent::cross_entropy_grad<T>(1, cs(z), out); }, "cross_entropy_grad"));
  EXPECT_TRUE(
      undefined([&] { xent::cross_entropy_grad<T>(cs(p), cs(z), out); }, "cross_entropy_grad"));
}

TYPED_TEST(Errors, InvalidArguments) {
  using T = TypeParam;
  std::vector<T> out(3);
  const std::vector<T> p = {T(0.25), T(0.25), T(0.5)};
  for (const T eps : {T(-0.1), T(1.5), kNaN<T>, kInf<T>})
    for (const auto mode : {xent::Smoothing::kUniform, xent::Smoothing::kOffTarget}) {
      EXPECT_TRUE(throws_error([&] { xent::smooth_target<T>(0, eps, mode, std::span<T>(out)); },
                               ErrorCode::kInvalidArgument, {"smooth_target", "epsilon"}));
      EXPECT_TRUE(throws_error(
          [&] { xent::smooth_target<T>(cs(p), eps, mode, std::span<T>(out)); },
          ErrorCode::kInvalidArgument, {"smooth_target", "epsilon"}));
    }
  EXPECT_TRUE(throws_error([&] { xent::perplexity<T>(T(-0.5)); }, ErrorCode::kInvalidArgument,
                           {"perplexity", "-0.5"}));
  EXPECT_EQ(xent::perplexity<T>(T(0)), T(1));
  EXPECT_STREQ(xent::SmoothingName(xent::Smoothing::kUniform), "uniform");
  EXPECT_STREQ(xent::SmoothingName(xent::Smoothing::kOffTarget), "off-target");
}

TEST(Errors, GaussianParameters) {
  using xent::Gaussian;
  const Gaussian ok{0, 1};
  for (const double sigma : {0.0, -1.0, std::nan(""), kInf<double>}) {
    const Gaussian bad{0, sigma};
    EXPECT_TRUE(throws_error([&] { xent::gaussian_entropy(bad); }, ErrorCode::kInvalidArgument,
                             {"gaussian_entropy", "sigma"}));
    EXPECT_TRUE(throws_error([&] { xent::gaussian_cross_entropy(ok, bad); },
                             ErrorCode::kInvalidArgument, {"gaussian_cross_entropy", "q.sigma"}));
    EXPECT_TRUE(throws_error([&] { xent::gaussian_kl_divergence(bad, ok); },
                             ErrorCode::kInvalidArgument, {"gaussian_kl_divergence", "p.sigma"}));
  }
  for (const double mu : {std::nan(""), kInf<double>, -kInf<double>}) {
    const Gaussian bad{mu, 1};
    EXPECT_TRUE(throws_error([&] { xent::gaussian_entropy(bad); }, ErrorCode::kNonFinite,
                             {"gaussian_entropy", "mu"}));
    EXPECT_TRUE(throws_error([&] { xent::gaussian_kl_divergence(ok, bad); },
                             ErrorCode::kNonFinite, {"q.mu"}));
    EXPECT_TRUE(throws_error([&] { xent::gaussian_cross_entropy(bad, ok); },
                             ErrorCode::kNonFinite, {"p.mu"}));
  }
}

}  // namespace
