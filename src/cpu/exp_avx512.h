// exp(x) for x ≤ 0 on raw AVX-512F intrinsics: the float32 kernels' exp,
// shared by the Highway kernels' AVX-512 targets (ExpNonPositive in
// cross_entropy-inl.h, where the method and its accuracy are described) and
// the hand-written product kernels (chunk_gemm.cc), so that both compute the
// same bits from one copy.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

namespace xent::cpu {

// (GCC 12 warns that the intrinsics' _mm512_undefined_ps operands are used
// uninitialized wherever this is inlined; they are not read.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"), always_inline)) inline __m512 exp_nonpositive_avx512(__m512 x) {
  alignas(64) static constexpr float kPow2Sixteenths[16] = {
      1.000000000e+00f, 1.044273734e+00f, 1.090507746e+00f, 1.138788581e+00f,
      1.189207077e+00f, 1.241857767e+00f, 1.296839595e+00f, 1.354255557e+00f,
      1.414213538e+00f, 1.476826191e+00f, 1.542210817e+00f, 1.610490322e+00f,
      1.681792855e+00f, 1.756252170e+00f, 1.834008098e+00f, 1.915206552e+00f};
  // -inf → a finite argument whose exp is 0; x second: a NaN stays NaN.
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
  // j = x·log2(e) + 1.5·2^19: k = x/ln 2 in sixteenths, its low 4 mantissa
  // bits the table index.
  const __m512 shift = _mm512_set1_ps(786432.0f);
  const __m512 j = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), shift);
  const __m512 k = _mm512_sub_ps(j, shift);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.69311523f), x);  // ln 2 = hi (12 bits) + lo
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(3.1946183e-05f), r);
  const __m512 t = _mm512_permutexvar_ps(_mm512_castps_si512(j), _mm512_load_ps(kPow2Sixteenths));
  __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(0.16666766f), r, _mm512_set1_ps(0.50001615f));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.0f));
  const __m512 y = _mm512_fmadd_ps(t, _mm512_mul_ps(q, r), t);  // T + T·(e^r − 1)
  return _mm512_scalef_ps(y, k);  // 2^⌊k⌋: vscalefps floors k
}
#pragma GCC diagnostic pop

}  // namespace xent::cpu

#endif
