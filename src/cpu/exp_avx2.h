// exp(x) for x ≤ 0 on raw AVX2 + FMA intrinsics: the float32 kernels' exp on
// the AVX2 target (ExpNonPositive in cross_entropy-inl.h describes the
// method and its accuracy). The table form of exp_avx512.h with AVX2's one
// 8-lane permute (vpermps) and no vscalefps.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

namespace xent::cpu {

// kMayUnderflow = false: the caller knows every x ≥ −86.6 (or NaN), and the
// last two operations (the compare and the mask that make e^x 0 below the
// normal range) are left out; the result is the same bits then.
template <bool kMayUnderflow = true>
__attribute__((target("avx2,fma"), always_inline)) inline __m256 exp_nonpositive_avx2(__m256 x) {
  alignas(32) static constexpr float kPow2Eighths[8] = {
      1.000000000e+00f, 1.090507746e+00f, 1.189207077e+00f, 1.296839595e+00f,
      1.414213538e+00f, 1.542210817e+00f, 1.681792855e+00f, 1.834008098e+00f};
  // j = x·8·log2(e) + 1.5·2^23: k = x/ln 2 rounded to eighths, as the
  // integer in j's low mantissa bits (|k| < 2^22); its low 3 bits index
  // the table (vpermps reads only those).
  const __m256 shift = _mm256_set1_ps(12582912.0f);
  const __m256 j = _mm256_fmadd_ps(x, _mm256_set1_ps(11.5415603271f), shift);
  const __m256 k = _mm256_sub_ps(j, shift);
  // r = x − k·ln2/8 in two parts: hi = 355/4096 has 9 bits, so k·hi is
  // exact for |k| ≤ 2^15; |r| ≤ ln2/16.
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.086669921875f), x);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.6524305e-05f), r);
  const __m256 t = _mm256_permutevar8x32_ps(_mm256_load_ps(kPow2Eighths), _mm256_castps_si256(j));
  // e^r − 1 = r + r²·(c2 + c3·r): a relative-error minimax fit on
  // |r| ≤ ln2/16 (2.6e-8 with these float32 coefficients); the r² product
  // runs beside the first FMA, so the chain is three deep.
  const __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(1.666685790e-01f), r, _mm256_set1_ps(5.000644922e-01f));
  const __m256 em1 = _mm256_fmadd_ps(q, _mm256_mul_ps(r, r), r);
  // 2^⌊k/8⌋ into the table value's exponent field: j's bits shifted left
  // by 20 are k·2^20 (the shift constant's bits shift out), and clearing the
  // low 23 bits leaves ⌊k/8⌋·2^23. Scaling T (finite, in [1, 2)) before the
  // last FMA rather than the result after it gives the same bits (a power of
  // two, all normal: ⌊k/8⌋ ≥ −125 for x ≥ −86.6) and keeps a NaN argument
  // NaN whatever its sign and payload (the FMA propagates it), so that a NaN
  // logit shows in Σexp. Below −86.6 (e^x < 2.4e-38) and for −inf: 0.
  const __m256i scale = _mm256_and_si256(_mm256_slli_epi32(_mm256_castps_si256(j), 20),
                                         _mm256_set1_epi32(static_cast<int>(0xFF800000u)));
  const __m256 ts = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(t), scale));
  const __m256 e = _mm256_fmadd_ps(ts, em1, ts);  // T·2^⌊k/8⌋·(1 + (e^r − 1)); exp(0) = 1 exactly
  if constexpr (!kMayUnderflow) return e;
  return _mm256_andnot_ps(_mm256_cmp_ps(x, _mm256_set1_ps(-86.6f), _CMP_LT_OQ), e);
}

}  // namespace xent::cpu

#endif
