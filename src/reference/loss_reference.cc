#include "reference/loss_reference.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace xent::reference {
namespace {
constexpr Real kInf = std::numeric_limits<Real>::infinity();
constexpr Real kNaN = std::numeric_limits<Real>::quiet_NaN();
}  // namespace

CeRefResult cross_entropy_batch(const std::vector<Row>& logits,
                                const std::vector<std::int64_t>& targets,
                                const std::vector<Row>& soft, const CeRefOptions& o) {
  const std::size_t N = logits.size();
  const bool is_soft = !soft.empty();
  CeRefResult res;
  res.row_loss.assign(N, 0);
  res.row_lse.assign(N, 0);
  res.grad.assign(N, Row());
  std::vector<Row> dce(N), dzl(N);  // per-row d(CE term)/dz, d(z term)/dz
  std::vector<bool> active(N, false);
  Real ce_total = 0, z_total = 0;
  for (std::size_t n = 0; n < N; ++n) {
    const Row& x = logits[n];
    const std::size_t V = x.size();
    res.grad[n].assign(V, 0);
    dce[n].assign(V, 0);
    dzl[n].assign(V, 0);
    // Transform and its derivative.
    Row z(V), dz(V);
    for (std::size_t j = 0; j < V; ++j) {
      Real v = x[j], d = 1;
      if (o.softcap > 0) {
        const Real th = std::tanh(x[j] / o.softcap);
        v = o.softcap * th;
        d = 1 - th * th;
      }
      z[j] = v / o.temperature;
      dz[j] = d / o.temperature;
    }
    const Real lse = logsumexp(z);
    res.row_lse[n] = lse;
    const bool ignored = !is_soft && targets[n] == o.ignore_index;
    if (ignored) continue;
    active[n] = true;
    ++res.count;
    const Row q = softmax(z);
    // Smoothed target.
    Row t(V, 0);
    if (is_soft) {
      t = soft[n];
    } else {
      t[static_cast<std::size_t>(targets[n])] = 1;
    }
    for (std::size_t j = 0; j < V; ++j) {
      if (o.off_target)
        t[j] = V > 1 ? (1 - o.epsilon) * t[j] + o.epsilon * (1 - t[j]) / Real(V - 1) : t[j];
      else
        t[j] = (1 - o.epsilon) * t[j] + o.epsilon / Real(V);
    }
    auto w = [&](std::size_t j) { return o.weight.empty() ? Real(1) : o.weight[j]; };
    if (!is_soft) {
      res.weight_sum += w(static_cast<std::size_t>(targets[n]));
      std::size_t arg = 0;
      for (std::size_t j = 1; j < V; ++j)
        if (x[j] > x[arg]) arg = j;
      if (arg == static_cast<std::size_t>(targets[n])) ++res.correct;
    } else {
      res.weight_sum += 1;
    }
    // Row loss: Σ_c w_c t'_c (1 − q_c)^γ (−log q_c); 0·anything = 0.
    Real ce = 0;
    Row fprime_q(V, 0);  // c_c · f'(q_c) · q_c
    for (std::size_t c = 0; c < V; ++c) {
      const Real cc = w(c) * t[c];
      if (cc == 0) continue;
      const Real logq = z[c] - lse;
      const Real one_m = 1 - q[c];
      const Real focal = o.gamma == 0 ? Real(1) : std::pow(one_m, o.gamma);
      ce += cc * focal * (-logq);
      // f(q) = −(1 − q)^γ log q;  q·f'(q) = γ(1 − q)^(γ−1) q log q − (1 − q)^γ
      // (multiplied through by q, so that q = 0 needs no 0·∞).
      Real qfp = -focal;
      if (o.gamma != 0) qfp += o.gamma * std::pow(one_m, o.gamma - 1) * q[c] * logq;
      fprime_q[c] = cc * qfp;
    }
    Real sum_fq = 0;
    for (std::size_t c = 0; c < V; ++c) sum_fq += fprime_q[c];
    // d/dz_j Σ_c g_c(q_c) = Σ_c g'_c q_c (δ_cj − q_j).
    for (std::size_t j = 0; j < V; ++j) dce[n][j] = (fprime_q[j] - q[j] * sum_fq) * dz[j];
    const Real zl = o.z_loss * lse * lse;
    for (std::size_t j = 0; j < V; ++j) dzl[n][j] = 2 * o.z_loss * lse * q[j] * dz[j];
    res.row_loss[n] = ce + zl;
    ce_total += ce;
    z_total += zl;
  }
  Real ce_scale = 1, z_scale = 1;
  if (o.reduction == RefReduction::kMean) {
    const bool ce_empty = !(res.weight_sum > 0), z_empty = res.count == 0;
    ce_scale = ce_empty ? 0 : 1 / res.weight_sum;
    z_scale = z_empty ? 0 : 1 / Real(res.count);
    const Real empty = o.empty_nan ? kNaN : Real(0);
    const Real ce_part = ce_empty ? empty : ce_total * ce_scale;
    res.z_loss = o.z_loss > 0 ? (z_empty ? empty : z_total * z_scale) : 0;
    res.loss = (ce_empty && !o.empty_nan) ? res.z_loss : ce_part + res.z_loss;
  } else {
    res.z_loss = z_total;
    res.loss = ce_total + z_total;
  }
  for (std::size_t n = 0; n < N; ++n)
    if (active[n])
      for (std::size_t j = 0; j < res.grad[n].size(); ++j)
        res.grad[n][j] = o.grad_scale * (ce_scale * dce[n][j] + z_scale * dzl[n][j]);
  return res;
}

BceRefResult bce_with_logits_batch(const std::vector<Row>& x, const std::vector<Row>& y,
                                   const std::vector<Row>& weight, const Row& pos_weight,
                                   RefReduction reduction, Real grad_scale) {
  BceRefResult res;
  const std::size_t N = x.size();
  const std::size_t C = N ? x[0].size() : 0;
  const Real numel = Real(N) * Real(C);
  const Real gs = grad_scale * (reduction == RefReduction::kMean ? 1 / numel : Real(1));
  Real total = 0;
  res.elem_loss.assign(N, Row(C, 0));
  res.grad.assign(N, Row(C, 0));
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t c = 0; c < C; ++c) {
      const Real w = weight.empty() ? Real(1) : weight[weight.size() == 1 ? 0 : n][c];
      const Real pw = pos_weight.empty() ? Real(1) : pos_weight[c];
      const Real xv = x[n][c], yv = y[n][c];
      // −w[pw·y·log σ(x) + (1 − y)·log σ(−x)], log σ(x) = −log(1 + e^{−x}).
      const Real log_sig = -std::log1p(std::exp(-xv));
      const Real log_sig_neg = -std::log1p(std::exp(xv));
      Real l = 0;
      if (yv != 0) l -= pw * yv * log_sig;
      if (yv != 1) l -= (1 - yv) * log_sig_neg;
      l *= w;
      res.elem_loss[n][c] = l;
      total += l;
      const Real sig = 1 / (1 + std::exp(-xv));
      // d/dx: −w[pw·y·(1 − σ) − (1 − y)·σ].
      res.grad[n][c] = gs * -w * (pw * yv * (1 - sig) - (1 - yv) * sig);
    }
  res.loss = reduction == RefReduction::kMean ? total / numel : total;
  return res;
}

KlRefResult kl_div_batch(const std::vector<Row>& input, const std::vector<Row>& target,
                         bool log_target, KlRefReduction reduction, Real grad_scale) {
  KlRefResult res;
  const std::size_t N = input.size();
  const std::size_t C = N ? input[0].size() : 0;
  Real div = 1;
  if (reduction == KlRefReduction::kMean) div = Real(N) * Real(C);
  if (reduction == KlRefReduction::kBatchMean) div = Real(N);
  Real total = 0;
  res.elem_loss.assign(N, Row(C, 0));
  res.grad.assign(N, Row(C, 0));
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t c = 0; c < C; ++c) {
      const Real p = log_target ? std::exp(target[n][c]) : target[n][c];
      const Real logp = log_target ? target[n][c] : (p > 0 ? std::log(p) : -kInf);
      const Real l = p > 0 ? p * (logp - input[n][c]) : Real(0);
      res.elem_loss[n][c] = l;
      total += l;
      res.grad[n][c] = -grad_scale * p / div;
    }
  res.loss = total / div;
  return res;
}

}  // namespace xent::reference
