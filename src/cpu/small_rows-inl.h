// Per-target SIMD code for short rows (V ≤ kSmallV): one row per lane, a
// tile of Lanes(d) consecutive rows at a time, so that the per-row overhead
// of the row-wise kernels (calls, horizontal sums, logs) is shared by a whole
// vector of rows. Same formulas as cross_entropy-inl.h + loss.cc's finalize
// (index targets, weights, both smoothings, z-loss), computed per lane.
#if defined(XENT_CPU_SMALL_ROWS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_CPU_SMALL_ROWS_INL_H_
#undef XENT_CPU_SMALL_ROWS_INL_H_
#else
#define XENT_CPU_SMALL_ROWS_INL_H_
#endif

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

#include "cpu/kernels.h"
#include "hwy/cache_control.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace xent::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET != HWY_SCALAR

// dst[0, n) = src[0, n), streaming where dst is vector-aligned.
HWY_INLINE void CopyOut(const float* HWY_RESTRICT src, float* HWY_RESTRICT dst, size_t n, bool stream) {
  const hn::ScalableTag<float> d;
  const size_t L = hn::Lanes(d);
  size_t i = 0;
  if (stream) {
    while (i < n && reinterpret_cast<uintptr_t>(dst + i) % (L * sizeof(float)) != 0) {
      dst[i] = src[i];
      ++i;
    }
    for (; i + L <= n; i += L) hn::Stream(hn::LoadU(d, src + i), d, dst + i);
  }
  for (; i < n; ++i) dst[i] = src[i];
}

#if HWY_TARGET <= HWY_AVX3
// (GCC 12 warns that the shuffle intrinsics' _mm512_undefined_ps operands
// are used uninitialized, depending on how this gets inlined; they are not
// read.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// In-register transpose of a 16×16 float block: r[i] holds row i on entry
// and column i on exit (its own inverse). Four rounds of 16 shuffles: pairs
// of rows interleaved by float, then by float pair (each 128-bit lane now
// holds one column of 4 rows), then the 128-bit lanes regrouped twice.
HWY_INLINE void Transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
    const __m512d c = _mm512_castps_pd(t[i + 2]), e = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, e));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, e));
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
    r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
  }
}
#pragma GCC diagnostic pop

// log(1 + x) in fp64 for a tile's x = s − 1 (s = Σexp ≥ 1 in a checked row;
// s = 0, x = −1, for an all −inf row gives −inf; +inf and NaN pass through),
// 8 lanes, without a division. Highway's Log1p divides twice (its log's
// f/(2 + f) and the x / (y − 1) correction): ~35 operations and two vdivpd
// per 8 rows, 10 of the V = 10 fwd+bwd tile's ~115 ns (Zen 5, one thread in
// cache). Here: y = 1 + x = 2^k · m, m in [1, 2) (vgetexppd, vgetmantpd);
// the top 4 bits of m pick c = 1 + (i + ½)/16 from a 16-entry table (two
// vpermt2pd), so that r = m/c − 1, one FMA with the stored 1/c, has |r| ≤
// 0.0304; log y = k ln 2 − log(1/c) + log1p(r), the last a Taylor
// polynomial of degree 9 (truncation ≤ 0.0304^10/10 < 1e-16). −log(1/c) is
// tabulated for the stored 1/c itself (so the identity is exact; the values
// checked against mpmath at 200 bits). Where |x| < 1/64, r = x directly with
// no table term: 1 + x would round away x's low bits, and log1p(x) keeps its
// relative accuracy in confident rows (x tiny). Against Highway's Log1p
// (Zen 5, one thread, 16384×10 in cache, processes alternated): fwd+bwd
// −9%, soft targets −5%, forward −2.5%.
alignas(64) inline constexpr double kLogTabInvC[16] = {
    0x1.f07c1f07c1f08p-1, 0x1.d41d41d41d41dp-1, 0x1.bacf914c1badp-1,  0x1.a41a41a41a41ap-1,
    0x1.8f9c18f9c18fap-1, 0x1.7d05f417d05f4p-1, 0x1.6c16c16c16c17p-1, 0x1.5c9882b931057p-1,
    0x1.4e5e0a72f0539p-1, 0x1.4141414141414p-1, 0x1.3521cfb2b78c1p-1, 0x1.29e4129e4129ep-1,
    0x1.1f7047dc11f7p-1,  0x1.15b1e5f75270dp-1, 0x1.0c9714fbcda3bp-1, 0x1.041041041041p-1};
alignas(64) inline constexpr double kLogTabLogC[16] = {  // −log(kLogTabInvC[i]), correctly rounded
    0x1.f829b0e7832f8p-6, 0x1.6f0d28ae56b4ep-4, 0x1.29552f81ff521p-3, 0x1.9525a9cf456b6p-3,
    0x1.fb9186d5e3e29p-3, 0x1.2e8e2bae11d31p-2, 0x1.5d1bdbf5809cap-2, 0x1.89a3386c1425bp-2,
    0x1.b44f77bcc8f64p-2, 0x1.dd46a04c1c4a1p-2, 0x1.02552a5a5d0ffp-1, 0x1.154c3d2f4d5eap-1,
    0x1.2795e1289b11bp-1, 0x1.393e0d3562a1ap-1, 0x1.4a4f85db03ebbp-1, 0x1.5ad404c359f2dp-1};

#pragma GCC diagnostic push  // (the intrinsics' _mm512_undefined operands, as above)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
HWY_INLINE __m512d Log1pNoDiv(__m512d x) {
  const __m512d one = _mm512_set1_pd(1.0);
  const __m512d y = _mm512_add_pd(x, one);
  const __m512d k = _mm512_getexp_pd(y);
  const __m512d m = _mm512_getmant_pd(y, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
  // vpermt2pd reads bits 3:0 of each index: the mantissa's top 4 bits.
  const __m512i i = _mm512_srli_epi64(_mm512_castpd_si512(m), 48);
  const __m512d inv_c = _mm512_permutex2var_pd(_mm512_load_pd(kLogTabInvC), i, _mm512_load_pd(kLogTabInvC + 8));
  const __m512d log_c = _mm512_permutex2var_pd(_mm512_load_pd(kLogTabLogC), i, _mm512_load_pd(kLogTabLogC + 8));
  const __mmask8 tiny = _mm512_cmp_pd_mask(_mm512_abs_pd(x), _mm512_set1_pd(1.0 / 64), _CMP_LT_OQ);
  const __m512d r = _mm512_mask_mov_pd(_mm512_fmsub_pd(m, inv_c, one), tiny, x);
  const __m512d base = _mm512_maskz_mov_pd(static_cast<__mmask8>(~tiny),
                                           _mm512_fmadd_pd(k, _mm512_set1_pd(0x1.62e42fefa39efp-1), log_c));
  // log1p(r) = r + r²·P(r), P(r) = −1/2 + r/3 − r²/4 + … + r^7/9 (Horner in two
  // parts, lo + r³·hi, for a shorter chain).
  const __m512d r2 = _mm512_mul_pd(r, r);
  __m512d lo = _mm512_fmadd_pd(_mm512_set1_pd(-1.0 / 4), r, _mm512_set1_pd(1.0 / 3));
  lo = _mm512_fmadd_pd(lo, r, _mm512_set1_pd(-1.0 / 2));  // −1/2 + r/3 − r²/4
  __m512d hi = _mm512_fmadd_pd(_mm512_set1_pd(1.0 / 9), r, _mm512_set1_pd(-1.0 / 8));
  hi = _mm512_fmadd_pd(hi, r, _mm512_set1_pd(1.0 / 7));
  hi = _mm512_fmadd_pd(hi, r, _mm512_set1_pd(-1.0 / 6));
  hi = _mm512_fmadd_pd(hi, r, _mm512_set1_pd(1.0 / 5));  // 1/5 − r/6 + r²/7 − r³/8 + r^4/9
  const __m512d r3 = _mm512_mul_pd(r2, r);
  const __m512d poly = _mm512_fmadd_pd(hi, r3, lo);
  __m512d out = _mm512_add_pd(base, _mm512_fmadd_pd(r2, poly, r));
  out = _mm512_mask_mov_pd(out, _mm512_cmp_pd_mask(y, _mm512_setzero_pd(), _CMP_EQ_OQ),
                           _mm512_set1_pd(-std::numeric_limits<double>::infinity()));
  out = _mm512_mask_mov_pd(out, _mm512_cmp_pd_mask(y, _mm512_set1_pd(std::numeric_limits<double>::infinity()), _CMP_EQ_OQ), y);
  return out;
}
#pragma GCC diagnostic pop
#endif

#if HWY_TARGET == HWY_AVX2
// In-register transpose of an 8×8 float block (AVX2): r[i] holds row i on
// entry and column i on exit. Pairs of rows interleaved by float, then by
// float pair, then the 128-bit halves exchanged.
HWY_INLINE void Transpose8x8(__m256 r[8]) {
  __m256 t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  __m256 u[8];
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

// Lanes [0, n) of an AVX2 mask (n ≤ 8).
HWY_INLINE __m256i FirstLanes8(size_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

// cols[j·L + l] = src[l·stride + j] for the tile's L rows and V ≤ kSmallV
// columns. AVX-512: row loads (masked to the V columns: any stride, nothing
// read past a row's end) and 16×16 register transposes; on Zen 4 the V
// gathers they replace took a third of the tile's time (perf). Other
// targets gather.
template <class D>
HWY_INLINE void LoadColumns(D d, const float* HWY_RESTRICT src, size_t stride, size_t V,
                            float* HWY_RESTRICT cols) {
  const size_t L = hn::Lanes(d);
#if HWY_TARGET <= HWY_AVX3
  static_assert(HWY_MAX_BYTES == 64, "AVX-512: 16 float lanes");
  (void)L;
  for (size_t c0 = 0; c0 < V; c0 += 16) {
    const size_t nv = V - c0 < 16 ? V - c0 : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << nv) - 1u);
    __m512 r[16];
    for (size_t l = 0; l < 16; ++l) r[l] = _mm512_maskz_loadu_ps(m, src + l * stride + c0);
    Transpose16x16(r);
    // All 16 columns (those past V are zeros: the loads are masked), so
    // that the stores are 16 plain ones: with j < nv GCC copied them out
    // through a stack array and `rep movsq`.
    for (size_t j = 0; j < 16; ++j) _mm512_store_ps(cols + (c0 + j) * 16, r[j]);
  }
#elif HWY_TARGET == HWY_AVX2
  // The same with 8×8 transposes; the last partial block's row loads are
  // masked (vmaskmovps: fault-free past a row's end). On Zen 3 the gathers
  // they replace were a fifth of the V = 10 tile's time (perf).
  static_assert(HWY_MAX_BYTES >= 32, "AVX2: 8 float lanes");
  (void)L;
  for (size_t c0 = 0; c0 < V; c0 += 8) {
    const size_t nv = V - c0 < 8 ? V - c0 : 8;
    __m256 r[8];
    if (nv == 8) {
      for (size_t l = 0; l < 8; ++l) r[l] = _mm256_loadu_ps(src + l * stride + c0);
    } else {
      const __m256i m = FirstLanes8(nv);
      for (size_t l = 0; l < 8; ++l) r[l] = _mm256_maskload_ps(src + l * stride + c0, m);
    }
    Transpose8x8(r);
    // All 8 columns (cols has room for them: kSmallV·16 floats).
    for (size_t j = 0; j < 8; ++j) _mm256_store_ps(cols + (c0 + j) * 8, r[j]);
  }
#else
  const hn::RebindToSigned<D> di;
  const auto idx = hn::Mul(hn::Iota(di, 0), hn::Set(di, static_cast<int32_t>(stride)));
  for (size_t j = 0; j < V; ++j) hn::Store(hn::GatherIndex(d, src + j, idx), d, cols + j * L);
#endif
}

#if HWY_TARGET <= HWY_AVX3
// AVX-512, V ≤ 16: a tile's gradient (16 rows of V floats) leaves as V
// whole vectors, its 16·V contiguous floats, instead of 16 masked row
// stores into the tile buffer and a copy of that buffer out: the V columns
// are transposed to rows (r[l] = row l in lanes [0, V)), and lane i of
// output k, flat element f = 16k + i, is row f / V, column f % V. Output k
// spans rows l0 = 16k / V to l1 = (16k + 15) / V: one two-source permute
// takes rows l0 and l0 + 1, each later one adds a row (V = 10: 14 permutes
// in all). V is a template parameter (a dispatch on it below), so that
// the permute plan is a compile-time constant, the rows stay in registers,
// and the columns past V are known zeros.
template <size_t V>
struct PackPlan {
  alignas(64) int32_t idx[32][16] = {};  // each step's permute indices
  uint8_t first[V + 1] = {};             // the steps of output k: [first[k], first[k + 1])
  uint8_t row[32] = {};                  // the row a step brings in (the first step: that row and the next)
};

template <size_t V>
constexpr PackPlan<V> MakePackPlan() {
  PackPlan<V> p;
  size_t st = 0;
  for (size_t k = 0; k < V; ++k) {
    p.first[k] = static_cast<uint8_t>(st);
    const size_t l0 = 16 * k / V, l1 = (16 * k + 15) / V;
    const size_t last = l1 > l0 ? l1 : l0 + 1;  // V = 16: one row (the second source unused)
    for (size_t l = l0 + 1; l <= last; ++l, ++st) {
      p.row[st] = static_cast<uint8_t>(l == l0 + 1 ? l0 : l);
      for (size_t i = 0; i < 16; ++i) {
        const size_t f = 16 * k + i, fl = f / V, fj = f % V;
        if (l == l0 + 1)  // rows l0 (source 1) and l0 + 1 (source 2)
          p.idx[st][i] = fl == l0 ? static_cast<int32_t>(fj) : fl == l0 + 1 ? static_cast<int32_t>(16 + fj) : 0;
        else  // keep lane i, or take row l (source 2)
          p.idx[st][i] = fl == l ? static_cast<int32_t>(16 + fj) : static_cast<int32_t>(i);
      }
    }
  }
  p.first[V] = static_cast<uint8_t>(st);
  return p;
}

template <size_t V>
inline constexpr PackPlan<V> kPackPlan = MakePackPlan<V>();

template <size_t V, size_t K>
HWY_INLINE __m512 PackedVector(const __m512 (&r)[16]) {
  constexpr const PackPlan<V>& p = kPackPlan<V>;
  constexpr size_t s0 = p.first[K], s1 = p.first[K + 1], row0 = p.row[s0];
  __m512 acc = _mm512_permutex2var_ps(r[row0], _mm512_loadu_si512(p.idx[s0]), r[row0 + 1 < 16 ? row0 + 1 : row0]);
  for (size_t st = s0 + 1; st < s1; ++st) acc = _mm512_permutex2var_ps(acc, _mm512_loadu_si512(p.idx[st]), r[p.row[st]]);
  return acc;
}

// Columns col(0), ..., col(V − 1) (16 lanes each) → dst, 16·V floats:
// streamed (dst 64-byte aligned) or plain stores. col computes a gradient
// column (the tile passes its column formula, so the columns go from the
// formula to the transpose in registers: storing them and loading them back
// cost 12% of the V = 10 fwd+bwd tile).
template <size_t V, class Col>
HWY_INLINE void StoreRowsPacked(const Col& col, float* HWY_RESTRICT dst, bool stream) {
  __m512 r[16];
  for (size_t j = 0; j < 16; ++j) r[j] = j < V ? col(j) : _mm512_setzero_ps();
  Transpose16x16(r);
  [&]<size_t... K>(std::index_sequence<K...>) HWY_ATTR {
    ((stream ? _mm512_stream_ps(dst + 16 * K, PackedVector<V, K>(r)) : _mm512_storeu_ps(dst + 16 * K, PackedVector<V, K>(r))),
     ...);
  }(std::make_index_sequence<V>{});
}

template <size_t V = 16, class Col>
HWY_INLINE void StoreRowsPackedFor(size_t v, const Col& col, float* HWY_RESTRICT dst, bool stream) {
  if (v == V)
    StoreRowsPacked<V>(col, dst, stream);
  else if constexpr (V > 1)
    StoreRowsPackedFor<V - 1>(v, col, dst, stream);
}
#endif

// dst[l·V + j] = cols[j·L + l]: the inverse of LoadColumns, into a packed
// L×V tile (AVX-512: register transposes and masked row stores, replacing
// scatters, a fifth of the tile's time; else scatters). AVX-512 tiles of
// V ≤ 16 use StoreRowsPacked instead.
template <class D>
HWY_INLINE void StoreRows(D d, const float* HWY_RESTRICT cols, size_t V, float* HWY_RESTRICT dst) {
  const size_t L = hn::Lanes(d);
#if HWY_TARGET <= HWY_AVX3
  (void)L;
  for (size_t c0 = 0; c0 < V; c0 += 16) {
    const size_t nv = V - c0 < 16 ? V - c0 : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << nv) - 1u);
    __m512 r[16];
    for (size_t j = 0; j < 16; ++j) r[j] = j < nv ? _mm512_load_ps(cols + (c0 + j) * 16) : _mm512_setzero_ps();
    Transpose16x16(r);
    for (size_t l = 0; l < 16; ++l) _mm512_mask_storeu_ps(dst + l * V + c0, m, r[l]);
  }
#elif HWY_TARGET == HWY_AVX2
  // 8×8 transposes and whole-vector row stores (AVX2 has no scatter, and
  // its masked store is slow on AMD). A row's store in the last, partial
  // block runs 8 − nv floats into the next row's first columns (or, for the
  // tile's last row, past L·V: dst is a tile buffer of kSmallV·16 floats,
  // 2·L·V at least); so that block goes first, rows in order, and the full
  // blocks then rewrite those columns.
  (void)L;
  const size_t last = (V - 1) / 8 * 8;
  for (size_t c0 = last + 8; c0 > 0;) {
    c0 -= 8;
    const size_t nv = V - c0 < 8 ? V - c0 : 8;
    __m256 r[8];
    for (size_t j = 0; j < 8; ++j) r[j] = j < nv ? _mm256_load_ps(cols + (c0 + j) * 8) : _mm256_setzero_ps();
    Transpose8x8(r);
    for (size_t l = 0; l < 8; ++l) _mm256_storeu_ps(dst + l * V + c0, r[l]);
  }
#else
  const hn::RebindToSigned<D> di;
  const auto idx = hn::Mul(hn::Iota(di, 0), hn::Set(di, static_cast<int32_t>(V)));
  for (size_t j = 0; j < V; ++j) hn::ScatterIndex(hn::Load(d, cols + j * L), d, dst + j, idx);
#endif
}

// The tile's log(1 + x) in fp64: Log1pNoDiv on AVX-512, else Highway's,
// whose log skips the special values: log1p(−1) came out −709.09 (so an
// ignored all −inf row reported lse −709 instead of −inf, until the
// fourteenth session) and log1p(+inf) NaN; those two are set here.
template <class DW>
HWY_INLINE hn::Vec<DW> TileLog1p(DW dw, hn::Vec<DW> x) {
#if HWY_TARGET <= HWY_AVX3
  (void)dw;
  return hn::Vec<DW>{Log1pNoDiv(x.raw)};
#else
  const auto inf = hn::Set(dw, std::numeric_limits<double>::infinity());
  auto y = hn::Log1p(dw, x);
  y = hn::IfThenElse(hn::Eq(x, hn::Set(dw, -1.0)), hn::Neg(inf), y);
  return hn::IfThenElse(hn::Eq(x, inf), inf, y);
#endif
}

// y_i = TileLog1p(x_i) over an array (for its accuracy test).
void TileLog1pRowImpl(const double* x, double* y, size_t n) {
  const hn::ScalableTag<double> dw;
  const size_t L = hn::Lanes(dw);
  HWY_ALIGN double buf[HWY_MAX_BYTES / 8];
  for (size_t i = 0; i < n; i += L) {
    const size_t k = n - i < L ? n - i : L;
    for (size_t j = 0; j < L; ++j) buf[j] = j < k ? x[i + j] : 0.0;
    hn::Store(TileLog1p(dw, hn::Load(dw, buf)), dw, buf);
    for (size_t j = 0; j < k; ++j) y[i + j] = buf[j];
  }
}

// A tile's logit columns: kSmallV columns of a vector each, then the rows'
// maxima and logit sums (one vector each).
inline constexpr size_t kColsFloats = (kSmallV + 2) * (HWY_MAX_BYTES / 4);

struct TileResult {
  bool error = false;
  size_t error_lane = 0;
  int error_kind = 0;  // 1: NaN / +inf, 2: every logit -inf
};

// One tile: rows at zb + lane·zs (lane < L), targets tv (lane: row; ignored
// rows have active = false), gradient rows into gt (L×V, packed). Its logit
// columns (LoadColumns) are in zcols where not null, else it transposes its
// rows itself; where next_rows is not null, it transposes the next tile's
// rows into next_zcols.
//
// The next tile's row loads and transposes run inside this tile:
// before this tile's gradient leaves, or before its finish in a forward
// pass. They depend on nothing here, and placed there they fill the wait on
// the finish's long chain of dependent fp64 operations and the gradient's
// transposes, which, at the tile's end as before, the next tile's own
// transposes could overlap only as far as the out-of-order window reaches.
// Zen 5, one process alternating 8–10 times: 1048576×10 on 2 threads
// fwd+bwd −7%, label smoothing −10%, forward −8%; in cache (16384×10, one
// thread) −10%, −13%, −8.5%. (Transposing the next tile before the finish
// with a gradient too: fwd+bwd −4% only.) Soft targets: see SmallRowsLoop.
template <bool kSoft, bool kSmooth, bool kAcc, class D>
TileResult SmallTile(D d, const SmallRowsSpec& sp, const float* HWY_RESTRICT zb, int32_t zs,
                     const float* HWY_RESTRICT pb, int32_t ps,
                     hn::Vec<hn::RebindToSigned<D>> tv, hn::Mask<D> active, hn::Mask<D> valid,
                     float* HWY_RESTRICT gt, bool gt_stream, float* HWY_RESTRICT row_loss, float* HWY_RESTRICT row_lse,
                     Wide<D>& ce_acc, Wide<D>& zl_acc, int64_t& correct, float* HWY_RESTRICT zcols,
                     const float* HWY_RESTRICT next_rows, float* HWY_RESTRICT next_zcols) {
  using DI = hn::RebindToSigned<D>;
  using DW = hn::Repartition<double, D>;
  const DI di;
  const DW dw;
  const hn::Half<D> dh;
  const size_t L = hn::Lanes(d);
  const size_t V = sp.cols;
  HWY_ALIGN float zbuf_own[kColsFloats];
  float* HWY_RESTRICT zbuf = zcols ? zcols : zbuf_own;
  HWY_ALIGN float ebuf[kSmallV * (HWY_MAX_BYTES / 4)];
  HWY_ALIGN float cbuf[kSmallV * (HWY_MAX_BYTES / 4)];  // soft: c_j per row
  const float kNegInf = -std::numeric_limits<float>::infinity();
  // Each row's maximum and the sum of its logits (which flags NaN and inf),
  // over the columns at c; stored after the columns (see kColsFloats). For
  // the next tile they are computed with its transposes, here, so that its
  // exps need not wait for a chain of V dependent maxima: one thread in
  // cache fwd+bwd −6%; 2 threads, 1048576×10 in place −7 to −10%, 81920×128
  // −3 to −8%, the other V = 10 cases within noise (compare binaries
  // alternated 3 times).
  auto max_sum = [&](float* HWY_RESTRICT c) HWY_ATTR __attribute__((always_inline)) {
    auto mx = hn::Set(d, kNegInf);
    auto sum = hn::Zero(d);
    for (size_t j = 0; j < V; ++j) {
      const auto z = hn::Load(d, c + j * L);
      mx = hn::Max(mx, z);
      sum = hn::Add(sum, z);
    }
    hn::Store(mx, d, c + kSmallV * L);
    hn::Store(sum, d, c + (kSmallV + 1) * L);
  };
  if (!zcols) {
    LoadColumns(d, zb, static_cast<size_t>(zs), V, zbuf);
    max_sum(zbuf);
  }
  auto load_next = [&]() HWY_ATTR __attribute__((always_inline)) {
    if (!next_rows) return;
    LoadColumns(d, next_rows, static_cast<size_t>(zs), V, next_zcols);
    max_sum(next_zcols);
  };
  const auto m = hn::Load(d, zbuf + kSmallV * L);
  const auto xsum = hn::Load(d, zbuf + (kSmallV + 1) * L);
  // Errors (only for active rows: ignored rows are not inspected). xsum is
  // NaN for a NaN or an inf − inf, +inf for a +inf (or an overflow: rescan).
  const auto kInfV = hn::Set(d, std::numeric_limits<float>::infinity());
  const auto all_neg_inf = hn::Eq(m, hn::Set(d, kNegInf));
  const auto suspect = hn::Or(hn::Or(hn::Not(hn::Lt(xsum, kInfV)), hn::Eq(m, kInfV)), all_neg_inf);
  if (!hn::AllFalse(d, hn::And(active, suspect))) {
    HWY_ALIGN int32_t act[HWY_MAX_BYTES / 4];
    hn::Store(hn::VecFromMask(di, hn::RebindMask(di, active)), di, act);
    for (size_t l = 0; l < L; ++l) {
      if (!act[l]) continue;
      bool bad = false, neg = true;
      for (size_t j = 0; j < V; ++j) {
        const float z = zbuf[j * L + l];
        bad |= std::isnan(z) || z == std::numeric_limits<float>::infinity();
        neg &= z == kNegInf;
      }
      if (bad) return {true, l, 1};
      if (neg) return {true, l, 2};
    }
  }
  const auto mref = hn::IfThenZeroElse(all_neg_inf, m);
  // Σexp as ones + rest: the terms where z = m are exactly 1 and are counted
  // (`ones`); the others are added in float32 over 4 columns (≤ 3
  // roundings, ≤ 3·2^-24 relative to their own mass) and widened once per 4
  // into `rest`. So s − 1 = (ones − 1) + rest is the non-maximum mass as
  // accumulated, never 1 + tiny − 1 (a tile with a confident row no longer
  // sums its stored exps a second time for it), and the fp64 widening (two
  // conversions and an extract) runs every 4 columns instead of every
  // column: 16384×10 in cache, one thread, fwd+bwd 188.5 → 184.8 µs, forward
  // 116.9 → 115.0. An all -inf row (mref = 0) counts no ones: its s is 0.
  Wide<D> rest(d), dsum(d), csum(d), psum(d);
  auto ones = hn::Zero(d), epend = hn::Zero(d);
  constexpr bool soft = kSoft;  // the options are template flags: no tests in the column loops
  auto pbad = hn::FirstN(d, 0);
  if (soft) LoadColumns(d, pb, static_cast<size_t>(ps), V, cbuf);  // p, then c in place
  auto am = hn::Set(d, -1.0f);
  auto found = hn::FirstN(d, 0);
  // The coefficient sums (every term ≥ 0) are staged in float32 over 4
  // columns (≤ 3 roundings, ≤ 3·2^-24 relative to their own mass, as in the
  // row-wise kernel; 4 for Σc(m − z), whose products round in the FMAs) and
  // widened once per 4: each widening is two conversions and an extract. Σexp
  // likewise, without the maximum's exact-1 terms (counted apart, above).
  auto pblk = hn::Zero(d), cblk = hn::Zero(d), dblk = hn::Zero(d);
  auto widen_blocks = [&]() HWY_ATTR __attribute__((always_inline)) {
    if (soft) {
      psum.Add(d, pblk);
      csum.Add(d, cblk);
    }
    if (soft || kSmooth) dsum.Add(d, dblk);
    pblk = cblk = dblk = hn::Zero(d);
  };
  for (size_t j = 0; j < V; ++j) {
    const auto z = hn::Load(d, zbuf + j * L);
    const auto e = ExpNonPositive(d, hn::Sub(z, mref));
    hn::Store(e, d, ebuf + j * L);
    const auto at_max = hn::Eq(z, mref);
    ones = hn::Add(ones, hn::IfThenElseZero(at_max, hn::Set(d, 1.0f)));
    epend = hn::Add(epend, hn::IfThenZeroElse(at_max, e));
    if (soft) {
      const auto p = hn::Load(d, cbuf + j * L);
      pblk = hn::Add(pblk, p);
      pbad = hn::Or(pbad, hn::Not(hn::And(hn::Ge(p, hn::Zero(d)), hn::Le(p, hn::Set(d, 1.0f)))));
      auto c = hn::MulAdd(hn::Set(d, static_cast<float>(sp.a)), p, hn::Set(d, static_cast<float>(sp.b)));
      if (sp.weight) c = hn::Mul(c, hn::Set(d, sp.weight[j]));
      hn::Store(c, d, cbuf + j * L);
      cblk = hn::Add(cblk, c);
      // 0·(m − z) = 0 where z = -inf and the class has no mass.
      dblk = hn::MulAdd(c, hn::IfThenElseZero(hn::Gt(c, hn::Zero(d)), hn::Sub(mref, z)), dblk);
    } else if (kSmooth) {
      const float wj = sp.weight ? sp.weight[j] : 1.0f;
      if (wj > 0) dblk = hn::MulAdd(hn::Set(d, wj), hn::Sub(mref, z), dblk);  // ≥ 0
    }
    if (j % 4 == 3) {
      rest.Add(d, epend);
      epend = hn::Zero(d);
      if (soft || kSmooth) widen_blocks();
    }
    if (kAcc) {
      const auto hit = hn::AndNot(found, hn::Eq(z, m));
      am = hn::IfThenElse(hit, hn::Set(d, static_cast<float>(j)), am);
      found = hn::Or(found, hit);
    }
  }
  rest.Add(d, epend);
  if (soft || kSmooth) widen_blocks();
  if (!gt) load_next();
  if (soft) {
    HWY_ALIGN int32_t act[HWY_MAX_BYTES / 4];
    HWY_ALIGN int32_t pbv[HWY_MAX_BYTES / 4];
    hn::Store(hn::VecFromMask(di, hn::RebindMask(di, active)), di, act);
    hn::Store(hn::VecFromMask(di, hn::RebindMask(di, pbad)), di, pbv);
    HWY_ALIGN double ps_d[HWY_MAX_BYTES / 4];
    const size_t LWs = hn::Lanes(hn::Repartition<double, D>());
    hn::Store(psum.lo, hn::Repartition<double, D>(), ps_d);
    hn::Store(psum.hi, hn::Repartition<double, D>(), ps_d + LWs);
    for (size_t l = 0; l < L; ++l) {
      if (!act[l]) continue;
      if (pbv[l]) return {true, l, 3};
      if (!(std::fabs(ps_d[l] - 1.0) <= sp.p_tolerance)) return {true, l, 4};
    }
  }
  if (kAcc && !soft)
    correct += static_cast<int64_t>(hn::CountTrue(
        d, hn::And(hn::And(active, valid), hn::Eq(am, hn::ConvertTo(d, tv)))));
  const auto wt = sp.weight && !soft ? hn::GatherIndex(d, sp.weight, tv) : hn::Set(d, 1.0f);
  // s = ones + rest and s − 1 = (ones − 1) + rest (exact: ones is a small
  // integer), in fp64.
  const auto ones_lo = hn::PromoteTo(dw, hn::LowerHalf(dh, ones));
  const auto ones_hi = hn::PromoteTo(dw, hn::UpperHalf(dh, ones));
  Wide<D> s = rest, sm1 = rest;
  s.lo = hn::Add(s.lo, ones_lo);
  s.hi = hn::Add(s.hi, ones_hi);
  sm1.lo = hn::Add(sm1.lo, hn::Sub(ones_lo, hn::Set(dw, 1.0)));
  sm1.hi = hn::Add(sm1.hi, hn::Sub(ones_hi, hn::Set(dw, 1.0)));
  // Per-row scalars in fp64, half a vector at a time; log s = log1p(s − 1)
  // (exact also when s ≈ 1, confident rows) in fp64 too. In float32 (until
  // the sixth session of 2026-11-26) its ~1 ulp of log s ≈ 1 was 1.2e-7
  // absolute in lse = m + log s, more than the 1e-7 the tests allow where m
  // and log s cancel (V = 3, lse = −0.06).
  // The target's logit, gathered from the rows, and its exp as the column
  // loop computed it (the same ops on the same value, so the same bits).
  // Gathering the exp from ebuf instead, right after the loop stored it,
  // made the V = 10 forward 6% slower: a gather waits for those stores.
  const auto zt = hn::GatherIndex(d, zb, hn::Add(hn::Mul(hn::Iota(di, 0), hn::Set(di, zs)), tv));
  const auto et = gt ? ExpNonPositive(d, hn::Sub(zt, mref)) : hn::Zero(d);
  hn::Vec<DW> alpha_h[2], gt_h[2], ce_h[2], zl_h[2], lse_h[2];
  const auto one_w = hn::Set(dw, 1.0);
  const double a = sp.a, b = sp.b, C = sp.w_total, zc = sp.z_loss;
  const double sce = sp.scale_ce, sz = sp.scale_z;
  // Plain cross-entropy (no smoothing, weights or z-loss; hard targets): the
  // finish without the terms that are 0 or 1 then, the same bits (16384×10 in
  // cache, one thread: fwd+bwd −7%).
  const bool plain = !soft && !kSmooth && !sp.weight && zc == 0 && a == 1 && b == 0;
  // Label smoothing without weights or z-loss: the general terms below with
  // w_t = 1 and z-loss 0 are constants per call, the same values (a zero's
  // sign aside; the gradient and losses of a 100003×10 case were the same
  // bits). One thread in cache fwd+bwd −4%; 1048576×10 on 2 threads −1 to
  // −8% (compare binaries alternated 3 times).
  const bool smooth_plain = kSmooth && !sp.weight && zc == 0;
  for (int h = 0; h < 2; ++h) {
    const auto half = [&](hn::Vec<D> v) {
      return hn::PromoteTo(dw, h == 0 ? hn::LowerHalf(dh, v) : hn::UpperHalf(dh, v));
    };
    const auto sw = h == 0 ? s.lo : s.hi;
    const auto sm1w = h == 0 ? sm1.lo : sm1.hi;
    const auto dw_sum = h == 0 ? dsum.lo : dsum.hi;
    const auto mw = half(mref), ztw = half(zt);
    const auto logs = TileLog1p(dw, sm1w);
    const auto lse = hn::Add(mw, logs);
    const auto nll = hn::Add(logs, hn::Sub(mw, ztw));
    // Plain: the general terms below with a = 1, b = 0, w_t = 1, c = 0.
    const auto wtw = plain || smooth_plain ? one_w : half(wt);
    const auto csw = h == 0 ? csum.lo : csum.hi;
    auto ce = plain ? nll : hn::Mul(hn::Set(dw, a), hn::Mul(wtw, nll));
    if (kSmooth) ce = hn::MulAdd(hn::Set(dw, b), hn::MulAdd(hn::Set(dw, C), logs, dw_sum), ce);
    if (soft) ce = hn::MulAdd(csw, logs, dw_sum);  // Σ c_j (lse − z_j)
    ce_h[h] = ce;
    zl_h[h] = plain || smooth_plain ? hn::Zero(dw) : hn::Mul(hn::Set(dw, zc), hn::Mul(lse, lse));
    lse_h[h] = lse;
    if (!gt) continue;  // evaluation: no gradient coefficients (a third of this loop's work)
    const auto inv_s = hn::Div(one_w, sw);
    const auto q = hn::Mul(half(et), inv_s);
    // q_t − 1 = −(s − 1)/s when z_t is the max (its term is exactly 1).
    const auto omq = hn::IfThenElse(hn::Eq(ztw, mw), hn::Mul(sm1w, inv_s), hn::Sub(one_w, q));
    if (plain) {
      alpha_h[h] = hn::Mul(hn::Set(dw, sce), inv_s);
      gt_h[h] = hn::Mul(hn::Set(dw, -sce), omq);
      continue;
    }
    if (smooth_plain) {  // the general terms with w_t = 1: A = a + b·C, ct = a + b, other = b·(C − 1), zterm = 0
      const auto A = hn::MulAdd(hn::Set(dw, a), one_w, hn::Set(dw, b * C));  // rounded as the general A
      alpha_h[h] = hn::Mul(hn::MulAdd(hn::Set(dw, sce), A, hn::Zero(dw)), inv_s);
      gt_h[h] = hn::MulAdd(hn::Set(dw, sce),
                           hn::MulAdd(q, hn::Set(dw, b * (C - 1.0)), hn::Neg(hn::Mul(hn::Set(dw, a + b), omq))),
                           hn::Zero(dw));
      continue;
    }
    const auto A = soft ? csw : hn::MulAdd(hn::Set(dw, a), wtw, hn::Set(dw, b * C));
    const auto zterm = hn::Mul(hn::Set(dw, sz * 2 * zc), lse);
    const auto ct = hn::Mul(wtw, hn::Set(dw, a + b));
    const auto other = hn::Mul(hn::Set(dw, b), hn::Sub(hn::Set(dw, C), wtw));
    alpha_h[h] = hn::Mul(hn::MulAdd(hn::Set(dw, sce), A, zterm), inv_s);
    gt_h[h] = hn::MulAdd(hn::Set(dw, sce), hn::MulAdd(q, other, hn::Neg(hn::Mul(ct, omq))), hn::Mul(zterm, q));
  }
  auto narrow = [&](const hn::Vec<DW>* v) {
    return hn::Combine(d, hn::DemoteTo(dh, v[1]), hn::DemoteTo(dh, v[0]));
  };
  // Ignored rows and padding lanes contribute nothing.
  const auto live = hn::And(active, valid);
  const hn::Half<DI> dhi;
  const hn::Repartition<int64_t, D> d64;
  auto live_half = [&](int h) {  // the mask of half h as an fp64 mask
#if HWY_TARGET <= HWY_AVX3
    (void)dhi;
    (void)d64;
    return hn::Mask<DW>{static_cast<__mmask8>(h == 0 ? live.raw : live.raw >> 8)};  // its bits
#else
    const auto v = hn::VecFromMask(di, hn::RebindMask(di, live));
    return hn::RebindMask(dw, hn::MaskFromVec(hn::BitCast(dw, hn::PromoteTo(d64, h == 0 ? hn::LowerHalf(dhi, v)
                                                                                          : hn::UpperHalf(dhi, v)))));
#endif
  };
  for (int h = 0; h < 2; ++h) {
    const auto lm = live_half(h);
    ce_h[h] = hn::IfThenElseZero(lm, ce_h[h]);
    zl_h[h] = hn::IfThenElseZero(lm, zl_h[h]);
  }
  ce_acc.lo = hn::Add(ce_acc.lo, ce_h[0]);
  ce_acc.hi = hn::Add(ce_acc.hi, ce_h[1]);
  zl_acc.lo = hn::Add(zl_acc.lo, zl_h[0]);
  zl_acc.hi = hn::Add(zl_acc.hi, zl_h[1]);
  if (row_loss) {
    hn::Vec<DW> tot[2] = {hn::Add(ce_h[0], zl_h[0]), hn::Add(ce_h[1], zl_h[1])};
    hn::Store(narrow(tot), d, row_loss);
  }
  if (row_lse) hn::Store(narrow(lse_h), d, row_lse);
  if (gt) {
    load_next();
    const auto alpha = hn::IfThenElseZero(active, narrow(alpha_h));
    const auto gt_f = hn::IfThenElseZero(active, narrow(gt_h));
    const auto beta = hn::IfThenElseZero(active, hn::Set(d, static_cast<float>(sce * b)));
    const auto sce_v = hn::Set(d, static_cast<float>(sce));
    // Gradient column j.
    auto grad_col = [&](size_t j) HWY_ATTR __attribute__((always_inline)) {
      auto g = hn::Mul(alpha, hn::Load(d, ebuf + j * L));
      if (soft) {
        g = hn::NegMulAdd(sce_v, hn::Load(d, cbuf + j * L), g);
      } else if (kSmooth) {
        const float wj = sp.weight ? sp.weight[j] : 1.0f;
        g = hn::NegMulAdd(beta, hn::Set(d, wj), g);
      }
      g = hn::IfThenElseZero(active, g);  // ignored rows: 0
      // The target's own entry (0 in ignored rows, whose target reads as 0).
      if (!soft) g = hn::IfThenElse(hn::RebindMask(d, hn::Eq(tv, hn::Set(di, static_cast<int32_t>(j)))), gt_f, g);
      return g;
    };
#if HWY_TARGET <= HWY_AVX3
    if (V <= 16) {  // whole packed vectors, into the tile buffer or the rows themselves
      StoreRowsPackedFor(V, [&](size_t j) HWY_ATTR __attribute__((always_inline)) { return grad_col(j).raw; }, gt,
                         gt_stream);
      return {};
    }
#endif
    // Column j of the gradient overwrites column j of the exps (read first).
    for (size_t j = 0; j < V; ++j) hn::Store(grad_col(j), d, ebuf + j * L);
    StoreRows(d, ebuf, V, gt);
  }
  return {};
}

template <bool kSoft, bool kSmooth, bool kAcc>
bool SmallRowsLoop(const SmallRowsSpec& sp, size_t r0, size_t r1, SmallRowsResult* out) {
  using DF = hn::ScalableTag<float>;
  const DF d;
  const hn::RebindToSigned<DF> di;
  const size_t L = hn::Lanes(d);
  const size_t V = sp.cols;
  Wide<DF> ce_acc(d), zl_acc(d);
  int64_t correct = 0;
  HWY_ALIGN float gtile[kSmallV * (HWY_MAX_BYTES / 4)];
  // The logit columns of this tile and the next (see SmallTile): zcols[cur]
  // holds this tile's where cur_ready.
  HWY_ALIGN float zcols[2][kColsFloats];
  int cur = 0;
  bool cur_ready = false;
  HWY_ALIGN float ztile[kSmallV * (HWY_MAX_BYTES / 4)];
  HWY_ALIGN float ptile[kSmallV * (HWY_MAX_BYTES / 4)];
  HWY_ALIGN int32_t tt[HWY_MAX_BYTES / 4];
  HWY_ALIGN float rl[HWY_MAX_BYTES / 4], rlse[HWY_MAX_BYTES / 4];
  *out = SmallRowsResult{};
  const bool direct_out = HWY_TARGET <= HWY_AVX3 && V <= 16;
  // AVX-512 tiles of rows of ≤ 12 floats write their gradient with plain
  // stores even where a large gradient streams elsewhere: these tiles are
  // bound by their arithmetic (~26 GB/s of logits + gradient on 2 Zen 5
  // cores, a third of the copy bandwidth), so the read-for-ownership the
  // streaming store saves costs nothing, and the streaming stores themselves
  // cost the tile time. Zen 5, 2 threads, aligned buffers of 40 MiB, one
  // process alternating plain and streamed 6 times, fwd+bwd: in the host's
  // fast phase (copy ~92 GB/s) V = 2 / 5 / 8 / 10 / 12 −10 / −12 / −18 /
  // −18 / −19%, V = 16 −12%, 20 −2%, 24 +25%, 32 +16%; in its slow phase
  // (copy ~59 GB/s) V = 5 −11%, 10 −3% (label smoothing −6%, soft targets
  // −2%), 16 +3%. So V ≤ 12 stores plain; V 13 to 16 streams.
  const bool stream = sp.stream && !(HWY_TARGET <= HWY_AVX3 && V <= 12);
  for (size_t r = r0; r < r1; r += L) {
    const size_t k = r1 - r < L ? r1 - r : L;
    HWY_ALIGN int32_t actv[HWY_MAX_BYTES / 4];
    hn::Mask<DF> active;
    // The targets stay in registers: stored to an array and loaded back as
    // one vector, they waited for the two halves' stores to commit (a load
    // spanning two stores is not forwarded), behind the previous tiles'
    // gradient stores, whose lines come from memory (perf: a fifth of the
    // tile's samples on that load, once the next tile's columns moved into
    // the tile).
    hn::Vec<decltype(di)> tv;
    if (kSoft) {  // every row active, no index targets
      active = hn::FirstN(d, k);
      tv = hn::Zero(di);
    } else
#if HWY_TARGET <= HWY_AVX3
    if (k == L && sp.targets64) {
      // A full tile's 16 int64 targets in two compares and two narrowing
      // moves (values are in [0, V) or the ignore index, checked earlier).
      const __m512i ig = _mm512_set1_epi64(sp.ignore_index);
      const __m512i lo = _mm512_loadu_si512(sp.targets64 + r), hi = _mm512_loadu_si512(sp.targets64 + r + 8);
      const __mmask8 mlo = _mm512_cmpneq_epi64_mask(lo, ig), mhi = _mm512_cmpneq_epi64_mask(hi, ig);
      const hn::Half<decltype(di)> dhi;
      tv = hn::Combine(di, hn::Vec<decltype(dhi)>{_mm512_maskz_cvtepi64_epi32(mhi, hi)},
                       hn::Vec<decltype(dhi)>{_mm512_maskz_cvtepi64_epi32(mlo, lo)});
      active = hn::Mask<DF>{static_cast<__mmask16>(mlo | (static_cast<unsigned>(mhi) << 8))};
    } else if (k == L && sp.targets32) {  // 16 int32 targets: one compare (none matches an ignore index beyond int32)
      const __m512i t = _mm512_loadu_si512(sp.targets32 + r);
      const bool fits = sp.ignore_index >= INT32_MIN && sp.ignore_index <= INT32_MAX;
      const __mmask16 keep =
          fits ? _mm512_cmpneq_epi32_mask(t, _mm512_set1_epi32(static_cast<int32_t>(sp.ignore_index))) : 0xFFFF;
      tv = hn::Vec<decltype(di)>{_mm512_maskz_mov_epi32(keep, t)};
      active = hn::Mask<DF>{keep};
    } else
#elif HWY_TARGET == HWY_AVX2
    if (k == L && (sp.targets64 || sp.targets32)) {
      // A full tile's 8 targets in a few vector operations instead of a
      // scalar loop with a branch per lane (~90 of the V = 10 tile's ~1390
      // instructions, callgrind). Values are in [0, V) or the ignore index (checked
      // earlier), so int64 targets narrow to int32 exactly.
      __m256i t, ign;
      if (sp.targets64) {
        const __m256i ig = _mm256_set1_epi64x(sp.ignore_index);
        const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sp.targets64 + r));
        const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sp.targets64 + r + 4));
        // The low 32 bits of each int64 into the low 128 bits, in order.
        const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
        auto narrow = [&](__m256i a, __m256i b) HWY_ATTR {
          return _mm256_permute2x128_si256(_mm256_permutevar8x32_epi32(a, even), _mm256_permutevar8x32_epi32(b, even),
                                           0x20);
        };
        t = narrow(lo, hi);
        ign = narrow(_mm256_cmpeq_epi64(lo, ig), _mm256_cmpeq_epi64(hi, ig));
      } else {
        t = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sp.targets32 + r));
        const bool fits = sp.ignore_index >= INT32_MIN && sp.ignore_index <= INT32_MAX;
        ign = fits ? _mm256_cmpeq_epi32(t, _mm256_set1_epi32(static_cast<int32_t>(sp.ignore_index)))
                   : _mm256_setzero_si256();
      }
      tv = hn::Vec<decltype(di)>{_mm256_andnot_si256(ign, t)};  // ignored rows: 0
      active = hn::Not(hn::RebindMask(d, hn::MaskFromVec(hn::Vec<decltype(di)>{ign})));
    } else
#endif
    {
      for (size_t l = 0; l < L; ++l) {
        int64_t t = sp.ignore_index;
        if (l < k) t = sp.targets64 ? sp.targets64[r + l] : sp.targets32[r + l];
        const bool act = l < k && t != sp.ignore_index;
        actv[l] = act ? -1 : 0;
        tt[l] = act ? static_cast<int32_t>(t) : 0;
      }
      tv = hn::Load(di, tt);
      active = hn::RebindMask(d, hn::MaskFromVec(hn::LoadU(di, actv)));
    }
    const auto valid = hn::FirstN(d, k);
    const float* zb = sp.logits + r * sp.logits_stride;
    int32_t zs = static_cast<int32_t>(sp.logits_stride);
    const float* pb = sp.soft ? sp.soft + r * sp.soft_stride : nullptr;
    int32_t ps = static_cast<int32_t>(sp.soft_stride);
    // A tile's loads are few, between long stretches of arithmetic: fetch the
    // tile kAhead tiles ahead ourselves (4 tiles ahead, against none:
    // 262144×64 fwd+bwd 12.2 instead of 11.1 ms; no difference at V = 10),
    // and its soft-target rows too (Zen 5, 2 threads, one process
    // alternating 20 times: 1048576×10 soft fwd+bwd 8.7 → 5.7 ms, faster in
    // 20 of 20). The distance, the same way (14 alternations): 3 tiles
    // against 4 took 1048576×10 fwd+bwd −3.5%, soft −2.6%, forward −3% (12
    // to 14 of 14 faster), 262144×64 even; 2 tiles was mixed, and 6, 8 or 16
    // tiles 11%, 21% and 66% slower at V = 10. (AVX2 keeps 4 tiles of 8
    // rows: not measured on its Zen 3 hosts since.)
    // Up to the batch's end, not this call's end: a call covers a block of
    // ≤ 256 rows (16 AVX-512 tiles), the next block is mostly this thread's
    // too, and its first 3 tiles went unfetched when the fetches stopped at
    // the block's end (until the fourteenth session). 1048576×10, 2 threads,
    // processes alternated 3 times: fwd+bwd −12%, soft −12%, forward −23%;
    // 524288×32 −7%, 262144×64 −3 to −8%, 131072×128 −1 to −5%.
    constexpr size_t kAhead = HWY_TARGET <= HWY_AVX3 ? 3 : 4;
    if (r + (kAhead + 1) * L <= sp.rows) {
      auto fetch = [&](const float* tile, size_t stride) HWY_ATTR {
        const char* ahead = reinterpret_cast<const char*>(tile + kAhead * L * stride);
        const size_t bytes = L * stride * sizeof(float);
        for (size_t o = 0; o < bytes; o += 64) hwy::Prefetch(ahead + o);
      };
      fetch(zb, sp.logits_stride);
      if (kSoft) fetch(pb, sp.soft_stride);
    }
    if (k < L) {  // the last partial tile, through a padded copy
      for (size_t l = 0; l < L; ++l)
        for (size_t j = 0; j < V; ++j) ztile[l * V + j] = l < k ? zb[l * sp.logits_stride + j] : 0.0f;
      zb = ztile;
      zs = static_cast<int32_t>(V);
      if (pb) {
        for (size_t l = 0; l < L; ++l)
          for (size_t j = 0; j < V; ++j) ptile[l * V + j] = l < k ? pb[l * sp.soft_stride + j] : 0.0f;
        pb = ptile;
        ps = static_cast<int32_t>(V);
      }
    }
    // The gradient goes straight to its rows where a full tile's rows are
    // packed and the tile packs them (AVX-512, V ≤ 16), else through the
    // tile buffer (also where a streamed destination is not 64-byte aligned).
    float* const g = sp.grad ? sp.grad + r * sp.grad_stride : nullptr;
    const bool direct = g && direct_out && k == L && sp.grad_stride == V &&
                        (!stream || reinterpret_cast<uintptr_t>(g) % 64 == 0);
    // The next tile's columns are transposed by this one where both are full;
    // not with soft targets (the tile transposes p too: pipelined as well, −4%
    // to +5%, streamed and in cache).
    const bool pipe = !kSoft && k == L && r + 2 * L <= r1;
    float* const this_zcols = cur_ready ? zcols[cur] : nullptr;
    const float* const next_rows = pipe ? zb + L * sp.logits_stride : nullptr;
    cur_ready = pipe;
    cur ^= 1;
    const TileResult tr = SmallTile<kSoft, kSmooth, kAcc>(d, sp, zb, zs, pb, ps, tv, active, valid,
                                    !g ? nullptr : direct ? g : gtile, direct && stream,
                                    sp.row_loss ? rl : nullptr, sp.row_lse ? rlse : nullptr,
                                    ce_acc, zl_acc, correct, this_zcols, next_rows, zcols[cur]);
    if (tr.error) {
      out->error_row = static_cast<int64_t>(r + tr.error_lane);
      out->error_kind = tr.error_kind;
      return true;
    }
    if (sp.row_loss) std::memcpy(sp.row_loss + r, rl, k * sizeof(float));
    if (sp.row_lse) std::memcpy(sp.row_lse + r, rlse, k * sizeof(float));
    if (g && !direct) {
      if (sp.grad_stride == V)
        CopyOut(gtile, g, k * V, stream);
      else
        for (size_t l = 0; l < k; ++l) std::memcpy(g + l * sp.grad_stride, gtile + l * V, V * sizeof(float));
    }
  }
  if (stream) hwy::FlushStream();
  out->ce = ce_acc.Total();
  out->zl = zl_acc.Total();
  out->correct = correct;
  return true;
}

bool SmallRowsImpl(const SmallRowsSpec& sp, size_t r0, size_t r1, SmallRowsResult* out) {
  const bool soft = sp.soft != nullptr, smooth = sp.smoothing && !soft, acc = sp.accuracy && !soft;
  if (soft) return SmallRowsLoop<true, false, false>(sp, r0, r1, out);
  if (smooth) return acc ? SmallRowsLoop<false, true, true>(sp, r0, r1, out)
                         : SmallRowsLoop<false, true, false>(sp, r0, r1, out);
  return acc ? SmallRowsLoop<false, false, true>(sp, r0, r1, out) : SmallRowsLoop<false, false, false>(sp, r0, r1, out);
}

#else   // HWY_SCALAR: no lanes to share; the caller uses the row-wise path.

bool SmallRowsImpl(const SmallRowsSpec&, size_t, size_t, SmallRowsResult*) { return false; }
void TileLog1pRowImpl(const double* x, double* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = std::log1p(x[i]);
}

#endif  // HWY_TARGET != HWY_SCALAR

}  // namespace xent::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard
