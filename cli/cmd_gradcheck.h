// cli/cmd_gradcheck.h — `xent gradcheck`: finite-difference checks of every
// loss and option on random cases (float64), worst error per loss.
#pragma once

#include <cstdint>

#include <CLI/CLI.hpp>

namespace xent::cli {

struct GradcheckArgs {
  int cases = 20;          // random cases per check
  std::uint64_t seed = 1;
  double tolerance = 1e-6; // on the relative error (rel_floor 1e-6)
  bool json = false;
};

CLI::App* add_gradcheck_command(CLI::App& app, GradcheckArgs& args);
// Returns 0 when every check is within tolerance, 3 otherwise.
int run_gradcheck(const GradcheckArgs& args);

}  // namespace xent::cli
