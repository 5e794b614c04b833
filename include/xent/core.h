// xent/core.h — the information-theoretic quantities of one row of K classes.
//
// Every function here takes one row (a std::span of K values) and is provided
// for T = float and T = double. These are the exact, checked building blocks;
// the batched, SIMD, multi-threaded training loss lives in xent/loss.h.
//
// Units. Every quantity that is a number of nats or bits takes an explicit
// xent::Unit (default Unit::kNats). bits = nats / ln 2, applied once at the end
// in the accumulation precision.
//
// Accuracy. float rows are accumulated in double, double rows in double with
// compensated (Neumaier) summation and with log1p where the sum is close to 1.
// Results for float are within 5e-7 relative or 1e-7 absolute (whichever is
// looser) of the long-double reference on every input the tests cover
// (|logits| up to FLT_MAX, -inf masks, denormals, K up to 2^20); measured:
// at most 6e-8 relative, about half an ulp. Results for double are within
// 1e-13 relative or 1e-15 absolute of it (measured: at most 7e-15).
//
// Edge semantics (decided here, and tested):
//   * 0 · log 0 = 0: a class with p = 0 contributes nothing, even where q = 0
//     or its logit is -inf.
//   * p > 0 with q = 0 (or logit -inf) gives +inf, as the math says: no clamp,
//     no NaN.
//   * -inf logits are legal masks: exp(-inf) = 0.
//   * A row whose logits are all -inf has no softmax (0/0). logsumexp returns
//     -inf (log 0, which is well defined); softmax, log_softmax, the
//     cross-entropy from logits and its gradient throw Error(kUndefined).
//   * NaN anywhere in the input, or +inf in logits, throws Error(kNonFinite)
//     naming the index. (+inf − +inf has no value, so a row containing +inf
//     has no softmax.)
//   * Probability vectors (p and q) must have every entry in [0, 1] and sum
//     to 1 within NormTolerance<T>(K); otherwise Error(kNotDistribution)
//     naming the index or the sum. Nothing is renormalized silently.
//   * K = 0 throws Error(kEmpty). K = 1 is legal: softmax = [1], every
//     cross-entropy from logits is 0 and its gradient 0.
//   * Output spans must have length K, else Error(kShapeMismatch). Outputs
//     may alias inputs (softmax in place is fine).
#pragma once

#include <cmath>
#include <cstddef>
#include <span>

#include "xent/error.h"

namespace xent {

enum class Unit { kNats, kBits };

// ln 2, to convert: bits = nats / kLn2.
inline constexpr double kLn2 = 0.693147180559945309417232121458176568;

// The tolerance on |sum(p) - 1| accepted for a probability vector of K
// entries of type T: 16 · epsilon(T) · max(1, sqrt(K)). A normalized vector
// computed in T by any reasonable summation order passes; a vector that is
// off by more is a bug in the caller, reported as Error(kNotDistribution).
template <class T>
T NormTolerance(std::size_t k);

// log Σ exp(z_i), max-shifted. Units: nats of the log-partition function.
// All -inf → -inf.
template <class T>
T logsumexp(std::span<const T> logits);

// softmax(z)_i = exp(z_i − lse). out.size() == logits.size(); may alias.
template <class T>
void softmax(std::span<const T> logits, std::span<T> out);

// log_softmax(z)_i = z_i − lse, computed as (z_i − max) − log Σ exp(z_j − max),
// never as log(softmax). -inf logits give -inf. May alias.
template <class T>
void log_softmax(std::span<const T> logits, std::span<T> out);

// H(p) = −Σ p_i log p_i, with 0·log 0 = 0. p must be a distribution.
template <class T>
T entropy(std::span<const T> p, Unit unit = Unit::kNats);

// H(p, q) = −Σ p_i log q_i. Both must be distributions of the same length.
// Terms with p_i = 0 are 0; p_i > 0 with q_i = 0 gives +inf.
template <class T>
T cross_entropy(std::span<const T> p, std::span<const T> q,
                Unit unit = Unit::kNats);

// KL(p‖q) = Σ p_i log(p_i / q_i) ≥ 0, = 0 iff p = q. Same rules as above.
// Computed as Σ [p_i log(p_i/q_i) − p_i + q_i], whose terms are all ≥ 0 (no
// cancellation, and never a tiny negative result); this equals the literal
// sum for normalized p and q, and differs from it by Σq − Σp (at most
// 2·NormTolerance) for vectors normalized only within the tolerance.
template <class T>
T kl_divergence(std::span<const T> p, std::span<const T> q,
                Unit unit = Unit::kNats);

// H(p, softmax(z)) = Σ p_i (lse − z_i), soft targets. p must be a
// distribution; computed as Σ p_i (max − z_i) + log Σ exp(z_j − max), so no
// log of a softmax is ever taken.
template <class T>
T cross_entropy_from_logits(std::span<const T> p, std::span<const T> logits,
                            Unit unit = Unit::kNats);

// −log softmax(z)_target = lse − z_target, hard (index) target in [0, K).
// Out of range: Error(kTargetOutOfRange) naming the value and K.
// A target whose logit is -inf gives +inf.
template <class T>
T cross_entropy_from_logits(std::size_t target, std::span<const T> logits,
                            Unit unit = Unit::kNats);

// ∂H(p, softmax(z))/∂z = softmax(z) − p (soft target), into grad (length K,
// may alias logits). The gradient is in nats per unit logit; for a loss in
// bits divide by ln 2.
template <class T>
void cross_entropy_grad(std::span<const T> p, std::span<const T> logits,
                        std::span<T> grad);

// ∂(lse − z_t)/∂z = softmax(z) − onehot(t). The target's entry, q_t − 1, is
// computed as −Σ_{j≠t} q_j so it does not cancel when q_t ≈ 1.
template <class T>
void cross_entropy_grad(std::size_t target, std::span<const T> logits,
                        std::span<T> grad);

// Binary cross-entropy of one output: −[y log p + (1−y) log(1−p)], with
// 0·log 0 = 0 (so y = 1, p = 1 gives 0; y = 1, p = 0 gives +inf; no clamp,
// unlike PyTorch's −100 floor). y, p in [0, 1], else Error.
template <class T>
T binary_cross_entropy(T y, T p, Unit unit = Unit::kNats);

// Multi-label row: Σ_i BCE(y_i, p_i) (a sum, not a mean). Same lengths.
template <class T>
T binary_cross_entropy(std::span<const T> y, std::span<const T> p,
                       Unit unit = Unit::kNats);

// BCE of σ(z): max(z, 0) − z·y + log1p(exp(−|z|)), stable for any finite z
// and exact at ±inf (z = +inf, y = 1 gives 0; z = +inf, y < 1 gives +inf).
// y in [0, 1]; z NaN → Error.
template <class T>
T binary_cross_entropy_with_logits(T y, T z, Unit unit = Unit::kNats);

// Multi-label row with logits: Σ_i BCE_with_logits(y_i, z_i).
template <class T>
T binary_cross_entropy_with_logits(std::span<const T> y, std::span<const T> z,
                                   Unit unit = Unit::kNats);

// ∂BCE_with_logits/∂z = σ(z) − y (nats per unit logit).
template <class T>
T binary_cross_entropy_with_logits_grad(T y, T z);

// Row form: grad_i = σ(z_i) − y_i.
template <class T>
void binary_cross_entropy_with_logits_grad(std::span<const T> y,
                                           std::span<const T> z,
                                           std::span<T> grad);

// Perplexity from a cross-entropy (per token) expressed in `unit`:
// exp(H) for nats, 2^H for bits. H must be ≥ 0 or +inf (→ +inf).
template <class T>
T perplexity(T cross_entropy, Unit unit = Unit::kNats);

// Convert a value in nats to `unit`.
template <class T>
inline T to_unit(T nats, Unit unit) {
  return unit == Unit::kBits ? static_cast<T>(nats / kLn2) : nats;
}

}  // namespace xent
