// memory_patterns: the bytes of a fused forward+backward (read N×V float32,
// write N×V) moved in different orders, without arithmetic, side by side in
// one run, to tell what the order alone costs:
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
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bandwidth.h"
#include "hwy/aligned_allocator.h"

int main(int argc, char** argv) {
  std::size_t N = 4096, V = 32000;
  int threads = 2, rounds = 3, fmas = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--shape" && i + 1 < argc && std::sscanf(argv[i + 1], "%zux%zu", &N, &V) == 2 && N > 0 && V > 0) {
      ++i;
    } else if (a == "--threads" && i + 1 < argc && std::atoi(argv[i + 1]) > 0) {
      threads = std::atoi(argv[++i]);
    } else if (a == "--rounds" && i + 1 < argc && std::atoi(argv[i + 1]) > 0) {
      rounds = std::atoi(argv[++i]);
    } else if (a == "--fmas" && i + 1 < argc && std::atoi(argv[i + 1]) % 4 == 0 && std::atoi(argv[i + 1]) >= 0 &&
               std::atoi(argv[i + 1]) <= 16) {
      fmas = std::atoi(argv[++i]);
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
  // every row starts on a 64-byte boundary (V a multiple of 16 floats).
  const bool aligned = V % 16 == 0;
  std::vector<double> best(patterns.size(), 1e30);
  volatile double sink = 0;
  for (int round = 0; round < rounds; ++round) {
    for (std::size_t k = 0; k < patterns.size(); ++k) {
      for (int rep = 0; rep < 5; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        const std::size_t g = patterns[k].grain;
        if (g != kCopy && g != kRowWise && g != 0 && !aligned) break;
        if (g == kCopy)
          xent::bench::StreamCopy(src.get(), dst.get(), n, threads);
        else if (g == kRowWise)
          sink = sink + xent::bench::RowCeiling(src.get(), dst.get(), N, V, threads);
        else
          sink = sink + xent::bench::PipelinedRows(src.get(), dst.get(), N, V, g, fmas, threads);
        best[k] = std::min(best[k], std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
    }
  }
  std::printf("%zux%zu float32, %d threads, bytes = 2·N·V·4, best of %d rounds × 5, %d multiply-adds per vector\n", N,
              V, threads, rounds, fmas);
  const double bytes = 2.0 * static_cast<double>(n) * sizeof(float);
  for (std::size_t k = 0; k < patterns.size(); ++k) {
    if (patterns[k].grain != kCopy && patterns[k].grain != kRowWise && patterns[k].grain != 0 && !aligned) {
      std::printf("%-48s   (rows not 64-byte aligned: pieces start with scalar stores)\n", patterns[k].name.c_str());
      continue;
    }
    std::printf("%-48s %9.2f ms %7.1f GB/s %5.0f%% of copy\n", patterns[k].name.c_str(), best[k] * 1e3,
                bytes / best[k] / 1e9, 100.0 * best[0] / best[k]);
  }
  return 0;
}
