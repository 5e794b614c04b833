// The SIMD kernels' own exp against the long-double exp: the loss accuracy
// rests on it (every e_j = exp(z_j − max) has x ≤ 0).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "cpu/kernels.h"

namespace xent::cpu {
namespace {

TEST(KernelExp, WithinTwoUlpOnTheWholeRange) {
  // Every float in [−86.6, 0] would be 1.1e9 values; a dense stride of
  // them, plus the ends and the values near −ln2/2 steps.
  std::vector<float> x;
  for (float v = 0.0f; v > -86.6f; v = std::nextafter(v, -100.0f) - 3.7e-5f * (1.0f - v)) x.push_back(v);
  x.push_back(-0.0f);
  x.push_back(-1e-30f);
  x.push_back(-86.59f);
  std::vector<float> y(x.size());
  ExpRowF32(x.data(), y.data(), x.size());
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const long double want = std::exp(static_cast<long double>(x[i]));
    const double ulp = std::nextafter(static_cast<float>(want), INFINITY) - static_cast<float>(want);
    const double err = std::fabs(static_cast<double>(y[i] - want)) / ulp;
    worst = std::max(worst, err);
    ASSERT_LE(err, 2.0) << "exp(" << x[i] << ") = " << y[i] << ", want " << static_cast<double>(want);
  }
  EXPECT_EQ(y[0], 1.0f);  // exp(0) is exact: the true-class gradient relies on it
  RecordProperty("max_ulp", std::to_string(worst));
  std::printf("kernel exp: %zu points, max error %.3f ulp\n", x.size(), worst);
}

TEST(KernelExp, UnderflowAndMasks) {
  const float x[] = {-87.0f, -100.0f, -1e30f, -INFINITY};
  float y[4];
  ExpRowF32(x, y, 4);
  // Below the normal range: 0 or the subnormal (both within 1e-37 of exp).
  EXPECT_LE(y[0], 2.4e-38f);
  EXPECT_LE(y[1], 2.4e-38f);
  EXPECT_GE(y[0], 0.0f);
  EXPECT_GE(y[1], 0.0f);
  EXPECT_EQ(y[2], 0.0f);  // masks are exactly 0
  EXPECT_EQ(y[3], 0.0f);
}

}  // namespace
}  // namespace xent::cpu
