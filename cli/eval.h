// `xent eval`: the everyday evaluation of a model's outputs.
//
// Inputs: logits (or probabilities) N×V as .npy (float16/32/64) or CSV, and
// targets as .npy int32/int64 of N class indices, a CSV column of indices, or
// an N×V float array of soft targets. The logits are memory-mapped and
// streamed in chunks of rows, so a file larger than RAM works.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
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

// The two halves of evaluate(), apart so that rows evaluated by several
// processes (`mpirun -np K xent eval`, cli/eval_mpi.cc) can be accumulated by
// one of them in row order: the output is then the single process's, to the
// bit, because every statistic is summed in the same order.

// One evaluated row: what the statistics need of it, O(1) per row. A plain
// struct (sent between processes as bytes).
struct EvalRow {
  double loss, nll, brier, confidence, p_target;
  std::int64_t row, label, predicted;
  std::int32_t ignored, top5;
};

// Rows [begin, end) of a split into `parts` contiguous slices of nearly equal
// size: slice p is [p·N/parts, (p+1)·N/parts); some are empty when N < parts.
std::int64_t split_begin(std::int64_t n, int part, int parts);

// Opens the inputs and checks them (shapes, dtypes, the targets of its rows),
// mapping only the bytes of its slice of a .npy file (a CSV is read whole).
class RowEvaluator {
 public:
  RowEvaluator(const EvalOptions& options, int part = 0, int parts = 1);
  ~RowEvaluator();
  std::int64_t rows() const;  // N of the whole file
  std::int64_t classes() const;
  std::int64_t begin() const;
  std::int64_t end() const;
  // Evaluates the slice chunk by chunk, handing each chunk's rows, in order,
  // to `sink`. Throws on bad values (a probability row that does not sum to 1).
  void run(const std::function<void(std::span<const EvalRow>)>& sink);
  nlohmann::json inputs() const;  // the "inputs" object of the result

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Accumulates rows, in row order, into the result.
class EvalAccumulator {
 public:
  EvalAccumulator(const EvalOptions& options, std::int64_t classes);
  ~EvalAccumulator();
  void add(std::span<const EvalRow> rows);
  nlohmann::json result(nlohmann::json inputs) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Renders the JSON result as the text report.
std::string render_eval_text(const nlohmann::json& result, int top_classes);

}  // namespace xent::cli
