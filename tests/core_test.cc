#include <gtest/gtest.h>

#include <vector>

#include "reference/reference.h"
#include "xent/core.h"

TEST(Core, SeedExample) {
  const std::vector<double> z = {2, 1.2, 0.3, -0.8, -2};
  const double loss = xent::cross_entropy_from_logits<double>(0, z);
  EXPECT_NEAR(loss, 0.5372, 1e-4);
  const xent::reference::Row zr(z.begin(), z.end());
  EXPECT_NEAR(loss, static_cast<double>(xent::reference::cross_entropy_from_logits(0, zr)), 1e-15);
}
