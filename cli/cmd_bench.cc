// Every timing is the median of `reps` runs on caller-owned buffers that were
// touched before timing (first touch of fresh pages costs more than the kernel
// on these machines; bench/compare.py reports that case separately). Bytes:
// forward reads the logits once (N·V·4); forward+backward also writes the
// gradient once (2·N·V·4). The bandwidth reference is measured in the same
// process just before, with the same thread count, so the fraction is a ratio
// of two measurements taken side by side.
#include "cmd_bench.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <random>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bandwidth.h"
#include "common.h"
#include "xent/loss.h"

namespace xent::cli {
namespace {

struct BenchShape {
  std::int64_t rows, cols;
};

std::vector<BenchShape> parse_shapes(const std::string& text) {
  std::vector<BenchShape> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const std::size_t x = item.find('x');
    if (x == std::string::npos)
      throw UsageError("--shapes: '" + item + "' is not ROWSxCOLS (e.g. 4096x32000)");
    const long long r = parse_index(item.substr(0, x), "--shapes");
    const long long c = parse_index(item.substr(x + 1), "--shapes");
    if (r < 1 || c < 1 || static_cast<double>(r) * static_cast<double>(c) > 2.0e9)
      throw UsageError("--shapes: '" + item + "' must have rows, cols >= 1 and at most 2e9 elements");
    out.push_back({r, c});
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

template <class F>
double median_seconds(int reps, F&& f) {
  f();  // warm-up (caches, page tables, OpenMP team)
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

CLI::App* add_bench_command(CLI::App& app, BenchArgs& a) {
  CLI::App* cmd = app.add_subcommand(
      "bench", "Time the fused cross-entropy on standard shapes: GB/s and fraction of the memory "
               "bandwidth measured in the same run");
  cmd->add_option("--shapes", a.shapes, "comma-separated ROWSxCOLS (default: 4096x32000, 8192x50257, "
                                        "2048x128256, 65536x1000, 1048576x10, 1x262144)");
  cmd->add_option("--reps", a.reps, "timed repetitions per case (median reported)")->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--threads", a.threads, "threads (0: all)")->capture_default_str()->check(CLI::Range(0, 1024));
  cmd->add_flag("--json", a.json, "print the results as JSON");
  cmd->add_flag("--quick", a.quick, "small shapes and 3 repetitions (a smoke test)");
  cmd->footer(R"(Examples:
  xent bench                               the standard shapes, float32, hard targets
  xent bench --shapes 4096x32000 --threads 1
  xent bench --json

For the side-by-side comparison with PyTorch, see bench/compare.py.)");
  return cmd;
}

int run_bench(const BenchArgs& a) {
  std::vector<BenchShape> shapes =
      a.shapes.empty() ? (a.quick ? std::vector<BenchShape>{{512, 1000}, {4096, 10}, {1, 65536}}
                                  : std::vector<BenchShape>{{4096, 32000}, {8192, 50257}, {2048, 128256},
                                                            {65536, 1000}, {1048576, 10}, {1, 262144}})
                       : parse_shapes(a.shapes);
  const int reps = a.quick ? std::min(a.reps, 3) : a.reps;
  const int threads = a.threads > 0 ? a.threads : omp_get_max_threads();

  // Machine bandwidth on 256 MiB arrays (64 MiB with --quick): far beyond
  // every cache here, and quick to set up.
  const std::size_t n = (a.quick ? 16u : 64u) << 20;
  std::vector<float> src(n, 1.0f), dst(n, 0.0f);
  const double read_s = median_seconds(reps, [&] { (void)bench::ReadSum(src.data(), n, threads); });
  const double copy_s = median_seconds(reps, [&] { bench::StreamCopy(src.data(), dst.data(), n, threads); });
  const double read_gbs = static_cast<double>(n) * 4 / read_s / 1e9;
  const double copy_gbs = static_cast<double>(n) * 8 / copy_s / 1e9;
  src.clear(), src.shrink_to_fit(), dst.clear(), dst.shrink_to_fit();

  nlohmann::json out = {{"threads", threads}, {"reps", reps},
                        {"bandwidth_gbs", {{"read", read_gbs}, {"copy_streaming", copy_gbs}}},
                        {"results", nlohmann::json::array()}};
  if (!a.json)
    std::cout << fmt::format("bandwidth ({} threads): read {:.1f} GB/s, copy with streaming stores {:.1f} GB/s\n\n"
                             "{:>14} {:>8} {:>10} {:>8} {:>14}\n",
                             threads, read_gbs, copy_gbs, "shape N x V", "case", "ms", "GB/s", "of bandwidth");
  std::mt19937 rng(1);
  for (const auto& s : shapes) {
    const auto elems = static_cast<std::size_t>(s.rows * s.cols);
    std::vector<float> logits(elems), grad(elems, 0.0f);
    std::normal_distribution<float> nd(0.0f, 4.0f);
    for (auto& z : logits) z = nd(rng);
    std::vector<std::int64_t> targets(static_cast<std::size_t>(s.rows));
    std::uniform_int_distribution<std::int64_t> cls(0, s.cols - 1);
    for (auto& t : targets) t = cls(rng);
    CrossEntropyOptions opt;
    opt.num_threads = threads;
    const MatrixView view{logits.data(), DType::kF32, s.rows, s.cols, s.cols};
    CrossEntropyOutputs with_grad;
    with_grad.grad = {grad.data(), DType::kF32, s.rows, s.cols, s.cols};
    const double fwd = median_seconds(reps, [&] { cross_entropy_loss(view, Targets::Index(targets.data()), opt); });
    const double fb =
        median_seconds(reps, [&] { cross_entropy_loss(view, Targets::Index(targets.data()), opt, with_grad); });
    const double bytes = static_cast<double>(elems) * 4;
    for (const auto& [name, secs, mult, ref] :
         {std::tuple{"fwd", fwd, 1.0, read_gbs}, std::tuple{"fwd+bwd", fb, 2.0, copy_gbs}}) {
      const double gbs = bytes * mult / secs / 1e9;
      out["results"].push_back({{"rows", s.rows}, {"cols", s.cols}, {"case", name}, {"ms", secs * 1e3},
                                {"gbs", gbs}, {"fraction_of_bandwidth", gbs / ref},
                                {"bandwidth", mult == 1.0 ? "read" : "copy_streaming"}});
      // Below ~32 MiB the data stays in the caches between repetitions, so
      // the fraction of DRAM bandwidth can exceed 100%; say so.
      const bool in_cache = bytes * mult < 32.0 * (1 << 20);
      out["results"].back()["fits_in_cache"] = in_cache;
      if (!a.json)
        std::cout << fmt::format("{:>14} {:>8} {:>10.3f} {:>8.1f} {:>9.0f}% {}{}\n", fmt::format("{}x{}", s.rows, s.cols),
                                 name, secs * 1e3, gbs, 100 * gbs / ref, mult == 1.0 ? "read" : "copy",
                                 in_cache ? " (fits in cache)" : "");
    }
  }
  if (a.json) std::cout << out.dump(2) << "\n";
  return kExitOk;
}

}  // namespace xent::cli
