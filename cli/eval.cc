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
    const auto off = static_cast<std::size_t>(r) * static_cast<std::size_t>(cols) * NpyTypeSize(type);
    return (npy ? npy->data() : reinterpret_cast<const unsigned char*>(owned.data())) + off;
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

Input open_input(const std::string& path) {
  if (ends_with(path, ".csv") || ends_with(path, ".txt")) return read_csv(path);
  Input in;
  in.name = path;
  in.npy = std::make_unique<NpyFile>(path);
  in.type = in.npy->header().type;
  in.rows = in.npy->rows();
  in.cols = in.npy->cols();
  in.dims = static_cast<std::int64_t>(in.npy->header().shape.size());
  return in;
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

nlohmann::json evaluate(const EvalOptions& opt) {
  if (opt.logits.empty() == opt.probs.empty())
    throw UsageError("give exactly one of --logits and --probs");
  if (opt.targets.empty()) throw UsageError("--targets is required");
  if (opt.bins < 1) throw UsageError("--bins must be >= 1");
  const bool from_probs = !opt.probs.empty();
  const Input pred = open_input(from_probs ? opt.probs : opt.logits);
  const Input tgt = open_input(opt.targets);
  if (!pred.is_float()) throw NpyError(pred.name + ": " + NpyTypeName(pred.type) + " data; expected float16/32/64");
  if (pred.dims != 2 && !(pred.dims == 1 && pred.npy == nullptr))
    throw NpyError(pred.name + ": expected a 2-D array N×V");
  const std::int64_t n = pred.rows, v = pred.cols;
  if (v < 1) throw NpyError(pred.name + ": V = 0 classes");
  const bool soft = tgt.dims == 2 && tgt.cols > 1;
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
  std::vector<std::int64_t> index_targets;
  if (!soft) {
    index_targets.resize(static_cast<std::size_t>(n));
    for (std::int64_t r = 0; r < n; ++r) {
      const double t = tgt.at(r, 0);
      if (t != std::floor(t)) throw NpyError(fmt::format("{}: target of row {} is {}, not an integer", tgt.name, r, t));
      const auto ti = static_cast<std::int64_t>(t);
      if (ti != opt.ignore_index && (ti < 0 || ti >= v))
        throw NpyError(fmt::format("{}: target of row {} is {}, outside [0, {})", tgt.name, r, ti, v));
      index_targets[static_cast<std::size_t>(r)] = ti;
    }
  }

  const std::int64_t chunk = opt.chunk_rows > 0
      ? opt.chunk_rows
      : std::max<std::int64_t>(1, (64ll << 20) / std::max<std::int64_t>(1, v * 4));
  Calibration calib(opt.bins);
  std::vector<ClassStat> classes(static_cast<std::size_t>(v));
  std::priority_queue<RowStat> worst;
  double loss_sum = 0, nll_sum = 0, brier_sum = 0, weight = 0;
  std::int64_t counted = 0, correct = 0, correct5 = 0, ignored = 0;
  std::vector<float> row_loss, row_nll, row_lse;
  std::vector<double> q(static_cast<std::size_t>(v));
  ProgressBar bar("xent eval", n);
  const bool show_progress = opt.progress && n * v >= (64ll << 20);

  for (std::int64_t r0 = 0; r0 < n; r0 += chunk) {
    const std::int64_t rows = std::min(chunk, n - r0);
    row_loss.assign(static_cast<std::size_t>(rows), 0.f);
    row_nll.assign(static_cast<std::size_t>(rows), 0.f);
    row_lse.assign(static_cast<std::size_t>(rows), 0.f);
    if (!from_probs) {
      CrossEntropyOptions o;
      o.reduction = Reduction::kNone;
      o.ignore_index = opt.ignore_index;
      const Targets t = soft ? Targets::Soft(tgt.view(r0, rows))
                             : Targets::Index(index_targets.data() + r0);
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
      const std::int64_t t = soft ? -1 : index_targets[static_cast<std::size_t>(r)];
      if (!soft && t == opt.ignore_index) {
        ++ignored;
        continue;
      }
      // The predicted distribution of the row, in double.
      if (from_probs) {
        double s = 0;
        for (std::int64_t c = 0; c < v; ++c) {
          const double p = pred.at(r, c);
          if (!(p >= 0 && p <= 1))
            throw NpyError(fmt::format("{}: row {} column {} is {}, not a probability", pred.name, r, c, p));
          q[static_cast<std::size_t>(c)] = p;
          s += p;
        }
        if (std::fabs(s - 1) > 1e-3)
          throw NpyError(fmt::format("{}: row {} sums to {}, not 1 (tolerance 1e-3); pass logits with --logits instead", pred.name, r, s));
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
      const bool ok = predicted == label;
      ++counted;
      correct += ok;
      correct5 += above < 5;
      loss_sum += loss;
      nll_sum += nll;
      brier_sum += brier;
      calib.add(q[static_cast<std::size_t>(predicted)], ok);
      auto& cs = classes[static_cast<std::size_t>(label)];
      ++cs.count;
      cs.correct += ok;
      cs.nll += nll;
      worst.push({loss, r, label, predicted, q_label});
      if (static_cast<int>(worst.size()) > opt.top_rows) worst.pop();
    }
    if (pred.npy) pred.npy->release_before(r0 + rows);
    if (show_progress) bar.update(r0 + rows);
  }
  bar.finish();
  (void)weight;

  using nlohmann::json;
  json j;
  j["inputs"] = {{from_probs ? "probs" : "logits", pred.name}, {"targets", tgt.name},
                 {"rows", n}, {"classes", v}, {"dtype", pred.npy ? NpyTypeName(pred.type) : "csv"},
                 {"soft_targets", soft}};
  j["rows_evaluated"] = counted;
  j["rows_ignored"] = ignored;
  const double cnt = static_cast<double>(counted);
  auto num = [](double x) { return std::isfinite(x) ? json(x) : json(x > 0 ? "inf" : "nan"); };
  if (counted == 0) {
    j["loss_nats"] = nullptr;
  } else {
    const double mean_nll = nll_sum / cnt;
    j["loss_nats"] = num(mean_nll);
    j["loss_bits"] = num(mean_nll / kLn2);
    j["perplexity"] = num(std::exp(mean_nll));
    if (opt.label_smoothing > 0) {
      j["smoothed_loss_nats"] = num(loss_sum / cnt);
      j["label_smoothing"] = {{"epsilon", opt.label_smoothing}, {"mode", SmoothingName(opt.smoothing_mode)}};
    }
    j["accuracy"] = correct / cnt;
    j["top5_accuracy"] = correct5 / cnt;
    j["brier"] = brier_sum / cnt;
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
  while (!worst.empty()) { top.push_back(worst.top()); worst.pop(); }
  std::reverse(top.begin(), top.end());
  j["highest_loss_rows"] = json::array();
  for (const auto& s : top)
    j["highest_loss_rows"].push_back({{"row", s.row}, {"target", s.target}, {"loss_nats", num(s.loss)},
                                      {"predicted", s.predicted}, {"p_target", s.p_target}});
  return j;
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
