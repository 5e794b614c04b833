// The long-double reference of the batch losses (xent/loss.h), written
// straight from the formulas in loss.h and shared/semantics.md: per row
// z'' = (softcap ? cap·tanh(z/cap) : z)/T, q = softmax(z''), smoothed target
// t', row loss Σ_c w_c t'_c (1 − q_c)^γ (−log q_c) + c_z·lse², PyTorch's
// reductions. The gradient is the plain analytic derivative (no tricks), so
// that tests can hold it against finite differences too. Slow on purpose; it
// does not validate (callers pass valid input).
#pragma once

#include <cstdint>
#include <vector>

#include "reference/reference.h"

namespace xent::reference {

enum class RefReduction { kNone, kSum, kMean };

struct CeRefOptions {
  RefReduction reduction = RefReduction::kMean;
  std::int64_t ignore_index = -100;
  std::vector<Real> weight;   // empty: all ones
  Real epsilon = 0;           // label smoothing
  bool off_target = false;    // Smoothing::kOffTarget instead of kUniform
  Real temperature = 1, softcap = 0, z_loss = 0, gamma = 0;
  bool empty_nan = false;     // EmptyMean::kNaN
  Real grad_scale = 1;
};

struct CeRefResult {
  Real loss = 0, z_loss = 0;
  std::vector<Real> row_loss, row_lse;
  std::vector<Row> grad;      // N rows of V
  std::int64_t count = 0;
  Real weight_sum = 0;
  std::int64_t correct = 0;
};

// Index targets (soft empty) or soft targets (soft has N rows).
CeRefResult cross_entropy_batch(const std::vector<Row>& logits,
                                const std::vector<std::int64_t>& targets,
                                const std::vector<Row>& soft, const CeRefOptions& o);

struct BceRefResult {
  Real loss = 0;
  std::vector<Row> elem_loss, grad;
};
// weight: empty, 1 row (per class) or N rows; pos_weight: empty or C.
BceRefResult bce_with_logits_batch(const std::vector<Row>& x, const std::vector<Row>& y,
                                   const std::vector<Row>& weight, const Row& pos_weight,
                                   RefReduction reduction, Real grad_scale = 1);

enum class KlRefReduction { kNone, kSum, kMean, kBatchMean };
struct KlRefResult {
  Real loss = 0;
  std::vector<Row> elem_loss, grad;
};
KlRefResult kl_div_batch(const std::vector<Row>& input_log_q, const std::vector<Row>& target,
                         bool log_target, KlRefReduction reduction, Real grad_scale = 1);

}  // namespace xent::reference
