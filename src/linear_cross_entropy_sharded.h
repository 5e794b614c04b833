// Internal: linear_cross_entropy with options.communicator set (issue 9);
// see src/linear_cross_entropy_sharded.cc.
#pragma once

#include "xent/communicator.h"
#include "xent/linear_cross_entropy.h"

namespace xent::detail {

LinearCrossEntropyResult linear_cross_entropy_sharded(const MatrixView& hidden,
                                                      const MatrixView& weight, const float* bias,
                                                      const Targets& targets,
                                                      const LinearCrossEntropyOptions& options,
                                                      const LinearCrossEntropyOutputs& outputs);

}  // namespace xent::detail
