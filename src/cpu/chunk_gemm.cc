// AVX-512 products of a token chunk (see chunk_gemm.h for what and why).
//
// Each kernel keeps a 24-vector block of the output in registers (of the 32
// zmm registers: the rest hold one operand's vectors and a broadcast) and
// streams the other operands from where they lie:
//
//   logits:      6 rows of W (6 broadcast streams along d) × 4 vectors of
//                Hᵀ (64 chunk rows; H transposed once per chunk into scratch
//                so that 16 rows are one vector). The block is 64 rows × 6
//                classes, summed over all of d in registers, then written
//                into Z's rows.
//   grad_hidden: 6 rows of G (broadcasts along v) × 4 vectors of a W row
//                (64 columns of d), over vocabulary blocks of 256 rows so
//                that the W block (64 KiB) is re-read from L2 by the chunk's
//                row groups, not from memory. From D = 3072 on, the other
//                way round, shaped like the logits kernel: 6 columns of W
//                (broadcasts) × 4 vectors of Gᵀ (64 chunk rows; G transposed
//                256 classes at a time), summed into Gᵀ-shaped scratch (the
//                logits kernel's, free again by then) and transposed into
//                gH at the end.
//   grad_weight: 6 classes (columns of G, packed) × 4 vectors of an H row
//                (64 columns of d), over the chunk's rows; the gW block is
//                loaded, updated and stored once per chunk.
//
// Chunks of fewer than 16 rows (kSmallChunkRows) would fill the logits
// block's vectors partly, and their transposed H does not fit the memory
// budgets that make such chunks: their logits are dot products along d
// (4 rows × 4 classes of 16-lane sums, reduced 16 at a time), grad_hidden
// takes 4-row blocks, grad_weight reads G in place.
//
// Only the last block of d is masked (its loads and stores). The functions
// are compiled for AVX-512F alone (target attribute) and called only where
// chunk_gemm_supported().
#include "cpu/chunk_gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define XENT_CHUNK_GEMM 1
#include <immintrin.h>

#include "cpu/exp_avx512.h"
#define XENT_AVX512 __attribute__((target("avx512f")))
#else
#define XENT_CHUNK_GEMM 0
#endif

namespace xent::cpu {

using i64 = std::int64_t;

#if XENT_CHUNK_GEMM

bool chunk_gemm_supported() {
  static const bool ok = __builtin_cpu_supports("avx512f");
  return ok;
}

namespace {

constexpr i64 kLogitClasses = 6;   // classes per logits block
constexpr i64 kRowBlock = 64;      // chunk rows per logits block (4 vectors)
constexpr int kHiddenRows = 6;     // grad_hidden: chunk rows per block
constexpr int kHiddenVecs = 4;     // grad_hidden: vectors of d per block
constexpr i64 kHiddenVocab = 256;  // grad_hidden: vocabulary rows per pass
constexpr i64 kHiddenTransposedFrom = 3072;  // grad_hidden: the transposed form from this D on
constexpr i64 kWeightClasses = 6;  // grad_weight: classes per block
constexpr i64 kWeightVecs = 4;     // grad_weight: vectors of d per block

}  // namespace

std::size_t chunk_logits_scratch(i64 c, i64 D) {
  if (c < kSmallChunkRows) return 0;  // dot products; grad_hidden by row blocks
  // Hᵀ for the logits (Gᵀ-shaped sums for grad_hidden), then, where
  // grad_hidden takes its transposed form, its transposed G block (256
  // classes).
  const i64 extra = D >= kHiddenTransposedFrom ? kHiddenVocab : 0;
  return static_cast<std::size_t>((c + 15) / 16 * 16) * static_cast<std::size_t>(D + extra);
}

namespace {

// Mask of the first n (≤ 16) lanes.
inline __mmask16 first_lanes(i64 n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}

// Columns [0, 16) from p: the whole vector, or (kMasked) the lanes of m.
template <bool kMasked>
XENT_AVX512 inline __m512 load_cols(const float* p, __mmask16 m) {
  if constexpr (kMasked) return _mm512_maskz_loadu_ps(m, p);
  return _mm512_loadu_ps(p);
}
template <bool kMasked>
XENT_AVX512 inline void store_cols(float* p, __mmask16 m, __m512 v) {
  if constexpr (kMasked)
    _mm512_mask_storeu_ps(p, m, v);
  else
    _mm512_storeu_ps(p, v);
}

// The chunk's rows in blocks of 64 (the logits kernel's 4 vectors; the last
// block may have fewer rows, padded to whole vectors of 16).
struct RowBlocks {
  i64 c;
  i64 count() const { return (c + kRowBlock - 1) / kRowBlock; }
  i64 rows(i64 b) const { return std::min(kRowBlock, c - b * kRowBlock); }
  i64 vecs(i64 b) const { return (rows(b) + 15) / 16; }
};

// Rows [n0, n1) (of the padded chunk) of src, columns [0, K), transposed into
// dst: block b at dst + b·64·ldb holds K × 16P floats (P = its vectors), row
// n of the block in lane n mod 64; rows past c are 0.
void transpose_rows(const RowBlocks& rb, const float* src, i64 ld, i64 n0, i64 n1, i64 K, float* dst, i64 ldb) {
  for (i64 n = n0; n < n1; ++n) {
    const i64 b = n / kRowBlock, width = 16 * rb.vecs(b);
    float* out = dst + b * kRowBlock * ldb + n % kRowBlock;
    if (n < rb.c) {
      const float* in = src + n * ld;
      for (i64 k = 0; k < K; ++k) out[k * width] = in[k];
    } else {
      for (i64 k = 0; k < K; ++k) out[k * width] = 0.0f;
    }
  }
}

// ------------------------------------------------------------------ logits

// The register block of the logits kernel and of grad_hidden's transposed
// form: out[j·ld + (0, 16P)] (+)= Σ_{k<K} a[k·16P + (0, 16P)] · b[k·sk + off[j]]
// for j < 6, i.e. 6 broadcast streams of b against P vectors of a per step.
// accumulate: start from out (else 0); only j < nout is stored.
template <int P>
XENT_AVX512 void block_6xP(const float* __restrict a, const float* __restrict b, i64 sk, const i64* off, i64 K,
                           float* __restrict out, i64 ld, bool accumulate, i64 nout) {
  __m512 acc[kLogitClasses][P];
  for (int j = 0; j < kLogitClasses; ++j)
    for (int p = 0; p < P; ++p)
      acc[j][p] = accumulate && j < nout ? _mm512_load_ps(out + j * ld + 16 * p) : _mm512_setzero_ps();
  const i64 o0 = off[0], o1 = off[1], o2 = off[2], o3 = off[3], o4 = off[4], o5 = off[5];
  for (i64 k = 0; k < K; ++k) {
    __m512 h[P];
    for (int p = 0; p < P; ++p) h[p] = _mm512_load_ps(a + k * 16 * P + 16 * p);
    const float* bk = b + k * sk;
    const float bv[kLogitClasses] = {bk[o0], bk[o1], bk[o2], bk[o3], bk[o4], bk[o5]};
#pragma GCC unroll 6
    for (int j = 0; j < kLogitClasses; ++j) {
      const __m512 bj = _mm512_set1_ps(bv[j]);
#pragma GCC unroll 4
      for (int p = 0; p < P; ++p) acc[j][p] = _mm512_fmadd_ps(h[p], bj, acc[j][p]);
    }
  }
  for (i64 j = 0; j < nout; ++j)
    for (int p = 0; p < P; ++p) _mm512_store_ps(out + j * ld + 16 * p, acc[j][p]);
}

// block_6xP for P = 1..4 (the vectors of a 64-row block).
void block_6x(i64 P, const float* a, const float* b, i64 sk, const i64* off, i64 K, float* out, i64 ld,
              bool accumulate, i64 nout) {
  switch (P) {
    case 1: block_6xP<1>(a, b, sk, off, K, out, ld, accumulate, nout); break;
    case 2: block_6xP<2>(a, b, sk, off, K, out, ld, accumulate, nout); break;
    case 3: block_6xP<3>(a, b, sk, off, K, out, ld, accumulate, nout); break;
    default: block_6xP<4>(a, b, sk, off, K, out, ld, accumulate, nout); break;
  }
}

void logits_impl(i64 c, i64 V, i64 D, const float* H, i64 ldh, const float* W, i64 ldw, float* Z, i64 ldz,
                 float* ht, int nt) {
  const RowBlocks rb{c};
  const i64 cpad = (c + 15) / 16 * 16;
  const i64 groups = (V + kLogitClasses - 1) / kLogitClasses;
#pragma omp parallel num_threads(nt)
  {
    const i64 t = omp_get_thread_num(), T = omp_get_num_threads();
    // Hᵀ (rows past c are 0), each thread a share of the rows.
    transpose_rows(rb, H, ldh, cpad * t / T, cpad * (t + 1) / T, D, ht, D);
#pragma omp barrier
    alignas(64) float tile[kLogitClasses * kRowBlock];
    const i64 g0 = groups * t / T, g1 = groups * (t + 1) / T;
    for (i64 g = g0; g < g1; ++g) {
      const i64 v0 = g * kLogitClasses, nv = std::min(kLogitClasses, V - v0);
      // Class j's row of W (rows past V repeat a valid one), read along d.
      i64 off[kLogitClasses];
      for (i64 j = 0; j < kLogitClasses; ++j) off[j] = std::min(j, nv - 1) * ldw;
      for (i64 b = 0; b < rb.count(); ++b) {
        block_6x(rb.vecs(b), ht + b * kRowBlock * D, W + v0 * ldw, 1, off, D, tile, kRowBlock, false,
                 kLogitClasses);
        for (i64 n = 0; n < rb.rows(b); ++n) {
          float* zr = Z + (b * kRowBlock + n) * ldz + v0;
          for (i64 j = 0; j < nv; ++j) zr[j] = tile[j * kRowBlock + n];
        }
      }
    }
  }
}

// The logits of a small chunk (< 16 rows: below one vector of the block
// above, whose Hᵀ scratch would not fit the memory budget of the shapes
// that make such chunks): dot products along d, d in the vector lanes, R
// rows × C classes (R·C ≤ 16) per block. A block reads R rows of H (L1) and
// C rows of W per 16 columns of d for R·C FMAs, then reduces its R·C lane
// sums at once: 16 vectors into one vector of 16 sums in 45 shuffles and
// adds, against 16·D/16 FMAs (a 16-fold horizontal sum each would cost 8
// operations per sum).

// One vector whose lane l is the sum of the lanes of a[kReduceOrder[l]]: the
// transposition tree of the reduction leaves the sums in this lane order (an
// involution), so reduce16 is given its inputs in this order to return them
// in natural order.
constexpr int kReduceOrder[16] = {0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15};

// The 16 inputs come as values, not an array: from an array GCC stored
// every accumulator to the stack and shuffled the reloads.
// (GCC 12 warns that the shuffle intrinsics' _mm512_undefined_ps operand is
// used uninitialized; it is not read.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
XENT_AVX512 inline __m512 halves(__m512 a, __m512 b) {  // [a.lo + a.hi | b.lo + b.hi] (256-bit halves)
  return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
}
XENT_AVX512 inline __m512 quarters(__m512 a, __m512 b) {  // the same one level down (128-bit quarters)
  return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD));
}
XENT_AVX512 inline __m512 pairs(__m512 a, __m512 b) {  // 64-bit pairs within each quarter
  const __m512d x = _mm512_castps_pd(a), y = _mm512_castps_pd(b);
  return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
}
XENT_AVX512 inline __m512 singles(__m512 a, __m512 b) {  // single lanes
  return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x88), _mm512_shuffle_ps(a, b, 0xDD));
}
XENT_AVX512 inline __m512 reduce16(__m512 a0, __m512 a1, __m512 a2, __m512 a3, __m512 a4, __m512 a5, __m512 a6,
                                   __m512 a7, __m512 a8, __m512 a9, __m512 a10, __m512 a11, __m512 a12,
                                   __m512 a13, __m512 a14, __m512 a15) {
  const __m512 h0 = halves(a0, a8), h1 = halves(a1, a9), h2 = halves(a2, a10), h3 = halves(a3, a11);
  const __m512 h4 = halves(a4, a12), h5 = halves(a5, a13), h6 = halves(a6, a14), h7 = halves(a7, a15);
  const __m512 q0 = quarters(h0, h4), q1 = quarters(h1, h5), q2 = quarters(h2, h6), q3 = quarters(h3, h7);
  return singles(pairs(q0, q2), pairs(q1, q3));
}

// Input l of reduce16: acc[kReduceOrder[l]], 0 past the block's n sums.
template <int kN, int kL>
XENT_AVX512 inline __m512 lane_input(const __m512* acc) {
  constexpr int k = kReduceOrder[kL];
  if constexpr (k < kN) return acc[k];
  return _mm512_setzero_ps();
}

// One step of dot_block: 16 columns of d (kMasked: the lanes of m).
// (Always inlined: a call for the masked last step would keep the
// accumulators in a stack array, zeroed and stored for every block.)
template <int R, int C, bool kMasked>
XENT_AVX512 __attribute__((always_inline)) inline void dot_step(const float* __restrict H, i64 ldh, const float* const* w, i64 d, __mmask16 m,
                                 __m512* acc) {
  __m512 wv[C];
#pragma GCC unroll 16
  for (int j = 0; j < C; ++j) wv[j] = load_cols<kMasked>(w[j] + d, m);
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    __m512 h = load_cols<kMasked>(H + i * ldh + d, m);
    // One load per row vector: left alone, GCC folds it into each of the C
    // FMAs as a memory operand (R·C + C loads per R·C FMAs, more than the
    // one 512-bit load per cycle Zen 4 has beside its one FMA).
    asm("" : "+v"(h));
#pragma GCC unroll 16
    for (int j = 0; j < C; ++j) acc[i * C + j] = _mm512_fmadd_ps(h, wv[j], acc[i * C + j]);
  }
}

// Z[i·ldz + j] = Σ_d H[i·ldh + d] · W[j·ldw + d] for i < R, j < nc (≤ C;
// W rows past nc repeat a valid one).
template <int R, int C>
XENT_AVX512 void dot_block(const float* __restrict H, i64 ldh, const float* __restrict W, i64 ldw, i64 D,
                           float* __restrict Z, i64 ldz, i64 nc) {
  static_assert(R * C <= 16, "one reduction of 16 sums per block");
  __m512 acc[R * C];
  // (Unrolled: as a loop GCC turned it into a memset of a stack array that
  // nothing reads, 1 KiB per block.)
#pragma GCC unroll 16
  for (int k = 0; k < R * C; ++k) acc[k] = _mm512_setzero_ps();
  const float* w[C];
  for (int j = 0; j < C; ++j) w[j] = W + std::min<i64>(j, nc - 1) * ldw;
  const i64 dfull = D / 16 * 16;
  for (i64 d = 0; d < dfull; d += 16) dot_step<R, C, false>(H, ldh, w, d, 0, acc);
  if (dfull < D) dot_step<R, C, true>(H, ldh, w, dfull, first_lanes(D - dfull), acc);
  // acc in the reduction's lane order (kReduceOrder), 0 past R·C.
  alignas(64) float sums[16];
  _mm512_store_ps(sums, reduce16(lane_input<R * C, 0>(acc), lane_input<R * C, 1>(acc), lane_input<R * C, 2>(acc),
                                 lane_input<R * C, 3>(acc), lane_input<R * C, 4>(acc), lane_input<R * C, 5>(acc),
                                 lane_input<R * C, 6>(acc), lane_input<R * C, 7>(acc), lane_input<R * C, 8>(acc),
                                 lane_input<R * C, 9>(acc), lane_input<R * C, 10>(acc), lane_input<R * C, 11>(acc),
                                 lane_input<R * C, 12>(acc), lane_input<R * C, 13>(acc), lane_input<R * C, 14>(acc),
                                 lane_input<R * C, 15>(acc)));
  for (int i = 0; i < R; ++i) {
    float* z = Z + i * ldz;
    const float* si = sums + i * C;
    if (nc == C) {
#pragma GCC unroll 16
      for (int j = 0; j < C; ++j) z[j] = si[j];
    } else {
      for (i64 j = 0; j < nc; ++j) z[j] = si[j];
    }
  }
}

// Classes [v0, v1) of R ≤ 4 rows: blocks of R rows × C classes, 4 × 4 for a
// full group (R + C loads per R·C FMAs: 4 × 4 ran at 100 GFLOP/s on one
// core, 8 × 2 at 70, with W in cache).
template <int R>
void dot_rows(const float* H, i64 ldh, i64 D, const float* W, i64 ldw, float* Z, i64 ldz, i64 v0, i64 v1) {
  constexpr int C = R == 1 ? 8 : R == 2 ? 6 : 4;
  for (i64 v = v0; v < v1; v += C)
    dot_block<R, C>(H, ldh, W + v * ldw, ldw, D, Z + v, ldz, std::min<i64>(C, v1 - v));
}

// Thread t of T: its share of the classes, in units of 16, each unit
// through all row groups while its 16 rows of W sit in L1. Every sum has the
// same shape whatever block it falls in (lane l sums d ≡ l mod 16 in order;
// the reduction tree is the same for every input), so the split does not
// change a bit.
void logits_dot_share(i64 c, i64 V, i64 D, const float* H, i64 ldh, const float* W, i64 ldw, float* Z,
                      i64 ldz, i64 t, i64 T) {
  const i64 units = (V + 15) / 16;
  for (i64 u = units * t / T; u < units * (t + 1) / T; ++u) {
    const i64 v0 = 16 * u, v1 = std::min(V, v0 + 16);
    for (i64 n0 = 0; n0 < c; n0 += 4) {
      const float* h = H + n0 * ldh;
      float* z = Z + n0 * ldz;
      switch (std::min<i64>(4, c - n0)) {
        case 1: dot_rows<1>(h, ldh, D, W, ldw, z, ldz, v0, v1); break;
        case 2: dot_rows<2>(h, ldh, D, W, ldw, z, ldz, v0, v1); break;
        case 3: dot_rows<3>(h, ldh, D, W, ldw, z, ldz, v0, v1); break;
        default: dot_rows<4>(h, ldh, D, W, ldw, z, ldz, v0, v1); break;
      }
    }
  }
}

#pragma GCC diagnostic pop

// ------------------------------------------------------------- grad_hidden

// c[i][0, 64) += Σ_{v<K} g[i][v] · w[v·ldw + (0, 64)] for i < kRows (≤ 6).
// kMasked: d is cut by m[q]. pf: the W block this thread reads next,
// fetched into cache meanwhile. The row count is a template parameter so
// that the accumulators stay in registers (with a run-time count below the
// block's, GCC kept them on the stack: 24 extra stores and loads a block).
template <bool kMasked, int kRows>
XENT_AVX512 void hidden_block(const float* const* g, const float* __restrict w, i64 ldw, i64 K,
                              float* const* c, const __mmask16* m, const float* pf) {
  if (K < 1) __builtin_unreachable();  // as in weight_block: no spills
  __m512 acc[kRows][kHiddenVecs];
  for (int i = 0; i < kRows; ++i)
    for (int q = 0; q < kHiddenVecs; ++q) acc[i][q] = load_cols<kMasked>(c[i] + 16 * q, kMasked ? m[q] : 0);
  const float* gr[kRows];
  for (int i = 0; i < kRows; ++i) gr[i] = g[i];
  for (i64 v = 0; v < K; ++v) {
    const float* wr = w + v * ldw;
    __m512 wv[kHiddenVecs];
#pragma GCC unroll 6
    for (int q = 0; q < kHiddenVecs; ++q) wv[q] = load_cols<kMasked>(wr + 16 * q, kMasked ? m[q] : 0);
    if (pf) {
      const char* p = reinterpret_cast<const char*>(pf + v * ldw);
#pragma GCC unroll 6
      for (int q = 0; q < kHiddenVecs; ++q) _mm_prefetch(p + 64 * q, _MM_HINT_T0);
    }
#pragma GCC unroll 6
    for (int i = 0; i < kRows; ++i) {
      const __m512 b = _mm512_set1_ps(gr[i][v]);
#pragma GCC unroll 6
      for (int q = 0; q < kHiddenVecs; ++q) acc[i][q] = _mm512_fmadd_ps(wv[q], b, acc[i][q]);
    }
  }
  for (int i = 0; i < kRows; ++i)
    for (int q = 0; q < kHiddenVecs; ++q) store_cols<kMasked>(c[i] + 16 * q, kMasked ? m[q] : 0, acc[i][q]);
}

template <bool kMasked>
void hidden_block_rows(i64 rows, const float* const* g, const float* w, i64 ldw, i64 K, float* const* c,
                       const __mmask16* m, const float* pf) {
  switch (rows) {
    case 1: hidden_block<kMasked, 1>(g, w, ldw, K, c, m, pf); break;
    case 2: hidden_block<kMasked, 2>(g, w, ldw, K, c, m, pf); break;
    case 3: hidden_block<kMasked, 3>(g, w, ldw, K, c, m, pf); break;
    case 4: hidden_block<kMasked, 4>(g, w, ldw, K, c, m, pf); break;
    case 5: hidden_block<kMasked, 5>(g, w, ldw, K, c, m, pf); break;
    default: hidden_block<kMasked, 6>(g, w, ldw, K, c, m, pf); break;
  }
}

// grad_hidden the other way round, shaped like the logits kernel: the
// chunk's rows are the vector lanes; block_6xP sums a block of gHᵀ (6
// columns d0..d0+5 of W broadcast) over 256 classes of transposed G.
void grad_hidden_t_impl(i64 c, i64 V, i64 D, const float* G, i64 ldg, const float* W, i64 ldw, float* gH,
                        i64 ldgh, bool accumulate, float* acc_t, int nt) {
  const RowBlocks rb{c};
  const i64 cpad = (c + 15) / 16 * 16;
  std::memset(acc_t, 0, sizeof(float) * static_cast<std::size_t>(cpad * D));
  const i64 groups = (D + kLogitClasses - 1) / kLogitClasses;
  // G's columns [v0, v0 + K) transposed, block by block of 64 rows (as Hᵀ in
  // the logits kernel): K × 16P floats per block, in the scratch after the
  // sums; shared, each thread transposing a share of the rows.
  static_assert(kHiddenVocab == 256, "chunk_logits_scratch holds 256 classes of G");
  float* gt = acc_t + cpad * D;
#pragma omp parallel num_threads(nt)
  {
    const i64 t = omp_get_thread_num(), T = omp_get_num_threads();
    const i64 g0 = groups * t / T, g1 = groups * (t + 1) / T;
    const i64 n0 = cpad * t / T, n1 = cpad * (t + 1) / T;
    for (i64 v0 = 0; v0 < V; v0 += kHiddenVocab) {
      const i64 K = std::min(kHiddenVocab, V - v0);
      transpose_rows(rb, G + v0, ldg, n0, n1, K, gt, kHiddenVocab);
#pragma omp barrier
      for (i64 g = g0; g < g1; ++g) {
        const i64 d0 = g * kLogitClasses, nd = std::min(kLogitClasses, D - d0);
        // Columns past D repeat a valid one and are not stored.
        i64 off[kLogitClasses];
        for (i64 j = 0; j < kLogitClasses; ++j) off[j] = std::min(j, nd - 1);
        for (i64 b = 0; b < rb.count(); ++b) {
          const i64 P = rb.vecs(b);
          block_6x(P, gt + b * kRowBlock * kHiddenVocab, W + v0 * ldw + d0, ldw, off, K,
                   acc_t + b * kRowBlock * D + d0 * 16 * P, 16 * P, true, nd);
        }
      }
#pragma omp barrier
    }
    // gH (+)= the accumulated gHᵀ, rows split across the threads.
#pragma omp for schedule(static)
    for (i64 n = 0; n < c; ++n) {
      const i64 b = n / kRowBlock, width = 16 * rb.vecs(b), ln = n % kRowBlock;
      const float* ab = acc_t + b * kRowBlock * D;
      float* out = gH + n * ldgh;
      if (accumulate)
        for (i64 d = 0; d < D; ++d) out[d] += ab[d * width + ln];
      else
        for (i64 d = 0; d < D; ++d) out[d] = ab[d * width + ln];
    }
  }
}

// The row-block form: 6 chunk rows × 4 vectors of d per block (each step
// loads 4 lines of W, from L2, for 24 FMAs; 4 rows × 6 vectors ran at
// 146–170 GFLOP/s against 173–190 for this shape, 8 × 3 spills registers).
template <int kRows>
void grad_hidden_rows(i64 c, i64 V, i64 D, const float* G, i64 ldg, const float* W, i64 ldw, float* gH,
                       i64 ldgh, bool accumulate, i64 t, i64 T) {
  constexpr i64 kCols = 16 * kHiddenVecs;
  const i64 dblocks = (D + kCols - 1) / kCols, ngroups = (c + kRows - 1) / kRows;
  const i64 tiles = dblocks * ngroups;  // d-block major: a thread's tiles share W blocks
  const i64 t0 = tiles * t / T, t1 = tiles * (t + 1) / T;
  if (!accumulate)  // this thread's tiles of gH start from 0
    for (i64 tile = t0; tile < t1; ++tile) {
      const i64 d0 = tile / ngroups * kCols, n0 = tile % ngroups * kRows;
      for (i64 n = n0; n < std::min(c, n0 + kRows); ++n)
        std::memset(gH + n * ldgh + d0, 0, sizeof(float) * std::min(kCols, D - d0));
    }
  for (i64 v0 = 0; v0 < V; v0 += kHiddenVocab) {
    const i64 K = std::min(kHiddenVocab, V - v0);
    for (i64 tile = t0; tile < t1; ++tile) {
      const i64 db = tile / ngroups, ng = tile % ngroups;
      const i64 d0 = db * kCols, n0 = ng * kRows;
      const i64 rows = std::min<i64>(kRows, c - n0);
      const float* g[kRows];
      float* cr[kRows];
      for (i64 i = 0; i < rows; ++i) {
        g[i] = G + (n0 + i) * ldg + v0;
        cr[i] = gH + (n0 + i) * ldgh + d0;
      }
      // At the first tile of a W block: fetch this thread's next W block
      // (the next d block, or the first one of the next vocabulary rows).
      const float* pf = nullptr;
      if (tile == t0 || ng == 0) {
        if ((db + 1) * ngroups < t1)
          pf = W + v0 * ldw + (db + 1) * kCols;
        else if (v0 + kHiddenVocab < V)
          pf = W + (v0 + kHiddenVocab) * ldw + (t0 / ngroups) * kCols;
      }
      const float* wb = W + v0 * ldw + d0;
      if (d0 + kCols <= D) {
        hidden_block_rows<false>(rows, g, wb, ldw, K, cr, nullptr, pf);
      } else {
        __mmask16 m[kHiddenVecs];
        for (i64 q = 0; q < kHiddenVecs; ++q) m[q] = first_lanes(std::max<i64>(0, D - d0 - 16 * q));
        hidden_block_rows<true>(rows, g, wb, ldw, K, cr, m, pf);
      }
    }
  }
}

// Blocks of 6 rows; a small chunk (8 rows at 512×256×1000) in blocks of 4:
// 6 + 2 leaves a block that does 8 FMAs per 4 loads of W (8 rows, 2 threads:
// 137–146 GFLOP/s in 6-row blocks, 205–208 in 4-row blocks).
void grad_hidden_share(i64 c, i64 V, i64 D, const float* G, i64 ldg, const float* W, i64 ldw, float* gH,
                       i64 ldgh, bool accumulate, i64 t, i64 T) {
  if (c < kSmallChunkRows)
    grad_hidden_rows<4>(c, V, D, G, ldg, W, ldw, gH, ldgh, accumulate, t, T);
  else
    grad_hidden_rows<kHiddenRows>(c, V, D, G, ldg, W, ldw, gH, ldgh, accumulate, t, T);
}

// ------------------------------------------------------------- grad_weight

// c[i][0, 64) += Σ_{n<R} g[n·ldg + i] · h[n·ldh + (0, 64)] for i < kRows
// (≤ 6 classes; a template parameter, as in hidden_block). pf: the next gW
// block, fetched meanwhile: one line per step, or (kFetchAll: chunks with
// fewer steps than the block has lines) all at the start.
template <bool kMasked, int kRows, bool kFetchAll>
XENT_AVX512 void weight_block(const float* __restrict g, i64 ldg, const float* __restrict h, i64 ldh, i64 R,
                              float* c, i64 ldc, const __mmask16* m, const float* pf) {
  // R ≥ 1 (callers return early on empty chunks). Told so, GCC keeps the
  // accumulators in registers from the loads to the stores; else the path
  // that skips the loop made it keep them in a stack array, with a store
  // and a reload of each on both sides of the loop.
  if (R < 1) __builtin_unreachable();
  constexpr int kLines = kRows * kWeightVecs;
  if (kFetchAll && pf)
    for (int k = 0; k < kLines; ++k)
      _mm_prefetch(reinterpret_cast<const char*>(pf + (k / kWeightVecs) * ldc + 16 * (k % kWeightVecs)), _MM_HINT_T0);
  __m512 acc[kRows][kWeightVecs];
  for (int i = 0; i < kRows; ++i)
    for (int q = 0; q < kWeightVecs; ++q) acc[i][q] = load_cols<kMasked>(c + i * ldc + 16 * q, kMasked ? m[q] : 0);
  for (i64 n = 0; n < R; ++n) {
    const float* hr = h + n * ldh;
    __m512 hv[kWeightVecs];
#pragma GCC unroll 8
    for (int q = 0; q < kWeightVecs; ++q) hv[q] = load_cols<kMasked>(hr + 16 * q, kMasked ? m[q] : 0);
    if (!kFetchAll && pf && n < kLines)
      _mm_prefetch(reinterpret_cast<const char*>(pf + (n / kWeightVecs) * ldc + 16 * (n % kWeightVecs)), _MM_HINT_T0);
#pragma GCC unroll 12
    for (int i = 0; i < kRows; ++i) {
      const __m512 b = _mm512_set1_ps(g[n * ldg + i]);
#pragma GCC unroll 8
      for (int q = 0; q < kWeightVecs; ++q) acc[i][q] = _mm512_fmadd_ps(hv[q], b, acc[i][q]);
    }
  }
  for (int i = 0; i < kRows; ++i)
    for (int q = 0; q < kWeightVecs; ++q) store_cols<kMasked>(c + i * ldc + 16 * q, kMasked ? m[q] : 0, acc[i][q]);
}

template <bool kMasked, bool kFetchAll>
void weight_block_rows(i64 rows, const float* g, i64 ldg, const float* h, i64 ldh, i64 R, float* c, i64 ldc,
                       const __mmask16* m, const float* pf) {
  switch (rows) {
    case 1: weight_block<kMasked, 1, kFetchAll>(g, ldg, h, ldh, R, c, ldc, m, pf); break;
    case 2: weight_block<kMasked, 2, kFetchAll>(g, ldg, h, ldh, R, c, ldc, m, pf); break;
    case 3: weight_block<kMasked, 3, kFetchAll>(g, ldg, h, ldh, R, c, ldc, m, pf); break;
    case 4: weight_block<kMasked, 4, kFetchAll>(g, ldg, h, ldh, R, c, ldc, m, pf); break;
    case 5: weight_block<kMasked, 5, kFetchAll>(g, ldg, h, ldh, R, c, ldc, m, pf); break;
    default: weight_block<kMasked, 6, kFetchAll>(g, ldg, h, ldh, R, c, ldc, m, pf); break;
  }
}

// Thread t of T: its share of the 6-class groups. The broadcasts of a step
// are 6 consecutive floats of a G row: packed side by side into gt (c·6
// floats) where given (chunk_grad_weight gives it from kSmallChunkRows rows
// on: 192 against 186 GFLOP/s read in place, 64-row chunk at D = 4096), else
// read where they lie (small chunks, whose packing would cost as much as
// their few steps). A small chunk also fetches the next gW block at once.
void grad_weight_share(i64 c, i64 V, i64 D, const float* G, i64 ldg, const float* H, i64 ldh, float* gW,
                       i64 ldgw, float* gt, i64 t, i64 T) {
  constexpr i64 kCols = 16 * kWeightVecs;
  const bool small = c < kSmallChunkRows;
  const i64 groups = (V + kWeightClasses - 1) / kWeightClasses;
  const i64 g0 = groups * t / T, g1 = groups * (t + 1) / T;
  __mmask16 tail[kWeightVecs];
  const i64 dfull = D / kCols * kCols;
  for (i64 q = 0; q < kWeightVecs; ++q) tail[q] = first_lanes(std::max<i64>(0, D - dfull - 16 * q));
  for (i64 g = g0; g < g1; ++g) {
    const i64 v0 = g * kWeightClasses, rows = std::min(kWeightClasses, V - v0);
    const float* gb = G + v0;
    i64 ldb = ldg;
    if (gt) {
      for (i64 n = 0; n < c; ++n)
        for (i64 i = 0; i < rows; ++i) gt[n * kWeightClasses + i] = G[n * ldg + v0 + i];
      gb = gt;
      ldb = kWeightClasses;
    }
    float* cb = gW + v0 * ldgw;
    for (i64 d0 = 0; d0 < dfull; d0 += kCols) {
      const float* pf = d0 + kCols < dfull ? cb + d0 + kCols : (g + 1 < g1 ? cb + kWeightClasses * ldgw : nullptr);
      if (small)
        weight_block_rows<false, true>(rows, gb, ldb, H + d0, ldh, c, cb + d0, ldgw, nullptr, pf);
      else
        weight_block_rows<false, false>(rows, gb, ldb, H + d0, ldh, c, cb + d0, ldgw, nullptr, pf);
    }
    if (dfull < D) weight_block_rows<true, false>(rows, gb, ldb, H + dfull, ldh, c, cb + dfull, ldgw, tail, nullptr);
  }
}

}  // namespace

void chunk_logits(i64 c, i64 V, i64 D, const float* H, i64 ldh, const float* W, i64 ldw, float* Z, i64 ldz,
                  float* scratch, int nt) {
  if (c <= 0 || V <= 0) return;
  if (D == 0) {
    for (i64 n = 0; n < c; ++n) std::fill(Z + n * ldz, Z + n * ldz + V, 0.0f);
    return;
  }
  if (c < kSmallChunkRows) {
#pragma omp parallel num_threads(nt)
    logits_dot_share(c, V, D, H, ldh, W, ldw, Z, ldz, omp_get_thread_num(), omp_get_num_threads());
    return;
  }
  logits_impl(c, V, D, H, ldh, W, ldw, Z, ldz, scratch, nt);
}

void chunk_grad_hidden(i64 c, i64 V, i64 D, const float* G, i64 ldg, const float* W, i64 ldw, float* gH,
                       i64 ldgh, bool accumulate, float* scratch, int nt) {
  if (c <= 0 || D <= 0) return;
  // Measured per 64-row chunk (2 threads, GFLOP/s, transposed against
  // row-block form): D = 3072 208 / 170, 4096 197–206 / 154–163 (128 rows:
  // 194 / 187), 5120 ~200 / ~200; but D = 2048 and 1024 116–128 / 155–183,
  // whatever the vocabulary rows per pass (64–1024): the row-block form
  // stays below 3072.
  if (scratch && c >= kSmallChunkRows && D >= kHiddenTransposedFrom) {
    grad_hidden_t_impl(c, V, D, G, ldg, W, ldw, gH, ldgh, accumulate, scratch, nt);
    return;
  }
  // (V = 0: the row-block form zeroes gH, or leaves it, and stops.)
#pragma omp parallel num_threads(nt)
  grad_hidden_share(c, V, D, G, ldg, W, ldw, gH, ldgh, accumulate, omp_get_thread_num(), omp_get_num_threads());
}

void chunk_grad_weight(i64 c, i64 V, i64 D, const float* G, i64 ldg, const float* H, i64 ldh, float* gW,
                       i64 ldgw, int nt) {
  if (c <= 0 || V <= 0 || D <= 0) return;
#pragma omp parallel num_threads(nt)
  {
    std::unique_ptr<float[]> gt(c < kSmallChunkRows ? nullptr : new float[static_cast<std::size_t>(c * kWeightClasses)]);
    grad_weight_share(c, V, D, G, ldg, H, ldh, gW, ldgw, gt.get(), omp_get_thread_num(), omp_get_num_threads());
  }
}

void small_chunk_logits(i64 c, i64 V, i64 D, const float* H, i64 ldh, const float* W, i64 ldw, float* Z,
                        i64 ldz, int t, int T) {
  if (c <= 0 || V <= 0) return;
  logits_dot_share(c, V, D, H, ldh, W, ldw, Z, ldz, t, T);  // (D = 0: empty sums, zeros)
}

void small_chunk_grad_hidden(i64 c, i64 V, i64 D, const float* G, i64 ldg, const float* W, i64 ldw, float* gH,
                             i64 ldgh, bool accumulate, int t, int T) {
  if (c <= 0 || D <= 0) return;
  grad_hidden_share(c, V, D, G, ldg, W, ldw, gH, ldgh, accumulate, t, T);
}

void small_chunk_grad_weight(i64 c, i64 V, i64 D, const float* G, i64 ldg, const float* H, i64 ldh, float* gW,
                             i64 ldgw, int t, int T) {
  if (c <= 0 || V <= 0 || D <= 0) return;
  grad_weight_share(c, V, D, G, ldg, H, ldh, gW, ldgw, nullptr, t, T);
}

// ------------------------------------------------------- row statistics
//
// chunk_row_stats: the logits kernel's register block on one vector of
// rows (16 rows × 6 classes per block, 6 accumulators: one Hᵀ load and 6
// broadcasts per 6 FMAs), written into a tile of 48 classes in L1, which
// is then folded into the rows' running statistics: its maximum, the
// rescaling of the sums where the maximum grew, and one exp per logit.

// (GCC 12 warns that the intrinsics' _mm512_undefined_ps operands are used
// uninitialized; they are not read.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {

constexpr i64 kStatsTile = 48;  // classes per tile (8 blocks of 6)

struct StatsLanes {
  __m512 m;          // running maximum
  __m512 ones;       // how many logits so far equal m (their exp terms, exactly 1 each;
                     // while m is -inf, the -inf logits: rescaled by 0 when m grows)
  __m512d rest[2];   // Σ exp(z − m) over the others (lanes 0–7, 8–15)
  __m512 zt;         // the target's logit
  __m512i target;    // the target class (−1: none)
  __m512 best;       // argmax: the largest logit seen, first occurrence
  __m512i arg;
};

XENT_AVX512 inline __m256 low_half(__m512 v) { return _mm512_castps512_ps256(v); }
XENT_AVX512 inline __m256 high_half(__m512 v) {
  return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

// Folds classes [v0, v0 + n) (class v0 + j's 16 lanes at tile + 16j, bias
// not yet added) into st.
template <bool kArgmax>
XENT_AVX512 void fold_tile(float* tile, i64 n, i64 v0, const float* bias, StatsLanes& st) {
  const __m512 neg_inf = _mm512_set1_ps(-__builtin_inff());
  __m512 tile_max = neg_inf;
  for (i64 j = 0; j < n; ++j) {
    __m512 z = _mm512_load_ps(tile + 16 * j);
    if (bias) {
      z = _mm512_add_ps(z, _mm512_set1_ps(bias[v0 + j]));
      _mm512_store_ps(tile + 16 * j, z);
    }
    tile_max = _mm512_max_ps(tile_max, z);
  }
  const __m512 m = _mm512_max_ps(st.m, tile_max);
  // The exp reference: m, or 0 while a row has seen only -inf (then every
  // z − ref is -inf and its exp 0, where -inf − -inf would be NaN).
  const __m512 ref = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(m, neg_inf, _CMP_NEQ_UQ), m);
  const __mmask16 grew = _mm512_cmp_ps_mask(m, st.m, _CMP_GT_OQ);
  if (grew) {
    // The sums so far were relative to the old maximum: rescale them, the
    // old maximum's terms (exactly 1 each) joining the rest. A row that had
    // only -inf gets factor exp(-inf) = 0.
    const __m512 f = exp_nonpositive_avx512(_mm512_sub_ps(st.m, ref));
    const __m512d f_lo = _mm512_cvtps_pd(low_half(f)), f_hi = _mm512_cvtps_pd(high_half(f));
    const __m512d ones_lo = _mm512_cvtps_pd(low_half(st.ones)), ones_hi = _mm512_cvtps_pd(high_half(st.ones));
    const auto g_lo = static_cast<__mmask8>(grew), g_hi = static_cast<__mmask8>(grew >> 8);
    st.rest[0] = _mm512_mask_mul_pd(st.rest[0], g_lo, _mm512_add_pd(st.rest[0], ones_lo), f_lo);
    st.rest[1] = _mm512_mask_mul_pd(st.rest[1], g_hi, _mm512_add_pd(st.rest[1], ones_hi), f_hi);
    st.ones = _mm512_maskz_mov_ps(static_cast<__mmask16>(~grew), st.ones);
  }
  st.m = m;
  // Σ exp in float32 over at most 8 classes (≤ 7 roundings, relative to
  // the terms' own mass: the maximum's terms are counted apart), then
  // widened.
  const __m512 one = _mm512_set1_ps(1.0f);
  __m512 part = _mm512_setzero_ps();
  for (i64 j = 0; j < n; ++j) {
    const __m512 z = _mm512_load_ps(tile + 16 * j);
    const __m512 e = exp_nonpositive_avx512(_mm512_sub_ps(z, ref));
    const __mmask16 at_max = _mm512_cmp_ps_mask(z, m, _CMP_EQ_OQ);
    st.ones = _mm512_mask_add_ps(st.ones, at_max, st.ones, one);
    part = _mm512_mask_add_ps(part, static_cast<__mmask16>(~at_max), part, e);
    const __m512i cls = _mm512_set1_epi32(static_cast<int>(v0 + j));
    st.zt = _mm512_mask_mov_ps(st.zt, _mm512_cmpeq_epi32_mask(st.target, cls), z);
    if (kArgmax) {
      const __mmask16 above = _mm512_cmp_ps_mask(z, st.best, _CMP_GT_OQ);
      st.best = _mm512_mask_mov_ps(st.best, above, z);
      st.arg = _mm512_mask_mov_epi32(st.arg, above, cls);
    }
    if (j % 8 == 7 || j == n - 1) {
      st.rest[0] = _mm512_add_pd(st.rest[0], _mm512_cvtps_pd(low_half(part)));
      st.rest[1] = _mm512_add_pd(st.rest[1], _mm512_cvtps_pd(high_half(part)));
      part = _mm512_setzero_ps();
    }
  }
}

template <bool kArgmax>
XENT_AVX512 void row_stats(i64 V, i64 D, const float* W, i64 ldw, const float* bias, const float* ht,
                           StatsLanes& st) {
  alignas(64) float tile[kStatsTile * 16];
  for (i64 v0 = 0; v0 < V; v0 += kStatsTile) {
    const i64 n = std::min(kStatsTile, V - v0);
    for (i64 g = 0; g < n; g += kLogitClasses) {
      const i64 ng = std::min(kLogitClasses, n - g);
      i64 off[kLogitClasses];  // class j's row of W (rows past ng repeat a valid one)
      for (i64 j = 0; j < kLogitClasses; ++j) off[j] = std::min(j, ng - 1) * ldw;
      block_6xP<1>(ht, W + (v0 + g) * ldw, 1, off, D, tile + 16 * g, 16, false, ng);
    }
    fold_tile<kArgmax>(tile, n, v0, bias, st);
  }
}

}  // namespace

XENT_AVX512 void chunk_row_stats(i64 c, i64 V, i64 D, const float* H, i64 ldh, const float* W, i64 ldw,
                                 const float* bias, const std::int32_t* target, bool want_argmax, float* ht,
                                 ChunkRowStats* out) {
  // Hᵀ: ht[k·16 + i] = H[i][k], rows past c zero.
  transpose_rows(RowBlocks{c}, H, ldh, 0, kStatsChunkRows, D, ht, D);
  StatsLanes st;
  st.m = st.best = _mm512_set1_ps(-__builtin_inff());
  st.ones = st.zt = _mm512_setzero_ps();
  st.rest[0] = st.rest[1] = _mm512_setzero_pd();
  st.target = _mm512_loadu_si512(target);
  st.arg = _mm512_setzero_si512();
  if (want_argmax)
    row_stats<true>(V, D, W, ldw, bias, ht, st);
  else
    row_stats<false>(V, D, W, ldw, bias, ht, st);
  _mm512_store_ps(out->m, st.m);
  _mm512_store_ps(out->zt, st.zt);
  _mm512_store_si512(out->argmax, st.arg);
  const __m512d minus_one = _mm512_set1_pd(-1.0);
  _mm512_store_pd(out->sm1, _mm512_add_pd(_mm512_add_pd(_mm512_cvtps_pd(low_half(st.ones)), minus_one), st.rest[0]));
  _mm512_store_pd(out->sm1 + 8,
                  _mm512_add_pd(_mm512_add_pd(_mm512_cvtps_pd(high_half(st.ones)), minus_one), st.rest[1]));
}

#pragma GCC diagnostic pop

#else  // no x86-64 AVX-512 build: the callers use the BLAS

bool chunk_gemm_supported() { return false; }
std::size_t chunk_logits_scratch(i64 c, i64 D) {
  if (c < kSmallChunkRows) return 0;
  return static_cast<std::size_t>((c + 15) / 16 * 16) * static_cast<std::size_t>(D);
}
void chunk_logits(i64, i64, i64, const float*, i64, const float*, i64, float*, i64, float*, int) {}
void chunk_grad_hidden(i64, i64, i64, const float*, i64, const float*, i64, float*, i64, bool, float*, int) {}
void chunk_grad_weight(i64, i64, i64, const float*, i64, const float*, i64, float*, i64, int) {}
void small_chunk_logits(i64, i64, i64, const float*, i64, const float*, i64, float*, i64, int, int) {}
void small_chunk_grad_hidden(i64, i64, i64, const float*, i64, const float*, i64, float*, i64, bool, int, int) {}
void small_chunk_grad_weight(i64, i64, i64, const float*, i64, const float*, i64, float*, i64, int, int) {}
void chunk_row_stats(i64, i64, i64, const float*, i64, const float*, i64, const float*, const std::int32_t*, bool,
                     float*, ChunkRowStats*) {}

#endif

}  // namespace xent::cpu
