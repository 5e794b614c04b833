// Text and JSON renderings of `xent explain`.
#include <cmath>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "explain.h"
#include "table.h"

namespace xent::cli {
namespace {

const char* unit_name(Unit u) { return u == Unit::kBits ? "bits" : "nats"; }
const char* log_name(Unit u) { return u == Unit::kBits ? "log2" : "log"; }

std::string num(double v, int digits) { return format_number(v, digits); }

// JSON has no infinity: +inf (p > 0 where q = 0) and -inf (a masked logit)
// are written as the strings "inf" and "-inf"; every finite double is a JSON
// number printed with the shortest digits that round-trip (nlohmann's dtoa).
nlohmann::json jnum(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (std::isnan(v)) return "nan";  // not produced by valid input; kept visible
  return v == 0 ? 0.0 : v;          // −0.0 (−p·log 1) prints as 0.0
}

nlohmann::json jarray(const std::vector<double>& v) {
  nlohmann::json a = nlohmann::json::array();
  for (double x : v) a.push_back(jnum(x));
  return a;
}

std::string render_verdict(const Verdict& v, int d) {
  const char* what = v.label == "confident-right"   ? "confident and right"
                     : v.label == "confident-wrong" ? "confident and wrong"
                                                    : "uncertain";
  if (v.top_class == v.target_class)
    return fmt::format("\n  verdict: {}: softmax puts {} on class {}, the target\n", what,
                       num(v.top_prob, d), v.top_class);
  return fmt::format("\n  verdict: {}: softmax puts {} on class {}; the target, class {}, gets {}\n",
                     what, num(v.top_prob, d), v.top_class, v.target_class,
                     num(v.target_prob, d));
}

std::string render_mse(const LogitsResult& r, int d) {
  const MseComparison& m = *r.mse;
  const char* un = unit_name(r.unit);
  Table t;
  t.add_header({"class", "target p", "softmax q", r.unit == Unit::kBits ? "grad CE (q−p)/ln 2"
                                                                       : "grad CE q−p",
                "grad MSE"});
  t.add_header({"", "", "", fmt::format("[{}/logit]", un), "[per logit]"});
  t.add_rule();
  for (std::size_t i = 0; i < r.rows.size(); ++i)
    t.add_row({std::to_string(i), num(r.rows[i].target, d), num(r.rows[i].prob, d),
               num(r.rows[i].grad, d), num(m.grad[i], d)});
  t.add_rule();
  t.add_row({"‖grad‖", "", "", num(m.ce_grad_norm, d), num(m.grad_norm, d)});
  t.add_row({"loss", "", "", num(r.loss, d) + " " + un, num(m.loss, d)});
  std::string out = "\nCross-entropy against mean squared error through the softmax\n\n";
  out += t.render();
  out += "\n  MSE = Σ (q_i − p_i)² (the row's Brier score; divide by K for a per-class mean)\n"
         "  grad MSE_j = 2 q_j [(q_j − p_j) − Σ_i q_i (q_i − p_i)]: it carries a factor q_j,\n"
         "  so it vanishes where the softmax saturates, however wrong the prediction\n";
  return out;
}

std::string render_double_softmax(const LogitsResult& r, int d) {
  const DoubleSoftmax& s = *r.double_softmax;
  const char* un = unit_name(r.unit);
  Table t;
  t.align_left(0);
  t.add_header({"", "loss", "‖grad‖"});
  t.add_header({"", fmt::format("[{}]", un), fmt::format("[{}/logit]", un)});
  t.add_rule();
  t.add_row({"correct: cross_entropy_from_logits(p, z)", num(s.correct_loss, d),
             num(s.correct_grad_norm, d)});
  t.add_row({"bug: cross_entropy_from_logits(p, softmax(z))", num(s.loss, d),
             num(s.grad_norm, d)});
  std::string out = "\nSoftmax applied twice: probabilities passed where logits belong\n\n";
  out += t.render();
  out += "\n  (the bug's gradient is taken with respect to z, through both softmaxes)\n";
  if (s.loss_floor)
    out += fmt::format(
        "  with probabilities as logits the loss can never fall below\n"
        "  {}(1 + (K − 1)/e) = {} {}, however right the model is\n",
        log_name(r.unit), num(*s.loss_floor, d), un);
  return out;
}

}  // namespace

std::string render_text(const DiscreteResult& r, int d) {
  const std::string u = fmt::format("[{}]", unit_name(r.unit));
  const std::string lg = log_name(r.unit);
  Table t;
  t.add_header({"i", "p", "q", "−p·" + lg + " p", "−p·" + lg + " q", "p·" + lg + "(p/q)"});
  t.add_header({"", "", "", u, u, u});
  t.add_rule();
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    const auto& w = r.rows[i];
    t.add_row({std::to_string(i), num(w.p, d), num(w.q, d), num(w.neg_p_log_p, d),
               num(w.neg_p_log_q, d), num(w.p_log_p_over_q, d)});
  }
  t.add_rule();
  t.add_row({"total", "", "", num(r.entropy, d), num(r.cross_entropy, d), num(r.kl, d)});
  t.add_row({"", "", "", "= H(p)", "= H(p,q)", "= KL(p‖q)"});

  std::string out = fmt::format("Discrete case: target p against model q, K = {}, unit: {}\n\n",
                                r.rows.size(), unit_name(r.unit));
  out += t.render();
  out += fmt::format("\n  H(p)     = {:>{}}  {}   entropy of p\n", num(r.entropy, d), d + 4,
                     unit_name(r.unit));
  out += fmt::format("  H(p,q)   = {:>{}}  {}   cross-entropy of q relative to p\n",
                     num(r.cross_entropy, d), d + 4, unit_name(r.unit));
  out += fmt::format("  KL(p‖q)  = {:>{}}  {}   extra cost of coding p with q\n", num(r.kl, d),
                     d + 4, unit_name(r.unit));
  const double rhs = r.entropy + r.kl;
  out += fmt::format("  check: H(p,q) = H(p) + KL(p‖q):  {} = {} + {}", num(r.cross_entropy, d),
                     num(r.entropy, d), num(r.kl, d));
  if (std::isfinite(r.cross_entropy) && std::isfinite(rhs))
    out += fmt::format("  (difference {:.1e})\n", r.cross_entropy - rhs);
  else
    out += "  (infinite: some p > 0 has q = 0)\n";
  out += "  (terms: long double from the definitions; totals: libxent)\n";
  return out;
}

std::string render_text(const LogitsResult& r, int d) {
  const std::string u = fmt::format("[{}]", unit_name(r.unit));
  const std::string lg = log_name(r.unit);
  const bool bits = r.unit == Unit::kBits;
  Table t;
  t.add_header({"class", "logit z", "softmax q", "target p", "−p·" + lg + " q",
                bits ? "grad (q−p)/ln 2" : "grad q−p"});
  t.add_header({"", "", "", "", u, fmt::format("[{}/logit]", unit_name(r.unit))});
  t.add_rule();
  double sum_q = 0, sum_p = 0;
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    const auto& w = r.rows[i];
    sum_q += w.prob, sum_p += w.target;
    std::string cls = std::to_string(i);
    if (r.target_index && *r.target_index == i) cls = "→ " + cls;
    t.add_row({cls, num(w.logit, d), num(w.prob, d), num(w.target, d), num(w.loss_term, d),
               num(w.grad, d)});
  }
  t.add_rule();
  t.add_row({"total", "", num(sum_q, d), num(sum_p, d), num(r.loss, d), ""});
  t.add_row({"", "", "", "", "= loss", ""});

  std::string target;
  if (r.target_index)
    target = fmt::format("target class {}", *r.target_index);
  else
    target = "soft target p";
  if (r.epsilon)
    target += fmt::format(", label smoothing ε = {} ({})", r.epsilon.value(),
                          SmoothingName(r.smoothing_mode));
  std::string out = fmt::format("Logits case: K = {}, {}, unit: {}\n\n", r.rows.size(), target,
                                unit_name(r.unit));
  out += t.render();
  const char* un = unit_name(r.unit);
  out += fmt::format("\n  loss = H(p, softmax(z)) = {:>{}}  {}\n", num(r.loss, d), d + 4, un);
  out += fmt::format("  perplexity = {}^loss     = {:>{}}\n", bits ? "2" : "e",
                     num(r.perplexity, d), d + 4);
  out += fmt::format("  H(p)  (target entropy)  = {:>{}}  {}\n", num(r.entropy, d), d + 4, un);
  out += fmt::format("  KL(p‖q) = loss − H(p)   = {:>{}}  {}\n", num(r.kl, d), d + 4, un);
  out += fmt::format("  (gradient of the loss in {} with respect to each logit; it sums to 0)\n",
                     un);
  out += render_verdict(r.verdict, d);
  if (r.mse) out += render_mse(r, d);
  if (r.double_softmax) out += render_double_softmax(r, d);
  return out;
}

nlohmann::json render_json(const DiscreteResult& r) {
  nlohmann::json j;
  j["case"] = "discrete";
  j["unit"] = unit_name(r.unit);
  j["k"] = r.rows.size();
  nlohmann::json rows = nlohmann::json::array();
  std::vector<double> p, q;
  for (const auto& w : r.rows) {
    p.push_back(w.p), q.push_back(w.q);
    rows.push_back({{"p", jnum(w.p)},
                    {"q", jnum(w.q)},
                    {"neg_p_log_p", jnum(w.neg_p_log_p)},
                    {"neg_p_log_q", jnum(w.neg_p_log_q)},
                    {"p_log_p_over_q", jnum(w.p_log_p_over_q)}});
  }
  j["p"] = jarray(p);
  j["q"] = jarray(q);
  j["rows"] = rows;
  j["entropy"] = jnum(r.entropy);
  j["cross_entropy"] = jnum(r.cross_entropy);
  j["kl"] = jnum(r.kl);
  j["check"] = {{"cross_entropy", jnum(r.cross_entropy)},
                {"entropy_plus_kl", jnum(r.entropy + r.kl)}};
  return j;
}

nlohmann::json render_json(const LogitsResult& r) {
  nlohmann::json j;
  j["case"] = "logits";
  j["unit"] = unit_name(r.unit);
  j["k"] = r.rows.size();
  std::vector<double> z, probs, targets, grad;
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& w : r.rows) {
    z.push_back(w.logit), probs.push_back(w.prob), targets.push_back(w.target),
        grad.push_back(w.grad);
    rows.push_back({{"logit", jnum(w.logit)},
                    {"prob", jnum(w.prob)},
                    {"target", jnum(w.target)},
                    {"loss_term", jnum(w.loss_term)},
                    {"grad", jnum(w.grad)}});
  }
  j["logits"] = jarray(z);
  if (r.target_index) j["target"] = *r.target_index;
  if (r.soft_target) j["p"] = jarray(*r.soft_target);
  if (r.epsilon)
    j["smoothing"] = {{"epsilon", jnum(*r.epsilon)}, {"mode", SmoothingName(r.smoothing_mode)}};
  j["targets"] = jarray(targets);
  j["probs"] = jarray(probs);
  j["grad"] = jarray(grad);
  j["rows"] = rows;
  j["loss"] = jnum(r.loss);
  j["cross_entropy"] = jnum(r.loss);
  j["perplexity"] = jnum(r.perplexity);
  j["entropy"] = jnum(r.entropy);
  j["kl"] = jnum(r.kl);
  const Verdict& v = r.verdict;
  j["verdict"] = {{"label", v.label},
                  {"top_class", v.top_class},
                  {"top_prob", jnum(v.top_prob)},
                  {"target_class", v.target_class},
                  {"target_prob", jnum(v.target_prob)}};
  if (!r.preset.empty()) j["preset"] = r.preset;
  if (r.mse)
    j["mse"] = {{"loss", jnum(r.mse->loss)},
                {"grad", jarray(r.mse->grad)},
                {"grad_norm", jnum(r.mse->grad_norm)},
                {"ce_grad_norm", jnum(r.mse->ce_grad_norm)}};
  if (r.double_softmax) {
    const DoubleSoftmax& s = *r.double_softmax;
    j["double_softmax"] = {{"loss", jnum(s.loss)},
                           {"grad_norm", jnum(s.grad_norm)},
                           {"correct_loss", jnum(s.correct_loss)},
                           {"correct_grad_norm", jnum(s.correct_grad_norm)}};
    if (s.loss_floor) j["double_softmax"]["loss_floor"] = jnum(*s.loss_floor);
  }
  return j;
}

}  // namespace xent::cli
