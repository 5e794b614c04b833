// The row quantities of xent/core.h.
//
// Precision plan (why the code looks the way it does):
//   * Accumulate in double (Acc) for both float and double rows, with a
//     Neumaier-compensated sum, so the error of a sum of K terms does not
//     grow with K (K up to 2^20 and beyond).
//   * log Σ exp(z − m) is taken as log1p(Σ_{i≠argmax} exp(z_i − m)): the
//     argmax term is exactly 1, and log1p keeps the digits of a sum close
//     to 1 (a confident row), where log would lose them.
//   * (m − z_i) is computed in double from float inputs, which is exact for
//     any two floats within a factor 2^29 of each other and otherwise within
//     half an ulp of double.
//   * KL is summed as Σ [p log(p/q) − p + q]: every bracket is ≥ 0, so no
//     cancellation between terms and the result is ≥ 0, = 0 iff p = q; the
//     bracket itself uses a series when p ≈ q.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "validate.h"
#include "xent/core.h"

namespace xent {
namespace {

using Acc = double;
constexpr Acc kInf = std::numeric_limits<Acc>::infinity();

// The max of a logits row, checked: NaN and +inf are errors; -inf is legal.
template <class T>
struct RowMax {
  Acc max = -kInf;
  std::size_t argmax = 0;
};

template <class T>
RowMax<T> checked_max(std::span<const T> logits, const char* fn) {
  detail::require_nonempty(logits.size(), fn, "logits");
  RowMax<T> r;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const Acc z = logits[i];
    detail::require_logit(z, fn, i);
    if (z > r.max) {
      r.max = z;
      r.argmax = i;
    }
  }
  return r;
}

// exp-sum of a row relative to its max: total = 1 + rest (argmax excluded),
// and optionally the sum excluding one more index (for q_t − 1).
template <class T>
struct ExpSum {
  Acc rest = 0;  // Σ_{i≠argmax} exp(z_i − m)
  Acc total() const { return 1 + rest; }
  Acc log_total() const { return std::log1p(rest); }
};

template <class T>
ExpSum<T> exp_sum(std::span<const T> logits, const RowMax<T>& rm) {
  detail::NeumaierSum rest;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    if (i == rm.argmax) continue;
    rest.add(std::exp(Acc(logits[i]) - rm.max));
  }
  return {rest.value()};
}

// The row must have a softmax: at least one finite logit.
template <class T>
void require_softmax_defined(const RowMax<T>& rm, const char* fn) {
  if (rm.max == -kInf)
    detail::fail(ErrorCode::kUndefined, std::string(fn) +
                 ": every logit is -inf, so the softmax is 0/0 and undefined");
}

// The KL bracket p log(p/q) − p + q ≥ 0 for p, q > 0. For q/2 < p < 2q it
// is q·f(r), f(r) = (1 + r) log1p(r) − r, r = (p − q)/q, where p − q is
// exact (Sterbenz), with a series near r = 0. Outside that band it is
// p·log(p/q) + (q − p), whose terms cancel by at most a factor ~4 there: the
// f(r) form fails at the ends, 1 + r rounding to 0 when p ≪ q (0·(−inf) =
// NaN for p = 1e-45, q = 0.5; found by extremes_test, Denormals) and
// (1 + r)·log1p(r) overflowing when q ≪ p.
Acc kl_bracket(Acc p, Acc q) {
  const Acc r = (p - q) / q;
  if (std::fabs(r) < 0.0625) {
    // Σ_{k≥2} (−1)^k r^k / (k (k − 1)); |r| < 1/16 → 14 terms reach 1e-17.
    Acc term = r * r, sum = 0;
    for (int k = 2; k < 16; ++k) {
      sum += term / (Acc(k) * (k - 1));
      term *= -r;
    }
    return q * sum;
  }
  if (r > -0.5 && r < 1) return q * ((1 + r) * std::log1p(r) - r);
  // log p − log q where p/q over- or underflows (q or p subnormal in double).
  const Acc ratio = p / q;
  const Acc log_ratio = std::isfinite(ratio) && ratio >= std::numeric_limits<Acc>::min()
                            ? std::log(ratio)
                            : std::log(p) - std::log(q);
  return p * log_ratio + (q - p);
}

}  // namespace

template <class T>
T NormTolerance(std::size_t k) {
  const double n = std::max<double>(1.0, std::sqrt(static_cast<double>(k)));
  return static_cast<T>(16.0 * std::numeric_limits<T>::epsilon() * n);
}

template <class T>
T logsumexp(std::span<const T> logits) {
  const auto rm = checked_max(logits, "logsumexp");
  if (rm.max == -kInf) return -std::numeric_limits<T>::infinity();
  return static_cast<T>(rm.max + exp_sum(logits, rm).log_total());
}

template <class T>
void softmax(std::span<const T> logits, std::span<T> out) {
  detail::require_same_size(logits.size(), out.size(), "softmax", "logits", "out");
  const auto rm = checked_max(logits, "softmax");
  require_softmax_defined(rm, "softmax");
  const Acc total = exp_sum(logits, rm).total();
  // exp(z − m) / S rather than exp(z − lse): the division costs one rounding,
  // while exp of a rounded (z − lse) would carry its absolute error |z|·eps.
  for (std::size_t i = 0; i < logits.size(); ++i)
    out[i] = static_cast<T>(std::exp(Acc(logits[i]) - rm.max) / total);
}

template <class T>
void log_softmax(std::span<const T> logits, std::span<T> out) {
  detail::require_same_size(logits.size(), out.size(), "log_softmax", "logits", "out");
  const auto rm = checked_max(logits, "log_softmax");
  require_softmax_defined(rm, "log_softmax");
  const Acc log_total = exp_sum(logits, rm).log_total();
  // (z − m) ≤ 0 and −log S ≤ 0: same sign, so no cancellation.
  for (std::size_t i = 0; i < logits.size(); ++i)
    out[i] = static_cast<T>((Acc(logits[i]) - rm.max) - log_total);
}

template <class T>
T entropy(std::span<const T> p, Unit unit) {
  detail::require_distribution(p, "entropy", "p");
  detail::NeumaierSum h;
  for (const T pi : p)
    if (pi > 0) h.add(-Acc(pi) * std::log(Acc(pi)));  // 0·log 0 = 0
  return static_cast<T>(to_unit(h.value(), unit));
}

template <class T>
T cross_entropy(std::span<const T> p, std::span<const T> q, Unit unit) {
  detail::require_same_size(p.size(), q.size(), "cross_entropy", "p", "q");
  detail::require_distribution(p, "cross_entropy", "p");
  detail::require_distribution(q, "cross_entropy", "q");
  detail::NeumaierSum h;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0) continue;  // 0·log q = 0 even for q = 0
    if (q[i] == 0) return std::numeric_limits<T>::infinity();
    h.add(-Acc(p[i]) * std::log(Acc(q[i])));
  }
  return static_cast<T>(to_unit(h.value(), unit));
}

template <class T>
T kl_divergence(std::span<const T> p, std::span<const T> q, Unit unit) {
  detail::require_same_size(p.size(), q.size(), "kl_divergence", "p", "q");
  detail::require_distribution(p, "kl_divergence", "p");
  detail::require_distribution(q, "kl_divergence", "q");
  detail::NeumaierSum brackets;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const Acc pi = p[i], qi = q[i];
    if (pi == 0) {
      brackets.add(qi);  // p log(p/q) − p + q with p = 0
      continue;
    }
    if (qi == 0) return std::numeric_limits<T>::infinity();
    brackets.add(kl_bracket(pi, qi));
  }
  // Σ brackets is the KL of two distributions (Σ p − Σ q = 0 cancels out of
  // it). The literal Σ p log(p/q) would add (Σ p − Σ q) back, which for
  // vectors normalized only to within the tolerance is a rounding residual of
  // either sign: q = p moved by one ulp gave KL ≈ −2e-9 in float (found by
  // properties_test, KLIsNonNegativeAndZeroIffEqual). Dropping it keeps the
  // documented KL ≥ 0, = 0 iff p = q, and changes the value by at most
  // |Σ p − Σ q| ≤ 2·NormTolerance(K).
  const Acc kl = brackets.value();
  return static_cast<T>(to_unit(kl, unit));
}

template <class T>
T cross_entropy_from_logits(std::span<const T> p, std::span<const T> logits,
                            Unit unit) {
  detail::require_same_size(p.size(), logits.size(), "cross_entropy_from_logits",
                            "p", "logits");
  detail::require_distribution(p, "cross_entropy_from_logits", "p");
  const auto rm = checked_max(logits, "cross_entropy_from_logits");
  require_softmax_defined(rm, "cross_entropy_from_logits");
  const Acc log_total = exp_sum(logits, rm).log_total();
  // Σ p_i (lse − z_i) = Σ p_i (m − z_i) + (Σ p)·log S; every term ≥ 0.
  detail::NeumaierSum gap, mass;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0) continue;
    const Acc zi = logits[i];
    if (zi == -kInf) return std::numeric_limits<T>::infinity();
    // m − z_i overflows double for double logits near ±DBL_MAX although
    // p_i·(m − z_i) may not ([DBL_MAX, −DBL_MAX, 0] with p = [.5, .25, .25]
    // has H = 0.75·DBL_MAX; found by extremes_test, HugeLogits): halve first.
    const Acc d = rm.max - zi;
    gap.add(std::isinf(d) ? 2 * (Acc(p[i]) * (rm.max / 2 - zi / 2)) : Acc(p[i]) * d);
    mass.add(p[i]);
  }
  return static_cast<T>(to_unit(gap.value() + mass.value() * log_total, unit));
}

template <class T>
T cross_entropy_from_logits(std::size_t target, std::span<const T> logits,
                            Unit unit) {
  const auto rm = checked_max(logits, "cross_entropy_from_logits");
  detail::require_target(target, logits.size(), "cross_entropy_from_logits");
  require_softmax_defined(rm, "cross_entropy_from_logits");
  const Acc zt = logits[target];
  if (zt == -kInf) return std::numeric_limits<T>::infinity();
  const Acc loss = (rm.max - zt) + exp_sum(logits, rm).log_total();
  return static_cast<T>(to_unit(loss, unit));
}

template <class T>
void cross_entropy_grad(std::span<const T> p, std::span<const T> logits,
                        std::span<T> grad) {
  const char* fn = "cross_entropy_grad";
  detail::require_same_size(p.size(), logits.size(), fn, "p", "logits");
  detail::require_same_size(logits.size(), grad.size(), fn, "logits", "grad");
  detail::require_distribution(p, fn, "p");
  const auto rm = checked_max(logits, fn);
  require_softmax_defined(rm, fn);
  const auto sum = exp_sum(logits, rm);
  const Acc total = sum.total();
  for (std::size_t i = 0; i < logits.size(); ++i) {
    if (i == rm.argmax) {
      // q_m − p_m with q_m = 1/S, S = 1 + rest, as ((1 − p_m) − p_m·rest)/S:
      // q_m rounds to 1 when rest < 1e-16, and q_m − p_m would lose every
      // digit of a confident row's gradient (p one-hot on the argmax gave 0
      // instead of −rest/S; found by properties_test, GradientsSumToZero).
      // 1 − p_m is exact for p_m ≥ 1/2, so only a true cancellation remains.
      const Acc pm = p[i];
      grad[i] = static_cast<T>(((1 - pm) - pm * sum.rest) / total);
      continue;
    }
    const Acc q = std::exp(Acc(logits[i]) - rm.max) / total;
    grad[i] = static_cast<T>(q - Acc(p[i]));
  }
}

template <class T>
void cross_entropy_grad(std::size_t target, std::span<const T> logits,
                        std::span<T> grad) {
  const char* fn = "cross_entropy_grad";
  detail::require_same_size(logits.size(), grad.size(), fn, "logits", "grad");
  const auto rm = checked_max(logits, fn);
  detail::require_target(target, logits.size(), fn);
  require_softmax_defined(rm, fn);
  // S and Σ_{j≠t} e_j in one pass, so q_t − 1 = −Σ_{j≠t} e_j / S is computed
  // without the cancellation of (e_t/S) − 1 when q_t ≈ 1.
  detail::NeumaierSum total, others;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const Acc e = std::exp(Acc(logits[i]) - rm.max);
    total.add(e);
    if (i != target) others.add(e);
  }
  const Acc s = total.value(), s_others = others.value();
  for (std::size_t i = 0; i < logits.size(); ++i) {
    if (i == target) continue;
    grad[i] = static_cast<T>(std::exp(Acc(logits[i]) - rm.max) / s);
  }
  grad[target] = static_cast<T>(-s_others / s);
}

template <class T>
T binary_cross_entropy(T y, T p, Unit unit) {
  detail::require_probability(y, "binary_cross_entropy", "y", 0);
  detail::require_probability(p, "binary_cross_entropy", "p", 0);
  const Acc yd = y, pd = p;
  Acc loss = 0;
  // Skip a term whose coefficient is 0, so 0·log 0 = 0.
  if (yd > 0) loss -= yd * std::log(pd);
  if (yd < 1) loss -= (1 - yd) * std::log1p(-pd);
  return static_cast<T>(to_unit(loss, unit));
}

template <class T>
T binary_cross_entropy(std::span<const T> y, std::span<const T> p, Unit unit) {
  detail::require_same_size(y.size(), p.size(), "binary_cross_entropy", "y", "p");
  detail::require_nonempty(y.size(), "binary_cross_entropy", "y");
  detail::NeumaierSum sum;
  for (std::size_t i = 0; i < y.size(); ++i) {
    detail::require_probability(y[i], "binary_cross_entropy", "y", i);
    detail::require_probability(p[i], "binary_cross_entropy", "p", i);
    sum.add(binary_cross_entropy<double>(y[i], p[i], Unit::kNats));
  }
  return static_cast<T>(to_unit(sum.value(), unit));
}

namespace {
// BCE with logits in nats, inputs already checked:
//   z ≥ 0: (1 − y)·z + log1p(exp(−z));   z < 0: −y·z + log1p(exp(z)).
// Both terms ≥ 0, so no cancellation; a zero coefficient skips its term so
// y = 1, z = +inf gives 0 rather than 0·inf.
Acc bce_logits_nats(Acc y, Acc z) {
  const Acc softplus_neg_abs = std::log1p(std::exp(-std::fabs(z)));
  if (z >= 0) return (y < 1 ? (1 - y) * z : 0.0) + softplus_neg_abs;
  return (y > 0 ? -y * z : 0.0) + softplus_neg_abs;
}

// σ(z) − y without cancellation for z ≫ 0, y = 1: (1 − y) − σ(−z).
Acc sigmoid_minus(Acc y, Acc z) {
  if (z >= 0) {
    const Acc e = std::exp(-z);
    return (1 - y) - e / (1 + e);
  }
  const Acc e = std::exp(z);
  return e / (1 + e) - y;
}

template <class T>
void check_bce_logit_pair(T y, T z, const char* fn, std::size_t i) {
  detail::require_probability(y, fn, "y", i);
  if (std::isnan(z)) detail::fail_nonfinite(fn, "z", i, static_cast<double>(z));
}
}  // namespace

template <class T>
T binary_cross_entropy_with_logits(T y, T z, Unit unit) {
  check_bce_logit_pair(y, z, "binary_cross_entropy_with_logits", 0);
  return static_cast<T>(to_unit(bce_logits_nats(y, z), unit));
}

template <class T>
T binary_cross_entropy_with_logits(std::span<const T> y, std::span<const T> z,
                                   Unit unit) {
  const char* fn = "binary_cross_entropy_with_logits";
  detail::require_same_size(y.size(), z.size(), fn, "y", "z");
  detail::require_nonempty(y.size(), fn, "y");
  detail::NeumaierSum sum;
  for (std::size_t i = 0; i < y.size(); ++i) {
    check_bce_logit_pair(y[i], z[i], fn, i);
    sum.add(bce_logits_nats(y[i], z[i]));
  }
  return static_cast<T>(to_unit(sum.value(), unit));
}

template <class T>
T binary_cross_entropy_with_logits_grad(T y, T z) {
  check_bce_logit_pair(y, z, "binary_cross_entropy_with_logits_grad", 0);
  return static_cast<T>(sigmoid_minus(y, z));
}

template <class T>
void binary_cross_entropy_with_logits_grad(std::span<const T> y,
                                           std::span<const T> z,
                                           std::span<T> grad) {
  const char* fn = "binary_cross_entropy_with_logits_grad";
  detail::require_same_size(y.size(), z.size(), fn, "y", "z");
  detail::require_same_size(z.size(), grad.size(), fn, "z", "grad");
  detail::require_nonempty(y.size(), fn, "y");
  for (std::size_t i = 0; i < y.size(); ++i) check_bce_logit_pair(y[i], z[i], fn, i);
  for (std::size_t i = 0; i < y.size(); ++i)
    grad[i] = static_cast<T>(sigmoid_minus(y[i], z[i]));
}

template <class T>
T perplexity(T cross_entropy, Unit unit) {
  const Acc h = cross_entropy;
  if (std::isnan(h)) detail::fail_nonfinite("perplexity", "cross_entropy", 0, h);
  if (h < 0)
    detail::fail(ErrorCode::kInvalidArgument,
                 "perplexity: cross_entropy = " + detail::fmt_num(h) +
                 " is negative; a discrete cross-entropy is >= 0");
  return static_cast<T>(unit == Unit::kBits ? std::exp2(h) : std::exp(h));
}

#define XENT_INSTANTIATE(T)                                                          \
  template T NormTolerance<T>(std::size_t);                                          \
  template T logsumexp<T>(std::span<const T>);                                       \
  template void softmax<T>(std::span<const T>, std::span<T>);                        \
  template void log_softmax<T>(std::span<const T>, std::span<T>);                    \
  template T entropy<T>(std::span<const T>, Unit);                                   \
  template T cross_entropy<T>(std::span<const T>, std::span<const T>, Unit);         \
  template T kl_divergence<T>(std::span<const T>, std::span<const T>, Unit);         \
  template T cross_entropy_from_logits<T>(std::span<const T>, std::span<const T>,    \
                                          Unit);                                     \
  template T cross_entropy_from_logits<T>(std::size_t, std::span<const T>, Unit);    \
  template void cross_entropy_grad<T>(std::span<const T>, std::span<const T>,        \
                                      std::span<T>);                                 \
  template void cross_entropy_grad<T>(std::size_t, std::span<const T>, std::span<T>); \
  template T binary_cross_entropy<T>(T, T, Unit);                                    \
  template T binary_cross_entropy<T>(std::span<const T>, std::span<const T>, Unit);  \
  template T binary_cross_entropy_with_logits<T>(T, T, Unit);                        \
  template T binary_cross_entropy_with_logits<T>(std::span<const T>,                 \
                                                 std::span<const T>, Unit);          \
  template T binary_cross_entropy_with_logits_grad<T>(T, T);                         \
  template void binary_cross_entropy_with_logits_grad<T>(                            \
      std::span<const T>, std::span<const T>, std::span<T>);                         \
  template T perplexity<T>(T, Unit);

XENT_INSTANTIATE(float)
XENT_INSTANTIATE(double)
#undef XENT_INSTANTIATE

}  // namespace xent
