// Argument checks shared by every xent entry point, and the compensated sum.
// Every failure throws xent::Error with a message that names the function,
// the argument, the position and the value.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>

#include "xent/core.h"
#include "xent/error.h"
#include "xent/loss.h"

namespace xent::detail {

[[noreturn]] void fail(ErrorCode code, const std::string& message);
std::string fmt_num(double v);  // shortest round-trip form ("nan", "inf" too)

// A matrix argument of a batch entry point: one of the four dtypes, shape
// ≥ 0, row_stride 0 (packed) or ≥ cols, data non-null unless empty. Returns
// the row stride in elements. (Defined in loss.cc.)
std::int64_t check_matrix_stride(const char* fn, const char* what, const void* data, DType dtype,
                                 std::int64_t rows, std::int64_t cols, std::int64_t stride);

// The scalar and enum options of the cross-entropy (label_smoothing,
// temperature, softcap, z_loss, focal_gamma, grad_scale, reduction,
// smoothing mode), for the fused loss, the linear + CE and the CUDA entry
// points alike. (Defined in loss.cc.)
void check_loss_options(const char* fn, const CrossEntropyOptions& o);

[[noreturn]] void fail_nonfinite(const char* fn, const char* what,
                                 std::size_t index, double value);

// Neumaier's compensated sum: error O(eps) independent of the term count.
class NeumaierSum {
 public:
  void add(double x) {
    const double t = sum_ + x;
    if (std::fabs(sum_) >= std::fabs(x))
      comp_ += (sum_ - t) + x;
    else
      comp_ += (x - t) + sum_;
    sum_ = t;
  }
  double value() const {
    // An infinite term makes comp_ NaN (inf − inf); the sum is then the inf.
    return std::isinf(sum_) ? sum_ : sum_ + comp_;
  }

 private:
  double sum_ = 0.0, comp_ = 0.0;
};

inline void require_nonempty(std::size_t k, const char* fn, const char* what) {
  if (k == 0)
    fail(ErrorCode::kEmpty, std::string(fn) + ": " + what +
                                " is empty (K = 0 classes); at least one class is needed");
}

inline void require_same_size(std::size_t a, std::size_t b, const char* fn,
                              const char* name_a, const char* name_b) {
  if (a != b)
    fail(ErrorCode::kShapeMismatch,
         std::string(fn) + ": " + name_a + " has " + std::to_string(a) +
             " entries but " + name_b + " has " + std::to_string(b));
}

// A logit may be any finite value or -inf (a mask); NaN and +inf are errors.
inline void require_logit(double z, const char* fn, std::size_t i) {
  if (std::isnan(z) || z == std::numeric_limits<double>::infinity())
    fail_nonfinite(fn, "logits", i, z);
}

inline void require_target(std::size_t target, std::size_t k, const char* fn) {
  if (target >= k)
    fail(ErrorCode::kTargetOutOfRange,
         std::string(fn) + ": target class " + std::to_string(target) +
             " is out of range [0, " + std::to_string(k) + ")");
}

template <class T>
void require_probability(T v, const char* fn, const char* what, std::size_t i) {
  if (std::isnan(v)) fail_nonfinite(fn, what, i, static_cast<double>(v));
  if (!(v >= 0 && v <= 1))
    fail(ErrorCode::kNotDistribution,
         std::string(fn) + ": " + what + "[" + std::to_string(i) + "] = " +
             fmt_num(static_cast<double>(v)) + " is not a probability in [0, 1]");
}

// Entries in [0, 1], no NaN, and |Σ − 1| ≤ NormTolerance<T>(K).
template <class T>
void require_distribution(std::span<const T> p, const char* fn, const char* what) {
  require_nonempty(p.size(), fn, what);
  NeumaierSum sum;
  for (std::size_t i = 0; i < p.size(); ++i) {
    require_probability(p[i], fn, what, i);
    sum.add(p[i]);
  }
  const double tol = NormTolerance<T>(p.size());
  if (!(std::fabs(sum.value() - 1.0) <= tol))
    fail(ErrorCode::kNotDistribution,
         std::string(fn) + ": " + what + " sums to " + fmt_num(sum.value()) +
             ", not 1 (tolerance " + fmt_num(tol) + " for K = " +
             std::to_string(p.size()) + "); normalize it first");
}

}  // namespace xent::detail
