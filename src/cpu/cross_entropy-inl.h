// Per-target SIMD code of the fused cross-entropy (see kernels.h for the
// contract). Re-included once per target by kernels.cc; the include guard is
// Highway's toggle idiom.
#if defined(XENT_CPU_CROSS_ENTROPY_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_CPU_CROSS_ENTROPY_INL_H_
#undef XENT_CPU_CROSS_ENTROPY_INL_H_
#else
#define XENT_CPU_CROSS_ENTROPY_INL_H_
#endif

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cpu/exp_avx2.h"
#include "cpu/exp_avx512.h"
#include "cpu/kernels.h"
#include "hwy/cache_control.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace xent::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// ptr + i where the pointer is in use (never offsets a null pointer).
template <bool kUse, class T>
HWY_INLINE const T* At(const T* ptr, size_t i) {
  return kUse ? ptr + i : nullptr;
}
template <bool kUse, class T>
HWY_INLINE T* At(T* ptr, size_t i) {
  return kUse ? ptr + i : nullptr;
}

// exp(x) for x ≤ 0 (the only arguments the kernels use: z − running max),
// accurate to ~1 ulp (test KernelExp: max 0.98 ulp on AVX-512, 1.11 on
// AVX2, 0.94 elsewhere), exp(0) = 1 exactly, cheaper than hwy::Exp. Forms:
// - AVX-512: a 16-entry table and a degree-3 polynomial (below);
// - AVX2: the same with an 8-entry table (cpu/exp_avx2.h), 7 FMA-pipe
//   operations instead of the polynomial form's 9: on Zen 3, exp alone
//   0.308 → 0.240 ns per element, the statistics pass with smoothing
//   coefficients 0.549 → 0.477;
// - other targets: n = round(x·log2 e) by the 1.5·2^23 trick, r = x − n·ln 2
//   in two parts (Cody–Waite), e^r = 1 + r·Q5(r) by Horner (6 FMAs; Q5 is a
//   relative-error minimax fit on [−ln2/2, ln2/2] whose own error is 0.03
//   ulp, and exp(0) = 1 exactly since the last step is 1 + 0·Q), and 2^n
//   added to the exponent field; x < −86.6 (e^x < 2.4e-38, below the normal
//   range) gives 0.
// float64 uses hwy::Exp.
// kMayUnderflow = false promises x ≥ −86.6 (or NaN) in every lane, and the
// AVX2 form then skips its test for x < −86.6 (same bits: that test only
// ever zeroes lanes below −86.6); its one user is StatsImpl's common AVX2
// block. The other forms keep their test either way.
template <bool kMayUnderflow = true, class D>
HWY_INLINE hn::Vec<D> ExpNonPositive(D d, hn::Vec<D> x) {  // NOLINT: x is modified
  using T = hn::TFromD<D>;
  if constexpr (sizeof(T) == 8) {
    return hn::Exp(d, x);
  } else {
#if HWY_TARGET <= HWY_AVX3
    // AVX-512: a 16-entry table of 2^(j/16) in one register (vpermps), so
    // that the polynomial needs degree 3 instead of 6 on |r| ≤ ln2/32. On
    // Zen 4 the FMA pipes limit this exp (multiplies, FMAs and vscalefps run
    // there; max, round, add and vpermps mostly beside them): 7 of their
    // operations here against 9 (+ scalef) for the polynomial form, exp
    // alone 0.165 → 0.141 ns per element per core. k = x/ln 2 rounded to
    // sixteenths; r = x − k·ln 2 in two parts (k·hi exact: hi has 12 bits,
    // 16k ≤ 2400); e^x = 2^⌊k⌋ · T[16k mod 16] · e^r, with e^r − 1 = r + c2
    // r² + c3 r³ (relative-error fit, 1.6e-9) and the last step T + T·(e^r −
    // 1) one FMA; vscalefps does the 2^⌊k⌋ (it floors its exponent argument)
    // with correct underflow to subnormals and 0. exp(0) = T[0] + T[0]·0 = 1
    // exactly. The table's own float32 rounding (≤ ½ ulp per entry) is the
    // one error that does not average out over a row's Σexp: a second table
    // of the remainders removed it (max 0.55 ulp) but cost the whole gain.
    // (The code lives in cpu/exp_avx512.h, shared with chunk_gemm.cc.)
    return hn::Vec<D>{exp_nonpositive_avx512(x.raw)};
#elif HWY_TARGET == HWY_AVX2
    return hn::Vec<D>{exp_nonpositive_avx2<kMayUnderflow>(x.raw)};
#else
    const hn::RebindToSigned<D> di;
    const auto kMagic = hn::Set(d, 12582912.0f);  // 1.5·2^23
    const auto t = hn::MulAdd(x, hn::Set(d, 1.44269504088896341f), kMagic);
    const auto n = hn::Sub(t, kMagic);
    auto r = hn::NegMulAdd(n, hn::Set(d, 0.693359375f), x);
    r = hn::NegMulAdd(n, hn::Set(d, -2.12194440e-4f), r);
    auto q = hn::Set(d, 1.3843653723597527e-3f);
    q = hn::MulAdd(q, r, hn::Set(d, 8.37415549904108e-3f));
    q = hn::MulAdd(q, r, hn::Set(d, 4.166800156235695e-2f));
    q = hn::MulAdd(q, r, hn::Set(d, 1.6666431725025177e-1f));
    q = hn::MulAdd(q, r, hn::Set(d, 4.999999403953552e-1f));
    q = hn::MulAdd(q, r, hn::Set(d, 1.0f));
    const auto er = hn::MulAdd(q, r, hn::Set(d, 1.0f));
    const auto ni = hn::Sub(hn::BitCast(di, t), hn::BitCast(di, kMagic));
    const auto y = hn::BitCast(d, hn::Add(hn::BitCast(di, er), hn::ShiftLeft<23>(ni)));
    return hn::IfThenZeroElse(hn::Lt(x, hn::Set(d, -86.6f)), y);
#endif
  }
}

// fp64 accumulators for a vector of T: float lanes are widened (two halves),
// so that Σ exp over 256k terms keeps ~1e-16 relative error instead of
// float32's ~1e-7·sqrt(n). double lanes are added as they are.
template <class D>
struct Wide {
  using T = hn::TFromD<D>;
#if HWY_TARGET == HWY_SCALAR
  using DW = hn::Rebind<double, D>;  // one lane: widen it whole
#else
  using DW = hn::Repartition<double, D>;
#endif
  using VW = hn::Vec<DW>;
  VW lo, hi;
  explicit Wide(D) : lo(hn::Zero(DW())), hi(hn::Zero(DW())) {}
  HWY_INLINE void Add(D d, hn::Vec<D> v) {
    if constexpr (sizeof(T) == 4) {
#if HWY_TARGET == HWY_SCALAR
      lo = hn::Add(lo, hn::PromoteTo(DW(), v));
#else
      const hn::Half<D> dh;
      lo = hn::Add(lo, hn::PromoteTo(DW(), hn::LowerHalf(dh, v)));
      hi = hn::Add(hi, hn::PromoteTo(DW(), hn::UpperHalf(dh, v)));
#endif
    } else {
      (void)d;
      lo = hn::Add(lo, v);
    }
  }
  HWY_INLINE void Scale(double r) {
    lo = hn::Mul(lo, hn::Set(DW(), r));
    hi = hn::Mul(hi, hn::Set(DW(), r));
  }
  // Adds c to the accumulator of every T lane. On HWY_SCALAR the one lane
  // lives in lo alone (hi stays 0): adding c to hi too counted it twice.
  HWY_INLINE void AddConstant(double c) {
    lo = hn::Add(lo, hn::Set(DW(), c));
#if HWY_TARGET != HWY_SCALAR
    if constexpr (sizeof(T) == 4) hi = hn::Add(hi, hn::Set(DW(), c));
#endif
  }
  HWY_INLINE void AddScaled(const Wide& other, double r) {
    lo = hn::MulAdd(other.lo, hn::Set(DW(), r), lo);
    hi = hn::MulAdd(other.hi, hn::Set(DW(), r), hi);
  }
  // Fixed-order horizontal sum (lane 0, 1, ...), so the bits are reproducible.
  HWY_INLINE double Total() const {
    const DW dw;
    HWY_ALIGN double a[HWY_MAX_BYTES / sizeof(double)];
    HWY_ALIGN double b[HWY_MAX_BYTES / sizeof(double)];
    hn::Store(lo, dw, a);
    hn::Store(hi, dw, b);
    double s = 0;
    for (size_t i = 0; i < hn::Lanes(dw); ++i) s += a[i] + b[i];
    return s;
  }
};

// Whether ExpNonPositive turns a NaN argument into a NaN (the AVX-512 and
// AVX2 float32 forms do, for any sign and payload): then a NaN logit shows
// in Σexp, and +inf in the reference, and the statistics pass needs no Σz
// to find them (one add per vector fewer: the pass went from 0.215 to 0.203
// ns per element).
template <class T>
inline constexpr bool kExpKeepsNaN = sizeof(T) == 4 && HWY_TARGET <= HWY_AVX2;

template <class D>
struct StatsState {
  using T = hn::TFromD<D>;
  using V = hn::Vec<D>;
  T ref;       // running max (a logit value), the exp reference
  V ref_v;
  V xsum;      // Σ z in T: NaN / +inf in it flags non-finite input (unless kExpKeepsNaN)
  // Σ exp(z − ref) in fp64 lanes, without the terms where z = ref exactly:
  // those are exactly 1 and are counted in `ones` (an integer-valued T
  // vector), so that s − 1 is the non-maximum mass as accumulated, never
  // blurred by an fp32 partial sum that also holds a 1.
  Wide<D> s, csum, cdot, psum;
  V ones;
  // Per-block float32 staging of the coefficient sums (all terms ≥ 0, added
  // one vector at a time: a 4-term partial has ≤ 3 roundings, ≤ 3·2^-24
  // relative to its own mass), widened once per block.
  V cblk, dblk, pblk;
  // The smallest and largest p_j seen (from 0: a p_j < 0 or > 1 shows in
  // them; a NaN p_j shows in Σp instead). Two operations per vector where
  // testing each p_j against [0, 1] took five.
  V pmin, pmax;
  // c = a·p + b of soft targets (see kSumFromP).
  double coef_a = 0, coef_b = 0;
  explicit StatsState(D d)
      : ref(std::numeric_limits<T>::lowest()),
        ref_v(hn::Set(d, std::numeric_limits<T>::lowest())),
        xsum(hn::Zero(d)), s(d), csum(d), cdot(d), psum(d), ones(hn::Zero(d)),
        cblk(hn::Zero(d)), dblk(hn::Zero(d)), pblk(hn::Zero(d)),
        pmin(hn::Zero(d)), pmax(hn::Zero(d)) {}

  template <bool kCoef, bool kW, bool kP>
  HWY_INLINE void Flush(D d) {
    if constexpr (kCoef) {
      if constexpr (kW) csum.Add(d, cblk);  // (without weights Σc comes from Σp: see kSumFromP)
      cdot.Add(d, dblk);
      cblk = dblk = hn::Zero(d);
    }
    if constexpr (kP) {
      psum.Add(d, pblk);
      pblk = hn::Zero(d);
    }
  }

  // A new block maximum above the reference: move the reference up and
  // rescale what was accumulated (exactly once per new chunk maximum, so a
  // few times per chunk on typical data). Keeping ref = running max means
  // every exp argument is ≤ 0 and z − ref is exact for nearby values.
  // `per_lane`: elements each lane has seen (all vectors before i are full),
  // standing in for Σc, or its b·count part, where Σc is not accumulated.
  template <bool kCountOnly, bool kSumFromP>
  HWY_INLINE void Raise(D d, V bmax, size_t i, std::vector<Segment>* segs, size_t per_lane) {
    const T nref = hn::GetLane(hn::MaxOfLanes(d, bmax));
    if (!(nref > ref)) return;  // NaN: flagged through xsum or Σexp
    if (segs) {
      if (segs->back().start == i)
        segs->back().ref = nref;
      else
        segs->push_back({i, static_cast<double>(nref)});
    }
    const double delta = static_cast<double>(nref) - static_cast<double>(ref);
    // The first raise (from lowest()) has nothing accumulated to rescale.
    if (ref != std::numeric_limits<T>::lowest()) {
      s.Add(d, ones);  // the old maximum's terms are no longer exactly 1
      ones = hn::Zero(d);
      s.Scale(std::exp(-delta));
    }
    // Σ c (ref − z) moves by (nref − ref)·Σ c, per lane: Σc is the count
    // when every c is 1, a·Σp + b·count for soft targets without class
    // weights (c = a·p + b), else accumulated.
    if constexpr (kCountOnly) {
      cdot.AddConstant(delta * static_cast<double>(per_lane));
    } else if constexpr (kSumFromP) {
      cdot.AddScaled(psum, delta * coef_a);
      cdot.AddConstant(delta * coef_b * static_cast<double>(per_lane));
    } else {
      cdot.AddScaled(csum, delta);
    }
    // A zero reference is kept as −0, so that z − ref is +0, never −0, for
    // z = ±0 (the AVX2 block test relies on it); exp(z − (−0)) = exp(z − 0).
    ref = nref == T(0) ? T(-0.0) : nref;
    ref_v = hn::Set(d, ref);
  }

  // Lanes with z = ref hold exp(0) = 1 exactly: count them, return e
  // without them.
  HWY_INLINE V TakeOnes(D d, V x, V e) {
    const auto m = hn::Eq(x, ref_v);
    ones = hn::Add(ones, hn::IfThenElseZero(m, hn::Set(d, T(1))));
    return hn::IfThenZeroElse(m, e);
  }
};

// max(init, z[0], ..., z[n−1]), one pass (Max skips NaN in some lanes:
// callers learn of NaN and +inf elsewhere).
template <class D>
HWY_INLINE hn::TFromD<D> MaxFrom(D d, const hn::TFromD<D>* HWY_RESTRICT z, size_t n, hn::TFromD<D> init) {
  using T = hn::TFromD<D>;
  const size_t L = hn::Lanes(d);
  // Four independent chains: with two, a row of 1000 floats was a chain of
  // 31 dependent vector maxima per accumulator, bound by their latency, and
  // fewer of the row's loads were in flight where it still streams in. Zen
  // 5 (AVX-512), one process alternating the two 30 times: 65536×1000
  // forward −15% on 2 threads (faster in 29 of 30), −18% on one; in cache
  // −1 to −4%. Eight chains were 5% slower than four there.
  auto m0 = hn::Set(d, init), m1 = m0, m2 = m0, m3 = m0;
  size_t j = 0;
  for (; j + 4 * L <= n; j += 4 * L) {
    m0 = hn::Max(hn::LoadU(d, z + j), m0);
    m1 = hn::Max(hn::LoadU(d, z + j + L), m1);
    m2 = hn::Max(hn::LoadU(d, z + j + 2 * L), m2);
    m3 = hn::Max(hn::LoadU(d, z + j + 3 * L), m3);
  }
  m0 = hn::Max(m0, m2);
  m1 = hn::Max(m1, m3);
  if (j + 2 * L <= n) {
    m0 = hn::Max(hn::LoadU(d, z + j), m0);
    m1 = hn::Max(hn::LoadU(d, z + j + L), m1);
    j += 2 * L;
  }
  if (j + L <= n) {
    m0 = hn::Max(hn::LoadU(d, z + j), m0);
    j += L;
  }
#if HWY_TARGET <= HWY_AVX3
  // The last partial vector masked (fault-free past the end): the scalar
  // loop was a chain of up to 15 dependent max operations per row, ~6% of
  // the statistics pass's time at 500 columns.
  if (j < n) {
    const auto valid = hn::FirstN(d, n - j);
    m1 = hn::Max(hn::IfThenElse(valid, hn::MaskedLoad(valid, d, z + j), hn::Set(d, init)), m1);
    j = n;
  }
#endif
  T mx = hn::GetLane(hn::MaxOfLanes(d, hn::Max(m0, m1)));
  for (; j < n; ++j) mx = z[j] > mx ? z[j] : mx;
  return mx;
}

// One vector of the statistics pass, given zr = z − ref: returns e =
// exp(zr) (stored to e_out with kStore) and accumulates the coefficient
// sums; with kPartial, `valid` masks a partial vector (the full vectors skip
// the masking).
template <bool kCoef, bool kW, bool kP, bool kPartial, bool kStore, bool kMayUnderflow = true, class D>
HWY_INLINE hn::Vec<D> StatsStep(D d, StatsState<D>& st, hn::Vec<D> zr, hn::TFromD<D>* HWY_RESTRICT e_out,
                                const hn::TFromD<D>* HWY_RESTRICT w,
                                const hn::TFromD<D>* HWY_RESTRICT p,
                                hn::Vec<D> a, hn::Vec<D> b, hn::Mask<D> valid) {
  using T = hn::TFromD<D>;
  const auto e = ExpNonPositive<kMayUnderflow>(d, zr);
  // (A compile-time flag, not a test of e_out: the runtime test and the
  // `eo ? eo + i : nullptr` at the call sites were ~6 of the AVX2 pass's
  // ~36 instructions per vector.)
  if constexpr (kStore) hn::StoreU(e, d, e_out);
  if constexpr (kCoef) {
    auto c = hn::Set(d, T(1));
    if constexpr (kP) {
      auto pv = hn::LoadU(d, p);
      if constexpr (kPartial) pv = hn::IfThenElseZero(valid, pv);
      st.pblk = hn::Add(st.pblk, pv);
      st.pmin = hn::Min(st.pmin, pv);
      st.pmax = hn::Max(st.pmax, pv);
      c = hn::MulAdd(a, pv, b);
    }
    if constexpr (kW) c = hn::Mul(c, hn::LoadU(d, w));
    if constexpr (kPartial) c = hn::IfThenElseZero(valid, c);
    (void)valid;
    // 0 · (ref − z) is 0 even where z = -inf (a masked class with no mass).
    // ref is the running max, so every term is ≥ 0 and the float32 product
    // (relative error ≤ 2^-24 per term) keeps the sum's relative accuracy.
    const auto diff = hn::IfThenElseZero(hn::Gt(c, hn::Zero(d)), hn::Neg(zr));  // ref − z, the same bits
    if constexpr (kW || kP) {
      if constexpr (kW) st.cblk = hn::Add(st.cblk, c);
      st.dblk = hn::MulAdd(c, diff, st.dblk);
    } else {
      st.dblk = hn::Add(st.dblk, diff);  // c = 1: Σc is the count
    }
  }
  return e;
}

// The statistics pass over one chunk (z[0, n)), as an object: StatsImpl runs
// one, StatsImpl2 two rows' side by side (same n), block by block. Each
// object does exactly the operations, in exactly the order, of a pass on its
// own, so the bits do not depend on whether a row ran alone or paired.
// kStoreE: whether spec.e_out is given (a compile-time flag: a runtime
// test per vector cost 12% of the pass on AVX2, 0.43 → 0.38 ns per element).
template <bool kCoef, bool kW, bool kP, bool kStoreE, class D>
struct StatsPass {
  using T = hn::TFromD<D>;
  using V = hn::Vec<D>;
  D d;
  const T* HWY_RESTRICT z;
  size_t n, L;
  const T* HWY_RESTRICT w;
  const T* HWY_RESTRICT p;
  V a, b;
  hn::Mask<D> all;
  T* HWY_RESTRICT eo;
  std::vector<Segment>* segs;
  const char* HWY_RESTRICT pf;
  const char* HWY_RESTRICT pfp;
  StatsState<D> st;
  // Blocks of 4 vectors: one max-check per block, then 4 exps summed
  // pairwise in T into `pend`, which holds four blocks (16 terms ≤ 1: ≤ 5
  // roundings, ≤ 5·2^-24 relative to their own mass) before it is widened to
  // fp64: the widening (two conversions and an extract, on the FMA pipes)
  // cost ~1.5 of the pass's ~13.5 cycles per vector when it ran every block,
  // and widening every 4 blocks instead of every 2 took the pass from 0.188
  // to 0.175 ns per element (bench/xent_kernels, 32000 columns, one thread;
  // every 8 blocks was slower again, 0.183).
  // The coefficient sums, added one vector at a time, still flush every
  // block (over two blocks they would take 7 roundings). A block that
  // reaches the reference widens what is pending first (it was taken
  // against the old reference, and Raise rescales the fp64 sums), and has
  // its exactly-1 terms counted apart.
  V pend;
  static constexpr bool kCountOnly = kCoef && !kW && !kP;
  // Soft targets without class weights: Σc = a·Σp + b·n follows from Σp,
  // which is accumulated anyway (for the check that Σp = 1), so Σc is not
  // (one add per vector and a widening per block fewer).
  static constexpr bool kSumFromP = kP && !kW;

  HWY_INLINE StatsPass(D d_, const T* HWY_RESTRICT z_, size_t n_, const CoefSpec& spec)
      : d(d_), z(z_), n(n_), L(hn::Lanes(d_)), w(static_cast<const T*>(spec.w)),
        p(static_cast<const T*>(spec.p)), a(hn::Set(d_, static_cast<T>(spec.a))),
        b(hn::Set(d_, static_cast<T>(spec.b))), all(hn::FirstN(d_, hn::Lanes(d_))),
        eo(kStoreE ? static_cast<T*>(spec.e_out) : nullptr), segs(spec.segments),
        pf(static_cast<const char*>(spec.prefetch)),
        pfp(kP ? static_cast<const char*>(spec.prefetch_p) : nullptr), st(d_), pend(hn::Zero(d_)) {
    if (segs) {
      segs->clear();
      segs->push_back({0, static_cast<double>(std::numeric_limits<T>::lowest())});
    }
    st.coef_a = spec.a;
    st.coef_b = spec.b;
  }

  // The reference the pass starts from.
  HWY_INLINE void Begin(const CoefSpec& spec) {
    if (spec.init_ref > -std::numeric_limits<double>::infinity()) {
      // A later chunk of a row: start at the first chunk's maximum.
      st.template Raise<kCountOnly, kSumFromP>(d, hn::Set(d, static_cast<T>(spec.init_ref)), 0, segs, 0);
    } else if (n <= kFixedRefMax) {
      // Chunks up to kFixedRefMax elements find their maximum first (a cheap
      // pass that leaves them in L1), so that the exp pass runs against a fixed
      // reference: no rescaling at all (a random row's running maximum would
      // rise ~ln n times, each a rescale). The chunk's maximum first (Max skips NaN; NaN / +inf are flagged
      // through xsum below), then one fixed reference for the whole chunk.
      const T mx = MaxFrom(d, z, n, std::numeric_limits<T>::lowest());
      st.template Raise<kCountOnly, kSumFromP>(d, hn::Set(d, mx), 0, segs, 0);
    }
  }

  HWY_INLINE void Widen() {
    st.s.Add(d, pend);
    pend = hn::Zero(d);
  }

  HWY_INLINE void Block4(size_t i) {
    // As many lines as this block's: of the next row (when this row's exp
    // pass reads it from L1, after its maximum pass, and so gives the
    // hardware prefetcher nothing to follow), or of this row a fixed
    // distance ahead (when it streams from memory, where the hardware
    // prefetcher alone fell behind: see Engine::stats_chunk in loss.cc).
    auto fetch_block = [&](const char* base) HWY_ATTR __attribute__((always_inline)) {
      const char* q = base + i * sizeof(T);
      for (size_t o = 0; o < 4 * L * sizeof(T); o += 64) hwy::Prefetch(q + o);
    };
    if (pf) fetch_block(pf);
    if constexpr (kP) {
      if (pfp) fetch_block(pfp);
    }
    const auto x0 = hn::LoadU(d, z + i);
    const auto x1 = hn::LoadU(d, z + i + L);
    const auto x2 = hn::LoadU(d, z + i + 2 * L);
    const auto x3 = hn::LoadU(d, z + i + 3 * L);
    if constexpr (!kExpKeepsNaN<T>) st.xsum = hn::Add(st.xsum, hn::Add(hn::Add(x0, x1), hn::Add(x2, x3)));
    // The exps of zr0..zr3 (= x − ref), summed into pend; take_ones: count
    // the lanes with z = ref apart; may_underflow: std::true_type (the exp
    // zeroes lanes below −86.6) or std::false_type (none is below).
    auto steps = [&](V zr0, V zr1, V zr2, V zr3, bool take_ones, auto may_underflow)
                     HWY_ATTR __attribute__((always_inline)) {
      constexpr bool kU = decltype(may_underflow)::value;
      auto e0 = StatsStep<kCoef, kW, kP, false, kStoreE, kU>(d, st, zr0, At<kStoreE>(eo, i), At<kW>(w, i), At<kP>(p, i), a, b, all);
      auto e1 = StatsStep<kCoef, kW, kP, false, kStoreE, kU>(d, st, zr1, At<kStoreE>(eo, i + L), At<kW>(w, i + L), At<kP>(p, i + L), a, b, all);
      auto e2 = StatsStep<kCoef, kW, kP, false, kStoreE, kU>(d, st, zr2, At<kStoreE>(eo, i + 2 * L), At<kW>(w, i + 2 * L), At<kP>(p, i + 2 * L), a, b, all);
      auto e3 = StatsStep<kCoef, kW, kP, false, kStoreE, kU>(d, st, zr3, At<kStoreE>(eo, i + 3 * L), At<kW>(w, i + 3 * L), At<kP>(p, i + 3 * L), a, b, all);
      if (HWY_UNLIKELY(take_ones)) {
        // (The logits loaded again, from L1: kept in registers across the
        // exps, they were spilled on every block, also by the AVX2 common
        // copy that never counts ones.)
        e0 = st.TakeOnes(d, hn::LoadU(d, z + i), e0);
        e1 = st.TakeOnes(d, hn::LoadU(d, z + i + L), e1);
        e2 = st.TakeOnes(d, hn::LoadU(d, z + i + 2 * L), e2);
        e3 = st.TakeOnes(d, hn::LoadU(d, z + i + 3 * L), e3);
      }
      pend = hn::Add(pend, hn::Add(hn::Add(e0, e1), hn::Add(e2, e3)));
    };
    // Any block: raise the reference if the block reaches it, then the
    // exps with their underflow test, counting the exactly-1 terms if it
    // reached it.
    auto any_block = [&]() HWY_ATTR __attribute__((always_inline)) {
      const auto bmax = hn::Max(hn::Max(x0, x1), hn::Max(x2, x3));
      const bool hit = !hn::AllFalse(d, hn::Ge(bmax, st.ref_v));
      if (hit) {
        Widen();
        st.template Raise<kCountOnly, kSumFromP>(d, bmax, i, segs, i / L);
      }
      steps(hn::Sub(x0, st.ref_v), hn::Sub(x1, st.ref_v), hn::Sub(x2, st.ref_v), hn::Sub(x3, st.ref_v), hit,
            std::true_type{});
    };
    // AVX2 runs the common block in a copy of its own: one that lies wholly
    // in −86.6 ≤ z − ref < 0. That copy need not keep x0..x3 for TakeOnes
    // after the exps, so AVX2's 16 registers spill less, and its exps skip
    // their underflow test (a compare and a mask per vector): no lane is
    // below −86.6 there, so the bits are the same. The test reads the four
    // z − ref (the exps' arguments) as int32: negative floats are then
    // negative integers ordered by magnitude, so exactly the lanes in
    // [−86.6, 0) are ≤ the bits of −86.6, and +0 (z = ref; Raise keeps a
    // zero reference as −0, so z − ref is never −0), positives, −inf masks,
    // values below −86.6 and NaN of either sign are all above them: three
    // integer maxima and a compare per block, where the block's float
    // maximum and minimum took nine operations. Measured on Zen 3, one
    // thread, in cache:
    // - the two copies alone (eight alternated runs): 4096 columns 0.354 →
    //   0.329 ns per element from a given reference, 0.400 → 0.365
    //   maximum first, soft 0.620 → 0.584; 32000 columns soft 0.603 →
    //   0.563, hard even; label smoothing alone slower (0.453 → 0.473);
    // - then the exps without their test, the block's float minimum
    //   deciding (the two forms alternated 30–40 times in one process,
    //   median ratio): maximum first −10% / −15% / −6% at 1000 / 4096 /
    //   32000 columns, from a given reference −8% / −11% / −8%, soft −4% /
    //   −3% / −6%, label smoothing (then in two copies too) −1% / −2%;
    // - then this integer test against that float minimum (the same way):
    //   maximum first −12% / −7% / −3%, smoothing −7% / −6% / 0, soft −6% /
    //   −6% / 0.
    // AVX-512 keeps one copy (32 registers; its exp underflows through
    // vscalefps, with no test), as the other targets do; so does float64.
    if constexpr (HWY_TARGET == HWY_AVX2 && sizeof(T) == 4) {
      const auto zr0 = hn::Sub(x0, st.ref_v);
      const auto zr1 = hn::Sub(x1, st.ref_v);
      const auto zr2 = hn::Sub(x2, st.ref_v);
      const auto zr3 = hn::Sub(x3, st.ref_v);
      const hn::RebindToSigned<D> di;
      const auto top = hn::Max(hn::Max(hn::BitCast(di, zr0), hn::BitCast(di, zr1)),
                               hn::Max(hn::BitCast(di, zr2), hn::BitCast(di, zr3)));
      if (HWY_LIKELY(hn::AllFalse(di, hn::Gt(top, hn::Set(di, std::bit_cast<int32_t>(-86.6f)))))) {
        steps(zr0, zr1, zr2, zr3, false, std::false_type{});
      } else {
        any_block();
      }
    } else {
      any_block();
    }
    st.template Flush<kCoef, kW, kP>(d);
  }

  // A whole vector left over (fewer than a block), one at a time.
  HWY_INLINE void Vec1(size_t i) {
    const auto x = hn::LoadU(d, z + i);
    if constexpr (!kExpKeepsNaN<T>) st.xsum = hn::Add(st.xsum, x);
    const bool hit = !hn::AllFalse(d, hn::Ge(x, st.ref_v));
    if (hit) st.template Raise<kCountOnly, kSumFromP>(d, x, i, segs, i / L);
    auto e = StatsStep<kCoef, kW, kP, false, kStoreE>(d, st, hn::Sub(x, st.ref_v), At<kStoreE>(eo, i), At<kW>(w, i), At<kP>(p, i), a, b, all);
    if (HWY_UNLIKELY(hit)) e = st.TakeOnes(d, x, e);
    st.s.Add(d, e);
    st.template Flush<kCoef, kW, kP>(d);
  }

  // The last partial vector, z[i, n), through stack buffers.
  HWY_INLINE void Partial(size_t i) {
    const size_t k = n - i < L ? n - i : L;
    const auto valid = hn::FirstN(d, k);
    HWY_ALIGN T zb[HWY_MAX_BYTES / sizeof(T)];
    HWY_ALIGN T wb[HWY_MAX_BYTES / sizeof(T)];
    HWY_ALIGN T pb[HWY_MAX_BYTES / sizeof(T)];
#if HWY_TARGET <= HWY_AVX3
    // Masked loads (fault-free past the end), as in the gradient pass.
    (void)zb;
    if (w) hn::Store(hn::MaskedLoad(valid, d, w + i), d, wb);
    if (p) hn::Store(hn::MaskedLoad(valid, d, p + i), d, pb);
    const auto x = hn::IfThenElse(valid, hn::MaskedLoad(valid, d, z + i),
                                  hn::Set(d, -std::numeric_limits<T>::infinity()));
#else
    for (size_t j = 0; j < L; ++j) {
      zb[j] = j < k ? z[i + j] : -std::numeric_limits<T>::infinity();
      wb[j] = (w && j < k) ? w[i + j] : T(0);
      pb[j] = (p && j < k) ? p[i + j] : T(0);
    }
    const auto x = hn::Load(d, zb);
#endif
    if constexpr (!kExpKeepsNaN<T>) st.xsum = hn::Add(st.xsum, hn::IfThenElseZero(valid, x));
    if (!hn::AllFalse(d, hn::Gt(x, st.ref_v))) st.template Raise<kCountOnly, kSumFromP>(d, x, i, segs, i / L);
    HWY_ALIGN T eb[HWY_MAX_BYTES / sizeof(T)];
    const auto e = StatsStep<kCoef, kW, kP, true, kStoreE>(d, st, hn::Sub(x, st.ref_v), eb, wb, pb, a, b, valid);
    st.s.Add(d, st.TakeOnes(d, x, e));
    st.template Flush<kCoef, kW, kP>(d);
    if constexpr (kStoreE) {
#if HWY_TARGET <= HWY_AVX3
      hn::BlendedStore(e, valid, d, eo + i);
#else
      for (size_t j = 0; j < k; ++j) eo[i + j] = eb[j];
#endif
    }
  }

  HWY_INLINE void Finish(ChunkStats* out) {
    // Flag NaN and +inf (a finite Σz that overflowed only costs a rescan).
    // With kExpKeepsNaN: a NaN logit made Σexp NaN, and a +inf one raised the
    // reference to +inf (its own term is counted as a 1, every other one is
    // exp(-inf) or NaN), so those two say it.
    const bool nonfinite =
        kExpKeepsNaN<T> ? st.ref == std::numeric_limits<T>::infinity()
                        : !hn::AllFalse(d, hn::Or(hn::IsNaN(st.xsum),
                                                  hn::Eq(st.xsum, hn::Set(d, std::numeric_limits<T>::infinity()))));
    // The exactly-1 terms join last, in fp64 (an integer count ≤ n: exact in
    // any order).
    const double ones = static_cast<double>(hn::GetLane(hn::SumOfLanes(d, st.ones)));
    out->rest = st.s.Total();
    out->ones = ones;
    out->sum_exp = out->rest + ones;
    out->max = out->sum_exp > 0 ? static_cast<double>(st.ref)
                                : -std::numeric_limits<double>::infinity();
    out->nonfinite = nonfinite || std::isnan(out->sum_exp);
    if constexpr (kCoef) {
      if constexpr (kW)
        out->coef_sum = st.csum.Total();
      else if constexpr (kP)
        out->coef_sum = st.coef_a * st.psum.Total() + st.coef_b * static_cast<double>(n);
      else
        out->coef_sum = static_cast<double>(n);
      // cdot is relative to ref; if the chunk is all -inf, ref stayed at
      // lowest() and the terms with c > 0 are already +inf.
      out->coef_dot = st.cdot.Total();
    }
    if constexpr (kP) {
      out->p_sum = st.psum.Total();
      out->p_bad = !hn::AllFalse(d, hn::Or(hn::Lt(st.pmin, hn::Zero(d)), hn::Gt(st.pmax, hn::Set(d, T(1))))) ||
                   std::isnan(out->p_sum);
    }
  }
};

// Runs the passes r... (one or two, all over n elements) block by block.
template <class... P>
HWY_INLINE void RunStatsPasses(size_t n, size_t L, P&... r) {
  size_t i = 0;
  for (; i + 16 * L <= n; i += 16 * L) {
    (r.Block4(i), ...);
    (r.Block4(i + 4 * L), ...);
    (r.Block4(i + 8 * L), ...);
    (r.Block4(i + 12 * L), ...);
    (r.Widen(), ...);
  }
  if (i + 8 * L <= n) {
    (r.Block4(i), ...);
    (r.Block4(i + 4 * L), ...);
    (r.Widen(), ...);
    i += 8 * L;
  }
  if (i + 4 * L <= n) {
    (r.Block4(i), ...);
    (r.Widen(), ...);
    i += 4 * L;
  }
  for (; i + L <= n; i += L) (r.Vec1(i), ...);
  for (; i < n; i += L) (r.Partial(i), ...);
}

template <bool kCoef, bool kW, bool kP, bool kStoreE, class D>
void StatsImpl(D d, const hn::TFromD<D>* HWY_RESTRICT z, size_t n,
               const CoefSpec& spec, ChunkStats* out) {
  StatsPass<kCoef, kW, kP, kStoreE, D> r(d, z, n, spec);
  r.Begin(spec);
  RunStatsPasses(n, hn::Lanes(d), r);
  r.Finish(out);
}

// Two rows' passes side by side (rows of the same length n, each with its
// own spec): the same bits as two StatsImpl calls. A row of ~1000 columns
// costs a fixed ~55–75 ns besides its elements (its maximum's and sums'
// horizontal reductions, the tail vectors, the call, the dependent chain
// from the maximum pass to the first exp): two rows interleaved overlap
// those of one with the other's arithmetic (see run_batch in loss.cc).
template <bool kCoef, bool kW, bool kP, bool kStoreE, class D>
void StatsImpl2(D d, const hn::TFromD<D>* HWY_RESTRICT z0, const hn::TFromD<D>* HWY_RESTRICT z1, size_t n,
                const CoefSpec& spec0, const CoefSpec& spec1, ChunkStats* out0, ChunkStats* out1) {
  StatsPass<kCoef, kW, kP, kStoreE, D> r0(d, z0, n, spec0), r1(d, z1, n, spec1);
  r0.Begin(spec0);
  r1.Begin(spec1);
  RunStatsPasses(n, hn::Lanes(d), r0, r1);
  r0.Finish(out0);
  r1.Finish(out1);
}

template <bool kStoreE, class T>
void ChunkStatsCoefT(const T* z, size_t n, const CoefSpec& spec, ChunkStats* out) {
  const hn::ScalableTag<T> d;
  if (!spec.want_coef) return StatsImpl<false, false, false, kStoreE>(d, z, n, spec, out);
  if (spec.w && spec.p) return StatsImpl<true, true, true, kStoreE>(d, z, n, spec, out);
  if (spec.w) return StatsImpl<true, true, false, kStoreE>(d, z, n, spec, out);
  if (spec.p) return StatsImpl<true, false, true, kStoreE>(d, z, n, spec, out);
  return StatsImpl<true, false, false, kStoreE>(d, z, n, spec, out);
}

template <class T>
void ChunkStatsT(const T* z, size_t n, const CoefSpec& spec, ChunkStats* out) {
  *out = ChunkStats{};
  if (spec.e_out) return ChunkStatsCoefT<true>(z, n, spec, out);
  return ChunkStatsCoefT<false>(z, n, spec, out);
}

// Two rows (see StatsImpl2), whose specs ask for the same things (the same
// coefficients, weights or not, soft targets or not, exps or not).
template <bool kStoreE, class T>
void ChunkStats2CoefT(const T* z0, const T* z1, size_t n, const CoefSpec& s0, const CoefSpec& s1,
                      ChunkStats* o0, ChunkStats* o1) {
  const hn::ScalableTag<T> d;
  if (!s0.want_coef) return StatsImpl2<false, false, false, kStoreE>(d, z0, z1, n, s0, s1, o0, o1);
  if (s0.w && s0.p) return StatsImpl2<true, true, true, kStoreE>(d, z0, z1, n, s0, s1, o0, o1);
  if (s0.w) return StatsImpl2<true, true, false, kStoreE>(d, z0, z1, n, s0, s1, o0, o1);
  if (s0.p) return StatsImpl2<true, false, true, kStoreE>(d, z0, z1, n, s0, s1, o0, o1);
  return StatsImpl2<true, false, false, kStoreE>(d, z0, z1, n, s0, s1, o0, o1);
}

// (Only AVX-512 pairs rows (PairingRowsPays in kernels.cc); elsewhere, where
// only the tests ask for pairs, the rows run one after the other, which keeps
// the paired pass's copies out of the other targets' code and compile time.)
template <class T>
void ChunkStats2T(const T* z0, const T* z1, size_t n, const CoefSpec& s0, const CoefSpec& s1, ChunkStats* o0,
                  ChunkStats* o1) {
#if HWY_TARGET <= HWY_AVX3
  *o0 = ChunkStats{};
  *o1 = ChunkStats{};
  if (s0.e_out) return ChunkStats2CoefT<true>(z0, z1, n, s0, s1, o0, o1);
  return ChunkStats2CoefT<false>(z0, z1, n, s0, s1, o0, o1);
#else
  ChunkStatsT<T>(z0, n, s0, o0);
  ChunkStatsT<T>(z1, n, s1, o1);
#endif
}

// The maximum of z[0, n) in fp64, -inf if every element is -inf: the value
// ChunkStats::max takes for a chunk with no NaN or +inf (equal as a value: a
// maximum of 0 may come out with the other sign of zero, which no result
// can tell apart, since exp(z − (+0)) = exp(z − (−0))).
template <class T>
double ChunkMaxT(const T* z, size_t n) {
  const hn::ScalableTag<T> d;
  return static_cast<double>(MaxFrom(d, z, n, -std::numeric_limits<T>::infinity()));
}

// ----------------------------------------------------------- gradient pass

template <bool kFromE, bool kSub, bool kW, bool kP, class D>
HWY_INLINE hn::Vec<D> GradVec(D d, hn::Vec<D> x, const hn::TFromD<D>* HWY_RESTRICT w,
                              const hn::TFromD<D>* HWY_RESTRICT p,
                              hn::Vec<D> mx, hn::Vec<D> alpha, hn::Vec<D> bp,
                              hn::Vec<D> b) {
  hn::Vec<D> e;
  if constexpr (kFromE) {
    (void)mx;
    e = x;
  } else {
    e = ExpNonPositive(d, hn::Sub(x, mx));
  }
  auto g = hn::Mul(alpha, e);
  if constexpr (kSub) {
    auto c = b;
    if constexpr (kP) c = hn::MulAdd(bp, hn::LoadU(d, p), b);
    if constexpr (kW) c = hn::Mul(c, hn::LoadU(d, w));
    g = hn::Sub(g, c);
  }
  return g;
}

template <bool kFromE, bool kSub, bool kW, bool kP, class D>
void GradImpl(D d, const hn::TFromD<D>* z, size_t n, hn::TFromD<D>* g,
                const GradSpec& spec) {
  using T = hn::TFromD<D>;
  const size_t L = hn::Lanes(d);
  const T* HWY_RESTRICT w = static_cast<const T*>(spec.w);
  const T* HWY_RESTRICT p = static_cast<const T*>(spec.p);
  const auto mx = hn::Set(d, static_cast<T>(spec.max));
  const auto alpha = hn::Set(d, static_cast<T>(spec.alpha));
  const auto bp = hn::Set(d, static_cast<T>(spec.beta_p));
  const auto b = hn::Set(d, static_cast<T>(spec.beta));
  // The target's entry, in the one vector that holds it (fix_index is -1
  // when there is none). Called for that vector only (all_vectors below) and
  // for the partial vectors.
  const size_t fix = spec.fix_index;
  const T fix_value = static_cast<T>(spec.fix_value);
  auto fixed = [&](size_t i, hn::Vec<D> g) {
    if (HWY_UNLIKELY(fix - i < L))
      g = hn::IfThenElse(hn::Eq(hn::Iota(d, T(0)), hn::Set(d, static_cast<T>(fix - i))), hn::Set(d, fix_value), g);
    return g;
  };
  // A partial vector through aligned stack buffers (prologue and tail).
  auto partial = [&](size_t i, size_t k) {
    HWY_ALIGN T zb[HWY_MAX_BYTES / sizeof(T)];
    HWY_ALIGN T wb[HWY_MAX_BYTES / sizeof(T)];
    HWY_ALIGN T pb[HWY_MAX_BYTES / sizeof(T)];
    HWY_ALIGN T gb[HWY_MAX_BYTES / sizeof(T)];
#if HWY_TARGET <= HWY_AVX3
    // Masked loads / stores (fault-free past the end): rows that are not a
    // multiple of the vector length pay two of these per row, so they matter.
    // Masked-off lanes are computed on zeros and never stored.
    {
      const auto m = hn::FirstN(d, k);
      if (w) hn::Store(hn::MaskedLoad(m, d, w + i), d, wb);
      if (p) hn::Store(hn::MaskedLoad(m, d, p + i), d, pb);
      hn::BlendedStore(fixed(i, GradVec<kFromE, kSub, kW, kP>(d, hn::MaskedLoad(m, d, z + i), wb, pb, mx,
                                                              alpha, bp, b)),
                       m, d, g + i);
      return;
    }
#endif
    for (size_t j = 0; j < L; ++j) {
      zb[j] = j < k ? z[i + j] : (kFromE ? T(0) : -std::numeric_limits<T>::infinity());
      wb[j] = (w && j < k) ? w[i + j] : T(0);
      pb[j] = (p && j < k) ? p[i + j] : T(0);
    }
    hn::Store(fixed(i, GradVec<kFromE, kSub, kW, kP>(d, hn::Load(d, zb), wb, pb, mx, alpha, bp, b)), d, gb);
    for (size_t j = 0; j < k; ++j) g[i + j] = gb[j];
  };
  // Whole vectors of [i, lim): pairs, then one at a time; streaming or
  // plain stores; kCheck: the vector that holds fix_index writes it (only
  // the one vector that does runs with the check: testing every vector was
  // ~4 of the pass's ~11 instructions per vector).
  auto vectors = [&](size_t& i, size_t lim, auto stream, auto check) HWY_ATTR __attribute__((always_inline)) {
    constexpr bool kStream = decltype(stream)::value, kCheck = decltype(check)::value;
    auto put = [&](size_t j, hn::Vec<D> v) HWY_ATTR __attribute__((always_inline)) {
      if constexpr (kCheck) v = fixed(j, v);
      if constexpr (kStream)
        hn::Stream(v, d, g + j);
      else
        hn::StoreU(v, d, g + j);
    };
    for (; i + 2 * L <= lim; i += 2 * L) {
      const auto x0 = hn::LoadU(d, z + i);
      const auto x1 = hn::LoadU(d, z + i + L);
      const auto g0 = GradVec<kFromE, kSub, kW, kP>(d, x0, At<kW>(w, i), At<kP>(p, i), mx, alpha, bp, b);
      const auto g1 = GradVec<kFromE, kSub, kW, kP>(d, x1, At<kW>(w, i + L), At<kP>(p, i + L), mx, alpha, bp, b);
      put(i, g0);
      put(i + L, g1);
    }
    for (; i + L <= lim; i += L)
      put(i, GradVec<kFromE, kSub, kW, kP>(d, hn::LoadU(d, z + i), At<kW>(w, i), At<kP>(p, i), mx, alpha, bp, b));
  };
  // All whole vectors from i on: those before the one that holds
  // fix_index, that one with the check, those after it.
  auto all_vectors = [&](size_t& i, auto stream) HWY_ATTR __attribute__((always_inline)) {
    const size_t whole = i + (n - i) / L * L;  // end of the whole vectors
    if (fix >= i && fix < whole) {
      const size_t at = i + (fix - i) / L * L;  // the vector that holds it
      vectors(i, at, stream, std::false_type{});
      vectors(i, at + L, stream, std::true_type{});
    }
    vectors(i, whole, stream, std::false_type{});
  };
  size_t i = 0;
  if (spec.stream) {
    // Streaming stores need aligned addresses: peel up to one vector.
    const size_t bytes = L * sizeof(T);
    const size_t mis = reinterpret_cast<uintptr_t>(g) % bytes;
    if (mis % sizeof(T) == 0 && mis != 0) {
      const size_t k = (bytes - mis) / sizeof(T);
      if (k < n) {
        partial(0, k);
        i = k;
      }
    }
    if (reinterpret_cast<uintptr_t>(g + i) % bytes == 0) all_vectors(i, std::true_type{});
  }
  all_vectors(i, std::false_type{});
  if (i < n) partial(i, n - i);
}

template <class T>
void ChunkGradT(const T* z, size_t n, T* g, const GradSpec& spec) {
  const hn::ScalableTag<T> d;
  const bool w = spec.w != nullptr, p = spec.p != nullptr;
#define XENT_GRAD_CASE(S, W, P)                                            \
  if (spec.subtract == S && w == W && p == P)                              \
    return spec.from_exp ? GradImpl<true, S, W, P>(d, z, n, g, spec)      \
                         : GradImpl<false, S, W, P>(d, z, n, g, spec);
  XENT_GRAD_CASE(false, false, false)
  XENT_GRAD_CASE(true, false, false)
  XENT_GRAD_CASE(true, true, false)
  XENT_GRAD_CASE(true, false, true)
  XENT_GRAD_CASE(true, true, true)
#undef XENT_GRAD_CASE
  // subtract == false ignores w and p.
  GradSpec plain = spec;
  plain.w = plain.p = nullptr;
  ChunkGradT(z, n, g, plain);
}

template <class T>
void ExpRowT(const T* x, T* y, size_t n) {
  const hn::ScalableTag<T> d;
  const size_t L = hn::Lanes(d);
  size_t i = 0;
  for (; i + L <= n; i += L) hn::StoreU(ExpNonPositive(d, hn::LoadU(d, x + i)), d, y + i);
  for (; i < n; ++i) {
    HWY_ALIGN T b[HWY_MAX_BYTES / sizeof(T)] = {};
    b[0] = x[i];
    y[i] = hn::GetLane(ExpNonPositive(d, hn::Load(d, b)));
  }
}

}  // namespace xent::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard
