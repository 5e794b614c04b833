// cli/cmd_explain.h — registers `xent explain` with CLI11.
#pragma once

#include <CLI/CLI.hpp>

#include "explain.h"

namespace xent::cli {

// The raw option strings, kept as text so that parse errors name the option
// and the entry (CLI11's own conversion messages would not).
struct ExplainArgs {
  std::string p, q, logits, target, smoothing, smoothing_mode = "uniform";
  std::string preset;
  bool bits = false, json = false, compare_mse = false, double_softmax = false;
  int digits = 6;
};

CLI::App* add_explain_command(CLI::App& app, ExplainArgs& args);

// Checks the combination of options and converts them; throws UsageError.
ExplainOptions to_options(const CLI::App& cmd, const ExplainArgs& args);

}  // namespace xent::cli
