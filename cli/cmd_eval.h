// cli/cmd_eval.h — registers `xent eval` with CLI11.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "eval.h"

namespace xent::cli {

struct EvalArgs {
  EvalOptions options;
  std::string smoothing_mode = "uniform";
  std::string format = "text";
};

CLI::App* add_eval_command(CLI::App& app, EvalArgs& args);
int run_eval_command(EvalArgs args);

}  // namespace xent::cli
