// Host side of the CUDA backend: argument checks before anything is
// enqueued, and the xent::Error for a failure the device reported (it copies
// the offending row back to name the column and value, as the CPU path does).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "row_math.h"
#include "xent/loss.h"

namespace xent::cuda_detail {

[[noreturn]] void fail_arg(const char* fn, const std::string& what);

// The current device's memory pool for xent's scratch (DeviceBuffer,
// common.cuh), created on first use. It keeps up to kPoolKeepBytes mapped
// between calls: the default pool keeps nothing, so every call paid for
// mapping its workspace again.
constexpr std::uint64_t kPoolKeepBytes = 256ull << 20;
cudaMemPool_t workspace_pool();

struct CeCheck {
  std::int64_t N = 0, sz = 0, sp = 0, sg = 0;
  double p_tol = 0;
  cuda_math::CallParams cp;
};

// Shapes, dtypes (float32 / bfloat16 / float16 logits; grad of the same
// dtype), aliasing, options. Targets' values and the class weights live on
// the device and are checked there (weights: by a host copy of V floats).
CeCheck check_ce(const char* fn, const MatrixView& logits, const Targets& targets,
                 const CrossEntropyOptions& o, const MutableMatrixView& grad);

// An input the gradient (rows × cols, row stride so, of dtype dout) must not
// overlap: the CPU path's error (class weights, targets, row_upstream).
void check_disjoint(const char* fn, const char* what, const void* in, std::size_t in_bytes, const void* out,
                    DType dout, std::int64_t rows, std::int64_t cols, std::int64_t so);

// Throws the CPU path's error for the device's error word (pos << 4 | kind).
[[noreturn]] void throw_row_error(const char* fn, const MatrixView& logits, const Targets& targets,
                                  const CrossEntropyOptions& o, const CeCheck& ck,
                                  unsigned long long word);

// Error for a BCE element (pos = row·C + col).
[[noreturn]] void throw_bce_error(const char* fn, const MatrixView& x, const MatrixView& y,
                                  unsigned long long word);

// Tolerance on |Σp − 1| of a soft-target row stored in dt (as src/loss.cc).
double norm_tolerance(DType dt, std::int64_t k);

// Effective row stride (0 means packed) and a checked matrix shape.
std::int64_t check_matrix(const char* fn, const char* what, const void* data, DType dt,
                          std::int64_t rows, std::int64_t cols, std::int64_t stride);

}  // namespace xent::cuda_detail
