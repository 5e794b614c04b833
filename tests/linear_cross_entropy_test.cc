// linear_cross_entropy against the unfused path computed without rounding:
// logits = H·Wᵀ + b in long double from the stored inputs, then the
// long-double batch-loss reference (src/reference/loss_reference.h), then
// grad_H = G·W, grad_W = Gᵀ·H, grad_b = Σ_n G in long double.
//
// Tolerances. The fused path rounds in three places: the float32 GEMMs (a
// dot product of K terms has error ≤ K·u·Σ|terms|, u = 2^-24; observed errors
// are ~√K·u·Σ|terms|), the float32 softmax kernels (a few ulp per entry) and
// the float32 storage of G. With |logits| ≲ 10 and K ≤ 128 these give
// relative errors ~1e-6 on the loss and ~1e-6 of the largest entry on the
// gradients. We allow 2e-5 relative on the loss and 1e-4 of the largest entry
// of each gradient: 20–100× above what rounding produces, and 10–1000× below
// what any missing or mis-scaled term would produce (the smallest term the
// options add, ε/V·w at V ≤ 101, is ≥ 1e-3 of the largest entry).
#include "xent/linear_cross_entropy.h"

#include <gtest/gtest.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "cpu/chunk_gemm.h"
#include "cpu/convert.h"
#include "reference/loss_reference.h"
#include "xent/error.h"

namespace xent {
namespace {

using reference::Real;
using reference::Row;
using Algo = LinearCrossEntropyAlgorithm;
using Products = LinearCrossEntropyProducts;

constexpr double kLossTol = 2e-5;
constexpr double kGradTol = 1e-4;

// One problem: inputs stored as float32 or bfloat16 (the reference reads the
// stored values, so the rounding of the inputs is not an error).
struct Problem {
  std::int64_t N = 0, D = 0, V = 0, hstride = 0;
  DType dtype = DType::kF32;
  std::vector<float> h, w, bias;            // float32 storage
  std::vector<std::uint16_t> hb, wb;        // bfloat16 storage
  std::vector<std::int64_t> targets;
  bool has_bias = false;
  bool hidden_f32 = false;  // bfloat16 problem, hidden passed as float32 (same values)

  MatrixView hidden() const {
    if (dtype == DType::kBF16 && !hidden_f32) return {hb.data(), DType::kBF16, N, D, hstride};
    return {h.data(), DType::kF32, N, D, hstride};
  }
  MatrixView weight() const {
    if (dtype == DType::kBF16) return {wb.data(), DType::kBF16, V, D, D};
    return {w.data(), DType::kF32, V, D, D};
  }
  Real H(std::int64_t n, std::int64_t k) const { return h[n * hstride + k]; }
  Real W(std::int64_t v, std::int64_t k) const { return w[v * D + k]; }
};

// Logits ~ N(0, sigma²): entries uniform in ±s with s² = 3·sigma/√D.
Problem make_problem(std::int64_t N, std::int64_t D, std::int64_t V, bool bias, DType dtype,
                     double sigma = 2.0, unsigned seed = 1, int n_ignored = 0) {
  Problem p;
  p.N = N;
  p.D = D;
  p.V = V;
  p.hstride = D + 3;  // strided rows: padding is NaN, reading it would show
  p.dtype = dtype;
  p.has_bias = bias;
  std::mt19937 rng(seed);
  const double s = std::sqrt(3.0 * sigma / std::sqrt(static_cast<double>(D)));
  std::uniform_real_distribution<float> u(static_cast<float>(-s), static_cast<float>(s));
  auto round = [&](float x) {
    return dtype == DType::kBF16 ? cpu::bf16_to_float(cpu::float_to_bf16(x)) : x;
  };
  p.h.assign(static_cast<std::size_t>(N * p.hstride), std::nanf(""));
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t k = 0; k < D; ++k) p.h[n * p.hstride + k] = round(u(rng));
  p.w.resize(static_cast<std::size_t>(V * D));
  for (auto& x : p.w) x = round(u(rng));
  if (dtype == DType::kBF16) {
    p.hb.resize(p.h.size());
    p.wb.resize(p.w.size());
    for (std::size_t i = 0; i < p.h.size(); ++i) p.hb[i] = cpu::float_to_bf16(p.h[i]);
    for (std::size_t i = 0; i < p.w.size(); ++i) p.wb[i] = cpu::float_to_bf16(p.w[i]);
  }
  if (bias) {
    std::uniform_real_distribution<float> ub(-1.0f, 1.0f);
    p.bias.resize(static_cast<std::size_t>(V));
    for (auto& x : p.bias) x = ub(rng);
  }
  std::uniform_int_distribution<std::int64_t> ut(0, V - 1);
  p.targets.resize(static_cast<std::size_t>(N));
  for (auto& t : p.targets) t = ut(rng);
  for (int i = 0; i < n_ignored && i < N; ++i) p.targets[(i * 7 + 3) % N] = -100;
  return p;
}

struct Expected {
  reference::CeRefResult ce;
  std::vector<Row> gh, gw;  // N×D, V×D
  Row gb;                   // V
};

reference::CeRefOptions ref_options(const CrossEntropyOptions& o, std::int64_t V) {
  reference::CeRefOptions r;
  r.reduction = o.reduction == Reduction::kNone  ? reference::RefReduction::kNone
                : o.reduction == Reduction::kSum ? reference::RefReduction::kSum
                                                 : reference::RefReduction::kMean;
  r.ignore_index = o.ignore_index;
  if (o.class_weight) r.weight.assign(o.class_weight, o.class_weight + V);
  r.epsilon = o.label_smoothing;
  r.off_target = o.smoothing == Smoothing::kOffTarget;
  r.temperature = o.temperature;
  r.softcap = o.softcap;
  r.z_loss = o.z_loss;
  r.gamma = o.focal_gamma;
  r.empty_nan = o.empty_mean == EmptyMean::kNaN;
  r.grad_scale = o.grad_scale;
  return r;
}

Expected unfused(const Problem& p, const CrossEntropyOptions& o) {
  std::vector<Row> logits(static_cast<std::size_t>(p.N), Row(static_cast<std::size_t>(p.V)));
  for (std::int64_t n = 0; n < p.N; ++n)
    for (std::int64_t v = 0; v < p.V; ++v) {
      Real acc = p.has_bias ? static_cast<Real>(p.bias[v]) : 0;
      for (std::int64_t k = 0; k < p.D; ++k) acc += p.H(n, k) * p.W(v, k);
      logits[n][v] = acc;
    }
  Expected e;
  e.ce = reference::cross_entropy_batch(logits, p.targets, {}, ref_options(o, p.V));
  e.gh.assign(static_cast<std::size_t>(p.N), Row(static_cast<std::size_t>(p.D), 0));
  e.gw.assign(static_cast<std::size_t>(p.V), Row(static_cast<std::size_t>(p.D), 0));
  e.gb.assign(static_cast<std::size_t>(p.V), 0);
  for (std::int64_t n = 0; n < p.N; ++n)
    for (std::int64_t v = 0; v < p.V; ++v) {
      const Real g = e.ce.grad[n][v];
      e.gb[v] += g;
      for (std::int64_t k = 0; k < p.D; ++k) {
        e.gh[n][k] += g * p.W(v, k);
        e.gw[v][k] += g * p.H(n, k);
      }
    }
  return e;
}

struct Got {
  LinearCrossEntropyResult res;
  std::vector<float> row_loss, row_lse, gh, gw, gb;
  std::int64_t ghs = 0;
};

Got run(const Problem& p, const LinearCrossEntropyOptions& lo, bool grads = true) {
  Got g;
  g.row_loss.assign(static_cast<std::size_t>(p.N), std::nanf(""));
  g.row_lse.assign(static_cast<std::size_t>(p.N), std::nanf(""));
  LinearCrossEntropyOutputs out;
  out.row_loss = g.row_loss.data();
  out.row_lse = g.row_lse.data();
  if (grads) {
    g.ghs = p.D + 1;  // strided gradient rows
    g.gh.assign(static_cast<std::size_t>(std::max<std::int64_t>(1, p.N * g.ghs)), std::nanf(""));
    g.gw.assign(static_cast<std::size_t>(p.V * p.D), std::nanf(""));
    g.gb.assign(static_cast<std::size_t>(p.V), std::nanf(""));
    out.grad_hidden = {g.gh.data(), DType::kF32, p.N, p.D, g.ghs};
    out.grad_weight = {g.gw.data(), DType::kF32, p.V, p.D, 0};
    out.grad_bias = p.has_bias ? g.gb.data() : nullptr;
  }
  g.res = linear_cross_entropy(p.hidden(), p.weight(), p.has_bias ? p.bias.data() : nullptr,
                               Targets::Index(p.targets.data()), lo, out);
  return g;
}

double max_abs(const std::vector<Row>& m) {
  double x = 0;
  for (const auto& r : m)
    for (Real v : r) x = std::max(x, static_cast<double>(std::fabs(v)));
  return x;
}

// Compares everything; `grad_slack` widens the gradient tolerance (filtering).
void check(const Problem& p, const CrossEntropyOptions& o, const Got& g, bool grads,
           const std::string& what, double grad_slack = 0) {
  SCOPED_TRACE(what);
  const Expected e = unfused(p, o);
  const double loss = static_cast<double>(e.ce.loss);
  if (std::isnan(loss)) {
    EXPECT_TRUE(std::isnan(g.res.loss));
  } else {
    EXPECT_NEAR(g.res.loss, loss, kLossTol * std::max(1.0, std::fabs(loss)));
  }
  const double zl = static_cast<double>(e.ce.z_loss);
  if (std::isnan(zl)) {
    EXPECT_TRUE(std::isnan(g.res.z_loss));
  } else {
    EXPECT_NEAR(g.res.z_loss, zl, kLossTol * std::max(1.0, std::fabs(zl)) + 1e-12);
  }
  EXPECT_EQ(g.res.count, e.ce.count);
  for (std::int64_t n = 0; n < p.N; ++n) {
    const double rl = static_cast<double>(e.ce.row_loss[n]);
    const double rz = static_cast<double>(e.ce.row_lse[n]);
    ASSERT_NEAR(g.row_loss[n], rl, kLossTol * std::max(1.0, std::fabs(rl))) << "row " << n;
    ASSERT_NEAR(g.row_lse[n], rz, kLossTol * std::max(1.0, std::fabs(rz))) << "row " << n;
  }
  if (!grads) return;
  const double tol_h = (kGradTol + grad_slack) * std::max(max_abs(e.gh), 1e-30);
  const double tol_w = (kGradTol + grad_slack) * std::max(max_abs(e.gw), 1e-30);
  for (std::int64_t n = 0; n < p.N; ++n)
    for (std::int64_t k = 0; k < p.D; ++k)
      ASSERT_NEAR(g.gh[n * g.ghs + k], static_cast<double>(e.gh[n][k]), tol_h)
          << "grad_hidden[" << n << "][" << k << "]";
  for (std::int64_t v = 0; v < p.V; ++v)
    for (std::int64_t k = 0; k < p.D; ++k)
      ASSERT_NEAR(g.gw[v * p.D + k], static_cast<double>(e.gw[v][k]), tol_w)
          << "grad_weight[" << v << "][" << k << "]";
  if (p.has_bias) {
    double mb = 0;
    for (Real v : e.gb) mb = std::max(mb, static_cast<double>(std::fabs(v)));
    for (std::int64_t v = 0; v < p.V; ++v)
      ASSERT_NEAR(g.gb[v], static_cast<double>(e.gb[v]), (kGradTol + grad_slack) * std::max(mb, 1e-30))
          << "grad_bias[" << v << "]";
  }
}

// Block shapes that divide neither N = 37 nor V = 101.
LinearCrossEntropyOptions with_algo(Algo a, const CrossEntropyOptions& o, Products products = Products::kAuto) {
  LinearCrossEntropyOptions lo;
  lo.loss = o;
  lo.algorithm = a;
  lo.products = products;
  lo.chunk_rows = a == Algo::kTokenChunked ? 8 : 10;
  lo.tile_cols = a == Algo::kVocabTiled ? 16 : 0;
  return lo;
}

struct Case {
  std::string name;
  CrossEntropyOptions o;
  int n_ignored = 0;
  bool weights = false;
};

std::vector<Case> cases() {
  std::vector<Case> cs;
  auto add = [&](std::string name, auto f, int ign = 0, bool w = false) {
    Case c;
    c.name = std::move(name);
    f(c.o);
    c.n_ignored = ign;
    c.weights = w;
    cs.push_back(c);
  };
  add("mean", [](CrossEntropyOptions&) {});
  add("sum", [](CrossEntropyOptions& o) { o.reduction = Reduction::kSum; });
  add("none", [](CrossEntropyOptions& o) { o.reduction = Reduction::kNone; });
  add("ignore_index mean", [](CrossEntropyOptions&) {}, 5);
  add("ignore_index none", [](CrossEntropyOptions& o) { o.reduction = Reduction::kNone; }, 5);
  // ignore_index = a valid class (set to targets[5] below): it stays in the
  // softmax denominator, only its rows are dropped (PyTorch).
  add("custom ignore_index", [](CrossEntropyOptions&) {});
  add("class weights mean", [](CrossEntropyOptions&) {}, 4, true);
  add("smoothing uniform", [](CrossEntropyOptions& o) { o.label_smoothing = 0.1; }, 2);
  add("smoothing off-target + weights", [](CrossEntropyOptions& o) {
    o.label_smoothing = 0.2;
    o.smoothing = Smoothing::kOffTarget;
  }, 2, true);
  add("z-loss", [](CrossEntropyOptions& o) { o.z_loss = 1e-2; }, 3);
  add("z-loss + weights mean", [](CrossEntropyOptions& o) { o.z_loss = 1e-2; }, 3, true);
  add("z-loss sum", [](CrossEntropyOptions& o) {
    o.z_loss = 1e-2;
    o.reduction = Reduction::kSum;
  });
  add("softcap", [](CrossEntropyOptions& o) { o.softcap = 3.0; });
  add("temperature", [](CrossEntropyOptions& o) { o.temperature = 0.7; });
  add("softcap + temperature + smoothing + z", [](CrossEntropyOptions& o) {
    o.softcap = 4.0;
    o.temperature = 1.5;
    o.label_smoothing = 0.05;
    o.z_loss = 1e-3;
  }, 2, true);
  add("grad_scale", [](CrossEntropyOptions& o) { o.grad_scale = 2.5; });
  return cs;
}

std::vector<float> class_weights(std::int64_t V) {
  std::vector<float> w(static_cast<std::size_t>(V));
  for (std::int64_t c = 0; c < V; ++c) w[c] = 0.25f + static_cast<float>((c * 37) % 11) / 8.0f;
  return w;
}

// Token-chunked on the AVX-512 product kernels (src/cpu/chunk_gemm.cc;
// OpenBLAS where the CPU lacks them) and on OpenBLAS, and vocab-tiled.
struct Variant {
  Algo algo;
  Products products;
};
class LinearCe : public ::testing::TestWithParam<Variant> {};

TEST_P(LinearCe, EveryOptionWithAndWithoutBias) {
  const Algo algo = GetParam().algo;
  const Products products = GetParam().products;
  for (bool bias : {false, true}) {
    for (const Case& c : cases()) {
      const Problem p = make_problem(37, 24, 101, bias, DType::kF32, 2.0, 7, c.n_ignored);
      const auto w = class_weights(p.V);
      CrossEntropyOptions o = c.o;
      if (c.weights) o.class_weight = w.data();
      if (c.name == "custom ignore_index") o.ignore_index = p.targets[5];
      const Got g = run(p, with_algo(algo, o, products));
      EXPECT_EQ(g.res.algorithm, algo);
      check(p, o, g, true, c.name + (bias ? " (bias)" : " (no bias)"));
    }
  }
}

TEST_P(LinearCe, Bfloat16Inputs) {
  const Algo algo = GetParam().algo;
  const Products products = GetParam().products;
  for (const Case& c : {cases()[0], cases()[7], cases()[13]}) {
    Problem p = make_problem(37, 24, 101, true, DType::kBF16, 2.0, 11, c.n_ignored);
    // Both bfloat16, and a float32 hidden with a bfloat16 weight; the default
    // budget converts the weight in sub-tiles, 1 MiB converts it whole (a
    // small chunk must convert it, not read it in place as float32).
    for (bool hidden_f32 : {false, true}) {
      p.hidden_f32 = hidden_f32;
      for (std::size_t budget : {std::size_t{0}, std::size_t{1} << 20}) {
        LinearCrossEntropyOptions lo = with_algo(algo, c.o, products);
        lo.max_buffer_bytes = budget;
        const Got g = run(p, lo);
        check(p, c.o, g, true, "bf16 " + c.name + (hidden_f32 ? ", f32 hidden" : "") +
                                   (budget ? ", 1 MiB budget" : ""));
      }
    }
  }
}

TEST_P(LinearCe, EvaluationModeDoesNoBackwardWork) {
  const Algo algo = GetParam().algo;
  const Products products = GetParam().products;
  const Problem p = make_problem(37, 24, 101, true, DType::kF32, 2.0, 3, 4);
  CrossEntropyOptions o;
  o.label_smoothing = 0.1;
  const Got g = run(p, with_algo(algo, o, products), /*grads=*/false);
  check(p, o, g, false, "eval");
  EXPECT_EQ(g.res.blocks, 0);  // pass 2 (vocab-tiled) never ran
}

TEST_P(LinearCe, AllRowsIgnored) {
  const Algo algo = GetParam().algo;
  const Products products = GetParam().products;
  for (EmptyMean em : {EmptyMean::kZero, EmptyMean::kNaN}) {
    const Problem p = make_problem(9, 8, 13, true, DType::kF32, 2.0, 5, 9);
    CrossEntropyOptions o;
    o.empty_mean = em;
    o.z_loss = 1e-3;
    const Got g = run(p, with_algo(algo, o, products));
    check(p, o, g, true, em == EmptyMean::kZero ? "empty zero" : "empty nan");
    for (std::int64_t n = 0; n < p.N; ++n)
      for (std::int64_t k = 0; k < p.D; ++k) EXPECT_EQ(g.gh[n * g.ghs + k], 0.0f);
  }
}

TEST_P(LinearCe, DefaultBlocksAndOddShapes) {
  const Algo algo = GetParam().algo;
  const Products products = GetParam().products;
  // Default block shapes from the memory budget, and shapes with one row,
  // one class, one column.
  for (auto [N, D, V] : {std::tuple{64, 16, 1000}, {1, 5, 7}, {6, 1, 9}, {5, 4, 1}}) {
    const Problem p = make_problem(N, D, V, true, DType::kF32, 2.0, 13);
    LinearCrossEntropyOptions lo;
    lo.algorithm = algo;
    lo.products = products;
    const Got g = run(p, lo);
    check(p, lo.loss, g, true, "N=" + std::to_string(N) + " D=" + std::to_string(D) +
                                   " V=" + std::to_string(V));
    if (N * V >= 64000) {  // the budget: 1/112 of the 2·N·V floats
      EXPECT_LE(g.res.buffer_bytes, static_cast<std::size_t>(2 * N * V * 4 / 112));
    }
  }
}

TEST_P(LinearCe, SmallProductsSplitAcrossThreads) {
  // Products between 1 and 32 Mflop run as one single-threaded OpenBLAS
  // call per thread of ours, C cut into blocks of rows or of columns
  // (src/blas.h): blocks of these sizes make every product of both
  // algorithms take that path (column cuts for H·Wᵀ and G·W, row cuts for
  // Gᵀ·H), with 2 and 3 threads (uneven cuts).
  const Algo algo = GetParam().algo;
  const Products products = GetParam().products;
  const int saved = omp_get_max_threads();
  for (int threads : {2, 3}) {
    omp_set_num_threads(threads);
    const Problem p = make_problem(96, 80, 701, true, DType::kF32, 2.0, 17, 3);
    LinearCrossEntropyOptions lo;
    lo.algorithm = algo;
    lo.products = products;
    lo.chunk_rows = 48;
    lo.tile_cols = algo == Algo::kVocabTiled ? 350 : 0;
    lo.loss.label_smoothing = 0.1;
    const Got g = run(p, lo);
    check(p, lo.loss, g, true, "threads=" + std::to_string(threads));
  }
  omp_set_num_threads(saved);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, LinearCe,
                         ::testing::Values(Variant{Algo::kTokenChunked, Products::kAuto},
                                           Variant{Algo::kTokenChunked, Products::kBlas},
                                           Variant{Algo::kVocabTiled, Products::kAuto}),
                         [](const auto& info) {
                           if (info.param.algo == Algo::kVocabTiled) return std::string("VocabTiled");
                           return std::string(info.param.products == Products::kBlas ? "TokenChunkedBlas"
                                                                                     : "TokenChunked");
                         });

// The AVX-512 product kernels at shapes that cut every one of their blocks:
// chunks of 70 rows (a 64-row block of the logits kernel and a 6-row one;
// 6-row groups of grad_hidden with a 4-row tail) and a last chunk of 10;
// D = 150 (64-column blocks with a masked 22-column tail; every row of H is
// strided); V = 131 (6-class groups with a 5-class tail). Against the
// long-double reference, and the same bits with 1, 2 and 3 threads (every
// output element is one FMA sequence whose order does not depend on the
// split). Also a bfloat16 weight converted in vocabulary sub-tiles (the
// products then run per sub-tile and accumulate).
//
// Also chunks of 7 rows (below 16: dot-product logits; in float32 all the
// chunks run in one parallel region, each chunk's loss in two halves of
// rows), with a last chunk of 3.
TEST(LinearCeChunked, OwnProductKernelsOddShapesAndThreads) {
  if (!cpu::chunk_gemm_supported()) GTEST_SKIP() << "no AVX-512F: the chunked products use OpenBLAS";
  const int saved = omp_get_max_threads();
  for (std::int64_t chunk : {70, 7})
  for (DType dt : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE("chunk_rows=" + std::to_string(chunk));
    const Problem p = make_problem(150, 150, 131, true, dt, 2.0, 29, 7);
    CrossEntropyOptions o;
    o.label_smoothing = 0.1;
    o.z_loss = 1e-3;
    LinearCrossEntropyOptions lo = with_algo(Algo::kTokenChunked, o);
    lo.chunk_rows = chunk;
    // bf16: a small budget makes the weight convert in sub-tiles of ≤ budget/16/D rows.
    if (dt == DType::kBF16) lo.max_buffer_bytes = 16 * 150 * 40;
    std::vector<Got> runs;
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      runs.push_back(run(p, lo));
      EXPECT_TRUE(runs.back().res.own_products);
      EXPECT_EQ(runs.back().res.chunk_rows, chunk);
    }
    omp_set_num_threads(saved);
    check(p, o, runs[0], true, dt == DType::kF32 ? "own kernels f32" : "own kernels bf16");
    for (std::size_t i = 1; i < runs.size(); ++i) {
      EXPECT_EQ(runs[i].res.loss, runs[0].res.loss);
      // Bitwise (grad_hidden's row padding is NaN, which == would not match).
      auto same_bits = [](const std::vector<float>& x, const std::vector<float>& y) {
        return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
      };
      EXPECT_TRUE(same_bits(runs[i].gh, runs[0].gh)) << "grad_hidden differs with " << i + 1 << " threads";
      EXPECT_TRUE(same_bits(runs[i].gw, runs[0].gw)) << "grad_weight differs with " << i + 1 << " threads";
      EXPECT_TRUE(same_bits(runs[i].gb, runs[0].gb)) << "grad_bias differs with " << i + 1 << " threads";
      EXPECT_EQ(runs[i].row_lse, runs[0].row_lse);
    }
  }
}

// 64-byte aligned floats, as the chunk kernels' scratch must be.
std::unique_ptr<float[], void (*)(float*)> aligned_floats(std::size_t n) {
  return {static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t{64})),
          [](float* q) { ::operator delete[](q, std::align_val_t{64}); }};
}

// grad_hidden's transposed form (D ≥ 3072) gives the same bits for any
// thread count, accumulating or not.
TEST(LinearCeChunked, OwnGradHiddenTransposedIsDeterministic) {
  if (!cpu::chunk_gemm_supported()) GTEST_SKIP() << "no AVX-512F";
  const std::int64_t c = 70, D = 4099, V = 600;
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> G(static_cast<std::size_t>(c * V)), W(static_cast<std::size_t>(V * D));
  for (auto* m : {&G, &W})
    for (auto& x : *m) x = u(rng);
  const auto scratch = aligned_floats(cpu::chunk_logits_scratch(c, D));
  float* ht = scratch.get();
  for (bool acc : {false, true}) {
    std::vector<std::vector<float>> out;
    for (int threads : {1, 2, 3}) {
      std::vector<float> gH(static_cast<std::size_t>(c * D), 0.125f);
      cpu::chunk_grad_hidden(c, V, D, G.data(), V, W.data(), D, gH.data(), D, acc, ht, threads);
      out.push_back(gH);
    }
    for (std::size_t i = 1; i < out.size(); ++i)
      EXPECT_EQ(std::memcmp(out[i].data(), out[0].data(), out[0].size() * sizeof(float)), 0) << acc << " " << i;
  }
}

// The products on their own, against long double, at shapes no chunk of the
// tests above reaches: one row, one column of d, one class, and a row block
// of 16·3 + 1 rows; gradient products accumulating into non-zero outputs.
TEST(LinearCeChunked, OwnProductKernelsAgainstLongDouble) {
  if (!cpu::chunk_gemm_supported()) GTEST_SKIP() << "no AVX-512F";
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  // D ≥ 3072 takes grad_hidden's transposed form (70 rows: a 64-row block and a 6-row one;
  // D = 4099: a 1-column tail of the 6-column groups; V = 300: a 44-class tail of the
  // 256-class passes).
  for (auto [c, D, V] : {std::tuple<std::int64_t, std::int64_t, std::int64_t>{1, 1, 1}, {49, 17, 7},
                         {3, 300, 13}, {130, 65, 6}, {16, 64, 64}, {70, 4099, 300}, {5, 4096, 3},
                         // Small chunks (dot-product logits in 4-row groups of 4 classes, the
                         // remainders in groups of 1–3 rows; grad_hidden in 4-row blocks).
                         {8, 300, 37}, {6, 33, 20}, {13, 17, 50}, {15, 256, 1000}}) {
    SCOPED_TRACE("c=" + std::to_string(c) + " D=" + std::to_string(D) + " V=" + std::to_string(V));
    const std::int64_t ldh = D + 5, ldw = D + 2, ldz = V + 3;
    std::vector<float> H(static_cast<std::size_t>(c * ldh)), W(static_cast<std::size_t>(V * ldw));
    std::vector<float> G(static_cast<std::size_t>(c * ldz));
    for (auto* m : {&H, &W, &G})
      for (auto& x : *m) x = u(rng);
    std::vector<float> Z(static_cast<std::size_t>(c * ldz), 7.0f);
    const auto scratch = aligned_floats(cpu::chunk_logits_scratch(c, D));
    float* ht = scratch.get();
    cpu::chunk_logits(c, V, D, H.data(), ldh, W.data(), ldw, Z.data(), ldz, ht, 2);
    std::vector<float> gH(static_cast<std::size_t>(c * ldh), 0.5f), gW(static_cast<std::size_t>(V * ldw), 0.25f);
    cpu::chunk_grad_hidden(c, V, D, G.data(), ldz, W.data(), ldw, gH.data(), ldh, /*accumulate=*/true, ht, 2);
    cpu::chunk_grad_weight(c, V, D, G.data(), ldz, H.data(), ldh, gW.data(), ldw, 2);
    // Each entry is a dot product of K terms of magnitude ≤ 1: error ≤ K·2^-24·K.
    for (std::int64_t n = 0; n < c; ++n)
      for (std::int64_t v = 0; v < V; ++v) {
        long double z = 0;
        for (std::int64_t d = 0; d < D; ++d) z += static_cast<long double>(H[n * ldh + d]) * W[v * ldw + d];
        ASSERT_NEAR(Z[n * ldz + v], static_cast<double>(z), 1e-6 * D) << n << "," << v;
      }
    for (std::int64_t n = 0; n < c; ++n)
      for (std::int64_t d = 0; d < D; ++d) {
        long double s = 0.5L;
        for (std::int64_t v = 0; v < V; ++v) s += static_cast<long double>(G[n * ldz + v]) * W[v * ldw + d];
        ASSERT_NEAR(gH[n * ldh + d], static_cast<double>(s), 1e-6 * V) << n << "," << d;
      }
    for (std::int64_t v = 0; v < V; ++v)
      for (std::int64_t d = 0; d < D; ++d) {
        long double s = 0.25L;
        for (std::int64_t n = 0; n < c; ++n) s += static_cast<long double>(G[n * ldz + v]) * H[n * ldh + d];
        ASSERT_NEAR(gW[v * ldw + d], static_cast<double>(s), 1e-6 * c) << v << "," << d;
      }
    // Nothing written outside the matrices' columns (the strided padding).
    for (std::int64_t n = 0; n < c; ++n)
      for (std::int64_t v = V; v < ldz; ++v) ASSERT_EQ(Z[n * ldz + v], 7.0f);
    for (std::int64_t n = 0; n < c; ++n)
      for (std::int64_t d = D; d < ldh; ++d) ASSERT_EQ(gH[n * ldh + d], 0.5f);
    for (std::int64_t v = 0; v < V; ++v)
      for (std::int64_t d = D; d < ldw; ++d) ASSERT_EQ(gW[v * ldw + d], 0.25f);
  }
}

TEST(LinearCeChunked, FocalAndAccuracyPassThrough) {
  const Problem p = make_problem(37, 24, 101, true, DType::kF32, 3.0, 17, 3);
  CrossEntropyOptions o;
  o.focal_gamma = 2.0;
  o.compute_accuracy = true;
  const Got g = run(p, with_algo(Algo::kTokenChunked, o));
  check(p, o, g, true, "focal");
  // Accuracy: argmax of the long-double logits (ties have probability ~0).
  const Expected e = unfused(p, o);
  EXPECT_EQ(g.res.correct, e.ce.correct);
  // kAuto chooses token-chunked for focal.
  LinearCrossEntropyOptions lo;
  lo.loss = o;
  EXPECT_EQ(run(p, lo).res.algorithm, Algo::kTokenChunked);
}

TEST(LinearCeTiled, AccuracyCount) {
  const Problem p = make_problem(37, 24, 101, true, DType::kF32, 3.0, 19, 3);
  CrossEntropyOptions o;
  o.compute_accuracy = true;
  const Got g = run(p, with_algo(Algo::kVocabTiled, o));
  const Expected e = unfused(p, o);
  EXPECT_EQ(g.res.correct, e.ce.correct);
  EXPECT_GT(e.ce.correct, 0);
}

// Gradient filtering: logits N(0, 2²) plus a bias falling like a frequency
// prior (−0.05·v), over V = 512 with tiles of 32: the tail tiles are skipped,
// as the rare-word tiles of a language model are.
// Skipped blocks drop only entries with q < thr, each contributing |α·q| ≤
// s_ce·thr·(w_y...) to G; the bound on the gradient change is then
// V·thr·max|W| per entry of grad_hidden (and N·thr·max|H| for grad_weight),
// which we allow on top of the rounding tolerance. The loss is untouched.
TEST(LinearCeTiled, GradientFilteringSkipsBlocksWithinItsBound) {
  Problem p = make_problem(64, 16, 512, true, DType::kF32, 2.0, 23, 2);
  for (std::int64_t v = 0; v < p.V; ++v) p.bias[v] = -0.05f * static_cast<float>(v);
  for (double thr : {1.0 / 4096, 1e-6}) {
    CrossEntropyOptions o;
    o.reduction = Reduction::kSum;  // s_ce = 1: the bound below is in absolute terms
    o.label_smoothing = 0.0;
    LinearCrossEntropyOptions lo = with_algo(Algo::kVocabTiled, o);
    lo.chunk_rows = 4;
    lo.tile_cols = 32;
    lo.grad_filter = thr;
    const Got g = run(p, lo);
    EXPECT_GT(g.res.blocks_skipped, 0) << thr;
    EXPECT_LT(g.res.blocks_skipped, g.res.blocks) << thr;
    // Each dropped q < thr; a row has ≤ V of them: |Δ grad_hidden| ≤ V·thr·max|W|,
    // relative to the largest reference entry (~0.5–1) this is the slack.
    const Expected e = unfused(p, o);
    double mw = 0;
    for (float x : p.w) mw = std::max(mw, static_cast<double>(std::fabs(x)));
    const double slack = static_cast<double>(p.V) * thr * mw * std::max(1.0, 1.0 * p.N / p.V) /
                         std::min(max_abs(e.gh), max_abs(e.gw));
    check(p, o, g, true, "filter " + std::to_string(thr), slack);
  }
  // kAuto with a filter picks the tiled design.
  LinearCrossEntropyOptions lo;
  lo.grad_filter = 1.0 / 4096;
  EXPECT_EQ(run(p, lo).res.algorithm, Algo::kVocabTiled);
}

TEST(LinearCeAuto, ChoiceFollowsTheMeasuredRule) {
  const Problem p = make_problem(100, 8, 50, false, DType::kF32, 2.0, 41);
  {  // On OpenBLAS products.
    LinearCrossEntropyOptions lo;
    lo.products = Products::kBlas;
    // Evaluation: the tiled design (one product).
    EXPECT_EQ(run(p, lo, /*grads=*/false).res.algorithm, Algo::kVocabTiled);
    // Training with the default budget here: chunks of 100·2/112 → 1 row, tiled.
    EXPECT_EQ(run(p, lo).res.algorithm, Algo::kVocabTiled);
    // Training with chunks of ≥ min(128, N) rows: token-chunked.
    lo.chunk_rows = 128;
    const Got g = run(p, lo);
    EXPECT_EQ(g.res.algorithm, Algo::kTokenChunked);
    EXPECT_FALSE(g.res.own_products);
    check(p, lo.loss, g, true, "auto chunked");
  }
  if (!cpu::chunk_gemm_supported()) return;
  {  // On our AVX-512 products: token-chunked from chunks of 4 rows, also for evaluation.
    LinearCrossEntropyOptions lo;
    EXPECT_EQ(run(p, lo).res.algorithm, Algo::kVocabTiled);  // 1-row chunks
    lo.chunk_rows = 16;
    for (bool grads : {false, true}) {
      const Got g = run(p, lo, grads);
      EXPECT_EQ(g.res.algorithm, Algo::kTokenChunked);
      EXPECT_TRUE(g.res.own_products);
      check(p, lo.loss, g, grads, grads ? "own chunked" : "own chunked, evaluation");
    }
    // The default budget of 2048×50 (7314 bytes) holds 16-row chunks and their scratch.
    const Problem q = make_problem(2048, 8, 50, false, DType::kF32, 2.0, 43);
    const Got g = run(q, LinearCrossEntropyOptions{}, /*grads=*/false);
    EXPECT_EQ(g.res.algorithm, Algo::kTokenChunked);
    EXPECT_EQ(g.res.chunk_rows, 16);
    EXPECT_LE(g.res.buffer_bytes, static_cast<std::size_t>(2 * 2048 * 50 * 4 / 112));
    // 512×1000 (the small shape): 9 rows of logits fit its 36571 bytes,
    // rounded down to 8 (whole 4-row groups of the small-chunk logits) for
    // training; evaluation stores no logits and takes 16-row chunks (the
    // row-statistics path).
    const Problem s = make_problem(512, 24, 1000, true, DType::kF32, 2.0, 47, 5);
    for (bool grads : {false, true}) {
      const Got h = run(s, LinearCrossEntropyOptions{}, grads);
      EXPECT_EQ(h.res.algorithm, Algo::kTokenChunked);
      EXPECT_TRUE(h.res.own_products);
      EXPECT_EQ(h.res.chunk_rows, grads ? 8 : 16);
      EXPECT_LE(h.res.buffer_bytes, static_cast<std::size_t>(2 * 512 * 1000 * 4 / 112));
      check(s, CrossEntropyOptions{}, h, grads, grads ? "512x1000 default" : "512x1000 default, evaluation");
    }
  }
}

// ------------------------------------------------------------------ errors

template <class F>
void expect_error(F f, ErrorCode code, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// Evaluation whose default token chunks would be small (< 16 rows) stores no
// logits: cpu::chunk_row_stats folds each 16-row chunk's logits into per-row
// (max, Σexp, target logit, argmax) while they are in registers. Checked
// against the long-double reference with every option it takes, at shapes
// whose last chunk, tile and 6-class block are partial; the same bits for 1,
// 2, 3 and 7 threads; confident rows keep their relative accuracy; an overflow
// is reported by the chunked path, which names the row.
TEST(LinearCeRowStats, EvaluationWithoutLogits) {
  if (!cpu::chunk_gemm_supported()) GTEST_SKIP() << "no AVX-512F: the path does not exist here";
  for (auto [N, D, V] : {std::tuple{300, 24, 1000}, {400, 7, 53}, {250, 3, 4001}}) {
    Problem p = make_problem(N, D, V, true, DType::kF32, 3.0, 61 + N, 17);
    // Every third row's target is its argmax (in long double), so that the
    // accuracy count has something to count.
    for (std::int64_t n = 0; n < N; n += 3) {
      if (p.targets[n] < 0) continue;
      Real best = -1e300;
      for (std::int64_t v = 0; v < V; ++v) {
        Real z = p.bias[v];
        for (std::int64_t k = 0; k < D; ++k) z += p.H(n, k) * p.W(v, k);
        if (z > best) {
          best = z;
          p.targets[n] = v;
        }
      }
    }
    std::vector<float> cw(static_cast<std::size_t>(V));
    for (std::int64_t v = 0; v < V; ++v) cw[v] = 0.25f + static_cast<float>(v % 7) / 4;
    for (int variant = 0; variant < 4; ++variant) {
      LinearCrossEntropyOptions lo;
      CrossEntropyOptions& o = lo.loss;
      o.compute_accuracy = variant != 1;
      if (variant == 1) {
        o.class_weight = cw.data();
        o.z_loss = 1e-3;
      }
      if (variant == 2) o.reduction = Reduction::kSum;
      if (variant == 3) {
        o.reduction = Reduction::kNone;
        o.z_loss = 2e-4;
      }
      const std::string what = "N=" + std::to_string(N) + " V=" + std::to_string(V) + " variant " +
                               std::to_string(variant);
      std::vector<Got> got;
      for (int threads : {2, 1, 3, 7}) {
        o.num_threads = threads;
        got.push_back(run(p, lo, /*grads=*/false));
      }
      const Got& g = got[0];
      ASSERT_EQ(g.res.chunk_rows, 16) << what;  // the row-statistics path was taken
      EXPECT_LE(g.res.buffer_bytes, static_cast<std::size_t>(2 * N * V * 4 / 112)) << what;
      o.num_threads = 0;
      check(p, o, g, false, what);
      if (o.compute_accuracy) {
        EXPECT_EQ(g.res.correct, unfused(p, o).ce.correct) << what;
        EXPECT_GT(g.res.correct, 0) << what;
      }
      for (const Got& h : got) {
        EXPECT_EQ(std::memcmp(&h.res.loss, &g.res.loss, sizeof(double)), 0) << what;
        EXPECT_EQ(h.res.correct, g.res.correct) << what;
        EXPECT_EQ(std::memcmp(h.row_loss.data(), g.row_loss.data(), 4 * N), 0) << what;
        EXPECT_EQ(std::memcmp(h.row_lse.data(), g.row_lse.data(), 4 * N), 0) << what;
      }
    }
  }
  {  // Confident rows: class 5's bias makes every other class ~e^-30 as likely.
    Problem p = make_problem(300, 24, 1000, true, DType::kF32, 1.0, 71);
    p.bias[5] = 30.0f;
    for (auto& t : p.targets) t = 5;
    const Got g = run(p, LinearCrossEntropyOptions{}, false);
    ASSERT_EQ(g.res.chunk_rows, 16);
    const Expected e = unfused(p, CrossEntropyOptions{});
    for (std::int64_t n = 0; n < p.N; ++n) {
      const double rl = static_cast<double>(e.ce.row_loss[n]);
      ASSERT_GT(rl, 0);
      ASSERT_LT(rl, 1e-8);
      ASSERT_NEAR(g.row_loss[n], rl, 1e-5 * rl) << "row " << n;
    }
  }
  {  // A row whose logits overflow: the chunked path reports it, by row.
    Problem q = make_problem(300, 24, 1000, false, DType::kF32, 2.0, 73);
    for (std::int64_t k = 0; k < q.D; ++k) q.h[137 * q.hstride + k] = 3e38f;
    for (auto& x : q.w) x = std::fabs(x) + 1.0f;
    expect_error([&] {
      linear_cross_entropy(q.hidden(), q.weight(), nullptr, Targets::Index(q.targets.data()),
                           LinearCrossEntropyOptions{});
    }, ErrorCode::kNonFinite, "in the token chunk of rows [136, 140)");
    // Ignored, the same row is not inspected (as in cross_entropy_loss), and
    // its lse is NaN, as cross_entropy_loss writes it.
    q.targets[137] = -100;
    std::vector<float> rl(300), lse(300);
    LinearCrossEntropyOutputs out;
    out.row_loss = rl.data();
    out.row_lse = lse.data();
    const auto r = linear_cross_entropy(q.hidden(), q.weight(), nullptr, Targets::Index(q.targets.data()),
                                        LinearCrossEntropyOptions{}, out);
    EXPECT_EQ(r.chunk_rows, 16);
    EXPECT_EQ(r.count, 299);
    EXPECT_TRUE(std::isfinite(r.loss));
    EXPECT_EQ(rl[137], 0.0f);
    EXPECT_TRUE(std::isnan(lse[137]));
    EXPECT_TRUE(std::isfinite(lse[136]));
  }
  {  // Tied maxima: the argmax is the first of them (PyTorch's argmax), in
     // another tile (classes 70 and 150) and in one 6-class block (72, 73).
    for (auto [first, second] : {std::pair{70, 150}, {72, 73}}) {
      Problem p = make_problem(300, 24, 1000, true, DType::kF32, 1.0, 79);
      for (std::int64_t k = 0; k < p.D; ++k) p.w[second * p.D + k] = p.w[first * p.D + k];
      p.bias[first] = p.bias[second] = 40.0f;
      std::int64_t want = 0;
      for (std::int64_t n = 0; n < p.N; ++n) {
        // (Unequal counts: the last of the tied classes would count another number.)
        p.targets[n] = n % 4 == 0 ? first : n % 4 == 3 ? 5 : second;
        want += n % 4 == 0;
      }
      LinearCrossEntropyOptions lo;
      lo.loss.compute_accuracy = true;
      const Got g = run(p, lo, false);
      ASSERT_EQ(g.res.chunk_rows, 16);
      EXPECT_EQ(g.res.correct, want) << first << " " << second;
    }
  }
}

// cpu::chunk_row_stats directly: every lane against a long-double
// evaluation of its row, lanes past c zero rows, a NaN in one row.
TEST(LinearCeRowStats, KernelLanes) {
  if (!cpu::chunk_gemm_supported()) GTEST_SKIP() << "no AVX-512F";
  const std::int64_t c = 11, D = 13, V = 101;
  Problem p = make_problem(c, D, V, true, DType::kF32, 4.0, 83);
  p.h[4 * p.hstride + 2] = std::nanf("");
  alignas(64) std::int32_t tg[16];
  for (int i = 0; i < 16; ++i) tg[i] = i < c ? static_cast<std::int32_t>((i * 37) % V) : -1;
  std::unique_ptr<float[], void (*)(float*)> ht(
      static_cast<float*>(::operator new[](16 * D * sizeof(float), std::align_val_t{64})),
      [](float* q) { ::operator delete[](q, std::align_val_t{64}); });
  cpu::ChunkRowStats cs;
  cpu::chunk_row_stats(c, V, D, p.h.data(), p.hstride, p.w.data(), D, p.bias.data(), tg, true, ht.get(), &cs);
  for (std::int64_t i = 0; i < 16; ++i) {
    SCOPED_TRACE(i);
    if (i == 4) {
      EXPECT_TRUE(std::isnan(cs.sm1[i]));
      continue;
    }
    std::vector<Real> z(static_cast<std::size_t>(V));
    Real m = -1e300;
    std::int64_t arg = 0;
    for (std::int64_t v = 0; v < V; ++v) {
      Real acc = p.bias[v];
      if (i < c)
        for (std::int64_t k = 0; k < D; ++k) acc += p.H(i, k) * p.W(v, k);
      z[v] = acc;
      if (acc > m) {
        m = acc;
        arg = v;
      }
    }
    Real sm1 = -1;
    for (Real x : z) sm1 += std::exp(x - m);
    EXPECT_NEAR(cs.m[i], static_cast<double>(m), 1e-5 * std::max<double>(1.0, std::fabs(static_cast<double>(m))));
    EXPECT_NEAR(cs.sm1[i], static_cast<double>(sm1), 2e-5 * std::max<double>(1.0, static_cast<double>(sm1)));
    EXPECT_EQ(cs.argmax[i], arg);
    if (i < c) EXPECT_NEAR(cs.zt[i], static_cast<double>(z[tg[i]]), 1e-5 * std::max(1.0, std::fabs(static_cast<double>(z[tg[i]]))));
    else EXPECT_EQ(cs.zt[i], 0.0f);
  }
}

TEST(LinearCeErrors, BadInputIsNamed) {
  Problem p = make_problem(6, 4, 9, true, DType::kF32, 2.0, 29);
  const LinearCrossEntropyOptions lo;
  auto call = [&](const MatrixView& h, const MatrixView& w, const float* b,
                  const LinearCrossEntropyOptions& o, const LinearCrossEntropyOutputs& out = {}) {
    linear_cross_entropy(h, w, b, Targets::Index(p.targets.data()), o, out);
  };
  // D mismatch.
  MatrixView w3 = p.weight();
  w3.cols = 3;
  expect_error([&] { call(p.hidden(), w3, nullptr, lo); }, ErrorCode::kShapeMismatch, "weight");
  // Target out of range, naming the row.
  p.targets[4] = 9;
  expect_error([&] { call(p.hidden(), p.weight(), nullptr, lo); }, ErrorCode::kTargetOutOfRange,
               "targets[4] = 9");
  p.targets[4] = -1;
  expect_error([&] { call(p.hidden(), p.weight(), nullptr, lo); }, ErrorCode::kTargetOutOfRange,
               "targets[4] = -1");
  p.targets[4] = 0;
  // Gradient of the wrong shape / dtype.
  std::vector<float> buf(100);
  LinearCrossEntropyOutputs out;
  out.grad_hidden = {buf.data(), DType::kF32, 5, 4, 0};
  expect_error([&] { call(p.hidden(), p.weight(), nullptr, lo, out); }, ErrorCode::kShapeMismatch,
               "grad_hidden is 5×4");
  out.grad_hidden = {buf.data(), DType::kBF16, 6, 4, 0};
  expect_error([&] { call(p.hidden(), p.weight(), nullptr, lo, out); },
               ErrorCode::kInvalidArgument, "grad_hidden has dtype bfloat16");
  // Non-finite inputs, named by position.
  p.h[2 * p.hstride + 1] = std::nanf("");
  expect_error([&] { call(p.hidden(), p.weight(), nullptr, lo); }, ErrorCode::kNonFinite,
               "hidden[2][1]");
  p.h[2 * p.hstride + 1] = 0.5f;
  p.bias[3] = INFINITY;
  expect_error([&] { call(p.hidden(), p.weight(), p.bias.data(), lo); }, ErrorCode::kNonFinite,
               "bias[3]");
  p.bias[3] = 0;
  // Logits that overflow although the inputs are finite name the row.
  for (auto algo : {Algo::kTokenChunked, Algo::kVocabTiled}) {
    Problem q = make_problem(6, 4, 9, false, DType::kF32, 2.0, 31);
    for (std::int64_t k = 0; k < 4; ++k) q.h[3 * q.hstride + k] = 3e38f;
    for (auto& x : q.w) x = std::fabs(x) + 1.0f;
    LinearCrossEntropyOptions o;
    o.algorithm = algo;
    o.chunk_rows = 2;
    expect_error([&] {
      linear_cross_entropy(q.hidden(), q.weight(), nullptr, Targets::Index(q.targets.data()), o);
    }, ErrorCode::kNonFinite, "row");
  }
  // A small chunk's loss runs in two halves of rows: an error in the second
  // half names the whole chunk, and where its row numbers start.
  if (cpu::chunk_gemm_supported()) {
    Problem q = make_problem(6, 4, 9, false, DType::kF32, 2.0, 31);
    for (std::int64_t k = 0; k < 4; ++k) q.h[4 * q.hstride + k] = 3e38f;
    for (auto& x : q.w) x = std::fabs(x) + 1.0f;
    LinearCrossEntropyOptions o;
    o.algorithm = Algo::kTokenChunked;
    o.chunk_rows = 6;
    for (bool grads : {false, true}) {
      std::vector<float> gw(9 * 4);
      LinearCrossEntropyOutputs out;
      if (grads) out.grad_weight = {gw.data(), DType::kF32, 9, 4, 0};
      expect_error([&] {
        linear_cross_entropy(q.hidden(), q.weight(), nullptr, Targets::Index(q.targets.data()), o, out);
      }, ErrorCode::kNonFinite, "in the token chunk of rows [0, 6) (rows below count from 3)");
    }
  }
  // Options.
  LinearCrossEntropyOptions bad = lo;
  bad.loss.label_smoothing = 1.5;
  expect_error([&] { call(p.hidden(), p.weight(), nullptr, bad); }, ErrorCode::kInvalidArgument,
               "label_smoothing");
  bad = lo;
  bad.algorithm = static_cast<Algo>(7);
  expect_error([&] { call(p.hidden(), p.weight(), nullptr, bad); }, ErrorCode::kInvalidArgument,
               "invalid algorithm");
  bad = lo;
  bad.products = static_cast<Products>(7);
  expect_error([&] { call(p.hidden(), p.weight(), nullptr, bad); }, ErrorCode::kInvalidArgument,
               "invalid products");
  bad = lo;
  bad.algorithm = Algo::kVocabTiled;
  bad.loss.focal_gamma = 1;
  expect_error([&] { call(p.hidden(), p.weight(), nullptr, bad); }, ErrorCode::kInvalidArgument,
               "focal_gamma");
  bad = lo;
  bad.vocab_total = 100;
  expect_error([&] { call(p.hidden(), p.weight(), nullptr, bad); }, ErrorCode::kInvalidArgument,
               "issue 9");
  // Soft targets are refused.
  std::vector<float> soft(6 * 9, 1.0f / 9);
  expect_error([&] {
    linear_cross_entropy(p.hidden(), p.weight(), nullptr,
                         Targets::Soft({soft.data(), DType::kF32, 6, 9, 0}), lo);
  }, ErrorCode::kInvalidArgument, "soft targets");
  // Unsupported dtype.
  MatrixView h64 = p.hidden();
  h64.dtype = DType::kF64;
  expect_error([&] { call(h64, p.weight(), nullptr, lo); }, ErrorCode::kInvalidArgument,
               "hidden has dtype float64");
}

TEST(LinearCeErrors, EmptyBatchIsLegal) {
  const Problem p = make_problem(0, 4, 9, true, DType::kF32, 2.0, 37);
  for (auto algo : {Algo::kTokenChunked, Algo::kVocabTiled}) {
    LinearCrossEntropyOptions lo;
    lo.algorithm = algo;
    const Got g = run(p, lo);
    EXPECT_EQ(g.res.loss, 0.0);
    for (float x : g.gw) EXPECT_EQ(x, 0.0f);
    for (float x : g.gb) EXPECT_EQ(x, 0.0f);
  }
}

}  // namespace
}  // namespace xent
