// linear_cross_entropy with a communicator (issue 9): the output layer's
// weight sharded by vocabulary rows, Megatron style. Rank r holds rows
// [vocab_offset, vocab_offset + V_r) of the vocab_total × D weight (and its
// bias); hidden, targets (global ids), class_weight (all vocab_total entries)
// and options are the same on every rank.
//
// Row chunk by row chunk (the same chunks on every rank): this rank's logits
// chunk L = H_c·W_rᵀ (+ b_r), at most chunk × V_r floats, never N × V; the
// loss and L's gradient in place by the vocab-parallel kernel, whose
// collectives merge the per-row (max, Σexp, target logit) across ranks
// (O(1) doubles per row); then grad_hidden_c = G·W_r, all-reduced (sum) over
// the ranks, grad_weight_r += Gᵀ·H_c and grad_bias_r += colsum(G), local.
// The gradient of a chunk is scaled by the reduction of the whole batch (Σ w_y
// and the count are known up front from the targets), so chunking changes
// nothing but the summation order.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "blas.h"
#include "cpu/convert.h"
#include "linear_cross_entropy_sharded.h"
#include "reduce_loss.h"
#include "validate.h"
#include "vocab_parallel_internal.h"

namespace xent::detail {
namespace {

constexpr const char* kFn = "linear_cross_entropy";

std::int64_t stride_of(std::int64_t cols, std::int64_t row_stride) {
  return row_stride == 0 ? cols : row_stride;
}

// Rows [r0, r0 + nr) of m (float32 or bfloat16) as packed float32.
void rows_to_f32(const MatrixView& m, std::int64_t r0, std::int64_t nr, float* out) {
  const std::int64_t s = stride_of(m.cols, m.row_stride);
  for (std::int64_t i = 0; i < nr; ++i) {
    float* d = out + i * m.cols;
    if (m.dtype == DType::kF32) {
      std::memcpy(d, static_cast<const float*>(m.data) + (r0 + i) * s, sizeof(float) * m.cols);
    } else {
      const auto* src = static_cast<const std::uint16_t*>(m.data) + (r0 + i) * s;
      for (std::int64_t j = 0; j < m.cols; ++j) d[j] = cpu::bf16_to_float(src[j]);
    }
  }
}

std::string str(std::int64_t v) { return std::to_string(v); }

void check_view(const char* what, const void* data, DType dtype, std::int64_t rows,
                std::int64_t cols, std::int64_t row_stride) {
  if (dtype != DType::kF32 && dtype != DType::kBF16)
    fail(ErrorCode::kInvalidArgument, std::string(kFn) + ": " + what + " dtype " +
                                          DTypeName(dtype) + " is not supported (float32 or bfloat16)");
  if (rows < 0 || cols < 0 || (row_stride != 0 && row_stride < cols))
    fail(ErrorCode::kShapeMismatch, std::string(kFn) + ": " + what + " shape " + str(rows) + "x" +
                                        str(cols) + " with row_stride " + str(row_stride) + " is invalid");
  if (rows > 0 && cols > 0 && data == nullptr)
    fail(ErrorCode::kInvalidArgument, std::string(kFn) + ": " + what + ".data is null");
}

void check_grad(const char* what, const MutableMatrixView& g, std::int64_t rows, std::int64_t cols) {
  if (!g.data) return;
  if (g.dtype != DType::kF32 || g.rows != rows || g.cols != cols ||
      (g.row_stride != 0 && g.row_stride < g.cols))
    fail(ErrorCode::kShapeMismatch, std::string(kFn) + ": " + what + " must be float32 " + str(rows) +
                                        "x" + str(cols) + ", got " + DTypeName(g.dtype) + " " +
                                        str(g.rows) + "x" + str(g.cols));
}

struct Setup {
  std::int64_t N = 0, D = 0, Vr = 0, V = 0, offset = 0;
  std::int64_t count = 0;
  double wsum = 0;
};

// Everything one rank can check alone (before any collective).
Setup validate(const MatrixView& hidden, const MatrixView& weight, const float* bias,
               const Targets& targets, const LinearCrossEntropyOptions& lo,
               const LinearCrossEntropyOutputs& out) {
  Setup s;
  check_view("hidden", hidden.data, hidden.dtype, hidden.rows, hidden.cols, hidden.row_stride);
  check_view("weight", weight.data, weight.dtype, weight.rows, weight.cols, weight.row_stride);
  s.N = hidden.rows;
  s.D = hidden.cols;
  s.Vr = weight.rows;
  s.offset = lo.vocab_offset;
  s.V = lo.vocab_total;
  if (weight.cols != s.D)
    fail(ErrorCode::kShapeMismatch, std::string(kFn) + ": hidden is " + str(s.N) + "x" + str(s.D) +
                                        " but this rank's weight shard is " + str(s.Vr) + "x" +
                                        str(weight.cols));
  if (s.D == 0) fail(ErrorCode::kEmpty, std::string(kFn) + ": hidden and weight have D = 0 columns");
  if (s.V <= 0 || s.offset < 0 || s.offset + s.Vr > s.V)
    fail(ErrorCode::kShapeMismatch, std::string(kFn) + ": the shard [vocab_offset = " + str(s.offset) +
                                        ", +" + str(s.Vr) + ") is not inside [0, vocab_total = " +
                                        str(s.V) + ") (with a communicator, vocab_total must be set)");
  const CrossEntropyOptions& o = lo.loss;
  if (lo.grad_filter != 0)
    fail(ErrorCode::kInvalidArgument, std::string(kFn) + ": grad_filter = " + fmt_num(lo.grad_filter) +
                                          " is not supported with a communicator");
  if (targets.kind == Targets::Kind::kSoft)
    fail(ErrorCode::kInvalidArgument, std::string(kFn) + ": soft targets are not supported; use class indices");
  check_grad("grad_hidden", out.grad_hidden, s.N, s.D);
  check_grad("grad_weight", out.grad_weight, s.Vr, s.D);
  if (bias)
    for (std::int64_t c = 0; c < s.Vr; ++c)
      if (!std::isfinite(bias[c]))
        fail(ErrorCode::kNonFinite, std::string(kFn) + ": bias[" + str(c) + "] (global class " +
                                        str(s.offset + c) + ") = " + fmt_num(bias[c]) + " is not finite");
  // Σ w_y and the count of the whole batch: the reduction's denominators.
  NeumaierSum ws;
  for (std::int64_t r = 0; r < s.N; ++r) {
    if (targets.indices == nullptr) fail(ErrorCode::kInvalidArgument, std::string(kFn) + ": targets.indices is null");
    const std::int64_t t = targets.kind == Targets::Kind::kIndexInt64
                               ? static_cast<const std::int64_t*>(targets.indices)[r]
                               : static_cast<const std::int32_t*>(targets.indices)[r];
    if (t == o.ignore_index) continue;
    if (t < 0 || t >= s.V)
      fail(ErrorCode::kTargetOutOfRange, std::string(kFn) + ": targets[" + str(r) + "] = " + str(t) +
                                             " is out of range [0, " + str(s.V) +
                                             ") and is not ignore_index (" + str(o.ignore_index) + ")");
    ++s.count;
    const double w = o.class_weight ? double(o.class_weight[t]) : 1.0;
    ws.add(w);
  }
  s.wsum = ws.value();
  if (o.reduction == Reduction::kMean && s.count > 0 && !(s.wsum > 0) && o.label_smoothing > 0)
    fail(ErrorCode::kInvalidArgument,
         std::string(kFn) + ": every counted target has class weight 0 with label smoothing; "
                            "this mean is not supported with a communicator");
  return s;
}

}  // namespace

LinearCrossEntropyResult linear_cross_entropy_sharded(const MatrixView& hidden,
                                                      const MatrixView& weight, const float* bias,
                                                      const Targets& targets,
                                                      const LinearCrossEntropyOptions& lo,
                                                      const LinearCrossEntropyOutputs& out) {
  auto* comm = dynamic_cast<Communicator*>(lo.communicator);
  if (!comm)
    fail(ErrorCode::kInvalidArgument,
         std::string(kFn) + ": options.communicator must be an xent::Communicator (xent/communicator.h)");
  // 0. Local checks, then one agreement: no rank enters a collective that
  //    another will never reach.
  Setup s;
  {
    bool ok = true;
    ErrorCode code = ErrorCode::kInvalidArgument;
    std::string message;
    try {
      s = validate(hidden, weight, bias, targets, lo, out);
    } catch (const Error& e) {
      ok = false;
      code = e.code();
      message = e.what();
    }
    comm->agree(ok, code, message, kFn);
  }
  const CrossEntropyOptions& o = lo.loss;
  const bool mean = o.reduction == Reduction::kMean;
  const bool ce_empty = mean && !(s.wsum > 0), z_empty = mean && s.count == 0;
  GradScales scales;
  scales.ce = mean ? (ce_empty ? 0.0 : 1.0 / s.wsum) : 1.0;
  scales.z = mean ? (z_empty ? 0.0 : 1.0 / double(s.count)) : 1.0;
  CrossEntropyOptions chunk_opt = o;
  chunk_opt.reduction = Reduction::kSum;  // sums per chunk; scales above
  const bool gh = out.grad_hidden.data != nullptr, gw = out.grad_weight.data != nullptr,
             gb = out.grad_bias != nullptr, grad = gh || gw || gb;

  // Chunk rows: the same on every rank (from N and the average shard), so the
  // collectives match. The default keeps the chunk's logits near 1/64 of the
  // rank's N × V/K (as the single-process default).
  const std::int64_t Vavg = std::max<std::int64_t>(1, (s.V + comm->size() - 1) / comm->size());
  std::int64_t chunk = lo.chunk_rows;
  if (chunk <= 0) {
    chunk = lo.max_buffer_bytes ? std::int64_t(lo.max_buffer_bytes / (4 * std::size_t(Vavg)))
                                : (s.N + 63) / 64;
    chunk = std::max<std::int64_t>(chunk, std::min<std::int64_t>(s.N, 128));
  }
  chunk = std::max<std::int64_t>(1, std::min<std::int64_t>(chunk, std::max<std::int64_t>(s.N, 1)));

  // W_r as packed float32 (once), the chunk's H, logits/gradient, grad_hidden.
  std::vector<float> W(static_cast<std::size_t>(s.Vr * s.D));
  rows_to_f32(weight, 0, s.Vr, W.data());
  std::vector<float> H(static_cast<std::size_t>(chunk * s.D)), L(static_cast<std::size_t>(chunk * s.Vr));
  std::vector<float> GH(gh ? static_cast<std::size_t>(chunk * s.D) : 0);
  if (gb) std::fill(out.grad_bias, out.grad_bias + s.Vr, 0.0f);
  const std::int64_t gws = gw ? stride_of(out.grad_weight.cols, out.grad_weight.row_stride) : 0;
  if (gw)
    for (std::int64_t v = 0; v < s.Vr; ++v)
      std::fill_n(static_cast<float*>(out.grad_weight.data) + v * gws, s.D, 0.0f);

  double ce_sum = 0, z_sum = 0;
  std::int64_t correct = 0;
  for (std::int64_t r0 = 0; r0 < s.N; r0 += chunk) {
    const std::int64_t nr = std::min(chunk, s.N - r0);
    rows_to_f32(hidden, r0, nr, H.data());
    blas::sgemm(false, true, nr, s.Vr, s.D, 1.0f, H.data(), s.D, W.data(), s.D, 0.0f, L.data(), s.Vr);
    if (bias)
      for (std::int64_t i = 0; i < nr; ++i)
        for (std::int64_t c = 0; c < s.Vr; ++c) L[i * s.Vr + c] += bias[c];
    const Targets t = targets.kind == Targets::Kind::kIndexInt64
                          ? Targets::Index(static_cast<const std::int64_t*>(targets.indices) + r0)
                          : Targets::Index(static_cast<const std::int32_t*>(targets.indices) + r0);
    VocabParallelOutputs vo;
    vo.row_loss = out.row_loss ? out.row_loss + r0 : nullptr;
    vo.row_lse = out.row_lse ? out.row_lse + r0 : nullptr;
    if (grad) vo.grad = MutableMatrixView{L.data(), DType::kF32, nr, s.Vr, s.Vr};  // in place
    const CrossEntropyResult cr = vocab_parallel_cross_entropy_scaled(
        MatrixView{L.data(), DType::kF32, nr, s.Vr, s.Vr}, s.offset, s.V, t, chunk_opt, *comm, vo,
        &scales);
    ce_sum += cr.loss - cr.z_loss;
    z_sum += cr.z_loss;
    correct += cr.correct;
    if (!grad) continue;
    if (gh) {  // this rank's part of dL/dH, summed over the ranks
      blas::sgemm(false, false, nr, s.D, s.Vr, 1.0f, L.data(), s.Vr, W.data(), s.D, 0.0f, GH.data(), s.D);
      comm->allreduce_sum(GH.data(), static_cast<std::size_t>(nr * s.D));
      const std::int64_t ghs = stride_of(out.grad_hidden.cols, out.grad_hidden.row_stride);
      for (std::int64_t i = 0; i < nr; ++i)
        std::memcpy(static_cast<float*>(out.grad_hidden.data) + (r0 + i) * ghs, GH.data() + i * s.D,
                    sizeof(float) * s.D);
    }
    if (gw)
      blas::sgemm(true, false, s.Vr, s.D, nr, 1.0f, L.data(), s.Vr, H.data(), s.D, 1.0f,
                  static_cast<float*>(out.grad_weight.data), gws);
    if (gb)
      for (std::int64_t i = 0; i < nr; ++i)
        for (std::int64_t c = 0; c < s.Vr; ++c) out.grad_bias[c] += L[i * s.Vr + c];
  }

  // The reduced loss, as the single-process linear_cross_entropy.
  LinearCrossEntropyResult res;
  res.algorithm = LinearCrossEntropyAlgorithm::kTokenChunked;
  res.chunk_rows = chunk;
  res.buffer_bytes = (L.size() + H.size() + GH.size() + W.size()) * sizeof(float);
  res.count = s.count;
  res.weight_sum = s.wsum;
  res.correct = correct;
  detail::reduce_loss(o, ce_sum, z_sum, s.wsum, s.count, res);
  return res;
}

}  // namespace xent::detail
