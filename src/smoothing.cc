#include <string>

#include "validate.h"
#include "xent/smoothing.h"

namespace xent {

const char* SmoothingName(Smoothing mode) noexcept {
  return mode == Smoothing::kUniform ? "uniform" : "off-target";
}

namespace {
template <class T>
void require_epsilon(T epsilon, const char* fn) {
  if (!(epsilon >= 0 && epsilon <= 1))
    detail::fail(ErrorCode::kInvalidArgument,
                 std::string(fn) + ": label smoothing epsilon = " +
                     detail::fmt_num(static_cast<double>(epsilon)) +
                     " must be in [0, 1]");
}
}  // namespace

template <class T>
void smooth_target(std::size_t target, T epsilon, Smoothing mode, std::span<T> out) {
  const char* fn = "smooth_target";
  require_epsilon(epsilon, fn);
  const std::size_t k = out.size();
  detail::require_nonempty(k, fn, "out");
  detail::require_target(target, k, fn);
  const double eps = epsilon;
  double on, off;
  if (mode == Smoothing::kUniform) {
    off = eps / static_cast<double>(k);
    on = (1.0 - eps) + off;
  } else if (k == 1) {
    on = 1.0, off = 0.0;  // no other class to spread ε over
  } else {
    off = eps / static_cast<double>(k - 1);
    on = 1.0 - eps;
  }
  for (std::size_t i = 0; i < k; ++i) out[i] = static_cast<T>(i == target ? on : off);
}

template <class T>
void smooth_target(std::span<const T> p, T epsilon, Smoothing mode, std::span<T> out) {
  const char* fn = "smooth_target";
  require_epsilon(epsilon, fn);
  detail::require_same_size(p.size(), out.size(), fn, "p", "out");
  detail::require_distribution(p, fn, "p");
  const std::size_t k = p.size();
  const double eps = epsilon;
  for (std::size_t i = 0; i < k; ++i) {
    const double pi = p[i];
    double v;
    if (mode == Smoothing::kUniform)
      v = (1.0 - eps) * pi + eps / static_cast<double>(k);
    else if (k == 1)
      v = pi;
    else
      v = (1.0 - eps) * pi + eps * (1.0 - pi) / static_cast<double>(k - 1);
    out[i] = static_cast<T>(v);
  }
}

template void smooth_target<float>(std::size_t, float, Smoothing, std::span<float>);
template void smooth_target<double>(std::size_t, double, Smoothing, std::span<double>);
template void smooth_target<float>(std::span<const float>, float, Smoothing, std::span<float>);
template void smooth_target<double>(std::span<const double>, double, Smoothing, std::span<double>);

}  // namespace xent
