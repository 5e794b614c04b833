// The reduced loss of every batch entry point (cross_entropy_loss, its
// vocab-parallel, linear and CUDA forms), so that they cannot drift apart.
#pragma once

#include <cstdint>
#include <limits>

#include "xent/loss.h"

namespace xent::detail {

// What an empty mean gives (options.empty_mean): NaN as PyTorch, or 0.
inline double empty_mean_value(const CrossEntropyOptions& o) {
  return o.empty_mean == EmptyMean::kNaN ? std::numeric_limits<double>::quiet_NaN() : 0.0;
}

// res.loss and res.z_loss from the summed CE part (ce_sum) and z-loss part
// (z_sum) of the non-ignored rows, Σ w_y over them (weight_sum) and their
// count. Mean divides the CE part by Σ w_y and the z-loss part by the count
// (PyTorch's weighted mean); a mean over nothing is empty_mean_value, and
// with EmptyMean::kZero the loss is then the z-loss part alone. Sum and
// none: the plain sums.
inline void reduce_loss(const CrossEntropyOptions& o, double ce_sum, double z_sum,
                        double weight_sum, std::int64_t count, CrossEntropyResult& res) {
  if (o.reduction != Reduction::kMean) {
    res.z_loss = z_sum;
    res.loss = ce_sum + z_sum;
    return;
  }
  const bool ce_empty = !(weight_sum > 0), z_empty = count == 0;
  const double ce_part = ce_empty ? empty_mean_value(o) : ce_sum / weight_sum;
  const double z_part = z_empty ? empty_mean_value(o) : z_sum / static_cast<double>(count);
  res.z_loss = o.z_loss > 0 ? z_part : 0.0;
  res.loss = ce_part + res.z_loss;
  if (ce_empty && o.empty_mean == EmptyMean::kZero) res.loss = res.z_loss;
}

}  // namespace xent::detail
