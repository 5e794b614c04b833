// linear_cross_entropy benchmark: one shape per process, one JSON line out.
//
//   linear_cross_entropy_bench N D V [--algos chunked,chunked_blas,tiled,filter] [--reps R]
//                                    [--no-floor] [--zipf] [--chunk-rows C] [--tile-cols T]
//                                    [--budget-rows NF]
//
// chunked: token-chunked with kAuto products (our AVX-512 kernels where the
// CPU has them); chunked_blas: the same on OpenBLAS; tiled: vocab-tiled;
// filter: vocab-tiled with grad_filter = 2^-12.
// --chunk-rows/--tile-cols fix the block shape (default: from the memory
// budget, 1/112 of 2·N·V floats). --budget-rows NF uses the budget of N = NF
// rows: running N' < NF rows then does the per-chunk work of the full shape
// in N'/NF of the time (used when the shared machine is too busy for full
// runs). CPU seconds (all threads, getrusage) are reported next to wall
// time: under a passive OpenMP wait policy they count work, not waiting, so
// their ratios hold on a busy machine.
//
// For each algorithm it times forward-only (evaluation mode) and forward +
// backward, and measures the peak extra memory, with the inputs, the
// gradients and OpenBLAS's own buffers already resident:
//   * extra_mib: the resident memory the call left behind, Rss of
//     /proc/self/smaps_rollup after it minus before it. smaps walks the page
//     tables, so this is exact to the page, and it is the call's peak heap:
//     the benchmark has glibc serve every block from the heap (no mmap) and
//     never trim it by itself, and trims it (malloc_trim) before each call,
//     so whatever the call allocates and frees stays resident until then.
//     (Until 2026-11-26 this was VmHWM − VmRSS after resetting the high-water
//     mark; Linux 6.x reads those from per-CPU counters without their
//     unflushed batches, up to ~32 pages per CPU: a freshly touched and freed
//     64 KiB heap block read +0. Fine for megabytes, noise against
//     512×256×1000's whole bound of 40 KiB. It is still printed by
//     XENT_RSS_TRACE, as hwm.)
//   * extra_faults_mib: the page faults the call took, on all threads
//     (getrusage), times the page size: an upper bound (two threads touching
//     a new page at once both fault), as long as no transparent huge page is
//     mapped (one fault, 2 MiB; glibc asks for none by default).
//   Neither sees stack pages the warm-up already touched, nor memory the
//   host reclaims during the call (this VM runs DAMON reclaim).
// The compute floor is the same BLAS doing H·Wᵀ, G·W and Gᵀ·H at full size, into
// buffers of its own (the N×V logits among them, resident before the first
// fused call, so not counted in its extra memory), run right after every
// timed fused call: H·Wᵀ after a forward, all three after a forward +
// backward. Timings are the minimum over --reps runs (default 1: the large
// shapes take seconds per product on 2 cores), the floor's over all of its
// runs; run side by side like this, a slow or fast phase of the host (they
// last seconds here and move a 2 ms product by up to 30%) reaches both
// sides of a ratio. XENT_RSS_TRACE=1 prints every run's extra
// memory (warm-up r = -1 included) to stderr: the peak is the maximum over
// the runs, and a run whose input pages the host reclaimed meanwhile (this
// VM runs DAMON reclaim, kdamond) counts their faulting back in.
#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "blas.h"
#include "xent/linear_cross_entropy.h"

namespace {

using Clock = std::chrono::steady_clock;
using xent::LinearCrossEntropyAlgorithm;

double now_s() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

// The value (KiB) of the line starting with `key` in a /proc file, -1 if
// none.
long proc_kib(const char* file, const char* key) {
  std::ifstream f(file);
  std::string line;
  const std::size_t kl = std::strlen(key);
  while (std::getline(f, line))
    if (line.compare(0, kl, key) == 0) return std::atol(line.c_str() + kl);
  return -1;
}
long status_kib(const char* key) { return proc_kib("/proc/self/status", key); }
// Resident memory, exact (smaps walks the page tables), KiB.
long smaps_rss_kib() { return proc_kib("/proc/self/smaps_rollup", "Rss:"); }

bool reset_hwm() {
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  return static_cast<bool>(f);
}

struct Inputs {
  std::int64_t N, D, V;
  std::vector<float> h, w, gh, gw, bias;
  std::vector<std::int64_t> t;
};

// The compute floor's products and their best times (see the top comment).
struct Floor {
  bool on = false;
  std::vector<float> L, gh, gw;  // logits N×V, G·W (N×D), Gᵀ·H (V×D)
  double hwt = 1e30, gh_s = 1e30, gw_s = 1e30, hwt_cpu = 1e30, total_cpu = 1e30;
};

double cpu_s();

// One run of H·Wᵀ (and, with grads, G·W and Gᵀ·H, G being the logits buffer:
// the values do not matter for the time).
void run_floor(const Inputs& in, Floor& f, bool grads) {
  const double c0 = cpu_s();
  double t0 = now_s();
  xent::blas::sgemm(false, true, in.N, in.V, in.D, 1.0f, in.h.data(), in.D, in.w.data(), in.D, 0.0f,
                    f.L.data(), in.V);
  f.hwt = std::min(f.hwt, now_s() - t0);
  f.hwt_cpu = std::min(f.hwt_cpu, cpu_s() - c0);
  if (!grads) return;
  t0 = now_s();
  xent::blas::sgemm(false, false, in.N, in.D, in.V, 1.0f, f.L.data(), in.V, in.w.data(), in.D, 0.0f,
                    f.gh.data(), in.D);
  f.gh_s = std::min(f.gh_s, now_s() - t0);
  t0 = now_s();
  xent::blas::sgemm(true, false, in.V, in.D, in.N, 1.0f, f.L.data(), in.V, in.h.data(), in.D, 0.0f,
                    f.gw.data(), in.D);
  f.gw_s = std::min(f.gw_s, now_s() - t0);
  f.total_cpu = std::min(f.total_cpu, cpu_s() - c0);
}

struct Measure {
  double seconds = 1e300, cpu = 1e300;
  double extra_mib = 0, extra_faults_mib = 0;
  xent::LinearCrossEntropyResult res;
};

// The library's default budget (src/linear_cross_entropy.cc): 1/112 of 2·N·V floats.
constexpr double kBudgetShare = 112;
std::int64_t g_chunk_rows = 0, g_tile_cols = 0;  // --chunk-rows / --tile-cols overrides
std::size_t g_budget = 0;  // --budget-rows NF: the buffer budget of the full N = NF

double cpu_s() {  // user + system time of all our threads
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

long page_faults() {  // minor + major faults of all our threads so far
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt + ru.ru_majflt;
}

Measure run(Inputs& in, LinearCrossEntropyAlgorithm algo, double filter, bool grads, int reps,
            xent::LinearCrossEntropyProducts products, Floor& fl) {
  Measure m;
  // r = -1: a warm-up on the first ≤ 256 rows (same V, D, so OpenBLAS touches
  // the same packing buffers): one-time process costs stay out of the
  // per-call numbers.
  for (int r = -1; r < reps; ++r) {
    const std::int64_t rows = r < 0 ? std::min<std::int64_t>(in.N, 256) : in.N;
    xent::LinearCrossEntropyOptions lo;
    lo.algorithm = algo;
    lo.grad_filter = filter;
    lo.products = products;
    lo.chunk_rows = g_chunk_rows;
    // The warm-up uses the full run's budget, so it has the same block shapes.
    lo.max_buffer_bytes = g_budget ? g_budget : static_cast<std::size_t>(2.0 * in.N * in.V * 4 / kBudgetShare);
    lo.tile_cols = g_tile_cols;
    xent::LinearCrossEntropyOutputs out;
    if (grads) {
      out.grad_hidden = {in.gh.data(), xent::DType::kF32, rows, in.D, 0};
      out.grad_weight = {in.gw.data(), xent::DType::kF32, in.V, in.D, 0};
    }
    malloc_trim(0);  // freed pages of earlier runs must not hide this run's
    const bool trace = std::getenv("XENT_RSS_TRACE") != nullptr;
    const bool hwm = trace && reset_hwm();  // (VmHWM: printed only; see extra_mib)
    const long before = hwm ? status_kib("VmRSS:") : 0;
    const long rss0 = smaps_rss_kib();
    const long f0 = page_faults();
    const double t0 = now_s(), c0 = cpu_s();
    const auto res = xent::linear_cross_entropy({in.h.data(), xent::DType::kF32, rows, in.D, 0},
                                       {in.w.data(), xent::DType::kF32, in.V, in.D, 0},
                                       in.bias.empty() ? nullptr : in.bias.data(),
                                       xent::Targets::Index(in.t.data()), lo, out);
    const double dt = now_s() - t0, dc = cpu_s() - c0;
    const long fault_kib = (page_faults() - f0) * (sysconf(_SC_PAGESIZE) / 1024);
    const long left_kib = smaps_rss_kib() - rss0;
    if (trace)
      std::fprintf(stderr, "rss %s r=%d left=%ld KiB hwm=%ld KiB faulted=%ld KiB\n", grads ? "fb" : "fwd", r,
                   left_kib, hwm ? status_kib("VmHWM:") - before : -1, fault_kib);
    if (r < 0) continue;
    if (fl.on) run_floor(in, fl, grads);
    m.res = res;
    m.seconds = std::min(m.seconds, dt);
    m.cpu = std::min(m.cpu, dc);
    m.extra_mib = std::max(m.extra_mib, left_kib / 1024.0);
    m.extra_faults_mib = std::max(m.extra_faults_mib, fault_kib / 1024.0);
  }
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s N D V [--algos chunked,tiled,filter] [--reps R] [--no-floor]\n",
                 argv[0]);
    return 2;
  }
  // Every block from the heap, which only our malloc_trim shrinks (see
  // extra_mib at the top), and one heap for all threads: malloc_trim does
  // not release the top of the other threads' arenas, so an OpenMP thread's
  // blocks would be counted in the warm-up only.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
  mallopt(M_ARENA_MAX, 1);
  Inputs in;
  in.N = std::atoll(argv[1]);
  in.D = std::atoll(argv[2]);
  in.V = std::atoll(argv[3]);
  std::string algos = "chunked,tiled";
  int reps = 1;
  bool floor = true, zipf = false;
  std::int64_t budget_rows = 0;
  for (int i = 4; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--algos" && i + 1 < argc) algos = argv[++i];
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--no-floor") floor = false;
    else if (a == "--zipf") zipf = true;
    else if (a == "--chunk-rows" && i + 1 < argc) g_chunk_rows = std::atoll(argv[++i]);
    else if (a == "--budget-rows" && i + 1 < argc) budget_rows = std::atoll(argv[++i]);
    else if (a == "--tile-cols" && i + 1 < argc) g_tile_cols = std::atoll(argv[++i]);
  }
  if (budget_rows) g_budget = static_cast<std::size_t>(2.0 * budget_rows * in.V * 4 / kBudgetShare);
  // Inputs: logits ≈ N(0, 2²), uniform random targets, no bias. With --zipf
  // logits ≈ N(0, 1) plus a bias −1.5·log(1 + v): a Zipf-like class prior as
  // in a language model, under which most vocabulary tiles carry almost no
  // probability (what gradient filtering exploits; on the flat default it
  // skips nothing). Targets then follow the prior.
  std::mt19937 rng(42);
  // (--zipf: noise σ = 1 and bias −1.5·log(1 + v), a peaked LM-like head.)
  const float sigma = zipf ? 1.0f : 2.0f;
  const float s = std::sqrt(3.0f * sigma / std::sqrt(static_cast<float>(in.D)));
  std::uniform_real_distribution<float> u(-s, s);
  in.h.resize(static_cast<std::size_t>(in.N * in.D));
  in.w.resize(static_cast<std::size_t>(in.V * in.D));
  for (auto& x : in.h) x = u(rng);
  for (auto& x : in.w) x = u(rng);
  in.t.resize(static_cast<std::size_t>(in.N));
  std::uniform_int_distribution<std::int64_t> ut(0, in.V - 1);
  for (auto& x : in.t) x = ut(rng);
  if (zipf) {
    in.bias.resize(static_cast<std::size_t>(in.V));
    for (std::int64_t v = 0; v < in.V; ++v) in.bias[v] = -1.5f * std::log1p(static_cast<float>(v));
    // Targets drawn from the prior too (rank-frequency), as real text would.
    std::vector<double> pw(in.bias.size());
    for (std::size_t v = 0; v < pw.size(); ++v) pw[v] = std::exp(in.bias[v]);
    std::discrete_distribution<std::int64_t> zd(pw.begin(), pw.end());
    for (auto& x : in.t) x = zd(rng);
  }
  in.gh.assign(in.h.size(), 0.0f);  // touched: resident before any measurement
  in.gw.assign(in.w.size(), 0.0f);
  {  // warm OpenBLAS (threads, packing buffers) at a shape like the real ones
    const std::int64_t m = std::min<std::int64_t>(in.N, 512), n = std::min<std::int64_t>(in.V, 2048);
    std::vector<float> c(static_cast<std::size_t>(m * n));
    xent::blas::sgemm(false, true, m, n, in.D, 1.0f, in.h.data(), in.D, in.w.data(), in.D, 0.0f,
                      c.data(), n);
    std::vector<float> c2(static_cast<std::size_t>(n * in.D));
    xent::blas::sgemm(true, false, n, in.D, m, 1.0f, c.data(), n, in.h.data(), in.D, 0.0f,
                      c2.data(), in.D);
  }

  std::ostringstream js;
  js << "{\"budget_rows\":" << budget_rows << ",\"chunk_rows_opt\":" << g_chunk_rows << ",\"N\":" << in.N << ",\"D\":" << in.D << ",\"V\":" << in.V
     << ",\"zipf\":" << (zipf ? "true" : "false") << ",\"threads\":" << omp_get_max_threads() << ",\"logits_mib\":"
     << 2.0 * in.N * in.V * 4 / (1 << 20);
  Floor fl;
  if (floor) {  // allocated and touched before any fused call
    fl.on = true;
    fl.L.assign(static_cast<std::size_t>(in.N * in.V), 0.0f);
    fl.gh.assign(in.h.size(), 0.0f);
    fl.gw.assign(in.w.size(), 0.0f);
  }
  std::stringstream ss(algos);
  // Unfiltered gradients kept only when a filtered run follows (memory!).
  const bool keep_ref = algos.find("filter") != std::string::npos;
  std::vector<float> ref_gh, ref_gw;
  std::string name;
  while (std::getline(ss, name, ',')) {
    LinearCrossEntropyAlgorithm algo = LinearCrossEntropyAlgorithm::kTokenChunked;
    double filter = 0;
    auto products = xent::LinearCrossEntropyProducts::kAuto;
    if (name == "chunked_blas") products = xent::LinearCrossEntropyProducts::kBlas;
    if (name == "tiled") algo = LinearCrossEntropyAlgorithm::kVocabTiled;
    if (name == "filter") {
      algo = LinearCrossEntropyAlgorithm::kVocabTiled;
      filter = 1.0 / 4096;
    }
    const Measure fwd = run(in, algo, filter, false, reps, products, fl);
    const Measure fb = run(in, algo, filter, true, reps, products, fl);
    // What filtering changes: its gradients against the last unfiltered ones,
    // max |difference| / max |unfiltered entry|.
    double dh = -1, dw = -1;
    if (filter > 0 && !ref_gh.empty()) {
      auto rel = [](const std::vector<float>& a, const std::vector<float>& b) {
        double d = 0, m = 0;
        for (std::size_t i = 0; i < a.size(); ++i) {
          d = std::max(d, static_cast<double>(std::fabs(a[i] - b[i])));
          m = std::max(m, static_cast<double>(std::fabs(b[i])));
        }
        return m > 0 ? d / m : d;
      };
      dh = rel(in.gh, ref_gh);
      dw = rel(in.gw, ref_gw);
    } else if (filter == 0 && keep_ref) {
      ref_gh = in.gh;
      ref_gw = in.gw;
    }
    js << ",\"" << name << "\":{\"fwd_cpu\":" << fwd.cpu << ",\"fwdbwd_cpu\":" << fb.cpu
       << ",\"fwd_s\":" << fwd.seconds << ",\"fwd_extra_mib\":" << fwd.extra_mib
       << ",\"fwd_extra_faults_mib\":" << fwd.extra_faults_mib
       << ",\"fwdbwd_s\":" << fb.seconds << ",\"extra_mib\":" << fb.extra_mib
       << ",\"extra_faults_mib\":" << fb.extra_faults_mib
       << ",\"loss\":" << fb.res.loss << ",\"chunk_rows\":" << fb.res.chunk_rows
       << ",\"tile_cols\":" << fb.res.tile_cols << ",\"own_products\":" << (fb.res.own_products ? "true" : "false")
       << ",\"buffer_mib\":"
       << fb.res.buffer_bytes / 1048576.0 << ",\"blocks\":" << fb.res.blocks
       << ",\"blocks_skipped\":" << fb.res.blocks_skipped << ",\"filter_rel_diff_gh\":" << dh
       << ",\"filter_rel_diff_gw\":" << dw << "}";
    std::fprintf(stderr, "%s: fwd %.3f s, fwd+bwd %.3f s, extra %.1f MiB\n", name.c_str(),
                 fwd.seconds, fb.seconds, fb.extra_mib);
  }
  if (floor) {
    if (fl.gh_s > 1e29) run_floor(in, fl, true);  // no fused algorithm ran
    const double t_fwd = fl.hwt, t_gh = fl.gh_s, t_gw = fl.gw_s, c_fwd = fl.hwt_cpu, c_all = fl.total_cpu;
    const double gflop = 2.0 * in.N * in.D * in.V / 1e9;
    js << ",\"floor\":{\"hwt_cpu\":" << c_fwd << ",\"total_cpu\":" << c_all << ",\"hwt_s\":" << t_fwd << ",\"gw_s\":" << t_gh << ",\"gth_s\":" << t_gw
       << ",\"total_s\":" << t_fwd + t_gh + t_gw << ",\"gflops_hwt\":" << gflop / t_fwd << "}";
    std::fprintf(stderr, "floor: H·Wᵀ %.3f s, G·W %.3f s, Gᵀ·H %.3f s (%.0f GFLOP/s)\n", t_fwd,
                 t_gh, t_gw, gflop / t_fwd);
  }
  js << "}";
  std::printf("%s\n", js.str().c_str());
  return 0;
}
