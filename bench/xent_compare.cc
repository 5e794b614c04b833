// xent_compare: times xent's fused losses and the machine's bandwidth
// kernels on caller-owned, reused buffers; prints one JSON object per line.
// Driven by bench/compare.py, which adds PyTorch and prints the table.
//
//   xent_compare [--threads T] [--reps R] [--bandwidth-mib M]
//                [--shape NxV:kind,kind,...]...
// kinds: ceiling  (row-wise ceiling: read a row, stream it back out)
//        fwd      (loss only)           fwdbwd   (loss + gradient, reused buffer)
//        inplace  (gradient over the logits)  fresh  (gradient into new memory)
//        ls       (label smoothing 0.1, fwd+bwd)   soft (soft targets, fwd+bwd)
//        bce      (BCE with logits, fwd+bwd)
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bandwidth.h"
#include "hwy/aligned_allocator.h"
#include "xent/loss.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Timing {
  double median_ms, min_ms;
};

Timing time_it(int reps, const std::function<void()>& f) {
  f();  // warm-up (also first-touches anything lazily allocated)
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.front()};
}

void emit(const char* kind, long n, long v, double bytes, const Timing& t) {
  std::printf("{\"kind\": \"%s\", \"N\": %ld, \"V\": %ld, \"bytes\": %.0f, \"ms\": %.4f, "
              "\"min_ms\": %.4f, \"gbps\": %.3f}\n",
              kind, n, v, bytes, t.median_ms, t.min_ms, bytes / (t.median_ms * 1e6));
  std::fflush(stdout);
}

// Fills in parallel with the same static partition the kernels use, so that
// pages are first touched by the thread that later reads them.
void fill_normal(float* x, std::size_t n, float sigma, unsigned seed, int threads) {
#pragma omp parallel num_threads(threads)
  {
    const std::size_t t = static_cast<std::size_t>(omp_get_thread_num());
    const std::size_t nt = static_cast<std::size_t>(omp_get_num_threads());
    std::minstd_rand rng(seed + 977 * static_cast<unsigned>(t));
    std::normal_distribution<float> nd(0.0f, sigma);
    for (std::size_t i = n * t / nt; i < n * (t + 1) / nt; ++i) x[i] = nd(rng);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, reps = 10;
  long bw_mib = 0;
  std::vector<std::string> shapes;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--bandwidth-mib" && i + 1 < argc) bw_mib = std::atol(argv[++i]);
    else if (a == "--shape" && i + 1 < argc) shapes.push_back(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--threads T] [--reps R] [--bandwidth-mib M] [--shape NxV:kinds]...\n", argv[0]);
      return 2;
    }
  }
  if (bw_mib > 0) {
    const std::size_t n = static_cast<std::size_t>(bw_mib) << 18;  // floats
    auto a = hwy::AllocateAligned<float>(n), b = hwy::AllocateAligned<float>(n);
    fill_normal(a.get(), n, 1.0f, 1, threads);
    fill_normal(b.get(), n, 1.0f, 2, threads);
    volatile double sink = 0;
    emit("bw_read", 1, static_cast<long>(n), 4.0 * n,
         time_it(reps, [&] { sink = sink + xent::bench::ReadSum(a.get(), n, threads); }));
    emit("bw_copy_stream", 1, static_cast<long>(n), 8.0 * n,
         time_it(reps, [&] { xent::bench::StreamCopy(a.get(), b.get(), n, threads); }));
  }
  for (const std::string& spec : shapes) {
    long N = 0, V = 0;
    char kinds[512] = {0};
    if (std::sscanf(spec.c_str(), "%ldx%ld:%511s", &N, &V, kinds) != 3) {
      std::fprintf(stderr, "bad --shape %s\n", spec.c_str());
      return 2;
    }
    const std::size_t n = static_cast<std::size_t>(N) * static_cast<std::size_t>(V);
    auto z = hwy::AllocateAligned<float>(n), g = hwy::AllocateAligned<float>(n);
    fill_normal(z.get(), n, 4.0f, 3, threads);
    fill_normal(g.get(), n, 1.0f, 4, threads);  // first touch of the reused gradient
    std::vector<std::int64_t> t(static_cast<std::size_t>(N));
    std::mt19937_64 rng(5);
    for (auto& x : t) x = static_cast<std::int64_t>(rng() % static_cast<unsigned long>(V));
    const xent::MatrixView zv{z.get(), xent::DType::kF32, N, V, V};
    const xent::MutableMatrixView gv{g.get(), xent::DType::kF32, N, V, V};
    xent::CrossEntropyOptions o;
    o.num_threads = threads;
    const double nv4 = 4.0 * static_cast<double>(n);
    std::string ks = kinds;
    std::size_t pos = 0;
    while (pos <= ks.size()) {
      const std::size_t end = std::min(ks.find(',', pos), ks.size());
      const std::string k = ks.substr(pos, end - pos);
      pos = end + 1;
      if (k.empty()) continue;
      if (k == "ceiling") {
        volatile double sink = 0;
        emit("ceiling", N, V, 2 * nv4, time_it(reps, [&] {
               sink = sink + xent::bench::RowCeiling(z.get(), g.get(), N, V, threads);
             }));
      } else if (k == "fwd") {
        emit("fwd", N, V, nv4, time_it(reps, [&] { xent::cross_entropy_loss(zv, xent::Targets::Index(t.data()), o); }));
      } else if (k == "fwdbwd" || k == "ls") {
        xent::CrossEntropyOptions lo = o;
        if (k == "ls") lo.label_smoothing = 0.1;
        xent::CrossEntropyOutputs outs;
        outs.grad = gv;
        emit(k.c_str(), N, V, 2 * nv4, time_it(reps, [&] {
               xent::cross_entropy_loss(zv, xent::Targets::Index(t.data()), lo, outs);
             }));
      } else if (k == "inplace") {
        // The gradient overwrites the logits; refresh them outside the timing
        // is not possible per rep, so each rep runs on the previous gradient
        // (finite values: same work).
        auto zc = hwy::AllocateAligned<float>(n);
        std::memcpy(zc.get(), z.get(), n * 4);
        const xent::MatrixView cv{zc.get(), xent::DType::kF32, N, V, V};
        xent::CrossEntropyOutputs outs;
        outs.grad = {zc.get(), xent::DType::kF32, N, V, V};
        emit("inplace", N, V, 2 * nv4, time_it(reps, [&] {
               xent::cross_entropy_loss(cv, xent::Targets::Index(t.data()), o, outs);
             }));
      } else if (k == "fresh") {
        emit("fresh", N, V, 2 * nv4, time_it(reps, [&] {
               auto fresh = hwy::AllocateAligned<float>(n);
               xent::CrossEntropyOutputs outs;
               outs.grad = {fresh.get(), xent::DType::kF32, N, V, V};
               xent::cross_entropy_loss(zv, xent::Targets::Index(t.data()), o, outs);
             }));
      } else if (k == "soft" || k == "bce") {
        auto p = hwy::AllocateAligned<float>(n);
        if (k == "soft") {
          // One-hot-ish distributions: exact sums, same bytes as any other.
#pragma omp parallel for num_threads(threads) schedule(static)
          for (long r = 0; r < N; ++r) {
            float* row = p.get() + static_cast<std::size_t>(r) * static_cast<std::size_t>(V);
            for (long j = 0; j < V; ++j) row[j] = 0.0f;
            row[t[static_cast<std::size_t>(r)]] = 0.5f;
            row[(t[static_cast<std::size_t>(r)] + 1) % V] += 0.25f;
            row[(t[static_cast<std::size_t>(r)] + 2) % V] += 0.25f;
          }
          xent::CrossEntropyOutputs outs;
          outs.grad = gv;
          const xent::MatrixView pv{p.get(), xent::DType::kF32, N, V, V};
          emit("soft", N, V, 3 * nv4, time_it(reps, [&] {
                 xent::cross_entropy_loss(zv, xent::Targets::Soft(pv), o, outs);
               }));
        } else {
#pragma omp parallel for num_threads(threads) schedule(static)
          for (long r = 0; r < N; ++r) {
            float* row = p.get() + static_cast<std::size_t>(r) * static_cast<std::size_t>(V);
            for (long j = 0; j < V; ++j) row[j] = ((r + j) % 3 == 0) ? 1.0f : 0.0f;
          }
          xent::BceOptions bo;
          bo.num_threads = threads;
          xent::BceOutputs outs;
          outs.grad = gv;
          const xent::MatrixView pv{p.get(), xent::DType::kF32, N, V, V};
          emit("bce", N, V, 3 * nv4, time_it(reps, [&] {
                 xent::binary_cross_entropy_with_logits_loss(zv, pv, bo, outs);
               }));
        }
      } else {
        std::fprintf(stderr, "unknown kind %s\n", k.c_str());
        return 2;
      }
    }
  }
  return 0;
}
