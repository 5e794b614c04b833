// cli/serve/cmd_serve.h — registers `xent serve` with CLI11.
#pragma once

#include <CLI/CLI.hpp>

#include "server.h"

namespace xent::cli {

struct ServeArgs {
  serve::ServeOptions options;
};

CLI::App* add_serve_command(CLI::App& app, ServeArgs& args);
int run_serve_command(const ServeArgs& args);

}  // namespace xent::cli
