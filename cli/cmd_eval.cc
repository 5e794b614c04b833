#include "cmd_eval.h"

#include <iostream>

#include <nlohmann/json.hpp>

#include "common.h"
#include "npy.h"
#ifdef XENT_CLI_MPI
#include "eval_mpi.h"
#endif

namespace xent::cli {

CLI::App* add_eval_command(CLI::App& app, EvalArgs& a) {
  auto& o = a.options;
  CLI::App* cmd = app.add_subcommand(
      "eval", "Evaluate a model's outputs: loss (nats, bits), perplexity, accuracy, top-5, "
              "calibration, Brier score, per-class NLL, the highest-loss rows");
  auto* logits = cmd->add_option("--logits", o.logits, "N x V logits: .npy (float16/32/64) or .csv");
  auto* probs = cmd->add_option("--probs", o.probs, "N x V probabilities instead of logits");
  logits->excludes(probs);
  cmd->add_option("--targets", o.targets,
                  "N class indices (.npy int32/int64 or a .csv column), or N x V soft targets")
      ->required();
  cmd->add_option("--ignore-index", o.ignore_index, "rows with this target are skipped")
      ->capture_default_str();
  cmd->add_option("--label-smoothing", o.label_smoothing, "also report the smoothed loss")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--smoothing-mode", a.smoothing_mode, "uniform (eps/K) or off-target (eps/(K-1))")
      ->check(CLI::IsMember({"uniform", "off-target"}))->capture_default_str();
  cmd->add_option("--bins", o.bins, "calibration bins")->capture_default_str()->check(CLI::Range(1, 1000));
  cmd->add_option("--top", o.top_rows, "highest-loss rows to list")->capture_default_str()
      ->check(CLI::Range(0, 100000));
  cmd->add_option("--classes", o.top_classes, "per-class rows in the text report")->capture_default_str();
  cmd->add_option("--chunk-rows", o.chunk_rows, "rows per streamed chunk (default: ~64 MiB)");
  cmd->add_option("--format", a.format, "text or json")->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  cmd->add_flag("--json", [&a](std::int64_t) { a.format = "json"; }, "same as --format json");
  cmd->footer(R"(Examples:
  xent eval --logits val_logits.npy --targets val_labels.npy
  xent eval --probs probs.csv --targets labels.csv --format json
  xent eval --logits lm.npy --targets tokens.npy --ignore-index -100 --label-smoothing 0.1

A malformed, truncated or mismatched file is one line 'xent: error: FILE: problem'
and exit code 2.

Under MPI (builds with MPI): mpirun -np K xent eval ... splits the rows across
K processes and prints exactly what one process prints (docs/mpi.md).)");
  return cmd;
}

int run_eval_command(EvalArgs a) {
  a.options.smoothing_mode = a.smoothing_mode == "off-target" ? Smoothing::kOffTarget : Smoothing::kUniform;
  a.options.json = a.format == "json";
  auto print = [&a](const nlohmann::json& result) {
    if (a.options.json)
      std::cout << result.dump(2) << "\n";
    else
      std::cout << render_eval_text(result, a.options.top_classes);
  };
#ifdef XENT_CLI_MPI
  // Under mpirun: rows split across the ranks, rank 0 prints (issue 9).
  if (launched_by_mpi()) return run_eval_mpi(a.options, print);
#endif
  nlohmann::json result;
  try {
    result = evaluate(a.options);
  } catch (const NpyError& e) {
    throw UsageError(e.what());
  }
  print(result);
  return kExitOk;
}

}  // namespace xent::cli
