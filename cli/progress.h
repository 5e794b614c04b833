// A progress bar on stderr: drawn only when stderr is a terminal, redrawn at
// most ~10 times a second, erased when done. Nothing here touches stdout, so
// piped output stays clean.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace xent::cli {

class ProgressBar {
 public:
  ProgressBar(std::string label, std::int64_t total)
      : label_(std::move(label)), total_(total > 0 ? total : 1),
        enabled_(isatty(STDERR_FILENO) != 0) {}
  ~ProgressBar() { finish(); }

  // Progress of `done` out of `total` (when the total is only known later).
  void update(std::int64_t done, std::int64_t total) {
    total_ = total > 0 ? total : 1;
    update(done);
  }

  void update(std::int64_t done) {
    if (!enabled_ || finished_) return;
    const auto now = std::chrono::steady_clock::now();
    if (done < total_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const int width = 30;
    const double frac = static_cast<double>(done) / static_cast<double>(total_);
    const int filled = static_cast<int>(frac * width + 0.5);
    std::fprintf(stderr, "\r%-24s [%s%s] %3d%%", label_.c_str(),
                 std::string(static_cast<std::size_t>(filled), '#').c_str(),
                 std::string(static_cast<std::size_t>(width - filled), '.').c_str(),
                 static_cast<int>(frac * 100 + 0.5));
    std::fflush(stderr);
  }

  void finish() {
    if (!enabled_ || finished_) return;
    finished_ = true;
    std::fprintf(stderr, "\r%80s\r", "");
    std::fflush(stderr);
  }

 private:
  std::string label_;
  std::int64_t total_;
  bool enabled_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace xent::cli
