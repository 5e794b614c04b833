// Helpers shared by the CUDA kernels: dtype loads, vectorized row sweeps,
// fixed-order block reductions, the device error word, and host-side
// checks of CUDA / cuBLAS calls.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "host_util.h"
#include "row_math.h"
#include "xent/error.h"
#include "xent/loss.h"

namespace xent::cuda_detail {

using cuda_math::RowErr;

// ------------------------------------------------------------ host checks
[[noreturn]] void fail_cuda(const char* what, cudaError_t e);
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail_cuda(what, e);
}
#define XENT_CUDA_CHECK(call) ::xent::cuda_detail::check((call), #call)

// Stream-ordered device scratch, freed when it goes out of scope (after the
// call's final synchronize).
class DeviceBuffer {
 public:
  DeviceBuffer(std::size_t bytes, cudaStream_t s) : stream_(s) {
    if (bytes) XENT_CUDA_CHECK(cudaMallocFromPoolAsync(&ptr_, bytes, workspace_pool(), s));
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFreeAsync(ptr_, stream_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

// The error word: (row or element index) << 4 | RowErr; the lowest wins
// (atomicMin on integers is deterministic). ~0: no error.
constexpr unsigned long long kNoError = ~0ull;
__device__ __forceinline__ void flag_error(unsigned long long* err, std::int64_t pos, int kind) {
  atomicMin(err, (static_cast<unsigned long long>(pos) << 4) | static_cast<unsigned long long>(kind));
}

// ------------------------------------------------------------ element loads
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half(x); }

// A value of a runtime dtype (soft targets, BCE operands): rare paths.
__device__ __forceinline__ double load_any(const void* base, int dtype, std::int64_t i) {
  switch (static_cast<DType>(dtype)) {
    case DType::kF32: return static_cast<const float*>(base)[i];
    case DType::kF64: return static_cast<const double*>(base)[i];
    case DType::kBF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
    case DType::kF16: return __half2float(static_cast<const __half*>(base)[i]);
  }
  return 0.0;
}

// Sweeps a row of V elements of T with the block's threads: 16-byte vectors
// when `vec` (row start 16-byte aligned), then the tail. f(j, x) gets the
// column and the value as float. With `cache`, the raw vectors are also
// stored at the same offsets of a 16-byte-aligned shared buffer.
template <class T, class F>
__device__ __forceinline__ void sweep_row(const T* row, std::int64_t V, bool vec, T* cache, F&& f) {
  constexpr int kVec = 16 / sizeof(T);
  std::int64_t j0 = 0;
  if (vec) {
    const std::int64_t nv = V / kVec;
    const uint4* src = reinterpret_cast<const uint4*>(row);
    for (std::int64_t i = threadIdx.x; i < nv; i += blockDim.x) {
      const uint4 raw = src[i];
      if (cache) reinterpret_cast<uint4*>(cache)[i] = raw;
      const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int k = 0; k < kVec; ++k) f(i * kVec + k, to_float(v[k]));
    }
    j0 = nv * kVec;
  }
  for (std::int64_t j = j0 + threadIdx.x; j < V; j += blockDim.x) {
    const T x = row[j];
    if (cache) cache[j] = x;
    f(j, to_float(x));
  }
}

// Writes g(j) for every column of a row (vectorized when `vec`).
template <class T, class F>
__device__ __forceinline__ void write_row(T* out, std::int64_t V, bool vec, F&& g) {
  constexpr int kVec = 16 / sizeof(T);
  std::int64_t j0 = 0;
  if (vec) {
    const std::int64_t nv = V / kVec;
    for (std::int64_t i = threadIdx.x; i < nv; i += blockDim.x) {
      uint4 raw;
      T* v = reinterpret_cast<T*>(&raw);
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[k] = from_float<T>(g(i * kVec + k));
      reinterpret_cast<uint4*>(out)[i] = raw;
    }
    j0 = nv * kVec;
  }
  for (std::int64_t j = j0 + threadIdx.x; j < V; j += blockDim.x) out[j] = from_float<T>(g(j));
}

// Fixed-order block reduction through shared memory: thread i's value is
// combined with i + h for h = blockDim/2, /4, ... (blockDim a power of two),
// so the result has the same bits on every run. Returns the total in every
// thread. `scratch` holds blockDim values.
template <class T, class Op>
__device__ T block_reduce(T v, T* scratch, Op op) {
  scratch[threadIdx.x] = v;
  __syncthreads();
  for (unsigned h = blockDim.x / 2; h > 0; h /= 2) {
    if (threadIdx.x < h) {
      T a = scratch[threadIdx.x];
      op(a, scratch[threadIdx.x + h]);
      scratch[threadIdx.x] = a;
    }
    __syncthreads();
  }
  T r = scratch[0];
  __syncthreads();
  return r;
}

// Sum of per-row values in a fixed order: thread i adds a contiguous slice
// sequentially, then the slices are combined by block_reduce. Launched with
// one block of kReduceThreads threads.
constexpr int kReduceThreads = 512;
struct Totals {
  double ce = 0, zl = 0;      // Σ row CE, Σ row z-loss (or BCE: Σ loss)
  long long correct = 0;
  double weight_sum = 0;      // mean denominator of the CE part
  long long count = 0;        // non-ignored rows
  double scale_ce = 0, scale_z = 0;  // gradient multipliers (grad_scale / denominators)
};

// Σ of the per-row CE, z-loss and correct flags in a fixed order (thread i
// adds a contiguous slice, then the fixed tree). One block of kReduceThreads.
// Internal linkage: each .cu file has its own copy.
namespace {
__global__ void __launch_bounds__(kReduceThreads) reduce_rows(const double* ce, const double* zl, const int* correct, std::int64_t n,
                            Totals* out) {
  __shared__ double sd[kReduceThreads];
  __shared__ long long sc[kReduceThreads];
  const std::int64_t per = (n + blockDim.x - 1) / blockDim.x;
  const std::int64_t r0 = threadIdx.x * per, r1 = min(n, r0 + per);
  double a = 0, b = 0;
  long long c = 0;
  for (std::int64_t r = r0; r < r1; ++r) { a += ce[r]; b += zl[r]; c += correct[r]; }
  a = block_reduce(a, sd, [](double& x, double y) { x += y; });
  b = block_reduce(b, sd, [](double& x, double y) { x += y; });
  c = block_reduce(c, sc, [](long long& x, long long y) { x += y; });
  if (threadIdx.x == 0) { out->ce = a; out->zl = b; out->correct = c; }
}


__device__ __forceinline__ std::int64_t load_target(const void* idx, bool idx64, std::int64_t r) {
  return idx64 ? static_cast<const std::int64_t*>(idx)[r] : static_cast<const std::int32_t*>(idx)[r];
}

// The mean's denominators (Σ w[y_n] over non-ignored rows, their count; soft
// targets: N and N) and the gradient scales, in a fixed order; flags
// out-of-range index targets before any output is written.
__global__ void __launch_bounds__(kReduceThreads)
prep_targets(const void* idx, bool idx64, bool soft, std::int64_t N, std::int64_t V,
             std::int64_t ignore_index, const float* w, double grad_scale, bool mean, Totals* out,
             unsigned long long* err) {
  __shared__ double sw[kReduceThreads];
  __shared__ long long sc[kReduceThreads];
  double ws = 0;
  long long cnt = 0;
  const std::int64_t per = (N + blockDim.x - 1) / blockDim.x;
  const std::int64_t r0 = threadIdx.x * per, r1 = min(N, r0 + per);
  for (std::int64_t r = r0; r < r1; ++r) {
    if (soft) { ws += 1; ++cnt; continue; }
    const std::int64_t t = load_target(idx, idx64, r);
    if (t == ignore_index) continue;
    if (t < 0 || t >= V) { flag_error(err, r, cuda_math::kRowTarget); continue; }
    ws += w ? w[t] : 1.0;
    ++cnt;
  }
  ws = block_reduce(ws, sw, [](double& x, double y) { x += y; });
  cnt = block_reduce(cnt, sc, [](long long& x, long long y) { x += y; });
  if (threadIdx.x == 0) {
    out->weight_sum = ws;
    out->count = cnt;
    out->scale_ce = grad_scale * (mean ? (ws > 0 ? 1.0 / ws : 0.0) : 1.0);
    out->scale_z = grad_scale * (mean ? (cnt > 0 ? 1.0 / static_cast<double>(cnt) : 0.0) : 1.0);
  }
}

}  // namespace

}  // namespace xent::cuda_detail
