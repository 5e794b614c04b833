// `xent explain`: options, the choice of case, and the built-in examples.
#include "cmd_explain.h"

#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common.h"

namespace xent::cli {
namespace {

constexpr const char* kExamples = R"(Examples:
  xent explain
      the built-in examples (both cases below)
  xent explain --p 0.6,0.3,0.1 --q 0.5,0.3,0.2
      H(p), H(p,q), KL(p||q) term by term
  xent explain --p 0.6,0.3,0.1 --q 0.5,0.3,0.2 --bits --json
      the same in bits, as one JSON object
  xent explain --logits 2,1.2,0.3 --target 0
      softmax, loss, perplexity and gradient q - p per class
  xent explain --logits 2,1.2,0.3 --target 0 --smoothing 0.1 --smoothing-mode off-target
      with label smoothing: 1 - e on the target, e/(K-1) elsewhere
  xent explain --logits -inf,1,2 --p 0,0.5,0.5
      a soft target p; -inf masks a class
  xent explain --preset overconfident-wrong --compare-mse
      why cross-entropy, not MSE: the gradients side by side
  xent explain --logits 4,1,0 --target 0 --double-softmax
      what calling softmax before a loss that expects logits does

Presets: matched-soft, diffuse-one-hot, overconfident-wrong, soft-mismatch.

Label smoothing: uniform (PyTorch's label_smoothing): 1 - e + e/K on the
target, e/K elsewhere; off-target: 1 - e on the target, e/(K-1) elsewhere.

Exit codes: 0 success, 2 bad option or bad value (one line on stderr,
'xent: error: ...'), 1 unexpected failure.)";

bool given(const CLI::App& cmd, const char* name) { return cmd.count(name) > 0; }

}  // namespace

CLI::App* add_explain_command(CLI::App& app, ExplainArgs& a) {
  CLI::App* cmd = app.add_subcommand(
      "explain", "Show a cross-entropy term by term: a p-vs-q table, or a logits row with "
                 "softmax, loss and gradient. No options: built-in examples.");
  cmd->add_option("--p", a.p, "target distribution p, comma-separated (sums to 1)")
      ->type_name("LIST");
  cmd->add_option("--q", a.q, "model distribution q, comma-separated (sums to 1)")
      ->type_name("LIST");
  cmd->add_option("--logits", a.logits, "logits z, comma-separated (-inf masks a class)")
      ->type_name("LIST");
  cmd->add_option("--target", a.target, "target class index for --logits (0-based)")
      ->type_name("INDEX");
  cmd->add_option("--smoothing", a.smoothing, "label smoothing epsilon in [0, 1] (with --logits)")
      ->type_name("EPS");
  cmd->add_option("--smoothing-mode", a.smoothing_mode, "uniform (default) or off-target")
      ->type_name("MODE")
      ->check(CLI::IsMember({"uniform", "off-target"}));
  cmd->add_flag("--bits", a.bits, "values in bits (log base 2) instead of nats");
  cmd->add_flag("--json", a.json, "print one JSON object instead of the table");
  cmd->add_option("--digits", a.digits, "decimals in the text table (default 6)")
      ->check(CLI::Range(1, 17));
  std::vector<std::string> names;
  for (const Preset& p : presets()) names.push_back(p.name);
  cmd->add_option("--preset", a.preset, "a named logits case (listed below)")
      ->type_name("NAME")
      ->check(CLI::IsMember(names));
  cmd->add_flag("--compare-mse", a.compare_mse,
                "logits case: also the MSE-through-softmax loss and gradient");
  cmd->add_flag("--double-softmax", a.double_softmax,
                "logits case: also the loss and gradient norm if softmax(z) were passed as logits");
  cmd->footer(kExamples);
  return cmd;
}

ExplainOptions to_options(const CLI::App& cmd, const ExplainArgs& a) {
  ExplainOptions o;
  o.unit = a.bits ? Unit::kBits : Unit::kNats;
  o.json = a.json;
  o.digits = a.digits;
  if (given(cmd, "--p")) o.p = parse_number_list(a.p, "--p");
  if (given(cmd, "--q")) o.q = parse_number_list(a.q, "--q");
  if (given(cmd, "--logits")) o.logits = parse_number_list(a.logits, "--logits");
  if (given(cmd, "--target")) o.target = parse_index(a.target, "--target");
  if (given(cmd, "--smoothing")) o.smoothing = parse_number(a.smoothing, "--smoothing");
  o.smoothing_mode = a.smoothing_mode == "off-target" ? Smoothing::kOffTarget : Smoothing::kUniform;
  o.compare_mse = a.compare_mse;
  o.double_softmax = a.double_softmax;
  if (given(cmd, "--preset")) {
    if (o.p || o.q || o.logits || o.target)
      throw UsageError("--preset defines the case: it cannot be combined with --p, --q, "
                       "--logits or --target");
    o.preset = a.preset;
    apply_preset(o);
  }

  // Which case, and are the options consistent with it?
  if (o.logits) {
    if (o.q) throw UsageError("--q cannot be combined with --logits (q is softmax(logits))");
    if (o.target && o.p) throw UsageError("give either --target or --p with --logits, not both");
    if (!o.target && !o.p) throw UsageError("--logits needs a target: --target INDEX or --p LIST");
  } else {
    if (o.target) throw UsageError("--target needs --logits");
    if (o.smoothing) throw UsageError("--smoothing needs --logits");
    if (o.p && !o.q) throw UsageError("--p needs --q (or --logits)");
    if (o.q && !o.p) throw UsageError("--q needs --p");
  }
  if (given(cmd, "--smoothing-mode") && !o.smoothing)
    throw UsageError("--smoothing-mode needs --smoothing");
  if (!o.logits && (o.compare_mse || o.double_softmax))
    throw UsageError(std::string(o.compare_mse ? "--compare-mse" : "--double-softmax") +
                     " needs a logits case (--logits or --preset)");
  return o;
}

int run_explain(const ExplainOptions& o) {
  if (!o.logits && !o.p) {
    // Built-in examples: the two cases of the help text, in the chosen unit.
    ExplainOptions lo = o;
    lo.logits = std::vector<double>{2, 1.2, 0.3};
    lo.target = 0;
    const DiscreteResult d = explain_discrete({0.6, 0.3, 0.1}, {0.5, 0.3, 0.2}, o.unit);
    const LogitsResult l = explain_logits(lo);
    const char* bits = o.unit == Unit::kBits ? " --bits" : "";
    if (o.json) {
      nlohmann::json j;
      j["examples"] = {render_json(d), render_json(l)};
      std::puts(j.dump().c_str());
    } else {
      std::fputs(fmt::format("$ xent explain --p 0.6,0.3,0.1 --q 0.5,0.3,0.2{}\n", bits).c_str(),
                 stdout);
      std::fputs(render_text(d, o.digits).c_str(), stdout);
      std::fputs(fmt::format("\n$ xent explain --logits 2,1.2,0.3 --target 0{}\n", bits).c_str(),
                 stdout);
      std::fputs(render_text(l, o.digits).c_str(), stdout);
    }
    return kExitOk;
  }
  if (o.logits) {
    const LogitsResult l = explain_logits(o);
    if (!o.json && !o.preset.empty()) {
      // Say what the preset is, and the command that reproduces it.
      for (const Preset& p : presets())
        if (o.preset == p.name)
          std::fputs(fmt::format("Preset {}: {}\n$ xent explain {}\n", p.name, p.lesson,
                                 case_arguments(o))
                         .c_str(),
                     stdout);
    }
    std::fputs(o.json ? (render_json(l).dump() + "\n").c_str() : render_text(l, o.digits).c_str(),
               stdout);
  } else {
    const DiscreteResult d = explain_discrete(*o.p, *o.q, o.unit);
    std::fputs(o.json ? (render_json(d).dump() + "\n").c_str() : render_text(d, o.digits).c_str(),
               stdout);
  }
  return kExitOk;
}

}  // namespace xent::cli
