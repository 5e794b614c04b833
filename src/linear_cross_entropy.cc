// linear_cross_entropy (xent/linear_cross_entropy.h): the output projection
// and the cross-entropy fused, with a bounded logits buffer.
//
// Both algorithms loop over blocks of logits L = H[rows]·W[cols]ᵀ (+ bias)
// that live in one reused buffer:
//   * token-chunked: blocks of `chunk` rows × all V columns; the fused loss of
//     src/loss.cc turns each block in place into its gradient G (it needs
//     the whole row for the log-sum-exp), then the two backward products.
//   * vocabulary-tiled: blocks of `rows` × `tile` columns; pass 1 merges each
//     row's (max, Σexp, Σc·u) over the tiles (the same SIMD kernels as the
//     fused loss, src/cpu/), pass 2 recomputes every block, writes its
//     gradient with the now-known lse, and does the backward products.
// The matrix products: token-chunked runs them on the AVX-512 kernels of
// src/cpu/chunk_gemm.cc where the CPU has AVX-512F (chunks of fewer than 16
// rows all in one parallel region of ours, the loss of each chunk in two
// halves of rows), else, and in the vocab-tiled design, as OpenBLAS sgemm
// calls made from the serial part of the code, with the per-row softmax
// work in our own OpenMP loops in between.
#include "xent/linear_cross_entropy.h"
#include "linear_cross_entropy_sharded.h"
#include "loss_in_region.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "blas.h"
#include "cpu/chunk_gemm.h"
#include "cpu/convert.h"
#include "cpu/kernels.h"
#include "reduce_loss.h"
#include "validate.h"

namespace xent {

const char* LinearCrossEntropyAlgorithmName(LinearCrossEntropyAlgorithm a) noexcept {
  switch (a) {
    case LinearCrossEntropyAlgorithm::kAuto: return "auto";
    case LinearCrossEntropyAlgorithm::kTokenChunked: return "token-chunked";
    case LinearCrossEntropyAlgorithm::kVocabTiled: return "vocab-tiled";
  }
  return "unknown";
}

namespace {

using detail::fail;
using detail::fmt_num;
using detail::check_loss_options;
using detail::NeumaierSum;
using Algo = LinearCrossEntropyAlgorithm;
constexpr const char* kFn = "linear_cross_entropy";
// kAuto's switch point on OpenBLAS: token chunks of fewer rows run the BLAS
// too far from its peak (docs/performance.md).
constexpr std::int64_t kMinChunkRows = 128;

std::string str(std::int64_t v) { return std::to_string(v); }

// Uninitialized float scratch (the pages are first touched by the GEMM that
// fills them, not by a zeroing pass), 64-byte aligned: the AVX-512 chunk
// kernels read their scratch with aligned loads.
struct Buffer {
  struct Free {
    void operator()(float* q) const { ::operator delete[](q, std::align_val_t{64}); }
  };
  std::unique_ptr<float[], Free> p;
  std::size_t n = 0;
  float* get(std::size_t want) {
    if (want > n) {
      p.reset(static_cast<float*>(::operator new[](want * sizeof(float), std::align_val_t{64})));
      n = want;
    }
    return p.get();
  }
};

struct Plan {
  std::int64_t N = 0, D = 0, V = 0;
  MatrixView h, w;
  std::int64_t hs = 0, wst = 0;  // row strides
  const float* bias = nullptr;
  // The targets as given (validated by make_plan). Not copied: a copy is
  // N int64 of the call's memory, 4 KiB of the 40 that 512×256×1000 may use.
  const void* targets = nullptr;
  bool t64 = true;
  std::int64_t ignore_index = -100;
  // Row r's target as given.
  std::int64_t target(std::int64_t r) const {
    return t64 ? static_cast<const std::int64_t*>(targets)[r] : static_cast<const std::int32_t*>(targets)[r];
  }
  // Row r's target class, or -1 where it is ignored (once make_plan has
  // validated them: no other negative value is left).
  std::int64_t tgt(std::int64_t r) const {
    const std::int64_t t = target(r);
    return t == ignore_index ? -1 : t;
  }
  const LinearCrossEntropyOptions* opt = nullptr;
  const CrossEntropyOptions* o = nullptr;
  int nt = 1;
  bool gh = false, gw = false, gb = false, grad = false;
  std::int64_t count = 0;
  double wsum = 0;
  double scale_ce = 0, scale_z = 0;  // d(reduced loss)/d(row CE), /d(row z-term)
  bool mean = false, ce_empty = false, z_empty = false;
  // Target transform t' = a·onehot + b (per class, times w_c).
  double a = 1, b = 0, w_total = 0;
};

int thread_count(int requested) {
  return requested > 0 ? requested : std::max(1, omp_get_max_threads());
}

// Threads for a loop over `work` elements: one below ~64k, where a parallel
// region's fork/join (and, on a busy machine, waiting for a descheduled
// worker) costs more than the loop.
int par(int nt, std::int64_t work) { return work < (std::int64_t{1} << 16) ? 1 : nt; }

// Rows [r0, r0 + nr) of `m` as float32: a pointer into m itself, or a
// conversion (bfloat16) into `scratch`. *ld receives the row stride.
const float* rows_f32(const MatrixView& m, std::int64_t stride, std::int64_t r0, std::int64_t nr,
                      Buffer& scratch, std::int64_t* ld, int nt) {
  if (m.dtype == DType::kF32) {
    *ld = stride;
    return static_cast<const float*>(m.data) + r0 * stride;
  }
  const std::int64_t c = m.cols;
  float* out = scratch.get(static_cast<std::size_t>(nr * c));
  const auto* src = static_cast<const std::uint16_t*>(m.data);
#pragma omp parallel for num_threads(par(nt, nr * c)) schedule(static)
  for (std::int64_t i = 0; i < nr; ++i) {
    const std::uint16_t* s = src + (r0 + i) * stride;
    float* d = out + i * c;
    for (std::int64_t j = 0; j < c; ++j) d[j] = cpu::bf16_to_float(s[j]);
  }
  *ld = c;
  return out;
}

float elem_f32(const MatrixView& m, std::int64_t stride, std::int64_t r, std::int64_t c) {
  if (m.dtype == DType::kF32) return static_cast<const float*>(m.data)[r * stride + c];
  return cpu::bf16_to_float(static_cast<const std::uint16_t*>(m.data)[r * stride + c]);
}

// L[i][j] += bias[v0 + j] for an nr × nc block with row stride ld.
// (One thread: no parallel region, which would cost a team even for one
// thread, and nest inside the small-chunk path's region.)
void add_bias(const float* bias, std::int64_t v0, float* L, std::int64_t nr, std::int64_t nc,
              std::int64_t ld, int nt) {
  if (!bias) return;
  auto rows = [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) {
      float* row = L + i * ld;
      for (std::int64_t j = 0; j < nc; ++j) row[j] += bias[v0 + j];
    }
  };
  const int n = par(nt, nr * nc);
  if (n <= 1) return rows(0, nr);
#pragma omp parallel for num_threads(n) schedule(static)
  for (std::int64_t i = 0; i < nr; ++i) rows(i, i + 1);
}

// gbias[j] += Σ_i G[i][j] (fixed row order: the same bits for any thread count).
void add_colsums(const float* G, std::int64_t nr, std::int64_t nc, std::int64_t ld, float* gbias,
                 int nt) {
  constexpr std::int64_t kCols = 256;
  const std::int64_t nblk = (nc + kCols - 1) / kCols;
  auto block = [&](std::int64_t blk) {
    const std::int64_t j0 = blk * kCols, j1 = std::min(nc, j0 + kCols);
    float acc[kCols] = {};
    for (std::int64_t i = 0; i < nr; ++i) {
      const float* row = G + i * ld;
      for (std::int64_t j = j0; j < j1; ++j) acc[j - j0] += row[j];
    }
    for (std::int64_t j = j0; j < j1; ++j) gbias[j] += acc[j - j0];
  };
  const int n = par(nt, nr * nc);  // one thread: no region (see add_bias)
  if (n <= 1) {
    for (std::int64_t blk = 0; blk < nblk; ++blk) block(blk);
    return;
  }
#pragma omp parallel for num_threads(n) schedule(static)
  for (std::int64_t blk = 0; blk < nblk; ++blk) block(blk);
}

// ------------------------------------------------------------ validation

std::int64_t check_matrix(const char* what, const void* data, DType dtype, std::int64_t rows,
                          std::int64_t cols, std::int64_t stride, bool allow_bf16) {
  if (rows < 0 || cols < 0)
    fail(ErrorCode::kInvalidArgument, std::string(kFn) + ": " + what + " has negative shape " +
                                          str(rows) + "×" + str(cols));
  if (!(dtype == DType::kF32 || (allow_bf16 && dtype == DType::kBF16)))
    fail(ErrorCode::kInvalidArgument,
         std::string(kFn) + ": " + what + " has dtype " + DTypeName(dtype) + "; supported: float32" +
             (allow_bf16 ? ", bfloat16" : ""));
  const std::int64_t s = stride == 0 ? cols : stride;
  if (s < cols)
    fail(ErrorCode::kInvalidArgument, std::string(kFn) + ": " + what + " row_stride " + str(s) +
                                          " is smaller than its " + str(cols) + " columns");
  if (data == nullptr && rows > 0 && cols > 0)
    fail(ErrorCode::kInvalidArgument, std::string(kFn) + ": " + what + ".data is null");
  return s;
}

void check_finite_matrix(const char* what, const MatrixView& m, std::int64_t stride, int nt) {
  const std::int64_t rows = m.rows, cols = m.cols;
  std::atomic<std::int64_t> bad{std::numeric_limits<std::int64_t>::max()};
#pragma omp parallel for num_threads(par(nt, rows * cols)) schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    bool ok = true;
    if (m.dtype == DType::kF32) {
      // Exponent all ones = inf or NaN; integer ops so that it vectorizes.
      const std::uint32_t* row = static_cast<const std::uint32_t*>(m.data) + r * stride;
      std::uint32_t bad_bits = 0;
      for (std::int64_t c = 0; c < cols; ++c)
        bad_bits |= static_cast<std::uint32_t>((row[c] & 0x7f800000u) == 0x7f800000u);
      ok = bad_bits == 0;
    } else {
      const std::uint16_t* row = static_cast<const std::uint16_t*>(m.data) + r * stride;
      std::uint32_t bad_bits = 0;
      for (std::int64_t c = 0; c < cols; ++c)
        bad_bits |= static_cast<std::uint32_t>((row[c] & 0x7f80u) == 0x7f80u);
      ok = bad_bits == 0;
    }
    if (!ok) {
      std::int64_t cur = bad.load();
      while (r < cur && !bad.compare_exchange_weak(cur, r)) {
      }
    }
  }
  const std::int64_t r = bad.load();
  if (r == std::numeric_limits<std::int64_t>::max()) return;
  for (std::int64_t c = 0; c < cols; ++c) {
    const double v = elem_f32(m, stride, r, c);
    if (!std::isfinite(v))
      fail(ErrorCode::kNonFinite, std::string(kFn) + ": " + what + "[" + str(r) + "][" + str(c) +
                                      "] = " + fmt_num(v) + " is not finite");
  }
}

void check_grad(const char* what, const MutableMatrixView& g, std::int64_t rows,
                std::int64_t cols) {
  if (!g.data) return;
  if (g.dtype != DType::kF32)
    fail(ErrorCode::kInvalidArgument, std::string(kFn) + ": " + what + " has dtype " +
                                          DTypeName(g.dtype) + "; gradients are float32");
  if (g.rows != rows || g.cols != cols)
    fail(ErrorCode::kShapeMismatch, std::string(kFn) + ": " + what + " is " + str(g.rows) + "×" +
                                        str(g.cols) + " but must be " + str(rows) + "×" + str(cols));
  const std::int64_t s = g.row_stride == 0 ? cols : g.row_stride;
  if (s < cols)
    fail(ErrorCode::kInvalidArgument, std::string(kFn) + ": " + what + " row_stride " + str(s) +
                                          " is smaller than its " + str(cols) + " columns");
}

void check_options(const LinearCrossEntropyOptions& lo, std::int64_t V) {
  const CrossEntropyOptions& o = lo.loss;
  check_loss_options(kFn, o);
  auto bad = [&](const char* name, double v, const char* rule) {
    fail(ErrorCode::kInvalidArgument, std::string(kFn) + ": " + name + " = " + fmt_num(v) + " " + rule);
  };
  if (!(lo.grad_filter >= 0 && lo.grad_filter < 1))
    bad("grad_filter", lo.grad_filter, "must be in [0, 1) (0: off)");
  if (lo.chunk_rows < 0) bad("chunk_rows", static_cast<double>(lo.chunk_rows), "must be ≥ 0");
  if (lo.tile_cols < 0) bad("tile_cols", static_cast<double>(lo.tile_cols), "must be ≥ 0");
  if (lo.algorithm != Algo::kAuto && lo.algorithm != Algo::kTokenChunked &&
      lo.algorithm != Algo::kVocabTiled)
    fail(ErrorCode::kInvalidArgument, std::string(kFn) + ": invalid algorithm");
  if (lo.products != LinearCrossEntropyProducts::kAuto && lo.products != LinearCrossEntropyProducts::kBlas)
    fail(ErrorCode::kInvalidArgument, std::string(kFn) + ": invalid products (kAuto or kBlas)");
  if (lo.algorithm == Algo::kVocabTiled && o.focal_gamma > 0)
    fail(ErrorCode::kInvalidArgument,
         std::string(kFn) + ": focal_gamma = " + fmt_num(o.focal_gamma) +
             " needs algorithm token-chunked (the vocab-tiled design has no focal term)");
  if (lo.algorithm == Algo::kTokenChunked && lo.grad_filter > 0)
    fail(ErrorCode::kInvalidArgument,
         std::string(kFn) + ": grad_filter = " + fmt_num(lo.grad_filter) +
             " needs algorithm vocab-tiled (token-chunked computes every block anyway)");
  if (lo.grad_filter > 0 && o.focal_gamma > 0)
    fail(ErrorCode::kInvalidArgument, std::string(kFn) + ": grad_filter and focal_gamma cannot be combined");
  // (With options.communicator, linear_cross_entropy_sharded runs instead.)
  if (lo.vocab_offset != 0 || (lo.vocab_total != 0 && lo.vocab_total != V))
    fail(ErrorCode::kInvalidArgument,
         std::string(kFn) + ": a vocabulary shard (vocab_offset = " + str(lo.vocab_offset) +
             ", vocab_total = " + str(lo.vocab_total) + ", V = " + str(V) +
             ") needs options.communicator (issue 9)");
}

// ------------------------------------------------------------ the plan

Plan make_plan(const MatrixView& hidden, const MatrixView& weight, const float* bias,
               const Targets& targets, const LinearCrossEntropyOptions& lo,
               const LinearCrossEntropyOutputs& out) {
  Plan pl;
  pl.opt = &lo;
  pl.o = &lo.loss;
  pl.nt = thread_count(lo.loss.num_threads);
  pl.h = hidden;
  pl.w = weight;
  pl.hs = check_matrix("hidden", hidden.data, hidden.dtype, hidden.rows, hidden.cols,
                       hidden.row_stride, true);
  pl.wst = check_matrix("weight", weight.data, weight.dtype, weight.rows, weight.cols,
                        weight.row_stride, true);
  pl.N = hidden.rows;
  pl.D = hidden.cols;
  pl.V = weight.rows;
  if (weight.cols != pl.D)
    fail(ErrorCode::kShapeMismatch, std::string(kFn) + ": hidden is " + str(pl.N) + "×" + str(pl.D) +
                                        " but weight is " + str(pl.V) + "×" + str(weight.cols) +
                                        " (both need D = " + str(pl.D) + " columns)");
  if (pl.V == 0)
    fail(ErrorCode::kEmpty, std::string(kFn) + ": weight has V = 0 rows (classes); at least one is needed");
  if (pl.D == 0)
    fail(ErrorCode::kEmpty, std::string(kFn) + ": hidden and weight have D = 0 columns");
  check_options(lo, pl.V);
  check_grad("grad_hidden", out.grad_hidden, pl.N, pl.D);
  check_grad("grad_weight", out.grad_weight, pl.V, pl.D);
  pl.gh = out.grad_hidden.data != nullptr;
  pl.gw = out.grad_weight.data != nullptr;
  pl.gb = out.grad_bias != nullptr;
  pl.grad = pl.gh || pl.gw || pl.gb;
  pl.bias = bias;
  if (bias)
    for (std::int64_t c = 0; c < pl.V; ++c)
      if (!std::isfinite(bias[c]))
        fail(ErrorCode::kNonFinite, std::string(kFn) + ": bias[" + str(c) + "] = " +
                                        fmt_num(bias[c]) + " is not finite");
  const CrossEntropyOptions& o = lo.loss;
  if (o.class_weight) {
    NeumaierSum s;
    for (std::int64_t c = 0; c < pl.V; ++c) {
      const double w = o.class_weight[c];
      if (!(w >= 0) || !std::isfinite(w))
        fail(ErrorCode::kInvalidArgument, std::string(kFn) + ": class_weight[" + str(c) + "] = " +
                                              fmt_num(w) + " must be finite and ≥ 0");
      s.add(w);
    }
    pl.w_total = s.value();
  } else {
    pl.w_total = static_cast<double>(pl.V);
  }
  // Targets: index only, validated here so that errors name the global row.
  if (targets.kind == Targets::Kind::kSoft)
    fail(ErrorCode::kInvalidArgument,
         std::string(kFn) + ": soft targets are not supported (an N×V target is the "
                            "materialization this function avoids); use class indices");
  if (targets.kind != Targets::Kind::kIndexInt32 && targets.kind != Targets::Kind::kIndexInt64)
    fail(ErrorCode::kInvalidArgument, std::string(kFn) + ": invalid targets kind");
  if (pl.N > 0 && targets.indices == nullptr)
    fail(ErrorCode::kInvalidArgument, std::string(kFn) + ": targets.indices is null");
  pl.targets = targets.indices;
  pl.t64 = targets.kind == Targets::Kind::kIndexInt64;
  pl.ignore_index = o.ignore_index;
  NeumaierSum ws;
  for (std::int64_t r = 0; r < pl.N; ++r) {
    const std::int64_t t = pl.target(r);
    if (t == o.ignore_index) continue;
    if (t < 0 || t >= pl.V)
      fail(ErrorCode::kTargetOutOfRange,
           std::string(kFn) + ": targets[" + str(r) + "] = " + str(t) + " is out of range [0, " +
               str(pl.V) + ") and is not ignore_index (" + str(o.ignore_index) + ")");
    ++pl.count;
    ws.add(o.class_weight ? o.class_weight[t] : 1.0);
  }
  pl.wsum = ws.value();
  check_finite_matrix("hidden", hidden, pl.hs, pl.nt);
  check_finite_matrix("weight", weight, pl.wst, pl.nt);

  pl.mean = o.reduction == Reduction::kMean;
  pl.ce_empty = pl.mean && !(pl.wsum > 0);
  pl.z_empty = pl.mean && pl.count == 0;
  pl.scale_ce = o.grad_scale * (pl.mean ? (pl.ce_empty ? 0.0 : 1.0 / pl.wsum) : 1.0);
  pl.scale_z = o.grad_scale * (pl.mean ? (pl.z_empty ? 0.0 : 1.0 / static_cast<double>(pl.count)) : 1.0);
  const double eps = o.label_smoothing, Vd = static_cast<double>(pl.V);
  if (o.smoothing == Smoothing::kUniform) {
    pl.a = 1 - eps;
    pl.b = eps / Vd;
  } else {  // (1 − ε)p + ε(1 − p)/(V − 1); with V = 1 there is no other class
    pl.b = pl.V > 1 ? eps / (Vd - 1) : 0.0;
    pl.a = pl.V > 1 ? 1 - eps - pl.b : 1.0;
  }
  return pl;
}

// The reduced loss from the summed CE and z parts (as cross_entropy_loss).
void finish_result(const Plan& pl, double ce, double zl, LinearCrossEntropyResult& res) {
  const CrossEntropyOptions& o = *pl.o;
  res.count = pl.count;
  res.weight_sum = pl.wsum;
  detail::reduce_loss(o, ce, zl, pl.wsum, pl.count, res);
}

std::size_t budget_bytes(const Plan& pl) {
  if (pl.opt->max_buffer_bytes) return pl.opt->max_buffer_bytes;
  // 1/112 of the 2·N·V floats of logits + gradient: the "100× less"
  // with room for the O(N) row state (the logits buffer and, with our own
  // kernels, the transposed chunk of H both count against it).
  return static_cast<std::size_t>(2.0 * static_cast<double>(pl.N) * static_cast<double>(pl.V) *
                                  4.0 / 112.0);
}

// Whether the token-chunked products run on the AVX-512 kernels of
// src/cpu/chunk_gemm.cc rather than OpenBLAS.
bool own_products(const Plan& pl) {
  return pl.opt->products == LinearCrossEntropyProducts::kAuto && cpu::chunk_gemm_supported();
}

// The token chunk that fills the budget: chunk × V logits, and with our own
// kernels (*own) from 16 rows on the transposed chunk of H beside them
// (16-row padded), rounded down to whole vectors of 16 rows (the logits
// kernel's row blocks). Below 16 rows our kernels need no scratch (logits
// as dot products of 4-row groups): the chunk is rounded down to whole
// groups of 4; below 4 rows the chunk goes to OpenBLAS (*own = false).
std::int64_t default_chunk_rows(const Plan& pl, std::size_t budget, bool* own) {
  const auto blas_rows = static_cast<std::int64_t>(budget / (4 * static_cast<std::size_t>(pl.V)));
  if (!*own) return blas_rows;
  const std::size_t floats = budget / 4;
  auto fits = [&](std::int64_t nb) {
    return static_cast<std::size_t>(nb * pl.V) + cpu::chunk_logits_scratch(nb, pl.D) <= floats;
  };
  auto nb = static_cast<std::int64_t>(floats / static_cast<std::size_t>(pl.V + pl.D));
  nb = nb / 16 * 16;
  while (nb >= 16 && !fits(nb)) nb -= 16;
  if (nb >= 16) return nb;
  nb = std::min<std::int64_t>(blas_rows, 15) / 4 * 4;
  if (nb >= 4) return nb;
  *own = false;
  return blas_rows;
}

void zero_matrix(const MutableMatrixView& g, int nt) {
  if (!g.data) return;
  const std::int64_t s = g.row_stride == 0 ? g.cols : g.row_stride;
  float* p = static_cast<float*>(g.data);
#pragma omp parallel for num_threads(par(nt, g.rows * g.cols)) schedule(static)
  for (std::int64_t r = 0; r < g.rows; ++r) std::memset(p + r * s, 0, sizeof(float) * g.cols);
}

std::int64_t stride_of(const MutableMatrixView& g) { return g.row_stride == 0 ? g.cols : g.row_stride; }

// ====================================== evaluation of small chunks (no logits)

// run_row_stats' sums of one chunk.
struct ChunkSums {
  double ce = 0, zl = 0;
  std::int64_t correct = 0;
};

// The threads run_row_stats may use for an evaluation call whose token
// chunks would be small (< 16 rows, the dot-product form), 0 where it may
// not run. It needs float32 inputs on our kernels, the default chunk,
// V < 2^24 (cpu::chunk_row_stats' limit), options whose row loss needs only
// the row's (max, Σexp, target logit, argmax), and per thread one
// transposed 16-row chunk of hidden within the budget (beside the per-chunk
// sums); at most nt threads.
int row_stats_threads(const Plan& pl, std::int64_t nb, bool own, std::size_t budget, int nt) {
  const CrossEntropyOptions& o = *pl.o;
  if (pl.grad || !own || pl.opt->chunk_rows != 0 || nb >= cpu::kSmallChunkRows || pl.V >= (1 << 24) ||
      pl.h.dtype != DType::kF32 || pl.w.dtype != DType::kF32 || o.softcap != 0 || o.temperature != 1.0 ||
      o.focal_gamma != 0 || o.label_smoothing != 0)
    return 0;
  const auto sums =
      static_cast<std::size_t>((pl.N + cpu::kStatsChunkRows - 1) / cpu::kStatsChunkRows) * sizeof(ChunkSums);
  const auto per_thread = static_cast<std::size_t>(cpu::kStatsChunkRows * std::max<std::int64_t>(pl.D, 1)) * 4;
  if (budget < sums + per_thread) return 0;
  return static_cast<int>(std::min<std::size_t>((budget - sums) / per_thread, static_cast<std::size_t>(nt)));
}

// Evaluation in chunks of 16 rows whose logits are never stored: each
// chunk's per-row statistics come from cpu::chunk_row_stats, which folds
// them tile by tile while the logits are in L1 (the small-chunk path wrote
// and re-read every logit, with the dot-product kernel's reductions: 1.09–
// 1.15× of H·Wᵀ at 512×256×1000, this path 1.01–1.02×; see
// docs/performance.md).
// Chunks are handed to the threads dynamically; each chunk's sums are kept
// apart and added in chunk order at the end: the same bits for any thread
// count. Returns nullopt where an active row has a NaN or +inf logit, or
// only -inf ones: the caller then runs the chunked path, whose loss names
// the row.
std::optional<LinearCrossEntropyResult> run_row_stats(const Plan& pl, const LinearCrossEntropyOutputs& out,
                                                      int threads) {
  const std::int64_t N = pl.N, D = pl.D, V = pl.V;
  const CrossEntropyOptions& o = *pl.o;
  constexpr std::int64_t kRows = cpu::kStatsChunkRows;
  const auto* H = static_cast<const float*>(pl.h.data);
  const auto* W = static_cast<const float*>(pl.w.data);
  const float* cw = o.class_weight;
  const double z = o.z_loss;
  const std::int64_t nchunks = (N + kRows - 1) / kRows;
  threads = static_cast<int>(std::clamp<std::int64_t>(nchunks, 1, threads));
  Buffer tbuf;
  float* hts = tbuf.get(static_cast<std::size_t>(threads * kRows * D));
  std::vector<ChunkSums> sums(static_cast<std::size_t>(nchunks));
  std::atomic<bool> bad{false};
#pragma omp parallel num_threads(threads)
  {
    float* ht = hts + omp_get_thread_num() * kRows * D;
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t k = 0; k < nchunks; ++k) {
      if (bad.load(std::memory_order_relaxed)) continue;
      const std::int64_t r0 = k * kRows, c = std::min(kRows, N - r0);
      alignas(64) std::int32_t tg[kRows];
      for (std::int64_t i = 0; i < kRows; ++i) tg[i] = i < c ? static_cast<std::int32_t>(pl.tgt(r0 + i)) : -1;
      cpu::ChunkRowStats cs;
      cpu::chunk_row_stats(c, V, D, H + r0 * pl.hs, pl.hs, W, pl.wst, pl.bias, tg, o.compute_accuracy, ht, &cs);
      NeumaierSum ce_k, z_k;
      std::int64_t correct_k = 0;
      for (std::int64_t i = 0; i < c; ++i) {
        const std::int64_t n = r0 + i, y = tg[i];
        const double m = cs.m[i], sm1 = cs.sm1[i];
        if (y >= 0 && !(std::isfinite(m) && std::isfinite(sm1))) {  // NaN, +inf, all -inf
          bad.store(true, std::memory_order_relaxed);
          break;
        }
        // An ignored row is not inspected, but its lse is what
        // cross_entropy_loss writes: NaN for a NaN or +inf logit, -inf
        // where every logit is -inf.
        const double log_s = std::log1p(sm1);
        const double l = std::isfinite(m) || m == -std::numeric_limits<double>::infinity()
                             ? m + log_s
                             : std::numeric_limits<double>::quiet_NaN();
        if (out.row_lse) out.row_lse[n] = static_cast<float>(l);
        double row = 0;
        if (y >= 0) {
          // (m − z_y) is exact: a confident row's loss keeps log1p's
          // relative accuracy.
          const double ce = (cw ? cw[y] : 1.0) * ((m - cs.zt[i]) + log_s);
          const double zl = z * l * l;
          ce_k.add(ce);
          z_k.add(zl);
          row = ce + zl;
          if (o.compute_accuracy && cs.argmax[i] == y) ++correct_k;
        }
        if (out.row_loss) out.row_loss[n] = static_cast<float>(row);
      }
      sums[static_cast<std::size_t>(k)] = {ce_k.value(), z_k.value(), correct_k};
    }
  }
  if (bad.load()) return std::nullopt;
  LinearCrossEntropyResult res;
  res.algorithm = Algo::kTokenChunked;
  res.chunk_rows = kRows;
  res.tile_cols = V;
  res.buffer_bytes = static_cast<std::size_t>(threads * kRows * D) * 4 + sums.size() * sizeof(ChunkSums);
  res.own_products = true;
  NeumaierSum ce_sum, z_sum;
  for (const ChunkSums& k : sums) {
    ce_sum.add(k.ce);
    z_sum.add(k.zl);
    res.correct += k.correct;
  }
  finish_result(pl, ce_sum.value(), z > 0 ? z_sum.value() : 0.0, res);
  return res;
}

// ================================================= token-chunked (Liger shape)

LinearCrossEntropyResult run_token_chunked(const Plan& pl, const Targets& targets,
                                           const LinearCrossEntropyOutputs& out) {
  const std::int64_t N = pl.N, D = pl.D, V = pl.V;
  const int nt = pl.nt;
  const std::size_t budget = budget_bytes(pl);
  bool own = own_products(pl);
  std::int64_t nb = pl.opt->chunk_rows;
  if (nb == 0) nb = default_chunk_rows(pl, budget, &own);
  nb = std::clamp<std::int64_t>(nb, 1, std::max<std::int64_t>(N, 1));
  if (const int T = row_stats_threads(pl, nb, own, budget, nt); T > 0)
    if (auto r = run_row_stats(pl, out, T)) return *r;
  // bfloat16 weight: converted in vocabulary sub-tiles of ≤ budget/4 bytes.
  std::int64_t vs = V;
  if (pl.w.dtype != DType::kF32)
    vs = std::clamp<std::int64_t>(static_cast<std::int64_t>(budget / 16 / static_cast<std::size_t>(D)), 1, V);

  LinearCrossEntropyResult res;
  res.algorithm = Algo::kTokenChunked;
  res.chunk_rows = nb;
  res.tile_cols = V;
  res.buffer_bytes = static_cast<std::size_t>(nb * V) * 4;
  res.own_products = own;

  // The fused loss per chunk runs with reduction sum; the mean's two
  // denominators (Σw[y] for the CE part, the row count for the z-loss part)
  // go into grad_scale and a rescaled z-loss coefficient: with
  // s = scale_ce and z' = z·scale_z/scale_ce, s·(dCE + z'·dlse²) is exactly
  // scale_ce·dCE + scale_z·z·dlse².
  CrossEntropyOptions co = *pl.o;
  co.reduction = Reduction::kSum;
  co.num_threads = nt;
  const double z = pl.o->z_loss;
  double zc = z;  // the coefficient the kernel uses
  // A mean over rows whose class weights are all 0 has no CE gradient but a
  // z-loss gradient: that needs a second, gradient-only call with zero class
  // weights (a corner case; the forward call keeps the real weights).
  const bool split_z = pl.grad && z > 0 && pl.scale_ce == 0 && pl.scale_z != 0;
  std::vector<float> zero_w;
  if (pl.scale_ce != 0) {
    co.grad_scale = pl.scale_ce;
    zc = z * pl.scale_z / pl.scale_ce;
  } else {
    co.grad_scale = 0;
  }
  co.z_loss = zc;
  CrossEntropyOptions cz = *pl.o;  // only for split_z
  if (split_z) {
    zero_w.assign(static_cast<std::size_t>(V), 0.0f);
    cz.reduction = Reduction::kSum;
    cz.num_threads = nt;
    cz.class_weight = zero_w.data();
    cz.label_smoothing = 0;
    cz.grad_scale = pl.scale_z;
    cz.focal_gamma = 0;
    cz.compute_accuracy = false;
  }

  Buffer lbuf, hbuf, wbuf, tbuf;
  float* L = lbuf.get(static_cast<std::size_t>(nb * V));
  // The AVX-512 logits kernel reads H transposed (scratch, in the budget).
  float* ht = nullptr;
  if (own) {
    const std::size_t n = cpu::chunk_logits_scratch(nb, D);
    res.buffer_bytes += n * 4;
    ht = tbuf.get(n);
  }
  std::vector<float> lse_tmp;
  float* lse = out.row_lse;
  if (!lse && zc != z) {
    lse_tmp.resize(static_cast<std::size_t>(N));
    lse = lse_tmp.data();
  }
  float* gH = static_cast<float*>(out.grad_hidden.data);
  float* gW = static_cast<float*>(out.grad_weight.data);
  const std::int64_t ldgh = stride_of(out.grad_hidden), ldgw = stride_of(out.grad_weight);
  zero_matrix(out.grad_weight, nt);
  if (pl.gb) std::fill(out.grad_bias, out.grad_bias + V, 0.0f);

  NeumaierSum ce_sum, z_sum;
  // Rows [r0, r0 + c) of the token chunk of rows [k0, k0 + kc), whose
  // logits (bias not yet added) are at Lr: the fused loss turns them into
  // G = d loss / d logits in place. Threads: inner_nt, or (inner_nt = 0)
  // the calling thread inside our parallel region, through
  // detail::cross_entropy_loss_in_region. Writes only these rows' outputs
  // (callers may run disjoint rows at once); the sums are for add_result.
  auto chunk_loss = [&](std::int64_t r0, std::int64_t c, float* Lr, int inner_nt, std::int64_t k0,
                        std::int64_t kc) {
    const bool in_region = inner_nt == 0;
    if (in_region) inner_nt = 1;
    add_bias(pl.bias, 0, Lr, c, V, V, inner_nt);
    const MatrixView lv{Lr, DType::kF32, c, V, V};
    Targets tc = targets;
    tc.indices = targets.kind == Targets::Kind::kIndexInt64
                     ? static_cast<const void*>(static_cast<const std::int64_t*>(targets.indices) + r0)
                     : static_cast<const void*>(static_cast<const std::int32_t*>(targets.indices) + r0);
    CrossEntropyOutputs co_out;
    co_out.row_loss = out.row_loss ? out.row_loss + r0 : nullptr;
    co_out.row_lse = lse ? lse + r0 : nullptr;
    if (pl.grad && !split_z) co_out.grad = MutableMatrixView{Lr, DType::kF32, c, V, V};
    CrossEntropyResult cr;
    CrossEntropyOptions o1 = co, o2 = cz;
    o1.num_threads = o2.num_threads = par(inner_nt, c * V);
    const auto loss = in_region ? &detail::cross_entropy_loss_in_region : &cross_entropy_loss;
    try {
      cr = loss(lv, tc, o1, co_out);
      if (split_z) {
        CrossEntropyOutputs zo;
        zo.grad = MutableMatrixView{Lr, DType::kF32, c, V, V};
        loss(lv, tc, o2, zo);
      }
    } catch (const Error& e) {
      throw Error(e.code(), std::string(kFn) + ": in the token chunk of rows [" + str(k0) + ", " +
                                str(k0 + kc) + ") (rows below count from " + str(r0) + "): " + e.what());
    }
    if (out.row_loss && zc != z) {
      // The kernel's row loss carries z'·lse²; report the true z·lse².
      for (std::int64_t i = 0; i < c; ++i)
        if (pl.tgt(r0 + i) >= 0) {
          const double l = lse[r0 + i];
          out.row_loss[r0 + i] = static_cast<float>(out.row_loss[r0 + i] + (z - zc) * l * l);
        }
    }
    return cr;
  };
  auto add_result = [&](const CrossEntropyResult& cr) {
    ce_sum.add(cr.loss - cr.z_loss);
    z_sum.add(cr.z_loss);
    res.correct += cr.correct;
  };

  if (own && nb < cpu::kSmallChunkRows && pl.h.dtype == DType::kF32 && pl.w.dtype == DType::kF32) {
    // Small chunks (the memory bound of small shapes: 8 rows at
    // 512×256×1000), float32 read in place: one parallel region for all of
    // them, so that a chunk costs three barriers rather than five
    // fork/joins. The per-row loss work runs on at most 2 threads (a chunk's
    // two halves; 4 rows each at that shape).
    const auto* H = static_cast<const float*>(pl.h.data);
    const auto* W = static_cast<const float*>(pl.w.data);
    // Half h of a chunk of c rows: its first row and row count (the second
    // half of a one-row chunk is empty). Always the same two halves, whatever
    // the thread count, so the same sums.
    auto half_of = [](std::int64_t c, int h) -> std::pair<std::int64_t, std::int64_t> {
      const std::int64_t half = (c + 1) / 2;
      if (h == 0) return {0, half};
      return {half, c - half};
    };
    std::exception_ptr err[2];
    CrossEntropyResult part[2];
    if (!pl.grad) {
      // Evaluation: each chunk in the same two halves of rows as below, but
      // each half is a stream of its own, run on its own thread (thread 0
      // both on one thread) with its logits over all classes in its own
      // rows of L: no barrier, and no thread reads a line another wrote.
      // The sums are kept per stream and added at the end: the same bits
      // for any thread count, but not the same last bits as the training
      // path's loss, which adds the halves chunk by chunk. Each thread reads
      // all of W per chunk (from L2/L3) where the split by classes read half.
      NeumaierSum ce_half[2], z_half[2];
      std::int64_t correct_half[2] = {0, 0}, err_row[2] = {N, N};
#pragma omp parallel num_threads(nt)
      {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        for (int h = 0; h < 2; ++h) {
          if (h % T != t) continue;
          for (std::int64_t r0 = 0; r0 < N; r0 += nb) {
            const std::int64_t c = std::min(nb, N - r0);
            const auto [a, n] = half_of(c, h);
            if (n == 0) continue;
            cpu::small_chunk_logits(n, V, D, H + (r0 + a) * pl.hs, pl.hs, W, pl.wst, L + a * V, V, 0, 1);
            try {
              const CrossEntropyResult cr = chunk_loss(r0 + a, n, L + a * V, 0, r0, c);
              ce_half[h].add(cr.loss - cr.z_loss);
              z_half[h].add(cr.z_loss);
              correct_half[h] += cr.correct;
            } catch (...) {
              err[h] = std::current_exception();
              err_row[h] = r0 + a;
              break;
            }
          }
        }
      }
      if (err[0] || err[1]) std::rethrow_exception(err[err_row[1] < err_row[0] ? 1 : 0]);
      for (int h = 0; h < 2; ++h) {
        ce_sum.add(ce_half[h].value());
        z_sum.add(z_half[h].value());
        res.correct += correct_half[h];
      }
    } else {
#pragma omp parallel num_threads(nt)
      {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        for (std::int64_t r0 = 0; r0 < N; r0 += nb) {
          const std::int64_t c = std::min(nb, N - r0);
          const float* Hc = H + r0 * pl.hs;
          cpu::small_chunk_logits(c, V, D, Hc, pl.hs, W, pl.wst, L, V, t, T);
#pragma omp barrier
          // The loss in the two halves, threads 0 and 1 one each (thread 0
          // both on one thread). Split, each half reads the other thread's
          // columns of half the rows; on one thread it read all of them, and
          // the next chunk's logits on the other thread then waited for their
          // cache lines (its logits took 1.4× as long).
          for (int h = 0; h < 2; ++h) {
            const auto [a, n] = half_of(c, h);
            if (h % T != t || n == 0) continue;
            try {
              part[h] = chunk_loss(r0 + a, n, L + a * V, 0, r0, c);
            } catch (...) {
              err[h] = std::current_exception();
            }
          }
#pragma omp barrier
          // (G is complete, and err is seen by all.)
          if (err[0] || err[1]) break;
          // The master reads part[] before the next chunk's first barrier,
          // and grad_bias reads G while both products read it.
#pragma omp master
          {
            add_result(part[0]);
            if (c > 1) add_result(part[1]);
            if (pl.gb) add_colsums(L, c, V, V, out.grad_bias, 1);
          }
          if (gH) cpu::small_chunk_grad_hidden(c, V, D, L, V, W, pl.wst, gH + r0 * ldgh, ldgh, false, t, T);
          if (gW) cpu::small_chunk_grad_weight(c, V, D, L, V, Hc, pl.hs, gW, ldgw, t, T);
#pragma omp barrier
        }
      }
      for (const auto& e : err)
        if (e) std::rethrow_exception(e);
    }
  } else {
    for (std::int64_t r0 = 0; r0 < N; r0 += nb) {
      const std::int64_t c = std::min(nb, N - r0);
      std::int64_t ldh = 0, ldw = 0;
      const float* Hc = rows_f32(pl.h, pl.hs, r0, c, hbuf, &ldh, nt);
      for (std::int64_t v0 = 0; v0 < V; v0 += vs) {
        const std::int64_t nv = std::min(vs, V - v0);
        const float* Wt = rows_f32(pl.w, pl.wst, v0, nv, wbuf, &ldw, nt);
        if (own)
          cpu::chunk_logits(c, nv, D, Hc, ldh, Wt, ldw, L + v0, V, ht, nt);
        else
          blas::sgemm(false, true, c, nv, D, 1.0f, Hc, ldh, Wt, ldw, 0.0f, L + v0, V);
      }
      add_result(chunk_loss(r0, c, L, nt, r0, c));
      if (!pl.grad) continue;
      if (pl.gb) add_colsums(L, c, V, V, out.grad_bias, nt);
      // L now holds G = d loss / d logits for the chunk.
      for (std::int64_t v0 = 0; v0 < V; v0 += vs) {
        const std::int64_t nv = std::min(vs, V - v0);
        const float* Wt = rows_f32(pl.w, pl.wst, v0, nv, wbuf, &ldw, nt);
        if (own) {
          if (gH) cpu::chunk_grad_hidden(c, nv, D, L + v0, V, Wt, ldw, gH + r0 * ldgh, ldgh, v0 != 0, ht, nt);
          if (gW) cpu::chunk_grad_weight(c, nv, D, L + v0, V, Hc, ldh, gW + v0 * ldgw, ldgw, nt);
          continue;
        }
        if (gH)
          blas::sgemm(false, false, c, D, nv, 1.0f, L + v0, V, Wt, ldw, v0 == 0 ? 0.0f : 1.0f,
                      gH + r0 * ldgh, ldgh);
        if (gW)
          blas::sgemm(true, false, nv, D, c, 1.0f, L + v0, V, Hc, ldh, 1.0f, gW + v0 * ldgw, ldgw);
      }
    }
  }
  // The kernel summed z'·lse²; the true z-part is z/z' times that.
  const double zl = zc > 0 ? z_sum.value() * (z / zc) : 0.0;
  finish_result(pl, ce_sum.value(), zl, res);
  return res;
}

// ================================================ vocabulary-tiled (CCE shape)

// Per-row state of pass 1, kept small (it counts against the memory budget):
// the optional parts (smoothing, accuracy) live in their own vectors.
struct RowState {
  double m = -std::numeric_limits<double>::infinity();  // running max of u; then the lse
  double s = 0;                                         // Σ exp(u − m)
  float uy = 0;                                         // u at the target (u is float)
  float alpha = 0, gamma = 0;                           // pass 2 coefficients
};

// u = (softcap ? cap·tanh(z/cap) : z) / T, in place.
void transform_row(float* z, std::int64_t n, double cap, double T) {
  if (cap > 0) {
    const double inv_cap = 1.0 / cap, inv_t = 1.0 / T;
    for (std::int64_t j = 0; j < n; ++j)
      z[j] = static_cast<float>(cap * std::tanh(z[j] * inv_cap) * inv_t);
  } else if (T != 1.0) {
    const float inv_t = static_cast<float>(1.0 / T);
    for (std::int64_t j = 0; j < n; ++j) z[j] *= inv_t;
  }
}

LinearCrossEntropyResult run_vocab_tiled(const Plan& pl, const LinearCrossEntropyOutputs& out) {
  const std::int64_t N = pl.N, D = pl.D, V = pl.V;
  const int nt = pl.nt;
  const CrossEntropyOptions& o = *pl.o;
  const bool smooth = pl.b != 0;
  // The budget covers the logits block and the per-row state together.
  const std::size_t state = static_cast<std::size_t>(N) *
                            (sizeof(RowState) + sizeof(std::int64_t) + (smooth ? 8 : 0));
  const std::size_t budget = budget_bytes(pl);
  const std::size_t budget_floats = std::max<std::size_t>(budget > 2 * state ? (budget - state) / 4 : budget / 8, 1);
  std::int64_t vt = pl.opt->tile_cols, nb = pl.opt->chunk_rows;
  if (vt == 0) {
    // Square-ish blocks maximize the products' arithmetic intensity.
    const auto side = static_cast<std::int64_t>(std::sqrt(static_cast<double>(budget_floats)));
    vt = nb ? static_cast<std::int64_t>(budget_floats) / nb : std::max<std::int64_t>(side, 16);
    if (vt < V && vt > 16) vt -= vt % 16;
  }
  vt = std::clamp<std::int64_t>(vt, 1, V);
  if (nb == 0) nb = static_cast<std::int64_t>(budget_floats) / vt;
  nb = std::clamp<std::int64_t>(nb, 1, std::max<std::int64_t>(N, 1));
  const std::int64_t ntiles = (V + vt - 1) / vt;

  LinearCrossEntropyResult res;
  res.algorithm = Algo::kVocabTiled;
  res.chunk_rows = nb;
  res.tile_cols = vt;
  res.buffer_bytes = static_cast<std::size_t>(nb * vt) * 4;

  const double cap = o.softcap, T = o.temperature;
  const bool transform = cap > 0 || T != 1.0;
  const float* cw = o.class_weight;
  const double thr = pl.opt->grad_filter;
  const bool filter = pl.grad && thr > 0;

  std::vector<RowState> st(static_cast<std::size_t>(N));
  std::vector<double> cu(smooth ? static_cast<std::size_t>(N) : 0);  // Σ c_j·u_j
  std::vector<float> best(o.compute_accuracy ? static_cast<std::size_t>(N) : 0,
                          -std::numeric_limits<float>::infinity());
  std::vector<std::int64_t> arg(o.compute_accuracy ? static_cast<std::size_t>(N) : 0, -1);
  std::vector<float> tile_max;  // N × ntiles (filtering only)
  if (filter) tile_max.resize(static_cast<std::size_t>(N * ntiles));
  Buffer lbuf, hbuf, wbuf;
  float* L = lbuf.get(static_cast<std::size_t>(nb * vt));
  std::atomic<std::int64_t> bad_row{-1};

  // ---- pass 1: online (max, Σexp, Σc·u) per row over the vocabulary tiles
  for (std::int64_t t = 0; t < ntiles; ++t) {
    const std::int64_t v0 = t * vt, nv = std::min(vt, V - v0);
    std::int64_t ldw = 0, ldh = 0;
    const float* Wt = rows_f32(pl.w, pl.wst, v0, nv, wbuf, &ldw, nt);
    for (std::int64_t r0 = 0; r0 < N; r0 += nb) {
      const std::int64_t c = std::min(nb, N - r0);
      const float* Hb = rows_f32(pl.h, pl.hs, r0, c, hbuf, &ldh, nt);
      blas::sgemm(false, true, c, nv, D, 1.0f, Hb, ldh, Wt, ldw, 0.0f, L, nv);
      add_bias(pl.bias, v0, L, c, nv, nv, nt);
#pragma omp parallel for num_threads(par(nt, c * nv)) schedule(static)
      for (std::int64_t i = 0; i < c; ++i) {
        const std::int64_t n = r0 + i;
        float* u = L + i * nv;
        RowState& rs = st[n];
        transform_row(u, nv, cap, T);
        cpu::CoefSpec spec;
        spec.w = cw ? cw + v0 : nullptr;
        spec.want_coef = smooth;
        cpu::ChunkStats cs;
        cpu::ChunkStatsF32(u, static_cast<std::size_t>(nv), spec, &cs);
        bool nonfinite = cs.nonfinite;
        if (nonfinite) {  // the kernel's flag may be a false alarm (overflowed sum)
          nonfinite = false;
          for (std::int64_t j = 0; j < nv; ++j) nonfinite |= !std::isfinite(u[j]);
        }
        if (nonfinite) {
          std::int64_t cur = bad_row.load();
          while ((cur < 0 || n < cur) && !bad_row.compare_exchange_weak(cur, n)) {
          }
          continue;
        }
        if (cs.max > rs.m) {
          rs.s = rs.s * std::exp(rs.m - cs.max) + cs.sum_exp;
          rs.m = cs.max;
        } else {
          rs.s += cs.sum_exp * std::exp(cs.max - rs.m);
        }
        if (smooth) cu[n] += cs.coef_sum * cs.max - cs.coef_dot;
        const std::int64_t y = pl.tgt(n);
        if (y >= v0 && y < v0 + nv) rs.uy = u[y - v0];
        if (o.compute_accuracy && cs.max > best[n]) {
          best[n] = static_cast<float>(cs.max);
          for (std::int64_t j = 0; j < nv; ++j)
            if (u[j] == best[n]) {
              arg[n] = v0 + j;
              break;
            }
        }
        if (filter) tile_max[n * ntiles + t] = static_cast<float>(cs.max);
      }
      if (bad_row.load() >= 0) {
        const std::int64_t n = bad_row.load();
        fail(ErrorCode::kNonFinite,
             std::string(kFn) + ": row " + str(n) + " has a non-finite logit among classes [" +
                 str(v0) + ", " + str(v0 + nv) + ") (hidden·weightᵀ + bias overflowed" +
                 (transform ? " after softcap/temperature" : "") + ")");
      }
    }
  }

  // ---- the per-row results
  NeumaierSum ce_sum, z_sum;
  const double z = o.z_loss;
  for (std::int64_t n = 0; n < N; ++n) {
    RowState& rs = st[n];
    const double l = rs.m + std::log(rs.s);
    rs.m = l;  // from here on: the lse
    if (out.row_lse) out.row_lse[n] = static_cast<float>(l);
    const std::int64_t y = pl.tgt(n);
    double row = 0;
    if (y >= 0) {
      const double wy = cw ? cw[y] : 1.0;
      double ce = pl.a * wy * (l - rs.uy);
      if (smooth) ce += pl.b * (l * pl.w_total - cu[n]);
      const double zt = z * l * l;
      ce_sum.add(ce);
      z_sum.add(zt);
      row = ce + zt;
      if (o.compute_accuracy && arg[n] == y) ++res.correct;
    }
    if (out.row_loss) out.row_loss[n] = static_cast<float>(row);
  }
  finish_result(pl, ce_sum.value(), z > 0 ? z_sum.value() : 0.0, res);
  if (!pl.grad) return res;

  // ---- pass 2: recompute each block, its gradient, and the products
  // Per row: dloss/du_j = α·q_j − β·w_j − [j = y]·γ with q_j = exp(u_j − lse),
  //   α = s_ce·(a·w_y + b·Σw) + 2·z·s_z·lse,  β = s_ce·b,  γ = s_ce·a·w_y;
  // then du/dz = (1 − tanh²(z/cap))/T = (1 − (T·u/cap)²)/T.
  for (std::int64_t n = 0; n < N; ++n) {
    const std::int64_t y = pl.tgt(n);
    if (y < 0) continue;
    const double wy = cw ? cw[y] : 1.0;
    st[n].alpha = static_cast<float>(pl.scale_ce * (pl.a * wy + pl.b * pl.w_total) +
                                     2 * z * pl.scale_z * st[n].m);
    st[n].gamma = static_cast<float>(pl.scale_ce * pl.a * wy);
  }
  const double beta_all = pl.scale_ce * pl.b;
  float* gH = static_cast<float*>(out.grad_hidden.data);
  float* gW = static_cast<float*>(out.grad_weight.data);
  const std::int64_t ldgh = stride_of(out.grad_hidden), ldgw = stride_of(out.grad_weight);
  zero_matrix(out.grad_weight, nt);
  zero_matrix(out.grad_hidden, nt);
  if (pl.gb) std::fill(out.grad_bias, out.grad_bias + V, 0.0f);
  const double log_thr = filter ? std::log(thr) : 0.0;
  Buffer cap_scratch;  // per-thread rows for the softcap chain rule
  float* cs_rows = cap > 0 ? cap_scratch.get(static_cast<std::size_t>(nt * vt)) : nullptr;
  std::vector<float> wrow, hrow;

  for (std::int64_t t = 0; t < ntiles; ++t) {
    const std::int64_t v0 = t * vt, nv = std::min(vt, V - v0);
    std::int64_t ldw = 0, ldh = 0;
    const float* Wt = rows_f32(pl.w, pl.wst, v0, nv, wbuf, &ldw, nt);
    for (std::int64_t r0 = 0; r0 < N; r0 += nb) {
      const std::int64_t c = std::min(nb, N - r0);
      ++res.blocks;
      if (filter) {
        bool keep = false;
        for (std::int64_t i = 0; i < c && !keep; ++i) {
          const std::int64_t n = r0 + i;
          keep = pl.tgt(n) >= 0 && st[n].alpha != 0 &&
                 tile_max[n * ntiles + t] - st[n].m >= log_thr;
        }
        if (!keep) {
          // Every q in the block is below the threshold: drop α·q and β·w,
          // keep the target term −γ exactly (rank-1 updates).
          ++res.blocks_skipped;
          wrow.resize(static_cast<std::size_t>(D));
          hrow.resize(static_cast<std::size_t>(D));
          for (std::int64_t i = 0; i < c; ++i) {
            const std::int64_t n = r0 + i, y = pl.tgt(n);
            if (y < v0 || y >= v0 + nv || st[n].gamma == 0) continue;
            double chain = 1.0 / T;
            if (cap > 0) {
              const double sc = T * st[n].uy / cap;
              chain *= 1 - sc * sc;
            }
            const float g = static_cast<float>(-st[n].gamma * chain);
            if (pl.gb) out.grad_bias[y] += g;
            for (std::int64_t k = 0; k < D; ++k) {
              wrow[k] = elem_f32(pl.w, pl.wst, y, k);
              hrow[k] = elem_f32(pl.h, pl.hs, n, k);
            }
            if (gH)
              for (std::int64_t k = 0; k < D; ++k) gH[n * ldgh + k] += g * wrow[k];
            if (gW)
              for (std::int64_t k = 0; k < D; ++k) gW[y * ldgw + k] += g * hrow[k];
          }
          continue;
        }
      }
      const float* Hb = rows_f32(pl.h, pl.hs, r0, c, hbuf, &ldh, nt);
      blas::sgemm(false, true, c, nv, D, 1.0f, Hb, ldh, Wt, ldw, 0.0f, L, nv);
      add_bias(pl.bias, v0, L, c, nv, nv, nt);
#pragma omp parallel for num_threads(par(nt, c * nv)) schedule(static)
      for (std::int64_t i = 0; i < c; ++i) {
        const std::int64_t n = r0 + i, y = pl.tgt(n);
        float* u = L + i * nv;
        if (y < 0 || (st[n].alpha == 0 && st[n].gamma == 0 && beta_all == 0)) {
          std::memset(u, 0, sizeof(float) * nv);
          continue;
        }
        transform_row(u, nv, cap, T);
        cpu::GradSpec gs;
        gs.max = st[n].m;
        gs.alpha = st[n].alpha;
        gs.beta = beta_all;
        gs.w = cw ? cw + v0 : nullptr;
        gs.subtract = beta_all != 0;
        if (cap > 0) {
          float* g = cs_rows + static_cast<std::int64_t>(omp_get_thread_num()) * vt;
          cpu::ChunkGradF32(u, static_cast<std::size_t>(nv), g, gs);
          if (y >= v0 && y < v0 + nv) g[y - v0] -= st[n].gamma;
          const double tc = T / cap, inv_t = 1.0 / T;
          for (std::int64_t j = 0; j < nv; ++j) {
            const double sc = tc * u[j];
            u[j] = static_cast<float>(g[j] * (1 - sc * sc) * inv_t);
          }
        } else {
          cpu::ChunkGradF32(u, static_cast<std::size_t>(nv), u, gs);
          if (y >= v0 && y < v0 + nv) u[y - v0] -= st[n].gamma;
          if (T != 1.0) {
            const float inv_t = static_cast<float>(1.0 / T);
            for (std::int64_t j = 0; j < nv; ++j) u[j] *= inv_t;
          }
        }
      }
      if (pl.gb) add_colsums(L, c, nv, nv, out.grad_bias + v0, nt);
      if (gW) blas::sgemm(true, false, nv, D, c, 1.0f, L, nv, Hb, ldh, 1.0f, gW + v0 * ldgw, ldgw);
      if (gH) blas::sgemm(false, false, c, D, nv, 1.0f, L, nv, Wt, ldw, 1.0f, gH + r0 * ldgh, ldgh);
    }
  }
  return res;
}

}  // namespace

LinearCrossEntropyResult linear_cross_entropy(const MatrixView& hidden, const MatrixView& weight,
                                              const float* bias, const Targets& targets,
                                              const LinearCrossEntropyOptions& options,
                                              const LinearCrossEntropyOutputs& outputs) {
  // Issue 9: a weight sharded by vocabulary rows across the communicator's ranks.
  if (options.communicator)
    return detail::linear_cross_entropy_sharded(hidden, weight, bias, targets, options, outputs);
  const Plan pl = make_plan(hidden, weight, bias, targets, options, outputs);
  Algo algo = options.algorithm;
  if (algo == Algo::kAuto) {
    // Measured (docs/performance.md, "Linear + cross-entropy"). On the
    // AVX-512 product kernels (src/cpu/chunk_gemm.cc) token-chunked runs
    // its three products at or above the full-size BLAS rate once a chunk
    // has 16 rows: 1.01–1.07× the three-product floor with gradients,
    // 0.92–0.99× of H·Wᵀ without; in chunks of 4–15 rows it still beats
    // the tiled design (512×256×1000 in 8-row chunks, same runs: 1.07–1.19×
    // the floor with gradients, 0.93–1.13× of H·Wᵀ without, against
    // 1.64–2.01× and 1.51–1.76× tiled). On OpenBLAS, which repacks W for every
    // chunk, it wins only from 128 rows (1.06–1.12× the floor at 256 and
    // 128 rows against 1.32–1.37× for tiled; 1.47× at 64 rows), and the
    // tiled design (one product in square blocks) is the forward-only
    // choice. Filtering exists only in the tiled design, focal only in
    // the chunked one.
    bool own = own_products(pl);
    const std::int64_t chunk = options.chunk_rows ? options.chunk_rows : default_chunk_rows(pl, budget_bytes(pl), &own);
    own = own && chunk >= std::min<std::int64_t>(4, pl.N);
    if (options.loss.focal_gamma > 0) algo = Algo::kTokenChunked;
    else if (options.grad_filter > 0) algo = Algo::kVocabTiled;
    else if (own) algo = Algo::kTokenChunked;
    else if (!pl.grad) algo = Algo::kVocabTiled;
    else algo = chunk >= std::min<std::int64_t>(kMinChunkRows, pl.N) ? Algo::kTokenChunked : Algo::kVocabTiled;
  }
  if (pl.N == 0) {
    LinearCrossEntropyResult res;
    res.algorithm = algo;
    finish_result(pl, 0.0, 0.0, res);
    zero_matrix(outputs.grad_weight, pl.nt);
    if (outputs.grad_bias) std::fill(outputs.grad_bias, outputs.grad_bias + pl.V, 0.0f);
    return res;
  }
  if (algo == Algo::kTokenChunked) return run_token_chunked(pl, targets, outputs);
  return run_vocab_tiled(pl, outputs);
}

}  // namespace xent
