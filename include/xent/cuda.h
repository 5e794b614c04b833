// xent/cuda.h — the CUDA backend (library xent_cuda): the fused losses of
// xent/loss.h and the fused linear + cross-entropy of
// xent/linear_cross_entropy.h on an NVIDIA GPU (sm_80 and sm_90 builds).
//
// Same structs, same semantics, device memory. Every function here takes the
// option and view structs of the CPU API unchanged; the differences are:
//   * Every data pointer is a DEVICE pointer: the matrices, the index
//     targets, class_weight, pos_weight, bias and every output (row_loss,
//     row_lse, grad, ...). The scalar results come back in the host struct.
//   * `stream` is a cudaStream_t passed as void* (nullptr: the legacy default
//     stream), so that this header needs no CUDA headers. Work is enqueued on
//     that stream; each function synchronizes the stream before it returns
//     (to read the scalar totals and the error word; the linear CE also
//     after its first pass, and once per tile with grad_filter > 0).
//   * Logits (and gradients) are float32, bfloat16 or float16 (float64 is
//     Error(kInvalidArgument)); the gradient has the logits' dtype. All
//     arithmetic is float32 per element with float64 row sums and a float64
//     fixed-order batch reduction: results are deterministic (the same bits
//     on every run of the same GPU model, no floating-point atomics) and
//     equal the CPU path within the tolerances in docs/cuda.md.
//   * num_threads is ignored.
//
// Errors: arguments that the host can check (shapes, dtypes, options,
// aliasing, null pointers) throw xent::Error before anything is enqueued.
// Errors in the data (NaN/+inf logits, targets out of range, soft target rows
// that are not distributions, rows with every logit -inf) are found on the
// device; the call then throws the same xent::Error as the CPU path for the
// lowest failing row (message naming row, column and value). Out-of-range
// targets are found before any output is written; for the other data errors
// the outputs may be partially written (as on the CPU). A CUDA runtime or
// cuBLAS failure throws xent::Error(kInvalidArgument) naming the call.
#pragma once

#include "xent/linear_cross_entropy.h"
#include "xent/loss.h"

namespace xent::cuda {

// Number of CUDA devices this process can use; 0 when there is no driver or
// no device (cudaGetDeviceCount failing counts as 0). Never throws.
int device_count() noexcept;

// Peak bytes of device scratch (xent_cuda's own stream-ordered memory pool
// of the current device, which holds its workspaces and tiles and keeps up
// to 256 MiB of them mapped between calls) held at once since the last
// reset; `reset` starts a new window. This is memory that
// torch.cuda.max_memory_allocated does not see. 0 without a device.
std::size_t workspace_peak_bytes(bool reset) noexcept;

// xent::cross_entropy_loss on the GPU. Index targets without smoothing,
// softcap, temperature or focal γ (the common training call) read each row
// once into registers, cut into up to 8 chunks of one block each that
// exchange their (max, Σexp) within a thread-block cluster (sm_90; on
// sm_80 rows of one chunk), then write the gradient from the registers.
// Other calls take one block per row, which writes the gradient in a
// second sweep over the row (from shared memory when the row fits, else
// from L2). Every option of CrossEntropyOptions is supported (num_threads
// ignored). outputs.grad may alias the logits exactly (in place).
CrossEntropyResult cross_entropy_loss(const MatrixView& logits, const Targets& targets,
                                      const CrossEntropyOptions& options,
                                      const CrossEntropyOutputs& outputs, void* stream);

// xent::cross_entropy_backward on the GPU: the gradient of the reduced loss
// times grad_scale, or with row_upstream (N device floats, reduction none)
// each row times its upstream value. The statistics are recomputed from the
// logits (no saved lse is needed).
void cross_entropy_backward(const MatrixView& logits, const Targets& targets,
                            const CrossEntropyOptions& options, const float* row_upstream,
                            const MutableMatrixView& grad, void* stream);

// xent::binary_cross_entropy_with_logits_loss on the GPU (weight: none, per
// class or N×C; pos_weight per class). Returns the reduced loss (none: Σ).
double binary_cross_entropy_with_logits_loss(const MatrixView& logits,
                                             const MatrixView& targets,
                                             const BceOptions& options,
                                             const BceOutputs& outputs, void* stream);

// xent::linear_cross_entropy on the GPU (the vocabulary-tiled algorithm):
// for each vocabulary tile, logits tile = hidden · weight_tileᵀ by cuBLAS
// (cublasGemmEx, float32 or bfloat16 inputs — hidden and weight of the same
// dtype —, float32 accumulation) into one reused buffer, an online
// log-sum-exp merge per row; then, if any gradient is wanted, a second sweep
// recomputes each tile, turns it into the logit gradient G in the buffer and
// accumulates grad_hidden += G·W_tile, grad_weight_tile = Gᵀ·H (and
// grad_bias). No gradient wanted: no second sweep. options.grad_filter > 0
// skips the products of a tile whose softmax entries are all below the
// threshold (the target entries of its rows are then applied exactly as
// sparse rank-1 updates). The extra device memory is the tile buffer
// (≤ max_buffer_bytes; 0 picks 2·N·V·4/128 capped at 256 MiB) plus O(N).
// focal_gamma, soft targets and a vocabulary shard are Error(kInvalidArgument);
// `algorithm` is ignored; chunk_rows (row block, default all rows) and
// tile_cols (default from the budget, a multiple of 256) set the block shape.
LinearCrossEntropyResult linear_cross_entropy(const MatrixView& hidden, const MatrixView& weight,
                                              const float* bias, const Targets& targets,
                                              const LinearCrossEntropyOptions& options,
                                              const LinearCrossEntropyOutputs& outputs,
                                              void* stream);

}  // namespace xent::cuda
