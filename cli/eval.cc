#include "eval.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <queue>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common.h"
#include "metrics.h"
#include "npy.h"
#include "progress.h"
#include "xent/core.h"
#include "xent/loss.h"

namespace xent::cli {
namespace {

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = (h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1f;
  const std::uint32_t mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      std::uint32_t m = mant;
      do { ++e; m <<= 1; } while (!(m & 0x400u));
      bits = sign | ((127 - 15 - e) << 23) | ((m & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// A 2-D numeric input: a memory-mapped .npy, or a CSV parsed into doubles.
struct Input {
  std::string name;
  NpyType type = NpyType::kF64;
  std::int64_t rows = 0, cols = 0, dims = 2;
  std::unique_ptr<NpyFile> npy;
  std::vector<double> owned;

  const unsigned char* row_ptr(std::int64_t r) const {
    if (npy) return npy->row_data(r);  // a whole map, or the rows of this slice
    const auto off = static_cast<std::size_t>(r) * static_cast<std::size_t>(cols) * NpyTypeSize(type);
    return reinterpret_cast<const unsigned char*>(owned.data()) + off;
  }
  double at(std::int64_t r, std::int64_t c) const {
    const unsigned char* p = row_ptr(r) + static_cast<std::size_t>(c) * NpyTypeSize(type);
    switch (type) {
      case NpyType::kF16: { std::uint16_t v; std::memcpy(&v, p, 2); return half_to_float(v); }
      case NpyType::kF32: { float v; std::memcpy(&v, p, 4); return v; }
      case NpyType::kF64: { double v; std::memcpy(&v, p, 8); return v; }
      case NpyType::kI32: { std::int32_t v; std::memcpy(&v, p, 4); return v; }
      case NpyType::kI64: { std::int64_t v; std::memcpy(&v, p, 8); return static_cast<double>(v); }
    }
    return 0;
  }
  bool is_float() const { return type == NpyType::kF16 || type == NpyType::kF32 || type == NpyType::kF64; }
  MatrixView view(std::int64_t r0, std::int64_t n) const {
    return {row_ptr(r0), npy ? to_dtype(type) : DType::kF64, n, cols, cols};
  }
};

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// CSV of numbers: one row per line, comma-separated, an optional header line.
Input read_csv(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw NpyError(path + ": cannot open");
  Input in;
  in.name = path;
  in.type = NpyType::kF64;
  std::string line;
  std::int64_t line_no = 0;
  while (std::getline(f, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::vector<double> row;
    std::stringstream ss(line);
    std::string field;
    bool numeric = true;
    while (std::getline(ss, field, ',')) {
      try {
        row.push_back(parse_number(field, "csv"));
      } catch (const UsageError&) {
        numeric = false;
        break;
      }
    }
    if (!numeric) {
      if (in.rows == 0 && line_no == 1) continue;  // header
      throw NpyError(fmt::format("{}:{}: '{}' is not a row of numbers", path, line_no, line.substr(0, 60)));
    }
    if (in.rows == 0) in.cols = static_cast<std::int64_t>(row.size());
    if (static_cast<std::int64_t>(row.size()) != in.cols)
      throw NpyError(fmt::format("{}:{}: {} values, expected {}", path, line_no, row.size(), in.cols));
    in.owned.insert(in.owned.end(), row.begin(), row.end());
    ++in.rows;
  }
  if (in.rows == 0) throw NpyError(path + ": no data rows");
  in.dims = in.cols == 1 ? 1 : 2;
  return in;
}

// A .npy input mapped whole (one process) or only rows [begin, end) (one
// slice of `mpirun xent eval`); a CSV is read whole either way.
Input open_input(const std::string& path, bool sliced, std::int64_t begin, std::int64_t end) {
  if (ends_with(path, ".csv") || ends_with(path, ".txt")) return read_csv(path);
  Input in;
  in.name = path;
  in.npy = sliced ? std::make_unique<NpyFile>(path, begin, end) : std::make_unique<NpyFile>(path);
  in.type = in.npy->header().type;
  in.rows = in.npy->rows();
  in.cols = in.npy->cols();
  in.dims = static_cast<std::int64_t>(in.npy->header().shape.size());
  return in;
}

// The number of rows of an input, from its header alone.
std::int64_t count_rows(const std::string& path) {
  if (ends_with(path, ".csv") || ends_with(path, ".txt")) return read_csv(path).rows;
  return NpyFile(path, 0, 0).rows();
}

struct RowStat {
  double loss;
  std::int64_t row, target, predicted;
  double p_target;
  bool operator<(const RowStat& o) const { return loss > o.loss; }  // min-heap on loss
};

struct ClassStat {
  std::int64_t count = 0, correct = 0;
  double nll = 0;
};

}  // namespace

std::int64_t split_begin(std::int64_t n, int part, int parts) {
  // p·N/parts without overflow for any realistic N (N < 2^63 / parts).
  return n / parts * part + n % parts * part / parts;
}

// ------------------------------------------------------------ RowEvaluator --

struct RowEvaluator::Impl {
  EvalOptions opt;
  bool from_probs = false, soft = false;
  Input pred, tgt;
  std::int64_t n = 0, v = 0, begin = 0, end = 0;
  std::vector<std::int64_t> index_targets;  // rows [begin, end)
};

RowEvaluator::RowEvaluator(const EvalOptions& opt, int part, int parts)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.opt = opt;
  if (opt.logits.empty() == opt.probs.empty())
    throw UsageError("give exactly one of --logits and --probs");
  if (opt.targets.empty()) throw UsageError("--targets is required");
  if (opt.bins < 1) throw UsageError("--bins must be >= 1");
  s.from_probs = !opt.probs.empty();
  const std::string& pred_path = s.from_probs ? opt.probs : opt.logits;
  const bool sliced = parts > 1;
  std::int64_t b = 0, e = 0;
  if (sliced) {
    const std::int64_t total = count_rows(pred_path);
    b = split_begin(total, part, parts);
    e = split_begin(total, part + 1, parts);
  }
  s.pred = open_input(pred_path, sliced, b, e);
  s.tgt = open_input(opt.targets, sliced, b, e);
  const Input& pred = s.pred;
  const Input& tgt = s.tgt;
  if (!pred.is_float()) throw NpyError(pred.name + ": " + NpyTypeName(pred.type) + " data; expected float16/32/64");
  if (pred.dims != 2 && !(pred.dims == 1 && pred.npy == nullptr))
    throw NpyError(pred.name + ": expected a 2-D array N×V");
  const std::int64_t n = pred.rows, v = pred.cols;
  s.n = n;
  s.v = v;
  s.begin = sliced ? b : 0;
  s.end = sliced ? e : n;
  if (v < 1) throw NpyError(pred.name + ": V = 0 classes");
  const bool soft = tgt.dims == 2 && tgt.cols > 1;
  s.soft = soft;
  if (soft) {
    if (!tgt.is_float()) throw NpyError(tgt.name + ": 2-D targets must be float soft targets");
    if (tgt.rows != n || tgt.cols != v)
      throw NpyError(fmt::format("{}: shape {}x{} does not match {} ({}x{})", tgt.name, tgt.rows, tgt.cols, pred.name, n, v));
  } else {
    if (tgt.rows != n)
      throw NpyError(fmt::format("{}: {} targets for {} rows of {}", tgt.name, tgt.rows, n, pred.name));
    if (tgt.npy && tgt.is_float())
      throw NpyError(tgt.name + ": class indices must be int32 or int64, got " + NpyTypeName(tgt.type));
  }
  if (soft && opt.ignore_index != -100)
    throw UsageError("--ignore-index applies to class-index targets only");

  // Integer targets as int64, checked (library errors name the row too, but
  // the probability path has no kernel to check them).
  if (!soft) {
    s.index_targets.resize(static_cast<std::size_t>(s.end - s.begin));
    for (std::int64_t r = s.begin; r < s.end; ++r) {
      const double t = tgt.at(r, 0);
      if (t != std::floor(t)) throw NpyError(fmt::format("{}: target of row {} is {}, not an integer", tgt.name, r, t));
      const auto ti = static_cast<std::int64_t>(t);
      if (ti != opt.ignore_index && (ti < 0 || ti >= v))
        throw NpyError(fmt::format("{}: target of row {} is {}, outside [0, {})", tgt.name, r, ti, v));
      s.index_targets[static_cast<std::size_t>(r - s.begin)] = ti;
    }
  }
}

RowEvaluator::~RowEvaluator() = default;
std::int64_t RowEvaluator::rows() const { return impl_->n; }
std::int64_t RowEvaluator::classes() const { return impl_->v; }
std::int64_t RowEvaluator::begin() const { return impl_->begin; }
std::int64_t RowEvaluator::end() const { return impl_->end; }

nlohmann::json RowEvaluator::inputs() const {
  const Impl& s = *impl_;
  return {{s.from_probs ? "probs" : "logits", s.pred.name}, {"targets", s.tgt.name},
          {"rows", s.n}, {"classes", s.v}, {"dtype", s.pred.npy ? NpyTypeName(s.pred.type) : "csv"},
          {"soft_targets", s.soft}};
}

void RowEvaluator::run(const std::function<void(std::span<const EvalRow>)>& sink) {
  const Impl& s = *impl_;
  const EvalOptions& opt = s.opt;
  const Input& pred = s.pred;
  const Input& tgt = s.tgt;
  const bool from_probs = s.from_probs, soft = s.soft;
  const std::int64_t v = s.v;
  const std::int64_t chunk = opt.chunk_rows > 0
      ? opt.chunk_rows
      : std::max<std::int64_t>(1, (64ll << 20) / std::max<std::int64_t>(1, v * 4));
  std::vector<float> row_loss, row_nll, row_lse;
  std::vector<EvalRow> out_rows;
  std::vector<double> q(static_cast<std::size_t>(v));
  const std::int64_t local = s.end - s.begin;
  ProgressBar bar("xent eval", local);
  const bool show_progress = opt.progress && local * v >= (64ll << 20);

  for (std::int64_t r0 = s.begin; r0 < s.end; r0 += chunk) {
    const std::int64_t rows = std::min(chunk, s.end - r0);
    row_loss.assign(static_cast<std::size_t>(rows), 0.f);
    row_nll.assign(static_cast<std::size_t>(rows), 0.f);
    row_lse.assign(static_cast<std::size_t>(rows), 0.f);
    out_rows.clear();
    if (!from_probs) {
      CrossEntropyOptions o;
      o.reduction = Reduction::kNone;
      o.ignore_index = opt.ignore_index;
      const Targets t = soft ? Targets::Soft(tgt.view(r0, rows))
                             : Targets::Index(s.index_targets.data() + (r0 - s.begin));
      CrossEntropyOutputs out;
      out.row_loss = row_nll.data();
      out.row_lse = row_lse.data();
      cross_entropy_loss(pred.view(r0, rows), t, o, out);
      if (opt.label_smoothing > 0) {
        o.label_smoothing = opt.label_smoothing;
        o.smoothing = opt.smoothing_mode;
        CrossEntropyOutputs out2;
        out2.row_loss = row_loss.data();
        cross_entropy_loss(pred.view(r0, rows), t, o, out2);
      } else {
        row_loss = row_nll;
      }
    }
    for (std::int64_t i = 0; i < rows; ++i) {
      const std::int64_t r = r0 + i;
      const std::int64_t t = soft ? -1 : s.index_targets[static_cast<std::size_t>(r - s.begin)];
      if (!soft && t == opt.ignore_index) {
        out_rows.push_back(EvalRow{0, 0, 0, 0, 0, r, t, 0, 1, 0});
        continue;
      }
      // The predicted distribution of the row, in double.
      if (from_probs) {
        double sum = 0;
        for (std::int64_t c = 0; c < v; ++c) {
          const double p = pred.at(r, c);
          if (!(p >= 0 && p <= 1))
            throw NpyError(fmt::format("{}: row {} column {} is {}, not a probability", pred.name, r, c, p));
          q[static_cast<std::size_t>(c)] = p;
          sum += p;
        }
        if (std::fabs(sum - 1) > 1e-3)
          throw NpyError(fmt::format("{}: row {} sums to {}, not 1 (tolerance 1e-3); pass logits with --logits instead", pred.name, r, sum));
      } else {
        const double lse = row_lse[static_cast<std::size_t>(i)];
        for (std::int64_t c = 0; c < v; ++c) q[static_cast<std::size_t>(c)] = std::exp(pred.at(r, c) - lse);
      }
      // Target distribution (for soft targets), loss when from probabilities.
      std::int64_t label = t;
      if (soft) {
        double best = -1;
        for (std::int64_t c = 0; c < v; ++c)
          if (tgt.at(r, c) > best) { best = tgt.at(r, c); label = c; }
      }
      double nll, loss;
      if (from_probs) {
        auto neg_log = [](double x) { return x > 0 ? -std::log(x) : std::numeric_limits<double>::infinity(); };
        if (soft) {
          nll = 0;
          for (std::int64_t c = 0; c < v; ++c) {
            const double p = tgt.at(r, c);
            if (p > 0) nll += p * neg_log(q[static_cast<std::size_t>(c)]);
          }
        } else {
          nll = neg_log(q[static_cast<std::size_t>(t)]);
        }
        loss = nll;
        if (opt.label_smoothing > 0) {
          std::vector<double> tt(static_cast<std::size_t>(v));
          if (soft) {
            for (std::int64_t c = 0; c < v; ++c) tt[static_cast<std::size_t>(c)] = tgt.at(r, c);
            smooth_target<double>(tt, opt.label_smoothing, opt.smoothing_mode, tt);
          } else {
            smooth_target<double>(static_cast<std::size_t>(t), opt.label_smoothing, opt.smoothing_mode, tt);
          }
          loss = 0;
          for (std::int64_t c = 0; c < v; ++c)
            if (tt[static_cast<std::size_t>(c)] > 0) loss += tt[static_cast<std::size_t>(c)] * neg_log(q[static_cast<std::size_t>(c)]);
        }
      } else {
        nll = row_nll[static_cast<std::size_t>(i)];
        loss = row_loss[static_cast<std::size_t>(i)];
      }
      // argmax (lowest index on ties), rank of the label, Brier.
      std::int64_t predicted = 0;
      for (std::int64_t c = 1; c < v; ++c)
        if (q[static_cast<std::size_t>(c)] > q[static_cast<std::size_t>(predicted)]) predicted = c;
      const double q_label = q[static_cast<std::size_t>(label)];
      std::int64_t above = 0;
      double brier = 0;
      for (std::int64_t c = 0; c < v; ++c) {
        const double qc = q[static_cast<std::size_t>(c)];
        if (qc > q_label) ++above;
        const double y = soft ? tgt.at(r, c) : (c == label ? 1.0 : 0.0);
        brier += (qc - y) * (qc - y);
      }
      out_rows.push_back(EvalRow{loss, nll, brier, q[static_cast<std::size_t>(predicted)], q_label,
                                 r, label, predicted, 0, above < 5 ? 1 : 0});
    }
    sink(out_rows);
    if (pred.npy) pred.npy->release_before(r0 + rows);
    if (show_progress) bar.update(r0 + rows - s.begin);
  }
  bar.finish();
}

// --------------------------------------------------------- EvalAccumulator --

struct EvalAccumulator::Impl {
  EvalOptions opt;
  Calibration calib;
  std::vector<ClassStat> classes;
  std::priority_queue<RowStat> worst;
  double loss_sum = 0, nll_sum = 0, brier_sum = 0;
  std::int64_t counted = 0, correct = 0, correct5 = 0, ignored = 0;
  Impl(const EvalOptions& o, std::int64_t v) : opt(o), calib(o.bins), classes(static_cast<std::size_t>(v)) {}
};

EvalAccumulator::EvalAccumulator(const EvalOptions& options, std::int64_t classes)
    : impl_(std::make_unique<Impl>(options, classes)) {}
EvalAccumulator::~EvalAccumulator() = default;

void EvalAccumulator::add(std::span<const EvalRow> rows) {
  Impl& s = *impl_;
  for (const EvalRow& e : rows) {
    if (e.ignored) {
      ++s.ignored;
      continue;
    }
    const bool ok = e.predicted == e.label;
    ++s.counted;
    s.correct += ok;
    s.correct5 += e.top5;
    s.loss_sum += e.loss;
    s.nll_sum += e.nll;
    s.brier_sum += e.brier;
    s.calib.add(e.confidence, ok);
    auto& cs = s.classes[static_cast<std::size_t>(e.label)];
    ++cs.count;
    cs.correct += ok;
    cs.nll += e.nll;
    s.worst.push({e.loss, e.row, e.label, e.predicted, e.p_target});
    if (static_cast<int>(s.worst.size()) > s.opt.top_rows) s.worst.pop();
  }
}

nlohmann::json EvalAccumulator::result(nlohmann::json inputs) const {
  const Impl& s = *impl_;
  const EvalOptions& opt = s.opt;
  const Calibration& calib = s.calib;
  const auto& classes = s.classes;
  const std::int64_t v = static_cast<std::int64_t>(classes.size());
  const std::int64_t counted = s.counted;
  using nlohmann::json;
  json j;
  j["inputs"] = std::move(inputs);
  j["rows_evaluated"] = counted;
  j["rows_ignored"] = s.ignored;
  const double cnt = static_cast<double>(counted);
  auto num = [](double x) { return std::isfinite(x) ? json(x) : json(x > 0 ? "inf" : "nan"); };
  if (counted == 0) {
    j["loss_nats"] = nullptr;
  } else {
    const double mean_nll = s.nll_sum / cnt;
    j["loss_nats"] = num(mean_nll);
    j["loss_bits"] = num(mean_nll / kLn2);
    j["perplexity"] = num(std::exp(mean_nll));
    if (opt.label_smoothing > 0) {
      j["smoothed_loss_nats"] = num(s.loss_sum / cnt);
      j["label_smoothing"] = {{"epsilon", opt.label_smoothing}, {"mode", SmoothingName(opt.smoothing_mode)}};
    }
    j["accuracy"] = s.correct / cnt;
    j["top5_accuracy"] = s.correct5 / cnt;
    j["brier"] = s.brier_sum / cnt;
    j["ece"] = calib.ece();
  }
  j["reliability"] = json::array();
  for (int b = 0; b < calib.bins(); ++b) {
    json bin = {{"lo", static_cast<double>(b) / calib.bins()}, {"hi", static_cast<double>(b + 1) / calib.bins()},
                {"count", calib.count(b)}};
    if (calib.count(b)) {
      bin["confidence"] = calib.mean_confidence(b);
      bin["accuracy"] = calib.accuracy(b);
    }
    j["reliability"].push_back(bin);
  }
  // Per class, worst mean NLL first (classes never seen as targets last).
  std::vector<std::int64_t> order;
  for (std::int64_t c = 0; c < v; ++c)
    if (classes[static_cast<std::size_t>(c)].count) order.push_back(c);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    const auto& x = classes[static_cast<std::size_t>(a)];
    const auto& y = classes[static_cast<std::size_t>(b)];
    return x.nll / static_cast<double>(x.count) > y.nll / static_cast<double>(y.count);
  });
  j["per_class"] = json::array();
  for (auto c : order) {
    const auto& cs = classes[static_cast<std::size_t>(c)];
    j["per_class"].push_back({{"class", c}, {"count", cs.count},
                              {"nll_nats", num(cs.nll / static_cast<double>(cs.count))},
                              {"accuracy", static_cast<double>(cs.correct) / static_cast<double>(cs.count)}});
  }
  std::vector<RowStat> top;
  auto worst = s.worst;  // a copy: result() is const
  while (!worst.empty()) { top.push_back(worst.top()); worst.pop(); }
  std::reverse(top.begin(), top.end());
  j["highest_loss_rows"] = json::array();
  for (const auto& w : top)
    j["highest_loss_rows"].push_back({{"row", w.row}, {"target", w.target}, {"loss_nats", num(w.loss)},
                                      {"predicted", w.predicted}, {"p_target", w.p_target}});
  return j;
}

nlohmann::json evaluate(const EvalOptions& options) {
  RowEvaluator rows(options);
  EvalAccumulator acc(options, rows.classes());
  rows.run([&](std::span<const EvalRow> chunk) { acc.add(chunk); });
  return acc.result(rows.inputs());
}

std::string render_eval_text(const nlohmann::json& j, int top_classes) {
  std::string o;
  const auto& in = j["inputs"];
  const std::string src = in.contains("logits") ? in["logits"].get<std::string>() : in["probs"].get<std::string>();
  o += fmt::format("xent eval: {} ({} rows x {} classes, {}), targets {}{}\n", src,
                   in["rows"].get<std::int64_t>(), in["classes"].get<std::int64_t>(),
                   in["dtype"].get<std::string>(), in["targets"].get<std::string>(),
                   in["soft_targets"].get<bool>() ? " (soft)" : "");
  o += fmt::format("rows evaluated: {}   ignored: {}\n", j["rows_evaluated"].get<std::int64_t>(),
                   j["rows_ignored"].get<std::int64_t>());
  if (j["loss_nats"].is_null()) {
    o += "no rows to evaluate (every target is ignore_index)\n";
    return o;
  }
  auto f = [](const nlohmann::json& x) {
    return x.is_string() ? x.get<std::string>() : fmt::format("{:.6f}", x.get<double>());
  };
  o += fmt::format("\nloss        {} nats/row   {} bits/row   perplexity {}\n", f(j["loss_nats"]),
                   f(j["loss_bits"]), f(j["perplexity"]));
  if (j.contains("smoothed_loss_nats"))
    o += fmt::format("smoothed    {} nats/row (label smoothing {} {})\n", f(j["smoothed_loss_nats"]),
                     j["label_smoothing"]["epsilon"].get<double>(), j["label_smoothing"]["mode"].get<std::string>());
  o += fmt::format("accuracy    top-1 {:.2f}%   top-5 {:.2f}%\n", 100 * j["accuracy"].get<double>(),
                   100 * j["top5_accuracy"].get<double>());
  o += fmt::format("calibration ECE {:.4f} ({} bins)   Brier {:.4f}\n", j["ece"].get<double>(),
                   j["reliability"].size(), j["brier"].get<double>());
  o += "\nreliability (confidence = largest probability)\n";
  o += fmt::format("  {:>13} {:>9} {:>11} {:>9} {:>8}\n", "bin", "rows", "confidence", "accuracy", "gap");
  for (const auto& b : j["reliability"]) {
    const std::string range = fmt::format("({:.3f},{:.3f}]", b["lo"].get<double>(), b["hi"].get<double>());
    if (b["count"].get<std::int64_t>() == 0) {
      o += fmt::format("  {:>13} {:>9} {:>11} {:>9} {:>8}\n", range, 0, "-", "-", "-");
      continue;
    }
    const double c = b["confidence"].get<double>(), a = b["accuracy"].get<double>();
    o += fmt::format("  {:>13} {:>9} {:>11.4f} {:>9.4f} {:>+8.4f}\n", range, b["count"].get<std::int64_t>(), c, a, a - c);
  }
  const auto& pc = j["per_class"];
  o += fmt::format("\nper class, worst NLL first (showing {} of the {} classes that occur as targets)\n", std::min<std::size_t>(pc.size(), static_cast<std::size_t>(top_classes)), pc.size());
  o += fmt::format("  {:>8} {:>9} {:>12} {:>9}\n", "class", "rows", "NLL (nats)", "accuracy");
  for (std::size_t k = 0; k < pc.size() && k < static_cast<std::size_t>(top_classes); ++k)
    o += fmt::format("  {:>8} {:>9} {:>12} {:>8.2f}%\n", pc[k]["class"].get<std::int64_t>(),
                     pc[k]["count"].get<std::int64_t>(), f(pc[k]["nll_nats"]), 100 * pc[k]["accuracy"].get<double>());
  o += "\nhighest-loss rows\n";
  o += fmt::format("  {:>9} {:>8} {:>12} {:>10} {:>12}\n", "row", "target", "loss (nats)", "predicted", "p(target)");
  for (const auto& r : j["highest_loss_rows"])
    o += fmt::format("  {:>9} {:>8} {:>12} {:>10} {:>12.4g}\n", r["row"].get<std::int64_t>(),
                     r["target"].get<std::int64_t>(), f(r["loss_nats"]), r["predicted"].get<std::int64_t>(),
                     r["p_target"].get<double>());
  return o;
}

}  // namespace xent::cli
