// xent/linear_cross_entropy.h — the output layer and the loss in one call,
// without ever materializing the N×V logits.
//
//   logits = hidden · weightᵀ (+ bias)          hidden N×D, weight V×D, bias V
//   loss   = cross_entropy_loss(logits, targets, options.loss)
//
// and, in the same call, the gradients of the (reduced, grad_scale'd) loss
// with respect to hidden, weight and bias. The result equals that two-step
// "unfused path" (see tests/linear_cross_entropy_test.cc for the tolerances)
// while the extra memory is a reused buffer of at most `max_buffer_bytes`
// (by default 1/112 of the 2·N·V floats that the logits and their gradient
// would take) plus O(N) per-row numbers.
//
// Two algorithms, both with the shape of a GPU kernel:
//   * kTokenChunked (Liger Kernel's shape): for a chunk of rows, the chunk's
//     full-vocabulary logits go into the buffer, the fused loss turns them in
//     place into the logit gradient G, then grad_hidden[chunk] = G·W and
//     grad_weight += Gᵀ·H[chunk]. Three matrix products in all.
//   * kVocabTiled (Cut Cross-Entropy's shape): pass 1 computes each row's
//     log-sum-exp with an online merge over (row block × vocabulary tile)
//     blocks; pass 2 recomputes each block's logits and accumulates the
//     gradients. Four products, but every product is a large square-ish GEMM
//     and the blocks can be skipped (gradient filtering).
// kAuto picks by the measurements in docs/performance.md. Where the CPU has
// AVX-512F, token-chunked runs its products on kernels of our own (see
// LinearCrossEntropyProducts) and is the choice for training and evaluation
// once a chunk has ≥ 4 rows (the default budget gives ≈ N/56 rows for
// V ≫ D, rounded down to a multiple of 16, or of 4 below 16 rows).
// On OpenBLAS products: vocab-tiled for evaluation (one product) and for
// small token chunks, token-chunked for training when its chunk has ≥ 128
// rows.
//
// Threads: OpenBLAS runs its own OpenMP threads (called outside our parallel
// regions, so its threads and ours take turns); our product kernels and the
// per-row softmax work run on options.loss.num_threads threads, except that
// token chunks of fewer than 16 rows split their softmax work in two halves
// of rows (at most 2 threads: such a chunk's fewer than 16·V elements are
// microseconds of work). Evaluation that would take such chunks (float32,
// our kernels, no label smoothing / softcap / temperature / focal) stores no
// logits at all: 16-row chunks whose per-row max, Σexp, target logit and
// argmax are folded while the logits are in registers (chunk_rows reports
// 16; memory one transposed 16-row chunk of hidden per thread, as many
// threads as the budget holds).
#pragma once

#include <cstddef>
#include <cstdint>

#include "xent/loss.h"

namespace xent {

enum class LinearCrossEntropyAlgorithm { kAuto, kTokenChunked, kVocabTiled };
const char* LinearCrossEntropyAlgorithmName(LinearCrossEntropyAlgorithm a) noexcept;

// Who computes kTokenChunked's three matrix products: kAuto = the AVX-512
// kernels of src/cpu/chunk_gemm.cc where the CPU has AVX-512F (they read the
// weight in place; OpenBLAS repacks it for every chunk), else OpenBLAS;
// kBlas = OpenBLAS always. kVocabTiled always uses OpenBLAS.
enum class LinearCrossEntropyProducts { kAuto, kBlas };

// The sharded output layer of issue 9 (vocabulary-parallel, Megatron style):
// each rank holds rows [vocab_offset, vocab_offset + V) of a weight with
// vocab_total rows; targets are global class indices. The per-row statistics
// of pass 1 (max, Σexp, Σ c·u, target logit) and grad_hidden must then be
// all-reduced over the ranks; this interface is where a communicator (MPI,
// NCCL) plugs in. The communicator must be an xent::Communicator
// (xent/communicator.h, e.g. xent::MpiCommunicator): see
// LinearCrossEntropyOptions::communicator.
class VocabCommunicator {
 public:
  virtual ~VocabCommunicator() = default;
  virtual void allreduce_max(double* values, std::size_t count) = 0;
  virtual void allreduce_sum(double* values, std::size_t count) = 0;
  virtual void allreduce_sum(float* values, std::size_t count) = 0;
};

struct LinearCrossEntropyOptions {
  // Every option of the fused loss applies: reduction, ignore_index,
  // class_weight (V entries), label_smoothing + smoothing convention,
  // temperature, softcap, z_loss, empty_mean, grad_scale, num_threads,
  // compute_accuracy. focal_gamma only with kTokenChunked (kAuto picks it).
  CrossEntropyOptions loss;
  LinearCrossEntropyAlgorithm algorithm = LinearCrossEntropyAlgorithm::kAuto;
  // Upper bound on the logits buffer (with our product kernels: plus their
  // transposed chunk of hidden) in bytes; 0: 2·N·V·4 / 112.
  std::size_t max_buffer_bytes = 0;
  // Block shape overrides (0: derived from max_buffer_bytes). chunk_rows is
  // the token chunk (kTokenChunked) or the row block (kVocabTiled);
  // tile_cols is the vocabulary tile (kVocabTiled only).
  std::int64_t chunk_rows = 0;
  std::int64_t tile_cols = 0;
  LinearCrossEntropyProducts products = LinearCrossEntropyProducts::kAuto;
  // Gradient filtering (kVocabTiled; kAuto switches to it when > 0): a
  // (row block × vocabulary tile) block whose softmax entries q are all below
  // this threshold is skipped in pass 2: no recomputation, no gradient
  // products. The target term of such rows is still applied exactly (as a
  // rank-1 update). 2^-12 is Cut Cross-Entropy's choice for bf16; 0 = off.
  // What it drops, in skipped blocks only: the entries α·q_j (q_j < threshold)
  // of the logit gradient, and the label-smoothing entries −s·b·w_j (b = ε/V
  // or ε/(V−1)). The loss and lse are exact (pass 1 is never filtered).
  double grad_filter = 0.0;
  // Issue 9, the sharded output layer: with a communicator, this rank's
  // weight (V_r rows) and bias are rows [vocab_offset, vocab_offset + V_r) of
  // the vocab_total classes (vocab_total required); hidden, targets (global
  // ids), class_weight (all vocab_total entries) and the options are the same
  // on every rank. Every rank gets the loss, row_loss, row_lse and the full
  // grad_hidden (all-reduced); grad_weight / grad_bias are its own rows. The
  // per-row (max, Σexp, target logit) are merged across ranks, chunk by
  // chunk (same chunks everywhere; chunk_rows or max_buffer_bytes / (4·V/P)),
  // O(1) doubles per row; grad_hidden costs an all-reduce of N×D floats.
  // Not with a communicator: grad_filter (Error). A bad input on one rank throws on every rank (Communicator::agree).
  // Without a communicator, vocab_offset must be 0 and vocab_total 0 or V.
  std::int64_t vocab_offset = 0;
  std::int64_t vocab_total = 0;
  VocabCommunicator* communicator = nullptr;
};

struct LinearCrossEntropyOutputs {
  float* row_loss = nullptr;        // N, optional: the per-row objective (as loss.h)
  float* row_lse = nullptr;         // N, optional: lse of the transformed logits
  // Gradients, float32 whatever the input dtype; overwritten (not
  // accumulated). data == nullptr: not wanted. None wanted = evaluation mode:
  // no backward work at all.
  MutableMatrixView grad_hidden;    // N×D
  MutableMatrixView grad_weight;    // V×D
  float* grad_bias = nullptr;       // V (only with a bias)
};

struct LinearCrossEntropyResult : CrossEntropyResult {
  LinearCrossEntropyAlgorithm algorithm = LinearCrossEntropyAlgorithm::kAuto;  // the one used
  std::int64_t chunk_rows = 0, tile_cols = 0;  // the block shape used
  std::size_t buffer_bytes = 0;                // the logits buffer (+ scratch) allocated
  bool own_products = false;                   // kTokenChunked on the AVX-512 kernels
  // Gradient filtering: (row block, tile) blocks in pass 2, and how many were
  // skipped.
  std::int64_t blocks = 0, blocks_skipped = 0;
};

// hidden: N×D, float32 or bfloat16; weight: V×D, float32 or bfloat16 (the
// products accumulate in float32 either way); bias: V floats or nullptr;
// targets: class indices (int32 / int64). Soft targets are not supported here
// (an N×V target would be the materialization this function avoids).
// Errors (xent::Error, naming the argument and position): shape mismatch,
// unsupported dtype, target out of range (naming the row), non-finite bias,
// a row whose logits overflow to inf or NaN (naming the row), bad options.
LinearCrossEntropyResult linear_cross_entropy(const MatrixView& hidden,
                                              const MatrixView& weight,
                                              const float* bias,
                                              const Targets& targets,
                                              const LinearCrossEntropyOptions& options,
                                              const LinearCrossEntropyOutputs& outputs = {});

}  // namespace xent
