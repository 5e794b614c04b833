// cli/explain.h — `xent explain`: the term-by-term anatomy of one case.
//
// Two cases:
//   * discrete: a target distribution p against a model distribution q;
//     per outcome −p·log p, −p·log q, p·log(p/q), and H(p), H(p,q), KL(p‖q).
//   * logits: a row of logits z with a hard target (class index, optionally
//     label-smoothed) or a soft target p; per class softmax q, target p, the
//     class's share of the loss −p·log q, the gradient q − p; the loss and
//     perplexity.
// The totals come from libxent; the per-term columns are computed here in
// long double straight from the definitions, so a reader can see the totals
// are the sums of the terms (and the tests check that).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "xent/core.h"
#include "xent/smoothing.h"

namespace xent::cli {

// What the user asked for, as parsed from the command line.
struct ExplainOptions {
  std::optional<std::vector<double>> p, q, logits;
  std::optional<long long> target;
  std::optional<double> smoothing;  // ε
  Smoothing smoothing_mode = Smoothing::kUniform;
  Unit unit = Unit::kNats;
  bool json = false;
  int digits = 6;             // decimals in the text table
  bool compare_mse = false;   // logits case: MSE-through-softmax beside CE
  bool double_softmax = false;  // logits case: the "softmax twice" bug beside the right call
  std::string preset;         // a named logits case (see kPresets), "" for none
};

// Named logits cases that each show one lesson (issue 6). `logits` and
// either `target` (≥ 0) or `p` define the case; matched-soft's logits are
// log p, computed when the preset is applied.
struct Preset {
  const char* name;
  const char* lesson;
  std::vector<double> logits;
  long long target;  // -1: soft target `p`
  std::vector<double> p;
};
const std::vector<Preset>& presets();
// Fills opt.logits and opt.target / opt.p from the named preset; UsageError
// for an unknown name.
void apply_preset(ExplainOptions& opt);
// The equivalent command line of a logits case, e.g. "--logits 2,1 --target 0".
std::string case_arguments(const ExplainOptions& opt);

// Every value below is in `unit` (nats or bits) unless it is a probability.
struct DiscreteRow {
  double p, q;
  double neg_p_log_p;     // −p·log p   (0 when p = 0)
  double neg_p_log_q;     // −p·log q   (0 when p = 0, +inf when p > 0 = q)
  double p_log_p_over_q;  // p·log(p/q) (same conventions)
};

struct DiscreteResult {
  Unit unit;
  std::vector<DiscreteRow> rows;
  double entropy, cross_entropy, kl;  // libxent: H(p), H(p,q), KL(p‖q)
};

struct LogitsRow {
  double logit, prob, target;
  double loss_term;  // −p·log q = p·(logsumexp(z) − z): the class's share of the loss
  double grad;       // ∂loss/∂z = q − p, divided by ln 2 when the unit is bits
};

// A one-line reading of a logits case. top = argmax softmax, truth = the
// target class (argmax of the target distribution; first on ties).
// confident: top probability > 0.5, i.e. more than all other classes together.
struct Verdict {
  std::string label;  // "confident-right", "confident-wrong", "uncertain"
  std::size_t top_class, target_class;
  double top_prob, target_prob;
};

// Mean squared error through the softmax, the alternative cross-entropy is
// usually compared with: L = Σ_i (q_i − p_i)² (the row's Brier score; a
// per-class mean is L/K), ∂L/∂z_j = 2 q_j [(q_j − p_j) − Σ_i q_i (q_i − p_i)].
// Unitless (squared probabilities), so --bits does not change it.
struct MseComparison {
  double loss;
  std::vector<double> grad;
  double grad_norm, ce_grad_norm;  // L2 norms; CE in the chosen unit per logit
};

// The "softmax twice" bug: probabilities q = softmax(z) passed where logits
// belong, loss H(p, softmax(q)). Its gradient with respect to z goes through
// both softmaxes: J_q (softmax(q) − p) with J_q = diag(q) − q qᵀ.
struct DoubleSoftmax {
  double loss, grad_norm;                  // the bug
  double correct_loss, correct_grad_norm;  // H(p, softmax(z)), ‖q − p‖
  std::optional<double> loss_floor;        // hard target: the loss can't go below
                                           // log(1 + (K − 1)/e) (probabilities ≤ 1)
};

struct LogitsResult {
  Unit unit;
  std::optional<std::size_t> target_index;  // hard target
  std::optional<std::vector<double>> soft_target;  // --p given with --logits
  std::optional<double> epsilon;            // label smoothing applied
  Smoothing smoothing_mode = Smoothing::kUniform;
  std::vector<LogitsRow> rows;
  double loss;        // libxent cross_entropy_from_logits
  double perplexity;  // libxent perplexity(loss)
  double entropy;     // libxent entropy of the (smoothed) target
  double kl;          // libxent KL(target ‖ softmax); see explain_logits for
                      // the case where the softmax underflows to 0
  Verdict verdict;
  std::optional<MseComparison> mse;            // --compare-mse
  std::optional<DoubleSoftmax> double_softmax;  // --double-softmax
  std::string preset;                          // --preset name, "" for none
};

// The parts of a LogitsResult beyond the table (cli/explain_extras.cc); they
// read r.rows and fill the rest.
Verdict make_verdict(const LogitsResult& r);
MseComparison compare_mse(const LogitsResult& r);
DoubleSoftmax double_softmax(const LogitsResult& r, const std::vector<double>& targets);

// Both throw xent::Error (from libxent) or UsageError on invalid input.
DiscreteResult explain_discrete(const std::vector<double>& p, const std::vector<double>& q,
                                Unit unit);
LogitsResult explain_logits(const ExplainOptions& opt);

// Text (a table and the totals) and JSON renderings.
std::string render_text(const DiscreteResult& r, int digits);
std::string render_text(const LogitsResult& r, int digits);
nlohmann::json render_json(const DiscreteResult& r);
nlohmann::json render_json(const LogitsResult& r);

// The whole subcommand: validates the combination of options, runs the case
// (or the built-in examples when no case is given), prints to stdout.
int run_explain(const ExplainOptions& opt);

}  // namespace xent::cli
