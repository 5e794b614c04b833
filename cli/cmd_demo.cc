#include "cmd_demo.h"

#include "common.h"
#include "demo/dataset.h"

namespace xent::cli {

CLI::App* add_demo_command(CLI::App& app, demo::DemoOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "demo", "Train softmax regression and an MLP on real data three ways (cross-entropy, "
              "MSE on softmax, cross-entropy + label smoothing) and report what was measured");
  cmd->add_option("--data", o.data,
                  "CSV (plain or .gz) with numeric features and a label column; default: the 8x8 "
                  "digits set of Debian's python3-sklearn");
  cmd->add_option("--label-column", o.label_column, "0-based label column (default: the last)");
  cmd->add_option("--report", o.report, "where to write the SVG report")->capture_default_str();
  cmd->add_option("--seed", o.seed, "seed of the split, the initialization and the minibatches")
      ->capture_default_str();
  cmd->add_option("--epochs", o.epochs, "training epochs per run")->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--smoothing", o.smoothing, "label smoothing of the third run")->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--test-fraction", o.test_fraction, "held-out fraction")->capture_default_str()
      ->check(CLI::Range(0.01, 0.99));
  cmd->add_flag("--json", o.json, "print the results as one JSON object");
  cmd->add_flag("--quick", o.quick, "softmax regression only, at most 5 epochs (for tests)");
  cmd->footer(R"(Examples:
  xent demo                              digits, both models, report xent-demo.svg
  xent demo --data iris.csv --epochs 50  any CSV whose last column is the label
  xent demo --json                       the numbers as JSON)");
  return cmd;
}

int run_demo_command(const demo::DemoOptions& options) {
  try {
    return demo::run_demo(options);
  } catch (const demo::DataError& e) {
    throw UsageError(e.what());
  }
}

}  // namespace xent::cli
