// cli/cmd_bench.h — `xent bench`: the fused cross-entropy kernel on standard
// shapes, in GB/s and as a fraction of this machine's memory bandwidth
// measured in the same run (a STREAM-like read and streaming copy).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace xent::cli {

struct BenchArgs {
  std::string shapes;  // "4096x32000,65536x1000"; empty: the standard set
  int reps = 7;
  int threads = 0;     // 0: OpenMP's default
  bool json = false;
  bool quick = false;  // small shapes, few reps (tests)
};

CLI::App* add_bench_command(CLI::App& app, BenchArgs& args);
int run_bench(const BenchArgs& args);

}  // namespace xent::cli
