#include "demo/demo.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "demo/dataset.h"
#include "demo/report.h"
#include "demo/train.h"
#include "progress.h"

namespace xent::demo {
namespace {

std::string steps_text(std::int64_t s) { return s < 0 ? "never" : std::to_string(s); }

// A claim, the numbers measured for it, and whether they bear it out.
struct Verdict {
  std::string claim;
  bool holds;
  std::string measured;
};

std::vector<Verdict> verdicts_for(const RunResult& ce, const RunResult& mse, const RunResult& ls,
                                  double target) {
  std::vector<Verdict> v;
  {
    // Never reaching the target counts as slower than reaching it.
    const auto a = ce.steps_to_target, b = mse.steps_to_target;
    const bool holds = a >= 0 && (b < 0 || a < b);
    v.push_back({fmt::format("cross-entropy reaches {:.0f}% train accuracy in fewer steps than MSE", target * 100),
                 holds, fmt::format("CE {} steps, MSE {} steps", steps_text(a), steps_text(b))});
  }
  v.push_back({"label smoothing lowers the expected calibration error", ls.ece < ce.ece,
               fmt::format("ECE {:.4f} with smoothing vs {:.4f} without", ls.ece, ce.ece)});
  v.push_back({"cross-entropy gives a lower test NLL than MSE", ce.test_nll_nats < mse.test_nll_nats,
               fmt::format("test NLL {:.4f} vs {:.4f} nats", ce.test_nll_nats, mse.test_nll_nats)});
  v.push_back({"label smoothing lowers the mean confidence", ls.mean_confidence < ce.mean_confidence,
               fmt::format("mean confidence {:.4f} vs {:.4f}", ls.mean_confidence, ce.mean_confidence)});
  return v;
}

}  // namespace

int run_demo(const DemoOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string path = opt.data.empty() ? kDigitsPath : opt.data;
  Dataset data;
  try {
    data = load_csv(path, opt.label_column);
  } catch (const DataError& e) {
    if (opt.data.empty())
      throw DataError(std::string(e.what()) +
                      " (the default data set comes with Debian's python3-sklearn: "
                      "apt-get install python3-sklearn, or pass --data FILE.csv)");
    throw;
  }
  const Split split = split_rows(data.rows, opt.test_fraction, opt.seed);
  if (split.train.empty() || split.test.empty())
    throw DataError(path + ": " + std::to_string(data.rows) +
                    " rows are too few to hold out a test split");

  std::vector<Model> models = {Model::kSoftmaxRegression, Model::kMlp};
  if (opt.quick) models = {Model::kSoftmaxRegression};
  const Objective objectives[3] = {Objective::kCrossEntropy, Objective::kMseOnSoftmax,
                                   Objective::kCrossEntropySmoothed};
  std::vector<RunResult> runs;
  for (Model m : models)
    for (Objective o : objectives) {
      TrainConfig cfg;
      cfg.model = m;
      cfg.objective = o;
      cfg.smoothing = opt.smoothing;
      cfg.seed = opt.seed;
      cfg.epochs = opt.quick ? std::min(opt.epochs, 5) : opt.epochs;
      cli::ProgressBar bar(fmt::format("{}, {}", m == Model::kMlp ? "MLP" : "softmax reg.", ObjectiveName(o)), 1);
      runs.push_back(train(data, split, cfg, [&](std::int64_t done, std::int64_t total) {
        bar.update(done, total);
      }));
    }

  const std::string title = fmt::format("xent demo: {} ({} rows, {} features, {} classes)",
                                        opt.data.empty() ? "8x8 digits" : path, data.rows,
                                        data.features, data.classes);
  {
    std::ofstream f(opt.report);
    if (!f) throw DataError(opt.report + ": cannot write the report");
    f << render_report(runs, title);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  if (opt.json) {
    nlohmann::json j;
    j["data"] = {{"path", path}, {"rows", data.rows}, {"features", data.features},
                 {"classes", data.classes}, {"train_rows", split.train.size()},
                 {"test_rows", split.test.size()}};
    j["seed"] = opt.seed;
    j["report"] = opt.report;
    j["seconds"] = seconds;
    for (std::size_t i = 0; i < runs.size(); ++i) {
      const auto& r = runs[i];
      j["runs"].push_back({{"model", ModelName(r.config.model)},
                           {"objective", ObjectiveName(r.config.objective)},
                           {"steps_to_target", r.steps_to_target},
                           {"total_steps", r.total_steps},
                           {"test_accuracy", r.test_accuracy},
                           {"test_nll_nats", r.test_nll_nats},
                           {"ece", r.ece},
                           {"brier", r.brier},
                           {"mean_confidence", r.mean_confidence}});
    }
    for (std::size_t m = 0; m < models.size(); ++m)
      for (const auto& v : verdicts_for(runs[3 * m], runs[3 * m + 1], runs[3 * m + 2], 0.9))
        j["verdicts"].push_back({{"model", ModelName(models[m])}, {"claim", v.claim},
                                 {"holds", v.holds}, {"measured", v.measured}});
    std::cout << j.dump(2) << "\n";
    return 0;
  }

  std::cout << title << "\n"
            << fmt::format("held-out split: {} train / {} test rows (seed {}), SGD with momentum, "
                           "{} epochs of minibatch 32\n\n",
                           split.train.size(), split.test.size(), opt.seed, runs[0].config.epochs);
  for (std::size_t m = 0; m < models.size(); ++m) {
    std::cout << ModelName(models[m]) << "\n";
    std::cout << fmt::format("  {:<16} {:>14} {:>10} {:>10} {:>8} {:>8} {:>10}\n", "objective",
                             "steps to 90%", "test acc", "test NLL", "ECE", "Brier", "mean conf");
    std::cout << fmt::format("  {:<16} {:>14} {:>10} {:>10} {:>8} {:>8} {:>10}\n", "", "(train acc)", "",
                             "(nats)", "(15 bins)", "", "");
    for (std::size_t k = 0; k < 3; ++k) {
      const auto& r = runs[3 * m + k];
      std::cout << fmt::format("  {:<16} {:>14} {:>9.2f}% {:>10.4f} {:>8.4f} {:>8.4f} {:>10.4f}\n",
                               ObjectiveName(r.config.objective), steps_text(r.steps_to_target),
                               100 * r.test_accuracy, r.test_nll_nats, r.ece, r.brier, r.mean_confidence);
    }
    for (const auto& v : verdicts_for(runs[3 * m], runs[3 * m + 1], runs[3 * m + 2], 0.9))
      std::cout << fmt::format("  {} {}: {} ({})\n", v.holds ? "[yes]" : "[no] ", v.claim,
                               v.holds ? "holds" : "does not hold here", v.measured);
    std::cout << "\n";
  }
  std::cout << fmt::format("report: {} ({:.1f} s)\n", opt.report, seconds);
  return 0;
}

}  // namespace xent::demo
