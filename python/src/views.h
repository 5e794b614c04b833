// Shared pieces of the _xent bindings: matrix views built from addresses, and
// the 16-bit float decoders the double-softmax guard needs.
//
// Why addresses: the same kernels serve NumPy arrays (float32/float64) and
// torch tensors (also bfloat16/float16, which NumPy has no type for). The
// Python layer (xent/_views.py) checks shape, dtype and strides, keeps the
// owning objects alive for the duration of the call and hands over
// (address, dtype, rows, cols, row_stride). _xent is private: only that
// layer calls it.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>

#include "xent/loss.h"

namespace xent::py {

inline const void* as_ptr(std::uintptr_t a) { return reinterpret_cast<const void*>(a); }
inline void* as_mut_ptr(std::uintptr_t a) { return reinterpret_cast<void*>(a); }

// IEEE binary16 → float, exact (every half is a float).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / NaN
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);  // normal: rebias 15 → 127
  } else if (mant == 0) {
    bits = sign;  // ±0
  } else {
    // Subnormal half: normalize the mantissa into a normal float.
    std::uint32_t e = 113;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// bfloat16 → float: the high half of a float32.
inline float bf16_to_float(std::uint16_t b) {
  const std::uint32_t bits = std::uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Element i of a row of any of the four dtypes, as double.
inline double load(const void* row, DType dtype, std::int64_t i) {
  switch (dtype) {
    case DType::kF32: return static_cast<const float*>(row)[i];
    case DType::kF64: return static_cast<const double*>(row)[i];
    case DType::kBF16: return bf16_to_float(static_cast<const std::uint16_t*>(row)[i]);
    case DType::kF16: return half_to_float(static_cast<const std::uint16_t*>(row)[i]);
  }
  return 0.0;
}

inline std::size_t dtype_size(DType dtype) {
  return dtype == DType::kF64 ? 8 : dtype == DType::kF32 ? 4 : 2;
}

inline std::int64_t stride_of(std::int64_t cols, std::int64_t row_stride) {
  return row_stride == 0 ? cols : row_stride;
}

inline const void* row_ptr(const MatrixView& v, std::int64_t r) {
  return static_cast<const char*>(v.data) +
         r * stride_of(v.cols, v.row_stride) * std::int64_t(dtype_size(v.dtype));
}

void bind_core(pybind11::module_& m);
void bind_loss(pybind11::module_& m);
void bind_memory(pybind11::module_& m);
void bind_distributed(pybind11::module_& m);  // issue 9: vocab-parallel

}  // namespace xent::py
