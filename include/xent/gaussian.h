// xent/gaussian.h — cross-entropy is defined for densities too: closed forms
// for univariate Gaussians N(mu, sigma²). Differential quantities: they can be
// negative (a narrow density has negative differential entropy).
//
//   h(p)      = ½ log(2πe σ_p²)
//   H(p, q)   = ½ log(2π σ_q²) + (σ_p² + (μ_p − μ_q)²) / (2 σ_q²)
//   KL(p‖q)   = log(σ_q/σ_p) + (σ_p² + (μ_p − μ_q)²)/(2σ_q²) − ½  ≥ 0
// and H(p, q) = h(p) + KL(p‖q). KL is evaluated as
//   ½·(r² − 1 − 2 log r) + (μ_p − μ_q)²/(2σ_q²),  r = σ_p/σ_q,
// with a series for r² − 1 − 2 log r near r = 1, so it does not cancel to 0
// (or go negative) when the two densities are nearly equal.
// sigma must be finite and > 0, mu finite; else Error(kInvalidArgument /
// kNonFinite).
#pragma once

#include "xent/core.h"

namespace xent {

struct Gaussian {
  double mu = 0.0;
  double sigma = 1.0;
};

double gaussian_entropy(Gaussian p, Unit unit = Unit::kNats);
double gaussian_cross_entropy(Gaussian p, Gaussian q, Unit unit = Unit::kNats);
double gaussian_kl_divergence(Gaussian p, Gaussian q, Unit unit = Unit::kNats);

}  // namespace xent
