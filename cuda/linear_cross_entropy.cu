// Fused linear + cross-entropy on the GPU (xent/cuda.h), the vocabulary-tiled
// algorithm of Cut Cross-Entropy with cuBLAS products:
//   pass 1, per (row block, vocabulary tile): L = H·W_tileᵀ (cublasGemmEx,
//     float32 accumulation) into one reused float32 buffer; one block per row
//     folds the tile into the row's online (max, Σexp, Σc, Σc·(max − z)),
//     tiles in order (deterministic);
//   finalize: per row lse, loss terms and gradient coefficients;
//   pass 2 (only if a gradient is wanted): recompute L, turn it into the
//     logit gradient G in place (and a bfloat16 copy for bf16 products),
//     then grad_hidden += G·W_tile, grad_weight_tile += Gᵀ·H, grad_bias +=
//     column sums of G. With grad_filter > 0 a tile whose softmax entries are
//     all below the threshold skips both products; its rows' target entries
//     are applied exactly by two small sparse kernels.
// Gradients are zeroed once at the start and only accumulated (beta = 1).
#include <cublas_v2.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "common.cuh"
#include "host_util.h"
#include "reduce_loss.h"
#include "xent/cuda.h"

namespace xent::cuda_detail {
namespace {

using cuda_math::CallParams;
using cuda_math::RowFinal;
using cuda_math::RowStats;

constexpr int kTileThreads = 256;

void check_blas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    fail_arg("cuda::linear_cross_entropy", std::string(what) + " failed: cuBLAS status " +
                                               std::to_string(static_cast<int>(s)));
}

// One cuBLAS handle per host thread (creating one costs ~ms).
cublasHandle_t blas_handle() {
  struct Holder {
    cublasHandle_t h = nullptr;
    ~Holder() { if (h) cublasDestroy(h); }
  };
  thread_local Holder holder;
  if (!holder.h) check_blas(cublasCreate(&holder.h), "cublasCreate");
  return holder.h;
}

struct RowState {  // per row, across tiles
  RowStats st;
  cuda_math::ArgMax am;
  float zt;        // transformed target logit (when its tile was seen)
  float xt;        // raw target logit
  int nonfinite;
};

struct TileArgs {
  float* buf;            // nb × vt float32 logits (then G)
  void* gbuf;            // nb × vt bfloat16 copy of G (bf16 products), or nullptr
  std::int64_t n0, v0, vt;
  const float* bias;
  const void* idx;
  bool idx64;
  std::int64_t ignore_index;
  const float* w;
  CallParams cp;
  bool coef, accuracy;
  RowState* rows;
  const RowFinal* fin;
  const int* active;     // per row: 1 when the row has a gradient
  double filter;         // grad_filter threshold (0: off)
  int* tile_hot;         // set to 1 when some q ≥ filter in this tile
  float* tgt_g;          // per row: the target term −sce·a·w_t·dz''/dz (filtering)
  bool vec;              // vt % 4 == 0
};

__device__ __forceinline__ double coef_at(const TileArgs& a, std::int64_t col, std::int64_t t) {
  const double w = a.w ? a.w[col] : 1.0;
  if (a.coef) return w * (a.cp.a * (col == t ? 1.0 : 0.0) + a.cp.b);
  return col == t ? w * a.cp.a : 0.0;
}

struct TilePart {
  RowStats st;
  cuda_math::ArgMax am;
};

__global__ void __launch_bounds__(kTileThreads) tile_stats(TileArgs a) {
  __shared__ __align__(16) unsigned char raw[sizeof(TilePart) * kTileThreads];
  TilePart* parts = reinterpret_cast<TilePart*>(raw);
  const std::int64_t r = a.n0 + blockIdx.x;
  const float* row = a.buf + blockIdx.x * a.vt;
  const std::int64_t t = load_target(a.idx, a.idx64, r);
  TilePart part;
  bool bad = false;
  sweep_row(row, a.vt, a.vec, static_cast<float*>(nullptr), [&](std::int64_t j, float x) {
    const std::int64_t col = a.v0 + j;
    if (a.bias) x += a.bias[col];
    bad |= (x != x) || fabsf(x) == cuda_math::kInfF;  // an overflowed product
    if (a.accuracy) part.am.add(x, col);
    float dd;
    const float z = a.cp.transform ? cuda_math::transform_logit(x, a.cp, &dd) : x;
    part.st.add(z);
    if (a.coef) part.st.add_coef(z, coef_at(a, col, t));
  });
  bad = __syncthreads_or(bad);
  part = block_reduce(part, parts, [](TilePart& x, const TilePart& y) {
    x.st.merge(y.st);
    x.am.merge(y.am);
  });
  if (threadIdx.x == 0) {
    RowState& rs = a.rows[r];
    rs.st.merge(part.st);
    rs.am.merge(part.am);
    rs.nonfinite |= bad;
    if (t >= a.v0 && t < a.v0 + a.vt) {
      float x = row[t - a.v0] + (a.bias ? a.bias[t] : 0.f);
      float dd;
      rs.xt = x;
      rs.zt = a.cp.transform ? cuda_math::transform_logit(x, a.cp, &dd) : x;
    }
  }
}

// Per row, one thread: lse, loss terms, gradient coefficients, outputs.
__global__ void finalize_rows(const void* idx, bool idx64, std::int64_t ignore_index, const float* w,
                              CallParams cp, bool coef, bool accuracy, std::int64_t N, RowState* rows,
                              const Totals* totals, RowFinal* fin, int* active, double* row_ce,
                              double* row_zl, int* row_correct, float* row_loss, float* row_lse,
                              unsigned long long* err) {
  const std::int64_t r = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (r >= N) return;
  const std::int64_t t = load_target(idx, idx64, r);
  const bool ignored = t == ignore_index;
  const RowState& rs = rows[r];
  RowFinal f;
  int e = cuda_math::finalize_stats(rs.st, rs.nonfinite != 0, &f);
  if (row_lse) row_lse[r] = static_cast<float>(f.lse);
  row_ce[r] = 0; row_zl[r] = 0; row_correct[r] = 0;
  if (row_loss) row_loss[r] = 0.f;
  active[r] = 0;
  if (ignored) { fin[r] = f; return; }
  if (e != 0) { flag_error(err, r, e); return; }
  if (coef)
    cuda_math::finalize_coef_loss(rs.st, &f);
  else
    cuda_math::finalize_hard_loss(rs.zt, (w ? w[t] : 1.0) * cp.a, 0.0, &f);
  cuda_math::finalize_scales(cp, totals->scale_ce, totals->scale_z, 1.0, &f);
  fin[r] = f;
  active[r] = 1;
  row_ce[r] = f.ce;
  row_zl[r] = f.zl;
  row_correct[r] = accuracy && rs.am.i == t;
  if (row_loss) row_loss[r] = static_cast<float>(f.ce + f.zl);
}

// G = dloss/dlogits of the tile, in place in buf (and in gbuf as bf16).
__global__ void __launch_bounds__(kTileThreads) tile_grad(TileArgs a) {
  const std::int64_t r = a.n0 + blockIdx.x;
  float* row = a.buf + blockIdx.x * a.vt;
  __nv_bfloat16* brow = a.gbuf ? static_cast<__nv_bfloat16*>(a.gbuf) + blockIdx.x * a.vt : nullptr;
  const bool act = a.active[r] != 0;
  const RowFinal f = a.fin[r];
  const std::int64_t t = load_target(a.idx, a.idx64, r);
  bool hot = false;
  for (std::int64_t j = threadIdx.x; j < a.vt; j += blockDim.x) {
    float g = 0.f;
    if (act) {
      const std::int64_t col = a.v0 + j;
      float x = row[j] + (a.bias ? a.bias[col] : 0.f);
      float dd = 1.f;
      const float z = a.cp.transform ? cuda_math::transform_logit(x, a.cp, &dd) : x;
      g = cuda_math::grad_entry(z, dd, coef_at(a, col, t), 0.0, f);
      if (a.filter > 0) {
        if (!hot) hot = cuda_math::softmax_terms(z, f.M, f.inv_S, f.S_m1, f.log_s).q >= static_cast<float>(a.filter);
        if (col == t)  // what a skipped tile keeps of this row (as the CPU path)
          a.tgt_g[r] = static_cast<float>(-f.sce * a.cp.a * (a.w ? a.w[t] : 1.0) * dd);
      }
    }
    row[j] = g;
    if (brow) brow[j] = __float2bfloat16(g);
  }
  if (a.filter > 0 && __syncthreads_or(hot) && threadIdx.x == 0) atomicOr(a.tile_hot, 1);
}

// grad_bias[v0 + j] += Σ_rows G[r][j], rows in order (one thread per column).
__global__ void bias_grad(const float* buf, std::int64_t nb, std::int64_t vt, float* gb) {
  const std::int64_t j = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (j >= vt) return;
  double s = 0;
  for (std::int64_t r = 0; r < nb; ++r) s += buf[r * vt + j];
  gb[j] += static_cast<float>(s);
}

// A skipped tile: the target entries G[r][t] alone, as rank-1 updates.
// grad_hidden[r] += G[r][t]·W[t] (one block per row of the block).
template <class T>
__global__ void sparse_hidden(const float* tgt_g, const int* active, std::int64_t n0, std::int64_t v0,
                              std::int64_t vt, const void* idx, bool idx64, const T* W, std::int64_t sw,
                              std::int64_t D, float* gh, std::int64_t sgh) {
  const std::int64_t r = n0 + blockIdx.x;
  const std::int64_t t = load_target(idx, idx64, r);
  // Ignored rows have no gradient (ignore_index may be a class in the tile).
  if (!active[r] || t < v0 || t >= v0 + vt) return;
  const float g = tgt_g[r];
  if (g == 0.f) return;
  for (std::int64_t d = threadIdx.x; d < D; d += blockDim.x)
    gh[r * sgh + d] += g * to_float(W[t * sw + d]);
}

// grad_weight[v0 + j] += Σ_{rows r with target v0 + j, in order} g_r·H[r]
// and grad_bias[v0 + j] += Σ g_r (one block per column of the tile).
template <class T>
__global__ void sparse_weight(const float* tgt_g, const int* active, std::int64_t n0, std::int64_t nb,
                              std::int64_t v0, const void* idx, bool idx64, const T* H, std::int64_t sh,
                              std::int64_t D, float* gw, std::int64_t sgw, float* gb) {
  const std::int64_t j = blockIdx.x;
  for (std::int64_t r = 0; r < nb; ++r) {
    if (!active[n0 + r] || load_target(idx, idx64, n0 + r) != v0 + j) continue;
    const float g = tgt_g[n0 + r];
    if (gb && threadIdx.x == 0) gb[v0 + j] += g;
    if (gw)
      for (std::int64_t d = threadIdx.x; d < D; d += blockDim.x)
        gw[(v0 + j) * sgw + d] += g * to_float(H[(n0 + r) * sh + d]);
  }
}

}  // namespace
}  // namespace xent::cuda_detail

namespace xent::cuda {

LinearCrossEntropyResult linear_cross_entropy(const MatrixView& hidden, const MatrixView& weight,
                                              const float* bias, const Targets& targets,
                                              const LinearCrossEntropyOptions& options,
                                              const LinearCrossEntropyOutputs& outputs,
                                              void* stream_) {
  using namespace cuda_detail;
  const char* fn = "cuda::linear_cross_entropy";
  cudaStream_t stream = static_cast<cudaStream_t>(stream_);
  const CrossEntropyOptions& o = options.loss;
  const std::int64_t sh = check_matrix(fn, "hidden", hidden.data, hidden.dtype, hidden.rows,
                                       hidden.cols, hidden.row_stride);
  const std::int64_t sw = check_matrix(fn, "weight", weight.data, weight.dtype, weight.rows,
                                       weight.cols, weight.row_stride);
  const std::int64_t N = hidden.rows, D = hidden.cols, V = weight.rows;
  if (weight.cols != D)
    throw Error(ErrorCode::kShapeMismatch, std::string(fn) + ": hidden is " + std::to_string(N) + "×" +
                                               std::to_string(D) + " but weight is " +
                                               std::to_string(V) + "×" + std::to_string(weight.cols));
  if (V == 0) throw Error(ErrorCode::kEmpty, std::string(fn) + ": weight has V = 0 classes");
  if (hidden.dtype != weight.dtype || (hidden.dtype != DType::kF32 && hidden.dtype != DType::kBF16))
    fail_arg(fn, std::string("hidden and weight must both be float32 or both bfloat16, got ") +
                     DTypeName(hidden.dtype) + " and " + DTypeName(weight.dtype));
  if (targets.kind == Targets::Kind::kSoft)
    fail_arg(fn, "soft targets are not supported (an N×V target is what this function avoids)");
  if (N > 0 && targets.indices == nullptr) fail_arg(fn, "targets.indices is null");
  if (o.focal_gamma != 0) fail_arg(fn, "focal_gamma is not supported on the GPU path");
  if (!(options.grad_filter >= 0) || !std::isfinite(options.grad_filter))
    fail_arg(fn, "grad_filter must be finite and ≥ 0");
  if ((options.vocab_total != 0 && options.vocab_total != V) || options.vocab_offset != 0)
    fail_arg(fn, "a vocabulary shard (vocab_offset / vocab_total) is not supported on the GPU");
  // The loss options: the same checks as the fused loss (a 1×V view stands
  // in for the logits; nothing is read through it).
  MatrixView fake{hidden.data ? hidden.data : weight.data, DType::kF32, 0, V, 0};
  const CeCheck ck = check_ce(fn, fake, targets, o, MutableMatrixView{});
  auto check_grad = [&](const MutableMatrixView& g, const char* what, std::int64_t rows) -> std::int64_t {
    if (!g.data) return 0;
    const std::int64_t s = check_matrix(fn, what, g.data, g.dtype, g.rows, g.cols, g.row_stride);
    if (g.dtype != DType::kF32) fail_arg(fn, std::string(what) + " must be float32");
    if (g.rows != rows || g.cols != D)
      throw Error(ErrorCode::kShapeMismatch, std::string(fn) + ": " + what + " has the wrong shape");
    return s;
  };
  const std::int64_t sgh = check_grad(outputs.grad_hidden, "grad_hidden", N);
  const std::int64_t sgw = check_grad(outputs.grad_weight, "grad_weight", V);
  if (outputs.grad_bias && !bias) fail_arg(fn, "grad_bias needs a bias");
  const bool want_grad = outputs.grad_hidden.data || outputs.grad_weight.data || outputs.grad_bias;

  LinearCrossEntropyResult res;
  res.algorithm = LinearCrossEntropyAlgorithm::kVocabTiled;
  const bool mean = o.reduction == Reduction::kMean;
  if (N == 0) {
    detail::reduce_loss(o, 0.0, 0.0, 0.0, 0, res);
    return res;
  }
  // Block shape: all rows when the budget allows 256 columns of them, tiles
  // a multiple of 256 columns.
  const bool bf16 = hidden.dtype == DType::kBF16;
  const std::size_t per_elem = 4 + (bf16 && want_grad ? 2 : 0);
  std::size_t budget = options.max_buffer_bytes;
  if (budget == 0)
    budget = std::min<std::size_t>(256u << 20, std::max<std::size_t>(
                 1u << 20, 2 * static_cast<std::size_t>(N) * static_cast<std::size_t>(V) * 4 / 128));
  std::int64_t nb = options.chunk_rows > 0 ? std::min(options.chunk_rows, N)
                                           : std::min<std::int64_t>(N, std::max<std::int64_t>(
                                                 1, static_cast<std::int64_t>(budget / (256 * per_elem))));
  std::int64_t vt = options.tile_cols > 0
                        ? options.tile_cols
                        : std::max<std::int64_t>(256, static_cast<std::int64_t>(budget / (static_cast<std::size_t>(nb) * per_elem)) / 256 * 256);
  vt = std::min(vt, V);
  res.chunk_rows = nb;
  res.tile_cols = vt;
  res.buffer_bytes = static_cast<std::size_t>(nb) * static_cast<std::size_t>(vt) * per_elem;

  const std::size_t Nz = static_cast<std::size_t>(N);
  DeviceBuffer tile(res.buffer_bytes, stream);
  DeviceBuffer ws(sizeof(Totals) + 16 + Nz * (sizeof(RowState) + sizeof(RowFinal) + 2 * sizeof(double) +
                                               3 * sizeof(int) + sizeof(float)) + 64,
                  stream);
  char* p = ws.as<char>();
  Totals* tot = reinterpret_cast<Totals*>(p); p += sizeof(Totals);
  unsigned long long* err = reinterpret_cast<unsigned long long*>(p); p += 8;
  int* tile_hot = reinterpret_cast<int*>(p); p += 8;
  RowState* rows = reinterpret_cast<RowState*>(p); p += Nz * sizeof(RowState);
  RowFinal* fin = reinterpret_cast<RowFinal*>(p); p += Nz * sizeof(RowFinal);
  double* row_ce = reinterpret_cast<double*>(p); p += Nz * sizeof(double);
  double* row_zl = reinterpret_cast<double*>(p); p += Nz * sizeof(double);
  int* active = reinterpret_cast<int*>(p); p += Nz * sizeof(int);
  int* row_correct = reinterpret_cast<int*>(p); p += Nz * sizeof(int);
  float* tgt_g = reinterpret_cast<float*>(p);

  // RowState's initial value: max -inf, sums 0, argmax none.
  {
    std::vector<RowState> init(Nz);
    for (auto& r : init) { r.st = RowStats{}; r.am = cuda_math::ArgMax{}; r.zt = 0; r.xt = 0; r.nonfinite = 0; }
    XENT_CUDA_CHECK(cudaMemcpyAsync(rows, init.data(), Nz * sizeof(RowState), cudaMemcpyHostToDevice, stream));
    XENT_CUDA_CHECK(cudaMemsetAsync(err, 0xff, 8, stream));
    prep_targets<<<1, kReduceThreads, 0, stream>>>(targets.indices, targets.kind == Targets::Kind::kIndexInt64,
                                                   false, N, V, o.ignore_index, o.class_weight,
                                                   o.grad_scale, mean, tot, err);
    XENT_CUDA_CHECK(cudaGetLastError());
    // The host copy of `init` must outlive the asynchronous upload.
    XENT_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  unsigned long long herr = kNoError;
  XENT_CUDA_CHECK(cudaMemcpy(&herr, err, 8, cudaMemcpyDeviceToHost));
  if (herr != kNoError) throw_row_error(fn, fake, targets, o, ck, herr);

  cublasHandle_t h = blas_handle();
  check_blas(cublasSetStream(h, stream), "cublasSetStream");
  const cudaDataType_t ab = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const float one = 1.f, zero = 0.f;
  float* buf = tile.as<float>();
  void* gbuf = bf16 && want_grad ? static_cast<void*>(tile.as<char>() + static_cast<std::size_t>(nb * vt) * 4)
                                 : nullptr;
  const std::size_t es = DTypeSize(hidden.dtype);
  auto H_at = [&](std::int64_t r) { return static_cast<const char*>(hidden.data) + static_cast<std::size_t>(r * sh) * es; };
  auto W_at = [&](std::int64_t v) { return static_cast<const char*>(weight.data) + static_cast<std::size_t>(v * sw) * es; };
  auto logits_tile = [&](std::int64_t n0, std::int64_t rb, std::int64_t v0, std::int64_t cols) {
    // Row-major L (rb × cols) is column-major cols × rb: Lᶜ = W_tileᶜᵀ · Hᶜ.
    check_blas(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(cols), static_cast<int>(rb),
                            static_cast<int>(D), &one, W_at(v0), ab, static_cast<int>(sw), H_at(n0), ab,
                            static_cast<int>(sh), &zero, buf, CUDA_R_32F, static_cast<int>(cols),
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx (logits tile)");
  };
  TileArgs ta{};
  ta.buf = buf;
  ta.gbuf = gbuf;
  ta.bias = bias;
  ta.idx = targets.indices;
  ta.idx64 = targets.kind == Targets::Kind::kIndexInt64;
  ta.ignore_index = o.ignore_index;
  ta.w = o.class_weight;
  ta.cp = ck.cp;
  ta.coef = o.label_smoothing > 0;
  ta.accuracy = o.compute_accuracy;
  ta.rows = rows;
  ta.fin = fin;
  ta.active = active;
  ta.filter = options.grad_filter;
  ta.tile_hot = tile_hot;
  ta.tgt_g = tgt_g;

  // Pass 1: statistics.
  for (std::int64_t n0 = 0; n0 < N; n0 += nb) {
    const std::int64_t rb = std::min(nb, N - n0);
    for (std::int64_t v0 = 0; v0 < V; v0 += vt) {
      const std::int64_t cols = std::min(vt, V - v0);
      logits_tile(n0, rb, v0, cols);
      ta.n0 = n0; ta.v0 = v0; ta.vt = cols; ta.vec = cols % 4 == 0;
      tile_stats<<<static_cast<unsigned>(rb), kTileThreads, 0, stream>>>(ta);
      XENT_CUDA_CHECK(cudaGetLastError());
    }
  }
  finalize_rows<<<static_cast<unsigned>((N + 255) / 256), 256, 0, stream>>>(
      ta.idx, ta.idx64, ta.ignore_index, ta.w, ta.cp, ta.coef, ta.accuracy, N, rows, tot, fin, active,
      row_ce, row_zl, row_correct, outputs.row_loss, outputs.row_lse, err);
  reduce_rows<<<1, kReduceThreads, 0, stream>>>(row_ce, row_zl, row_correct, N, tot);
  XENT_CUDA_CHECK(cudaGetLastError());
  Totals t;
  XENT_CUDA_CHECK(cudaMemcpyAsync(&t, tot, sizeof(Totals), cudaMemcpyDeviceToHost, stream));
  XENT_CUDA_CHECK(cudaMemcpyAsync(&herr, err, 8, cudaMemcpyDeviceToHost, stream));
  XENT_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (herr != kNoError) {
    const int kind = static_cast<int>(herr & 15);
    const std::int64_t r = static_cast<std::int64_t>(herr >> 4);
    if (kind == cuda_math::kRowNonFinite)
      throw Error(ErrorCode::kNonFinite, std::string(fn) + ": row " + std::to_string(r) +
                                             " has a logit that overflowed to inf or NaN");
    throw_row_error(fn, fake, targets, o, ck, herr);
  }
  res.count = t.count;
  res.weight_sum = t.weight_sum;
  res.correct = o.compute_accuracy ? t.correct : 0;
  detail::reduce_loss(o, t.ce, t.zl, t.weight_sum, t.count, res);
  if (!want_grad) return res;

  // Pass 2: gradients, accumulated into zeroed outputs.
  float* gh = static_cast<float*>(outputs.grad_hidden.data);
  float* gw = static_cast<float*>(outputs.grad_weight.data);
  if (gh) XENT_CUDA_CHECK(cudaMemset2DAsync(gh, sgh * 4, 0, D * 4, N, stream));
  if (gw) XENT_CUDA_CHECK(cudaMemset2DAsync(gw, sgw * 4, 0, D * 4, V, stream));
  if (outputs.grad_bias) XENT_CUDA_CHECK(cudaMemsetAsync(outputs.grad_bias, 0, V * 4, stream));
  const void* G = gbuf ? gbuf : buf;
  for (std::int64_t n0 = 0; n0 < N; n0 += nb) {
    const std::int64_t rb = std::min(nb, N - n0);
    for (std::int64_t v0 = 0; v0 < V; v0 += vt) {
      const std::int64_t cols = std::min(vt, V - v0);
      ++res.blocks;
      logits_tile(n0, rb, v0, cols);
      ta.n0 = n0; ta.v0 = v0; ta.vt = cols;
      if (ta.filter > 0) XENT_CUDA_CHECK(cudaMemsetAsync(tile_hot, 0, 4, stream));
      tile_grad<<<static_cast<unsigned>(rb), kTileThreads, 0, stream>>>(ta);
      XENT_CUDA_CHECK(cudaGetLastError());
      bool skip = false;
      if (ta.filter > 0) {
        int hot = 1;
        XENT_CUDA_CHECK(cudaMemcpyAsync(&hot, tile_hot, 4, cudaMemcpyDeviceToHost, stream));
        XENT_CUDA_CHECK(cudaStreamSynchronize(stream));
        skip = hot == 0;
      }
      if (skip) {
        ++res.blocks_skipped;
        const unsigned threads = 256;
        if (gh) {
          if (bf16)
            sparse_hidden<<<static_cast<unsigned>(rb), threads, 0, stream>>>(
                ta.tgt_g, active, n0, v0, cols, ta.idx, ta.idx64, static_cast<const __nv_bfloat16*>(weight.data), sw, D, gh, sgh);
          else
            sparse_hidden<<<static_cast<unsigned>(rb), threads, 0, stream>>>(
                ta.tgt_g, active, n0, v0, cols, ta.idx, ta.idx64, static_cast<const float*>(weight.data), sw, D, gh, sgh);
        }
        if (gw || outputs.grad_bias) {
          if (bf16)
            sparse_weight<<<static_cast<unsigned>(cols), threads, 0, stream>>>(
                ta.tgt_g, active, n0, rb, v0, ta.idx, ta.idx64, static_cast<const __nv_bfloat16*>(hidden.data), sh, D, gw, sgw,
                outputs.grad_bias);
          else
            sparse_weight<<<static_cast<unsigned>(cols), threads, 0, stream>>>(
                ta.tgt_g, active, n0, rb, v0, ta.idx, ta.idx64, static_cast<const float*>(hidden.data), sh, D, gw, sgw,
                outputs.grad_bias);
        }
        XENT_CUDA_CHECK(cudaGetLastError());
        continue;
      }
      if (outputs.grad_bias) {
        bias_grad<<<static_cast<unsigned>((cols + 255) / 256), 256, 0, stream>>>(buf, rb, cols,
                                                                                 outputs.grad_bias + v0);
        XENT_CUDA_CHECK(cudaGetLastError());
      }
      if (gh)  // grad_hiddenᶜ (D × rb) += W_tileᶜ (D × cols) · Gᶜ (cols × rb)
        check_blas(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(D), static_cast<int>(rb),
                                static_cast<int>(cols), &one, W_at(v0), ab, static_cast<int>(sw), G, ab,
                                static_cast<int>(cols), &one, gh + n0 * sgh, CUDA_R_32F,
                                static_cast<int>(sgh), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   "cublasGemmEx (grad_hidden)");
      if (gw)  // grad_weight_tileᶜ (D × cols) += Hᶜ (D × rb) · (Gᶜ)ᵀ (rb × cols)
        check_blas(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, static_cast<int>(D), static_cast<int>(cols),
                                static_cast<int>(rb), &one, H_at(n0), ab, static_cast<int>(sh), G, ab,
                                static_cast<int>(cols), &one, gw + v0 * sgw, CUDA_R_32F,
                                static_cast<int>(sgw), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   "cublasGemmEx (grad_weight)");
    }
  }
  XENT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return res;
}

}  // namespace xent::cuda
