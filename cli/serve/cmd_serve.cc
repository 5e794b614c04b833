// `xent serve`: options; the server itself is in server.cc.
#include "cmd_serve.h"

namespace xent::cli {

CLI::App* add_serve_command(CLI::App& app, ServeArgs& a) {
  CLI::App* cmd = app.add_subcommand(
      "serve", "Start the cross-entropy explorer: a local web page whose every number "
               "is computed by libxent.");
  cmd->add_option("--port", a.options.port, "TCP port (0: any free port)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--host", a.options.host,
                  "address to listen on (default 127.0.0.1: this machine only)")
      ->capture_default_str();
  cmd->add_flag("--open", a.options.open, "open the page in the desktop's browser");
  cmd->footer(R"(Examples:
  xent serve                   then open http://127.0.0.1:8321/
  xent serve --port 0 --open   any free port, and open the browser on it

The page needs no network: every file is inside the binary. Ctrl-C stops.)");
  return cmd;
}

int run_serve_command(const ServeArgs& a) { return serve::run_server(a.options); }

}  // namespace xent::cli
