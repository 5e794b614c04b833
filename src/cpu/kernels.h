// The per-chunk SIMD kernels of the fused cross-entropy, as plain functions.
//
// The definitions live in cross_entropy-inl.h, compiled once per SIMD target
// by kernels.cc (Highway foreach_target) and chosen at run time. src/loss.cc
// splits every row into fixed column chunks (kChunk elements, independent of
// the thread count), calls ChunkStats on each, merges the (max, Σexp) pairs
// in chunk order, then calls ChunkGrad on each chunk. Because the chunking and
// every reduction order are fixed, the bits do not depend on the threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace xent::cpu {

// Columns per chunk: a multiple of every vector length × block, 128 KiB of
// float32 (stays in L2 between the statistics and the gradient pass). Rows up
// to kFixedRefMax columns find their maximum first and never rescale; longer
// rows start every later chunk at the maximum of their first chunk. (Chunks of
// 4096 and 8192 with software prefetch of the next chunk were measured too:
// no faster on this machine, see docs/performance.md.)
inline constexpr std::size_t kChunk = 32768;

// What one pass over a chunk of logits z[0, n) learns. The coefficient of
// class j is c_j = (w ? w_j : 1) · (p ? a·p_j + b : 1), used by label
// smoothing and soft targets (row loss Σ c_j (lse − z_j)).
struct ChunkStats {
  double max = 0;        // max_j z_j; -inf if every z_j is -inf
  double sum_exp = 0;    // Σ exp(z_j − max), fp64 lane accumulators
  // sum_exp in two exact parts: `ones` terms equal to exactly 1 (z_j = max)
  // and the `rest`, so that s − 1 = (ones − 1) + rest is formed without
  // subtracting nearly equal numbers (a confident row's loss is log1p(s − 1),
  // down to ~1e-30; 1 + 1e-12 in fp64 keeps only 4 digits of the 1e-12).
  // ones = 0: not split (then rest is unused and sum_exp is the sum).
  double ones = 0, rest = 0;
  double coef_sum = 0;   // Σ c_j                      (if want_coef)
  double coef_dot = 0;   // Σ c_j (max − z_j); c_j = 0 terms are 0 (if want_coef)
  double p_sum = 0;      // Σ p_j                      (if p)
  bool p_bad = false;    // some p_j is NaN or outside [0, 1]
  bool nonfinite = false;  // NaN or +inf may be present: the caller rescans
};

// Merges the statistics of two parts of a row, in column order: the exact
// max, the sums rescaled to it. A part whose logits are all -inf adds
// Σ c_j (max − (−inf)) = +inf to coef_dot when it has weight (also when the
// merged max is still -inf: a vocab-parallel shard can be all masked while
// other ranks are not), else nothing.
inline ChunkStats MergeStats(const ChunkStats& x, const ChunkStats& y) {
  ChunkStats m;
  m.max = std::max(x.max, y.max);
  double s = 0, dot = 0, ones = 0, rest = 0;
  for (const ChunkStats* c : {&x, &y}) {
    if (c->sum_exp > 0) {
      if (c->max == m.max) {
        s += c->sum_exp;
        ones += c->ones;
        rest += c->ones > 0 ? c->rest : c->sum_exp;
      } else {
        const double scaled = c->sum_exp * std::exp(c->max - m.max);  // no term is 1 any more
        s += scaled;
        rest += scaled;
      }
    }
    if (c->max == -std::numeric_limits<double>::infinity()) {
      if (c->coef_sum > 0) dot += std::numeric_limits<double>::infinity();
    } else {
      dot += c->coef_dot;
      if (c->coef_sum != 0) dot += c->coef_sum * (m.max - c->max);
    }
  }
  m.sum_exp = s;
  m.ones = ones;
  m.rest = rest;
  m.coef_dot = dot;
  m.coef_sum = x.coef_sum + y.coef_sum;
  m.p_sum = x.p_sum + y.p_sum;
  m.p_bad = x.p_bad || y.p_bad;
  m.nonfinite = x.nonfinite || y.nonfinite;
  return m;
}

// From `start` on (until the next segment), the chunk's exp values were
// taken relative to `ref` (the running maximum at that point).
struct Segment {
  std::size_t start;
  double ref;
};

struct CoefSpec {
  const void* w = nullptr;  // class weights of the chunk (same type as z)
  const void* p = nullptr;  // soft target row of the chunk (same type as z)
  double a = 1, b = 0;      // c_j = w_j (a p_j + b)
  bool want_coef = false;
  // Optional: exp(z_j − ref) for every j, as accumulated, so that the
  // gradient pass needs no second exp; and the segments of equal ref
  // (always at least one, starting at 0).
  void* e_out = nullptr;
  std::vector<Segment>* segments = nullptr;
  // The exp reference to start from (the maximum of the row's first chunk,
  // for its later chunks), so that a row's later chunks rarely rescale. If
  // -inf, a chunk of up to kFixedRefMax elements finds its own maximum
  // first (no rescaling at all), a longer one starts at its first block.
  double init_ref = -std::numeric_limits<double>::infinity();
  // Optional: memory to fetch into L1 while this chunk is processed, block
  // by block (the lines at prefetch + i·sizeof(T) while the block at z + i
  // is, n elements' worth in all; likewise prefetch_p beside p): the next
  // chunk the caller will read, or this chunk's own lines a fixed distance
  // ahead. A prefetch never faults, so the addresses may lie past the end of
  // the caller's array (callers form them as integers).
  const void* prefetch = nullptr;
  const void* prefetch_p = nullptr;
};
inline constexpr std::size_t kFixedRefMax = 8192;

// g_j = alpha·exp(z_j − max) − (w ? w_j : 1)·(p ? beta_p·p_j + beta : beta),
// or, with from_exp, alpha·e_j − (...) where e_j are stored exp values.
struct GradSpec {
  double max = 0;
  double alpha = 0;
  double beta_p = 0, beta = 0;
  const void* w = nullptr;
  const void* p = nullptr;
  bool subtract = false;   // false: the second term is absent
  bool stream = false;     // non-temporal stores (large outputs)
  bool from_exp = false;   // z holds exp values (CoefSpec::e_out), not logits
  // Element fix_index (if < n) is written as fix_value instead (the hard
  // target's own gradient, so that no store to the row follows its
  // streaming stores and no fence is needed per row).
  std::size_t fix_index = static_cast<std::size_t>(-1);
  double fix_value = 0;
};

void ChunkStatsF32(const float* z, std::size_t n, const CoefSpec& spec, ChunkStats* out);
void ChunkStatsF64(const double* z, std::size_t n, const CoefSpec& spec, ChunkStats* out);
// Two rows of n float32 logits each, side by side: the same results, bit
// for bit, as ChunkStatsF32 on each. The specs must ask for the same things
// (want_coef, w, p and e_out each set in both or in neither).
void ChunkStats2F32(const float* z0, const float* z1, std::size_t n, const CoefSpec& spec0, const CoefSpec& spec1,
                    ChunkStats* out0, ChunkStats* out1);
// max_j z_j (-inf if every z_j is -inf): ChunkStats::max without the pass,
// for a chunk with no NaN or +inf (with one, the row fails or is NaN anyway).
double ChunkMaxF32(const float* z, std::size_t n);
double ChunkMaxF64(const double* z, std::size_t n);
// g may alias z exactly (in place).
void ChunkGradF32(const float* z, std::size_t n, float* g, const GradSpec& spec);
void ChunkGradF64(const double* z, std::size_t n, double* g, const GradSpec& spec);
// One float32 row of BCE with logits (see bce-inl.h); weight and pos_weight
// are per element of the row (nullptr: 1). A flagged row (non-finite x or
// loss, y outside [0, 1]) is left to the caller's scalar path.
struct BceRowSpec {
  const float* weight = nullptr;
  const float* pos_weight = nullptr;
  double grad_scale = 1;
  float* grad = nullptr;       // may alias x
  float* elem_loss = nullptr;
};
struct BceRowStats {
  double loss = 0;
  bool flagged = false;
};
void BceRowF32(const float* x, const float* y, std::size_t n, const BceRowSpec& spec, BceRowStats* out);

// Short rows (V ≤ kSmallV, float32 logits, index targets, no softcap /
// temperature / focal): one row per SIMD lane (small_rows-inl.h). Processes
// rows [r0, r1) and returns their summed CE and z-loss terms (fixed lane
// order), or the first failing row. Returns false where unsupported (the
// scalar target): use the row-wise kernels then.
inline constexpr std::size_t kSmallV = 128;
struct SmallRowsSpec {
  const float* logits = nullptr;
  std::size_t logits_stride = 0, cols = 0;
  std::size_t rows = 0;  // of the whole batch (the tiles fetch ahead up to there)
  float* grad = nullptr;  // may be the logits (same stride)
  std::size_t grad_stride = 0;
  const std::int64_t* targets64 = nullptr;
  const std::int32_t* targets32 = nullptr;
  std::int64_t ignore_index = -100;
  const float* weight = nullptr;
  bool smoothing = false;
  double a = 1, b = 0, w_total = 0, z_loss = 0, scale_ce = 0, scale_z = 0;
  bool accuracy = false, stream = false;
  float* row_loss = nullptr;  // indexed by absolute row
  float* row_lse = nullptr;
  // Soft targets (instead of targets64/32): c_j = w_j (a p_j + b), each row
  // checked to be a distribution (|Σp − 1| ≤ p_tolerance).
  const float* soft = nullptr;
  std::size_t soft_stride = 0;
  double p_tolerance = 0;
};
struct SmallRowsResult {
  double ce = 0, zl = 0;
  std::int64_t correct = 0;
  std::int64_t error_row = -1;
  int error_kind = 0;  // 1: NaN / +inf logits, 2: every logit -inf, 3: bad p entry, 4: Σp ≠ 1
};
bool SmallRowsF32(const SmallRowsSpec& spec, std::size_t r0, std::size_t r1, SmallRowsResult* out);

// Index targets t[0, n): the number of entries that are not ignore_index,
// and the first entry (its index) that is outside [0, V) and not
// ignore_index, −1 if none (count is only meaningful then: a bad entry is
// an error). An int32 target never equals an ignore_index outside int32.
struct TargetScan {
  std::int64_t count = 0;
  std::int64_t first_bad = -1;
};
TargetScan ScanTargets(const std::int64_t* t, std::size_t n, std::int64_t V, std::int64_t ignore_index);
TargetScan ScanTargets(const std::int32_t* t, std::size_t n, std::int64_t V, std::int64_t ignore_index);

// The kernels' exp on x ≤ 0 (for its accuracy test): y_i = exp(x_i).
void ExpRowF32(const float* x, float* y, std::size_t n);
// The short-row tile's fp64 log(1 + x) of x = Σexp − 1 (for its accuracy
// test): y_i = log1p(x_i).
void TileLog1pF64(const double* x, double* y, std::size_t n);

// Orders the streaming stores of this thread before what follows.
void StreamFence();
// Name of the SIMD target chosen at run time ("AVX3", "AVX2", ...).
const char* KernelTargetName();
// Whether the run-time target's exp is cheap enough that a row's gradient
// pass should recompute the exps rather than reload them from a row buffer
// (true on AVX-512; see run_batch in loss.cc for the measurements).
bool RecomputingExpsPays();
// How many rows ahead a short row's exp pass fetches (see
// Engine::stats_chunk in loss.cc): on AVX-512, whose faster exp pass leaves
// the next row's lines less time to arrive, 2 with a gradient and 3 without;
// else 1.
std::size_t ShortRowFetchRows(bool with_grad);
// Tests only: makes RecomputingExpsPays() answer `mode` (0 false, 1 true),
// or the run-time target's own answer again (-1), so that a test can run both
// gradient sources on any CPU.
void SetRecomputingExpsForTest(int mode);
// Whether short rows take their statistics two at a time (ChunkStats2F32;
// see run_batch in loss.cc): true on AVX-512, whose 32 registers hold two
// rows' accumulators.
bool PairingRowsPays();
// Tests only: as SetRecomputingExpsForTest, for PairingRowsPays().
void SetPairingRowsForTest(int mode);

}  // namespace xent::cpu
