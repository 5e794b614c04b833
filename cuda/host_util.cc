// Host-side checks and error messages of the CUDA backend (see host_util.h).
#include "host_util.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "validate.h"
#include "xent/core.h"
#include "xent/cuda.h"
#include "xent/error.h"

namespace xent::cuda_detail {

using detail::fail;
using detail::fmt_num;
using detail::check_loss_options;

[[noreturn]] void fail_arg(const char* fn, const std::string& what) {
  fail(ErrorCode::kInvalidArgument, std::string(fn) + ": " + what);
}

[[noreturn]] void fail_cuda(const char* what, cudaError_t e) {
  fail(ErrorCode::kInvalidArgument,
       std::string("xent CUDA backend: ") + what + " failed: " + cudaGetErrorString(e));
}

namespace {
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail_cuda(what, e);
}
}  // namespace

double norm_tolerance(DType dt, std::int64_t k) {
  double eps = 0;
  switch (dt) {
    case DType::kF32: return NormTolerance<float>(static_cast<std::size_t>(k));
    case DType::kF64: return NormTolerance<double>(static_cast<std::size_t>(k));
    case DType::kBF16: eps = 0x1p-7; break;
    case DType::kF16: eps = 0x1p-10; break;
  }
  return 16 * eps * std::max(1.0, std::sqrt(static_cast<double>(k)));
}

std::int64_t check_matrix(const char* fn, const char* what, const void* data, DType dt,
                          std::int64_t rows, std::int64_t cols, std::int64_t stride) {
  return detail::check_matrix_stride(fn, what, data, dt, rows, cols, stride);  // as the CPU path
}

namespace {

bool gpu_dtype(DType d) { return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16; }

// The bytes from a strided matrix's first element to one past its last.
std::size_t span_bytes(std::int64_t rows, std::int64_t cols, std::int64_t stride, DType dt) {
  return static_cast<std::size_t>((rows - 1) * stride + cols) * DTypeSize(dt);
}
// Whether [a, a + na) and [b, b + nb) share a byte.
bool overlaps(const void* a, std::size_t na, const void* b, std::size_t nb) {
  const char* a0 = static_cast<const char*>(a);
  const char* b0 = static_cast<const char*>(b);
  return a0 < b0 + nb && b0 < a0 + na;
}

void check_alias(const char* fn, const void* in, DType din, std::int64_t rows, std::int64_t cols,
                 std::int64_t si, const void* out, DType dout, std::int64_t so) {
  if (out == nullptr || rows == 0 || cols == 0) return;
  if (!overlaps(in, span_bytes(rows, cols, si, din), out, span_bytes(rows, cols, so, dout))) return;
  if (in == out && din == dout && si == so) return;
  fail_arg(fn, "grad overlaps the input without being exactly it "
               "(in place needs the same data, dtype and row_stride)");
}

double decode(const unsigned char* p, DType dt) {
  switch (dt) {
    case DType::kF32: { float v; std::memcpy(&v, p, 4); return v; }
    case DType::kF64: { double v; std::memcpy(&v, p, 8); return v; }
    case DType::kBF16: {
      std::uint16_t b; std::memcpy(&b, p, 2);
      const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
      float v; std::memcpy(&v, &u, 4); return v;
    }
    case DType::kF16: { __half h; std::memcpy(&h, p, 2); return __half2float(h); }
  }
  return 0;
}

// Row `r` (cols elements) of a device matrix, as doubles on the host.
std::vector<double> fetch_row(const void* data, DType dt, std::int64_t stride, std::int64_t r,
                              std::int64_t cols) {
  const std::size_t es = DTypeSize(dt);
  std::vector<unsigned char> raw(static_cast<std::size_t>(cols) * es);
  const char* src = static_cast<const char*>(data) + static_cast<std::size_t>(r * stride) * es;
  check(cudaMemcpy(raw.data(), src, raw.size(), cudaMemcpyDeviceToHost), "cudaMemcpy (error row)");
  std::vector<double> out(static_cast<std::size_t>(cols));
  for (std::size_t j = 0; j < out.size(); ++j) out[j] = decode(raw.data() + j * es, dt);
  return out;
}

}  // namespace

void check_disjoint(const char* fn, const char* what, const void* in, std::size_t in_bytes, const void* out,
                    DType dout, std::int64_t rows, std::int64_t cols, std::int64_t so) {
  if (out == nullptr || in == nullptr || in_bytes == 0 || rows == 0 || cols == 0) return;
  if (overlaps(in, in_bytes, out, span_bytes(rows, cols, so, dout)))
    fail_arg(fn, std::string("grad overlaps the ") + what + " (an input)");
}

CeCheck check_ce(const char* fn, const MatrixView& logits, const Targets& targets,
                 const CrossEntropyOptions& o, const MutableMatrixView& grad) {
  CeCheck ck;
  ck.sz = check_matrix(fn, "logits", logits.data, logits.dtype, logits.rows, logits.cols,
                       logits.row_stride);
  if (!gpu_dtype(logits.dtype))
    fail_arg(fn, std::string("logits dtype ") + DTypeName(logits.dtype) +
                     " is not supported on the GPU (float32, bfloat16, float16)");
  ck.N = logits.rows;
  const std::int64_t V = logits.cols;
  if (V == 0)
    fail(ErrorCode::kEmpty, std::string(fn) + ": logits have V = 0 classes; at least one is needed");
  if (grad.data) {
    ck.sg = check_matrix(fn, "grad", grad.data, grad.dtype, grad.rows, grad.cols, grad.row_stride);
    if (grad.rows != ck.N || grad.cols != V)
      fail(ErrorCode::kShapeMismatch, std::string(fn) + ": grad is " + std::to_string(grad.rows) +
                                          "×" + std::to_string(grad.cols) + " but logits are " +
                                          std::to_string(ck.N) + "×" + std::to_string(V));
    if (grad.dtype != logits.dtype)
      fail_arg(fn, std::string("grad dtype ") + DTypeName(grad.dtype) +
                       " differs from the logits' " + DTypeName(logits.dtype) +
                       " (the GPU writes the gradient in the logits' dtype)");
    check_alias(fn, logits.data, logits.dtype, ck.N, V, ck.sz, grad.data, grad.dtype, ck.sg);
  }
  check_loss_options(fn, o);
  // Inputs read while gradient rows are written must not overlap them (as
  // on the CPU, src/loss.cc).
  check_disjoint(fn, "class weights", o.class_weight, static_cast<std::size_t>(V) * 4, grad.data, grad.dtype,
                 ck.N, V, ck.sg);
  if (o.class_weight) {
    // V floats: cheap to check on the host, and the CPU path's message.
    std::vector<float> w(static_cast<std::size_t>(V));
    check(cudaMemcpy(w.data(), o.class_weight, w.size() * 4, cudaMemcpyDeviceToHost),
          "cudaMemcpy (class_weight)");
    for (std::int64_t c = 0; c < V; ++c)
      if (!(w[c] >= 0) || !std::isfinite(w[c]))
        fail_arg(fn, "class_weight[" + std::to_string(c) + "] = " + fmt_num(w[c]) +
                         " must be finite and ≥ 0");
  }
  ck.cp.V = V;
  ck.cp.softcap = static_cast<float>(o.softcap);
  ck.cp.inv_temp = static_cast<float>(1.0 / o.temperature);
  ck.cp.transform = o.softcap > 0 || o.temperature != 1.0;
  ck.cp.gamma = o.focal_gamma;
  ck.cp.z_loss = o.z_loss;
  cuda_math::smoothing_coefs(o.label_smoothing, V, o.smoothing == Smoothing::kOffTarget, &ck.cp.a,
                             &ck.cp.b);
  if (targets.kind == Targets::Kind::kSoft) {
    const MatrixView& p = targets.soft;
    ck.sp = check_matrix(fn, "soft targets", p.data, p.dtype, p.rows, p.cols, p.row_stride);
    if (p.rows != ck.N || p.cols != V)
      fail(ErrorCode::kShapeMismatch, std::string(fn) + ": soft targets are " +
                                          std::to_string(p.rows) + "×" + std::to_string(p.cols) +
                                          " but logits are " + std::to_string(ck.N) + "×" +
                                          std::to_string(V));
    if (grad.data && ck.N > 0 &&
        overlaps(grad.data, span_bytes(ck.N, V, ck.sg, grad.dtype), p.data, span_bytes(ck.N, V, ck.sp, p.dtype)))
      fail_arg(fn, "grad must not alias the soft targets");
    ck.p_tol = norm_tolerance(p.dtype, V);
  } else if (targets.kind == Targets::Kind::kIndexInt32 || targets.kind == Targets::Kind::kIndexInt64) {
    if (ck.N > 0 && targets.indices == nullptr) fail_arg(fn, "targets.indices is null");
    check_disjoint(fn, "targets", targets.indices,
                   static_cast<std::size_t>(ck.N) * (targets.kind == Targets::Kind::kIndexInt64 ? 8 : 4),
                   grad.data, grad.dtype, ck.N, V, ck.sg);
  } else {
    fail_arg(fn, "invalid targets kind");
  }
  return ck;
}

[[noreturn]] void throw_row_error(const char* fn, const MatrixView& logits, const Targets& targets,
                                  const CrossEntropyOptions& o, const CeCheck& ck,
                                  unsigned long long word) {
  const std::int64_t r = static_cast<std::int64_t>(word >> 4);
  const int kind = static_cast<int>(word & 15);
  const std::string row = std::to_string(r);
  switch (kind) {
    case cuda_math::kRowTarget: {
      std::int64_t t = 0;
      if (targets.kind == Targets::Kind::kIndexInt64) {
        check(cudaMemcpy(&t, static_cast<const std::int64_t*>(targets.indices) + r, 8,
                         cudaMemcpyDeviceToHost), "cudaMemcpy (target)");
      } else {
        std::int32_t t32 = 0;
        check(cudaMemcpy(&t32, static_cast<const std::int32_t*>(targets.indices) + r, 4,
                         cudaMemcpyDeviceToHost), "cudaMemcpy (target)");
        t = t32;
      }
      fail(ErrorCode::kTargetOutOfRange,
           std::string(fn) + ": targets[" + row + "] = " + std::to_string(t) +
               " is out of range [0, " + std::to_string(ck.cp.V) + ") and is not ignore_index (" +
               std::to_string(o.ignore_index) + ")");
    }
    case cuda_math::kRowNonFinite: {
      const auto z = fetch_row(logits.data, logits.dtype, ck.sz, r, ck.cp.V);
      for (std::size_t j = 0; j < z.size(); ++j)
        if (std::isnan(z[j]) || z[j] == HUGE_VAL)
          fail(ErrorCode::kNonFinite, std::string(fn) + ": logits[" + row + "][" + std::to_string(j) +
                                          "] = " + fmt_num(z[j]) +
                                          " (NaN and +inf logits have no softmax)");
      fail(ErrorCode::kNonFinite, std::string(fn) + ": row " + row + " overflowed");
    }
    case cuda_math::kRowAllNegInf:
      fail(ErrorCode::kUndefined,
           std::string(fn) + ": row " + row + " has every (transformed) logit -inf: no softmax");
    case cuda_math::kRowSoftBad:
    case cuda_math::kRowSoftSum: {
      const MatrixView& p = targets.soft;
      const auto v = fetch_row(p.data, p.dtype, ck.sp, r, ck.cp.V);
      double sum = 0;
      for (std::size_t j = 0; j < v.size(); ++j) {
        if (!(v[j] >= 0 && v[j] <= 1))
          fail(std::isnan(v[j]) ? ErrorCode::kNonFinite : ErrorCode::kNotDistribution,
               std::string(fn) + ": soft target[" + row + "][" + std::to_string(j) + "] = " +
                   fmt_num(v[j]) + " is not a probability in [0, 1]");
        sum += v[j];
      }
      fail(ErrorCode::kNotDistribution, std::string(fn) + ": soft target row " + row + " sums to " +
                                            fmt_num(sum) + ", not 1 (tolerance " +
                                            fmt_num(ck.p_tol) + ")");
    }
    default:
      fail_arg(fn, "device reported error " + std::to_string(kind) + " at row " + row);
  }
}

[[noreturn]] void throw_bce_error(const char* fn, const MatrixView& x, const MatrixView& y,
                                  unsigned long long word) {
  const std::int64_t pos = static_cast<std::int64_t>(word >> 4);
  const int kind = static_cast<int>(word & 15);
  const std::int64_t C = x.cols, r = pos / C, c = pos % C;
  const std::string at = "[" + std::to_string(r) + "][" + std::to_string(c) + "]";
  if (kind == cuda_math::kRowBceNaN) {
    const auto v = fetch_row(x.data, x.dtype, x.row_stride ? x.row_stride : C, r, C);
    fail(ErrorCode::kNonFinite, std::string(fn) + ": logits" + at + " = " +
                                    fmt_num(v[static_cast<std::size_t>(c)]) + " is NaN");
  }
  const auto v = fetch_row(y.data, y.dtype, y.row_stride ? y.row_stride : C, r, C);
  const double t = v[static_cast<std::size_t>(c)];
  fail(std::isnan(t) ? ErrorCode::kNonFinite : ErrorCode::kNotDistribution,
       std::string(fn) + ": targets" + at + " = " + fmt_num(t) + " is not a probability in [0, 1]");
}

cudaMemPool_t workspace_pool() {
  static std::mutex mu;
  static std::map<int, cudaMemPool_t> pools;  // one per device, kept for the process
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  std::lock_guard<std::mutex> lock(mu);
  auto it = pools.find(dev);
  if (it != pools.end()) return it->second;
  cudaMemPoolProps props{};
  props.allocType = cudaMemAllocationTypePinned;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = dev;
  cudaMemPool_t pool;
  check(cudaMemPoolCreate(&pool, &props), "cudaMemPoolCreate");
  std::uint64_t keep = kPoolKeepBytes;
  check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep),
        "cudaMemPoolSetAttribute(ReleaseThreshold)");
  pools.emplace(dev, pool);
  return pool;
}

}  // namespace xent::cuda_detail

namespace xent::cuda {

int device_count() noexcept {
  int n = 0;
  // No driver (this development machine, CI): an error, not 0. Either way,
  // no device to use.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error state
    return 0;
  }
  return n;
}

std::size_t workspace_peak_bytes(bool reset) noexcept {
  cudaMemPool_t pool;
  try {
    pool = cuda_detail::workspace_pool();
  } catch (...) {
    (void)cudaGetLastError();
    return 0;
  }
  std::uint64_t high = 0;
  if (cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &high) != cudaSuccess) high = 0;
  if (reset) {
    std::uint64_t zero = 0;  // resets the high-water mark to the current use
    (void)cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero);
  }
  (void)cudaGetLastError();
  return static_cast<std::size_t>(high);
}

}  // namespace xent::cuda
