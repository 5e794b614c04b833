// cli/cmd_demo.h — registers `xent demo` (the main job) with CLI11.
#pragma once

#include <CLI/CLI.hpp>

#include "demo/demo.h"

namespace xent::cli {

CLI::App* add_demo_command(CLI::App& app, demo::DemoOptions& options);
int run_demo_command(const demo::DemoOptions& options);

}  // namespace xent::cli
