// xent/loss.h — the training losses over a batch: fused forward + backward.
//
// cross_entropy_loss reads the N×V logits once and (optionally) writes the
// gradient once, in the same streaming pass, with SIMD chosen at run time and
// threads over rows (or over column chunks when there are few long rows). The
// result is deterministic: the same bits for any thread count and any run
// (fixed partition of the work, fixed order of every reduction).
//
// Shapes are in elements: a matrix is `rows` × `cols`, row r starting at
// data + r·row_stride (row_stride ≥ cols; rows need not be packed).
//
// Semantics follow torch.nn.functional.cross_entropy wherever PyTorch has the
// feature (see docs/semantics.md for every formula), and are documented below
// where it does not.
//
// Accuracy: logits of every dtype are computed in float32 (float64 for
// float64 logits) with fp64 accumulation of every sum (at most 8 non-negative
// terms are added in float32 before widening; the maximum's own term, exactly
// 1, is kept apart, so that a confident row's loss log1p(s − 1) keeps its
// relative accuracy down to s − 1 ~ 1e-30); float32 results are
// within 5e-7 relative or 1e-7 absolute of the long-double reference at any
// V (tested to 262144), and float64 ones within ~1e-11. The gradient of the
// true class, q_t − 1, is computed as −Σ_{j≠t} q_j (no cancellation), also
// when written as bfloat16.
//
// Speed: float32 rows run one SIMD pass (running max and Σexp, the exps kept
// in a per-thread cache-resident buffer) and one gradient pass that streams
// the gradient out (non-temporal stores for outputs ≥ 16 MiB). Short float32
// rows (V ≤ 128, float32 targets) run one row per SIMD lane instead. Other
// dtypes are staged through float32 per chunk. softcap, temperature ≠ 1 and
// focal_gamma > 0 take a scalar float64 path (correct, not fast).
//
// On Error, nothing is returned and the outputs may be partially written.
#pragma once

#include <cstddef>
#include <cstdint>

#include "xent/core.h"
#include "xent/smoothing.h"

namespace xent {

enum class DType { kF32, kF64, kBF16, kF16 };
const char* DTypeName(DType dtype) noexcept;
// Bytes per element (inline: the loss kernels' drivers compute row addresses
// with it several times per row).
constexpr std::size_t DTypeSize(DType dtype) noexcept {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF64: return 8;
    case DType::kBF16:
    case DType::kF16: return 2;
  }
  return 0;
}

struct MatrixView {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t row_stride = 0;  // elements; 0 means cols (packed)
};

struct MutableMatrixView {
  void* data = nullptr;         // nullptr: not requested
  DType dtype = DType::kF32;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t row_stride = 0;  // elements; 0 means cols
};

enum class Reduction { kNone, kSum, kMean };
const char* ReductionName(Reduction r) noexcept;

// Targets: class indices (int32 or int64, N of them) or a dense N×V target
// distribution (soft targets; each row must be a distribution: entries in
// [0, 1] summing to 1 within NormTolerance — checked, Error otherwise).
struct Targets {
  enum class Kind { kIndexInt32, kIndexInt64, kSoft };
  Kind kind = Kind::kIndexInt64;
  const void* indices = nullptr;  // kIndexInt32 / kIndexInt64: N entries
  MatrixView soft;                // kSoft: N×V, any float dtype

  static Targets Index(const std::int32_t* t) { return {Kind::kIndexInt32, t, {}}; }
  static Targets Index(const std::int64_t* t) { return {Kind::kIndexInt64, t, {}}; }
  static Targets Soft(MatrixView p) { return {Kind::kSoft, nullptr, p}; }
};

// What a mean over a batch with no non-ignored row returns.
enum class EmptyMean {
  kZero,  // loss 0 and gradient 0 (what a training loop wants)
  kNaN,   // NaN, as PyTorch does (pytorch#64572); the gradient is then 0
};

struct CrossEntropyOptions {
  Reduction reduction = Reduction::kMean;
  // Rows whose index target equals ignore_index contribute nothing (loss 0,
  // gradient 0, not counted) and are not inspected (a NaN there is not an
  // error; its row_lse is then NaN). Only for index targets (soft targets
  // ignore it). Any other target outside [0, V) is Error(kTargetOutOfRange)
  // naming the row and the value, raised before anything is written.
  std::int64_t ignore_index = -100;
  // Class weights w_c (V entries, finite, ≥ 0), or nullptr for all ones.
  // Index targets: row loss = Σ_c w_c·t'_c·(−log q_c) with t' the (smoothed)
  // one-hot; mean divides by Σ_n w[y_n] over non-ignored rows (PyTorch).
  // Soft targets: row loss = Σ_c w_c·t'_c·(−log q_c); mean divides by N.
  // A class with w_c·t'_c = 0 contributes 0 even where its logit is -inf
  // (PyTorch gives NaN there: 0·∞); a class with w_c·t'_c > 0 and logit -inf
  // makes the loss +inf. If Σ w[y_n] = 0 under mean, the CE part follows
  // empty_mean (PyTorch: NaN).
  const float* class_weight = nullptr;
  double label_smoothing = 0.0;                  // ε in [0, 1]
  Smoothing smoothing = Smoothing::kUniform;     // see xent/smoothing.h
  // Logits are transformed before the softmax as
  //   z' = softcap > 0 ? softcap·tanh(z / softcap) : z;   then z'' = z' / T.
  // The gradient is with respect to the raw z (chain rule through both).
  double temperature = 1.0;  // T > 0
  double softcap = 0.0;      // 0: off; > 0: Gemma-2 style soft-capping
  // z-loss (PaLM): adds c·lse² per non-ignored row (not class-weighted);
  // under mean it is divided by the number of non-ignored rows.
  double z_loss = 0.0;
  // Focal loss γ ≥ 0 (Lin et al. 2017): each class term −t'_c log q_c is
  // multiplied by (1 − q_c)^γ; γ = 0 is plain cross-entropy. Closed-form
  // gradient.
  double focal_gamma = 0.0;
  EmptyMean empty_mean = EmptyMean::kZero;
  // Multiplies the gradient (the upstream dL_total/dloss; 1 in a plain step).
  double grad_scale = 1.0;
  // Count rows whose argmax equals the (index) target into result.correct.
  bool compute_accuracy = false;
  // 0: OpenMP's default; otherwise the number of threads. Results do not
  // depend on it.
  int num_threads = 0;
};

struct CrossEntropyOutputs {
  // Per-row objective (N floats): the weighted CE term plus the z-loss term,
  // 0 for ignored rows — what reduction=none returns. Optional.
  float* row_loss = nullptr;
  // Per-row log-sum-exp of the transformed logits z'' (N floats). Optional;
  // ignored rows get their lse too.
  float* row_lse = nullptr;
  // Gradient of the reduced loss with respect to the raw logits, scaled by
  // grad_scale; for reduction=none the gradient of Σ_n row_loss_n. May alias
  // the logits (same dtype and stride): in place. Optional.
  MutableMatrixView grad;
};

struct CrossEntropyResult {
  double loss = 0.0;         // reduced total (CE + z-loss); for none: Σ row_loss
  double z_loss = 0.0;       // the z-loss part alone, reduced the same way
  std::int64_t count = 0;    // non-ignored rows
  double weight_sum = 0.0;   // the mean's denominator for the CE part
  std::int64_t correct = 0;  // rows with argmax = target (if requested)
};

// Fused forward (+ backward when outputs.grad.data != nullptr).
// Errors: shape mismatch, V = 0 (Error(kEmpty), even when N = 0), NaN / +inf
// logits (Error(kNonFinite) naming row and column), out-of-range targets,
// invalid soft target rows (naming row and column, or the row's sum), bad
// options, a gradient that overlaps the logits without being exactly them,
// or overlaps the soft targets, the class weights or the index targets.
// After an error the gradient buffer's contents are unspecified (some rows
// may be written, others hold intermediate values); the logits are intact
// unless the gradient is them. N = 0 is legal (loss 0, or NaN for mean with
// EmptyMean::kNaN). A row whose transformed logits are all -inf:
// Error(kUndefined) naming the row (unless ignored). -inf logits elsewhere are masks (probability 0); +inf is an error.
// correct counts index-target rows only (0 for soft targets); argmax is the
// first index of the maximum, as torch.argmax.
CrossEntropyResult cross_entropy_loss(const MatrixView& logits,
                                      const Targets& targets,
                                      const CrossEntropyOptions& options,
                                      const CrossEntropyOutputs& outputs = {});

// Backward from a saved per-row lse (as autograd needs when the upstream
// gradient is only known later): grad = d(loss)/d(logits) · upstream, where
// upstream is one scalar (row_upstream == nullptr, use options.grad_scale) or
// N per-row values (reduction none; Error otherwise), times grad_scale.
// Reads the logits once, writes grad once. row_lse may be nullptr: the
// statistics are recomputed from the row while it is in cache (the same
// kernels as the forward, so the gradient has the same bits as the fused
// call's), which costs no extra memory traffic; a saved lse is accepted but
// not needed. Errors as cross_entropy_loss's, and a grad that overlaps
// row_upstream.
void cross_entropy_backward(const MatrixView& logits, const Targets& targets,
                            const float* row_lse,
                            const CrossEntropyOptions& options,
                            const float* row_upstream,
                            const MutableMatrixView& grad);

// ---------------------------------------------------------------------------
// Binary cross-entropy with logits, multi-label N×C (PyTorch semantics):
//   l_nc = −w_nc·[pw_c·y_nc·log σ(x_nc) + (1 − y_nc)·log σ(−x_nc)]
// weight broadcasts (nullptr, C per-class values, or N×C), pos_weight is C
// per-class values; mean averages over N·C elements (N·C = 0: NaN, as
// PyTorch). ±inf logits give the limits (0 or +inf); NaN logits are
// Error(kNonFinite) and targets outside [0, 1] Error(kNotDistribution), both
// naming row and column. float32 inputs take a SIMD path computing the loss
// in the rearranged form, whose terms are all ≥ 0 (no cancellation)
//   l = w·[lw·log1p(e^{−|x|}) + (x ≥ 0 ? (1 − y)x : −pw·y·x)],  lw = 1 + (pw − 1)y,
// and the gradient w·(lw·σ(x) − pw·y) as w·num/(1 + e^{−|x|}) with num's two
// float32 terms, which cancel where the gradient crosses 0: there its error
// is a few 2^-24 of those terms, not of the result.
struct BceOptions {
  Reduction reduction = Reduction::kMean;
  MatrixView weight;                // data nullptr: none; rows 1: per class
  const float* pos_weight = nullptr;  // C entries or nullptr
  double grad_scale = 1.0;
  int num_threads = 0;
};
struct BceOutputs {
  MutableMatrixView elem_loss;  // N×C float, reduction none (optional)
  MutableMatrixView grad;       // N×C, may alias logits (optional)
};
double binary_cross_entropy_with_logits_loss(const MatrixView& logits,
                                             const MatrixView& targets,
                                             const BceOptions& options,
                                             const BceOutputs& outputs = {});

// ---------------------------------------------------------------------------
// KL divergence loss (PyTorch kl_div): input holds log q (N×C), target holds
// p (or log p with log_target). Pointwise l = p·(log p − input), with
// 0·log 0 = 0; reductions none / sum / mean (over elements) / batchmean
// (sum / N, the true KL per row). Gradient with respect to input: −p.
// NaN inputs, and targets that are negative or NaN (log_target: NaN or +inf),
// are errors naming row and column; an input of -inf where p > 0 gives +inf.
enum class KlReduction { kNone, kSum, kMean, kBatchMean };
struct KlDivOptions {
  KlReduction reduction = KlReduction::kBatchMean;
  bool log_target = false;
  double grad_scale = 1.0;
  int num_threads = 0;
};
struct KlDivOutputs {
  MutableMatrixView elem_loss;  // N×C float (reduction none), optional
  MutableMatrixView grad;       // N×C, may alias input, optional
};
double kl_div_loss(const MatrixView& input_log_q, const MatrixView& target,
                   const KlDivOptions& options,
                   const KlDivOutputs& outputs = {});

}  // namespace xent
