// `xent explain` beyond the table (issue 6): the verdict line, the
// comparison with mean squared error through the softmax, the "softmax
// twice" bug, and the named presets.
#include <cmath>
#include <span>

#include <fmt/format.h>

#include "common.h"
#include "explain.h"

namespace xent::cli {
namespace {

using Span = std::span<const double>;

double l2(const std::vector<double>& v) {
  long double s = 0;
  for (double x : v) s += static_cast<long double>(x) * x;
  return static_cast<double>(std::sqrt(s));
}

std::size_t argmax(const std::vector<double>& v) {
  std::size_t best = 0;
  for (std::size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = i;  // first maximum on ties
  return best;
}

std::string join(const std::vector<double>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += fmt::format("{}", v[i]);  // shortest form that reads back as the same double
  }
  return s;
}

}  // namespace

const std::vector<Preset>& presets() {
  static const std::vector<Preset> kPresets = {
      {"matched-soft",
       "the softmax matches a soft target exactly: loss = H(p) > 0, KL = 0, gradient 0",
       {}, -1, {0.6, 0.25, 0.1, 0.05}},
      {"diffuse-one-hot",
       "a one-hot target against a nearly uniform softmax: loss close to log K",
       {0.2, 0.0, 0.1, -0.1}, 0, {}},
      {"overconfident-wrong",
       "confident on the wrong class: a large loss, a CE gradient near ±1, an MSE gradient near 0",
       {6.0, 0.0, -1.0, -2.0}, 1, {}},
      {"soft-mismatch",
       "a soft target the model disagrees with: the loss is H(p) plus KL(p‖q)",
       {3.0, 1.0, 0.0, -1.0}, -1, {0.1, 0.2, 0.7, 0.0}},
  };
  return kPresets;
}

void apply_preset(ExplainOptions& opt) {
  for (const Preset& p : presets()) {
    if (opt.preset != p.name) continue;
    if (p.target >= 0) {
      opt.target = p.target;
      opt.logits = p.logits;
    } else {
      opt.p = p.p;
      if (p.logits.empty()) {  // matched: z = log p, so softmax(z) = p
        std::vector<double> z;
        for (double v : p.p) z.push_back(std::log(v));
        opt.logits = z;
      } else {
        opt.logits = p.logits;
      }
    }
    return;
  }
  throw UsageError(fmt::format("--preset: unknown preset '{}'", opt.preset));
}

std::string case_arguments(const ExplainOptions& opt) {
  std::string s = "--logits " + join(*opt.logits);
  if (opt.target) s += fmt::format(" --target {}", *opt.target);
  if (opt.p) s += " --p " + join(*opt.p);
  if (opt.smoothing) {
    s += fmt::format(" --smoothing {}", *opt.smoothing);
    if (opt.smoothing_mode == Smoothing::kOffTarget) s += " --smoothing-mode off-target";
  }
  if (opt.unit == Unit::kBits) s += " --bits";
  return s;
}

Verdict make_verdict(const LogitsResult& r) {
  std::vector<double> q, p;
  for (const auto& w : r.rows) q.push_back(w.prob), p.push_back(w.target);
  Verdict v;
  v.top_class = argmax(q);
  v.target_class = r.target_index ? *r.target_index : argmax(p);
  v.top_prob = q[v.top_class];
  v.target_prob = q[v.target_class];
  if (v.top_prob > 0.5)  // more than all other classes together
    v.label = v.top_class == v.target_class ? "confident-right" : "confident-wrong";
  else
    v.label = "uncertain";
  return v;
}

MseComparison compare_mse(const LogitsResult& r) {
  const std::size_t k = r.rows.size();
  MseComparison m;
  long double loss = 0, inner = 0;  // inner = Σ_i q_i (q_i − p_i)
  std::vector<double> ce;
  for (const auto& w : r.rows) {
    const long double d = static_cast<long double>(w.prob) - w.target;
    loss += d * d;
    inner += w.prob * d;
    ce.push_back(w.grad);
  }
  m.loss = static_cast<double>(loss);
  m.grad.resize(k);
  for (std::size_t j = 0; j < k; ++j) {
    const long double qj = r.rows[j].prob, d = qj - r.rows[j].target;
    m.grad[j] = static_cast<double>(2 * qj * (d - inner));
  }
  m.grad_norm = l2(m.grad);
  m.ce_grad_norm = l2(ce);
  return m;
}

DoubleSoftmax double_softmax(const LogitsResult& r, const std::vector<double>& p) {
  const std::size_t k = r.rows.size();
  std::vector<double> q, correct;
  for (const auto& w : r.rows) q.push_back(w.prob), correct.push_back(w.grad);
  DoubleSoftmax d;
  // The bug as a user would write it: libxent given probabilities as logits.
  d.loss = xent::cross_entropy_from_logits<double>(Span(p), Span(q), r.unit);
  std::vector<double> g(k);  // ∂loss/∂q = softmax(q) − p
  xent::cross_entropy_grad<double>(Span(p), Span(q), std::span<double>(g));
  // Back through the first softmax: (J g)_j = q_j (g_j − Σ_i q_i g_i).
  long double inner = 0;
  for (std::size_t i = 0; i < k; ++i) inner += static_cast<long double>(q[i]) * g[i];
  std::vector<double> gz(k);
  for (std::size_t j = 0; j < k; ++j)
    gz[j] = to_unit(static_cast<double>(q[j] * (g[j] - inner)), r.unit);
  d.grad_norm = l2(gz);
  d.correct_loss = r.loss;
  d.correct_grad_norm = l2(correct);
  if (r.target_index && !r.epsilon)  // best case q = one-hot: softmax(q)_t = e / (e + K − 1)
    d.loss_floor = to_unit(std::log1p(static_cast<double>(k - 1) / std::exp(1.0)), r.unit);
  return d;
}

}  // namespace xent::cli
