// The three matrix products of one token chunk of linear_cross_entropy
// (src/linear_cross_entropy.cc), as AVX-512 kernels of our own:
//
//   logits      Z[c×V]  = H[c×D] · W[V×D]ᵀ
//   grad_hidden gH[c×D] = G[c×V] · W[V×D]        (or +=)
//   grad_weight gW[V×D] += G[c×V]ᵀ · H[c×D]
//
// Why not the BLAS: a chunk has few rows (c = 64 at 4096×4096×32000 under
// the memory bound), and OpenBLAS repacks the whole 0.5 GB weight on
// every such call: its chunk products ran at 131 / 153 / 173 GFLOP/s against
// 206 for the same products at full size (bench/linear_cross_entropy_bench,
// docs/performance.md). These kernels read W, G, H and gW where they lie, no
// packing of the large operands: each is a register block of 24 float32
// vectors fed by one operand's vectors and the other's broadcast scalars.
//
// Every output element is one sequence of FMAs in a fixed order (over d, v
// or the chunk's rows; for the logits of chunks under 16 rows, 16 lane
// sequences along d and one fixed addition tree) that does not depend on
// the thread count: the same bits for any number of threads. Matrices are
// row-major with the given row strides (in floats). Call the chunk_*
// functions from outside any OpenMP parallel region (`nt` threads are
// used), the small_chunk_* ones from inside one.
#pragma once

#include <cstddef>
#include <cstdint>

namespace xent::cpu {

// Whether this build has the kernels and this CPU runs them (AVX-512F).
bool chunk_gemm_supported();

// Chunks of fewer rows take forms that need no scratch (the logits as dot
// products along d) and may run inside the caller's parallel region (the
// small_chunk_* functions below).
constexpr std::int64_t kSmallChunkRows = 16;

// Scratch floats chunk_logits and chunk_grad_hidden need (H transposed,
// rows padded to 16, and a transposed block of 256 classes of G); 0 for
// chunks of fewer than kSmallChunkRows rows.
std::size_t chunk_logits_scratch(std::int64_t c, std::int64_t D);

// Z = H·Wᵀ. `scratch`: chunk_logits_scratch(c, D) floats, 64-byte aligned.
void chunk_logits(std::int64_t c, std::int64_t V, std::int64_t D, const float* H, std::int64_t ldh,
                  const float* W, std::int64_t ldw, float* Z, std::int64_t ldz, float* scratch, int nt);

// gH = G·W (accumulate: gH += G·W). `scratch`: chunk_logits_scratch(c, D)
// floats, 64-byte aligned (the logits' scratch, free again after them), or
// nullptr (then the row-block form only).
void chunk_grad_hidden(std::int64_t c, std::int64_t V, std::int64_t D, const float* G, std::int64_t ldg,
                       const float* W, std::int64_t ldw, float* gH, std::int64_t ldgh, bool accumulate,
                       float* scratch, int nt);

// gW += Gᵀ·H.
void chunk_grad_weight(std::int64_t c, std::int64_t V, std::int64_t D, const float* G, std::int64_t ldg,
                       const float* H, std::int64_t ldh, float* gW, std::int64_t ldgw, int nt);

// The same three products for a chunk of c < kSmallChunkRows rows, called
// by every thread t of a parallel region of T threads: each does its share
// (classes for the logits and grad_weight, blocks of gH for grad_hidden) and
// returns without a barrier; the caller synchronizes between products that
// read what another wrote. Same results, bit for bit, as the functions
// above.
void small_chunk_logits(std::int64_t c, std::int64_t V, std::int64_t D, const float* H, std::int64_t ldh,
                        const float* W, std::int64_t ldw, float* Z, std::int64_t ldz, int t, int T);
void small_chunk_grad_hidden(std::int64_t c, std::int64_t V, std::int64_t D, const float* G, std::int64_t ldg,
                             const float* W, std::int64_t ldw, float* gH, std::int64_t ldgh, bool accumulate,
                             int t, int T);
void small_chunk_grad_weight(std::int64_t c, std::int64_t V, std::int64_t D, const float* G, std::int64_t ldg,
                             const float* H, std::int64_t ldh, float* gW, std::int64_t ldgw, int t, int T);

// Evaluation without the logits (linear_cross_entropy's forward for
// small chunks): for a chunk of c ≤ 16 rows of H (row i in lane i), the
// statistics of each row of Z = H·Wᵀ + bias over all V classes, computed
// from a few classes of logits at a time in registers and a 3 KiB tile,
// never stored. Each logit is one FMA sequence over d in order (as
// chunk_logits), plus bias[v] (nullptr: none) as one add. Per row:
//   m       the maximum logit (−inf: every logit −inf; +inf where one is
//           +inf; a NaN logit may or may not show here);
//   sm1     Σ_v exp(z_v − m) − 1, in fp64, the maximum's own terms counted
//           apart (exactly 1 each), so that confident rows (sm1 ≪ 1) keep
//           their relative accuracy; NaN where a logit is NaN. So a row is
//           finite iff m and sm1 both are. Where the running maximum grows,
//           the sum so far is rescaled by a float32 exp (~1 ulp each time, a
//           few times per row on random logits: ~1e-6 relative to sm1 at
//           worst in tests, below the float32 logits' own error);
//   zt      the logit of class target[i] (0 where target[i] < 0);
//   argmax  the first class of the maximum (with want_argmax).
// Lanes ≥ c hold zero rows. V < 2^24 (the count of maximum terms is a
// float32; class indices are int32). `ht`: 16·D floats, 64-byte aligned (H
// transposed). Runs on the calling thread (inside or outside a region).
struct ChunkRowStats {
  alignas(64) float m[16];
  alignas(64) double sm1[16];
  alignas(64) float zt[16];
  alignas(64) std::int32_t argmax[16];
};
constexpr std::int64_t kStatsChunkRows = 16;
void chunk_row_stats(std::int64_t c, std::int64_t V, std::int64_t D, const float* H, std::int64_t ldh,
                     const float* W, std::int64_t ldw, const float* bias, const std::int32_t* target,
                     bool want_argmax, float* ht, ChunkRowStats* out);

}  // namespace xent::cpu
