// Binary cross-entropy with logits on the GPU (xent/cuda.h). The N×C
// elements are split into a fixed number of contiguous ranges (a function of
// N·C only), one block each; the blocks' float64 partial sums are added in
// block order by one more block: deterministic, no floating-point atomics.
#include <algorithm>

#include "common.cuh"
#include "host_util.h"
#include "xent/cuda.h"

namespace xent::cuda_detail {
namespace {

constexpr int kBceThreads = 256;

struct BceArgs {
  const void* x; int xd; std::int64_t sx;
  const void* y; int yd; std::int64_t sy;
  const void* w; int wd; std::int64_t sw; bool w_per_row;
  const float* pw;
  void* g; int gd; std::int64_t sg;
  void* l; int ld; std::int64_t sl;
  std::int64_t N, C, per_block;
  double gscale;
  double* partial;
  unsigned long long* err;
};

__device__ __forceinline__ void store_any(void* base, int dtype, std::int64_t i, float v) {
  switch (static_cast<DType>(dtype)) {
    case DType::kF32: static_cast<float*>(base)[i] = v; break;
    case DType::kF64: static_cast<double*>(base)[i] = v; break;
    case DType::kBF16: static_cast<__nv_bfloat16*>(base)[i] = __float2bfloat16(v); break;
    case DType::kF16: static_cast<__half*>(base)[i] = __float2half(v); break;
  }
}

__global__ void __launch_bounds__(kBceThreads) bce_kernel(BceArgs a) {
  __shared__ double red[kBceThreads];
  const std::int64_t total = a.N * a.C;
  const std::int64_t e0 = blockIdx.x * a.per_block, e1 = min(total, e0 + a.per_block);
  double acc = 0;
  for (std::int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
    const std::int64_t r = e / a.C, c = e % a.C;
    const float x = static_cast<float>(load_any(a.x, a.xd, r * a.sx + c));
    const float y = static_cast<float>(load_any(a.y, a.yd, r * a.sy + c));
    if (x != x) { flag_error(a.err, e, cuda_math::kRowBceNaN); continue; }
    if (!(y >= 0.f && y <= 1.f)) { flag_error(a.err, e, cuda_math::kRowBceTarget); continue; }
    const float w = a.w ? static_cast<float>(load_any(a.w, a.wd, (a.w_per_row ? r * a.sw : 0) + c)) : 1.f;
    const float pw = a.pw ? a.pw[c] : 1.f;
    const cuda_math::BceElem b = cuda_math::bce_elem(x, y, w, pw);
    acc += b.loss;
    if (a.l) store_any(a.l, a.ld, r * a.sl + c, b.loss);
    if (a.g) store_any(a.g, a.gd, r * a.sg + c, static_cast<float>(a.gscale * b.grad));
  }
  acc = block_reduce(acc, red, [](double& u, double v) { u += v; });
  if (threadIdx.x == 0) a.partial[blockIdx.x] = acc;
}

__global__ void sum_partials(const double* p, std::int64_t n, double* out) {
  __shared__ double red[kReduceThreads];
  const std::int64_t per = (n + blockDim.x - 1) / blockDim.x;
  const std::int64_t i0 = threadIdx.x * per, i1 = min(n, i0 + per);
  double s = 0;
  for (std::int64_t i = i0; i < i1; ++i) s += p[i];
  s = block_reduce(s, red, [](double& u, double v) { u += v; });
  if (threadIdx.x == 0) *out = s;
}

void check_out(const char* fn, const char* what, const MutableMatrixView& m, std::int64_t N,
               std::int64_t C, std::int64_t* stride) {
  if (!m.data) return;
  *stride = check_matrix(fn, what, m.data, m.dtype, m.rows, m.cols, m.row_stride);
  if (m.rows != N || m.cols != C)
    fail_arg(fn, std::string(what) + " shape differs from logits");
}

}  // namespace
}  // namespace xent::cuda_detail

namespace xent::cuda {

double binary_cross_entropy_with_logits_loss(const MatrixView& logits, const MatrixView& targets,
                                             const BceOptions& options, const BceOutputs& outputs,
                                             void* stream_) {
  using namespace cuda_detail;
  const char* fn = "cuda::binary_cross_entropy_with_logits_loss";
  cudaStream_t stream = static_cast<cudaStream_t>(stream_);
  BceArgs a{};
  a.sx = check_matrix(fn, "logits", logits.data, logits.dtype, logits.rows, logits.cols, logits.row_stride);
  a.sy = check_matrix(fn, "targets", targets.data, targets.dtype, targets.rows, targets.cols,
                      targets.row_stride);
  const std::int64_t N = logits.rows, C = logits.cols;
  if (targets.rows != N || targets.cols != C)
    throw Error(ErrorCode::kShapeMismatch, std::string(fn) + ": targets are " +
                                               std::to_string(targets.rows) + "×" +
                                               std::to_string(targets.cols) + " but logits are " +
                                               std::to_string(N) + "×" + std::to_string(C));
  if (options.weight.data) {
    const MatrixView& w = options.weight;
    a.sw = check_matrix(fn, "weight", w.data, w.dtype, w.rows, w.cols, w.row_stride);
    if (!((w.rows == 1 || w.rows == N) && w.cols == C))
      throw Error(ErrorCode::kShapeMismatch, std::string(fn) + ": weight is " + std::to_string(w.rows) +
                                                 "×" + std::to_string(w.cols) + "; it must be 1×" +
                                                 std::to_string(C) + " or " + std::to_string(N) +
                                                 "×" + std::to_string(C));
    a.w = w.data; a.wd = static_cast<int>(w.dtype); a.w_per_row = w.rows == N && N > 1;
  }
  if (!std::isfinite(options.grad_scale)) fail_arg(fn, "grad_scale must be finite");
  check_out(fn, "grad", outputs.grad, N, C, &a.sg);
  check_out(fn, "elem_loss", outputs.elem_loss, N, C, &a.sl);
  if (outputs.grad.data && outputs.grad.data != logits.data) {
    const char* x0 = static_cast<const char*>(logits.data);
    const char* g0 = static_cast<const char*>(outputs.grad.data);
    const char* x1 = x0 + ((N - 1) * a.sx + C) * DTypeSize(logits.dtype);
    const char* g1 = g0 + ((N - 1) * a.sg + C) * DTypeSize(outputs.grad.dtype);
    if (N > 0 && C > 0 && !(g1 <= x0 || x1 <= g0)) fail_arg(fn, "grad overlaps the logits without being exactly them");
  } else if (outputs.grad.data && (outputs.grad.dtype != logits.dtype || a.sg != a.sx)) {
    fail_arg(fn, "in place needs the same dtype and row_stride");
  }
  const bool mean = options.reduction == Reduction::kMean;
  const std::int64_t total = N * C;
  if (total == 0) return mean ? __builtin_nan("") : 0.0;
  a.x = logits.data; a.xd = static_cast<int>(logits.dtype);
  a.y = targets.data; a.yd = static_cast<int>(targets.dtype);
  a.pw = options.pos_weight;
  a.g = outputs.grad.data; a.gd = static_cast<int>(outputs.grad.dtype);
  a.l = outputs.elem_loss.data; a.ld = static_cast<int>(outputs.elem_loss.dtype);
  a.N = N; a.C = C;
  a.gscale = options.grad_scale * (mean ? 1.0 / static_cast<double>(total) : 1.0);
  // Fixed partition (a function of the size only): ≥ 4096 elements a block,
  // at most 4096 blocks.
  const std::int64_t blocks = std::clamp<std::int64_t>(total / 4096, 1, 4096);
  a.per_block = (total + blocks - 1) / blocks;
  DeviceBuffer ws(static_cast<std::size_t>(blocks + 2) * sizeof(double), stream);
  a.partial = ws.as<double>();
  double* out = a.partial + blocks;
  a.err = reinterpret_cast<unsigned long long*>(out + 1);
  XENT_CUDA_CHECK(cudaMemsetAsync(a.err, 0xff, 8, stream));
  bce_kernel<<<static_cast<unsigned>(blocks), kBceThreads, 0, stream>>>(a);
  XENT_CUDA_CHECK(cudaGetLastError());
  sum_partials<<<1, kReduceThreads, 0, stream>>>(a.partial, blocks, out);
  XENT_CUDA_CHECK(cudaGetLastError());
  double sum = 0;
  unsigned long long err = kNoError;
  XENT_CUDA_CHECK(cudaMemcpyAsync(&sum, out, 8, cudaMemcpyDeviceToHost, stream));
  XENT_CUDA_CHECK(cudaMemcpyAsync(&err, a.err, 8, cudaMemcpyDeviceToHost, stream));
  XENT_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (err != kNoError) throw_bce_error(fn, logits, targets, err);
  return mean ? sum / static_cast<double>(total) : sum;
}

}  // namespace xent::cuda
