// cli/serve/assets.h — the files of web/, embedded into the binary at build
// time (cli/serve/embed_assets.cmake writes the definition).
#pragma once

#include <span>
#include <string_view>

namespace xent::cli::serve {

struct Asset {
  std::string_view path;          // "/index.html", "/app.js", ...
  std::string_view content_type;  // from the extension
  std::string_view data;
};

std::span<const Asset> web_assets();

}  // namespace xent::cli::serve
