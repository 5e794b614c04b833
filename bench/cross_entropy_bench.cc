// Google Benchmark cases of the fused losses on the shapes of the issue
// (float32, caller-owned reused buffers, 2 threads by default; set
// XENT_BENCH_THREADS to change). bytes_per_second counts one read of the
// logits (+ one read of soft/BCE targets) (+ one write of the gradient).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <random>
#include <vector>

#include "bandwidth.h"
#include "hwy/aligned_allocator.h"
#include "xent/loss.h"

namespace {

int Threads() {
  const char* s = std::getenv("XENT_BENCH_THREADS");
  return s ? std::atoi(s) : 2;
}

struct Data {
  long N, V;
  hwy::AlignedFreeUniquePtr<float[]> z, g, p;
  std::vector<std::int64_t> t;
  Data(long n, long v, bool with_p) : N(n), V(v) {
    const std::size_t k = static_cast<std::size_t>(n) * static_cast<std::size_t>(v);
    z = hwy::AllocateAligned<float>(k);
    g = hwy::AllocateAligned<float>(k);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.f, 4.f);
    for (std::size_t i = 0; i < k; ++i) z[i] = nd(rng), g[i] = 0.f;
    t.resize(static_cast<std::size_t>(n));
    for (auto& x : t) x = static_cast<std::int64_t>(rng() % static_cast<unsigned>(v));
    if (with_p) {
      p = hwy::AllocateAligned<float>(k);
      for (std::size_t i = 0; i < k; ++i) p[i] = 0.f;
      for (long r = 0; r < n; ++r) p[static_cast<std::size_t>(r * v + t[static_cast<std::size_t>(r)])] = 1.f;
    }
  }
  xent::MatrixView zv() const { return {z.get(), xent::DType::kF32, N, V, V}; }
  xent::MatrixView pv() const { return {p.get(), xent::DType::kF32, N, V, V}; }
  xent::MutableMatrixView gv() { return {g.get(), xent::DType::kF32, N, V, V}; }
  double bytes() const { return 4.0 * static_cast<double>(N) * static_cast<double>(V); }
};

enum Kind { kFwd, kFwdBwd, kSmooth, kSoft, kBce, kCeiling };

void Run(benchmark::State& state, Kind kind) {
  Data d(state.range(0), state.range(1), kind == kSoft || kind == kBce);
  xent::CrossEntropyOptions o;
  o.num_threads = Threads();
  if (kind == kSmooth) o.label_smoothing = 0.1;
  xent::CrossEntropyOutputs outs;
  if (kind != kFwd) outs.grad = d.gv();
  double mult = kind == kFwd ? 1 : 2;
  if (kind == kSoft || kind == kBce) mult = 3;
  for (auto _ : state) {
    switch (kind) {
      case kFwd:
      case kFwdBwd:
      case kSmooth:
        benchmark::DoNotOptimize(xent::cross_entropy_loss(d.zv(), xent::Targets::Index(d.t.data()), o, outs));
        break;
      case kSoft:
        benchmark::DoNotOptimize(xent::cross_entropy_loss(d.zv(), xent::Targets::Soft(d.pv()), o, outs));
        break;
      case kBce: {
        xent::BceOptions bo;
        bo.num_threads = o.num_threads;
        xent::BceOutputs bout;
        bout.grad = d.gv();
        benchmark::DoNotOptimize(xent::binary_cross_entropy_with_logits_loss(d.zv(), d.pv(), bo, bout));
        break;
      }
      case kCeiling:
        benchmark::DoNotOptimize(xent::bench::RowCeiling(d.z.get(), d.g.get(), static_cast<std::size_t>(d.N),
                                                         static_cast<std::size_t>(d.V), o.num_threads));
        break;
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * d.bytes() * mult));
}

void Shapes(benchmark::internal::Benchmark* b) {
  for (auto [n, v] : {std::pair{4096L, 32000L}, {8192L, 50257L}, {2048L, 128256L},
                      {65536L, 1000L}, {1048576L, 10L}, {1L, 262144L}})
    b->Args({n, v});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
void SmallShapes(benchmark::internal::Benchmark* b) {
  for (auto [n, v] : {std::pair{4096L, 32000L}, {65536L, 1000L}, {1048576L, 10L}}) b->Args({n, v});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK_CAPTURE(Run, ceiling, kCeiling)->Apply(Shapes);
BENCHMARK_CAPTURE(Run, fwd, kFwd)->Apply(Shapes);
BENCHMARK_CAPTURE(Run, fwd_bwd, kFwdBwd)->Apply(Shapes);
BENCHMARK_CAPTURE(Run, label_smoothing, kSmooth)->Apply(SmallShapes);
BENCHMARK_CAPTURE(Run, soft_targets, kSoft)->Apply(SmallShapes);
BENCHMARK_CAPTURE(Run, bce_with_logits, kBce)->Apply(SmallShapes);

BENCHMARK_MAIN();
