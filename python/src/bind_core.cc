// Row functions of xent/core.h applied to every row of a matrix view, and the
// double-softmax guard's probe. float32/float64 only (core.h's types); the
// GIL is released while the rows run.
#include <pybind11/pybind11.h>

#include <cmath>
#include <span>
#include <string>

#include "views.h"
#include "xent/core.h"

namespace xent::py {
namespace {

namespace pb = pybind11;

// Runs f(r) for every row; an Error from row r is rethrown with the row
// named, since the core messages only know the index within the row.
template <class F>
void for_rows(std::int64_t rows, F&& f) {
  for (std::int64_t r = 0; r < rows; ++r) {
    try {
      f(r);
    } catch (const Error& e) {
      throw Error(e.code(), std::string(e.what()) + " (in row " + std::to_string(r) + ")");
    }
  }
}

void require_float(DType d, const char* fn) {
  if (d != DType::kF32 && d != DType::kF64)
    throw Error(ErrorCode::kInvalidArgument,
                std::string(fn) + ": only float32 and float64 rows are supported");
}

template <class T>
std::span<const T> in_row(const MatrixView& v, std::int64_t r) {
  return {static_cast<const T*>(row_ptr(v, r)), std::size_t(v.cols)};
}

template <class T>
std::span<T> out_row(const MutableMatrixView& v, std::int64_t r) {
  return {static_cast<T*>(v.data) + r * stride_of(v.cols, v.row_stride), std::size_t(v.cols)};
}

// out = f(x) row by row, f one of softmax / log_softmax.
template <class T>
void map_rows(const MatrixView& x, const MutableMatrixView& out,
              void (*f)(std::span<const T>, std::span<T>)) {
  for_rows(x.rows, [&](std::int64_t r) { f(in_row<T>(x, r), out_row<T>(out, r)); });
}

template <class T>
void reduce_rows(const MatrixView& x, std::uintptr_t out,
                 T (*f)(std::span<const T>, Unit), Unit unit) {
  T* o = static_cast<T*>(as_mut_ptr(out));
  for_rows(x.rows, [&](std::int64_t r) { o[r] = f(in_row<T>(x, r), unit); });
}

void check_same(const MatrixView& x, const MutableMatrixView& out, const char* fn) {
  require_float(x.dtype, fn);
  if (out.dtype != x.dtype || out.rows != x.rows || out.cols != x.cols)
    throw Error(ErrorCode::kShapeMismatch, std::string(fn) + ": output view mismatch");
}

void softmax_rows(const MatrixView& x, const MutableMatrixView& out) {
  check_same(x, out, "softmax");
  if (x.dtype == DType::kF32) map_rows<float>(x, out, &xent::softmax<float>);
  else map_rows<double>(x, out, &xent::softmax<double>);
}

void log_softmax_rows(const MatrixView& x, const MutableMatrixView& out) {
  check_same(x, out, "log_softmax");
  if (x.dtype == DType::kF32) map_rows<float>(x, out, &xent::log_softmax<float>);
  else map_rows<double>(x, out, &xent::log_softmax<double>);
}

template <class T>
T lse_unit(std::span<const T> x, Unit) { return xent::logsumexp<T>(x); }

// out[r] = logsumexp(row r), same dtype as x.
void logsumexp_rows(const MatrixView& x, std::uintptr_t out) {
  require_float(x.dtype, "logsumexp");
  if (x.dtype == DType::kF32) reduce_rows<float>(x, out, &lse_unit<float>, Unit::kNats);
  else reduce_rows<double>(x, out, &lse_unit<double>, Unit::kNats);
}

// out[r] = H(row r) in `unit`.
void entropy_rows(const MatrixView& p, std::uintptr_t out, Unit unit) {
  require_float(p.dtype, "entropy");
  if (p.dtype == DType::kF32) reduce_rows<float>(p, out, &xent::entropy<float>, unit);
  else reduce_rows<double>(p, out, &xent::entropy<double>, unit);
}

// out[i] = perplexity(h[i]) elementwise over n packed values.
void perplexity_elems(std::uintptr_t h, std::uintptr_t out, std::int64_t n, DType dtype,
                      Unit unit) {
  require_float(dtype, "perplexity");
  auto run = [&](auto* in, auto* o) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(in)>>;
    for (std::int64_t i = 0; i < n; ++i) {
      try {
        o[i] = xent::perplexity<T>(in[i], unit);
      } catch (const Error& e) {
        throw Error(e.code(), std::string(e.what()) + " (at element " + std::to_string(i) + ")");
      }
    }
  };
  if (dtype == DType::kF32)
    run(static_cast<const float*>(as_ptr(h)), static_cast<float*>(as_mut_ptr(out)));
  else
    run(static_cast<const double*>(as_ptr(h)), static_cast<double*>(as_mut_ptr(out)));
}

// True when row r lies in [0, 1] and sums to 1 within tol.
bool row_is_distribution(const MatrixView& x, std::int64_t r, double tol) {
  const void* row = row_ptr(x, r);
  double sum = 0;
  for (std::int64_t i = 0; i < x.cols; ++i) {
    const double v = load(row, x.dtype, i);
    if (!(v >= 0.0 && v <= 1.0)) return false;  // also rejects NaN
    sum += v;
  }
  return std::fabs(sum - 1.0) <= tol;
}

// The double-softmax probe: do the first, middle and last rows all look like
// probability vectors? Logits of a real model essentially never do (they
// would need every entry in [0, 1] and a sum of exactly 1), while softmax
// outputs always do. Reading ≤ 3 rows keeps the cost invisible next to the
// N-row kernel. K = 1 is excluded: [1.0] is both a valid logit row and a
// distribution, and its loss is 0 whatever the caller meant.
bool looks_like_probabilities(const MatrixView& x) {
  if (x.rows <= 0 || x.cols < 2) return false;
  // Rows summed in double; a softmax computed in 16-bit floats can be off by
  // a few ulps of 2^-8 per entry, hence the wider tolerance there.
  const double tol = (x.dtype == DType::kBF16 || x.dtype == DType::kF16) ? 2e-2 : 1e-3;
  const std::int64_t probe[3] = {0, x.rows / 2, x.rows - 1};
  for (std::int64_t r : probe)
    if (!row_is_distribution(x, r, tol)) return false;
  return true;
}

}  // namespace

void bind_core(pb::module_& m) {
  pb::enum_<Unit>(m, "Unit").value("nats", Unit::kNats).value("bits", Unit::kBits);
  const auto nogil = pb::call_guard<pb::gil_scoped_release>();
  m.def("softmax", &softmax_rows, pb::arg("x"), pb::arg("out"), nogil);
  m.def("log_softmax", &log_softmax_rows, pb::arg("x"), pb::arg("out"), nogil);
  m.def("logsumexp", &logsumexp_rows, pb::arg("x"), pb::arg("out"), nogil);
  m.def("entropy", &entropy_rows, pb::arg("p"), pb::arg("out"), pb::arg("unit"), nogil);
  m.def("perplexity", &perplexity_elems, pb::arg("h"), pb::arg("out"), pb::arg("n"),
        pb::arg("dtype"), pb::arg("unit"), nogil);
  m.def("looks_like_probabilities", &looks_like_probabilities, pb::arg("x"), nogil);
}

}  // namespace xent::py
