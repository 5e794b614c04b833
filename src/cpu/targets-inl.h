// Per-target SIMD code for the index-target check that runs before any
// output is written: the rows whose target is not ignore_index are counted
// (mean divides by that count, so it is needed before the first gradient),
// and the first target outside [0, V) that is not ignore_index is found.
// A plain loop with a branch per row took 0.43 ns per row (Zen 5, in cache):
// 7% of the V = 10 fwd+bwd call.
#if defined(XENT_CPU_TARGETS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_CPU_TARGETS_INL_H_
#undef XENT_CPU_TARGETS_INL_H_
#else
#define XENT_CPU_TARGETS_INL_H_
#endif

#include <cstdint>
#include <limits>

#include "cpu/kernels.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace xent::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The scalar rule, for the tail and for locating the first bad row.
template <class T>
HWY_INLINE bool TargetKept(T t, int64_t ignore) { return static_cast<int64_t>(t) != ignore; }
template <class T>
HWY_INLINE bool TargetBad(T t, int64_t V, int64_t ignore) {
  return TargetKept(t, ignore) && (t < 0 || static_cast<int64_t>(t) >= V);
}

// How often (in blocks) int32 lane counters are emptied into the total.
inline constexpr size_t kFlushBlocks = size_t{1} << 16;

// T is int64_t or int32_t. Blocks of 4 vectors: the kept lanes are counted
// in a vector of per-lane counters (a kept lane's mask is −1: subtracting it
// adds 1), the bad lanes OR-ed together and tested once per block; a block
// with a bad lane is rescanned in order for the first one.
template <class T>
TargetScan ScanTargetsT(const T* HWY_RESTRICT t, size_t n, int64_t V, int64_t ignore) {
  const hn::ScalableTag<T> d;
  const size_t L = hn::Lanes(d);
  TargetScan out;
  // An int32 target never equals an ignore index outside int32's range.
  const bool ignore_fits = ignore >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
                           ignore <= static_cast<int64_t>(std::numeric_limits<T>::max());
  const T vmax = V - 1 > static_cast<int64_t>(std::numeric_limits<T>::max()) ? std::numeric_limits<T>::max()
                                                                              : static_cast<T>(V - 1);
  const auto ig = hn::Set(d, ignore_fits ? static_cast<T>(ignore) : T(0));
  const auto hi = hn::Set(d, vmax);
  const auto zero = hn::Zero(d);
  auto kept_count = hn::Zero(d);
  size_t i = 0;
  auto lane_kept = [&](hn::Vec<decltype(d)> x) HWY_ATTR {
    return ignore_fits ? hn::Not(hn::Eq(x, ig)) : hn::Eq(zero, zero);  // else every lane is kept
  };
  auto lane_bad = [&](hn::Vec<decltype(d)> x) HWY_ATTR {
    // Outside [0, V): below 0 or above V − 1 (V − 1 clamped to T's range:
    // an int32 target is never ≥ a V beyond it).
    return hn::And(lane_kept(x), hn::Or(hn::Lt(x, zero), hn::Gt(x, hi)));
  };
  for (; i + 4 * L <= n; i += 4 * L) {
    const auto x0 = hn::LoadU(d, t + i), x1 = hn::LoadU(d, t + i + L);
    const auto x2 = hn::LoadU(d, t + i + 2 * L), x3 = hn::LoadU(d, t + i + 3 * L);
    const auto bad = hn::Or(hn::Or(hn::VecFromMask(d, lane_bad(x0)), hn::VecFromMask(d, lane_bad(x1))),
                            hn::Or(hn::VecFromMask(d, lane_bad(x2)), hn::VecFromMask(d, lane_bad(x3))));
    if (HWY_UNLIKELY(!hn::AllFalse(d, hn::Ne(bad, zero)))) {
      for (size_t j = i; j < i + 4 * L; ++j)
        if (TargetBad(t[j], V, ignore)) {
          out.first_bad = static_cast<int64_t>(j);
          return out;
        }
    }
    kept_count = hn::Sub(kept_count, hn::VecFromMask(d, lane_kept(x0)));
    kept_count = hn::Sub(kept_count, hn::VecFromMask(d, lane_kept(x1)));
    kept_count = hn::Sub(kept_count, hn::VecFromMask(d, lane_kept(x2)));
    kept_count = hn::Sub(kept_count, hn::VecFromMask(d, lane_kept(x3)));
    // An int32 lane counter holds 2^31 − 1: empty it into the total well
    // before (every 2^16 blocks, ≤ 2^18 per lane).
    if (sizeof(T) == 4 && (i / (4 * L)) % kFlushBlocks == kFlushBlocks - 1) {
      HWY_ALIGN T lanes[HWY_MAX_BYTES / sizeof(T)];
      hn::Store(kept_count, d, lanes);
      for (size_t l = 0; l < L; ++l) out.count += static_cast<int64_t>(lanes[l]);
      kept_count = hn::Zero(d);
    }
  }
  HWY_ALIGN T lanes[HWY_MAX_BYTES / sizeof(T)];
  hn::Store(kept_count, d, lanes);
  for (size_t l = 0; l < L; ++l) out.count += static_cast<int64_t>(lanes[l]);
  for (; i < n; ++i) {
    if (TargetBad(t[i], V, ignore)) {
      out.first_bad = static_cast<int64_t>(i);
      return out;
    }
    out.count += TargetKept(t[i], ignore);
  }
  return out;
}

}  // namespace xent::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard
