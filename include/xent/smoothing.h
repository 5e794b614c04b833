// xent/smoothing.h — label smoothing as a target transform, both conventions.
//
// Two conventions exist in the literature and in code; xent names both:
//   * Smoothing::kUniform (PyTorch's `label_smoothing`, Szegedy et al. 2016):
//       p'_i = (1 − ε)·p_i + ε/K.
//     For a one-hot target: 1 − ε + ε/K on the target, ε/K elsewhere.
//   * Smoothing::kOffTarget (the "ε spread over the wrong classes" form):
//       p'_i = (1 − ε)·p_i + ε·(1 − p_i)/(K − 1).
//     For a one-hot target: 1 − ε on the target, ε/(K − 1) elsewhere.
//     With K = 1 there is no other class: p' = p.
// Both keep Σ p' = 1. ε must be in [0, 1] (Error(kInvalidArgument) otherwise).
#pragma once

#include <cstddef>
#include <span>

#include "xent/error.h"

namespace xent {

enum class Smoothing { kUniform, kOffTarget };

const char* SmoothingName(Smoothing mode) noexcept;  // "uniform" / "off-target"

// Smoothed one-hot target for class `target` of `out.size()` classes.
template <class T>
void smooth_target(std::size_t target, T epsilon, Smoothing mode,
                   std::span<T> out);

// Smoothed soft target; p must be a distribution; out may alias p.
template <class T>
void smooth_target(std::span<const T> p, T epsilon, Smoothing mode,
                   std::span<T> out);

}  // namespace xent
