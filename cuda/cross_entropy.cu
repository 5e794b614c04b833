// Fused cross-entropy on the GPU (xent/cuda.h): three kernels per call.
//   1. prep_targets: checks the index targets and computes the mean's
//      denominators (Σ w[y_n], count) in a fixed order, hence the gradient
//      scales, before any output is written.
//   2. ce_chunks (index targets without smoothing, softcap, temperature or
//      focal γ: a row in ≤ 8 blocks holding it in registers; see its
//      comment) or ce_rows (the rest): one block per row. Sweep 1 reads the
//      row once into the online statistics (and, when the row fits, into
//      shared memory); thread 0 finalizes the row; sweep 2 writes the gradient from the
//      cached copy (or from global memory, where the row was just read and is
//      normally still in L2). Focal γ with several non-zero coefficients adds
//      one sweep for Σ c·H.
//   3. reduce_rows: one block sums the per-row CE, z-loss and correct flags
//      in a fixed order (no floating-point atomics: deterministic).
#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include <cooperative_groups.h>

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
  bool prefetch;  // ce_chunks: fetch the block's next row into L2 ahead
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

// ------------------------------------------------------------- ce_chunks
// The fast path: index targets without label smoothing, softcap,
// temperature or focal γ (class weights, ignore_index, z-loss, accuracy,
// per-row outputs and row_upstream allowed): the common training call.
//
// Why another kernel: ce_rows (above) reads a row longer than its 48 KB
// cache twice, keeps float64 running sums per element and needs 80
// registers, so an H100 runs it at 20–30% of its copy bandwidth
// (docs/performance.md). Here a row is cut into C ≤ 8 chunks, one block
// each, and every thread holds its part of the chunk in registers
// (kChunkVecs 16-byte vectors) from the moment it is read until its gradient
// is written: the logits are read from memory exactly once. The C blocks of
// a row form a thread-block cluster (sm_90) and exchange their chunks'
// (max, Σexp) through distributed shared memory; each block merges the C
// pairs in the same order, so all of them hold the same bits. Rows that fit
// one block (C = 1) need no cluster and also run on sm_80.
//
// Per row: (1) the chunk's max; (2) Σ exp(z − max) in float32 per thread
// (≤ 64 terms ≤ 1 each), the terms equal to 1 counted apart (row_math.h's
// RowStats: S − 1 of a confident row must not come from 1 + tiny − 1), then
// float64 across threads and chunks; (3) thread 0 finalizes the row with
// row_math.h's functions, as ce_rows does; (4) the gradient
// q·(sce·c_t + zterm) in float32 per element, the target's own entry by
// grad_entry (1 − q from S − e). A NaN logit makes Σexp NaN and +inf makes
// the max +inf, so finalize_stats sees both without a per-element test.
constexpr int kChunkVecs = 8;       // 16-byte vectors per thread: 32 floats or 64 bf16/f16
constexpr int kMaxCluster = 8;      // the portable cluster size
constexpr int kChunkMaxThreads = 1024;

struct ChunkSlot {  // one block's result for its chunk, read by its cluster
  float m;          // the chunk's max (-inf: only -inf or NaN lanes)
  int argmax;       // first column holding m (INT_MAX: none)
  double ones;      // how many z == m
  double rest;      // Σ exp(z − m) over z < m
};

// Block-wide reductions for ce_chunks: a butterfly within each warp (every
// lane ends with the same bits: x + y == y + x), then the warps' values
// combined in warp order by every thread. Fixed order, any run.
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ int warp_min(int v) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}


// bf16 → float as volatile asm: the kernel's loops must not keep the 64
// unpacked floats of a thread's bf16 chunk live between them (the compiler
// would, and spill them); recomputing costs one instruction.
template <class T>
__device__ __forceinline__ float chunk_float(T x) { return to_float(x); }
__device__ __forceinline__ float chunk_float(__nv_bfloat16 x) {
  unsigned w;
  asm volatile("mov.b32 %0, {%1, %2};" : "=r"(w) : "h"(static_cast<unsigned short>(0)), "h"(__bfloat16_as_ushort(x)));
  return __uint_as_float(w);
}

// Row r of z as 16-byte vectors, from the one holding its first element
// (the first and last vectors may hold neighbours' elements): their start,
// the first element's lane in it, and how many vectors the row spans.
struct RowSpan {
  const uint4* vecs;
  int head, L;
};
template <class T>
__device__ __forceinline__ RowSpan row_span(const void* z, std::int64_t r, std::int64_t stride, int V) {
  constexpr int kVec = 16 / sizeof(T);
  const std::uintptr_t addr = reinterpret_cast<std::uintptr_t>(static_cast<const T*>(z) + r * stride);
  const int head = static_cast<int>((addr & 15) / sizeof(T));
  return {reinterpret_cast<const uint4*>(addr - (addr & 15)), head, (head + V + kVec - 1) / kVec};
}

// MaxThreads / MinBlocks: the register budget (1024 / 1: 64 registers a
// thread; 256 / 3: 80, for blocks of 256 threads only).
template <class T, int NV, int MaxThreads = kChunkMaxThreads, int MinBlocks = 1>
__global__ void __launch_bounds__(MaxThreads, MinBlocks) ce_chunks(CeArgs a) {
  constexpr int kVec = 16 / sizeof(T);
  __shared__ float s_maxw[32];
  __shared__ double s_sumw[2][32];
  __shared__ int s_argw[32];
  __shared__ ChunkSlot s_slot[2];  // double-buffered: see the cluster barrier below
  __shared__ float s_scal[4];       // M, 1/S, q multiplier, the target's gradient
  __shared__ int s_state;           // 0 write the gradient, 1 write zeros, 2 write nothing
  {
    const unsigned long long e = *a.err;
    if (e != kNoError && static_cast<int>(e & 15) == cuda_math::kRowTarget) return;  // every block alike
  }
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nwarps = blockDim.x >> 5;
  const int C = gridDim.x, rank = blockIdx.x;  // the cluster spans gridDim.x
  const int V = static_cast<int>(a.cp.V);
  int phase = 0;  // cluster barriers passed (selects s_slot)

  for (std::int64_t r = blockIdx.y; r < a.N; r += gridDim.y) {
    const std::int64_t t = target_at(a, r);
    const bool ignored = t == a.ignore_index;
    // Neighbours' elements in the first and last vector are never used or written.
    const RowSpan span = row_span<T>(a.z, r, a.sz, V);
    const uint4* zv = span.vecs;
    const int head = span.head, L = span.L;
    const int v0 = rank * blockDim.x * NV + tid;  // this thread's vectors: v0 + k·blockDim
    float zt = 0.f;  // the target's logit, read before any block of the row writes (in place)
    if (!ignored && tid == 0) zt = chunk_float(static_cast<const T*>(a.z)[r * a.sz + t]);
    if (!ignored || a.want_lse) {  // else nothing to compute: zeros below
      // Lanes outside the row become -inf, which no sum or max below sees:
      // the loops need no bounds (only the stores do).
      uint4 raw[NV];
#pragma unroll
      for (int k = 0; k < NV; ++k) {
        const int v = v0 + k * blockDim.x;
        const int j0 = v * kVec - head;
        if (v < L) raw[k] = __ldcs(zv + v);
        if (v >= L || j0 < 0 || j0 + kVec > V) {
          T* x = reinterpret_cast<T*>(&raw[k]);
#pragma unroll
          for (int e = 0; e < kVec; ++e)
            if (v >= L || j0 + e < 0 || j0 + e >= V) x[e] = from_float<T>(-cuda_math::kInfF);
        }
      }
      // The grid holds as many clusters as run at once, each looping over
      // rows: the next row's chunk is fetched into L2 now, so that its
      // memory latency overlaps this row's reductions and cluster exchange.
      if (a.prefetch && r + gridDim.y < a.N) {
        const RowSpan next = row_span<T>(a.z, r + gridDim.y, a.sz, V);
#pragma unroll
        for (int k = 0; k < NV; ++k) {
          const int v = v0 + k * blockDim.x;
          if (v < next.L) asm volatile("prefetch.global.L2 [%0];" ::"l"(next.vecs + v));
        }
      }
      // (1) the chunk's max.
      float m = -cuda_math::kInfF;
#pragma unroll
      for (int k = 0; k < NV; ++k) {
        const T* x = reinterpret_cast<const T*>(&raw[k]);
#pragma unroll
        for (int e = 0; e < kVec; ++e) m = fmaxf(m, chunk_float(x[e]));
      }
      m = warp_max(m);
      if (lane == 0) s_maxw[warp] = m;
      __syncthreads();
      m = s_maxw[0];
      for (int w = 1; w < nwarps; ++w) m = fmaxf(m, s_maxw[w]);
      // The first column holding the chunk's max (torch.argmax), if asked.
      int am = INT_MAX;
      if (a.accuracy) {
#pragma unroll
        for (int k = NV - 1; k >= 0; --k) {
          const T* x = reinterpret_cast<const T*>(&raw[k]);
          const int j0 = (v0 + k * static_cast<int>(blockDim.x)) * kVec - head;
#pragma unroll
          for (int e = kVec - 1; e >= 0; --e)
            if (chunk_float(x[e]) == m) am = j0 + e;
        }
      }
      // (2) Σ exp(z − m), the terms equal to 1 counted apart (ones). An all
      // -inf chunk (m = -inf: its lanes are -inf or NaN) has no terms, but a
      // NaN still makes the row's sum NaN.
      float ones = 0.f, rest = 0.f;
      if (m == -cuda_math::kInfF) {
#pragma unroll
        for (int k = 0; k < NV; ++k) {
          const T* x = reinterpret_cast<const T*>(&raw[k]);
#pragma unroll
          for (int e = 0; e < kVec; ++e)
            if (chunk_float(x[e]) != chunk_float(x[e])) rest = __int_as_float(0x7fc00000);
        }
        if constexpr (sizeof(T) == 4) {  // the kept exps below: all 0
#pragma unroll
          for (int k = 0; k < NV; ++k) raw[k] = make_uint4(0, 0, 0, 0);
        }
      } else if constexpr (sizeof(T) == 4) {
        // float32 keeps exp(z − m) in place of z for the gradient (one exp
        // per element). Two loops: the exps alone first, so that few values
        // are live at once (one loop spilled registers). A term that rounds
        // to exactly 1 counts as one: z = m, or z within 2^-25 of it, when
        // S − 1 ≥ 1 − 2^-25 anyway.
#pragma unroll
        for (int k = 0; k < NV; ++k) {
          float* x = reinterpret_cast<float*>(&raw[k]);
#pragma unroll
          for (int e = 0; e < kVec; ++e) x[e] = expf(x[e] - m);
        }
#pragma unroll
        for (int k = 0; k < NV; ++k) {
          const float* x = reinterpret_cast<const float*>(&raw[k]);
#pragma unroll
          for (int e = 0; e < kVec; ++e) {
            const bool one = x[e] == 1.f;
            ones += one ? 1.f : 0.f;
            rest += one ? 0.f : x[e];  // NaN stays NaN
          }
        }
      } else {
        // 16-bit logits are packed too tightly to keep exps: the gradient
        // pass recomputes them. exp(0) = 1 exactly, so the ones are z == m.
#pragma unroll
        for (int k = 0; k < NV; ++k) {
          const T* x = reinterpret_cast<const T*>(&raw[k]);
#pragma unroll
          for (int e = 0; e < kVec; ++e) {
            const float z = chunk_float(x[e]);
            const float ex = expf(z - m);
            const bool one = z == m;
            ones += one ? 1.f : 0.f;
            rest += one ? 0.f : ex;  // a NaN z lands here: rest NaN
          }
        }
      }
      double dones = warp_sum(static_cast<double>(ones));
      double drest = warp_sum(static_cast<double>(rest));
      if (a.accuracy) am = warp_min(am);
      if (lane == 0) {
        s_sumw[0][warp] = dones;
        s_sumw[1][warp] = drest;
        s_argw[warp] = am;
      }
      __syncthreads();
      if (tid == 0) {
        dones = 0; drest = 0; am = INT_MAX;
        for (int w = 0; w < nwarps; ++w) {
          dones += s_sumw[0][w];
          drest += s_sumw[1][w];
          am = min(am, s_argw[w]);
        }
        ChunkSlot& s = s_slot[phase & 1];
        s.m = m; s.argmax = am; s.ones = dones; s.rest = drest;
      }
      // (3) the cluster's chunks, merged in rank order by every block.
      ChunkSlot tot{};
      if (C > 1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        namespace cg = cooperative_groups;
        cg::cluster_group cl = cg::this_cluster();
        // One barrier per row: a block writes s_slot[phase & 1] again only
        // after the next barrier, which every block passes only once it has
        // read this row's slots.
        cl.sync();
        if (warp == 0) {
          ChunkSlot mine{};
          if (lane < C) mine = *cl.map_shared_rank(&s_slot[phase & 1], lane);
          float M = mine.m;
          if (lane >= C) M = -cuda_math::kInfF;
          M = warp_max(M);
          if (lane == 0) {
            tot.m = M; tot.argmax = INT_MAX; tot.ones = 0; tot.rest = 0;
          }
          for (int q = 0; q < C; ++q) {
            const float mq = __shfl_sync(0xffffffffu, mine.m, q);
            const double oq = __shfl_sync(0xffffffffu, mine.ones, q);
            const double rq = __shfl_sync(0xffffffffu, mine.rest, q);
            const int aq = __shfl_sync(0xffffffffu, mine.argmax, q);
            if (lane == 0) {
              if (mq == M) {
                tot.ones += oq;
                tot.rest += rq;
                tot.argmax = min(tot.argmax, aq);
              } else if (oq + rq != 0.0) {  // NaN stays NaN
                tot.rest += (oq + rq) * exp(static_cast<double>(mq) - static_cast<double>(M));
              }
            }
          }
        }
#else
        __trap();  // C > 1 is launched only on sm_90 and newer
#endif
      } else if (tid == 0) {
        tot = s_slot[phase & 1];
      }
      ++phase;
      if (tid == 0) {
        RowStats st;
        st.m = tot.m;
        st.ones = tot.ones;
        st.rest = tot.rest;
        RowFinal f;
        int e = cuda_math::finalize_stats(st, false, &f);
        if (a.row_lse && rank == 0) a.row_lse[r] = static_cast<float>(f.lse);
        int state = 0;
        if (ignored) {
          state = 1;
        } else if (e != 0) {
          if (rank == 0) flag_error(a.err, r, e);
          state = 2;
        } else {
          const double ct = (a.w ? static_cast<double>(a.w[t]) : 1.0) * a.cp.a;
          cuda_math::finalize_hard_loss(zt, ct, 0.0, &f);
          const double up = a.row_upstream ? static_cast<double>(a.row_upstream[r]) : 1.0;
          cuda_math::finalize_scales(a.cp, a.totals->scale_ce, a.totals->scale_z, up, &f);
          f.CH = ct;  // Σc of the gradient (the same on every rank)
          if (rank == 0) {
            a.row_ce[r] = f.ce;
            a.row_zl[r] = f.zl;
            a.row_correct[r] = a.accuracy && tot.argmax == t;
            if (a.row_loss) a.row_loss[r] = static_cast<float>(f.ce + f.zl);
          }
          // g = q·(sce·c_t + zterm) off the target; q = exp(z − M)/S, and for
          // float32 exp(z − m)·exp(m − M)/S from the kept exp(z − m).
          const double kq = f.sce * ct + f.zterm;
          s_scal[0] = f.M;
          s_scal[1] = sizeof(T) == 4 ? 1.f : static_cast<float>(f.inv_S);
          s_scal[2] = sizeof(T) == 4 ? static_cast<float>(exp(static_cast<double>(m) - f.M) * f.inv_S * kq)
                                     : static_cast<float>(kq);
          // The target's entry: sce·(q − 1)·c_t + zterm·q with 1 − q from S − e.
          s_scal[3] = cuda_math::grad_entry(zt, 1.f, ct, 0.0, f);
        }
        s_state = state;
      }
      __syncthreads();
      const int state = s_state;
      if (state == 0) {
        // (4) the gradient, from the registers.
        const float M = s_scal[0], inv_s = s_scal[1], kq = s_scal[2], gt = s_scal[3];
        const int vt = static_cast<int>(t) + head;  // the target's place: vector vt / kVec, lane vt % kVec
        T* grow = static_cast<T*>(a.g) + r * a.sg;
        const std::uintptr_t gaddr = reinterpret_cast<std::uintptr_t>(grow);
        const bool gvec = (gaddr & 15) == head * sizeof(T);  // misaligned as the logits' row
        uint4* gv = reinterpret_cast<uint4*>(gaddr - (gaddr & 15));
        if (a.g) {
#pragma unroll
          for (int k = 0; k < NV; ++k) {
            const int v = v0 + k * blockDim.x;
            if (v >= L) continue;
            T* x = reinterpret_cast<T*>(&raw[k]);
            const int j0 = v * kVec - head;
            const bool has_t = v == vt / kVec;
#pragma unroll
            for (int e = 0; e < kVec; ++e) {
              // 16-bit: the fast exp (ex2.approx, ~2^-21 relative here) is
              // far below the stored gradient's rounding (2^-9, 2^-12).
              const float q = sizeof(T) == 4 ? chunk_float(x[e]) : __expf(chunk_float(x[e]) - M) * inv_s;
              x[e] = from_float<T>(has_t && e == vt % kVec ? gt : q * kq);
            }
            if (gvec && j0 >= 0 && j0 + kVec <= V) {
              __stcs(gv + v, raw[k]);
            } else {
#pragma unroll
              for (int e = 0; e < kVec; ++e)
                if (j0 + e >= 0 && j0 + e < V) grow[j0 + e] = x[e];
            }
          }
        }
      }
      if (state != 1) {
        __syncthreads();  // s_state and s_scal are rewritten by the next row
        continue;
      }
    }
    // Zeros: an ignored row (or, with row_lse wanted, after its lse).
    if (tid == 0 && rank == 0) {
      a.row_ce[r] = 0; a.row_zl[r] = 0; a.row_correct[r] = 0;
      if (a.row_loss) a.row_loss[r] = 0.f;
    }
    if (a.g) {
      T* grow = static_cast<T*>(a.g) + r * a.sg;
      const int c0 = rank * blockDim.x * NV * kVec;
      const int c1 = min(V, c0 + static_cast<int>(blockDim.x) * NV * kVec);
      for (int j = c0 + tid; j < c1; j += blockDim.x) grow[j] = from_float<T>(0.f);
    }
    __syncthreads();
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // No block may leave while another can still read its slots.
  if (C > 1) cooperative_groups::this_cluster().sync();
#endif
}

// ce_chunks' launch shape for rows of V elements of es bytes: threads per
// block and chunks (blocks, the cluster size) per row; {0, 0}: ce_rows.
// The smallest block that covers the row in ≤ kMaxCluster chunks, 256
// threads at least when the row needs several (4 blocks of 256 threads
// at ≤ 64 registers share an SM); a row that fits one block gets just the
// warps it needs. 16-bit logits take the 80-register build (3 blocks of
// 256 threads an SM) where 256 threads do: at 64 registers their 64
// elements a thread spilled (measured on an H100, docs/performance.md).
// For benchmarks (bench/cuda_bench.py): XENT_CUDA_CE_THREADS (256, 512 or
// 1024) forces the block size, XENT_CUDA_CE_VECS=4 halves the vectors per
// thread, XENT_CUDA_CE_REGS=80 or 64 forces the register budget (80: 256
// threads only), XENT_CUDA_CE=rows forces ce_rows.
struct ChunkShape {
  int threads = 0, chunks = 0, vecs = kChunkVecs;
  bool regs80 = false;  // the 80-register build (≤ 256 threads)
};
ChunkShape chunk_shape(std::int64_t V, std::size_t es, bool clusters) {
  if (const char* k = std::getenv("XENT_CUDA_CE"); k && std::strcmp(k, "rows") == 0) return {};
  int forced = 0, nv = kChunkVecs;
  if (const char* t = std::getenv("XENT_CUDA_CE_THREADS")) forced = std::atoi(t);
  if (const char* t = std::getenv("XENT_CUDA_CE_VECS"); t && std::atoi(t) == 4) nv = 4;
  const char* rg = std::getenv("XENT_CUDA_CE_REGS");
  const int regs = rg ? std::atoi(rg) : (es == 2 ? 80 : 64);
  if (rg && regs == 80) forced = 256;
  const bool regs80 = regs == 80 && nv == kChunkVecs;
  const std::int64_t vec = static_cast<std::int64_t>(16 / es);
  const std::int64_t L = (V + 2 * (vec - 1)) / vec;  // vectors a row spans, its start unaligned
  for (int bd : {256, 512, 1024}) {
    if (forced && bd != forced) continue;
    const std::int64_t per_block = static_cast<std::int64_t>(bd) * nv;
    const std::int64_t C = (L + per_block - 1) / per_block;
    if (C == 1 && !forced) {
      const std::int64_t need = (L + nv - 1) / nv;
      return {static_cast<int>(std::max<std::int64_t>(32, (need + 31) / 32 * 32)), 1, nv, regs80};
    }
    if (C == 1 || (C <= kMaxCluster && clusters)) return {bd, static_cast<int>(C), nv, regs80 && bd == 256};
  }
  return {};
}

// Thread-block clusters (ce_chunks with C > 1) need sm_90.
bool device_has_clusters() {
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return major >= 9;
}

// How many rows (clusters, or single blocks) of a kernel run at once on the
// current device: the persistent grid's height. Cached per kernel and shape.
int resident_rows(const void* kernel, const cudaLaunchConfig_t& cfg, int threads, int chunks) {
  static std::mutex mu;
  static std::map<std::tuple<const void*, int, int, int>, int> cache;
  int dev = 0;
  XENT_CUDA_CHECK(cudaGetDevice(&dev));
  const auto key = std::make_tuple(kernel, threads, chunks, dev);
  {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
  }
  int n = 0;
  if (chunks > 1) {
    XENT_CUDA_CHECK(cudaOccupancyMaxActiveClusters(&n, kernel, &cfg));
  } else {
    int per_sm = 0, sms = 0;
    XENT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, 0));
    XENT_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    n = per_sm * sms;
  }
  n = std::max(n, 1);
  std::lock_guard<std::mutex> lock(mu);
  cache.emplace(key, n);
  return n;
}

template <class T>
void launch_chunks(CeArgs a, ChunkShape s, cudaStream_t stream) {
  const void* kernel = s.regs80       ? reinterpret_cast<const void*>(ce_chunks<T, kChunkVecs, 256, 3>)
                       : s.vecs == 4 ? reinterpret_cast<const void*>(ce_chunks<T, 4>)
                                     : reinterpret_cast<const void*>(ce_chunks<T, kChunkVecs>);
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(static_cast<unsigned>(s.chunks), 1);
  cfg.blockDim = dim3(static_cast<unsigned>(s.threads));
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(s.chunks);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = s.chunks > 1 ? 1 : 0;
  // Persistent (default): as many rows at once as fit, each cluster looping
  // with the next row prefetched. XENT_CUDA_CE_GRID=rows: one cluster a row
  // (up to 65535), no prefetch; XENT_CUDA_CE_PREFETCH=0: persistent without it.
  const char* grid = std::getenv("XENT_CUDA_CE_GRID");
  const char* pf = std::getenv("XENT_CUDA_CE_PREFETCH");
  const bool persistent = !(grid && std::strcmp(grid, "rows") == 0);
  a.prefetch = persistent && !(pf && std::strcmp(pf, "0") == 0);
  const std::int64_t height =
      persistent ? resident_rows(kernel, cfg, s.threads, s.chunks) : std::int64_t{65535};
  cfg.gridDim.y = static_cast<unsigned>(std::min<std::int64_t>(a.N, height));
  void* args[] = {&a};
  XENT_CUDA_CHECK(cudaLaunchKernelExC(&cfg, kernel, args));
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
  // The common call (index targets, no smoothing, softcap, temperature or
  // focal γ) takes ce_chunks; the rest ce_rows.
  const bool plain = a.p == nullptr && o.label_smoothing == 0 && !ck.cp.transform && ck.cp.gamma == 0;
  const ChunkShape shape = plain ? chunk_shape(ck.cp.V, es, device_has_clusters()) : ChunkShape{};
  if (shape.chunks > 0) {
    switch (logits.dtype) {
      case DType::kF32: launch_chunks<float>(a, shape, stream); break;
      case DType::kBF16: launch_chunks<__nv_bfloat16>(a, shape, stream); break;
      case DType::kF16: launch_chunks<__half>(a, shape, stream); break;
      case DType::kF64: break;  // refused by check_ce
    }
  } else {
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
  }
  XENT_CUDA_CHECK(cudaGetLastError());
  reduce_rows<<<1, kReduceThreads, 0, stream>>>(a.row_ce, a.row_zl, a.row_correct, ck.N, tot);
  XENT_CUDA_CHECK(cudaGetLastError());
  // Totals and the error word lie side by side: one copy back.
  struct {
    Totals t;
    unsigned long long e;
  } back;
  static_assert(sizeof(back) == sizeof(Totals) + sizeof(unsigned long long));
  XENT_CUDA_CHECK(cudaMemcpyAsync(&back, tot, sizeof(back), cudaMemcpyDeviceToHost, stream));
  XENT_CUDA_CHECK(cudaStreamSynchronize(stream));
  run.totals = back.t;
  if (back.e != kNoError) throw_row_error(fn, logits, targets, o, ck, back.e);
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
