// STREAM-like bandwidth kernels (SIMD, runtime dispatch, OpenMP static
// partition) that bound what any cross-entropy kernel can reach:
//   read:   Σ of an array (bytes = n·4)
//   copy:   dst = src with streaming stores (bytes = 2·n·4)
//   row-wise ceiling: per row, read the row, then rewrite it from cache into
//           dst with streaming stores — a fused per-row kernel minus the math.
//   pipelined rows: per row r, read row r and rewrite row r − 1 from cache
//           (streaming stores), one whole row after the other (grain 0) or
//           alternating every `grain` floats, with `fmas` dependent
//           multiply-adds per vector on both streams as a stand-in for a
//           kernel's arithmetic (bench/memory_patterns.cc).
#pragma once

#include <cstddef>

namespace xent::bench {

double ReadSum(const float* src, std::size_t n, int threads);
void StreamCopy(const float* src, float* dst, std::size_t n, int threads);
double RowCeiling(const float* src, float* dst, std::size_t rows, std::size_t cols, int threads);
double PipelinedRows(const float* src, float* dst, std::size_t rows, std::size_t cols, std::size_t grain,
                     int fmas, int threads);

}  // namespace xent::bench
