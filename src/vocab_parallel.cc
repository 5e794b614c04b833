// vocab_parallel_cross_entropy (xent/vocab_parallel.h): the fused loss over
// logits sharded by vocabulary columns. The local passes run on the fused
// loss's chunk kernels (src/cpu/) when the logit is not transformed (no
// softcap, temperature or focal γ); otherwise plain float64 loops.
//
// Math, per non-ignored row (z = transformed logits, over all V classes):
//   m = max_j z_j (allreduce max),  s = Σ_j exp(z_j − m) (allreduce sum),
//   lse = m + log s,  q_j = exp(z_j − lse).
// The smoothed one-hot target is t'_c = a·[c = y] + b with
//   uniform:    a = 1 − ε,            b = ε/V
//   off-target: a = 1 − ε − ε/(V−1),  b = ε/(V−1)   (V = 1: a = 1, b = 0)
// (V is the GLOBAL vocabulary: the result does not depend on the sharding,
// unlike Megatron's local-V smoothing, Megatron-LM #737.) With weights w:
//   CE = a·w_y·(lse − z_y) + b·Σ_c w_c·(lse − z_c)
//      = a·w_y·(lse − z_y) + b·(W·log s + Σ_c w_c·(m − z_c)),   W = Σ_c w_c,
// where every term of Σ w_c (m − z_c) is ≥ 0 (no cancellation), and z_y
// comes from the rank that owns class y (sum-allreduce of one non-zero).
//   dCE/dz_j = (C·q_j − w_j·t'_j)·dz_j/dx_j,  C = Σ_c w_c t'_c = a·w_y + b·W,
//   z-loss c·lse²:  d/dz_j = 2c·lse·q_j.
// Reductions and empty means follow xent::cross_entropy_loss exactly.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cpu/kernels.h"
#include "reduce_loss.h"
#include "validate.h"
#include "vocab_parallel_internal.h"
#include "xent/vocab_parallel.h"

namespace xent {
namespace {

constexpr const char* kFn = "vocab_parallel_cross_entropy";
constexpr double kInf = std::numeric_limits<double>::infinity();

double load(const MatrixView& m, std::int64_t r, std::int64_t c) {
  const std::int64_t stride = m.row_stride ? m.row_stride : m.cols;
  const std::int64_t i = r * stride + c;
  return m.dtype == DType::kF32 ? double(static_cast<const float*>(m.data)[i])
                                : static_cast<const double*>(m.data)[i];
}

void store(const MutableMatrixView& g, std::int64_t r, std::int64_t c, double v) {
  const std::int64_t stride = g.row_stride ? g.row_stride : g.cols;
  const std::int64_t i = r * stride + c;
  if (g.dtype == DType::kF32)
    static_cast<float*>(g.data)[i] = static_cast<float>(v);
  else
    static_cast<double*>(g.data)[i] = v;
}

std::int64_t target_of(const Targets& t, std::int64_t r) {
  return t.kind == Targets::Kind::kIndexInt32 ? static_cast<const std::int32_t*>(t.indices)[r]
                                              : static_cast<const std::int64_t*>(t.indices)[r];
}

std::string num(double v) { return detail::fmt_num(v); }


// A non-ignored row holding NaN or +inf: an Error naming the row and the
// global column.
void check_row_finite(const MatrixView& x, std::int64_t offset, const Targets& targets,
                      const CrossEntropyOptions& o, std::int64_t r) {
  if (target_of(targets, r) == o.ignore_index) return;
  for (std::int64_t c = 0; c < x.cols; ++c) {
    const double v = load(x, r, c);
    if (std::isnan(v) || v == kInf)
      detail::fail(ErrorCode::kNonFinite, std::string(kFn) + ": local_logits[" +
                                              std::to_string(r) + "][" + std::to_string(c) +
                                              "] (global column " + std::to_string(offset + c) +
                                              ") = " + num(v));
  }
}

// ------------------------------------------------------------- SIMD path
// Without softcap, temperature or focal γ the transformed logit is the logit
// itself, and the local passes are those of the fused loss: the chunk
// kernels of src/cpu/ (one read for the statistics, one for the gradient).
// What crosses the ranks is unchanged (the same collectives, same payload).
bool use_simd_path(const MatrixView& x, const CrossEntropyOptions& o,
                   const VocabParallelOutputs& out) {
  return o.softcap == 0 && o.temperature == 1 && o.focal_gamma == 0 &&
         (out.grad.data == nullptr || out.grad.dtype == x.dtype);
}

// A row's local statistics are the fused loss's cpu::ChunkStats (max,
// Σ exp(z − max), and with smoothing Σ w_j and Σ w_j (max − z_j)), merged
// over its chunks with cpu::MergeStats. An empty shard: max -inf, sums 0.
cpu::ChunkStats empty_stats() {
  cpu::ChunkStats st;
  st.max = -kInf;
  return st;
}

template <class T>
const T* row_ptr_of(const MatrixView& x, std::int64_t r) {
  return static_cast<const T*>(x.data) + r * (x.row_stride ? x.row_stride : x.cols);
}

template <class T>
cpu::ChunkStats local_row_stats(const T* z, std::int64_t n, const T* w, bool want_coef) {
  cpu::ChunkStats acc = empty_stats();
  for (std::int64_t j0 = 0; j0 < n; j0 += static_cast<std::int64_t>(cpu::kChunk)) {
    const std::size_t len =
        static_cast<std::size_t>(std::min<std::int64_t>(cpu::kChunk, n - j0));
    cpu::CoefSpec cs;
    cs.want_coef = want_coef;
    cs.w = w ? w + j0 : nullptr;
    cpu::ChunkStats st;
    if constexpr (sizeof(T) == 4)
      cpu::ChunkStatsF32(z + j0, len, cs, &st);
    else
      cpu::ChunkStatsF64(z + j0, len, cs, &st);
    acc = cpu::MergeStats(acc, st);
  }
  return acc;
}

// The same statistics in plain float64 (rows the kernel flags as possibly
// non-finite; +inf max if one really is).
template <class T>
cpu::ChunkStats local_row_stats_scalar(const T* z, std::int64_t n, const T* w, bool want_coef) {
  cpu::ChunkStats acc = empty_stats();
  for (std::int64_t j = 0; j < n; ++j)
    if (std::isnan(double(z[j])) || double(z[j]) == kInf) {
      acc.max = kInf;
      acc.nonfinite = true;
      return acc;
    } else {
      acc.max = std::max(acc.max, double(z[j]));
    }
  for (std::int64_t j = 0; j < n; ++j) {
    const double v = z[j], wj = w ? double(w[j]) : 1.0;
    if (acc.max > -kInf) acc.sum_exp += std::exp(v - acc.max);
    if (want_coef && wj != 0) {
      acc.coef_sum += wj;
      acc.coef_dot += wj * (acc.max - v);
    }
  }
  return acc;
}

// Every row's local statistics. A non-ignored row with NaN / +inf throws
// (the lowest such row, naming its first bad column); an ignored one gets
// max = +inf (its lse is then reported NaN, as on the scalar path).
template <class T>
std::vector<cpu::ChunkStats> local_stats(const MatrixView& x, std::int64_t offset, const Targets& targets,
                                         const CrossEntropyOptions& o, const T* w,
                                         bool want_coef, int nt) {
  const std::int64_t N = x.rows, Vr = x.cols;
  std::vector<cpu::ChunkStats> loc(static_cast<std::size_t>(N));
  std::int64_t bad = N;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(min : bad)
  for (std::int64_t r = 0; r < N; ++r) {
    const T* z = row_ptr_of<T>(x, r);
    cpu::ChunkStats lr = local_row_stats(z, Vr, w, want_coef);
    if (lr.nonfinite) lr = local_row_stats_scalar(z, Vr, w, want_coef);
    if (lr.nonfinite && target_of(targets, r) != o.ignore_index) bad = std::min(bad, r);
    loc[static_cast<std::size_t>(r)] = lr;
  }
  if (bad < N) check_row_finite(x, offset, targets, o, bad);
  return loc;
}

// Everything that can be checked on this rank alone. Throws xent::Error.
void validate_local(const MatrixView& x, std::int64_t offset, std::int64_t V,
                    const Targets& targets, const CrossEntropyOptions& o,
                    const VocabParallelOutputs& out, bool scan_logits) {
  const std::string fn = kFn;
  auto bad = [&](ErrorCode c, const std::string& msg) { detail::fail(c, fn + ": " + msg); };
  if (x.dtype != DType::kF32 && x.dtype != DType::kF64)
    bad(ErrorCode::kInvalidArgument, std::string("local_logits dtype ") + DTypeName(x.dtype) +
                                         " is not supported (float32 or float64)");
  if (x.rows < 0 || x.cols < 0 || (x.row_stride != 0 && x.row_stride < x.cols))
    bad(ErrorCode::kShapeMismatch, "local_logits shape " + std::to_string(x.rows) + "x" +
                                       std::to_string(x.cols) + " with row_stride " +
                                       std::to_string(x.row_stride) + " is invalid");
  if (x.rows > 0 && x.cols > 0 && x.data == nullptr)
    bad(ErrorCode::kInvalidArgument, "local_logits.data is null");
  if (V <= 0) bad(ErrorCode::kEmpty, "vocab_total = " + std::to_string(V) + " (must be > 0)");
  if (offset < 0 || offset > V || x.cols > V - offset)
    bad(ErrorCode::kShapeMismatch, "the shard [vocab_offset = " + std::to_string(offset) +
                                       ", +" + std::to_string(x.cols) +
                                       ") is not inside [0, vocab_total = " + std::to_string(V) + ")");
  if (targets.kind == Targets::Kind::kSoft)
    bad(ErrorCode::kInvalidArgument, "soft targets are not supported yet (index targets only)");
  if (x.rows > 0 && targets.indices == nullptr)
    bad(ErrorCode::kInvalidArgument, "targets.indices is null");
  if (!(o.label_smoothing >= 0 && o.label_smoothing <= 1))
    bad(ErrorCode::kInvalidArgument, "options.label_smoothing = " + num(o.label_smoothing) +
                                         " is outside [0, 1]");
  if (!(o.temperature > 0) || !std::isfinite(o.temperature))
    bad(ErrorCode::kInvalidArgument, "options.temperature = " + num(o.temperature) + " (must be > 0)");
  if (!(o.softcap >= 0) || !std::isfinite(o.softcap))
    bad(ErrorCode::kInvalidArgument, "options.softcap = " + num(o.softcap) + " (must be >= 0)");
  if (!(o.z_loss >= 0) || !std::isfinite(o.z_loss))
    bad(ErrorCode::kInvalidArgument, "options.z_loss = " + num(o.z_loss) + " (must be >= 0)");
  if (!std::isfinite(o.grad_scale))
    bad(ErrorCode::kInvalidArgument, "options.grad_scale = " + num(o.grad_scale) + " (must be finite)");
  if (!(o.focal_gamma >= 0) || !std::isfinite(o.focal_gamma))
    bad(ErrorCode::kInvalidArgument, "options.focal_gamma = " + num(o.focal_gamma) +
                                         " (must be finite and >= 0)");
  if (o.class_weight)
    for (std::int64_t c = 0; c < V; ++c)
      if (!(o.class_weight[c] >= 0) || !std::isfinite(o.class_weight[c]))
        bad(ErrorCode::kInvalidArgument, "options.class_weight[" + std::to_string(c) +
                                             "] = " + num(o.class_weight[c]) +
                                             " (must be finite and >= 0)");
  const MutableMatrixView& g = out.grad;
  if (g.data) {
    if (g.dtype != DType::kF32 && g.dtype != DType::kF64)
      bad(ErrorCode::kInvalidArgument, std::string("grad dtype ") + DTypeName(g.dtype) +
                                           " is not supported (float32 or float64)");
    if (g.rows != x.rows || g.cols != x.cols || (g.row_stride != 0 && g.row_stride < g.cols))
      bad(ErrorCode::kShapeMismatch, "grad is " + std::to_string(g.rows) + "x" +
                                         std::to_string(g.cols) + " but local_logits is " +
                                         std::to_string(x.rows) + "x" + std::to_string(x.cols));
    if (g.data == x.data && (g.dtype != x.dtype || (g.row_stride ? g.row_stride : g.cols) !=
                                                       (x.row_stride ? x.row_stride : x.cols)))
      bad(ErrorCode::kInvalidArgument, "grad aliases local_logits with another dtype or stride");
  }
  // Targets first (all rows), then the logits of the rows that count.
  for (std::int64_t r = 0; r < x.rows; ++r) {
    const std::int64_t y = target_of(targets, r);
    if (y != o.ignore_index && (y < 0 || y >= V))
      bad(ErrorCode::kTargetOutOfRange, "targets[" + std::to_string(r) + "] = " +
                                            std::to_string(y) + " is outside [0, vocab_total = " +
                                            std::to_string(V) + ")");
  }
  if (scan_logits)
    for (std::int64_t r = 0; r < x.rows; ++r) check_row_finite(x, offset, targets, o, r);
}


// The gradient on the SIMD path: per active row g_j = alpha·exp(z_j − m)
// − β·w_j (the chunk kernel), then the owner rewrites the target's entry
// without the cancellation of C·q_y − w_y t'_y near q_y = 1 (as the fused
// loss: 1 − q_y = (s − 1)/s when z_y is the row max, whose term in s is
// exactly 1). Ignored rows get 0.
template <class T>
void simd_grad(const MatrixView& x, std::int64_t offset, const Targets& targets,
               const MutableMatrixView& g, const std::vector<double>& m,
               const std::vector<double>& sums, std::size_t K, const std::vector<double>& lse,
               const std::vector<char>& active, const std::vector<double>& Crow, double a,
               double b, double W, double ce_scale, double z_scale, const CrossEntropyOptions& o,
               const T* w, int nt) {
  const std::int64_t N = x.rows, Vr = x.cols;
  const std::int64_t gstride = g.row_stride ? g.row_stride : g.cols;
  // Streaming stores once the gradient is far larger than the caches (the
  // fused loss's rule); the fence orders them before the caller reads.
  const bool stream = double(N) * double(Vr) * sizeof(T) >= double(std::int64_t{1} << 26);
  const double gs = o.grad_scale, zc = o.z_loss;
#pragma omp parallel num_threads(nt)
  {
#pragma omp for schedule(static)
    for (std::int64_t r = 0; r < N; ++r) {
      T* gr = static_cast<T*>(g.data) + r * gstride;
      if (!active[r]) {
        std::fill(gr, gr + Vr, T(0));
        continue;
      }
      const std::int64_t y = target_of(targets, r);
      const double s = sums[K * r], zy = sums[K * r + 1];
      cpu::GradSpec spec;
      spec.max = m[r];
      spec.alpha = gs * (ce_scale * Crow[r] + z_scale * 2 * zc * lse[r]) / s;
      spec.subtract = b != 0;
      spec.beta = gs * ce_scale * b;
      spec.stream = stream;
      const T* z = row_ptr_of<T>(x, r);  // may be gr itself (in place)
      for (std::int64_t j0 = 0; j0 < Vr; j0 += static_cast<std::int64_t>(cpu::kChunk)) {
        const std::size_t len =
            static_cast<std::size_t>(std::min<std::int64_t>(cpu::kChunk, Vr - j0));
        spec.w = spec.subtract && w ? w + j0 : nullptr;
        if constexpr (sizeof(T) == 4)
          cpu::ChunkGradF32(z + j0, len, gr + j0, spec);
        else
          cpu::ChunkGradF64(z + j0, len, gr + j0, spec);
      }
      if (y >= offset && y < offset + Vr) {
        const double wy = o.class_weight ? double(o.class_weight[y]) : 1.0;
        const double qy = std::exp(zy - m[r]) / s;
        const double omq = zy == m[r] ? (s - 1.0) / s : 1.0 - qy;
        const double gy = gs * (ce_scale * (-wy * (a + b) * omq + qy * b * (W - wy)) +
                                z_scale * 2 * zc * lse[r] * qy);
        gr[y - offset] = static_cast<T>(gy);
      }
    }
    if (stream) cpu::StreamFence();
  }
}

}  // namespace

CrossEntropyResult vocab_parallel_cross_entropy(const MatrixView& x, std::int64_t offset,
                                                std::int64_t V, const Targets& targets,
                                                const CrossEntropyOptions& o, Communicator& comm,
                                                const VocabParallelOutputs& out) {
  return detail::vocab_parallel_cross_entropy_scaled(x, offset, V, targets, o, comm, out, nullptr);
}

namespace detail {

CrossEntropyResult vocab_parallel_cross_entropy_scaled(const MatrixView& x, std::int64_t offset,
                                                       std::int64_t V, const Targets& targets,
                                                       const CrossEntropyOptions& o,
                                                       Communicator& comm,
                                                       const VocabParallelOutputs& out,
                                                       const GradScales* scales) {
  // 0. Local checks, then one agreement, so that no rank enters a collective
  //    that another rank will never reach.
  const bool simd = use_simd_path(x, o, out);
  const int nt = o.num_threads > 0 ? o.num_threads : omp_get_max_threads();
  const int ntp = x.rows * x.cols < (std::int64_t{1} << 16) ? 1 : nt;
  // With smoothing the sums need Σ w_j (max − z_j) (b > 0 below).
  const bool want_coef = o.label_smoothing > 0 && (o.smoothing == Smoothing::kUniform || V > 1);
  std::vector<cpu::ChunkStats> loc;  // the SIMD path's local row statistics
  const float* w32 = nullptr;      // this shard's class weights, in the logits' type
  std::vector<double> w64;
  if (simd && o.class_weight && offset >= 0 && offset + x.cols <= V) {
    if (x.dtype == DType::kF32) w32 = o.class_weight + offset;
    else w64.assign(o.class_weight + offset, o.class_weight + offset + x.cols);
  }
  {
    bool ok = true;
    ErrorCode code = ErrorCode::kInvalidArgument;
    std::string message;
    try {
      validate_local(x, offset, V, targets, o, out, /*scan_logits=*/!simd);
      if (simd) {  // the statistics pass also finds the non-finite logits
        if (x.dtype == DType::kF32)
          loc = local_stats<float>(x, offset, targets, o, w32, want_coef, ntp);
        else
          loc = local_stats<double>(x, offset, targets, o, w64.empty() ? nullptr : w64.data(),
                                    want_coef, ntp);
      }
    } catch (const Error& e) {
      ok = false;
      code = e.code();
      message = e.what();
    }
    comm.agree(ok, code, message, kFn);
  }
  const std::int64_t N = x.rows, Vr = x.cols;
  const double T = o.temperature, cap = o.softcap;
  auto transform = [&](double v) { return (cap > 0 ? cap * std::tanh(v / cap) : v) / T; };
  auto weight = [&](std::int64_t c) { return o.class_weight ? double(o.class_weight[c]) : 1.0; };

  // Smoothing coefficients (see the header comment): t'_c = a·[c = y] + b.
  const double eps = o.label_smoothing;
  double a = 1.0, b = 0.0;
  if (eps > 0) {
    if (o.smoothing == Smoothing::kUniform) {
      a = 1 - eps;
      b = eps / double(V);
    } else if (V > 1) {
      a = 1 - eps - eps / double(V - 1);
      b = eps / double(V - 1);
    }
  }
  double W = 0;  // Σ_c w_c over the global vocabulary (weights are global)
  for (std::int64_t c = 0; c < V; ++c) W += weight(c);

  // 1. Row maxima. An ignored row with NaN / +inf sends +inf: its lse is then
  //    reported as NaN (such rows are not inspected, as in the fused loss).
  //    With compute_accuracy the same collective carries the raw maxima too
  //    (m[N + r]): the argmax is taken on the raw logits, as the fused loss.
  const bool acc = o.compute_accuracy;
  std::vector<double> m((acc ? 2 : 1) * N, -kInf);
  // The O(N·V_r) passes (1, 2, 5) split rows over threads: each row is one
  // thread's, in the same order, so the results do not depend on the count.
  if (simd) {  // no transform: the raw max is the max
    for (std::int64_t r = 0; r < N; ++r) {
      m[r] = loc[r].max;
      if (acc) m[N + r] = loc[r].max;
    }
  } else
#pragma omp parallel for num_threads(ntp) schedule(static)
  for (std::int64_t r = 0; r < N; ++r)
    for (std::int64_t c = 0; c < Vr; ++c) {
      const double v = load(x, r, c);
      const double z = std::isnan(v) ? kInf : transform(v);
      m[r] = std::max(m[r], z);
      if (acc) m[N + r] = std::max(m[N + r], std::isnan(v) ? kInf : v);
    }
  comm.allreduce_max(m.data(), m.size());

  // 2. Per-row sums, in one collective: [Σ exp(z − m), z_target, Σ w (m − z)]
  //    (the last only with smoothing), plus this rank's V_r (last element) so
  //    that every rank checks that the shards tile the vocabulary.
  //    With compute_accuracy two more: [the target's raw logit is the raw
  //    max (owner only), count of classes j < target at the raw max]; the
  //    row is correct iff 1 and 0 (argmax = first index of the maximum).
  const std::size_t K0 = b > 0 ? 3 : 2, K = acc ? K0 + 2 : K0;
  std::vector<double> sums(K * N + 1, 0.0);
  if (simd) {
    // This rank's share of each sum from its local statistics: the partial
    // Σ exp and Σ w (m − z) taken to the global max m, by merging with an
    // empty part whose max is m.
#pragma omp parallel for num_threads(ntp) schedule(static)
    for (std::int64_t r = 0; r < N; ++r) {
      if (!std::isfinite(m[r])) continue;
      cpu::ChunkStats at_m = empty_stats();
      at_m.max = m[r];
      const cpu::ChunkStats lr = cpu::MergeStats(loc[r], at_m);
      const std::int64_t y = target_of(targets, r);
      double* s = &sums[K * r];
      s[0] = lr.sum_exp;
      if (y >= offset && y < offset + Vr) s[1] = load(x, r, y - offset);
      if (K0 == 3) s[2] = lr.coef_dot;
      if (acc && loc[r].max == m[N + r])  // this rank holds the row's maximum
        for (std::int64_t c = 0; c < Vr; ++c)
          if (load(x, r, c) == m[N + r]) {
            if (offset + c == y) s[K0] = 1;
            else if (offset + c < y) s[K0 + 1] += 1;
          }
    }
  } else
#pragma omp parallel for num_threads(ntp) schedule(static)
  for (std::int64_t r = 0; r < N; ++r) {
    if (!std::isfinite(m[r])) continue;  // all -inf, or an ignored non-finite row
    const std::int64_t y = target_of(targets, r);
    double* s = &sums[K * r];
    for (std::int64_t c = 0; c < Vr; ++c) {
      const double v = load(x, r, c), z = transform(v);
      s[0] += std::exp(z - m[r]);
      if (offset + c == y) s[1] = z;  // the owner's contribution; 0 elsewhere
      if (K0 == 3 && weight(offset + c) != 0) s[2] += weight(offset + c) * (m[r] - z);
      if (acc && v == m[N + r]) {
        if (offset + c == y) s[K0] = 1;
        else if (offset + c < y) s[K0 + 1] += 1;
      }
    }
  }
  sums[K * N] = double(Vr);
  comm.allreduce_sum(sums.data(), sums.size());
  if (sums[K * N] != double(V))
    detail::fail(ErrorCode::kShapeMismatch,
                 std::string(kFn) + ": the shards hold " + num(sums[K * N]) +
                     " columns in all but vocab_total = " + std::to_string(V));

  // 3. Row statistics, identical on every rank (same inputs, same order).
  CrossEntropyResult res;
  std::vector<double> lse(N), ce(N, 0.0), zl(N, 0.0), Crow(N, 0.0);
  std::vector<char> active(N, 0);
  double ce_total = 0, z_total = 0;
  for (std::int64_t r = 0; r < N; ++r) {
    const std::int64_t y = target_of(targets, r);
    const bool ignored = y == o.ignore_index;
    const double* s = &sums[K * r];
    if (m[r] == kInf) lse[r] = std::numeric_limits<double>::quiet_NaN();
    else if (m[r] == -kInf) lse[r] = -kInf;
    else lse[r] = m[r] + std::log(s[0]);
    if (ignored) continue;
    if (m[r] == -kInf)
      detail::fail(ErrorCode::kUndefined, std::string(kFn) + ": row " + std::to_string(r) +
                                              " has all (transformed) logits -inf");
    active[r] = 1;
    ++res.count;
    const double wy = weight(y);
    res.weight_sum += wy;
    double row = 0;
    if (a * wy != 0) row += a * wy * (lse[r] - s[1]);
    if (K0 == 3) row += b * (W * std::log(s[0]) + s[2]);
    if (acc && s[K0] == 1 && s[K0 + 1] == 0) ++res.correct;
    ce[r] = row;
    zl[r] = o.z_loss * lse[r] * lse[r];
    Crow[r] = a * wy + b * W;
    ce_total += ce[r];
    z_total += zl[r];
  }

  // 3b. Focal loss (γ > 0): row CE = Σ_c α_c (1 − q_c)^γ (−log q_c) with
  //     α_c = w_c t'_c, and its gradient needs S = Σ_c α_c q_c f'(q_c) over
  //     every class: one more sum-collective of 2 doubles per row, after lse.
  //     q·f'(q) = γ(1 − q)^(γ−1) q log q − (1 − q)^γ (limits at q = 0, 1: the
  //     first term is 0). Per row then: g_j = α_j q_j f'(q_j) − q_j S.
  const double gamma = o.focal_gamma;
  std::vector<double> fs;
  auto alpha = [&](std::int64_t j, std::int64_t y) { return weight(j) * ((j == y ? a : 0.0) + b); };
  auto qfp = [&](double al, double lq, double q) {
    const double one_m = -std::expm1(lq), focal = std::pow(one_m, gamma);
    double v = -focal;
    if (q > 0 && one_m > 0) v += gamma * std::pow(one_m, gamma - 1) * q * lq;
    return al * v;
  };
  if (gamma > 0) {
    fs.assign(2 * N, 0.0);
#pragma omp parallel for num_threads(ntp) schedule(static)
    for (std::int64_t r = 0; r < N; ++r) {
      if (!active[r]) continue;
      const std::int64_t y = target_of(targets, r);
      for (std::int64_t c = 0; c < Vr; ++c) {
        const double al = alpha(offset + c, y);
        if (al == 0) continue;
        const double lq = transform(load(x, r, c)) - lse[r], q = std::exp(lq);
        fs[2 * r] += al * std::pow(-std::expm1(lq), gamma) * (-lq);
        fs[2 * r + 1] += qfp(al, lq, q);
      }
    }
    comm.allreduce_sum(fs.data(), fs.size());
    ce_total = 0;
    for (std::int64_t r = 0; r < N; ++r)
      if (active[r]) {
        ce[r] = fs[2 * r];
        ce_total += ce[r];
      }
  }

  // 4. Reduction (as cross_entropy_loss: the CE part over Σ w_y, the z-loss
  //    part over the non-ignored count, empty means per options.empty_mean).
  double ce_scale = 1, z_scale = 1;
  if (o.reduction == Reduction::kMean) {
    ce_scale = res.weight_sum > 0 ? 1 / res.weight_sum : 0;
    z_scale = res.count > 0 ? 1 / double(res.count) : 0;
  }
  reduce_loss(o, ce_total, z_total, res.weight_sum, res.count, res);
  if (scales) {  // a chunk of a larger batch: the caller's gradient scales
    ce_scale = scales->ce;
    z_scale = scales->z;
  }

  // 5. Outputs. row_lse and row_loss are written after every check passed.
  for (std::int64_t r = 0; r < N; ++r) {
    if (out.row_lse) out.row_lse[r] = static_cast<float>(lse[r]);
    if (out.row_loss) out.row_loss[r] = static_cast<float>(ce[r] + zl[r]);
  }
  if (out.grad.data && simd) {
    if (x.dtype == DType::kF32)
      simd_grad<float>(x, offset, targets, out.grad, m, sums, K, lse, active, Crow, a, b, W,
                       ce_scale, z_scale, o, w32, ntp);
    else
      simd_grad<double>(x, offset, targets, out.grad, m, sums, K, lse, active, Crow, a, b, W,
                        ce_scale, z_scale, o, w64.empty() ? nullptr : w64.data(), ntp);
  } else if (out.grad.data) {
#pragma omp parallel for num_threads(ntp) schedule(static)
    for (std::int64_t r = 0; r < N; ++r) {
      const std::int64_t y = target_of(targets, r);
      for (std::int64_t c = 0; c < Vr; ++c) {
        if (!active[r]) {
          store(out.grad, r, c, 0.0);
          continue;
        }
        const double v = load(x, r, c);  // read before the (possibly aliased) write
        double z = v, dz = 1;
        if (cap > 0) {
          const double th = std::tanh(v / cap);
          z = cap * th;
          dz = 1 - th * th;
        }
        z /= T;
        dz /= T;
        const double q = std::exp(z - lse[r]);
        const std::int64_t j = offset + c;
        const double wt = weight(j) * ((j == y ? a : 0.0) + b);  // w_j·t'_j
        // d(CE)/dz_j = C·q_j − w_j t'_j. (In float64 the cancellation of the
        // target entry near q_y = 1 costs ~1e-16 absolute; fine for the
        // float32 / float64 gradients written here.)
        const double dce = gamma > 0 ? qfp(wt, z - lse[r], q) - q * fs[2 * r + 1]
                                     : Crow[r] * q - wt;
        const double g = ce_scale * dce + z_scale * 2 * o.z_loss * lse[r] * q;
        store(out.grad, r, c, o.grad_scale * g * dz);
      }
    }
  }
  return res;
}

}  // namespace detail
}  // namespace xent
