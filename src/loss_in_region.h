// cross_entropy_loss for a caller that runs it on a few rows from inside its
// own OpenMP parallel region (linear_cross_entropy's small token chunks).
#pragma once

#include "xent/loss.h"

namespace xent::detail {

// The same results, bit for bit, as cross_entropy_loss with num_threads = 1
// (options.num_threads is ignored), computed on the calling thread without
// a parallel region of its own (a nested one-thread region costs ~0.55 µs
// plus futex calls per call), and, for float32 logits with a gradient,
// without the per-call row buffer of exps: the gradient pass recomputes them
// (the same kernel ops on the same values; for rows of more than 65536
// columns the slower choice, taken for memory). A single row of more than
// 32768 columns takes the row-wise path instead of the few-long-rows one,
// which is the same bits. Errors as cross_entropy_loss.
CrossEntropyResult cross_entropy_loss_in_region(const MatrixView& logits, const Targets& targets,
                                                const CrossEntropyOptions& options,
                                                const CrossEntropyOutputs& outputs);

}  // namespace xent::detail
