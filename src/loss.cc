// The fused batch losses of xent/loss.h: validation, options, threading and
// the fixed-order reductions around the SIMD kernels of src/cpu/.
//
// Work layout (the reason results are bit-identical for any thread count):
//   * every row is split into fixed column chunks of cpu::kChunk elements;
//     each chunk's (max, Σexp, ...) comes from the same kernel call whatever
//     the threads, and chunks are merged in column order;
//   * rows are grouped in fixed blocks (of a size that depends on N only); a block's partial
//     sums are accumulated in row order, blocks are summed in block order;
//   * threads only decide who computes which row (or, for few long rows,
//     which (row, chunk) item), never how.
#include "xent/loss.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cpu/convert.h"
#include "cpu/kernels.h"
#include "loss_in_region.h"
#include "reduce_loss.h"
#include "validate.h"

namespace xent {

const char* DTypeName(DType dtype) noexcept {
  switch (dtype) {
    case DType::kF32: return "float32";
    case DType::kF64: return "float64";
    case DType::kBF16: return "bfloat16";
    case DType::kF16: return "float16";
  }
  return "unknown";
}

const char* ReductionName(Reduction r) noexcept {
  switch (r) {
    case Reduction::kNone: return "none";
    case Reduction::kSum: return "sum";
    case Reduction::kMean: return "mean";
  }
  return "unknown";
}

namespace detail {

void check_loss_options(const char* fn, const CrossEntropyOptions& o) {
  auto bad_opt = [&](const char* name, double v, const char* rule) {
    fail(ErrorCode::kInvalidArgument, std::string(fn) + ": " + name + " = " + fmt_num(v) + " " + rule);
  };
  if (!(o.label_smoothing >= 0 && o.label_smoothing <= 1))
    bad_opt("label_smoothing", o.label_smoothing, "must be in [0, 1]");
  if (!(o.temperature > 0) || !std::isfinite(o.temperature))
    bad_opt("temperature", o.temperature, "must be finite and > 0");
  if (!(o.softcap >= 0) || !std::isfinite(o.softcap))
    bad_opt("softcap", o.softcap, "must be finite and ≥ 0 (0: off)");
  if (!(o.z_loss >= 0) || !std::isfinite(o.z_loss)) bad_opt("z_loss", o.z_loss, "must be finite and ≥ 0");
  if (!(o.focal_gamma >= 0) || !std::isfinite(o.focal_gamma))
    bad_opt("focal_gamma", o.focal_gamma, "must be finite and ≥ 0");
  if (!std::isfinite(o.grad_scale)) bad_opt("grad_scale", o.grad_scale, "must be finite");
  if (o.reduction != Reduction::kNone && o.reduction != Reduction::kSum &&
      o.reduction != Reduction::kMean)
    fail(ErrorCode::kInvalidArgument, std::string(fn) + ": invalid reduction");
  if (o.smoothing != Smoothing::kUniform && o.smoothing != Smoothing::kOffTarget)
    fail(ErrorCode::kInvalidArgument, std::string(fn) + ": invalid smoothing mode");
}

std::int64_t check_matrix_stride(const char* fn, const char* what, const void* data, DType dtype,
                                 std::int64_t rows, std::int64_t cols, std::int64_t stride) {
  if (dtype != DType::kF32 && dtype != DType::kF64 && dtype != DType::kBF16 &&
      dtype != DType::kF16)
    fail(ErrorCode::kInvalidArgument, std::string(fn) + ": " + what + " has an invalid dtype");
  if (rows < 0 || cols < 0)
    fail(ErrorCode::kShapeMismatch, std::string(fn) + ": " + what + " has a negative shape " +
                                        std::to_string(rows) + "×" + std::to_string(cols));
  const std::int64_t s = stride == 0 ? cols : stride;
  if (s < cols)
    fail(ErrorCode::kShapeMismatch, std::string(fn) + ": " + what + ".row_stride = " +
                                        std::to_string(stride) + " is less than cols = " +
                                        std::to_string(cols));
  if (rows > 0 && cols > 0 && data == nullptr)
    fail(ErrorCode::kInvalidArgument, std::string(fn) + ": " + what + ".data is null");
  return s;
}

}  // namespace detail

namespace {

using detail::fail;
using detail::fmt_num;
using detail::check_loss_options;
using detail::NeumaierSum;
constexpr double kInf = std::numeric_limits<double>::infinity();
// Rows per reduction block: a function of N only (never of the threads), at
// most 256, and small enough that there are ≥ 64 blocks to share out.
std::int64_t row_block(std::int64_t n) { return std::clamp<std::int64_t>(n / 64, 1, 256); }
// Gradients larger than this go out with streaming (non-temporal) stores: they
// would not stay in cache anyway, and streaming saves the read-for-ownership.
constexpr std::size_t kStreamBytes = std::size_t{16} << 20;
// See prepare(): in place, rows up to this size take plain stores.
constexpr std::size_t kInPlaceCachedRowBytes = std::size_t{128} << 10;

// log(1 + x) for a row's x = s − 1 ≥ 0 (see ChunkStats::ones). log1p where x
// is small, since 1 + x would round x away; above 2^-20, log(1 + x) has an
// absolute error ≤ 2^-53 from rounding 1 + x (≤ 2^-33 relative to the
// result) and costs less than half of glibc's log1p (3.1 against 7.9 ns,
// Zen 5), which held ~9% of a one-thread forward's samples at 1000 columns
// in cache (perf).
inline double log_sum(double x) { return x >= 0x1p-20 ? std::log(1.0 + x) : std::log1p(x); }

// ------------------------------------------------------------ element access

double load_elem(const void* base, DType dt, std::size_t i) {
  switch (dt) {
    case DType::kF32: return static_cast<const float*>(base)[i];
    case DType::kF64: return static_cast<const double*>(base)[i];
    case DType::kBF16: return cpu::bf16_to_float(static_cast<const std::uint16_t*>(base)[i]);
    case DType::kF16: return cpu::f16_to_float(static_cast<const std::uint16_t*>(base)[i]);
  }
  return 0;
}

template <class T>
void load_row(const void* src, DType dt, std::size_t n, T* dst) {
  switch (dt) {
    case DType::kF32: {
      const float* s = static_cast<const float*>(src);
      for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<T>(s[i]);
      break;
    }
    case DType::kF64: {
      const double* s = static_cast<const double*>(src);
      for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<T>(s[i]);
      break;
    }
    case DType::kBF16: {
      const std::uint16_t* s = static_cast<const std::uint16_t*>(src);
      for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<T>(cpu::bf16_to_float(s[i]));
      break;
    }
    case DType::kF16: {
      const std::uint16_t* s = static_cast<const std::uint16_t*>(src);
      for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<T>(cpu::f16_to_float(s[i]));
      break;
    }
  }
}

// Rounds once (double → float → 16-bit would round twice; the difference is
// only in exact ties and accepted for the 16-bit formats).
template <class T>
void store_row(const T* src, std::size_t n, void* dst, DType dt) {
  switch (dt) {
    case DType::kF32: {
      float* d = static_cast<float*>(dst);
      for (std::size_t i = 0; i < n; ++i) d[i] = static_cast<float>(src[i]);
      break;
    }
    case DType::kF64: {
      double* d = static_cast<double*>(dst);
      for (std::size_t i = 0; i < n; ++i) d[i] = static_cast<double>(src[i]);
      break;
    }
    case DType::kBF16: {
      std::uint16_t* d = static_cast<std::uint16_t*>(dst);
      for (std::size_t i = 0; i < n; ++i) d[i] = cpu::float_to_bf16(static_cast<float>(src[i]));
      break;
    }
    case DType::kF16: {
      std::uint16_t* d = static_cast<std::uint16_t*>(dst);
      for (std::size_t i = 0; i < n; ++i) d[i] = cpu::float_to_f16(static_cast<float>(src[i]));
      break;
    }
  }
}

void store_scalar(void* base, DType dt, std::size_t i, double v) {
  switch (dt) {
    case DType::kF32: static_cast<float*>(base)[i] = static_cast<float>(v); break;
    case DType::kF64: static_cast<double*>(base)[i] = v; break;
    case DType::kBF16:
      static_cast<std::uint16_t*>(base)[i] = cpu::float_to_bf16(static_cast<float>(v));
      break;
    case DType::kF16:
      static_cast<std::uint16_t*>(base)[i] = cpu::float_to_f16(static_cast<float>(v));
      break;
  }
}

const void* row_ptr(const void* base, DType dt, std::int64_t stride, std::int64_t r) {
  return static_cast<const char*>(base) + static_cast<std::size_t>(r * stride) * DTypeSize(dt);
}
void* row_ptr(void* base, DType dt, std::int64_t stride, std::int64_t r) {
  return static_cast<char*>(base) + static_cast<std::size_t>(r * stride) * DTypeSize(dt);
}

// Tolerance on |Σp − 1| for a soft-target row stored in `dt` (xent/core.h's
// NormTolerance, with the epsilon of the storage format).
double norm_tolerance(DType dt, std::size_t k) {
  double eps = 0;
  switch (dt) {
    case DType::kF32: return NormTolerance<float>(k);
    case DType::kF64: return NormTolerance<double>(k);
    case DType::kBF16: eps = 0x1p-7; break;
    case DType::kF16: eps = 0x1p-10; break;
  }
  return 16 * eps * std::max(1.0, std::sqrt(static_cast<double>(k)));
}

int thread_count(int requested) {
  if (requested < 0)
    fail(ErrorCode::kInvalidArgument,
         "num_threads = " + std::to_string(requested) + " must be ≥ 0 (0: OpenMP's default)");
  return requested > 0 ? requested : omp_get_max_threads();
}

// ------------------------------------------------------------ validation

struct Shape {
  std::int64_t rows = 0, cols = 0, stride = 0;
};

Shape check_matrix(const char* fn, const char* what, const void* data, DType dtype,
                   std::int64_t rows, std::int64_t cols, std::int64_t stride) {
  return {rows, cols, detail::check_matrix_stride(fn, what, data, dtype, rows, cols, stride)};
}

// The bytes from a strided matrix's first element to one past its last.
std::size_t span_bytes(const Shape& s, DType dt) {
  return static_cast<std::size_t>((s.rows - 1) * s.stride + s.cols) * DTypeSize(dt);
}
// Whether [a, a + na) and [b, b + nb) share a byte.
bool overlaps(const void* a, std::size_t na, const void* b, std::size_t nb) {
  const char* a0 = static_cast<const char*>(a);
  const char* b0 = static_cast<const char*>(b);
  return a0 < b0 + nb && b0 < a0 + na;
}

// An output may be exactly the input (in place) or disjoint from it.
void check_alias(const char* fn, const char* what, const MatrixView& in, const Shape& si,
                 const MutableMatrixView& out, const Shape& so) {
  if (out.data == nullptr || si.rows == 0 || si.cols == 0) return;
  if (!overlaps(in.data, span_bytes(si, in.dtype), out.data, span_bytes(so, out.dtype))) return;
  if (in.data == out.data && in.dtype == out.dtype && si.stride == so.stride) return;
  fail(ErrorCode::kInvalidArgument,
       std::string(fn) + ": " + what + " overlaps the input without being exactly it "
                                      "(in place needs the same data, dtype and row_stride)");
}

// An input the gradient must not overlap (the class weights, the index
// targets, the per-row upstream): they are read while the gradient buffer is
// being written (the few-long-rows path keeps its exps there), so an overlap
// would silently change them mid-call.
void check_disjoint(const char* fn, const char* what, const void* in, std::size_t in_bytes,
                    const MutableMatrixView& out, const Shape& so) {
  if (out.data == nullptr || in == nullptr || in_bytes == 0 || so.rows == 0 || so.cols == 0) return;
  if (overlaps(in, in_bytes, out.data, span_bytes(so, out.dtype)))
    fail(ErrorCode::kInvalidArgument, std::string(fn) + ": grad overlaps the " + what + " (an input)");
}

// The optional outputs of an elementwise loss (BCE, KL): the N×C gradient and
// per-element losses must have the input's shape; the gradient may alias the
// input only exactly (same rows, same stride).
struct ElementwiseShapes {
  Shape grad, elem_loss;
};
ElementwiseShapes check_elementwise_outputs(const char* fn, const char* input_name,
                                            const MatrixView& input, const Shape& sx,
                                            const MutableMatrixView& grad,
                                            const MutableMatrixView& elem_loss) {
  ElementwiseShapes out;
  if (grad.data) {
    out.grad = check_matrix(fn, "grad", grad.data, grad.dtype, grad.rows, grad.cols, grad.row_stride);
    if (out.grad.rows != sx.rows || out.grad.cols != sx.cols)
      fail(ErrorCode::kShapeMismatch, std::string(fn) + ": grad shape differs from " + input_name);
    check_alias(fn, "grad", input, sx, grad, out.grad);
  }
  if (elem_loss.data) {
    out.elem_loss = check_matrix(fn, "elem_loss", elem_loss.data, elem_loss.dtype, elem_loss.rows,
                                 elem_loss.cols, elem_loss.row_stride);
    if (out.elem_loss.rows != sx.rows || out.elem_loss.cols != sx.cols)
      fail(ErrorCode::kShapeMismatch, std::string(fn) + ": elem_loss shape differs from " + input_name);
  }
  return out;
}

[[noreturn]] void fail_logit(const char* fn, std::int64_t row, std::int64_t col, double v) {
  fail(ErrorCode::kNonFinite, std::string(fn) + ": logits[" + std::to_string(row) + "][" +
                                  std::to_string(col) + "] = " + fmt_num(v) +
                                  " (NaN and +inf logits have no softmax)");
}

// Finds the first NaN / +inf of a row flagged by a kernel; throws.
[[noreturn]] void fail_nonfinite_row(const char* fn, const MatrixView& z, const Shape& sz,
                                     std::int64_t row) {
  const void* base = row_ptr(z.data, z.dtype, sz.stride, row);
  for (std::int64_t j = 0; j < sz.cols; ++j) {
    const double v = load_elem(base, z.dtype, static_cast<std::size_t>(j));
    if (std::isnan(v) || v == kInf) fail_logit(fn, row, j, v);
  }
  fail(ErrorCode::kNonFinite, std::string(fn) + ": row " + std::to_string(row) +
                                  " overflowed (logits too large to sum)");
}

// ------------------------------------------------------------ cross-entropy

enum class RowError : int { kNone = 0, kNonFinite, kAllNegInf, kSoftBad, kSoftSum };

struct Partial {  // one block of rows, accumulated in row order
  NeumaierSum ce, zl;
  std::int64_t correct = 0;
};

// The per-call plan shared by every row (options turned into coefficients).
struct Plan {
  const char* fn;
  MatrixView z;
  Shape sz;
  bool soft = false;
  MatrixView p;
  Shape sp;
  const void* targets = nullptr;
  bool t64 = true;
  std::int64_t ignore_index = -100;
  const float* w = nullptr;
  double w_total = 0;      // Σ_c w_c (or V)
  bool smoothing = false;  // label_smoothing > 0
  double a = 1, b = 0;     // t'_c = a·onehot_c (or p_c) + b
  double z_loss = 0;
  double scale_ce = 0, scale_z = 0;  // gradient multipliers
  const float* row_upstream = nullptr;  // per-row multiplier (backward)
  bool slow = false;        // softcap / temperature / focal: the scalar path
  double softcap = 0, temperature = 1, gamma = 0;
  bool accuracy = false;
  bool want_lse = false;
  MutableMatrixView g;
  Shape sg;
  bool stream = false;
  std::size_t nchunks = 1;
  std::int64_t fetch_rows = 1;  // see Engine::stats_chunk
  // detail::cross_entropy_loss_in_region: one thread, run on the caller's
  // thread without a parallel region of its own, and (float32 rows) no
  // per-call row buffer: the gradient pass recomputes its exps.
  bool in_region = false;
};

std::int64_t target_of(const Plan& pl, std::int64_t r) {
  return pl.t64 ? static_cast<const std::int64_t*>(pl.targets)[r]
                : static_cast<const std::int32_t*>(pl.targets)[r];
}

// Whether row r's index target is the ignore index (soft rows never are).
bool row_ignored(const Plan& pl, std::int64_t r) { return !pl.soft && target_of(pl, r) == pl.ignore_index; }
// Whether row r needs no statistics at all: ignored, and its lse not asked for.
bool row_skipped(const Plan& pl, std::int64_t r) { return !pl.want_lse && row_ignored(pl, r); }

// Per-thread staging buffers for rows that are not in the compute type.
template <class T>
struct Scratch {
  std::vector<T> z, p, g, w;
  std::vector<T> e;                            // the row's exps (row-wise path)
  std::vector<std::vector<cpu::Segment>> segs;  // per chunk of the row
  std::vector<double> dz, dd, dp;  // the scalar path
};

// See run_batch: the longest rows whose statistics are taken two at a time.
inline constexpr std::int64_t kPairedRowsMaxV = 1024;
// See Engine::stats_chunk: how far ahead long rows fetch their logits, and
// the smallest logits matrix that does.
inline constexpr std::size_t kPrefetchAheadBytes = 4096;
inline constexpr std::size_t kPrefetchAheadMinBytes = std::size_t{4} << 20;

template <class T>
struct Engine {
  const Plan& pl;
  const T* wT;  // class weights in T (nullptr: none)

  static constexpr DType kNative = sizeof(T) == 4 ? DType::kF32 : DType::kF64;

  std::size_t chunk_begin(std::size_t c) const { return c * cpu::kChunk; }
  std::size_t chunk_len(std::size_t c) const {
    return std::min(cpu::kChunk, static_cast<std::size_t>(pl.sz.cols) - c * cpu::kChunk);
  }

  // Chunk c of row r of matrix m, in T: a pointer into m when it already
  // holds T, else converted into `buffer`.
  const T* chunk_of(const MatrixView& m, std::int64_t stride, std::int64_t r, std::size_t c,
                    T* buffer) const {
    const void* base = row_ptr(m.data, m.dtype, stride, r);
    const std::size_t j0 = chunk_begin(c);
    if (m.dtype == kNative) return static_cast<const T*>(base) + j0;
    load_row(static_cast<const char*>(base) + j0 * DTypeSize(m.dtype), m.dtype, chunk_len(c), buffer);
    return buffer;
  }
  const T* logits_chunk(std::int64_t r, std::size_t c, Scratch<T>& s) const {
    return chunk_of(pl.z, pl.sz.stride, r, c, s.z.data());
  }
  const T* soft_chunk(std::int64_t r, std::size_t c, Scratch<T>& s) const {
    return chunk_of(pl.p, pl.sp.stride, r, c, s.p.data());
  }

  cpu::CoefSpec coef_spec(std::int64_t r, std::size_t c, Scratch<T>& s) const {
    cpu::CoefSpec cs;
    if (pl.soft) {
      cs.want_coef = true;
      cs.p = soft_chunk(r, c, s);
      cs.a = pl.a;
      cs.b = pl.b;
      cs.w = wT ? wT + chunk_begin(c) : nullptr;
    } else if (pl.smoothing) {
      cs.want_coef = true;
      cs.w = wT ? wT + chunk_begin(c) : nullptr;
    }
    return cs;
  }

  // Whether the logits are too large to be in cache (see stats_chunk).
  bool streams_from_memory() const {
    return static_cast<double>(pl.sz.rows) * static_cast<double>(pl.sz.stride) *
               static_cast<double>(DTypeSize(pl.z.dtype)) >= static_cast<double>(kPrefetchAheadMinBytes);
  }

  // `bytes` past p, formed as an integer: it may lie past the end of the
  // caller's array, where only a prefetch goes.
  static const void* ahead(const void* p, std::size_t bytes) {
    return reinterpret_cast<const void*>(reinterpret_cast<std::uintptr_t>(p) + bytes);
  }

  // Statistics of chunk c of row r; with `e`, also its exps (for the
  // gradient) and with `segs` their reference segments.
  // `first_max`: the max of the row's chunk 0 (for c ≥ 1; the same value on
  // every path, so that the bits do not depend on how chunks are scheduled).
  cpu::ChunkStats stats_chunk(std::int64_t r, std::size_t c, Scratch<T>& s,
                              std::vector<cpu::Segment>* segs, T* e, double first_max) const {
    const T* z = logits_chunk(r, c, s);
    const cpu::CoefSpec cs = stats_spec(r, c, s, z, segs, e, first_max);
    cpu::ChunkStats st;
    if constexpr (sizeof(T) == 4)
      cpu::ChunkStatsF32(z, chunk_len(c), cs, &st);
    else
      cpu::ChunkStatsF64(z, chunk_len(c), cs, &st);
    return st;
  }

  // Whether rows r and r + 1 may take their statistics together
  // (stats_pair): rows of up to kPairedRowsMaxV float32 logits (and soft
  // targets) used where they lie, so that each row's spec points into its
  // own row, not into a shared conversion buffer.
  bool can_pair_rows() const {
    return sizeof(T) == 4 && pl.sz.cols <= kPairedRowsMaxV && pl.z.dtype == kNative &&
           (!pl.soft || pl.p.dtype == kNative) && cpu::PairingRowsPays();
  }

  // stats_chunk of the one chunk of rows r and r + 1, side by side (see
  // cpu::ChunkStats2F32: the same bits as two stats_chunk calls). Only where
  // can_pair_rows().
  void stats_pair(std::int64_t r, Scratch<T>& s, std::vector<cpu::Segment>* segs0, T* e0,
                  std::vector<cpu::Segment>* segs1, T* e1, cpu::ChunkStats& st0, cpu::ChunkStats& st1) const {
    if constexpr (sizeof(T) == 4) {
      const T* z0 = logits_chunk(r, 0, s);
      const T* z1 = logits_chunk(r + 1, 0, s);
      const cpu::CoefSpec cs0 = stats_spec(r, 0, s, z0, segs0, e0, -kInf);
      const cpu::CoefSpec cs1 = stats_spec(r + 1, 0, s, z1, segs1, e1, -kInf);
      cpu::ChunkStats2F32(z0, z1, chunk_len(0), cs0, cs1, &st0, &st1);
    } else {
      st0 = stats_chunk(r, 0, s, segs0, e0, -kInf);
      st1 = stats_chunk(r + 1, 0, s, segs1, e1, -kInf);
    }
  }

  // The statistics spec of chunk c of row r, whose logits are z.
  cpu::CoefSpec stats_spec(std::int64_t r, std::size_t c, Scratch<T>& s, const T* z,
                           std::vector<cpu::Segment>* segs, T* e, double first_max) const {
    cpu::CoefSpec cs = coef_spec(r, c, s);
    cs.segments = segs;
    cs.e_out = e;
    if (c > 0) cs.init_ref = first_max;
    // A row short enough to find its maximum first (a pass that waits on
    // memory, then an exp pass from L1 that gives the hardware prefetcher
    // nothing to follow) fetches the next row during its exp pass: measured,
    // 2 threads, forward 8192×8192 16-18 → 11-12 ms, 16384×4096 16-18 →
    // 11-13 ms, 65536×1000 13.3 → 12.3 ms; no gain for longer rows (whose
    // exp pass streams from memory itself), slower at 32000 columns. The
    // next soft-target row too, which the exp pass would read from memory
    // (Zen 3, 2 threads, 14 alternated rounds: 65536×1000 soft fwd+bwd
    // faster in 11 of 14, 16384×4096 in 7 of 8).
    // On AVX-512 the row after next (pl.fetch_rows = 2): its exp pass is
    // short enough that the next row's lines, fetched during it, were not all
    // there when that row's maximum pass began. Zen 5, 2 threads, one
    // process alternating the two 30 times: 65536×1000 forward −7% (faster
    // in 28 of 30), fwd+bwd and soft even. Three rows ahead against two (20
    // alternations): forward −4.6% (18 of 20; 131072×500 and 16384×4000
    // −0.6% and even), fwd+bwd +1.5% (0 of 20), soft −0.6%; so a forward
    // fetches three rows ahead, a call with a gradient two. On Zen 3 (AVX2)
    // the row after next was 4% slower, so AVX2 fetches the next.
    const bool short_row = pl.nchunks == 1 && pl.sz.cols <= static_cast<std::int64_t>(cpu::kFixedRefMax);
    const std::int64_t fetch_row = std::min(r + pl.fetch_rows, pl.sz.rows - 1);
    if (short_row && fetch_row > r) {
      if (pl.z.dtype == kNative) cs.prefetch = row_ptr(pl.z.data, pl.z.dtype, pl.sz.stride, fetch_row);
      if (pl.soft && pl.p.dtype == kNative) cs.prefetch_p = row_ptr(pl.p.data, pl.p.dtype, pl.sp.stride, fetch_row);
    }
    // Longer rows stream from memory during the exp pass itself, and there
    // the hardware prefetcher alone did not keep enough lines in flight on
    // Zen 3 (AVX2): fetching kPrefetchAheadBytes ahead ourselves (z, and a
    // soft row p) was faster at every memory-sized shape measured. 2
    // threads, alternated rounds, median ms without → with: forward
    // 4096×32000 43.2 → 35.9 (faster in 12 of 12 rounds), fwd+bwd 69.8 →
    // 59.8 (12/12), soft fwd+bwd 102 → 87 (6/6); 2048×128256 forward 87.0 →
    // 73.0, fwd+bwd 138 → 124, soft 207 → 180 (5/5 each); 8192×50257
    // forward 102 → 88, fwd+bwd 180 → 165 (4/4); one row of 8388608 forward
    // 2.47 → 2.21 (9/10). Distances of 1 to 8 KiB all gained at 4096×32000
    // (4 KiB best at 50257 and 128256 columns; 16 KiB and more gained less).
    // Logits that fit in cache gain nothing: 1×262144 (1 MiB) was 1.5%
    // slower, so matrices under kPrefetchAheadMinBytes do without.
    if (!short_row && streams_from_memory()) {
      if (pl.z.dtype == kNative) cs.prefetch = ahead(z, kPrefetchAheadBytes);
      if (pl.soft && pl.p.dtype == kNative) cs.prefetch_p = ahead(cs.p, kPrefetchAheadBytes);
    }
    return cs;
  }

  // The maximum of chunk 0 of row r: what stats_chunk(r, 0, ...).max gives
  // (for a chunk without NaN or +inf; with one, the row fails or is NaN
  // whatever its later chunks give), without the exps.
  double first_chunk_max(std::int64_t r, Scratch<T>& s) const {
    const T* z = logits_chunk(r, 0, s);
    if constexpr (sizeof(T) == 4)
      return cpu::ChunkMaxF32(z, chunk_len(0));
    else
      return cpu::ChunkMaxF64(z, chunk_len(0));
  }

  // Everything known about a row after its statistics.
  struct RowState {
    bool ignored = false;
    RowError err = RowError::kNone;
    std::int64_t t = -1;
    double max = 0, s = 0, lse = 0, zt = 0, q_t = 0;
    double s_m1 = 0;  // s − 1 without cancellation (see ChunkStats::ones)
    double ce = 0, zl = 0;
    bool correct = false;
    cpu::GradSpec spec;
    double ct = 0, a_minus_ct = 0, upstream = 1;
    bool fix = false;  // hard target: the target's gradient is written last
  };

  // A fresh RowState to copy from: `rs = RowState{}` built its ~200 bytes
  // field by field (callgrind: 57 instructions per row, the copy 24).
  static inline const RowState kFreshRow{};

  // The row's loss terms and gradient coefficients from its merged stats.
  // Fills `rs` in place (a RowState is large: no copies per row).
  void finalize(std::int64_t r, const cpu::ChunkStats& st, RowState& rs) const {
    rs = kFreshRow;
    rs.upstream = pl.row_upstream ? pl.row_upstream[r] : 1.0;
    if (!pl.soft) {
      rs.t = target_of(pl, r);
      rs.ignored = rs.t == pl.ignore_index;
    }
    if (st.nonfinite || std::isnan(st.sum_exp) || st.max == kInf) {
      rs.err = RowError::kNonFinite;  // an error unless the row is ignored
      rs.lse = std::numeric_limits<double>::quiet_NaN();
      return;
    }
    if (!(st.sum_exp > 0)) {
      rs.lse = -kInf;
      if (!rs.ignored) rs.err = RowError::kAllNegInf;
      return;
    }
    if (pl.soft) {
      if (st.p_bad) { rs.err = RowError::kSoftBad; return; }
      if (!(std::fabs(st.p_sum - 1.0) <= norm_tolerance(pl.p.dtype, static_cast<std::size_t>(pl.sz.cols)))) {
        rs.err = RowError::kSoftSum;
        return;
      }
    }
    rs.max = st.max;
    rs.s = st.sum_exp;
    rs.s_m1 = st.ones >= 1 ? (st.ones - 1) + st.rest : st.sum_exp - 1;
    const double log_s = log_sum(rs.s_m1);
    rs.lse = st.max + log_s;
    if (rs.ignored) return;
    const double sce = pl.scale_ce * rs.upstream, sz = pl.scale_z * rs.upstream;
    double A = 0;  // Σ_c w_c t'_c: the gradient's softmax coefficient
    if (pl.soft) {
      rs.ce = st.coef_sum * log_s + st.coef_dot;
      A = st.coef_sum;
      rs.spec.subtract = true;
      rs.spec.beta_p = sce * pl.a;
      rs.spec.beta = sce * pl.b;
    } else {
      const void* base = row_ptr(pl.z.data, pl.z.dtype, pl.sz.stride, r);
      rs.zt = load_elem(base, pl.z.dtype, static_cast<std::size_t>(rs.t));
      const double wt = pl.w ? pl.w[rs.t] : 1.0;
      const double nll = log_s + (rs.max - rs.zt);  // lse − z_t, no cancellation
      rs.ce = pl.a * wt * nll;
      A = pl.a * wt;
      if (pl.smoothing) {
        rs.ce += pl.b * (st.coef_sum * log_s + st.coef_dot);
        A += pl.b * pl.w_total;
        rs.spec.subtract = pl.b != 0;
        rs.spec.beta = sce * pl.b;
      }
      rs.ct = wt * (pl.a + pl.b);
      rs.a_minus_ct = pl.b * (pl.w_total - wt);
      // (Only the gradient's target entry reads q_t: a forward skips the exp.)
      if (pl.g.data) rs.q_t = std::exp(rs.zt - rs.max) / rs.s;
      rs.fix = true;
      if (pl.accuracy && rs.zt == rs.max) {
        // argmax = the first index of the maximum (PyTorch's argmax).
        rs.correct = true;
        for (std::int64_t j = 0; j < rs.t; ++j)
          if (load_elem(base, pl.z.dtype, static_cast<std::size_t>(j)) == rs.max) {
            rs.correct = false;
            break;
          }
      }
    }
    rs.zl = pl.z_loss * rs.lse * rs.lse;
    rs.spec.max = rs.max;
    rs.spec.alpha = (sce * A + sz * 2 * pl.z_loss * rs.lse) / rs.s;
    rs.spec.w = nullptr;  // set per chunk
    rs.spec.stream = pl.stream;
  }

  // Writes the gradient of chunk c of row r, segment by segment (the exp
  // reference of each): from the stored exps `e` of the statistics pass when
  // given, else recomputing them (the same kernel ops, so the same bits).
  void grad_chunk(std::int64_t r, std::size_t c, const RowState& rs, Scratch<T>& s,
                  const std::vector<cpu::Segment>& segs, const T* e) const {
    const std::size_t n = chunk_len(c), j0 = chunk_begin(c);
    void* gbase = row_ptr(pl.g.data, pl.g.dtype, pl.sg.stride, r);
    char* gchunk = static_cast<char*>(gbase) + j0 * DTypeSize(pl.g.dtype);
    if (rs.ignored) {
      std::memset(gchunk, 0, n * DTypeSize(pl.g.dtype));  // +0 in every dtype
      return;
    }
    const T* z = e ? e : logits_chunk(r, c, s);
    const T* w = wT ? wT + j0 : nullptr;
    const T* p = pl.soft && rs.spec.subtract ? soft_chunk(r, c, s) : nullptr;
    const bool direct = pl.g.dtype == kNative;
    T* out = direct ? reinterpret_cast<T*>(gchunk) : s.g.data();
    for (std::size_t k = 0; k < segs.size(); ++k) {
      const std::size_t a = segs[k].start;
      const std::size_t b = k + 1 < segs.size() ? segs[k + 1].start : n;
      if (a >= b) continue;
      cpu::GradSpec spec = rs.spec;
      spec.from_exp = e != nullptr;
      spec.max = segs[k].ref;
      // exp(z − M) = exp(z − ref)·exp(ref − M); the second factor joins alpha.
      // (A segment whose reference is the row's maximum, as a short row's
      // only one is, needs no exp: exp(0) = 1 exactly, the same bits.)
      spec.alpha = segs[k].ref == rs.max ? rs.spec.alpha : rs.spec.alpha * std::exp(segs[k].ref - rs.max);
      if (spec.subtract) {
        spec.w = w ? w + a : nullptr;
        spec.p = p ? p + a : nullptr;
      }
      if (!direct) spec.stream = false;
      // The target's entry is written by the kernel itself (direct output:
      // the same rounding as fix_target's store), so that nothing is stored
      // into the row after its streaming stores.
      if (direct && rs.fix) {
        const std::size_t tt = static_cast<std::size_t>(rs.t);
        if (tt >= j0 + a && tt < j0 + b) {
          spec.fix_index = tt - j0 - a;
          spec.fix_value = target_grad(rs);
        }
      }
      if constexpr (sizeof(T) == 4)
        cpu::ChunkGradF32(z + a, b - a, out + a, spec);
      else
        cpu::ChunkGradF64(z + a, b - a, out + a, spec);
    }
    if (!direct) store_row(out, n, gchunk, pl.g.dtype);
  }

  // The target's own gradient. q_t − 1 would cancel when q_t ≈ 1, so it is
  // taken as −Σ_{j≠t} q_j = −(s − 1)/s: q_t > ½ implies z_t is the row max,
  // whose term in s is exp(0) = 1 exactly, counted apart from the other
  // terms (ChunkStats::ones), so s − 1 is the sum of the other terms as
  // accumulated, never 1 + tiny − 1 in fp64.
  double target_grad(const RowState& rs) const {
    const double omq = rs.zt == rs.max ? rs.s_m1 / rs.s : 1.0 - rs.q_t;
    const double sce = pl.scale_ce * rs.upstream, sz = pl.scale_z * rs.upstream;
    return sce * (-rs.ct * omq + rs.q_t * rs.a_minus_ct) + sz * 2 * pl.z_loss * rs.lse * rs.q_t;
  }
  // Whether grad_chunk writes the target's entry itself (gradient in the
  // compute type); otherwise fix_target stores it after the row.
  bool target_in_kernel() const { return pl.g.dtype == kNative; }
  void fix_target(std::int64_t r, const RowState& rs) const {
    if (!rs.fix || rs.ignored || target_in_kernel()) return;
    store_scalar(row_ptr(pl.g.data, pl.g.dtype, pl.sg.stride, r), pl.g.dtype,
                 static_cast<std::size_t>(rs.t), target_grad(rs));
  }

  // ------------------------------------------- the scalar path (rare options)
  // softcap, temperature and focal γ: per row in double, every option.
  RowState slow_row(std::int64_t r, Scratch<T>& s, bool write_grad) const {
    RowState rs;
    rs.upstream = pl.row_upstream ? pl.row_upstream[r] : 1.0;
    const std::size_t V = static_cast<std::size_t>(pl.sz.cols);
    if (!pl.soft) {
      rs.t = target_of(pl, r);
      rs.ignored = rs.t == pl.ignore_index;
    }
    const bool need = !rs.ignored || pl.want_lse;
    void* gbase = write_grad ? row_ptr(pl.g.data, pl.g.dtype, pl.sg.stride, r) : nullptr;
    if (!need) {
      if (gbase) std::memset(gbase, 0, V * DTypeSize(pl.g.dtype));
      return rs;
    }
    std::vector<double>& z = s.dz;
    std::vector<double>& dd = s.dd;
    load_row(row_ptr(pl.z.data, pl.z.dtype, pl.sz.stride, r), pl.z.dtype, V, z.data());
    double raw_max = -kInf;
    std::int64_t raw_arg = 0;
    for (std::size_t j = 0; j < V; ++j) {
      if (std::isnan(z[j]) || z[j] == kInf) {
        if (!rs.ignored) {
          rs.err = RowError::kNonFinite;
          return rs;
        }
        rs.lse = std::numeric_limits<double>::quiet_NaN();  // ignored rows are not checked
        if (gbase) std::memset(gbase, 0, V * DTypeSize(pl.g.dtype));
        return rs;
      }
      if (z[j] > raw_max) { raw_max = z[j]; raw_arg = static_cast<std::int64_t>(j); }
      double zz = z[j], d = 1.0;
      if (pl.softcap > 0) {
        const double th = std::tanh(z[j] / pl.softcap);
        zz = pl.softcap * th;
        d = 1.0 - th * th;
      }
      z[j] = zz / pl.temperature;
      dd[j] = d / pl.temperature;
    }
    double M = -kInf;
    for (std::size_t j = 0; j < V; ++j) M = std::max(M, z[j]);
    if (M == -kInf) {
      rs.lse = -kInf;
      if (!rs.ignored) rs.err = RowError::kAllNegInf;
      return rs;
    }
    // The terms equal to 1 (z_j = M) counted apart, as in the kernels.
    NeumaierSum rest;
    double ones = 0;
    for (std::size_t j = 0; j < V; ++j) {
      if (z[j] == M)
        ones += 1;
      else
        rest.add(std::exp(z[j] - M));
    }
    const double S = ones + rest.value();
    rs.s_m1 = (ones - 1) + rest.value();
    const double log_s = std::log1p(rs.s_m1);
    rs.max = M;
    rs.s = S;
    rs.lse = M + log_s;
    if (rs.ignored) {
      if (gbase) std::memset(gbase, 0, V * DTypeSize(pl.g.dtype));
      return rs;
    }
    std::vector<double>& p = s.dp;
    if (pl.soft) {
      load_row(row_ptr(pl.p.data, pl.p.dtype, pl.sp.stride, r), pl.p.dtype, V, p.data());
      NeumaierSum ps;
      for (std::size_t j = 0; j < V; ++j) {
        if (!(p[j] >= 0 && p[j] <= 1)) { rs.err = RowError::kSoftBad; return rs; }
        ps.add(p[j]);
      }
      if (!(std::fabs(ps.value() - 1.0) <= norm_tolerance(pl.p.dtype, V))) {
        rs.err = RowError::kSoftSum;
        return rs;
      }
    } else {
      rs.correct = pl.accuracy && raw_arg == rs.t;
    }
    auto coef = [&](std::size_t j) {
      const double w = pl.w ? pl.w[j] : 1.0;
      const double tgt = pl.soft ? p[j] : (static_cast<std::int64_t>(j) == rs.t ? 1.0 : 0.0);
      return w * (pl.a * tgt + pl.b);
    };
    const double gamma = pl.gamma;
    // Per class: q, 1 − q (without cancellation), −log q, the focal factors.
    auto terms = [&](std::size_t j, double& q, double& omq, double& ce, double& f, double& H) {
      const double e = std::exp(z[j] - M);
      q = e / S;
      // q ≥ ½ only at a maximum (e = 1 ≥ every other term), where
      // 1 − q = (S − 1)/S, with S − 1 summed apart (no 1 + tiny − 1).
      omq = q >= 0.5 ? std::max(0.0, rs.s_m1) / S : 1.0 - q;
      ce = (M - z[j]) + log_s;
      f = gamma == 0 ? 1.0 : std::pow(omq, gamma);
      const double ratio = omq > 0 ? ce / omq : 1.0;
      // q·ratio = q·(−log q)/(1 − q) → 0 as q → 0; at a −inf (masked) logit
      // q = 0 and ce = +inf, and the product must be that limit, not 0·∞ = NaN.
      H = f * (1.0 + gamma * (q > 0 ? q * ratio : 0.0));
    };
    NeumaierSum loss, ch;
    for (std::size_t j = 0; j < V; ++j) {
      const double c = coef(j);
      if (c == 0) continue;
      double q, omq, ce, f, H;
      terms(j, q, omq, ce, f, H);
      loss.add(c * f * ce);
      ch.add(c * H);
    }
    rs.ce = loss.value();
    rs.zl = pl.z_loss * rs.lse * rs.lse;
    if (gbase) {
      const double CH = ch.value();
      const double sce = pl.scale_ce * rs.upstream, sz = pl.scale_z * rs.upstream;
      for (std::size_t j = 0; j < V; ++j) {
        const double c = coef(j);
        double q, omq, ce, f, H;
        terms(j, q, omq, ce, f, H);
        const double cH = c * H;
        // q_j·CH − c_j·H_j, written so that the dominant class does not cancel.
        const double gz = sce * (q * (CH - cH) - cH * omq) + sz * 2 * pl.z_loss * rs.lse * q;
        store_scalar(gbase, pl.g.dtype, j, gz * dd[j]);
      }
    }
    return rs;
  }
};

// n values: inline for up to 8, else on the heap. For run_batch's per-call
// bookkeeping (one entry per block of rows, and per thread): a one-thread
// call on up to 8 rows (row_block gives one row per block below 64 rows;
// linear_cross_entropy's small chunks are halves of at most 15 rows) then
// touches no heap at all.
template <class T>
class SmallArray {
 public:
  static constexpr std::size_t kInline = 8;
  SmallArray(std::size_t n, const T& v) : n_(n) {
    if (n > kInline) heap_.reset(new T[n]);
    for (std::size_t i = 0; i < n; ++i) data()[i] = v;
  }
  T* data() { return heap_ ? heap_.get() : inline_; }
  T& operator[](std::size_t i) { return data()[i]; }
  T* begin() { return data(); }
  T* end() { return data() + n_; }
  std::size_t size() const { return n_; }

 private:
  std::size_t n_;
  T inline_[kInline];
  std::unique_ptr<T[]> heap_;
};

struct RunResult {
  NeumaierSum ce, zl;
  std::int64_t correct = 0;
};

// Thread tid's share of [0, n) among nth, as schedule(static) cuts it.
inline std::pair<std::int64_t, std::int64_t> static_share(std::int64_t n, int tid, int nth) {
  const std::int64_t q = n / nth, rem = n % nth;
  const std::int64_t lo = tid * q + std::min<std::int64_t>(tid, rem);
  return {lo, lo + q + (tid < rem ? 1 : 0)};
}

// body(tid, nth) on a team of nthreads, or, for a call in a caller's
// parallel region (Plan::in_region), directly on the calling thread: a
// one-thread region still costs a team (0.55 µs nested in a caller's region,
// plus futex calls; linear_cross_entropy's small chunks make 128 such calls
// per thread at 512×256×1000). The bodies use no worksharing constructs,
// which would bind to a caller's enclosing team.
template <class Body>
void run_team(const Plan& pl, int nthreads, Body& body) {
  if (pl.in_region) {
    body(0, 1);
    return;
  }
#pragma omp parallel num_threads(nthreads)
  body(omp_get_thread_num(), omp_get_num_threads());
}

// Runs the whole batch; throws the first (lowest-row) error.
// See run_batch: the longest interleaved rows whose exps are recomputed.
inline constexpr std::int64_t kRecomputeMaxV = 65536;
// See run_batch: the most logits whose exps the few-long-rows path keeps
// (16 MiB of float32).
inline constexpr std::int64_t kChunkedExpsMax = std::int64_t{1} << 22;

template <class T>
RunResult run_batch(const Plan& pl, const CrossEntropyOutputs& outs, int nthreads) {
  const std::int64_t N = pl.sz.rows;
  const std::size_t V = static_cast<std::size_t>(pl.sz.cols);
  // Class weights in the compute type.
  std::vector<T> wconv;
  const T* wT = nullptr;
  if (pl.w) {
    if constexpr (sizeof(T) == 4) {
      wT = pl.w;
    } else {
      wconv.assign(pl.w, pl.w + V);
      wT = wconv.data();
    }
  }
  Engine<T> eng{pl, wT};
  const bool want_grad = pl.g.data != nullptr;
  const std::int64_t kRowBlock = row_block(N);
  const std::int64_t nblocks = (N + kRowBlock - 1) / kRowBlock;
  SmallArray<Partial> partial(static_cast<std::size_t>(nblocks), Partial{});
  SmallArray<std::int64_t> err_row(static_cast<std::size_t>(std::max(nthreads, 1)), N);
  SmallArray<int> err_kind(static_cast<std::size_t>(std::max(nthreads, 1)), 0);
  using RowState = typename Engine<T>::RowState;

  auto record = [&](std::int64_t r, const RowState& rs, Partial& part) {
    if (outs.row_lse) outs.row_lse[r] = static_cast<float>(rs.lse);
    if (outs.row_loss) outs.row_loss[r] = rs.ignored ? 0.0f : static_cast<float>(rs.ce + rs.zl);
    if (!rs.ignored) {
      part.ce.add(rs.ce);
      part.zl.add(rs.zl);
      part.correct += rs.correct ? 1 : 0;
    }
  };
  auto note_error = [&](int tid, std::int64_t r, RowError e) {
    if (r < err_row[static_cast<std::size_t>(tid)]) {
      err_row[static_cast<std::size_t>(tid)] = r;
      err_kind[static_cast<std::size_t>(tid)] = static_cast<int>(e);
    }
  };
  auto make_scratch = [&](Scratch<T>& s, bool store_exps) {
    const std::size_t c = std::min(V, cpu::kChunk);
    if (store_exps && want_grad && !pl.slow) s.e.resize(V);
    if (pl.z.dtype != Engine<T>::kNative) s.z.resize(c);
    if (pl.soft && pl.p.dtype != Engine<T>::kNative) s.p.resize(c);
    if (want_grad && pl.g.dtype != Engine<T>::kNative) s.g.resize(c);
    if (want_grad) s.segs.resize(pl.nchunks);  // (evaluation: no allocation at all)
    if (pl.slow) {
      s.dz.resize(V);
      s.dd.resize(V);
      if (pl.soft) s.dp.resize(V);
    }
  };

  // Short float32 rows: one row per SIMD lane (see cpu/small_rows-inl.h).
  bool small = false;
  cpu::SmallRowsSpec ss;
  if constexpr (sizeof(T) == 4) {
    small = pl.z.dtype == DType::kF32 && (!pl.soft || pl.p.dtype == DType::kF32) && !pl.slow &&
            !pl.row_upstream && (!pl.soft || pl.sp.stride < (std::int64_t{1} << 24)) &&
            V <= cpu::kSmallV && (!want_grad || pl.g.dtype == DType::kF32) &&
            pl.sz.stride < (std::int64_t{1} << 24) && (!want_grad || pl.sg.stride < (std::int64_t{1} << 24));
    if (small) {
      ss.logits = static_cast<const float*>(pl.z.data);
      ss.logits_stride = static_cast<std::size_t>(pl.sz.stride);
      ss.cols = V;
      ss.rows = static_cast<std::size_t>(N);
      ss.grad = want_grad ? static_cast<float*>(pl.g.data) : nullptr;
      ss.grad_stride = static_cast<std::size_t>(pl.sg.stride);
      if (pl.soft) {
        ss.soft = static_cast<const float*>(pl.p.data);
        ss.soft_stride = static_cast<std::size_t>(pl.sp.stride);
        ss.p_tolerance = norm_tolerance(DType::kF32, V);
      } else if (pl.t64) {
        ss.targets64 = static_cast<const std::int64_t*>(pl.targets);
      } else {
        ss.targets32 = static_cast<const std::int32_t*>(pl.targets);
      }
      ss.ignore_index = pl.ignore_index;
      ss.weight = pl.w;
      ss.smoothing = pl.smoothing;
      ss.a = pl.a;
      ss.b = pl.b;
      ss.w_total = pl.w_total;
      ss.z_loss = pl.z_loss;
      ss.scale_ce = pl.scale_ce;
      ss.scale_z = pl.scale_z;
      ss.accuracy = pl.accuracy;
      ss.stream = pl.stream;
      ss.row_loss = outs.row_loss;
      ss.row_lse = outs.row_lse;
      cpu::SmallRowsResult probe;
      small = cpu::SmallRowsF32(ss, 0, 0, &probe);  // false on targets without lanes
    }
  }
  // (Not in a caller's region: there is one thread, and the row-wise path
  // gives the same bits without the chunked path's regions and buffers.)
  const bool chunked = !small && !pl.slow && pl.nchunks > 1 && N < 2 * nthreads && !pl.in_region;
  if (small) {
    auto small_body = [&](int tid, int nth) {
      const auto [b0, b1] = static_share(nblocks, tid, nth);
      for (std::int64_t blk = b0; blk < b1; ++blk) {
        if (err_row[static_cast<std::size_t>(tid)] < N) continue;
        const std::int64_t r0 = blk * kRowBlock, r1 = std::min(N, r0 + kRowBlock);
        cpu::SmallRowsResult res;
        cpu::SmallRowsF32(ss, static_cast<std::size_t>(r0), static_cast<std::size_t>(r1), &res);
        if (res.error_row >= 0) {
          static constexpr RowError kinds[] = {RowError::kNone, RowError::kNonFinite, RowError::kAllNegInf,
                                               RowError::kSoftBad, RowError::kSoftSum};
          note_error(tid, res.error_row, kinds[res.error_kind]);
          continue;
        }
        Partial& part = partial[static_cast<std::size_t>(blk)];
        part.ce.add(res.ce);
        part.zl.add(res.zl);
        part.correct += res.correct;
      }
    };
    run_team(pl, nthreads, small_body);
  } else if (!chunked) {
    // Rows over threads. Each row's statistics are computed chunk by chunk,
    // and with a gradient, chunk c of the previous row's gradient is written
    // (from its stored exps, streaming stores) right after chunk c of this
    // row's statistics: the logits stream in while the gradient streams out,
    // as in a copy, instead of a read phase and a write phase per row. Rows
    // are still finished (target fix-up, loss recorded) in row order.
    auto rows_body = [&](int tid, int nth) {
      // Short rows (< 4096 columns) alternate reads and writes finely enough
      // already (measured: interleaving was 3% slower at V = 1000, 6-8%
      // faster at V = 32000 and 128256). Soft targets interleave too (their
      // gradient re-reads the target row, from L2: 4096×32000 46 ms instead
      // of 50-51.5; equal at 8192 and 128256 columns).
      const bool pipe = want_grad && !pl.slow && pl.sz.cols >= 4096;
      // Interleaved rows of up to kRecomputeMaxV float32 logits (≤ 256 KiB,
      // still in this core's L2 when the gradient pass comes back to them)
      // recompute their exps from the logits instead of storing them: the
      // same kernel ops on the same values, so the same bits, and one
      // L2-resident store + load stream fewer beside the two DRAM streams,
      // which is what limits these rows (measured, 2 threads: 4096×32000
      // 36-39 ms instead of 41-51, 4096×50257 55 instead of 66-88; equal at
      // 8192 columns; at 128256 columns, whose rows no longer stay in L2,
      // 79-120 instead of 62-72, so longer rows keep the stored exps).
      // A call in a caller's region (linear_cross_entropy's small chunks)
      // recomputes too, whatever the row length: a V-float row buffer per
      // thread per call is 8 KiB of the 40 that 512×256×1000 may use, and
      // the extra exps cost ~1% of its training step. (Memory first: beyond
      // kRecomputeMaxV columns, rows that no longer stay in L2, this is the
      // slower choice, measured above for whole calls.)
      // Those figures are AVX-512's (Zen 4), whose gradient pass recomputes
      // at ~0.17 ns per element. On AVX2 (Zen 3) the same pass costs about
      // three times as much, 0.54 ns per element recomputing against 0.14
      // from stored exps, and there the stored exps win: 2 threads, ten
      // alternated runs each, median of the per-run minimum, 4096×32000
      // 73 ms instead of 80 (stored faster in 8 of 10 runs), smoothing 77
      // instead of 85 (6 of 10), 8192×50257 228 instead of 293 (10 of 10),
      // 16384×4096 35 instead of 41 (7 of 10). So only AVX-512 recomputes.
      // (The bits are the same either way: the same exps.)
      const bool recompute =
          pl.z.dtype == Engine<T>::kNative &&
          ((pipe && pl.sz.cols <= kRecomputeMaxV && cpu::RecomputingExpsPays()) ||
           (want_grad && !pl.slow && pl.in_region));
      Scratch<T> s;
      make_scratch(s, !recompute);
      std::vector<T> e_other;  // the previous row's exps (swapped with s.e)
      std::vector<std::vector<cpu::Segment>> segs_other(pipe ? pl.nchunks : 0);
      if (pipe && !recompute) e_other.resize(s.e.size());
      // Two row states: the row being read and the pending one (its
      // gradient still to write), swapped by index, never copied.
      RowState slot[2];
      int cur = 0;
      bool pending = false;
      std::int64_t pend_r = 0;
      auto pending_grad = [&](std::size_t c) {
        if (!pending) return;
        const RowState& prs = slot[cur ^ 1];
        eng.grad_chunk(pend_r, c, prs, s, segs_other[c],
                       prs.ignored || recompute ? nullptr : e_other.data() + eng.chunk_begin(c));
      };
      auto pending_finish = [&]() {
        if (!pending) return;
        const RowState& prs = slot[cur ^ 1];
        if (prs.fix && !prs.ignored && !eng.target_in_kernel()) {
          if (pl.stream) cpu::StreamFence();  // order after the streamed row
          eng.fix_target(pend_r, prs);
        }
        record(pend_r, prs, partial[static_cast<std::size_t>(pend_r / kRowBlock)]);
        pending = false;
      };
      // Rows of up to kPairedRowsMaxV columns take their statistics two at a
      // time (stats_pair) where both are computed (not skipped as ignored),
      // when the logits are in cache. A row of ~1000 columns costs a fixed
      // ~55–75 ns besides its elements (Zen 5, one thread, in cache: 168 ns
      // at 1024 columns, 185 at 1000, against 0.109 ns per element on long
      // rows), mostly chains of dependent operations (the maximum's and
      // sums' horizontal reductions, the tail vectors, the call, the wait
      // from the maximum pass to the first exp), which a second row's
      // arithmetic overlaps. Zen 5, one process alternating paired and
      // single rows 12–20 times (faster in every round): one thread, 1 MiB
      // of logits, forward 256×1000 −11 to −13%, 512×500 −18%, 256×160
      // −18%, label smoothing −12%, soft −9%; fwd+bwd −10%, smoothing −8%,
      // soft −5%; 2 threads, 1–4 MiB, forward / fwd+bwd 8000×129 −19 / −13%,
      // 4000×250 −15 / −11%, 2080×500 −16 / −12%, 1040×1000 −11 / −4%,
      // 1000×1024 −11 / −7%; but 520×2000 −2 / −1%, 260×4000 −3 / +7%,
      // 130×8000 +3 / 0: so up to 1024 columns. Streaming from memory the
      // sign changed with the host's phase (2 threads, forward 65536×1000
      // −9% and −1.5%, 131072×500 −6% and +9%; label smoothing +11%, soft
      // +13%, fwd+bwd +7 to +16% whatever the fetch distance), so not there.
      const bool pair = !pl.slow && !pipe && eng.can_pair_rows() && !eng.streams_from_memory();
      std::vector<T> e_pair;  // the second row's exps
      std::vector<cpu::Segment> segs_pair;
      if (pair && want_grad && !recompute) e_pair.resize(s.e.size());
      // A row's gradient (from its exps e, or recomputed) and record, after
      // its statistics and finalize (the rows that are not interleaved).
      auto finish_row = [&](std::int64_t r, const RowState& rs, const std::vector<cpu::Segment>* segs, const T* e,
                            Partial& part) {
        if (want_grad) {
          for (std::size_t c = 0; c < pl.nchunks; ++c)
            eng.grad_chunk(r, c, rs, s, segs[c], rs.ignored || recompute ? nullptr : e + eng.chunk_begin(c));
          if (rs.fix && !rs.ignored && !eng.target_in_kernel()) {
            if (pl.stream) cpu::StreamFence();  // order after the streamed row
            eng.fix_target(r, rs);
          }
        }
        record(r, rs, part);
      };
      // finalize's error test: a non-finite row is an error unless ignored.
      auto failed = [&](const RowState& rs, bool ignored) {
        return rs.err != RowError::kNone && !(ignored && rs.err == RowError::kNonFinite);
      };
      // A paired row after its statistics: finalize, then its gradient and
      // record; false (the error noted) where the row fails.
      auto complete_row = [&](std::int64_t r, const cpu::ChunkStats& st, RowState& rs,
                              const std::vector<cpu::Segment>* segs, const T* e, Partial& part) {
        const bool ignored = row_ignored(pl, r);
        eng.finalize(r, st, rs);
        if (failed(rs, ignored)) {
          note_error(tid, r, rs.err);
          return false;
        }
        rs.ignored = ignored;
        finish_row(r, rs, segs, e, part);
        return true;
      };
      const auto [b0, b1] = static_share(nblocks, tid, nth);
      for (std::int64_t blk = b0; blk < b1; ++blk) {
        Partial& part = partial[static_cast<std::size_t>(blk)];
        const std::int64_t r1 = std::min(N, (blk + 1) * kRowBlock);
        for (std::int64_t r = blk * kRowBlock; r < r1; ++r) {
          if (err_row[static_cast<std::size_t>(tid)] < N) break;  // this thread already failed
          if (pl.slow) {
            const RowState rs = eng.slow_row(r, s, want_grad);
            if (rs.err != RowError::kNone) { note_error(tid, r, rs.err); break; }
            record(r, rs, part);
            continue;
          }
          if (pair && r + 1 < r1 && !row_skipped(pl, r) && !row_skipped(pl, r + 1)) {
            // Rows r and r + 1 (same partial block), finished in order.
            T* const e0 = want_grad && !recompute ? s.e.data() : nullptr;
            T* const e1 = want_grad && !recompute ? e_pair.data() : nullptr;
            cpu::ChunkStats st0, st1;
            eng.stats_pair(r, s, want_grad ? &s.segs[0] : nullptr, e0, want_grad ? &segs_pair : nullptr, e1, st0,
                           st1);
            if (!complete_row(r, st0, slot[0], s.segs.data(), e0, part)) break;
            ++r;
            if (!complete_row(r, st1, slot[1], &segs_pair, e1, part)) break;
            continue;
          }
          const bool ignored = row_ignored(pl, r);
          RowState& rs = slot[cur];
          if (ignored && !pl.want_lse) {
            rs = eng.kFreshRow;
            rs.ignored = true;
            for (std::size_t c = 0; c < pl.nchunks; ++c) pending_grad(c);
          } else {
            auto stats = [&](std::size_t c, double first_max) {
              cpu::ChunkStats cs = eng.stats_chunk(r, c, s, want_grad ? &s.segs[c] : nullptr,
                                                   want_grad && !recompute ? s.e.data() + eng.chunk_begin(c) : nullptr,
                                                   first_max);
              pending_grad(c);
              return cs;
            };
            cpu::ChunkStats st = stats(0, -kInf);
            const double first_max = st.max;
            for (std::size_t c = 1; c < pl.nchunks; ++c) st = cpu::MergeStats(st, stats(c, first_max));
            eng.finalize(r, st, rs);
            if (failed(rs, ignored)) {
              note_error(tid, r, rs.err);
              break;
            }
            rs.ignored = ignored;
          }
          pending_finish();
          if (pipe) {
            pending = true;
            pend_r = r;
            cur ^= 1;
            s.e.swap(e_other);
            s.segs.swap(segs_other);
          } else {
            finish_row(r, rs, s.segs.data(), s.e.data(), part);
          }
        }
      }
      if (err_row[static_cast<std::size_t>(tid)] == N) {
        for (std::size_t c = 0; c < pl.nchunks; ++c) pending_grad(c);
        pending_finish();
      }
      if (pl.stream) cpu::StreamFence();
    };
    run_team(pl, nthreads, rows_body);
  } else {
    // Few long rows: (row, chunk) items over threads, in two phases with the
    // same per-chunk kernels, so the bits equal the row-wise path's.
    const std::int64_t items = N * static_cast<std::int64_t>(pl.nchunks);
    std::vector<cpu::ChunkStats> st(static_cast<std::size_t>(items));
    std::vector<std::vector<cpu::Segment>> segs(static_cast<std::size_t>(items));
    std::vector<RowState> rows(static_cast<std::size_t>(N));
    std::vector<char> skip(static_cast<std::size_t>(N), 0);
    for (std::int64_t r = 0; r < N; ++r)
      skip[static_cast<std::size_t>(r)] = row_skipped(pl, r);
    // With a gradient, each chunk's exps are kept from its statistics for its
    // gradient (the same values the gradient pass would recompute, so the
    // same bits as the row-wise path), up to kChunkedExpsMax elements in all:
    // the gradient phase then costs a multiply per element instead of an exp.
    // They are kept in the gradient buffer itself where it holds the compute
    // type and is not the logits (an error message reads them after the
    // statistics; the soft targets are never the gradient), and scaled there
    // in place: the two phases then touch two N×V buffers, not three
    // (1×262144, 2 threads: the gradient phase 16 → 8.5 µs, fwd+bwd 50 →
    // 37 µs with the change below); else in a buffer of their own.
    // (Not value-initialised: a memset of the buffer cost more than the exps saved.)
    const bool keep_exps = want_grad && N * pl.sz.cols <= kChunkedExpsMax;
    const bool exps_in_grad = keep_exps && pl.g.dtype == Engine<T>::kNative && pl.g.data != pl.z.data;
    std::unique_ptr<T[]> exps;
    if (keep_exps && !exps_in_grad) exps.reset(new T[static_cast<std::size_t>(items) * cpu::kChunk]);
    auto exps_of = [&](std::int64_t it) -> T* {
      if (!keep_exps) return nullptr;
      const std::int64_t r = it / static_cast<std::int64_t>(pl.nchunks);
      const std::size_t c = static_cast<std::size_t>(it % static_cast<std::int64_t>(pl.nchunks));
      if (exps_in_grad)
        return static_cast<T*>(row_ptr(pl.g.data, pl.g.dtype, pl.sg.stride, r)) + eng.chunk_begin(c);
      return exps.get() + static_cast<std::size_t>(it) * cpu::kChunk;
    };
    // One team for both phases, each thread on one contiguous range of
    // items. A row's later chunks start their exp reference at the maximum
    // of its chunk 0 (as on the row-wise path): the thread that did chunk 0
    // has it, a thread whose range starts inside the row finds it with a max
    // pass over chunk 0 instead of waiting for it (the chunks 0 used to run
    // alone before the team: 1×262144 forward, 2 threads, 32–35 → 27–31 µs). The
    // gradient phase walks the range backwards, from the chunks last touched
    // (still in cache).
#pragma omp parallel num_threads(nthreads)
    {
      Scratch<T> s;
      make_scratch(s, false);
      std::int64_t first_row = -1;  // the row whose chunk-0 maximum is known
      double first_max = -kInf;
      const std::int64_t tid = omp_get_thread_num(), nt = omp_get_num_threads();
      const std::int64_t i0 = items * tid / nt, i1 = items * (tid + 1) / nt;
      for (std::int64_t it = i0; it < i1; ++it) {
        const std::int64_t r = it / static_cast<std::int64_t>(pl.nchunks);
        const std::size_t c = static_cast<std::size_t>(it % static_cast<std::int64_t>(pl.nchunks));
        if (skip[static_cast<std::size_t>(r)]) continue;
        if (c > 0 && first_row != r) {
          first_max = eng.first_chunk_max(r, s);
          first_row = r;
        }
        st[static_cast<std::size_t>(it)] = eng.stats_chunk(
            r, c, s, want_grad ? &segs[static_cast<std::size_t>(it)] : nullptr, exps_of(it), first_max);
        if (c == 0) {
          first_max = st[static_cast<std::size_t>(it)].max;
          first_row = r;
        }
      }
#pragma omp barrier
#pragma omp single
      for (std::int64_t r = 0; r < N; ++r) {
        RowState& rs = rows[static_cast<std::size_t>(r)];
        const bool ignored = row_ignored(pl, r);
        if (skip[static_cast<std::size_t>(r)]) {
          rs.ignored = true;
          continue;
        }
        const std::size_t base = static_cast<std::size_t>(r) * pl.nchunks;
        cpu::ChunkStats m = st[base];
        for (std::size_t c = 1; c < pl.nchunks; ++c) m = cpu::MergeStats(m, st[base + c]);
        eng.finalize(r, m, rs);
        if (rs.err != RowError::kNone && !(ignored && rs.err == RowError::kNonFinite)) {
          note_error(0, r, rs.err);
          break;
        }
        rs.ignored = ignored;
      }
      // (single's barrier: every row is finalized)
      if (err_row[0] == N && want_grad) {
        for (std::int64_t it = i1 - 1; it >= i0; --it) {
          const std::int64_t r = it / static_cast<std::int64_t>(pl.nchunks);
          eng.grad_chunk(r, static_cast<std::size_t>(it % static_cast<std::int64_t>(pl.nchunks)),
                         rows[static_cast<std::size_t>(r)], s, segs[static_cast<std::size_t>(it)], exps_of(it));
        }
        if (pl.stream) cpu::StreamFence();
      }
    }
    if (err_row[0] == N && want_grad)
      for (std::int64_t r = 0; r < N; ++r) eng.fix_target(r, rows[static_cast<std::size_t>(r)]);
    if (err_row[0] == N)
      for (std::int64_t r = 0; r < N; ++r)
        record(r, rows[static_cast<std::size_t>(r)], partial[static_cast<std::size_t>(r / kRowBlock)]);
  }

  // The first failing row (lowest index, whatever the thread) decides.
  std::int64_t bad = N;
  int kind = 0;
  for (std::size_t i = 0; i < err_row.size(); ++i)
    if (err_row[i] < bad) { bad = err_row[i]; kind = err_kind[i]; }
  if (bad < N) {
    switch (static_cast<RowError>(kind)) {
      case RowError::kNonFinite: fail_nonfinite_row(pl.fn, pl.z, pl.sz, bad);
      case RowError::kAllNegInf:
        fail(ErrorCode::kUndefined, std::string(pl.fn) + ": row " + std::to_string(bad) +
                                        " has every (transformed) logit -inf: no softmax");
      case RowError::kSoftBad: {
        const void* base = row_ptr(pl.p.data, pl.p.dtype, pl.sp.stride, bad);
        for (std::int64_t j = 0; j < pl.sz.cols; ++j) {
          const double v = load_elem(base, pl.p.dtype, static_cast<std::size_t>(j));
          if (!(v >= 0 && v <= 1))
            fail(std::isnan(v) ? ErrorCode::kNonFinite : ErrorCode::kNotDistribution,
                 std::string(pl.fn) + ": soft target[" + std::to_string(bad) + "][" +
                     std::to_string(j) + "] = " + fmt_num(v) + " is not a probability in [0, 1]");
        }
        [[fallthrough]];
      }
      case RowError::kSoftSum: {
        const void* base = row_ptr(pl.p.data, pl.p.dtype, pl.sp.stride, bad);
        NeumaierSum ps;
        for (std::int64_t j = 0; j < pl.sz.cols; ++j)
          ps.add(load_elem(base, pl.p.dtype, static_cast<std::size_t>(j)));
        fail(ErrorCode::kNotDistribution,
             std::string(pl.fn) + ": soft target row " + std::to_string(bad) + " sums to " +
                 fmt_num(ps.value()) + ", not 1 (tolerance " +
                 fmt_num(norm_tolerance(pl.p.dtype, static_cast<std::size_t>(pl.sz.cols))) + ")");
      }
      case RowError::kNone: break;
    }
  }
  RunResult out;
  for (const Partial& p : partial) {
    out.ce.add(p.ce.value());
    out.zl.add(p.zl.value());
    out.correct += p.correct;
  }
  return out;
}

// Validates everything and fills the plan; returns the mean denominators.
struct Denoms {
  std::int64_t count = 0;
  double weight_sum = 0;
};

Denoms prepare(const char* fn, const MatrixView& logits, const Targets& targets,
               const CrossEntropyOptions& o, const MutableMatrixView& grad, Plan& pl) {
  pl.fn = fn;
  pl.z = logits;
  pl.sz = check_matrix(fn, "logits", logits.data, logits.dtype, logits.rows, logits.cols,
                       logits.row_stride);
  const std::int64_t N = pl.sz.rows, V = pl.sz.cols;
  if (V == 0)
    fail(ErrorCode::kEmpty, std::string(fn) + ": logits have V = 0 classes; at least one is needed");
  if (grad.data) {
    pl.g = grad;
    pl.sg = check_matrix(fn, "grad", grad.data, grad.dtype, grad.rows, grad.cols, grad.row_stride);
    if (pl.sg.rows != N || pl.sg.cols != V)
      fail(ErrorCode::kShapeMismatch, std::string(fn) + ": grad is " + std::to_string(pl.sg.rows) +
                                          "×" + std::to_string(pl.sg.cols) + " but logits are " +
                                          std::to_string(N) + "×" + std::to_string(V));
    check_alias(fn, "grad", logits, pl.sz, grad, pl.sg);
  }
  check_loss_options(fn, o);
  pl.w = o.class_weight;
  if (pl.w) {
    NeumaierSum ws;
    for (std::int64_t c = 0; c < V; ++c) {
      const double w = pl.w[c];
      if (!(w >= 0) || !std::isfinite(w))
        fail(ErrorCode::kInvalidArgument, std::string(fn) + ": class_weight[" + std::to_string(c) +
                                              "] = " + fmt_num(w) + " must be finite and ≥ 0");
      ws.add(w);
    }
    pl.w_total = ws.value();
    if (grad.data) check_disjoint(fn, "class weights", pl.w, static_cast<std::size_t>(V) * sizeof(float), grad, pl.sg);
  } else {
    pl.w_total = static_cast<double>(V);
  }
  const double eps = o.label_smoothing;
  pl.smoothing = eps > 0;
  if (o.smoothing == Smoothing::kUniform) {
    pl.a = 1 - eps;
    pl.b = eps / static_cast<double>(V);
  } else {  // kOffTarget (check_loss_options allows no other)
    // (1 − ε)p + ε(1 − p)/(V − 1); with V = 1 there is no other class.
    pl.b = V > 1 ? eps / static_cast<double>(V - 1) : 0.0;
    pl.a = V > 1 ? 1 - eps - pl.b : 1.0;
  }
  pl.z_loss = o.z_loss;
  pl.softcap = o.softcap;
  pl.temperature = o.temperature;
  pl.gamma = o.focal_gamma;
  pl.slow = o.softcap > 0 || o.temperature != 1.0 || o.focal_gamma > 0;
  pl.ignore_index = o.ignore_index;
  pl.accuracy = o.compute_accuracy;

  Denoms dn;
  if (targets.kind == Targets::Kind::kSoft) {
    pl.soft = true;
    pl.p = targets.soft;
    pl.sp = check_matrix(fn, "soft targets", targets.soft.data, targets.soft.dtype,
                         targets.soft.rows, targets.soft.cols, targets.soft.row_stride);
    if (pl.sp.rows != N || pl.sp.cols != V)
      fail(ErrorCode::kShapeMismatch,
           std::string(fn) + ": soft targets are " + std::to_string(pl.sp.rows) + "×" +
               std::to_string(pl.sp.cols) + " but logits are " + std::to_string(N) + "×" +
               std::to_string(V));
    if (grad.data) {
      // The gradient may overwrite the logits, never the targets.
      MutableMatrixView gv = grad;
      check_alias(fn, "grad (against the soft targets)", targets.soft, pl.sp, gv, pl.sg);
      if (gv.data == targets.soft.data && N > 0)
        fail(ErrorCode::kInvalidArgument, std::string(fn) + ": grad must not alias the soft targets");
    }
    dn.count = N;
    dn.weight_sum = static_cast<double>(N);
  } else if (targets.kind == Targets::Kind::kIndexInt32 ||
             targets.kind == Targets::Kind::kIndexInt64) {
    pl.t64 = targets.kind == Targets::Kind::kIndexInt64;
    pl.targets = targets.indices;
    if (N > 0 && pl.targets == nullptr)
      fail(ErrorCode::kInvalidArgument, std::string(fn) + ": targets.indices is null");
    if (grad.data)
      check_disjoint(fn, "targets", pl.targets, static_cast<std::size_t>(N) * (pl.t64 ? 8 : 4), grad, pl.sg);
    auto out_of_range = [&](std::int64_t r) {
      const std::int64_t t = target_of(pl, r);
      fail(ErrorCode::kTargetOutOfRange,
           std::string(fn) + ": targets[" + std::to_string(r) + "] = " + std::to_string(t) +
               " is out of range [0, " + std::to_string(V) + ") and is not ignore_index (" +
               std::to_string(pl.ignore_index) + ")");
    };
    if (!pl.w) {
      // Without class weights the weight sum is the count (exact in any
      // order): a SIMD scan (cpu::ScanTargets), on all threads for many
      // rows (at V = 10 a serial scalar pass was ~1 ms of a 7 ms call). The
      // first bad row is the smallest one whichever thread saw it.
      const int check_threads = N < 65536 ? 1 : thread_count(o.num_threads);
      std::int64_t count = 0, bad = N;
      // Rows [r0, r1): adds their count, lowers bad to their first bad row.
      auto scan = [&](std::int64_t r0, std::int64_t r1, std::int64_t& count_, std::int64_t& bad_) {
        const auto n = static_cast<std::size_t>(r1 - r0);
        const cpu::TargetScan s =
            pl.t64 ? cpu::ScanTargets(static_cast<const std::int64_t*>(pl.targets) + r0, n, V, pl.ignore_index)
                   : cpu::ScanTargets(static_cast<const std::int32_t*>(pl.targets) + r0, n, V, pl.ignore_index);
        count_ += s.count;
        if (s.first_bad >= 0) bad_ = std::min(bad_, r0 + s.first_bad);
      };
      if (check_threads > 1) {
#pragma omp parallel num_threads(check_threads) reduction(+ : count) reduction(min : bad)
        {
          const auto [r0, r1] = static_share(N, omp_get_thread_num(), omp_get_num_threads());
          scan(r0, r1, count, bad);
        }
      } else {
        scan(0, N, count, bad);
      }
      if (bad < N) out_of_range(bad);
      dn.count = count;
      dn.weight_sum = static_cast<double>(count);
    } else {
      NeumaierSum ws;
      for (std::int64_t r = 0; r < N; ++r) {
        const std::int64_t t = target_of(pl, r);
        if (t == pl.ignore_index) continue;
        if (t < 0 || t >= V) out_of_range(r);
        ++dn.count;
        ws.add(pl.w[t]);
      }
      dn.weight_sum = ws.value();
    }
  } else {
    fail(ErrorCode::kInvalidArgument, std::string(fn) + ": invalid targets kind");
  }
  pl.nchunks = (static_cast<std::size_t>(V) + cpu::kChunk - 1) / cpu::kChunk;
  pl.fetch_rows = static_cast<std::int64_t>(cpu::ShortRowFetchRows(grad.data != nullptr));
  pl.stream = grad.data && static_cast<std::size_t>(N) * static_cast<std::size_t>(V) *
                                   DTypeSize(grad.dtype) >= kStreamBytes;
  // In place, a row of up to kInPlaceCachedRowBytes is still in this core's
  // cache when its gradient is written over it: plain stores then only
  // dirty the lines its read brought in (written back once, when evicted),
  // where a streaming store must first push each cached line out. Zen 3, 2
  // threads, alternated rounds, streaming → plain: 65536×1000 fwd+bwd in
  // place 44–62 → 25–35 ms, 4096×32000 57–80 → 48–54 (4 of 4 rounds each,
  // now faster than out of place); 8192×50257 and 2048×128256, whose rows
  // have left L2 by then, gained nothing (so they keep streaming), and the
  // short-row tiles (V ≤ kSmallV) neither.
  if (pl.stream && grad.data == logits.data && V > static_cast<std::int64_t>(cpu::kSmallV) &&
      static_cast<std::size_t>(V) * DTypeSize(grad.dtype) <= kInPlaceCachedRowBytes)
    pl.stream = false;
  return dn;
}

RunResult run(const Plan& pl, const CrossEntropyOutputs& outs, int nt) {
  if (pl.z.dtype == DType::kF64) return run_batch<double>(pl, outs, nt);
  return run_batch<float>(pl, outs, nt);
}

}  // namespace

// Below 2^18 elements (1 MiB of float32, under 0.1 ms on one core) a second
// thread costs more than it saves: its wake-up, and on a loaded machine a
// descheduled team member stalls the call for a scheduler tick (4 ms was
// measured for 1×65536 with the old 2^16 threshold). The result does not
// depend on the thread count, so this is only a speed choice.
int effective_threads(int nt, const Plan& pl) {
  const double elems = static_cast<double>(pl.sz.rows) * static_cast<double>(pl.sz.cols);
  return elems < 262144.0 ? 1 : nt;
}

namespace {

CrossEntropyResult loss_impl(const MatrixView& logits, const Targets& targets, const CrossEntropyOptions& options,
                             const CrossEntropyOutputs& outputs, bool in_region) {
  const char* fn = "cross_entropy_loss";
  int nt = thread_count(options.num_threads);
  Plan pl;
  const Denoms dn = prepare(fn, logits, targets, options, outputs.grad, pl);
  nt = in_region ? 1 : effective_threads(nt, pl);
  pl.in_region = in_region;
  pl.want_lse = outputs.row_lse != nullptr;
  CrossEntropyResult res;
  res.count = dn.count;
  res.weight_sum = dn.weight_sum;
  const bool mean = options.reduction == Reduction::kMean;
  const bool ce_empty = mean && !(dn.weight_sum > 0);
  const bool z_empty = mean && dn.count == 0;
  pl.scale_ce = options.grad_scale * (mean ? (ce_empty ? 0.0 : 1.0 / dn.weight_sum) : 1.0);
  pl.scale_z = options.grad_scale * (mean ? (z_empty ? 0.0 : 1.0 / static_cast<double>(dn.count)) : 1.0);
  if (pl.sz.rows == 0) {
    detail::reduce_loss(options, 0.0, 0.0, dn.weight_sum, dn.count, res);
    return res;
  }
  const RunResult rr = run(pl, outputs, nt);
  res.correct = options.compute_accuracy && !pl.soft ? rr.correct : 0;
  detail::reduce_loss(options, rr.ce.value(), rr.zl.value(), dn.weight_sum, dn.count, res);
  return res;
}

}  // namespace

CrossEntropyResult cross_entropy_loss(const MatrixView& logits, const Targets& targets,
                                      const CrossEntropyOptions& options,
                                      const CrossEntropyOutputs& outputs) {
  return loss_impl(logits, targets, options, outputs, false);
}

CrossEntropyResult detail::cross_entropy_loss_in_region(const MatrixView& logits, const Targets& targets,
                                                        const CrossEntropyOptions& options,
                                                        const CrossEntropyOutputs& outputs) {
  return loss_impl(logits, targets, options, outputs, true);
}

void cross_entropy_backward(const MatrixView& logits, const Targets& targets,
                            const float* row_lse, const CrossEntropyOptions& options,
                            const float* row_upstream, const MutableMatrixView& grad) {
  const char* fn = "cross_entropy_backward";
  int nt = thread_count(options.num_threads);
  if (grad.data == nullptr && logits.rows > 0)
    fail(ErrorCode::kInvalidArgument, std::string(fn) + ": grad.data is null");
  Plan pl;
  const Denoms dn = prepare(fn, logits, targets, options, grad, pl);
  // row_lse is accepted for API symmetry; the statistics are recomputed from
  // the logits (same kernels, same bits as the forward), which is both exact
  // and no slower: the row is read once into cache either way.
  (void)row_lse;
  const bool mean = options.reduction == Reduction::kMean;
  if (row_upstream && options.reduction != Reduction::kNone)
    fail(ErrorCode::kInvalidArgument,
         std::string(fn) + ": row_upstream needs reduction none (one value per row)");
  pl.row_upstream = row_upstream;
  check_disjoint(fn, "row_upstream", row_upstream, static_cast<std::size_t>(pl.sz.rows) * sizeof(float), grad,
                 pl.sg);
  nt = effective_threads(nt, pl);
  pl.scale_ce = options.grad_scale * (mean ? (dn.weight_sum > 0 ? 1.0 / dn.weight_sum : 0.0) : 1.0);
  pl.scale_z = options.grad_scale *
               (mean ? (dn.count > 0 ? 1.0 / static_cast<double>(dn.count) : 0.0) : 1.0);
  if (pl.sz.rows == 0) return;
  CrossEntropyOutputs outs;
  outs.grad = grad;
  run(pl, outs, nt);
}

// ------------------------------------------------------------ BCE and KL

namespace {

// Loads a broadcast weight (none, per class, or N×C).
struct Bcast {
  const MatrixView* m = nullptr;
  Shape s;
  double at(std::int64_t r, std::int64_t c) const {
    if (m == nullptr || m->data == nullptr) return 1.0;
    const std::int64_t rr = s.rows == 1 ? 0 : r;
    return load_elem(row_ptr(m->data, m->dtype, s.stride, rr), m->dtype, static_cast<std::size_t>(c));
  }
};

}  // namespace

double binary_cross_entropy_with_logits_loss(const MatrixView& logits, const MatrixView& targets,
                                             const BceOptions& options, const BceOutputs& outputs) {
  const char* fn = "binary_cross_entropy_with_logits_loss";
  const int nt = thread_count(options.num_threads);
  const Shape sx = check_matrix(fn, "logits", logits.data, logits.dtype, logits.rows, logits.cols,
                                logits.row_stride);
  const Shape sy = check_matrix(fn, "targets", targets.data, targets.dtype, targets.rows,
                                targets.cols, targets.row_stride);
  const std::int64_t N = sx.rows, C = sx.cols;
  if (sy.rows != N || sy.cols != C)
    fail(ErrorCode::kShapeMismatch, std::string(fn) + ": targets are " + std::to_string(sy.rows) +
                                        "×" + std::to_string(sy.cols) + " but logits are " +
                                        std::to_string(N) + "×" + std::to_string(C));
  Bcast wb;
  if (options.weight.data) {
    wb.m = &options.weight;
    wb.s = check_matrix(fn, "weight", options.weight.data, options.weight.dtype,
                        options.weight.rows, options.weight.cols, options.weight.row_stride);
    if (!((wb.s.rows == 1 || wb.s.rows == N) && wb.s.cols == C))
      fail(ErrorCode::kShapeMismatch, std::string(fn) + ": weight is " + std::to_string(wb.s.rows) +
                                          "×" + std::to_string(wb.s.cols) + "; it must be 1×" +
                                          std::to_string(C) + " or " + std::to_string(N) + "×" +
                                          std::to_string(C));
  }
  if (!std::isfinite(options.grad_scale))
    fail(ErrorCode::kInvalidArgument, std::string(fn) + ": grad_scale = " +
                                          fmt_num(options.grad_scale) + " must be finite");
  const ElementwiseShapes outs =
      check_elementwise_outputs(fn, "logits", logits, sx, outputs.grad, outputs.elem_loss);
  const Shape &sg = outs.grad, &sl = outs.elem_loss;
  const bool mean = options.reduction == Reduction::kMean;
  const double numel = static_cast<double>(N) * static_cast<double>(C);
  if (N == 0 || C == 0) return mean ? std::numeric_limits<double>::quiet_NaN() : 0.0;
  const double gscale = options.grad_scale * (mean ? 1.0 / numel : 1.0);
  // float32 everywhere: the SIMD row kernel; anything else, and any row it
  // flags (non-finite logits, targets outside [0, 1]), the scalar path below.
  const bool fast = logits.dtype == DType::kF32 && targets.dtype == DType::kF32 &&
                    (!outputs.grad.data || outputs.grad.dtype == DType::kF32) &&
                    (!outputs.elem_loss.data || outputs.elem_loss.dtype == DType::kF32) &&
                    (!options.weight.data || options.weight.dtype == DType::kF32);
  std::vector<double> part(static_cast<std::size_t>(N), 0.0);
  std::int64_t bad_row = N, bad_col = 0;
  double bad_val = 0;
  bool bad_is_target = false;
  // Short packed rows without per-class broadcasts are processed a group of
  // rows at a time (elementwise, so a group is just a longer row). The
  // grouping depends on the shape and options only, never on the threads.
  const bool packed = sx.stride == C && sy.stride == C && (!outputs.grad.data || sg.stride == C) &&
                      (!outputs.elem_loss.data || sl.stride == C) && options.pos_weight == nullptr &&
                      (!options.weight.data || (wb.s.rows == N && wb.s.stride == C && N > 1));
  const std::int64_t group = fast && packed && C < 8192 ? std::max<std::int64_t>(1, 8192 / C) : 1;
  const std::int64_t units = (N + group - 1) / group;
#pragma omp parallel num_threads(nt)
  {
    std::vector<double> x, y;
    std::int64_t my_bad = N, my_col = 0;
    double my_val = 0;
    bool my_t = false;
    // The scalar row, in double: the same rearranged formula as bce-inl.h.
    auto scalar_row = [&](std::int64_t r) {
      x.resize(static_cast<std::size_t>(C));
      y.resize(static_cast<std::size_t>(C));
      load_row(row_ptr(logits.data, logits.dtype, sx.stride, r), logits.dtype, static_cast<std::size_t>(C), x.data());
      load_row(row_ptr(targets.data, targets.dtype, sy.stride, r), targets.dtype, static_cast<std::size_t>(C), y.data());
      void* g = outputs.grad.data ? row_ptr(outputs.grad.data, outputs.grad.dtype, sg.stride, r) : nullptr;
      void* l = outputs.elem_loss.data ? row_ptr(outputs.elem_loss.data, outputs.elem_loss.dtype, sl.stride, r)
                                       : nullptr;
      NeumaierSum acc;
      for (std::int64_t c = 0; c < C; ++c) {
        const double xv = x[static_cast<std::size_t>(c)], yv = y[static_cast<std::size_t>(c)];
        if (std::isnan(xv)) { my_bad = r; my_col = c; my_val = xv; return; }
        if (!(yv >= 0 && yv <= 1)) { my_bad = r; my_col = c; my_val = yv; my_t = true; return; }
        const double w = wb.at(r, c);
        const double pw = options.pos_weight ? options.pos_weight[c] : 1.0;
        const double lw = 1 + (pw - 1) * yv;
        const double e = std::exp(-std::fabs(xv));
        // ±inf logits: the limits (a zero coefficient times ∞ is 0).
        const double lin = xv >= 0 ? ((1 - yv) == 0 ? 0.0 : (1 - yv) * xv)
                                   : (pw * yv == 0 ? 0.0 : -pw * yv * xv);
        const double loss = w == 0 ? 0.0 : w * (lw * std::log1p(e) + lin);
        acc.add(loss);
        if (l) store_scalar(l, outputs.elem_loss.dtype, static_cast<std::size_t>(c), loss);
        if (g) {
          const double num = xv >= 0 ? (1 - yv) - pw * yv * e : (1 - yv) * e - pw * yv;
          store_scalar(g, outputs.grad.dtype, static_cast<std::size_t>(c), gscale * w * num / (1 + e));
        }
      }
      part[static_cast<std::size_t>(r)] = acc.value();
    };
    std::vector<float> wrow;
#pragma omp for schedule(static)
    for (std::int64_t u = 0; u < units; ++u) {
      if (my_bad < N) continue;
      const std::int64_t r0 = u * group, r1 = std::min(N, r0 + group);
      if (fast) {
        // A unit of `group` packed rows is one long row for the kernel.
        const std::size_t n = static_cast<std::size_t>((r1 - r0) * C);
        cpu::BceRowSpec spec;
        spec.grad_scale = gscale;
        spec.pos_weight = options.pos_weight;
        if (options.weight.data)
          spec.weight = static_cast<const float*>(row_ptr(options.weight.data, DType::kF32, wb.s.stride,
                                                          wb.s.rows == 1 ? 0 : r0));
        float* grow = outputs.grad.data
                          ? static_cast<float*>(row_ptr(outputs.grad.data, DType::kF32, sg.stride, r0))
                          : nullptr;
        // In place, the gradient goes through a cached scratch row, so that a
        // flagged row still has its logits for the scalar path.
        const bool in_place = grow != nullptr && outputs.grad.data == logits.data;
        if (in_place) wrow.resize(n);
        spec.grad = in_place ? wrow.data() : grow;
        spec.elem_loss = outputs.elem_loss.data
                             ? static_cast<float*>(row_ptr(outputs.elem_loss.data, DType::kF32, sl.stride, r0))
                             : nullptr;
        cpu::BceRowStats st;
        cpu::BceRowF32(static_cast<const float*>(row_ptr(logits.data, DType::kF32, sx.stride, r0)),
                       static_cast<const float*>(row_ptr(targets.data, DType::kF32, sy.stride, r0)), n, spec,
                       &st);
        if (!st.flagged) {
          if (in_place) std::memcpy(grow, wrow.data(), n * 4);
          part[static_cast<std::size_t>(r0)] = st.loss;
          continue;
        }
      }
      for (std::int64_t r = r0; r < r1 && my_bad == N; ++r) scalar_row(r);
    }
#pragma omp critical
    if (my_bad < bad_row) {
      bad_row = my_bad;
      bad_col = my_col;
      bad_val = my_val;
      bad_is_target = my_t;
    }
  }
  if (bad_row < N) {
    if (bad_is_target)
      fail(std::isnan(bad_val) ? ErrorCode::kNonFinite : ErrorCode::kNotDistribution,
           std::string(fn) + ": targets[" + std::to_string(bad_row) + "][" +
               std::to_string(bad_col) + "] = " + fmt_num(bad_val) + " is not in [0, 1]");
    fail(ErrorCode::kNonFinite, std::string(fn) + ": logits[" + std::to_string(bad_row) + "][" +
                                    std::to_string(bad_col) + "] = " + fmt_num(bad_val));
  }
  NeumaierSum total;
  for (double p : part) total.add(p);
  return mean ? total.value() / numel : total.value();
}

double kl_div_loss(const MatrixView& input_log_q, const MatrixView& target,
                   const KlDivOptions& options, const KlDivOutputs& outputs) {
  const char* fn = "kl_div_loss";
  const int nt = thread_count(options.num_threads);
  const Shape sx = check_matrix(fn, "input", input_log_q.data, input_log_q.dtype,
                                input_log_q.rows, input_log_q.cols, input_log_q.row_stride);
  const Shape sy = check_matrix(fn, "target", target.data, target.dtype, target.rows, target.cols,
                                target.row_stride);
  const std::int64_t N = sx.rows, C = sx.cols;
  if (sy.rows != N || sy.cols != C)
    fail(ErrorCode::kShapeMismatch, std::string(fn) + ": target shape differs from input");
  if (!std::isfinite(options.grad_scale))
    fail(ErrorCode::kInvalidArgument, std::string(fn) + ": grad_scale must be finite");
  const ElementwiseShapes outs =
      check_elementwise_outputs(fn, "input", input_log_q, sx, outputs.grad, outputs.elem_loss);
  const Shape &sg = outs.grad, &sl = outs.elem_loss;
  const double numel = static_cast<double>(N) * static_cast<double>(C);
  double div = 1.0;
  switch (options.reduction) {
    case KlReduction::kNone:
    case KlReduction::kSum: div = 1.0; break;
    case KlReduction::kMean: div = numel; break;
    case KlReduction::kBatchMean: div = static_cast<double>(N); break;
  }
  if (N == 0 || C == 0)
    return (options.reduction == KlReduction::kMean || options.reduction == KlReduction::kBatchMean)
               ? std::numeric_limits<double>::quiet_NaN()
               : 0.0;
  const double gscale = options.grad_scale / div;
  std::vector<NeumaierSum> part(static_cast<std::size_t>(N));
  std::int64_t bad_row = N, bad_col = 0;
  double bad_val = 0;
  bool bad_target = false;
#pragma omp parallel num_threads(nt)
  {
    std::vector<double> x(static_cast<std::size_t>(C)), y(static_cast<std::size_t>(C));
    std::int64_t my_bad = N, my_col = 0;
    double my_val = 0;
    bool my_t = false;
#pragma omp for schedule(static)
    for (std::int64_t r = 0; r < N; ++r) {
      if (my_bad < N) continue;
      load_row(row_ptr(input_log_q.data, input_log_q.dtype, sx.stride, r), input_log_q.dtype,
               static_cast<std::size_t>(C), x.data());
      load_row(row_ptr(target.data, target.dtype, sy.stride, r), target.dtype,
               static_cast<std::size_t>(C), y.data());
      void* g = outputs.grad.data ? row_ptr(outputs.grad.data, outputs.grad.dtype, sg.stride, r) : nullptr;
      void* l = outputs.elem_loss.data
                    ? row_ptr(outputs.elem_loss.data, outputs.elem_loss.dtype, sl.stride, r)
                    : nullptr;
      NeumaierSum acc;
      for (std::int64_t c = 0; c < C; ++c) {
        const double xv = x[static_cast<std::size_t>(c)], tv = y[static_cast<std::size_t>(c)];
        if (std::isnan(xv)) { my_bad = r; my_col = c; my_val = xv; break; }
        double p, loss;
        if (options.log_target) {
          if (std::isnan(tv) || tv == kInf) { my_bad = r; my_col = c; my_val = tv; my_t = true; break; }
          p = std::exp(tv);
          loss = p > 0 ? p * (tv - xv) : 0.0;
        } else {
          if (!(tv >= 0)) { my_bad = r; my_col = c; my_val = tv; my_t = true; break; }
          p = tv;
          loss = p > 0 ? p * (std::log(p) - xv) : 0.0;  // 0·log 0 = 0
        }
        acc.add(loss);
        if (l) store_scalar(l, outputs.elem_loss.dtype, static_cast<std::size_t>(c), loss);
        if (g) store_scalar(g, outputs.grad.dtype, static_cast<std::size_t>(c), -gscale * p);
      }
      part[static_cast<std::size_t>(r)] = acc;
    }
#pragma omp critical
    if (my_bad < bad_row) {
      bad_row = my_bad;
      bad_col = my_col;
      bad_val = my_val;
      bad_target = my_t;
    }
  }
  if (bad_row < N)
    fail(bad_target && !std::isnan(bad_val) ? ErrorCode::kNotDistribution : ErrorCode::kNonFinite,
         std::string(fn) + ": " + (bad_target ? "target[" : "input[") + std::to_string(bad_row) +
             "][" + std::to_string(bad_col) + "] = " + fmt_num(bad_val) +
             (bad_target ? " is not a valid (log-)probability" : " is NaN"));
  NeumaierSum total;
  for (const NeumaierSum& p : part) total.add(p.value());
  return total.value() / div;
}

}  // namespace xent
