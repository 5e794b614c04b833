// Finite-difference gradient checker; see xent/gradcheck.h.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "validate.h"
#include "xent/gradcheck.h"

namespace xent {

GradcheckResult gradcheck(const std::function<double(std::span<const double>)>& f,
                          std::span<const double> x, std::span<const double> grad,
                          const GradcheckOptions& options) {
  const char* fn = "gradcheck";
  detail::require_nonempty(x.size(), fn, "x");
  detail::require_same_size(x.size(), grad.size(), fn, "x", "grad");
  if (options.order != 2 && options.order != 4)
    detail::fail(ErrorCode::kInvalidArgument,
                 "gradcheck: order = " + std::to_string(options.order) + " must be 2 or 4");
  if (options.step < 0 || !std::isfinite(options.step))
    detail::fail(ErrorCode::kInvalidArgument,
                 "gradcheck: step = " + detail::fmt_num(options.step) + " must be >= 0");

  std::vector<double> probe(x.begin(), x.end());
  auto eval_at = [&](std::size_t i, double xi) {
    probe[i] = xi;
    const double v = f(probe);
    probe[i] = x[i];
    if (!std::isfinite(v))
      detail::fail(ErrorCode::kNonFinite, "gradcheck: f is " + detail::fmt_num(v) +
                                              " when x[" + std::to_string(i) +
                                              "] is perturbed to " + detail::fmt_num(xi));
    return v;
  };

  GradcheckResult result;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double scale = std::max(1.0, std::fabs(x[i]));
    double h = options.step > 0 ? options.step
                                : (options.order == 2 ? 1e-6 : 1e-3) * scale;
    // Use a step that is exactly representable as a difference of x ± h.
    const volatile double xh = x[i] + h;
    h = xh - x[i];
    double fd;
    if (options.order == 2) {
      fd = (eval_at(i, x[i] + h) - eval_at(i, x[i] - h)) / (2 * h);
    } else {
      fd = (8 * (eval_at(i, x[i] + h / 2) - eval_at(i, x[i] - h / 2)) -
            (eval_at(i, x[i] + h) - eval_at(i, x[i] - h))) / (6 * h);
    }
    const double abs_err = std::fabs(fd - grad[i]);
    const double denom = std::max({std::fabs(fd), std::fabs(grad[i]), options.rel_floor});
    const double rel_err = abs_err / denom;
    if (i == 0 || abs_err > result.max_abs_error) {
      result.max_abs_error = abs_err;
      result.worst_index = i;
    }
    result.max_rel_error = std::max(result.max_rel_error, rel_err);
  }
  return result;
}

}  // namespace xent
