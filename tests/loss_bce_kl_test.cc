// binary_cross_entropy_with_logits_loss and kl_div_loss against the
// long-double reference: weights (per class and per element), pos_weight,
// reductions, dtypes, in place, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "loss_test_util.h"
#include "xent/error.h"

namespace xent::test {
namespace {

Buffer random_uniform(DType dt, std::int64_t n, std::int64_t c, double lo, double hi, unsigned seed) {
  Buffer b(dt, n, c);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t j = 0; j < c; ++j) b.set(r, j, u(rng));
  return b;
}

void check_bce(DType dt, Reduction red, int weight_kind, bool pos, bool inplace) {
  SCOPED_TRACE(std::string(DTypeName(dt)) + " " + ReductionName(red) + " w" +
               std::to_string(weight_kind) + " pos" + std::to_string(pos) + " inplace" +
               std::to_string(inplace));
  const std::int64_t N = 7, C = 33;
  Buffer x = random_logits(dt, N, C, 4.0, 3);
  x.set(0, 0, 30.0);
  x.set(0, 1, -30.0);
  Buffer y = random_uniform(dt, N, C, 0.0, 1.0, 4);
  y.set(0, 0, 0.0);
  y.set(0, 1, 1.0);
  Buffer w;
  BceOptions o;
  o.reduction = red;
  if (weight_kind == 1) w = random_uniform(DType::kF32, 1, C, 0.0, 2.0, 5);
  if (weight_kind == 2) w = random_uniform(DType::kF32, N, C, 0.0, 2.0, 5);
  if (weight_kind) o.weight = w.view();
  std::vector<float> pw;
  if (pos) {
    for (std::int64_t j = 0; j < C; ++j) pw.push_back(0.5f + 0.1f * static_cast<float>(j));
    o.pos_weight = pw.data();
  }
  Buffer g = inplace ? x : Buffer(DType::kF32, N, C);
  Buffer l(DType::kF32, N, C);
  BceOutputs outs;
  outs.grad = g.mut();
  if (red == Reduction::kNone) outs.elem_loss = l.mut();
  const auto xr = x.rows_real();
  const double loss = binary_cross_entropy_with_logits_loss(inplace ? g.view() : x.view(), y.view(), o, outs);
  Row pwr(pw.begin(), pw.end());
  const auto ref = reference::bce_with_logits_batch(
      xr, y.rows_real(), weight_kind ? w.rows_real() : std::vector<Row>{}, pwr,
      red == Reduction::kMean ? reference::RefReduction::kMean : reference::RefReduction::kSum);
  EXPECT_TRUE(Near(loss, ref.loss, dt == DType::kF64 ? 1e-12 : 5e-7, dt == DType::kF64 ? 1e-13 : 1e-7));
  const double scale = red == Reduction::kMean ? 1.0 / (N * C) : 1.0;
  const double rel = std::max(5e-7, dtype_rel(g.dtype));
  for (std::int64_t r = 0; r < N; ++r)
    for (std::int64_t j = 0; j < C; ++j) {
      EXPECT_TRUE(Near(g.get(r, j), ref.grad[r][j] * (red == Reduction::kMean ? 1.0 : 1.0), rel, 1e-7 * scale))
          << r << "," << j;
      if (red == Reduction::kNone) EXPECT_TRUE(Near(l.get(r, j), ref.elem_loss[r][j], 5e-7, 1e-7));
    }
}

TEST(BceWithLogits, AgainstReference) {
  for (Reduction red : {Reduction::kMean, Reduction::kSum, Reduction::kNone})
    for (int wk : {0, 1, 2})
      for (bool pos : {false, true}) check_bce(DType::kF32, red, wk, pos, false);
  check_bce(DType::kF64, Reduction::kMean, 1, true, false);
  check_bce(DType::kBF16, Reduction::kSum, 0, false, true);
  check_bce(DType::kF32, Reduction::kMean, 2, true, true);
}

// The BCE kernel on every SIMD target this build compiled, HWY_SCALAR
// included.
TEST(BceWithLogits, EverySimdTargetMatchesTheReference) {
  for_each_simd_target([] {
    for (Reduction red : {Reduction::kMean, Reduction::kNone})
      for (int wk : {0, 2}) check_bce(DType::kF32, red, wk, wk == 2, false);
    check_bce(DType::kF32, Reduction::kSum, 1, true, true);
  });
}

TEST(BceWithLogits, InfiniteLogitsAndErrors) {
  Buffer x(DType::kF32, 1, 4), y(DType::kF32, 1, 4);
  const double inf = std::numeric_limits<double>::infinity();
  x.set(0, 0, inf), y.set(0, 0, 1);    // 0
  x.set(0, 1, -inf), y.set(0, 1, 0);   // 0
  x.set(0, 2, 0), y.set(0, 2, 0.5);    // log 2
  x.set(0, 3, 1), y.set(0, 3, 1);      // log1p(e^-1)
  BceOptions o;
  o.reduction = Reduction::kSum;
  EXPECT_NEAR(binary_cross_entropy_with_logits_loss(x.view(), y.view(), o),
              std::log(2.0) + std::log1p(std::exp(-1.0)), 1e-15);
  x.set(0, 1, -inf), y.set(0, 1, 0.5);
  EXPECT_EQ(binary_cross_entropy_with_logits_loss(x.view(), y.view(), o), inf);
  x.set(0, 2, std::nan(""));
  try {
    binary_cross_entropy_with_logits_loss(x.view(), y.view(), o);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNonFinite);
    EXPECT_NE(std::string(e.what()).find("logits[0][2]"), std::string::npos) << e.what();
  }
  x.set(0, 2, 0);
  y.set(0, 3, 1.5);
  EXPECT_THROW(binary_cross_entropy_with_logits_loss(x.view(), y.view(), o), Error);
  Buffer y2(DType::kF32, 2, 4);
  EXPECT_THROW(binary_cross_entropy_with_logits_loss(x.view(), y2.view(), o), Error);
}

void check_kl(KlReduction red, bool log_target, DType dt) {
  const std::int64_t N = 6, C = 25;
  // input = log q of a random distribution; target p (with zeros) or log p.
  Buffer q = random_soft(DType::kF64, N, C, 8);
  Buffer p = random_soft(DType::kF64, N, C, 9);
  Buffer in(dt, N, C), tg(dt, N, C);
  for (std::int64_t r = 0; r < N; ++r)
    for (std::int64_t j = 0; j < C; ++j) {
      in.set(r, j, std::log(std::max(q.get(r, j), 1e-30)));
      tg.set(r, j, log_target ? std::log(p.get(r, j)) : p.get(r, j));
    }
  KlDivOptions o;
  o.reduction = red;
  o.log_target = log_target;
  Buffer g(DType::kF32, N, C), l(DType::kF32, N, C);
  KlDivOutputs outs;
  outs.grad = g.mut();
  outs.elem_loss = l.mut();
  const double loss = kl_div_loss(in.view(), tg.view(), o, outs);
  const auto rr = red == KlReduction::kNone   ? reference::KlRefReduction::kNone
                  : red == KlReduction::kSum  ? reference::KlRefReduction::kSum
                  : red == KlReduction::kMean ? reference::KlRefReduction::kMean
                                              : reference::KlRefReduction::kBatchMean;
  const auto ref = reference::kl_div_batch(in.rows_real(), tg.rows_real(), log_target, rr);
  EXPECT_TRUE(Near(loss, ref.loss, 1e-12, 1e-14));
  for (std::int64_t r = 0; r < N; ++r)
    for (std::int64_t j = 0; j < C; ++j) {
      EXPECT_TRUE(Near(g.get(r, j), ref.grad[r][j], 5e-7, 1e-9));
      EXPECT_TRUE(Near(l.get(r, j), ref.elem_loss[r][j], 5e-7, 1e-9));
    }
}

TEST(KlDiv, AgainstReference) {
  for (KlReduction red : {KlReduction::kNone, KlReduction::kSum, KlReduction::kMean, KlReduction::kBatchMean})
    for (bool lt : {false, true}) check_kl(red, lt, DType::kF32);
  check_kl(KlReduction::kBatchMean, false, DType::kF64);
}

TEST(KlDiv, Errors) {
  Buffer in(DType::kF32, 2, 3), tg(DType::kF32, 2, 3);
  for (int r = 0; r < 2; ++r)
    for (int j = 0; j < 3; ++j) in.set(r, j, std::log(1.0 / 3)), tg.set(r, j, 1.0 / 3);
  KlDivOptions o;
  EXPECT_NEAR(kl_div_loss(in.view(), tg.view(), o), 0.0, 1e-7);
  tg.set(1, 2, -0.5);
  try {
    kl_div_loss(in.view(), tg.view(), o);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("target[1][2]"), std::string::npos) << e.what();
  }
  Buffer small(DType::kF32, 2, 2);
  EXPECT_THROW(kl_div_loss(in.view(), small.view(), o), Error);
}

}  // namespace
}  // namespace xent::test
