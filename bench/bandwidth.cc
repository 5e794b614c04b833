#include "bandwidth.h"

#include <omp.h>

#include <algorithm>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "bandwidth.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/cache_control.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace xent::bench::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// x after kFmas dependent multiply-adds: a stand-in for a kernel's
// arithmetic per vector (memory_patterns --fmas; a compile-time count, so
// that no loop overhead comes with it).
template <int kFmas, class D>
HWY_INLINE hn::Vec<D> Work(D d, hn::Vec<D> x) {
  const auto c1 = hn::Set(d, 0.999f), c0 = hn::Set(d, 0.001f);
  for (int k = 0; k < kFmas; ++k) x = hn::MulAdd(x, c1, c0);
  return x;
}

// Σ Work<kFmas>(src[0, n)) with 4 independent accumulators (enough to
// saturate memory; kFmas = 0: the plain sum).
template <int kFmas>
double SumRangeWorkT(const float* HWY_RESTRICT src, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t L = hn::Lanes(d);
  auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
  size_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    a0 = hn::Add(a0, Work<kFmas>(d, hn::LoadU(d, src + i)));
    a1 = hn::Add(a1, Work<kFmas>(d, hn::LoadU(d, src + i + L)));
    a2 = hn::Add(a2, Work<kFmas>(d, hn::LoadU(d, src + i + 2 * L)));
    a3 = hn::Add(a3, Work<kFmas>(d, hn::LoadU(d, src + i + 3 * L)));
  }
  double s = hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
  for (; i < n; ++i) s += src[i];
  return s;
}
double SumRange(const float* HWY_RESTRICT src, size_t n) { return SumRangeWorkT<0>(src, n); }

// dst = Work<kFmas>(src) with non-temporal stores where dst is vector-aligned
// (kFmas = 0: a copy).
template <int kFmas>
void StreamRangeWorkT(const float* HWY_RESTRICT src, float* HWY_RESTRICT dst, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t L = hn::Lanes(d);
  size_t i = 0;
  while (i < n && reinterpret_cast<uintptr_t>(dst + i) % (L * sizeof(float)) != 0) {
    dst[i] = src[i];
    ++i;
  }
  for (; i + 2 * L <= n; i += 2 * L) {
    hn::Stream(Work<kFmas>(d, hn::LoadU(d, src + i)), d, dst + i);
    hn::Stream(Work<kFmas>(d, hn::LoadU(d, src + i + L)), d, dst + i + L);
  }
  for (; i < n; ++i) dst[i] = src[i];
}
void StreamRange(const float* HWY_RESTRICT src, float* HWY_RESTRICT dst, size_t n) {
  StreamRangeWorkT<0>(src, dst, n);
}

double ReadSumImpl(const float* src, size_t n, int threads) {
  double total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
  {
    const size_t t = static_cast<size_t>(omp_get_thread_num());
    const size_t nt = static_cast<size_t>(omp_get_num_threads());
    const size_t b = n * t / nt, e = n * (t + 1) / nt;
    total += SumRange(src + b, e - b);
  }
  return total;
}

void StreamCopyImpl(const float* src, float* dst, size_t n, int threads) {
#pragma omp parallel num_threads(threads)
  {
    const size_t t = static_cast<size_t>(omp_get_thread_num());
    const size_t nt = static_cast<size_t>(omp_get_num_threads());
    const size_t b = n * t / nt, e = n * (t + 1) / nt;
    StreamRange(src + b, dst + b, e - b);
    hwy::FlushStream();
  }
}

double RowCeilingImpl(const float* src, float* dst, size_t rows, size_t cols, int threads) {
  double total = 0;
  if (rows == 1) {  // one row: split it, as the loss does
    const size_t n = cols;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      const size_t t = static_cast<size_t>(omp_get_thread_num());
      const size_t nt = static_cast<size_t>(omp_get_num_threads());
      const size_t b = n * t / nt, e = n * (t + 1) / nt;
      total += SumRange(src + b, e - b);
      StreamRange(src + b, dst + b, e - b);
      hwy::FlushStream();
    }
    return total;
  }
  // Short rows are taken a tile of rows at a time (≥ 8192 floats), as the
  // one-row-per-lane loss kernel does.
  const size_t group = cols >= 8192 ? 1 : 8192 / cols;
  const size_t units = (rows + group - 1) / group;
#pragma omp parallel num_threads(threads) reduction(+ : total)
  {
#pragma omp for schedule(static)
    for (size_t u = 0; u < units; ++u) {
      const size_t r0 = u * group, r1 = std::min(rows, r0 + group);
      total += SumRange(src + r0 * cols, (r1 - r0) * cols);
      StreamRange(src + r0 * cols, dst + r0 * cols, (r1 - r0) * cols);
    }
    hwy::FlushStream();
  }
  return total;
}

// fmas ∈ {0, 4, 8, 12, 16} (memory_patterns checks); 0: the plain kernels.
double SumRangeWork(const float* HWY_RESTRICT src, size_t n, int fmas) {
  switch (fmas) {
    case 4: return SumRangeWorkT<4>(src, n);
    case 8: return SumRangeWorkT<8>(src, n);
    case 12: return SumRangeWorkT<12>(src, n);
    case 16: return SumRangeWorkT<16>(src, n);
    default: return SumRange(src, n);
  }
}
void StreamRangeWork(const float* HWY_RESTRICT src, float* HWY_RESTRICT dst, size_t n, int fmas) {
  switch (fmas) {
    case 4: return StreamRangeWorkT<4>(src, dst, n);
    case 8: return StreamRangeWorkT<8>(src, dst, n);
    case 12: return StreamRangeWorkT<12>(src, dst, n);
    case 16: return StreamRangeWorkT<16>(src, dst, n);
    default: return StreamRange(src, dst, n);
  }
}

// Each thread takes a contiguous range of rows; for each row r it sums row
// r and streams row r − 1 (read earlier, now in cache) into dst: whole rows
// one after the other when grain = 0 (what the loss does for V ≥ 4096: the
// statistics of a row, then the previous row's gradient), else alternating
// every `grain` floats, so that the read and the write streams run together.
double PipelinedRowsImpl(const float* src, float* dst, size_t rows, size_t cols, size_t grain, int fmas,
                         int threads) {
  double total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
  {
    const size_t t = static_cast<size_t>(omp_get_thread_num());
    const size_t nt = static_cast<size_t>(omp_get_num_threads());
    const size_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
    for (size_t r = r0; r <= r1 && r0 < r1; ++r) {
      const float* in = src + r * cols;  // row r (read)
      if (r == r0) {
        total += SumRangeWork(in, cols, fmas);
        continue;
      }
      const float* prev = src + (r - 1) * cols;  // row r − 1 (rewritten)
      float* out = dst + (r - 1) * cols;
      if (r == r1) {
        StreamRangeWork(prev, out, cols, fmas);
      } else if (grain == 0) {
        total += SumRangeWork(in, cols, fmas);
        StreamRangeWork(prev, out, cols, fmas);
      } else {
        for (size_t a = 0; a < cols; a += grain) {
          const size_t m = std::min(grain, cols - a);
          total += SumRangeWork(in + a, m, fmas);
          StreamRangeWork(prev + a, out + a, m, fmas);
        }
      }
    }
    hwy::FlushStream();
  }
  return total;
}

}  // namespace xent::bench::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace xent::bench {
HWY_EXPORT(ReadSumImpl);
HWY_EXPORT(StreamCopyImpl);
HWY_EXPORT(RowCeilingImpl);
HWY_EXPORT(PipelinedRowsImpl);

double ReadSum(const float* src, std::size_t n, int threads) {
  return HWY_DYNAMIC_DISPATCH(ReadSumImpl)(src, n, threads);
}
void StreamCopy(const float* src, float* dst, std::size_t n, int threads) {
  HWY_DYNAMIC_DISPATCH(StreamCopyImpl)(src, dst, n, threads);
}
double RowCeiling(const float* src, float* dst, std::size_t rows, std::size_t cols, int threads) {
  return HWY_DYNAMIC_DISPATCH(RowCeilingImpl)(src, dst, rows, cols, threads);
}
double PipelinedRows(const float* src, float* dst, std::size_t rows, std::size_t cols, std::size_t grain,
                     int fmas, int threads) {
  return HWY_DYNAMIC_DISPATCH(PipelinedRowsImpl)(src, dst, rows, cols, grain, fmas, threads);
}
}  // namespace xent::bench
#endif
