// `xent eval`: the everyday evaluation of a model's outputs.
//
// Inputs: logits (or probabilities) N×V as .npy (float16/32/64) or CSV, and
// targets as .npy int32/int64 of N class indices, a CSV column of indices, or
// an N×V float array of soft targets. The logits are memory-mapped and
// streamed in chunks of rows, so a file larger than RAM works.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "xent/smoothing.h"

namespace xent::cli {

struct EvalOptions {
  std::string logits;   // N×V logits
  std::string probs;    // N×V probabilities (instead of logits)
  std::string targets;  // N indices, or N×V soft targets
  std::int64_t ignore_index = -100;
  double label_smoothing = 0.0;
  Smoothing smoothing_mode = Smoothing::kUniform;
  int bins = 15;
  int top_rows = 10;      // highest-loss rows to list
  int top_classes = 20;   // per-class table rows in text output (JSON has all)
  std::int64_t chunk_rows = 0;  // 0: about 64 MiB of logits per chunk
  bool json = false;
  bool progress = true;
};

// Computes every statistic; throws NpyError / UsageError / xent::Error on bad
// input. The JSON object is what --format json prints.
nlohmann::json evaluate(const EvalOptions& options);

// Renders the JSON result as the text report.
std::string render_eval_text(const nlohmann::json& result, int top_classes);

}  // namespace xent::cli
