// xent/gradcheck.h — a finite-difference checker for any gradient.
//
// gradcheck(f, x, grad) perturbs each coordinate of x by ±h and compares the
// central difference (f(x + h e_i) − f(x − h e_i)) / 2h (or the 5-point
// stencil, order 4) with grad[i]. h defaults to 1e-6·max(1, |x_i|) for
// order 2 and 1e-3·max(1, |x_i|) for order 4. f is evaluated in double;
// use it on a double implementation, or on the long-double reference.
//
// Errors reported:
//   max_abs_error = max_i |fd_i − grad_i|
//   max_rel_error = max_i |fd_i − grad_i| / max(|fd_i|, |grad_i|, rel_floor)
//   worst_index   = the i with the largest absolute error.
// x and grad must have the same length (Error(kShapeMismatch)); an empty x is
// Error(kEmpty); f returning a non-finite value at a probe is
// Error(kNonFinite) naming the coordinate.
#pragma once

#include <cstddef>
#include <functional>
#include <span>

#include "xent/error.h"

namespace xent {

struct GradcheckOptions {
  int order = 2;             // 2: central difference; 4: 5-point stencil
  double step = 0.0;         // 0: the defaults above (relative to |x_i|)
  double rel_floor = 1e-8;   // denominator floor of the relative error
};

struct GradcheckResult {
  double max_abs_error = 0.0;
  double max_rel_error = 0.0;
  std::size_t worst_index = 0;
};

GradcheckResult gradcheck(
    const std::function<double(std::span<const double>)>& f,
    std::span<const double> x, std::span<const double> grad,
    const GradcheckOptions& options = {});

}  // namespace xent
