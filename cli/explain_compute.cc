// The numbers of `xent explain`. Totals: libxent. Terms: long double, from
// the definitions, with the conventions of xent/core.h (0·log 0 = 0,
// p > 0 = q gives +inf).
#include <cmath>
#include <limits>
#include <span>

#include <fmt/format.h>

#include "common.h"
#include "explain.h"

namespace xent::cli {
namespace {

using Span = std::span<const double>;
constexpr long double kInf = std::numeric_limits<long double>::infinity();

double in_unit(long double nats, Unit unit) {
  return static_cast<double>(unit == Unit::kBits ? nats / static_cast<long double>(kLn2) : nats);
}

// −p·log q with 0·log q = 0 (for any q, including 0).
long double neg_p_log_q(long double p, long double q) {
  if (p == 0) return 0;
  if (q == 0) return kInf;
  return -p * std::log(q);
}

}  // namespace

DiscreteResult explain_discrete(const std::vector<double>& p, const std::vector<double>& q,
                                Unit unit) {
  DiscreteResult r{};
  r.unit = unit;
  // The library validates first (distributions, same length), so the terms
  // below are only computed for input that has a meaning.
  r.entropy = xent::entropy<double>(Span(p), unit);
  r.cross_entropy = xent::cross_entropy<double>(Span(p), Span(q), unit);
  r.kl = xent::kl_divergence<double>(Span(p), Span(q), unit);
  for (std::size_t i = 0; i < p.size(); ++i) {
    const long double pi = p[i], qi = q[i];
    const long double h = neg_p_log_q(pi, pi);
    const long double ce = neg_p_log_q(pi, qi);
    // p·log(p/q) = p·(log p − log q), never p·log of a ratio that could overflow.
    const long double kl = pi == 0 ? 0 : (qi == 0 ? kInf : pi * (std::log(pi) - std::log(qi)));
    r.rows.push_back({p[i], q[i], in_unit(h, unit), in_unit(ce, unit), in_unit(kl, unit)});
  }
  return r;
}

LogitsResult explain_logits(const ExplainOptions& opt) {
  const std::vector<double>& z = *opt.logits;
  const std::size_t k = z.size();
  const Unit unit = opt.unit;
  LogitsResult r{};
  r.unit = unit;
  r.epsilon = opt.smoothing;
  r.smoothing_mode = opt.smoothing_mode;

  // The effective target distribution p (one-hot, smoothed, or soft).
  std::vector<double> p(k, 0.0);
  if (opt.target) {
    if (*opt.target < 0 || static_cast<unsigned long long>(*opt.target) >= k)
      throw UsageError(fmt::format("--target: class {} is out of range [0, {}) for {} logits",
                                   *opt.target, k, k));
    const std::size_t t = static_cast<std::size_t>(*opt.target);
    r.target_index = t;
    if (opt.smoothing) {
      xent::smooth_target<double>(t, *opt.smoothing, opt.smoothing_mode, std::span<double>(p));
      r.loss = xent::cross_entropy_from_logits<double>(Span(p), Span(z), unit);
    } else {
      // The index form: lse − z_t, exact even when q_t is ~1e-40.
      r.loss = xent::cross_entropy_from_logits<double>(t, Span(z), unit);
      p[t] = 1.0;
    }
  } else {
    r.soft_target = *opt.p;
    if (opt.smoothing) {
      if (opt.p->size() != k)  // smooth_target would only compare p with its own output
        throw UsageError(fmt::format("--p has {} entries but --logits has {}", opt.p->size(), k));
      xent::smooth_target<double>(Span(*opt.p), *opt.smoothing, opt.smoothing_mode,
                                  std::span<double>(p));
    } else {
      p = *opt.p;
    }
    r.loss = xent::cross_entropy_from_logits<double>(Span(p), Span(z), unit);
  }

  std::vector<double> q(k), grad(k);
  xent::softmax<double>(Span(z), std::span<double>(q));
  if (opt.target && !opt.smoothing)
    xent::cross_entropy_grad<double>(*r.target_index, Span(z), std::span<double>(grad));
  else
    xent::cross_entropy_grad<double>(Span(p), Span(z), std::span<double>(grad));
  r.perplexity = xent::perplexity<double>(r.loss, unit);
  r.entropy = xent::entropy<double>(Span(p), unit);
  // KL(p‖softmax(z)) from the softmax probabilities, unless one of them
  // underflowed to 0 where p > 0 (z_i far below the max): the rounded q would
  // then say +inf while the true KL is finite, and the identity
  // KL = H(p, q) − H(p) on libxent's exact loss is the right value.
  bool underflow = false;
  for (std::size_t i = 0; i < k; ++i) underflow |= (p[i] > 0 && q[i] == 0 && std::isfinite(z[i]));
  r.kl = underflow ? r.loss - r.entropy : xent::kl_divergence<double>(Span(p), Span(q), unit);

  // Terms: −p_i log q_i = p_i (lse − z_i), lse max-shifted in long double.
  long double m = -kInf;
  for (double v : z) m = std::max<long double>(m, v);
  long double s = 0;
  for (double v : z) s += std::exp(static_cast<long double>(v) - m);
  const long double lse = m + std::log(s);
  for (std::size_t i = 0; i < k; ++i) {
    const long double term =
        p[i] == 0 ? 0 : (std::isinf(z[i]) ? kInf : p[i] * (lse - static_cast<long double>(z[i])));
    r.rows.push_back({z[i], q[i], p[i], in_unit(term, unit), to_unit(grad[i], unit)});
  }
  r.verdict = make_verdict(r);
  if (opt.compare_mse) r.mse = compare_mse(r);
  if (opt.double_softmax) r.double_softmax = double_softmax(r, p);
  r.preset = opt.preset;
  return r;
}

}  // namespace xent::cli
