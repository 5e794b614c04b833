// memory_patterns: the bytes of a fused forward+backward (read N×V float32,
// write N×V) moved in different orders, side by side in one run, to tell
// what the order costs, with no arithmetic or with a stand-in for it:
//
//   memory_patterns [--shape NxV] [--threads T] [--rounds R] [--fmas K]
//                                              (default 4096x32000, 2, 3, 0)
//
// Prints GB/s (bytes = 2·N·V·4; best of R rounds of 5 calls, the patterns
// alternated within each round) for: the streaming copy; the row-wise
// ceiling of bench/compare.py (read a row, then rewrite it); pipelined rows
// (read row r, then rewrite row r − 1, as the loss does for V ≥ 4096); and
// pipelined rows alternating every 128 to 4096 floats (when V is a multiple
// of 16, so that every piece streams from an aligned start). With --fmas K,
// the pipelined patterns do K dependent multiply-adds on every vector of
// both streams, a stand-in for a fused kernel's arithmetic (the copy and the
// row-wise ceiling stay without). See docs/performance.md,
// "The memory pattern of forward+backward".
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bandwidth.h"
#include "hwy/aligned_allocator.h"

// The whole of `s` as an integer in [lo, hi], or false.
bool parse_int(const char* s, long lo, long hi, long* out) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

// "NxV" with 1 ≤ N, V ≤ 2^30 and N·V ≤ 2^34, or false.
bool parse_shape(const std::string& s, std::size_t* N, std::size_t* V) {
  const std::size_t x = s.find('x');
  long rows = 0, cols = 0;
  if (x == std::string::npos || !parse_int(s.substr(0, x).c_str(), 1, 1L << 30, &rows) ||
      !parse_int(s.substr(x + 1).c_str(), 1, 1L << 30, &cols) || rows * cols > (1L << 34))
    return false;
  *N = static_cast<std::size_t>(rows);
  *V = static_cast<std::size_t>(cols);
  return true;
}

int main(int argc, char** argv) {
  std::size_t N = 4096, V = 32000;
  long threads = 2, rounds = 3, fmas = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* next = i + 1 < argc ? argv[i + 1] : "";
    if (a == "--shape" && parse_shape(next, &N, &V)) {
      ++i;
    } else if (a == "--threads" && parse_int(next, 1, 1024, &threads)) {
      ++i;
    } else if (a == "--rounds" && parse_int(next, 1, 1000, &rounds)) {
      ++i;
    } else if (a == "--fmas" && parse_int(next, 0, 16, &fmas) && fmas % 4 == 0) {
      ++i;
    } else {
      std::fprintf(stderr, "usage: %s [--shape NxV] [--threads T] [--rounds R] [--fmas K (0, 4, 8, 12 or 16)]\n", argv[0]);
      return 2;
    }
  }
  const std::size_t n = N * V;
  auto src = hwy::AllocateAligned<float>(n);
  auto dst = hwy::AllocateAligned<float>(n);
  if (!src || !dst) {
    std::fprintf(stderr, "memory_patterns: cannot allocate 2 × %zu floats\n", n);
    return 1;
  }
  for (std::size_t i = 0; i < n; ++i) src[i] = static_cast<float>(i % 7);
  std::memset(dst.get(), 0, n * sizeof(float));  // first touch outside the timing
  struct Pattern {
    std::string name;
    std::size_t grain;  // for pipelined rows; -1: copy, -2: row-wise ceiling
  };
  const std::size_t kCopy = static_cast<std::size_t>(-1), kRowWise = static_cast<std::size_t>(-2);
  const std::vector<Pattern> patterns = {
      {"streaming copy", kCopy},
      {"row-wise ceiling (read row r, rewrite row r)", kRowWise},
      {"pipelined rows (read row r, rewrite row r-1)", 0},
      {"pipelined rows, alternating every 128 floats", 128},
      {"pipelined rows, alternating every 256 floats", 256},
      {"pipelined rows, alternating every 1024 floats", 1024},
      {"pipelined rows, alternating every 4096 floats", 4096},
  };
  // Alternating pieces are streamed from vector-aligned starts only when
  // every row starts on a 64-byte boundary (V a multiple of 16 floats);
  // otherwise those patterns are not timed.
  const bool aligned = V % 16 == 0;
  auto timed = [&](const Pattern& p) { return aligned || p.grain == kCopy || p.grain == kRowWise || p.grain == 0; };
  std::vector<double> best(patterns.size(), 1e30);
  volatile double sink = 0;
  for (long round = 0; round < rounds; ++round) {
    for (std::size_t k = 0; k < patterns.size(); ++k) {
      if (!timed(patterns[k])) continue;
      for (int rep = 0; rep < 5; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        const std::size_t g = patterns[k].grain;
        if (g == kCopy)
          xent::bench::StreamCopy(src.get(), dst.get(), n, static_cast<int>(threads));
        else if (g == kRowWise)
          sink = sink + xent::bench::RowCeiling(src.get(), dst.get(), N, V, static_cast<int>(threads));
        else
          sink = sink + xent::bench::PipelinedRows(src.get(), dst.get(), N, V, g, static_cast<int>(fmas),
                                                   static_cast<int>(threads));
        best[k] = std::min(best[k], std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
    }
  }
  std::printf("%zux%zu float32, %ld threads, bytes = 2·N·V·4, best of %ld rounds × 5, %ld multiply-adds per vector\n",
              N, V, threads, rounds, fmas);
  const double bytes = 2.0 * static_cast<double>(n) * sizeof(float);
  for (std::size_t k = 0; k < patterns.size(); ++k) {
    if (!timed(patterns[k])) {
      std::printf("%-48s   (rows not 64-byte aligned: pieces start with scalar stores)\n", patterns[k].name.c_str());
      continue;
    }
    std::printf("%-48s %9.2f ms %7.1f GB/s %5.0f%% of copy\n", patterns[k].name.c_str(), best[k] * 1e3,
                bytes / best[k] / 1e9, 100.0 * best[0] / best[k]);
  }
  return 0;
}
