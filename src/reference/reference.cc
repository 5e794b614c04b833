#include "reference/reference.h"

#include <cmath>
#include <limits>
#include <numbers>

namespace xent::reference {

constexpr Real kInf = std::numeric_limits<Real>::infinity();

Real logsumexp(const Row& z) {
  Real m = -kInf;
  for (Real v : z) m = std::max(m, v);
  if (m == -kInf) return -kInf;
  Real s = 0;
  for (Real v : z) s += std::exp(v - m);
  return m + std::log(s);
}

Row softmax(const Row& z) {
  Real m = -kInf;
  for (Real v : z) m = std::max(m, v);
  Real s = 0;
  for (Real v : z) s += std::exp(v - m);
  Row q(z.size());
  for (std::size_t i = 0; i < z.size(); ++i) q[i] = std::exp(z[i] - m) / s;
  return q;
}

// The max and log Σ exp(z − m) of a row (not all -inf).
struct Shift {
  Real m = -kInf;
  Real log_s = 0;
};
static Shift shift_of(const Row& z) {
  Shift r;
  for (Real v : z) r.m = std::max(r.m, v);
  Real s = 0;
  for (Real v : z) s += std::exp(v - r.m);
  r.log_s = std::log(s);
  return r;
}

// z_i − lse as (z_i − m) − log s, not z_i − (m + log s): for |z| ≳ 1e19 the
// sum m + log s rounds to m even in long double, and z_i − lse would lose the
// log s entirely (a tie of two logits at 1e30 gave 0 instead of −log 2).
Row log_softmax(const Row& z) {
  const Shift sh = shift_of(z);
  Row out(z.size());
  for (std::size_t i = 0; i < z.size(); ++i) out[i] = (z[i] - sh.m) - sh.log_s;
  return out;
}

Real entropy(const Row& p) {
  Real h = 0;
  for (Real pi : p)
    if (pi > 0) h -= pi * std::log(pi);
  return h;
}

Real cross_entropy(const Row& p, const Row& q) {
  Real h = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0) continue;
    if (q[i] == 0) return kInf;
    h -= p[i] * std::log(q[i]);
  }
  return h;
}

Real kl_divergence(const Row& p, const Row& q) {
  Real kl = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0) continue;
    if (q[i] == 0) return kInf;
    kl += p[i] * std::log(p[i] / q[i]);
  }
  return kl;
}

// lse − z_i as (m − z_i) + log s, for the reason given at log_softmax.
Real cross_entropy_from_logits(const Row& p, const Row& z) {
  const Shift sh = shift_of(z);
  Real h = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0) continue;
    if (z[i] == -kInf) return kInf;
    h += p[i] * ((sh.m - z[i]) + sh.log_s);
  }
  return h;
}

Real cross_entropy_from_logits(std::size_t target, const Row& z) {
  if (z[target] == -kInf) return kInf;
  const Shift sh = shift_of(z);
  return (sh.m - z[target]) + sh.log_s;
}

Row cross_entropy_grad(const Row& p, const Row& z) {
  Row g = softmax(z);
  for (std::size_t i = 0; i < g.size(); ++i) g[i] -= p[i];
  return g;
}

Row cross_entropy_grad(std::size_t target, const Row& z) {
  Row g = softmax(z);
  g[target] -= 1;
  return g;
}

Real binary_cross_entropy(Real y, Real p) {
  Real l = 0;
  if (y > 0) l -= y * std::log(p);
  if (y < 1) l -= (1 - y) * std::log(1 - p);
  return l;
}

// −[y log σ(z) + (1 − y) log(1 − σ(z))], with log σ(z) = −log(1 + e^{−z}).
Real binary_cross_entropy_with_logits(Real y, Real z) {
  const Real log_sig = z >= 0 ? -std::log1p(std::exp(-z)) : z - std::log1p(std::exp(z));
  const Real log_one_minus_sig = z >= 0 ? -z - std::log1p(std::exp(-z)) : -std::log1p(std::exp(z));
  Real l = 0;
  if (y > 0) l -= y * log_sig;
  if (y < 1) l -= (1 - y) * log_one_minus_sig;
  return l;
}

Real binary_cross_entropy_with_logits_grad(Real y, Real z) {
  return 1 / (1 + std::exp(-z)) - y;
}

Row smooth_uniform(std::size_t target, std::size_t k, Real eps) {
  Row t(k, eps / k);
  t[target] = 1 - eps + eps / k;
  return t;
}

Row smooth_off_target(std::size_t target, std::size_t k, Real eps) {
  Row t(k, k > 1 ? eps / (k - 1) : 0);
  t[target] = k > 1 ? 1 - eps : 1;
  return t;
}

Real gaussian_entropy(Real mu, Real sigma) {
  (void)mu;
  return 0.5L * std::log(2 * std::numbers::pi_v<Real> * std::numbers::e_v<Real> * sigma * sigma);
}

Real gaussian_cross_entropy(Real mu_p, Real sigma_p, Real mu_q, Real sigma_q) {
  const Real d = mu_p - mu_q;
  return 0.5L * std::log(2 * std::numbers::pi_v<Real> * sigma_q * sigma_q) +
         (sigma_p * sigma_p + d * d) / (2 * sigma_q * sigma_q);
}

Real gaussian_kl_divergence(Real mu_p, Real sigma_p, Real mu_q, Real sigma_q) {
  const Real d = mu_p - mu_q;
  return std::log(sigma_q / sigma_p) +
         (sigma_p * sigma_p + d * d) / (2 * sigma_q * sigma_q) - 0.5L;
}

}  // namespace xent::reference
