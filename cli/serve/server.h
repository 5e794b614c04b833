// cli/serve/server.h — the HTTP side of `xent serve` (cpp-httplib).
#pragma once

#include <cstddef>
#include <string>

namespace xent::cli::serve {

// Request bodies: the JSON API takes at most kMaxJsonBody bytes (enough for
// two vectors of kMaxClasses full-precision numbers); an .npy upload to
// /api/eval at most kMaxUpload bytes, streamed to a temporary directory
// rather than held in memory.
inline constexpr std::size_t kMaxJsonBody = 8u << 20;
inline constexpr std::size_t kMaxUpload = 256u << 20;

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8321;  // 0: any free port (the URL printed says which)
  bool open = false;  // start the desktop's browser (xdg-open) on the URL
};

// Serves until SIGINT or SIGTERM; returns the exit code. Prints one line
// "xent serve: listening on http://HOST:PORT/" on stdout once it accepts
// connections (the tests read the port from it).
int run_server(const ServeOptions& options);

}  // namespace xent::cli::serve
