// Helpers of the batch-loss tests: typed buffers with row strides, random
// inputs, and comparison against the long-double reference.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cpu/convert.h"
#include "cpu/kernels.h"
#include "hwy/targets.h"
#include "reference/loss_reference.h"
#include "xent/loss.h"

namespace xent::test {

using reference::Real;
using reference::Row;

// Smaller shapes under ASan/UBSan, so that the suite stays within minutes.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

// An N×V matrix of `dtype` with row stride `stride` (≥ V), padding filled
// with NaN so that any read outside the rows shows up.
struct Buffer {
  DType dtype = DType::kF32;
  std::int64_t rows = 0, cols = 0, stride = 0;
  std::vector<unsigned char> bytes;

  Buffer() = default;
  Buffer(DType dt, std::int64_t n, std::int64_t v, std::int64_t s = 0)
      : dtype(dt), rows(n), cols(v), stride(s ? s : v) {
    bytes.assign(static_cast<std::size_t>(std::max<std::int64_t>(1, rows * stride)) * DTypeSize(dt), 0);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = cols; c < stride; ++c) set(r, c, std::nan(""));
  }
  void* ptr(std::int64_t r, std::int64_t c) {
    return bytes.data() + static_cast<std::size_t>(r * stride + c) * DTypeSize(dtype);
  }
  const void* ptr(std::int64_t r, std::int64_t c) const {
    return bytes.data() + static_cast<std::size_t>(r * stride + c) * DTypeSize(dtype);
  }
  // Stores v rounded to the dtype; returns the stored value.
  double set(std::int64_t r, std::int64_t c, double v) {
    void* p = ptr(r, c);
    switch (dtype) {
      case DType::kF32: *static_cast<float*>(p) = static_cast<float>(v); break;
      case DType::kF64: *static_cast<double*>(p) = v; break;
      case DType::kBF16: *static_cast<std::uint16_t*>(p) = cpu::float_to_bf16(static_cast<float>(v)); break;
      case DType::kF16: *static_cast<std::uint16_t*>(p) = cpu::float_to_f16(static_cast<float>(v)); break;
    }
    return get(r, c);
  }
  double get(std::int64_t r, std::int64_t c) const {
    const void* p = ptr(r, c);
    switch (dtype) {
      case DType::kF32: return *static_cast<const float*>(p);
      case DType::kF64: return *static_cast<const double*>(p);
      case DType::kBF16: return cpu::bf16_to_float(*static_cast<const std::uint16_t*>(p));
      case DType::kF16: return cpu::f16_to_float(*static_cast<const std::uint16_t*>(p));
    }
    return 0;
  }
  MatrixView view() const { return {bytes.data(), dtype, rows, cols, stride}; }
  MutableMatrixView mut() { return {bytes.data(), dtype, rows, cols, stride}; }
  std::vector<Row> rows_real() const {
    std::vector<Row> out(static_cast<std::size_t>(rows), Row(static_cast<std::size_t>(cols)));
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) out[r][c] = get(r, c);
    return out;
  }
};

inline Buffer random_logits(DType dt, std::int64_t n, std::int64_t v, double sigma,
                            unsigned seed, std::int64_t stride = 0) {
  Buffer b(dt, n, v, stride);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, sigma);
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t c = 0; c < v; ++c) b.set(r, c, nd(rng));
  return b;
}

// Random distributions per row (some exact zeros), stored in dt and then
// renormalized in double so that the stored row sums to 1 within tolerance.
inline Buffer random_soft(DType dt, std::int64_t n, std::int64_t v, unsigned seed) {
  Buffer b(dt, n, v);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (std::int64_t r = 0; r < n; ++r) {
    std::vector<double> p(static_cast<std::size_t>(v));
    double s = 0;
    for (auto& x : p) {
      x = u(rng) < 0.2 ? 0.0 : std::pow(u(rng), 3.0);
      s += x;
    }
    if (s == 0) { p[0] = 1; s = 1; }
    for (std::int64_t c = 0; c < v; ++c) b.set(r, c, p[c] / s);
  }
  return b;
}

inline std::vector<std::int64_t> random_targets(std::int64_t n, std::int64_t v, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int64_t> u(0, v - 1);
  std::vector<std::int64_t> t(static_cast<std::size_t>(n));
  for (auto& x : t) x = u(rng);
  return t;
}

// |got − want| ≤ max(rel·|want|, abs); infinities must match; NaN only with NaN.
inline ::testing::AssertionResult Near(double got, long double want, double rel, double abs) {
  if (std::isnan(static_cast<double>(want))) {
    if (std::isnan(got)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "got " << got << ", want NaN";
  }
  if (std::isinf(static_cast<double>(want))) {
    if (got == static_cast<double>(want)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "got " << got << ", want " << static_cast<double>(want);
  }
  const long double err = std::fabs(static_cast<long double>(got) - want);
  const long double tol = std::max<long double>(rel * std::fabs(want), abs);
  if (err <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << got << ", want " << static_cast<double>(want)
                                       << " (error " << static_cast<double>(err) << " > tol "
                                       << static_cast<double>(tol) << ")";
}

// Relative precision of a stored result in `dt` (its half-ulp at 1).
inline double dtype_rel(DType dt) {
  switch (dt) {
    case DType::kF32: return 5e-7;
    case DType::kF64: return 1e-12;
    case DType::kBF16: return 0x1p-8 * 1.01;
    case DType::kF16: return 0x1p-11 * 1.01;
  }
  return 0;
}

// Runs body() once on each SIMD target this build compiled and this CPU
// supports, HWY_SCALAR included: the kernels otherwise dispatch to the best
// one only. hwy's test hook limits the dispatch to one target (with
// HWY_SCALAR beside it: a target the build did not compile falls to it, and
// is skipped). Expects HWY_SCALAR and at least one other target to have run.
template <class Body>
void for_each_simd_target(Body body) {
  const std::int64_t supported = hwy::SupportedTargets();
  std::set<std::string> ran;
  for (const std::int64_t target : {HWY_AVX3_DL, HWY_AVX3, HWY_AVX2, HWY_SSE4, HWY_SSSE3, HWY_SCALAR}) {
    if (!(supported & target)) continue;
    hwy::SetSupportedTargetsForTest(target | HWY_SCALAR);
    const std::string name = cpu::KernelTargetName();
    if (name != hwy::TargetName(target)) continue;  // not compiled in this build
    ran.insert(name);
    SCOPED_TRACE("target " + name);
    body();
  }
  hwy::SetSupportedTargetsForTest(0);
  EXPECT_TRUE(ran.count("SCALAR")) << "HWY_SCALAR is always compiled (the fallback)";
  EXPECT_GE(ran.size(), 2u) << "the machine's own target and HWY_SCALAR";
}

// For its lifetime, makes cpu::RecomputingExpsPays() answer `recompute`, so
// that a test runs the interleaved rows' given gradient source on any CPU;
// then the run-time target decides again.
struct ForceRecomputingExps {
  explicit ForceRecomputingExps(bool recompute) { cpu::SetRecomputingExpsForTest(recompute ? 1 : 0); }
  ~ForceRecomputingExps() { cpu::SetRecomputingExpsForTest(-1); }
  ForceRecomputingExps(const ForceRecomputingExps&) = delete;
  ForceRecomputingExps& operator=(const ForceRecomputingExps&) = delete;
};

// The same for cpu::PairingRowsPays() (short rows' statistics two at a time).
struct ForcePairingRows {
  explicit ForcePairingRows(bool pair) { cpu::SetPairingRowsForTest(pair ? 1 : 0); }
  ~ForcePairingRows() { cpu::SetPairingRowsForTest(-1); }
  ForcePairingRows(const ForcePairingRows&) = delete;
  ForcePairingRows& operator=(const ForcePairingRows&) = delete;
};

}  // namespace xent::test
