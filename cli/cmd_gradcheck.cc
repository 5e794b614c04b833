// Every analytic gradient of libxent against central finite differences of
// the same function evaluated in float64 (xent::gradcheck, 5-point stencil).
// The losses are smooth away from ties and from the softcap/temperature
// saturation, so random N(0, 2²) logits give errors at the level of the
// stencil's truncation and rounding (~1e-9 relative), far below 1e-6.
#include "cmd_gradcheck.h"

#include <cmath>
#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common.h"
#include "xent/core.h"
#include "xent/gradcheck.h"
#include "xent/loss.h"

namespace xent::cli {
namespace {

struct Check {
  std::string loss, option;
  // Builds a random case from rng: returns (x, f, analytic gradient at x).
  std::function<void(std::mt19937_64&, std::vector<double>&, std::function<double(std::span<const double>)>&,
                     std::vector<double>&)>
      make;
};

MatrixView view(std::span<const double> x, std::int64_t n, std::int64_t v) {
  return {x.data(), DType::kF64, n, v, v};
}

std::vector<double> normal(std::mt19937_64& rng, std::size_t k, double sd) {
  std::normal_distribution<double> d(0, sd);
  std::vector<double> v(k);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<double> dirichlet(std::mt19937_64& rng, std::int64_t n, std::int64_t v) {
  std::gamma_distribution<double> g(1.0);
  std::vector<double> p(static_cast<std::size_t>(n * v));
  for (std::int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (std::int64_t c = 0; c < v; ++c) s += p[static_cast<std::size_t>(i * v + c)] = g(rng) + 1e-3;
    for (std::int64_t c = 0; c < v; ++c) p[static_cast<std::size_t>(i * v + c)] /= s;
  }
  return p;
}

// A cross-entropy check with fixed options; targets are drawn per case.
Check ce_check(std::string option, CrossEntropyOptions opt, bool soft = false, bool weights = false) {
  return {"cross_entropy_loss", std::move(option),
          [opt, soft, weights](std::mt19937_64& rng, std::vector<double>& x,
                               std::function<double(std::span<const double>)>& f, std::vector<double>& g) {
            const std::int64_t n = 4, v = 7;
            x = normal(rng, static_cast<std::size_t>(n * v), 2.0);
            auto idx = std::make_shared<std::vector<std::int64_t>>(static_cast<std::size_t>(n));
            std::uniform_int_distribution<std::int64_t> cls(0, v - 1);
            for (auto& t : *idx) t = cls(rng);
            if (opt.ignore_index >= 0) (*idx)[1] = opt.ignore_index;  // at least one ignored row
            auto p = std::make_shared<std::vector<double>>(dirichlet(rng, n, v));
            auto w = std::make_shared<std::vector<float>>(static_cast<std::size_t>(v));
            std::uniform_real_distribution<float> wd(0.2f, 2.0f);
            for (auto& wi : *w) wi = wd(rng);
            auto o = std::make_shared<CrossEntropyOptions>(opt);
            if (weights) o->class_weight = w->data();
            auto targets = [=]() {
              return soft ? Targets::Soft(MatrixView{p->data(), DType::kF64, n, v, v}) : Targets::Index(idx->data());
            };
            // f owns the weights o points into (w), so they live as long as f.
            f = [=](std::span<const double> z) {
              (void)w;
              return cross_entropy_loss(view(z, n, v), targets(), *o).loss;
            };
            g.assign(x.size(), 0.0);
            CrossEntropyOutputs out;
            out.grad = {g.data(), DType::kF64, n, v, v};
            cross_entropy_loss(view(x, n, v), targets(), *o, out);
          }};
}

std::vector<Check> all_checks() {
  std::vector<Check> c;
  auto opt = [](auto setter) {
    CrossEntropyOptions o;
    setter(o);
    return o;
  };
  c.push_back(ce_check("mean", {}));
  c.push_back(ce_check("sum", opt([](auto& o) { o.reduction = Reduction::kSum; })));
  c.push_back(ce_check("none (gradient of the sum)", opt([](auto& o) { o.reduction = Reduction::kNone; })));
  c.push_back(ce_check("ignore_index", opt([](auto& o) { o.ignore_index = 3; })));
  c.push_back(ce_check("class weights", {}, false, true));
  c.push_back(ce_check("label smoothing 0.1 uniform", opt([](auto& o) { o.label_smoothing = 0.1; })));
  c.push_back(ce_check("label smoothing 0.1 off-target", opt([](auto& o) {
    o.label_smoothing = 0.1;
    o.smoothing = Smoothing::kOffTarget;
  })));
  c.push_back(ce_check("smoothing + weights", opt([](auto& o) { o.label_smoothing = 0.2; }), false, true));
  c.push_back(ce_check("temperature 2.5", opt([](auto& o) { o.temperature = 2.5; })));
  c.push_back(ce_check("z-loss 1e-2", opt([](auto& o) { o.z_loss = 1e-2; })));
  c.push_back(ce_check("softcap 3", opt([](auto& o) { o.softcap = 3.0; })));
  c.push_back(ce_check("focal gamma 2", opt([](auto& o) { o.focal_gamma = 2.0; })));
  c.push_back(ce_check("soft targets", {}, true));
  c.push_back(ce_check("soft targets + weights + smoothing", opt([](auto& o) { o.label_smoothing = 0.1; }), true, true));
  c.push_back(ce_check("all options", opt([](auto& o) {
    o.label_smoothing = 0.1;
    o.temperature = 1.7;
    o.z_loss = 1e-3;
    o.softcap = 5.0;
    o.focal_gamma = 1.0;
  }), false, true));

  c.push_back({"binary_cross_entropy_with_logits_loss", "weight + pos_weight, mean",
               [](std::mt19937_64& rng, std::vector<double>& x, std::function<double(std::span<const double>)>& f,
                  std::vector<double>& g) {
                 const std::int64_t n = 3, k = 5;
                 x = normal(rng, static_cast<std::size_t>(n * k), 3.0);
                 std::uniform_real_distribution<double> u(0, 1);
                 auto y = std::make_shared<std::vector<double>>(static_cast<std::size_t>(n * k));
                 for (auto& v : *y) v = u(rng) < 0.5 ? 0.0 : (u(rng) < 0.5 ? 1.0 : u(rng));
                 auto w = std::make_shared<std::vector<double>>(static_cast<std::size_t>(k));
                 auto pw = std::make_shared<std::vector<float>>(static_cast<std::size_t>(k));
                 for (auto& v : *w) v = 0.5 + u(rng);
                 for (auto& v : *pw) v = static_cast<float>(0.5 + 2 * u(rng));
                 auto o = std::make_shared<BceOptions>();
                 o->weight = {w->data(), DType::kF64, 1, k, k};
                 o->pos_weight = pw->data();
                 f = [=](std::span<const double> z) {  // owns w and pw, which o points into
                   (void)w, (void)pw;
                   return binary_cross_entropy_with_logits_loss(view(z, n, k), {y->data(), DType::kF64, n, k, k}, *o);
                 };
                 g.assign(x.size(), 0.0);
                 BceOutputs out;
                 out.grad = {g.data(), DType::kF64, n, k, k};
                 binary_cross_entropy_with_logits_loss(view(x, n, k), {y->data(), DType::kF64, n, k, k}, *o, out);
               }});
  c.push_back({"kl_div_loss", "batchmean, target probabilities",
               [](std::mt19937_64& rng, std::vector<double>& x, std::function<double(std::span<const double>)>& f,
                  std::vector<double>& g) {
                 const std::int64_t n = 3, k = 6;
                 x = normal(rng, static_cast<std::size_t>(n * k), 1.0);
                 auto p = std::make_shared<std::vector<double>>(dirichlet(rng, n, k));
                 KlDivOptions o;
                 f = [=](std::span<const double> z) {
                   return kl_div_loss(view(z, n, k), {p->data(), DType::kF64, n, k, k}, o);
                 };
                 g.assign(x.size(), 0.0);
                 KlDivOutputs out;
                 out.grad = {g.data(), DType::kF64, n, k, k};
                 kl_div_loss(view(x, n, k), {p->data(), DType::kF64, n, k, k}, o, out);
               }});
  c.push_back({"cross_entropy_grad (row)", "soft target",
               [](std::mt19937_64& rng, std::vector<double>& x, std::function<double(std::span<const double>)>& f,
                  std::vector<double>& g) {
                 x = normal(rng, 9, 2.0);
                 auto p = std::make_shared<std::vector<double>>(dirichlet(rng, 1, 9));
                 f = [=](std::span<const double> z) { return cross_entropy_from_logits<double>(*p, z); };
                 g.assign(x.size(), 0.0);
                 cross_entropy_grad<double>(*p, x, g);
               }});
  c.push_back({"binary_cross_entropy_with_logits_grad (row)", "soft labels",
               [](std::mt19937_64& rng, std::vector<double>& x, std::function<double(std::span<const double>)>& f,
                  std::vector<double>& g) {
                 x = normal(rng, 6, 3.0);
                 std::uniform_real_distribution<double> u(0, 1);
                 auto y = std::make_shared<std::vector<double>>(6);
                 for (auto& v : *y) v = u(rng);
                 f = [=](std::span<const double> z) { return binary_cross_entropy_with_logits<double>(*y, z); };
                 g.assign(x.size(), 0.0);
                 binary_cross_entropy_with_logits_grad<double>(*y, x, g);
               }});
  return c;
}

}  // namespace

CLI::App* add_gradcheck_command(CLI::App& app, GradcheckArgs& a) {
  CLI::App* cmd = app.add_subcommand(
      "gradcheck", "Check every analytic gradient (each loss, each option) against finite differences");
  cmd->add_option("--cases", a.cases, "random cases per check")->capture_default_str()->check(CLI::Range(1, 100000));
  cmd->add_option("--seed", a.seed, "random seed")->capture_default_str();
  cmd->add_option("--tolerance", a.tolerance, "largest relative error that passes")->capture_default_str();
  cmd->add_flag("--json", a.json, "print the results as JSON");
  cmd->footer(R"(Examples:
  xent gradcheck                 20 random cases per loss and option
  xent gradcheck --cases 200 --json

Exit codes: 0 all within tolerance, 3 some check failed, 2 bad option.)");
  return cmd;
}

int run_gradcheck(const GradcheckArgs& a) {
  std::mt19937_64 rng(a.seed);
  nlohmann::json results = nlohmann::json::array();
  bool all_ok = true;
  if (!a.json)
    std::cout << fmt::format("{:<44} {:<36} {:>12} {:>12}  {}\n", "loss", "option", "max abs err",
                             "max rel err", "verdict");
  for (const auto& check : all_checks()) {
    double worst_abs = 0, worst_rel = 0;
    for (int k = 0; k < a.cases; ++k) {
      std::vector<double> x, g;
      std::function<double(std::span<const double>)> f;
      check.make(rng, x, f, g);
      GradcheckOptions o;
      o.order = 4;
      o.rel_floor = 1e-6;
      const auto r = gradcheck(f, x, g, o);
      worst_abs = std::max(worst_abs, r.max_abs_error);
      worst_rel = std::max(worst_rel, r.max_rel_error);
    }
    const bool ok = worst_rel <= a.tolerance;
    all_ok = all_ok && ok;
    results.push_back({{"loss", check.loss}, {"option", check.option}, {"max_abs_error", worst_abs},
                       {"max_rel_error", worst_rel}, {"cases", a.cases}, {"pass", ok}});
    if (!a.json)
      std::cout << fmt::format("{:<44} {:<36} {:>12.3e} {:>12.3e}  {}\n", check.loss, check.option, worst_abs,
                               worst_rel, ok ? "ok" : "FAIL");
  }
  if (a.json)
    std::cout << nlohmann::json({{"tolerance", a.tolerance}, {"checks", results}, {"pass", all_ok}}).dump(2) << "\n";
  else
    std::cout << (all_ok ? "all gradients agree with finite differences\n" : "SOME GRADIENTS DISAGREE\n");
  return all_ok ? kExitOk : 3;
}

}  // namespace xent::cli
