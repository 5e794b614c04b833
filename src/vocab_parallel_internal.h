// Internal: vocab_parallel_cross_entropy on a chunk of rows of a larger batch
// (the sharded linear_cross_entropy runs it chunk by chunk, issue 9).
#pragma once

#include "xent/vocab_parallel.h"

namespace xent::detail {

// The gradient of row r is ce·d(CE_r)/dz + z·d(zloss_r)/dz, times
// options.grad_scale: the reduction of the whole batch, not of this chunk
// (a mean divides CE by the batch's Σ w_y and the z-loss by its count).
struct GradScales {
  double ce = 1, z = 1;
};

// As vocab_parallel_cross_entropy; with scales != nullptr the gradient uses
// them instead of the chunk's own reduction (pass reduction kSum: the loss
// returned is then the chunk's sums).
CrossEntropyResult vocab_parallel_cross_entropy_scaled(const MatrixView& local_logits,
                                                       std::int64_t vocab_offset,
                                                       std::int64_t vocab_total,
                                                       const Targets& targets,
                                                       const CrossEntropyOptions& options,
                                                       Communicator& comm,
                                                       const VocabParallelOutputs& outputs,
                                                       const GradScales* scales);

}  // namespace xent::detail
