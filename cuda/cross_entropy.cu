// Fused cross-entropy on the GPU (xent/cuda.h): three kernels per call.
//   1. prep_targets: checks the index targets and computes the mean's
//      denominators (Σ w[y_n], count) in a fixed order, hence the gradient
//      scales, before any output is written.
//   2. ce_rows: one block per row. Sweep 1 reads the row once into the
//      online statistics (and, when the row fits, into shared memory);
//      thread 0 finalizes the row; sweep 2 writes the gradient from the
//      cached copy (or from global memory, where the row was just read and is
//      normally still in L2). Focal γ with several non-zero coefficients adds
//      one sweep for Σ c·H.
//   3. reduce_rows: one block sums the per-row CE, z-loss and correct flags
//      in a fixed order (no floating-point atomics: deterministic).
#include <algorithm>
#include <cstring>
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

// 256 threads a row, at most 85 registers (ptxas, nvcc 13.0: 80, with 16
// bytes of spill on sm_90 since RowStats keeps ones and rest apart), so 3
// blocks (24 warps) share an SM; a 48 KB row cache plus ~18 KB of static
// reduction scratch keeps 3 blocks within sm_90's 228 KB (sm_80's 164 KB
// holds 2 when the cache is used in full). Unmeasured choices: see
// docs/cuda.md.
constexpr int kRowThreads = 256;
constexpr int kRowMinBlocks = 3;
// Rows up to this many bytes are kept in shared memory between the sweeps.
constexpr std::size_t kRowCacheBytes = 48 * 1024;

struct CeArgs {
  const void* z;
  std::int64_t sz;  // row stride in elements
  std::int64_t N;
  const void* idx;
  bool idx64;
  std::int64_t ignore_index;
  const void* p;  // soft targets (nullptr: index targets)
  int pdtype;
  std::int64_t p_es;  // bytes per soft-target element
  std::int64_t sp;
  double p_tol;
  const float* w;
  CallParams cp;
  bool coef;  // per-class coefficients needed (soft or smoothing)
  bool accuracy, want_lse, zvec, gvec, cache;
  void* g;  // nullptr: no gradient
  std::int64_t sg;
  const float* row_upstream;
  const Totals* totals;  // scales from prep_targets
  float* row_loss;
  float* row_lse;
  double* row_ce;
  double* row_zl;
  int* row_correct;
  unsigned long long* err;
};

__device__ __forceinline__ std::int64_t target_at(const CeArgs& a, std::int64_t r) {
  return a.idx64 ? static_cast<const std::int64_t*>(a.idx)[r]
                 : static_cast<const std::int32_t*>(a.idx)[r];
}

struct StatsPart {
  RowStats st;
  cuda_math::ArgMax am;
  double psum;
};

template <class T>
__global__ void __launch_bounds__(kRowThreads, kRowMinBlocks) ce_rows(CeArgs a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  // Raw storage: __shared__ variables may not have constructors.
  __shared__ __align__(16) unsigned char parts_raw[sizeof(StatsPart) * kRowThreads];
  __shared__ __align__(16) unsigned char fin_raw[sizeof(RowFinal)];
  __shared__ int row_state;  // 0 go, 1 zero the gradient, 2 stop
  __shared__ double red[kRowThreads];
  StatsPart* parts = reinterpret_cast<StatsPart*>(parts_raw);
  RowFinal& fin = *reinterpret_cast<RowFinal*>(fin_raw);
  // A target error (flagged by prep_targets, before this kernel): write
  // nothing. Data errors of other rows do not stop this one, so that the
  // lowest failing row is the one reported.
  {
    const unsigned long long e = *a.err;
    if (e != kNoError && static_cast<int>(e & 15) == cuda_math::kRowTarget) return;
  }
  const std::int64_t r = blockIdx.x;
  const std::int64_t V = a.cp.V;
  const T* row = static_cast<const T*>(a.z) + r * a.sz;
  T* cache = a.cache ? reinterpret_cast<T*>(smem_raw) : nullptr;
  const std::int64_t t = a.p ? -1 : target_at(a, r);
  const bool ignored = !a.p && t == a.ignore_index;
  const double wt = (!a.p && !ignored && a.w) ? a.w[t] : 1.0;
  const void* prow = a.p ? static_cast<const char*>(a.p) + r * a.sp * a.p_es : nullptr;
  auto coef = [&](std::int64_t j) -> double {
    const double w = a.w ? a.w[j] : 1.0;
    if (a.p) return w * (a.cp.a * load_any(prow, a.pdtype, j) + a.cp.b);
    if (a.coef) return w * (a.cp.a * (j == t ? 1.0 : 0.0) + a.cp.b);
    return j == t ? w * a.cp.a : 0.0;
  };
  auto write_zero_grad = [&]() {
    if (a.g) write_row(static_cast<T*>(a.g) + r * a.sg, V, a.gvec, [](std::int64_t) { return 0.f; });
  };

  if (ignored && !a.want_lse) {
    if (threadIdx.x == 0) {
      a.row_ce[r] = 0; a.row_zl[r] = 0; a.row_correct[r] = 0;
      if (a.row_loss) a.row_loss[r] = 0.f;
    }
    write_zero_grad();
    return;
  }

  // Sweep 1: statistics.
  StatsPart part;
  part.psum = 0;
  bool nonfinite = false, pbad = false;
  sweep_row(row, V, a.zvec, cache, [&](std::int64_t j, float x) {
    nonfinite |= (x != x) || x == cuda_math::kInfF;
    if (a.accuracy) part.am.add(x, j);
    float dd;
    const float z = a.cp.transform ? cuda_math::transform_logit(x, a.cp, &dd) : x;
    part.st.add(z);
    if (a.p) {
      const double pj = load_any(prow, a.pdtype, j);
      pbad |= !(pj >= 0.0 && pj <= 1.0);
      part.psum += pj;
    }
    if (a.coef) part.st.add_coef(z, coef(j));
  });
  nonfinite = __syncthreads_or(nonfinite);
  pbad = __syncthreads_or(pbad);
  part = block_reduce(part, parts, [](StatsPart& x, const StatsPart& y) {
    x.st.merge(y.st);
    x.am.merge(y.am);
    x.psum += y.psum;
  });

  if (threadIdx.x == 0) {
    RowFinal f;
    int e = cuda_math::finalize_stats(part.st, nonfinite, &f);
    if (e == 0 && a.p && !ignored) {
      if (pbad) e = cuda_math::kRowSoftBad;
      else if (!(fabs(part.psum - 1.0) <= a.p_tol)) e = cuda_math::kRowSoftSum;
    }
    if (a.row_lse) a.row_lse[r] = static_cast<float>(f.lse);
    int state = 0;
    if (ignored) {
      state = 1;
    } else if (e != 0) {
      flag_error(a.err, r, e);
      state = 2;
    } else {
      if (a.coef) {
        cuda_math::finalize_coef_loss(part.st, &f);
      } else {
        float dd;
        const float xt = to_float(row[t]);
        const float zt = a.cp.transform ? cuda_math::transform_logit(xt, a.cp, &dd) : xt;
        cuda_math::finalize_hard_loss(zt, wt * a.cp.a, a.cp.gamma, &f);
      }
      const double up = a.row_upstream ? static_cast<double>(a.row_upstream[r]) : 1.0;
      cuda_math::finalize_scales(a.cp, a.totals->scale_ce, a.totals->scale_z, up, &f);
    }
    fin = f;
    row_state = state;
  }
  __syncthreads();
  const int state = row_state;
  if (state == 2) return;
  if (state == 1) {
    if (threadIdx.x == 0) {
      a.row_ce[r] = 0; a.row_zl[r] = 0; a.row_correct[r] = 0;
      if (a.row_loss) a.row_loss[r] = 0.f;
    }
    write_zero_grad();
    return;
  }
  const T* src = cache ? cache : row;
  const bool svec = cache ? true : a.zvec;

  // Focal γ with several classes weighted: Σ c·f·(−log q) and Σ c·H need q.
  if (a.cp.gamma > 0 && a.coef) {
    double loss = 0, ch = 0;
    const RowFinal f = fin;
    sweep_row(src, V, svec, static_cast<T*>(nullptr), [&](std::int64_t j, float x) {
      float dd;
      const float z = a.cp.transform ? cuda_math::transform_logit(x, a.cp, &dd) : x;
      cuda_math::focal_accumulate(z, coef(j), a.cp.gamma, f, &loss, &ch);
    });
    loss = block_reduce(loss, red, [](double& x, double y) { x += y; });
    ch = block_reduce(ch, red, [](double& x, double y) { x += y; });
    if (threadIdx.x == 0) { fin.ce = loss; fin.CH = ch; }
    __syncthreads();
  }
  const RowFinal f = fin;
  if (threadIdx.x == 0) {
    a.row_ce[r] = f.ce;
    a.row_zl[r] = f.zl;
    a.row_correct[r] = a.accuracy && !a.p && part.am.i == t;
    if (a.row_loss) a.row_loss[r] = static_cast<float>(f.ce + f.zl);
  }
  if (!a.g) return;
  // Sweep 2: the gradient (in place allowed: each element is read before it
  // is written, by the same thread).
  T* grow = static_cast<T*>(a.g) + r * a.sg;
  constexpr int kVec = 16 / sizeof(T);
  const double gamma = a.cp.gamma;
  auto gval = [&](std::int64_t j, float x) {
    float dd = 1.f;
    const float z = a.cp.transform ? cuda_math::transform_logit(x, a.cp, &dd) : x;
    return cuda_math::grad_entry(z, dd, coef(j), gamma, f);
  };
  if (svec && a.gvec) {
    const std::int64_t nv = V / kVec;
    for (std::int64_t i = threadIdx.x; i < nv; i += blockDim.x) {
      uint4 raw = reinterpret_cast<const uint4*>(src)[i];
      T* v = reinterpret_cast<T*>(&raw);
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[k] = from_float<T>(gval(i * kVec + k, to_float(v[k])));
      reinterpret_cast<uint4*>(grow)[i] = raw;
    }
    for (std::int64_t j = nv * kVec + threadIdx.x; j < V; j += blockDim.x)
      grow[j] = from_float<T>(gval(j, to_float(src[j])));
  } else {
    for (std::int64_t j = threadIdx.x; j < V; j += blockDim.x)
      grow[j] = from_float<T>(gval(j, to_float(src[j])));
  }
}

bool aligned16(const void* p, std::int64_t stride, std::size_t elem) {
  return reinterpret_cast<std::uintptr_t>(p) % 16 == 0 &&
         (static_cast<std::size_t>(stride) * elem) % 16 == 0;
}

struct CeRun {
  Totals totals;
  std::int64_t N = 0;
};

// Validates, launches the three kernels, reads back totals and the error word.
CeRun run_ce(const char* fn, const MatrixView& logits, const Targets& targets,
             const CrossEntropyOptions& o, const CrossEntropyOutputs& outs,
             const float* row_upstream, cudaStream_t stream) {
  const CeCheck ck = check_ce(fn, logits, targets, o, outs.grad);
  check_disjoint(fn, "row_upstream", row_upstream, static_cast<std::size_t>(ck.N) * 4, outs.grad.data,
                 outs.grad.dtype, ck.N, logits.cols, ck.sg);
  CeRun run;
  run.N = ck.N;
  const bool mean = o.reduction == Reduction::kMean;
  if (ck.N == 0) return run;
  CeArgs a{};
  a.z = logits.data;
  a.sz = ck.sz;
  a.N = ck.N;
  a.idx = targets.kind == Targets::Kind::kSoft ? nullptr : targets.indices;
  a.idx64 = targets.kind == Targets::Kind::kIndexInt64;
  a.ignore_index = o.ignore_index;
  a.p = targets.kind == Targets::Kind::kSoft ? targets.soft.data : nullptr;
  a.pdtype = static_cast<int>(targets.soft.dtype);
  a.p_es = static_cast<std::int64_t>(DTypeSize(targets.soft.dtype));
  a.sp = ck.sp;
  a.p_tol = ck.p_tol;
  a.w = o.class_weight;
  a.cp = ck.cp;
  a.coef = a.p != nullptr || o.label_smoothing > 0;
  a.accuracy = o.compute_accuracy && a.p == nullptr;
  a.want_lse = outs.row_lse != nullptr;
  const std::size_t es = DTypeSize(logits.dtype);
  a.zvec = aligned16(logits.data, ck.sz, es);
  a.g = outs.grad.data;
  a.sg = ck.sg;
  a.gvec = a.g && aligned16(a.g, ck.sg, es);
  a.row_upstream = row_upstream;
  a.row_loss = outs.row_loss;
  a.row_lse = outs.row_lse;
  const std::size_t N = static_cast<std::size_t>(ck.N);
  DeviceBuffer ws(sizeof(Totals) + sizeof(unsigned long long) + N * (2 * sizeof(double) + sizeof(int)),
                  stream);
  char* base = ws.as<char>();
  Totals* tot = reinterpret_cast<Totals*>(base);
  a.err = reinterpret_cast<unsigned long long*>(base + sizeof(Totals));
  a.row_ce = reinterpret_cast<double*>(base + sizeof(Totals) + sizeof(unsigned long long));
  a.row_zl = a.row_ce + N;
  a.row_correct = reinterpret_cast<int*>(a.row_zl + N);
  a.totals = tot;
  XENT_CUDA_CHECK(cudaMemsetAsync(a.err, 0xff, sizeof(unsigned long long), stream));
  prep_targets<<<1, kReduceThreads, 0, stream>>>(a.idx, a.idx64, a.p != nullptr, ck.N, ck.cp.V,
                                                 a.ignore_index, a.w, o.grad_scale, mean, tot, a.err);
  XENT_CUDA_CHECK(cudaGetLastError());
  const std::size_t row_bytes = static_cast<std::size_t>(ck.cp.V) * es;
  a.cache = a.g && a.zvec && row_bytes <= kRowCacheBytes;
  const std::size_t smem = a.cache ? (row_bytes + 15) / 16 * 16 : 0;
  auto launch = [&](auto kernel) {
    if (smem > 0)  // opt in: static (~16 KB) + dynamic may pass 48 KB
      XENT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(smem)));
    kernel<<<static_cast<unsigned>(ck.N), kRowThreads, smem, stream>>>(a);
  };
  switch (logits.dtype) {
    case DType::kF32: launch(ce_rows<float>); break;
    case DType::kBF16: launch(ce_rows<__nv_bfloat16>); break;
    case DType::kF16: launch(ce_rows<__half>); break;
    case DType::kF64: break;  // refused by check_ce
  }
  XENT_CUDA_CHECK(cudaGetLastError());
  reduce_rows<<<1, kReduceThreads, 0, stream>>>(a.row_ce, a.row_zl, a.row_correct, ck.N, tot);
  XENT_CUDA_CHECK(cudaGetLastError());
  unsigned long long err = kNoError;
  XENT_CUDA_CHECK(cudaMemcpyAsync(&run.totals, tot, sizeof(Totals), cudaMemcpyDeviceToHost, stream));
  XENT_CUDA_CHECK(cudaMemcpyAsync(&err, a.err, sizeof(err), cudaMemcpyDeviceToHost, stream));
  XENT_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (err != kNoError) throw_row_error(fn, logits, targets, o, ck, err);
  return run;
}

}  // namespace
}  // namespace xent::cuda_detail

namespace xent::cuda {

CrossEntropyResult cross_entropy_loss(const MatrixView& logits, const Targets& targets,
                                      const CrossEntropyOptions& options,
                                      const CrossEntropyOutputs& outputs, void* stream) {
  using namespace cuda_detail;
  const CeRun run = run_ce("cuda::cross_entropy_loss", logits, targets, options, outputs, nullptr,
                           static_cast<cudaStream_t>(stream));
  CrossEntropyResult res;
  const Totals& t = run.totals;
  res.count = t.count;
  res.weight_sum = t.weight_sum;
  res.correct = options.compute_accuracy && targets.kind != Targets::Kind::kSoft ? t.correct : 0;
  detail::reduce_loss(options, t.ce, t.zl, t.weight_sum, t.count, res);
  return res;
}

void cross_entropy_backward(const MatrixView& logits, const Targets& targets,
                            const CrossEntropyOptions& options, const float* row_upstream,
                            const MutableMatrixView& grad, void* stream) {
  using namespace cuda_detail;
  const char* fn = "cuda::cross_entropy_backward";
  if (grad.data == nullptr && logits.rows > 0)
    fail_arg(fn, "grad.data is null");
  if (row_upstream && options.reduction != Reduction::kNone)
    fail_arg(fn, "row_upstream needs reduction none (one value per row)");
  CrossEntropyOutputs outs;
  outs.grad = grad;
  run_ce(fn, logits, targets, options, outs, row_upstream, static_cast<cudaStream_t>(stream));
}

}  // namespace xent::cuda
