// The reference: every quantity of libxent written plainly from its
// definition in long double (64-bit mantissa on x86-64), for tests, benchmarks
// and the CLI's checks to compare against. No tricks: two passes (max, then
// Σ exp), literal formulas, 0·log 0 = 0 by an explicit `if`. Slow on purpose.
// It does not validate: callers pass valid input.
#pragma once

#include <cstddef>
#include <vector>

namespace xent::reference {

using Real = long double;
using Row = std::vector<Real>;

Real logsumexp(const Row& z);                  // -inf for an all -inf row
Row softmax(const Row& z);
Row log_softmax(const Row& z);
Real entropy(const Row& p);
Real cross_entropy(const Row& p, const Row& q);
Real kl_divergence(const Row& p, const Row& q);
Real cross_entropy_from_logits(const Row& p, const Row& z);
Real cross_entropy_from_logits(std::size_t target, const Row& z);
Row cross_entropy_grad(const Row& p, const Row& z);      // softmax(z) − p
Row cross_entropy_grad(std::size_t target, const Row& z);
Real binary_cross_entropy(Real y, Real p);
Real binary_cross_entropy_with_logits(Real y, Real z);
Real binary_cross_entropy_with_logits_grad(Real y, Real z);
Row smooth_uniform(std::size_t target, std::size_t k, Real eps);
Row smooth_off_target(std::size_t target, std::size_t k, Real eps);
Real gaussian_entropy(Real mu, Real sigma);
Real gaussian_cross_entropy(Real mu_p, Real sigma_p, Real mu_q, Real sigma_q);
Real gaussian_kl_divergence(Real mu_p, Real sigma_p, Real mu_q, Real sigma_q);

}  // namespace xent::reference
