// Checks of every row function of xent/core.h against the long-double
// reference on one given input, in nats and in bits. Shared by the random
// accuracy sweep (core_test) and the extreme cases (extremes_test).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <span>
#include <vector>

#include "test_util.h"
#include "xent/core.h"

namespace xent_test {

inline bool all_neg_inf(const RefRow& z) {
  for (LD v : z)
    if (!(std::isinf(v) && v < 0)) return false;
  return true;
}

// logsumexp, softmax, log_softmax; the index-target loss and gradient for the
// given targets. Rows that are all -inf only check logsumexp (the rest throw,
// see errors_test).
template <class T>
void check_logits_row(const std::vector<T>& z, const std::vector<std::size_t>& targets) {
  const std::span<const T> zs(z);
  const RefRow zr = to_ref(z);
  EXPECT_TRUE(near_ref<T>("logsumexp", xent::logsumexp<T>(zs),
                          xent::reference::logsumexp(zr)));
  if (all_neg_inf(zr)) return;

  std::vector<T> out(z.size());
  xent::softmax<T>(zs, out);
  EXPECT_TRUE(near_ref<T>("softmax", out, xent::reference::softmax(zr)));
  xent::log_softmax<T>(zs, out);
  EXPECT_TRUE(near_ref<T>("log_softmax", out, xent::reference::log_softmax(zr)));

  for (const std::size_t t : targets) {
    const LD ref = xent::reference::cross_entropy_from_logits(t, zr);
    EXPECT_TRUE(near_ref<T>("cross_entropy_from_logits(index)",
                            xent::cross_entropy_from_logits<T>(t, zs), ref))
        << "target " << t;
    EXPECT_TRUE(near_ref<T>("cross_entropy_from_logits(index)",
                            xent::cross_entropy_from_logits<T>(t, zs, xent::Unit::kBits),
                            ref / kLn2L))
        << "target " << t << ", bits";
    xent::cross_entropy_grad<T>(t, zs, out);
    EXPECT_TRUE(near_ref<T>("cross_entropy_grad(index)", out,
                            xent::reference::cross_entropy_grad(t, zr)))
        << "target " << t;
  }
}

// Soft-target loss and gradient from logits.
template <class T>
void check_soft_target_row(const std::vector<T>& p, const std::vector<T>& z) {
  const RefRow pr = to_ref(p), zr = to_ref(z);
  const LD ref = xent::reference::cross_entropy_from_logits(pr, zr);
  EXPECT_TRUE(near_ref<T>("cross_entropy_from_logits(soft)",
                          xent::cross_entropy_from_logits<T>(std::span<const T>(p),
                                                             std::span<const T>(z)),
                          ref));
  EXPECT_TRUE(near_ref<T>("cross_entropy_from_logits(soft)",
                          xent::cross_entropy_from_logits<T>(
                              std::span<const T>(p), std::span<const T>(z), xent::Unit::kBits),
                          ref / kLn2L))
      << "bits";
  std::vector<T> grad(z.size());
  xent::cross_entropy_grad<T>(std::span<const T>(p), std::span<const T>(z), grad);
  EXPECT_TRUE(near_ref<T>("cross_entropy_grad(soft)", grad,
                          xent::reference::cross_entropy_grad(pr, zr)));
}

// entropy(p), cross_entropy(p, q), kl_divergence(p, q), nats and bits.
template <class T>
void check_distribution_pair(const std::vector<T>& p, const std::vector<T>& q) {
  const std::span<const T> ps(p), qs(q);
  const RefRow pr = to_ref(p), qr = to_ref(q);
  const LD h = xent::reference::entropy(pr);
  const LD ce = xent::reference::cross_entropy(pr, qr);
  // Against the KL libxent defines (kl_expected) and, under its own name,
  // against the reference's literal Σ p log(p/q).
  const LD kl_literal = xent::reference::kl_divergence(pr, qr);
  const LD kl = kl_expected(pr, qr);
  EXPECT_TRUE(near_ref<T>("entropy", xent::entropy<T>(ps), h));
  EXPECT_TRUE(near_ref<T>("entropy", xent::entropy<T>(ps, xent::Unit::kBits), h / kLn2L))
      << "bits";
  EXPECT_TRUE(near_ref<T>("cross_entropy", xent::cross_entropy<T>(ps, qs), ce));
  EXPECT_TRUE(near_ref<T>("cross_entropy", xent::cross_entropy<T>(ps, qs, xent::Unit::kBits),
                          ce / kLn2L))
      << "bits";
  EXPECT_TRUE(near_ref<T>("kl_divergence", xent::kl_divergence<T>(ps, qs), kl));
  EXPECT_TRUE(near_ref<T>("kl_divergence vs literal reference",
                          xent::kl_divergence<T>(ps, qs), kl_literal));
  EXPECT_TRUE(near_ref<T>("kl_divergence", xent::kl_divergence<T>(ps, qs, xent::Unit::kBits),
                          kl / kLn2L))
      << "bits";
}

}  // namespace xent_test
