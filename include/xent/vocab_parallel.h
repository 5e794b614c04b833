// xent/vocab_parallel.h — cross-entropy over logits sharded along the
// vocabulary (tensor-parallel output layers, Megatron style), issue 9.
//
// Rank r holds the columns [vocab_offset, vocab_offset + V_r) of the N×V_total
// logits; targets (global class ids), options and the class weights (the
// whole V_total vector) are the same on every rank. The call returns, on
// every rank, what xent::cross_entropy_loss returns on the full N×V_total
// logits: the reduced loss, row_loss and row_lse (N each, identical on every
// rank) and the gradient slice N×V_r of this rank's columns. The logits are
// never gathered: per row, the ranks exchange O(1) doubles (see docs/mpi.md):
//   1. allreduce max  of the local row maxima m_r            (N doubles)
//   2. allreduce sum  of [Σ_j exp(z_j − m), z_target (from the rank owning
//      the target, 0 elsewhere), Σ_j w_j·(m − z_j) (label smoothing only)]
//                                                             (2N or 3N doubles)
// plus one 1-double error agreement before them. Every row of the batch goes
// in the same collective (never one collective per row).
//
// Supported options: reduction, ignore_index, class_weight, label_smoothing
// (both conventions, with the GLOBAL V_total, so the result does not depend
// on the number of ranks), temperature, softcap, z_loss, empty_mean,
// grad_scale, compute_accuracy (argmax of the raw logits, first index on
// ties, merged across ranks in the same two collectives: the max collective
// carries the raw maxima too, the sum collective two counts per row),
// focal_gamma (one more sum-collective of 2 doubles per row, after lse). Not
// yet (Error(kInvalidArgument)): soft targets. num_threads: the
// O(N·V_r) passes split rows over that many OpenMP threads (0: the OpenMP
// default); results do not depend on it. The local passes use the fused
// loss's SIMD kernels, except with softcap / temperature / focal (scalar
// float64 loops).
//
// Errors: as cross_entropy_loss (naming row and GLOBAL column), plus
// vocab_offset / V_total inconsistencies. A bad input on one rank makes every
// rank throw (see Communicator::agree): the failing rank its own message
// prefixed "rank R: ", the others an Error naming rank R. Errors that depend
// on the reduced statistics (a row whose logits are all -inf) are raised by
// every rank alike.
#pragma once

#include <cstdint>

#include "xent/communicator.h"
#include "xent/loss.h"

namespace xent {

struct VocabParallelOutputs {
  float* row_loss = nullptr;  // N, optional (as CrossEntropyOutputs)
  float* row_lse = nullptr;   // N, optional
  MutableMatrixView grad;     // N×V_r, float32 or float64, optional; may alias the logits
};

// local_logits: N×V_r, float32 or float64 (V_r may be 0). targets: index
// targets (int32 / int64), N of them, global ids in [0, vocab_total) or
// ignore_index. Collective: every rank of `comm` must call it with the same
// N, targets, options and vocab_total, and shards that tile [0, vocab_total)
// (each rank's [vocab_offset, vocab_offset + V_r) checked to lie inside).
CrossEntropyResult vocab_parallel_cross_entropy(const MatrixView& local_logits,
                                                std::int64_t vocab_offset,
                                                std::int64_t vocab_total,
                                                const Targets& targets,
                                                const CrossEntropyOptions& options,
                                                Communicator& comm,
                                                const VocabParallelOutputs& outputs = {});

}  // namespace xent
