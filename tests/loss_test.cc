// cross_entropy_loss / cross_entropy_backward against the long-double
// reference (src/reference/loss_reference.h): every option alone and
// combined, every dtype, strided rows, in-place gradients, extreme logits,
// long rows, thread-count determinism, and every error case.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <string>

#include "loss_test_util.h"
#include "xent/error.h"
#include "xent/gradcheck.h"

namespace xent::test {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInfD = std::numeric_limits<double>::infinity();

struct CeCase {
  std::int64_t N = 5, V = 11, stride = 0;
  DType dt = DType::kF32, gdt = DType::kF32;
  double sigma = 3;
  unsigned seed = 1;
  bool soft = false;
  DType soft_dt = DType::kF32;
  bool int32 = false;
  bool weights = false;
  bool inplace = false;
  bool grad = true;
  int ignore_every = 0;  // every k-th row gets ignore_index
  std::vector<std::int64_t> targets;  // empty: random
  CrossEntropyOptions o;
  Buffer logits;  // empty: random
};

reference::CeRefOptions ref_options(const CrossEntropyOptions& o, const std::vector<float>& w) {
  reference::CeRefOptions r;
  r.reduction = o.reduction == Reduction::kNone  ? reference::RefReduction::kNone
                : o.reduction == Reduction::kSum ? reference::RefReduction::kSum
                                                 : reference::RefReduction::kMean;
  r.ignore_index = o.ignore_index;
  for (float x : w) r.weight.push_back(x);
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

// Runs the case through xent and the reference and compares every output.
void check_ce(CeCase cc) {
  SCOPED_TRACE("N=" + std::to_string(cc.N) + " V=" + std::to_string(cc.V) + " dtype=" +
               DTypeName(cc.dt) + " grad=" + DTypeName(cc.gdt) + " soft=" + std::to_string(cc.soft));
  Buffer z = cc.logits.rows ? cc.logits : random_logits(cc.dt, cc.N, cc.V, cc.sigma, cc.seed, cc.stride);
  const std::vector<Row> zr = z.rows_real();
  std::vector<std::int64_t> t = cc.targets.empty() ? random_targets(cc.N, cc.V, cc.seed + 7) : cc.targets;
  if (cc.ignore_every)
    for (std::size_t i = 0; i < t.size(); i += static_cast<std::size_t>(cc.ignore_every))
      t[i] = cc.o.ignore_index;
  std::vector<std::int32_t> t32(t.begin(), t.end());
  std::vector<float> w;
  if (cc.weights) {
    std::mt19937 rng(cc.seed + 3);
    std::uniform_real_distribution<float> u(0.1f, 3.0f);
    for (std::int64_t i = 0; i < cc.V; ++i) w.push_back(i % 7 == 3 ? 0.0f : u(rng));
    cc.o.class_weight = w.data();
  }
  Buffer p;
  std::vector<Row> pr;
  Targets tg = cc.int32 ? Targets::Index(t32.data()) : Targets::Index(t.data());
  if (cc.soft) {
    p = random_soft(cc.soft_dt, cc.N, cc.V, cc.seed + 11);
    pr = p.rows_real();
    tg = Targets::Soft(p.view());
  }
  std::vector<float> row_loss(static_cast<std::size_t>(cc.N), -1.f), row_lse(static_cast<std::size_t>(cc.N), -1.f);
  Buffer g;
  CrossEntropyOutputs outs;
  outs.row_loss = row_loss.data();
  outs.row_lse = row_lse.data();
  if (cc.grad) {
    if (cc.inplace) {
      g = z;  // a copy that is both the logits and the gradient
      outs.grad = g.mut();
    } else {
      g = Buffer(cc.gdt, cc.N, cc.V, cc.stride);
      outs.grad = g.mut();
    }
  }
  cc.o.compute_accuracy = true;
  const CrossEntropyResult res =
      cross_entropy_loss(cc.inplace ? g.view() : z.view(), tg, cc.o, outs);
  const auto ref = reference::cross_entropy_batch(zr, cc.soft ? std::vector<std::int64_t>{} : t, pr,
                                                  ref_options(cc.o, w));
  const double rel = cc.dt == DType::kF64 ? 1e-11 : 5e-7;
  const double abs = cc.dt == DType::kF64 ? 1e-13 : 1e-7;
  EXPECT_TRUE(Near(res.loss, ref.loss, rel, abs)) << "loss";
  EXPECT_TRUE(Near(res.z_loss, ref.z_loss, rel, abs)) << "z_loss";
  EXPECT_EQ(res.count, ref.count);
  EXPECT_TRUE(Near(res.weight_sum, ref.weight_sum, 1e-12, 0));
  if (!cc.soft) EXPECT_EQ(res.correct, ref.correct);
  for (std::int64_t r = 0; r < cc.N; ++r) {
    EXPECT_TRUE(Near(row_loss[r], ref.row_loss[r], 5e-7, 1e-7)) << "row_loss " << r;
    const bool ign = !cc.soft && t[r] == cc.o.ignore_index;
    (void)ign;
    EXPECT_TRUE(Near(row_lse[r], ref.row_lse[r], 5e-7, 1e-7)) << "row_lse " << r;
  }
  if (!cc.grad) return;
  // Gradient: relative to each element, with an absolute floor of 1e-7 in
  // units of the gradient's scale (1/Σw under mean).
  double scale = std::fabs(cc.o.grad_scale);
  if (cc.o.reduction == Reduction::kMean && ref.weight_sum > 0) scale /= static_cast<double>(ref.weight_sum);
  double wmax = 1;
  for (float x : w) wmax = std::max<double>(wmax, x);
  const DType out_dt = cc.inplace ? z.dtype : cc.gdt;
  const double grel = std::max(dtype_rel(out_dt), rel);
  // float32: 1e-7 of the scale; soft targets 2e-7: g = α·e_j − c_j takes
  // four float32 roundings (α, e_j, the product, the difference), and where
  // both terms are near 1 (V = 3) that is up to ~2 ulp of 1 (1.04e-7 seen).
  const double gabs = (out_dt == DType::kF64 && cc.dt == DType::kF64 ? 1e-13 : cc.soft ? 2e-7 : 1e-7) * scale * wmax *
                      std::max(1.0, 1.0 / cc.o.temperature) * (1 + 2 * cc.o.z_loss * 20);
  // float16 stores values below 2^-14 as subnormals, 2^-24 apart.
  const double gabs_out = out_dt == DType::kF16 ? std::max(gabs, 0x1p-25 * 1.01) : gabs;
  int bad = 0;
  for (std::int64_t r = 0; r < cc.N && bad < 5; ++r)
    for (std::int64_t c = 0; c < cc.V && bad < 5; ++c) {
      const auto ok = Near(g.get(r, c), ref.grad[r][c], grel, gabs_out);
      if (!ok) {
        ++bad;
        ADD_FAILURE() << "grad[" << r << "][" << c << "]: " << ok.message();
      }
    }
  // The padding between rows is never written.
  for (std::int64_t r = 0; r < cc.N; ++r)
    for (std::int64_t c = cc.V; c < g.stride; ++c) EXPECT_TRUE(std::isnan(g.get(r, c)));
}

// ------------------------------------------------------------ hard targets

TEST(CrossEntropyLoss, PlainShapesAndReductions) {
  for (Reduction red : {Reduction::kMean, Reduction::kSum, Reduction::kNone})
    for (auto [n, v] : {std::pair{1, 1}, {1, 2}, {3, 7}, {17, 100}, {9, 1000}, {4, 33000}}) {
      CeCase cc;
      cc.N = n;
      cc.V = v;
      cc.o.reduction = red;
      check_ce(cc);
    }
}

TEST(CrossEntropyLoss, StridedRowsAndInt32Targets) {
  CeCase cc;
  cc.N = 6;
  cc.V = 37;
  cc.stride = 45;
  cc.int32 = true;
  check_ce(cc);
  cc.V = 40000;
  cc.stride = 40003;
  cc.N = 3;
  check_ce(cc);
}

TEST(CrossEntropyLoss, ClassWeights) {
  for (Reduction red : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
    CeCase cc;
    cc.N = 20;
    cc.V = 50;
    cc.weights = true;
    cc.o.reduction = red;
    check_ce(cc);
  }
}

TEST(CrossEntropyLoss, IgnoreIndex) {
  CeCase cc;
  cc.N = 12;
  cc.V = 30;
  cc.ignore_every = 3;
  check_ce(cc);
  cc.o.ignore_index = 4;  // a valid class as ignore_index stays in the softmax
  cc.ignore_every = 2;
  cc.weights = true;
  check_ce(cc);
}

TEST(CrossEntropyLoss, LabelSmoothingBothConventions) {
  for (Smoothing sm : {Smoothing::kUniform, Smoothing::kOffTarget})
    for (double eps : {0.1, 0.5, 1.0}) {
      CeCase cc;
      cc.N = 9;
      cc.V = 70;
      cc.o.label_smoothing = eps;
      cc.o.smoothing = sm;
      check_ce(cc);
      cc.weights = true;
      cc.ignore_every = 4;
      check_ce(cc);
    }
  CeCase one;  // V = 1: off-target smoothing has no other class
  one.N = 3;
  one.V = 1;
  one.o.label_smoothing = 0.3;
  one.o.smoothing = Smoothing::kOffTarget;
  check_ce(one);
}

TEST(CrossEntropyLoss, SoftTargets) {
  for (Reduction red : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
    CeCase cc;
    cc.N = 8;
    cc.V = 90;
    cc.soft = true;
    cc.o.reduction = red;
    check_ce(cc);
    cc.weights = true;
    cc.o.label_smoothing = 0.2;
    check_ce(cc);
    cc.o.smoothing = Smoothing::kOffTarget;
    check_ce(cc);
  }
  CeCase bf;
  bf.soft = true;
  bf.soft_dt = DType::kBF16;
  bf.V = 40;
  check_ce(bf);
}

TEST(CrossEntropyLoss, ZLossTemperatureSoftcapFocal) {
  CeCase cc;
  cc.N = 7;
  cc.V = 60;
  cc.o.z_loss = 1e-3;
  check_ce(cc);
  cc.o.z_loss = 0;
  cc.o.temperature = 2.5;
  check_ce(cc);
  cc.o.temperature = 0.7;
  check_ce(cc);
  cc.o.temperature = 1;
  cc.o.softcap = 5;
  check_ce(cc);
  cc.o.softcap = 0;
  for (double gamma : {0.5, 1.0, 2.0}) {
    cc.o.focal_gamma = gamma;
    check_ce(cc);
  }
}

TEST(CrossEntropyLoss, EveryOptionCombined) {
  for (bool soft : {false, true})
    for (Reduction red : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
      CeCase cc;
      cc.N = 10;
      cc.V = 45;
      cc.soft = soft;
      cc.weights = true;
      cc.ignore_every = soft ? 0 : 3;
      cc.o.reduction = red;
      cc.o.label_smoothing = 0.15;
      cc.o.z_loss = 2e-3;
      cc.o.temperature = 1.5;
      cc.o.softcap = 8;
      cc.o.focal_gamma = 1.5;
      cc.o.grad_scale = 0.75;
      check_ce(cc);
      cc.o.focal_gamma = 0;
      cc.o.softcap = 0;
      cc.o.temperature = 1;  // the SIMD path with weights + smoothing + z-loss
      check_ce(cc);
    }
}

TEST(CrossEntropyLoss, GradScale) {
  CeCase cc;
  cc.o.grad_scale = -3.5;
  check_ce(cc);
}

TEST(CrossEntropyLoss, ShortRowsOneRowPerLane) {
  // V ≤ 128 float32 rows take the one-row-per-lane kernel: every option it
  // supports, partial tiles, strides, in place, extreme logits; widths that
  // fill one, two (one partial) and eight 16-column transpose blocks
  // (AVX-512), or part of one, one, one and a bit, ... 8-column blocks (AVX2,
  // whose partial block's row stores spill into the next rows). Threads take
  // blocks of N / 64 rows (at most 256): ~16 at N ≈ 1000 (mostly one partial
  // tile each), ~64 at N ≈ 4100 (full tiles, each transposing the next).
  for (std::int64_t v : {2, 3, 8, 9, 10, 17, 32, 100, 128})
    for (int variant = 0; variant < 16; ++variant) {
      CeCase cc;
      cc.N = (variant < 7 ? 1000 : 4100) + v;  // not a multiple of any vector length
      cc.V = v;
      cc.ignore_every = 7;
      if (variant == 1) cc.weights = true, cc.o.label_smoothing = 0.2;
      if (variant == 2) cc.o.label_smoothing = 0.3, cc.o.smoothing = Smoothing::kOffTarget, cc.stride = v + 3;
      if (variant == 3) cc.o.z_loss = 1e-3, cc.o.reduction = Reduction::kNone, cc.inplace = true, cc.int32 = true;
      if (variant == 4) cc.sigma = 1e4, cc.o.reduction = Reduction::kSum;
      // The AVX-512 tile reads 16 int64 targets at once, the AVX2 tile 8
      // int64 or int32 ones: an ignore index inside [0, V) must be matched
      // in either width, one beyond int32 by int64 targets; with int32
      // targets, an ignore index beyond int32 matches no row.
      if (variant == 0) cc.o.ignore_index = 1;
      if (variant == 4) cc.o.ignore_index = (std::int64_t{1} << 40) + 3;
      if (variant == 5) cc.int32 = true, cc.o.ignore_index = 1;
      if (variant == 6) cc.int32 = true, cc.o.ignore_index = -(std::int64_t{1} << 40), cc.ignore_every = 0;
      // The same at N ≈ 4100.
      if (variant == 8) cc.weights = true, cc.o.label_smoothing = 0.2;
      if (variant == 9) cc.o.label_smoothing = 0.3, cc.o.smoothing = Smoothing::kOffTarget, cc.stride = v + 3;
      if (variant == 10) cc.o.z_loss = 1e-3, cc.o.reduction = Reduction::kNone, cc.inplace = true, cc.int32 = true;
      if (variant == 11) cc.sigma = 1e4, cc.o.reduction = Reduction::kSum;
      if (variant == 12) cc.inplace = true, cc.o.ignore_index = 1;
      if (variant == 13) cc.int32 = true, cc.o.label_smoothing = 0.1;
      // AVX-512 full tiles compare 16 int32 targets at once: an ignore index
      // inside [0, V), and one beyond int32 (which matches no row).
      if (variant == 14) cc.int32 = true, cc.o.ignore_index = 1;
      if (variant == 15) cc.int32 = true, cc.o.ignore_index = -(std::int64_t{1} << 40), cc.ignore_every = 0;
      check_ce(cc);
      cc.soft = true;  // soft targets through the same kernel
      cc.ignore_every = 0;
      check_ce(cc);
    }
  CeCase masked;  // -inf masks and a near-certain target
  masked.N = 40;
  masked.V = 10;
  masked.logits = random_logits(DType::kF32, 40, 10, 2.0, 8);
  masked.targets = random_targets(40, 10, 9);
  for (std::int64_t r = 0; r < 40; ++r) {
    masked.logits.set(r, (masked.targets[r] + 1) % 10, -kInfD);
    if (r % 3 == 0) masked.logits.set(r, masked.targets[r], 20.0);
  }
  check_ce(masked);
  // Ignored rows are not checked, but still get their lse: −inf for an all
  // −inf row (the AVX2 tile's log once gave −709), NaN with a NaN.
  masked.ignore_every = 4;  // rows 0, 4, 8, ...
  for (std::int64_t c = 0; c < 10; ++c) masked.logits.set(0, c, -kInfD), masked.logits.set(8, c, -kInfD);
  masked.logits.set(4, 3, std::numeric_limits<double>::quiet_NaN());
  check_ce(masked);
}

TEST(CrossEntropyLoss, ShortRowsEveryWidthUpToSixteen) {
  // AVX-512 packs a full tile's gradient rows (V ≤ 16) with a permute plan
  // per V: every V from 1 to 16, plain and in place, with partial tiles
  // (which go through the tile buffer): N ≈ 4100 makes blocks of 64 rows,
  // four full tiles.
  for (std::int64_t v = 1; v <= 16; ++v)
    for (bool inplace : {false, true}) {
      CeCase cc;
      cc.N = 4100 + v;
      cc.V = v;
      cc.ignore_every = 5;
      cc.inplace = inplace;
      check_ce(cc);
    }
}

TEST(CrossEntropyLoss, ShortRowsStreamedGradient) {
  // Gradients of ≥ 16 MiB leave with streaming stores, except from the
  // AVX-512 tiles of rows of ≤ 12 floats (plain stores). On AVX-512 (V ≤ 16)
  // the tile writes straight to the rows where they are 64-byte aligned or
  // not streamed, else through the tile buffer. V = 10 (plain on AVX-512)
  // and 16 (streamed), both alignments, out of place and in place, against
  // the long-double reference.
  for (const std::int64_t V : {10, 16}) {
    const std::int64_t N = 420000;  // 16.8 and 26.9 MB of float32
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    std::vector<float> z0(static_cast<std::size_t>(N * V));
    for (float& x : z0) x = nd(rng);
    std::vector<std::int64_t> t(static_cast<std::size_t>(N));
    for (auto& x : t) x = static_cast<std::int64_t>(rng() % V);
    std::vector<Row> rows(static_cast<std::size_t>(N), Row(static_cast<std::size_t>(V)));
    for (std::int64_t r = 0; r < N; ++r)
      for (std::int64_t c = 0; c < V; ++c) rows[r][c] = z0[static_cast<std::size_t>(r * V + c)];
    const auto ref = reference::cross_entropy_batch(rows, t, {}, reference::CeRefOptions{});
    const std::size_t n = z0.size();
    // 64-byte aligned storage, used at an offset of 0 or 4 floats.
    std::unique_ptr<float, decltype(&std::free)> zmem(static_cast<float*>(std::aligned_alloc(64, (n + 64) * 4)), &std::free);
    std::unique_ptr<float, decltype(&std::free)> gmem(static_cast<float*>(std::aligned_alloc(64, (n + 64) * 4)), &std::free);
    for (std::size_t off : {0, 4})
      for (bool inplace : {false, true}) {
        SCOPED_TRACE("V " + std::to_string(V) + ", offset " + std::to_string(off) + (inplace ? " in place" : ""));
        float* z = zmem.get() + off;
        float* g = inplace ? z : gmem.get() + off;
        std::copy(z0.begin(), z0.end(), z);
        if (!inplace) std::fill(g, g + n, std::nanf(""));
        CrossEntropyOptions o;
        o.num_threads = 2;
        CrossEntropyOutputs outs;
        outs.grad = MutableMatrixView{g, DType::kF32, N, V, 0};
        const auto res = cross_entropy_loss(MatrixView{z, DType::kF32, N, V, 0}, Targets::Index(t.data()), o, outs);
        EXPECT_TRUE(Near(res.loss, ref.loss, 5e-7, 1e-7));
        const double gabs = 1e-7 / static_cast<double>(N);
        int bad = 0;
        for (std::int64_t r = 0; r < N && bad < 5; ++r)
          for (std::int64_t c = 0; c < V && bad < 5; ++c) {
            const auto ok = Near(g[r * V + c], ref.grad[r][c], 5e-7, gabs);
            if (!ok) {
              ++bad;
              ADD_FAILURE() << "grad[" << r << "][" << c << "]: " << ok.message();
            }
          }
      }
  }
}

// ------------------------------------------------------------ dtypes

TEST(CrossEntropyLoss, EveryDtype) {
  for (DType dt : {DType::kF32, DType::kF64, DType::kBF16, DType::kF16})
    for (DType gdt : {DType::kF32, DType::kF64, DType::kBF16, DType::kF16}) {
      CeCase cc;
      cc.N = 6;
      cc.V = 300;
      cc.stride = 310;
      cc.dt = dt;
      cc.gdt = gdt;
      check_ce(cc);
    }
  CeCase d;
  d.dt = DType::kF64;
  d.gdt = DType::kF64;
  d.weights = true;
  d.o.label_smoothing = 0.1;
  d.N = 4;
  d.V = 40000;
  check_ce(d);
  d.weights = false;  // float64, smoothing without weights, rising maxima
  d.N = 3;
  d.V = 3000;
  d.logits = Buffer(DType::kF64, 3, 3000);
  for (std::int64_t r = 0; r < 3; ++r)
    for (std::int64_t c = 0; c < 3000; ++c) d.logits.set(r, c, 0.01 * static_cast<double>(c) * (r + 1));
  check_ce(d);
  d.logits = Buffer();
  d.soft = true;
  d.soft_dt = DType::kF64;
  d.V = 500;
  check_ce(d);
}

TEST(CrossEntropyLoss, InPlaceGradient) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF64, DType::kF16}) {
    CeCase cc;
    cc.N = 5;
    cc.V = 1000;
    cc.stride = 1003;
    cc.dt = dt;
    cc.inplace = true;
    check_ce(cc);
    cc.o.label_smoothing = 0.1;
    cc.weights = true;
    check_ce(cc);
  }
  CeCase big;  // in place across chunk boundaries and with few long rows
  big.N = 1;
  big.V = 100000;
  big.inplace = true;
  check_ce(big);
}

TEST(CrossEntropyLoss, InterleavedRowsBothGradientSources) {
  // Rows of ≥ 4096 columns interleave the statistics of row r with the
  // gradient of row r − 1; up to 65536 columns that gradient recomputes its
  // exps from the logits on AVX-512 and reads the stored ones elsewhere;
  // longer rows always read the stored ones. Both sources (forced, so that
  // every CPU runs both), with one, two and three column chunks, a row whose
  // maximum lies in a later chunk (a second exp reference), ignored rows,
  // options, strides and in place.
  for (const bool recompute : {false, true}) {
    const ForceRecomputingExps force(recompute);
    for (std::int64_t v : {4099, 40000, 70001})
      for (int variant = 0; variant < 3; ++variant) {
        SCOPED_TRACE("V=" + std::to_string(v) + " variant=" + std::to_string(variant) +
                     " recompute=" + std::to_string(recompute));
        CeCase cc;
        cc.N = 7;  // ≥ 2 rows per thread: the row-wise path
        cc.V = v;
        cc.ignore_every = 3;
        if (variant == 1) cc.weights = true, cc.o.label_smoothing = 0.1, cc.o.z_loss = 1e-3, cc.stride = v + 5;
        if (variant == 2) cc.inplace = true, cc.o.reduction = Reduction::kSum;
        cc.logits = random_logits(cc.dt, cc.N, cc.V, cc.sigma, 40 + static_cast<unsigned>(variant), cc.stride);
        cc.logits.set(1, v - 2, 40.0);  // row 1: its maximum in the last chunk
        cc.logits.set(4, v / 2 + 1, 30.0);
        check_ce(cc);
        cc.soft = true;  // soft targets interleave the same way
        cc.ignore_every = 0;
        if (variant == 1) cc.soft_dt = DType::kBF16;  // target rows staged through a buffer
        check_ce(cc);
      }
  }
}

TEST(CrossEntropyLoss, LongRowsOfLargeLogitsFetchedAhead) {
  // Rows longer than kFixedRefMax (8192) in logits of ≥ 4 MiB fetch their
  // lines, and a soft row's, a fixed distance ahead (Engine::stats_chunk in
  // loss.cc); the last row's fetches reach past the end of the buffers,
  // where only a prefetch may go. Against the reference: hard and soft
  // targets, packed and strided, out of place and in place.
  for (int variant = 0; variant < 2; ++variant) {
    SCOPED_TRACE("variant=" + std::to_string(variant));
    CeCase cc;
    cc.N = 16;
    cc.V = 70001;  // 16 × 70001 float32 = 4.5 MB, three column chunks per row
    cc.ignore_every = 5;
    if (variant == 0) cc.inplace = true;
    if (variant == 1) cc.weights = true, cc.o.label_smoothing = 0.1, cc.stride = cc.V + 3;
    cc.logits = random_logits(cc.dt, cc.N, cc.V, cc.sigma, 60 + static_cast<unsigned>(variant), cc.stride);
    check_ce(cc);
    cc.soft = true;
    cc.ignore_every = 0;
    check_ce(cc);
  }
}

// ------------------------------------------------------------ extreme logits

TEST(CrossEntropyLoss, ExtremeLogits) {
  for (double sigma : {1e4, 1e30}) {
    CeCase cc;
    cc.N = 6;
    cc.V = 100;
    cc.sigma = sigma;
    check_ce(cc);
    cc.o.label_smoothing = 0.1;
    check_ce(cc);
  }
  // -inf masks (the targets stay finite) and a row with one finite logit.
  CeCase m;
  m.N = 4;
  m.V = 50;
  m.logits = random_logits(DType::kF32, 4, 50, 2.0, 5);
  m.targets = {0, 1, 2, 3};
  for (std::int64_t r = 0; r < 4; ++r)
    for (std::int64_t c = 10; c < 50; c += (r + 2)) m.logits.set(r, c, -kInfD);
  for (std::int64_t c = 0; c < 50; ++c) m.logits.set(3, c, c == 3 ? 0.0 : -kInfD);  // one finite logit
  check_ce(m);
  // -inf on the target itself: the loss is +inf, the gradient finite.
  CeCase inf_t;
  inf_t.N = 2;
  inf_t.V = 8;
  inf_t.o.reduction = Reduction::kNone;
  inf_t.logits = random_logits(DType::kF32, 2, 8, 1.0, 9);
  inf_t.targets = {5, 1};
  inf_t.logits.set(0, 5, -kInfD);
  check_ce(inf_t);
  // Soft targets with -inf where p = 0 are fine (0·log 0 = 0).
  CeCase sm;
  sm.N = 1;
  sm.V = 4;
  sm.soft = true;
  sm.logits = random_logits(DType::kF32, 1, 4, 1.0, 3);
  check_ce(sm);
}

TEST(CrossEntropyLoss, RisingMaximaRescale) {
  // Sorted rows move the running max at every block: every rescale path.
  for (bool weights : {false, true})
    for (bool soft : {false, true}) {
      CeCase cc;
      cc.N = 2;
      cc.V = 5000;
      cc.weights = weights;
      cc.soft = soft;
      cc.o.label_smoothing = 0.1;
      cc.logits = Buffer(DType::kF32, 2, 5000);
      for (std::int64_t c = 0; c < 5000; ++c) {
        cc.logits.set(0, c, 0.02 * static_cast<double>(c));
        cc.logits.set(1, c, 1e3 * std::sin(0.001 * static_cast<double>(c * c)));
      }
      check_ce(cc);
    }
}

TEST(CrossEntropyLoss, TrueClassGradientDoesNotCancel) {
  // q_t = 1 − δ with δ down to 1e-7: g_t = −δ must keep its relative
  // accuracy, in float32 and in bfloat16 (written in place too).
  for (DType dt : {DType::kF32, DType::kBF16})
    for (double gap : {8.0, 12.0, 16.0}) {
      CeCase cc;
      cc.N = 3;
      cc.V = 64;
      cc.dt = dt;
      cc.gdt = dt;
      cc.targets = {2, 2, 2};
      cc.logits = random_logits(dt, 3, 64, 1.0, 21);
      for (std::int64_t r = 0; r < 3; ++r) cc.logits.set(r, 2, gap + r);
      cc.o.reduction = Reduction::kSum;
      check_ce(cc);
      cc.inplace = true;
      check_ce(cc);
    }
}

TEST(CrossEntropyLoss, LongRowsAccuracy) {
  const std::int64_t V = kSanitized ? 65536 : 262144;
  CeCase cc;
  cc.N = 2;
  cc.V = V;
  cc.sigma = 4;
  check_ce(cc);
  cc.o.label_smoothing = 0.1;
  cc.sigma = 1;
  check_ce(cc);
  cc.soft = true;
  cc.N = 1;
  check_ce(cc);
}

// ------------------------------------------------------------ every SIMD target

// Every SIMD target this build compiled, HWY_SCALAR included (what a CPU
// without SSSE3 runs): long rows on both statistics paths (a fixed reference
// up to kFixedRefMax columns, a running one beyond) with every kind of
// coefficient, and short rows (the row-per-lane tile, or the row-wise path
// where the target has no lanes).
TEST(CrossEntropyLoss, EverySimdTargetMatchesTheReference) {
  for_each_simd_target([] {
    for (std::int64_t v : {std::int64_t{1000}, static_cast<std::int64_t>(cpu::kFixedRefMax) + 1000}) {
      for (int variant = 0; variant < 5; ++variant) {
        CeCase cc;
        cc.N = 3;
        cc.V = v;
        cc.sigma = 2;
        if (variant == 1) cc.o.label_smoothing = 0.1;
        if (variant == 2) cc.weights = true, cc.o.label_smoothing = 0.2, cc.o.z_loss = 1e-3;
        if (variant == 3) cc.soft = true;
        if (variant == 4) cc.soft = true, cc.weights = true, cc.o.label_smoothing = 0.1;
        check_ce(cc);
      }
    }
    for (std::int64_t v : {3, 10, 100}) {
      CeCase cc;
      cc.N = 300;
      cc.V = v;
      cc.o.label_smoothing = 0.1;
      check_ce(cc);
      cc.soft = true;
      check_ce(cc);
    }
  });
}

// ------------------------------------------------------------ determinism

struct Bits {
  double loss;
  std::vector<float> grad, row_loss;
};

Bits run_threads(const Buffer& z, const std::vector<std::int64_t>& t, int threads,
                 const CrossEntropyOptions& base, const Buffer* soft = nullptr) {
  CrossEntropyOptions o = base;
  o.num_threads = threads;
  Buffer g(DType::kF32, z.rows, z.cols);
  Bits b;
  b.row_loss.assign(static_cast<std::size_t>(z.rows), 0);
  CrossEntropyOutputs outs;
  outs.grad = g.mut();
  outs.row_loss = b.row_loss.data();
  b.loss = cross_entropy_loss(z.view(), soft ? Targets::Soft(soft->view()) : Targets::Index(t.data()),
                              o, outs).loss;
  b.grad.resize(g.bytes.size() / 4);
  std::memcpy(b.grad.data(), g.bytes.data(), g.bytes.size());
  return b;
}

void expect_same_bits(const Bits& a, const Bits& b) {
  EXPECT_EQ(std::memcmp(&a.loss, &b.loss, sizeof(double)), 0) << a.loss << " vs " << b.loss;
  EXPECT_EQ(std::memcmp(a.grad.data(), b.grad.data(), a.grad.size() * 4), 0);
  EXPECT_EQ(std::memcmp(a.row_loss.data(), b.row_loss.data(), a.row_loss.size() * 4), 0);
}

TEST(CrossEntropyLoss, SameBitsForAnyThreadCount) {
  CrossEntropyOptions o;
  o.label_smoothing = 0.1;
  o.z_loss = 1e-4;
  // Many rows (row-parallel), few long rows (column chunks), and in between;
  // every shape has ≥ 2^18 elements, below which one thread runs anyway.
  for (auto [n, v] : {std::pair<std::int64_t, std::int64_t>{700, 400}, {1, 300000}, {3, 100000}, {5, 60000},
                      {30000, 10}}) {
    const Buffer z = random_logits(DType::kF32, n, v, 3.0, 77);
    const auto t = random_targets(n, v, 78);
    const Bits b1 = run_threads(z, t, 1, o);
    expect_same_bits(b1, run_threads(z, t, 2, o));
    expect_same_bits(b1, run_threads(z, t, 3, o));
    const Buffer p = random_soft(DType::kF32, n, v, 79);
    const Bits s1 = run_threads(z, t, 1, o, &p);
    expect_same_bits(s1, run_threads(z, t, 2, o, &p));
    expect_same_bits(s1, run_threads(z, t, 3, o, &p));
  }
}

// The interleaved rows' gradient gives the same bits whether it recomputes
// its exps or reads the stored ones (the same kernel ops on the same values),
// so which one a CPU picks (cpu::RecomputingExpsPays) never shows.
TEST(CrossEntropyLoss, InterleavedRowsSameBitsFromEitherGradientSource) {
  const std::int64_t n = 8, v = 40000;  // ≥ 2^18 logits: 2 threads run
  const Buffer z = random_logits(DType::kF32, n, v, 4.0, 91);
  const auto t = random_targets(n, v, 92);
  const Buffer p = random_soft(DType::kF32, n, v, 93);
  CrossEntropyOptions o;
  for (int kind = 0; kind < 3; ++kind) {
    SCOPED_TRACE(kind == 0 ? "hard" : kind == 1 ? "smoothing + z-loss" : "soft");
    if (kind == 1) o.label_smoothing = 0.1, o.z_loss = 1e-3;
    const Buffer* soft = kind == 2 ? &p : nullptr;
    auto run = [&](bool recompute) {
      const ForceRecomputingExps force(recompute);
      return run_threads(z, t, 2, o, soft);
    };
    expect_same_bits(run(false), run(true));
  }
}

// Rows of up to 1024 float32 logits in cache take their statistics two at
// a time where both are computed (cpu::ChunkStats2F32): the same operations
// per row as one at a time, so the same bits for the loss, the row losses,
// the lse and the gradient, whatever breaks the pairs (ignored rows skipped
// or computed for their lse, an odd block, a block's last row, the
// threads) and with every option that changes the pass (weights,
// smoothing, z-loss, soft targets, a forward only). (1023×1000: blocks of
// 15 rows, ~4 MB of logits, the most that pairs.)
TEST(CrossEntropyLoss, ShortRowsSameBitsPairedOrNot) {
  for (auto [n, v] : {std::pair<std::int64_t, std::int64_t>{37, 129}, {301, 250}, {64, 1000}, {1023, 1000},
                      {40, 1024}, {3, 1023}}) {
    const Buffer z = random_logits(DType::kF32, n, v, 3.0, 61);
    auto t = random_targets(n, v, 62);
    for (std::int64_t r = 0; r < n; ++r)
      if (r % 5 == 1 || r % 7 == 4) t[static_cast<std::size_t>(r)] = -100;
    const Buffer p = random_soft(DType::kF32, n, v, 63);
    std::vector<float> w(static_cast<std::size_t>(v));
    for (std::int64_t c = 0; c < v; ++c) w[static_cast<std::size_t>(c)] = 0.5f + static_cast<float>(c % 3);
    for (int kind = 0; kind < 4; ++kind)
      for (const bool grad : {true, false})
        for (const bool want_lse : {false, true})
          for (const int threads : {1, 2}) {
            SCOPED_TRACE(testing::Message() << n << "x" << v << " kind " << kind << (grad ? " fwd+bwd" : " fwd")
                                            << (want_lse ? " lse" : "") << " threads " << threads);
            CrossEntropyOptions o;
            o.num_threads = threads;
            if (kind == 1) o.class_weight = w.data();
            if (kind == 2) o.class_weight = w.data(), o.label_smoothing = 0.1, o.z_loss = 1e-3;
            const Targets tg = kind == 3 ? Targets::Soft(p.view()) : Targets::Index(t.data());
            struct Out {
              double loss;
              std::vector<float> grad, row_loss, row_lse;
            };
            auto run = [&](bool pair) {
              const ForcePairingRows force(pair);
              Out out;
              Buffer g(DType::kF32, n, v);
              out.row_loss.assign(static_cast<std::size_t>(n), 0);
              out.row_lse.assign(static_cast<std::size_t>(n), 0);
              CrossEntropyOutputs outs;
              if (grad) outs.grad = g.mut();
              outs.row_loss = out.row_loss.data();
              if (want_lse) outs.row_lse = out.row_lse.data();
              out.loss = cross_entropy_loss(z.view(), tg, o, outs).loss;
              out.grad.resize(g.bytes.size() / 4);
              std::memcpy(out.grad.data(), g.bytes.data(), g.bytes.size());
              return out;
            };
            const Out a = run(false), b = run(true);
            EXPECT_EQ(std::memcmp(&a.loss, &b.loss, sizeof(double)), 0) << a.loss << " vs " << b.loss;
            EXPECT_EQ(std::memcmp(a.grad.data(), b.grad.data(), a.grad.size() * 4), 0);
            EXPECT_EQ(std::memcmp(a.row_loss.data(), b.row_loss.data(), a.row_loss.size() * 4), 0);
            EXPECT_EQ(std::memcmp(a.row_lse.data(), b.row_lse.data(), a.row_lse.size() * 4), 0);
          }
  }
}

// Few long rows (column chunks over threads) keep each chunk's exps for its
// gradient in the gradient buffer itself, or in a buffer of their own where
// the gradient is the logits (in place); a thread whose
// share starts inside a row finds that row's chunk-0 maximum by itself.
// Every placement gives the bits of one thread (the row-wise path for
// N ≥ 2), and a strided gradient's padding is never written. (≥ 2^18
// elements: below, one thread runs whatever is asked.)
TEST(CrossEntropyLoss, SameBitsWhereverTheChunkExpsAreKept) {
  CrossEntropyOptions o;
  o.label_smoothing = 0.1;
  o.z_loss = 1e-4;
  for (auto [n, v] : {std::pair<std::int64_t, std::int64_t>{1, 300000}, {3, 100000}}) {
    const Buffer z = random_logits(DType::kF32, n, v, 3.0, 81);
    const auto t = random_targets(n, v, 82);
    const Buffer p = random_soft(DType::kF32, n, v, 83);
    for (const bool soft : {false, true}) {
      SCOPED_TRACE(testing::Message() << n << "x" << v << (soft ? " soft" : " hard"));
      const Bits one = run_threads(z, t, 1, o, soft ? &p : nullptr);
      auto expect_grad = [&](const Buffer& g, const char* what) {
        for (std::int64_t r = 0; r < n; ++r) {
          EXPECT_EQ(std::memcmp(g.ptr(r, 0), one.grad.data() + r * v, static_cast<std::size_t>(v) * 4), 0)
              << what << ", row " << r;
          for (std::int64_t c = v; c < g.stride; ++c) ASSERT_TRUE(std::isnan(g.get(r, c))) << what;
        }
      };
      for (const int threads : {2, 3}) {
        SCOPED_TRACE(testing::Message() << threads << " threads");
        CrossEntropyOptions ot = o;
        ot.num_threads = threads;
        const Targets tg = soft ? Targets::Soft(p.view()) : Targets::Index(t.data());
        {  // a strided gradient of its own
          Buffer g(DType::kF32, n, v, v + 16);
          CrossEntropyOutputs outs;
          outs.grad = g.mut();
          EXPECT_EQ(cross_entropy_loss(z.view(), tg, ot, outs).loss, one.loss);
          expect_grad(g, "strided");
        }
        {  // in place on the logits
          Buffer zi = z;
          CrossEntropyOutputs outs;
          outs.grad = zi.mut();
          EXPECT_EQ(cross_entropy_loss(zi.view(), tg, ot, outs).loss, one.loss);
          expect_grad(zi, "in place on the logits");
        }
      }
    }
  }
}

// The same for bfloat16 logits (staged through float32: the exps go to the
// gradient when it is float32, to their own buffer when it is bfloat16), an
// ignored row (skipped, or computed when its lse is asked for) and class
// weights: every thread count gives the bits of one thread, and the ignored
// row's gradient is 0.
TEST(CrossEntropyLoss, FewLongRowsSameBitsWithIgnoredRowsWeightsAndBfloat16) {
  const std::int64_t n = 3, v = 100000;
  const Buffer z = random_logits(DType::kBF16, n, v, 3.0, 91);
  auto t = random_targets(n, v, 92);
  t[2] = -100;  // row 1 (counted) holds the second thread's first item with 2 threads
  std::vector<float> w(static_cast<std::size_t>(v));
  for (std::int64_t c = 0; c < v; ++c) w[static_cast<std::size_t>(c)] = 0.25f + static_cast<float>(c % 7) * 0.125f;
  CrossEntropyOptions o;
  o.class_weight = w.data();
  o.label_smoothing = 0.05;
  for (const DType gd : {DType::kF32, DType::kBF16}) {
    for (const bool want_lse : {false, true}) {
      SCOPED_TRACE(testing::Message() << DTypeName(gd) << (want_lse ? ", with lse" : ""));
      struct Run {
        double loss;
        std::vector<unsigned char> grad;
        std::vector<float> lse;
      };
      auto run = [&](int threads) {
        CrossEntropyOptions ot = o;
        ot.num_threads = threads;
        Buffer g(gd, n, v);
        for (std::int64_t r = 0; r < n; ++r)  // NaN: every entry must be written, the ignored row's too
          for (std::int64_t c = 0; c < v; ++c) g.set(r, c, std::nan(""));
        Run out;
        out.lse.assign(static_cast<std::size_t>(n), 0.0f);
        CrossEntropyOutputs outs;
        outs.grad = g.mut();
        if (want_lse) outs.row_lse = out.lse.data();
        out.loss = cross_entropy_loss(z.view(), Targets::Index(t.data()), ot, outs).loss;
        std::int64_t nonzero = 0;
        for (std::int64_t c = 0; c < v; ++c) nonzero += g.get(2, c) != 0.0;
        EXPECT_EQ(nonzero, 0) << "entries of the ignored row's gradient";
        out.grad = g.bytes;
        return out;
      };
      const Run one = run(1);
      for (const int threads : {2, 3}) {
        const Run r = run(threads);
        EXPECT_EQ(r.loss, one.loss) << threads << " threads";
        EXPECT_EQ(r.grad, one.grad) << threads << " threads";
        EXPECT_EQ(std::memcmp(r.lse.data(), one.lse.data(), r.lse.size() * 4), 0) << threads << " threads";
      }
    }
  }
}

TEST(CrossEntropyLoss, ForwardOnlyMatchesFused) {
  const Buffer z = random_logits(DType::kF32, 30, 500, 3.0, 5);
  const auto t = random_targets(30, 500, 6);
  CrossEntropyOptions o;
  o.label_smoothing = 0.2;
  const double fwd = cross_entropy_loss(z.view(), Targets::Index(t.data()), o).loss;
  Buffer g(DType::kF32, 30, 500);
  CrossEntropyOutputs outs;
  outs.grad = g.mut();
  const double fused = cross_entropy_loss(z.view(), Targets::Index(t.data()), o, outs).loss;
  EXPECT_EQ(fwd, fused);
}

// ------------------------------------------------------------ backward API

TEST(CrossEntropyBackward, MatchesFusedAndPerRowUpstream) {
  const Buffer z = random_logits(DType::kF32, 9, 120, 2.0, 15);
  auto t = random_targets(9, 120, 16);
  t[4] = -100;
  CrossEntropyOptions o;
  o.label_smoothing = 0.05;
  Buffer g1(DType::kF32, 9, 120), g2(DType::kF32, 9, 120);
  std::vector<float> lse(9);
  CrossEntropyOutputs outs;
  outs.grad = g1.mut();
  outs.row_lse = lse.data();
  cross_entropy_loss(z.view(), Targets::Index(t.data()), o, outs);
  cross_entropy_backward(z.view(), Targets::Index(t.data()), lse.data(), o, nullptr, g2.mut());
  EXPECT_EQ(g1.bytes, g2.bytes);
  // reduction none with per-row upstream u_n: grad = Σ_n u_n ∂row_loss_n/∂z.
  o.reduction = Reduction::kNone;
  std::vector<float> up(9);
  for (int i = 0; i < 9; ++i) up[i] = 0.5f + 0.25f * i;
  cross_entropy_backward(z.view(), Targets::Index(t.data()), lse.data(), o, up.data(), g2.mut());
  reference::CeRefOptions ro;
  ro.reduction = reference::RefReduction::kNone;
  ro.epsilon = 0.05L;
  const auto ref = reference::cross_entropy_batch(z.rows_real(), t, {}, ro);
  for (int r = 0; r < 9; ++r)
    for (int c = 0; c < 120; ++c)
      EXPECT_TRUE(Near(g2.get(r, c), up[r] * ref.grad[r][c], 5e-7, 1e-7)) << r << "," << c;
}

// ------------------------------------------------------------ finite differences

// The options PyTorch lacks: the analytic gradient (computed by xent in
// float64) against central differences of the long-double reference loss.
TEST(CrossEntropyLoss, FiniteDifferencesForNonPyTorchOptions) {
  struct Opt {
    const char* name;
    double z_loss, temperature, softcap, gamma, eps;
    bool soft;
  };
  const Opt opts[] = {{"z_loss", 0.01, 1, 0, 0, 0, false},     {"temperature", 0, 0.6, 0, 0, 0, false},
                      {"softcap", 0, 1, 3.0, 0, 0, false},     {"focal", 0, 1, 0, 2.0, 0, false},
                      {"focal_half", 0, 1, 0, 0.5, 0.1, false}, {"all_soft", 0.01, 1.7, 4, 1.5, 0.1, true},
                      {"all_hard", 0.02, 0.8, 5, 1.0, 0.2, false}};
  const std::int64_t N = 3, V = 9;
  for (const Opt& op : opts) {
    SCOPED_TRACE(op.name);
    const Buffer z = random_logits(DType::kF64, N, V, 2.0, 31);
    const auto t = random_targets(N, V, 32);
    const Buffer p = random_soft(DType::kF64, N, V, 33);
    std::vector<float> w(V);
    for (std::int64_t i = 0; i < V; ++i) w[i] = 0.5f + 0.1f * static_cast<float>(i);
    CrossEntropyOptions o;
    o.z_loss = op.z_loss;
    o.temperature = op.temperature;
    o.softcap = op.softcap;
    o.focal_gamma = op.gamma;
    o.label_smoothing = op.eps;
    o.class_weight = w.data();
    Buffer g(DType::kF64, N, V);
    CrossEntropyOutputs outs;
    outs.grad = g.mut();
    const Targets tg = op.soft ? Targets::Soft(p.view()) : Targets::Index(t.data());
    cross_entropy_loss(z.view(), tg, o, outs);
    const auto ro = ref_options(o, w);
    const auto pr = op.soft ? p.rows_real() : std::vector<Row>{};
    const auto tt = op.soft ? std::vector<std::int64_t>{} : t;
    auto f = [&](std::span<const double> x) {
      std::vector<Row> rows(N, Row(V));
      for (std::int64_t r = 0; r < N; ++r)
        for (std::int64_t c = 0; c < V; ++c) rows[r][c] = x[r * V + c];
      return static_cast<double>(reference::cross_entropy_batch(rows, tt, pr, ro).loss);
    };
    std::vector<double> x(N * V), gr(N * V);
    for (std::int64_t r = 0; r < N; ++r)
      for (std::int64_t c = 0; c < V; ++c) {
        x[r * V + c] = z.get(r, c);
        gr[r * V + c] = g.get(r, c);
      }
    GradcheckOptions go;
    go.order = 4;
    const auto gc = gradcheck(f, x, gr, go);
    EXPECT_LT(gc.max_abs_error, 1e-8) << "worst " << gc.worst_index;
  }
}

// ------------------------------------------------------------ edge cases

TEST(CrossEntropyLoss, EmptyBatch) {
  Buffer z(DType::kF32, 0, 5);
  std::vector<std::int64_t> t;
  CrossEntropyOptions o;
  auto r = cross_entropy_loss(z.view(), Targets::Index(t.data()), o);
  EXPECT_EQ(r.loss, 0.0);
  EXPECT_EQ(r.count, 0);
  o.empty_mean = EmptyMean::kNaN;
  EXPECT_TRUE(std::isnan(cross_entropy_loss(z.view(), Targets::Index(t.data()), o).loss));
  o.reduction = Reduction::kSum;
  EXPECT_EQ(cross_entropy_loss(z.view(), Targets::Index(t.data()), o).loss, 0.0);
}

TEST(CrossEntropyLoss, AllIgnoredMean) {
  Buffer z = random_logits(DType::kF32, 4, 6, 1.0, 2);
  std::vector<std::int64_t> t(4, -100);
  Buffer g(DType::kF32, 4, 6);
  for (auto& b : g.bytes) b = 0xff;  // must be overwritten with zeros
  CrossEntropyOptions o;
  CrossEntropyOutputs outs;
  outs.grad = g.mut();
  auto r = cross_entropy_loss(z.view(), Targets::Index(t.data()), o, outs);
  EXPECT_EQ(r.loss, 0.0);
  EXPECT_EQ(r.count, 0);
  for (std::int64_t i = 0; i < 4; ++i)
    for (std::int64_t j = 0; j < 6; ++j) EXPECT_EQ(g.get(i, j), 0.0);
  o.empty_mean = EmptyMean::kNaN;
  EXPECT_TRUE(std::isnan(cross_entropy_loss(z.view(), Targets::Index(t.data()), o).loss));
  // Also with a NaN in an ignored row: ignored rows are not inspected.
  z.set(1, 2, kNaN);
  o.empty_mean = EmptyMean::kZero;
  EXPECT_EQ(cross_entropy_loss(z.view(), Targets::Index(t.data()), o).loss, 0.0);
}

template <class F>
void expect_error(F&& f, ErrorCode code, std::initializer_list<const char*> words) {
  try {
    f();
    ADD_FAILURE() << "no Error thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const char* w : words) EXPECT_NE(std::string(e.what()).find(w), std::string::npos) << e.what();
  }
}

// A NaN logit of either sign and any payload is found, wherever it sits in
// a row (a full block, the vector tail, the partial last vector, a short
// row's tile, a later chunk of a long row): the AVX-512 and AVX2 statistics
// passes find NaN only through Σexp, so their exp must keep every NaN NaN
// (an exponent-field add on a NaN's bits can turn it into a number).
TEST(CrossEntropyLoss, NaNOfAnySignAndPayloadIsFound) {
  const std::uint32_t nans[] = {0x7FC00000u, 0xFFC00000u, 0x7FC00FF8u, 0xFFC7FFF8u,
                                0x7F800001u, 0xFF812345u, 0x7FFFFFFFu, 0xFFBFFFFFu};
  struct Shape {
    std::int64_t cols;
    std::vector<std::int64_t> at;
  };
  const Shape shapes[] = {{10, {0, 9}},
                          {37, {0, 17, 33, 36}},
                          {4000, {5, 1000, 3999}},
                          {300000, {3, 150001, 299999}}};
  for (const Shape& sh : shapes) {
    const std::int64_t n = sh.cols >= 300000 ? 1 : 3;
    Buffer z = random_logits(DType::kF32, n, sh.cols, 2.0, 11);
    std::vector<std::int64_t> t(static_cast<std::size_t>(n), 1);
    Buffer soft(DType::kF32, n, sh.cols);
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t c = 0; c < sh.cols; ++c) soft.set(r, c, 1.0 / static_cast<double>(sh.cols));
    Buffer g(DType::kF32, n, sh.cols);
    for (std::uint32_t bits : nans) {
      for (std::int64_t c : sh.at) {
        Buffer zn = z;
        const std::int64_t r = n - 1;
        std::memcpy(zn.ptr(r, c), &bits, sizeof bits);
        const std::string where = "logits[" + std::to_string(r) + "][" + std::to_string(c) + "]";
        for (int mode = 0; mode < 3; ++mode) {
          CrossEntropyOptions o;
          o.num_threads = 2;
          if (mode == 1) o.label_smoothing = 0.1;
          CrossEntropyOutputs outs;
          if (mode != 0) outs.grad = g.mut();
          SCOPED_TRACE(where + " bits " + std::to_string(bits) + " mode " + std::to_string(mode));
          expect_error(
              [&] {
                cross_entropy_loss(zn.view(), mode == 2 ? Targets::Soft(soft.view()) : Targets::Index(t.data()), o,
                                   outs);
              },
              ErrorCode::kNonFinite, {where.c_str(), "nan"});
        }
      }
    }
  }
}

TEST(CrossEntropyLoss, Errors) {
  Buffer z = random_logits(DType::kF32, 5, 40000, 1.0, 2);
  std::vector<std::int64_t> t = {1, 2, 3, 4, 5};
  CrossEntropyOptions o;
  Buffer g(DType::kF32, 5, 40000);
  CrossEntropyOutputs outs;
  outs.grad = g.mut();
  // NaN and +inf name the row and the column.
  Buffer zn = z;
  zn.set(3, 35000, kNaN);
  expect_error([&] { cross_entropy_loss(zn.view(), Targets::Index(t.data()), o, outs); },
               ErrorCode::kNonFinite, {"logits[3][35000]", "nan"});
  Buffer zi = z;
  zi.set(2, 17, kInfD);
  zi.set(4, 1, kNaN);
  expect_error([&] { cross_entropy_loss(zi.view(), Targets::Index(t.data()), o); },
               ErrorCode::kNonFinite, {"logits[2][17]", "inf"});
  // The same in short rows (one row per lane).
  Buffer zs = random_logits(DType::kF32, 100, 10, 1.0, 3);
  std::vector<std::int64_t> ts(100, 1);
  zs.set(37, 3, kNaN);
  expect_error([&] { cross_entropy_loss(zs.view(), Targets::Index(ts.data()), o); }, ErrorCode::kNonFinite,
               {"logits[37][3]"});
  for (int c = 0; c < 10; ++c) zs.set(37, c, -kInfD);
  expect_error([&] { cross_entropy_loss(zs.view(), Targets::Index(ts.data()), o); }, ErrorCode::kUndefined,
               {"row 37"});
  // Out-of-range targets name the row and the value.
  std::vector<std::int64_t> tb = {1, 2, 40000, 4, 5};
  expect_error([&] { cross_entropy_loss(z.view(), Targets::Index(tb.data()), o); },
               ErrorCode::kTargetOutOfRange, {"targets[2]", "40000"});
  tb[2] = -5;
  expect_error([&] { cross_entropy_loss(z.view(), Targets::Index(tb.data()), o); },
               ErrorCode::kTargetOutOfRange, {"targets[2]", "-5"});
  // Many targets are checked on all threads: still the first bad row, for
  // any thread count, int64 and int32.
  {
    const std::int64_t n = 200000;
    Buffer zm = random_logits(DType::kF32, n, 4, 1.0, 5);
    std::vector<std::int64_t> tm(static_cast<std::size_t>(n), 1);
    tm[150001] = 9;
    tm[70001] = -3;
    tm[5] = -100;  // ignore_index: not an error
    std::vector<std::int32_t> tm32(tm.begin(), tm.end());
    for (int threads : {1, 2, 3}) {
      CrossEntropyOptions om = o;
      om.num_threads = threads;
      expect_error([&] { cross_entropy_loss(zm.view(), Targets::Index(tm.data()), om); },
                   ErrorCode::kTargetOutOfRange, {"targets[70001]", "-3"});
      expect_error([&] { cross_entropy_loss(zm.view(), Targets::Index(tm32.data()), om); },
                   ErrorCode::kTargetOutOfRange, {"targets[70001]", "-3"});
    }
    tm[70001] = tm[150001] = 2;
    const CrossEntropyResult rm = cross_entropy_loss(zm.view(), Targets::Index(tm.data()), o);
    EXPECT_EQ(rm.count, n - 1);
    EXPECT_EQ(rm.weight_sum, static_cast<double>(n - 1));
  }
  // All -inf row (not ignored): undefined.
  Buffer za(DType::kF32, 2, 3);
  for (int c = 0; c < 3; ++c) za.set(0, c, 1.0), za.set(1, c, -kInfD);
  std::vector<std::int64_t> t2 = {0, 1};
  expect_error([&] { cross_entropy_loss(za.view(), Targets::Index(t2.data()), o); },
               ErrorCode::kUndefined, {"row 1"});
  t2[1] = -100;  // ignored: fine
  EXPECT_NO_THROW(cross_entropy_loss(za.view(), Targets::Index(t2.data()), o));
  // V = 0.
  Buffer z0(DType::kF32, 2, 0);
  expect_error([&] { cross_entropy_loss(z0.view(), Targets::Index(t.data()), o); }, ErrorCode::kEmpty, {"V = 0"});
  // Bad options.
  CrossEntropyOptions bo;
  bo.label_smoothing = 1.5;
  expect_error([&] { cross_entropy_loss(z.view(), Targets::Index(t.data()), bo); },
               ErrorCode::kInvalidArgument, {"label_smoothing"});
  bo = {};
  bo.temperature = 0;
  expect_error([&] { cross_entropy_loss(z.view(), Targets::Index(t.data()), bo); },
               ErrorCode::kInvalidArgument, {"temperature"});
  bo = {};
  bo.focal_gamma = -1;
  expect_error([&] { cross_entropy_loss(z.view(), Targets::Index(t.data()), bo); },
               ErrorCode::kInvalidArgument, {"focal_gamma"});
  bo = {};
  std::vector<float> w(40000, 1.0f);
  w[7] = -1;
  bo.class_weight = w.data();
  expect_error([&] { cross_entropy_loss(z.view(), Targets::Index(t.data()), bo); },
               ErrorCode::kInvalidArgument, {"class_weight[7]"});
  // Shapes.
  Buffer gs(DType::kF32, 4, 40000);
  CrossEntropyOutputs so;
  so.grad = gs.mut();
  expect_error([&] { cross_entropy_loss(z.view(), Targets::Index(t.data()), o, so); },
               ErrorCode::kShapeMismatch, {"grad"});
  MatrixView bad = z.view();
  bad.row_stride = 10;
  expect_error([&] { cross_entropy_loss(bad, Targets::Index(t.data()), o); }, ErrorCode::kShapeMismatch,
               {"row_stride"});
  // A gradient that overlaps the logits without being them.
  Buffer zc = z;
  CrossEntropyOutputs ov;
  ov.grad = MutableMatrixView{zc.bytes.data() + 4, DType::kF32, 4, 40000, 40000};
  MatrixView zcv = zc.view();
  zcv.rows = 4;
  expect_error([&] { cross_entropy_loss(zcv, Targets::Index(t.data()), o, ov); }, ErrorCode::kInvalidArgument,
               {"overlaps"});
  // A gradient that overlaps an input it must not overwrite: the class
  // weights, the index targets, the backward's per-row upstream.
  {
    const Buffer zs = random_logits(DType::kF32, 3, 8, 1.0, 5);
    std::vector<std::int64_t> ts = {1, 2, 3};
    std::vector<float> store(3 * 8 + 16, 0.5f);  // the gradient, and an input inside it
    CrossEntropyOutputs go;
    go.grad = MutableMatrixView{store.data(), DType::kF32, 3, 8, 8};
    CrossEntropyOptions wo;
    wo.class_weight = store.data() + 10;
    expect_error([&] { cross_entropy_loss(zs.view(), Targets::Index(ts.data()), wo, go); },
                 ErrorCode::kInvalidArgument, {"grad overlaps the class weights"});
    std::vector<std::int64_t> big(64, 0);
    go.grad = MutableMatrixView{reinterpret_cast<float*>(big.data()) + 2, DType::kF32, 3, 8, 8};
    expect_error([&] { cross_entropy_loss(zs.view(), Targets::Index(big.data()), o, go); },
                 ErrorCode::kInvalidArgument, {"grad overlaps the targets"});
    CrossEntropyOptions no;
    no.reduction = Reduction::kNone;
    expect_error([&] {
      cross_entropy_backward(zs.view(), Targets::Index(ts.data()), nullptr, no, store.data() + 5,
                             MutableMatrixView{store.data(), DType::kF32, 3, 8, 8});
    }, ErrorCode::kInvalidArgument, {"grad overlaps the row_upstream"});
    // Disjoint: fine.
    wo.class_weight = store.data() + 3 * 8;
    go.grad = MutableMatrixView{store.data(), DType::kF32, 3, 8, 8};
    EXPECT_NO_THROW(cross_entropy_loss(zs.view(), Targets::Index(ts.data()), wo, go));
  }
}

TEST(CrossEntropyLoss, SoftTargetErrors) {
  Buffer z = random_logits(DType::kF32, 3, 10, 1.0, 2);
  Buffer p = random_soft(DType::kF32, 3, 10, 4);
  CrossEntropyOptions o;
  Buffer pn = p;
  pn.set(1, 4, -0.25);
  expect_error([&] { cross_entropy_loss(z.view(), Targets::Soft(pn.view()), o); },
               ErrorCode::kNotDistribution, {"[1][4]", "-0.25"});
  Buffer ps = p;
  ps.set(2, 0, ps.get(2, 0) + 0.01);
  expect_error([&] { cross_entropy_loss(z.view(), Targets::Soft(ps.view()), o); },
               ErrorCode::kNotDistribution, {"row 2", "sums to"});
  Buffer pnan = p;
  pnan.set(0, 9, kNaN);
  expect_error([&] { cross_entropy_loss(z.view(), Targets::Soft(pnan.view()), o); },
               ErrorCode::kNonFinite, {"[0][9]"});
  // Long rows (the row-wise kernels) report the same way.
  Buffer zl = random_logits(DType::kF32, 3, 1000, 1.0, 2);
  Buffer pl = random_soft(DType::kF32, 3, 1000, 4);
  pl.set(2, 700, 1.5);
  expect_error([&] { cross_entropy_loss(zl.view(), Targets::Soft(pl.view()), o); },
               ErrorCode::kNotDistribution, {"[2][700]", "1.5"});
  // Every kind of bad value, in a full block, a whole vector after the
  // blocks and the partial last vector, in rows of 1000 and 40000 columns
  // (one chunk and several): the row-wise pass tracks the smallest and
  // largest p_j and finds a NaN through Σp.
  for (std::int64_t v : {1000, 40000}) {
    Buffer zv = random_logits(DType::kF32, 3, v, 1.0, 2);
    Buffer pv = random_soft(DType::kF32, 3, v, 4);
    for (std::int64_t col : {std::int64_t{5}, v - 9, v - 1})
      for (double bad : {-0.25, 1.5, kNaN, kInfD, -kInfD}) {
        Buffer pb = pv;
        pb.set(1, col, bad);
        const std::string where = "[1][" + std::to_string(col) + "]";
        SCOPED_TRACE(where + " = " + std::to_string(bad));
        expect_error([&] { cross_entropy_loss(zv.view(), Targets::Soft(pb.view()), o); },
                     std::isnan(bad) ? ErrorCode::kNonFinite : ErrorCode::kNotDistribution, {where.c_str()});
      }
  }
}

// Few long rows on several threads: a row whose first chunk is all -inf (a
// masked prefix: its later chunks have no exp reference to start from) gives
// the bits of one thread; a NaN in the second thread's share, and a row
// whose logits are all -inf, are the errors they are on one thread, naming
// the row (and the column).
TEST(CrossEntropyLoss, FewLongRowsMaskedPrefixAndErrorsOnThreads) {
  const std::int64_t v = 300000;
  Buffer z = random_logits(DType::kF32, 1, v, 3.0, 95);
  for (std::int64_t c = 0; c < 40000; ++c) z.set(0, c, -std::numeric_limits<double>::infinity());
  const std::vector<std::int64_t> t = {123456};
  CrossEntropyOptions o;
  o.label_smoothing = 0.1;  // a masked class with weight: smoothing's Σ c (lse − z) is +inf
  CrossEntropyOptions plain;
  const Bits one = run_threads(z, t, 1, plain);
  EXPECT_TRUE(std::isfinite(one.loss));
  for (const int threads : {2, 3}) expect_same_bits(one, run_threads(z, t, threads, plain));
  EXPECT_EQ(run_threads(z, t, 2, o).loss, std::numeric_limits<double>::infinity());
  for (const int threads : {1, 2, 3}) {
    SCOPED_TRACE(testing::Message() << threads << " threads");
    CrossEntropyOptions ot;
    ot.num_threads = threads;
    Buffer zn = random_logits(DType::kF32, 2, v, 3.0, 96);
    zn.set(1, 250000, std::nan(""));
    Buffer g(DType::kF32, 2, v);
    CrossEntropyOutputs outs;
    outs.grad = g.mut();
    const std::vector<std::int64_t> t2 = {5, 6};
    expect_error([&] { cross_entropy_loss(zn.view(), Targets::Index(t2.data()), ot, outs); },
                 ErrorCode::kNonFinite, {"logits[1][250000]"});
    Buffer zi = random_logits(DType::kF32, 2, v, 3.0, 97);
    for (std::int64_t c = 0; c < v; ++c) zi.set(0, c, -std::numeric_limits<double>::infinity());
    expect_error([&] { cross_entropy_loss(zi.view(), Targets::Index(t2.data()), ot, outs); },
                 ErrorCode::kUndefined, {"row 0"});
  }
}

// Short rows: a tile's logit columns are transposed during the tile before
// it (see small_rows-inl.h), within a block of up to 256 rows (N / 64). A
// NaN, a +inf and an all -inf row in the second tile, in a block's last
// tile, at the end of the first thread's share and in the last block's two
// tiles are the errors they are, naming the first failing row, in place and
// out of place, on 1 and 2 threads; with a second bad row at the start of
// the second thread's share (processed before the first one on 2 threads).
TEST(CrossEntropyLoss, ShortRowsErrorsInEveryTile) {
  const std::int64_t n = 20000;  // blocks of 256 rows, the last of 32
  for (const std::int64_t v : {10, 33})
    for (const std::int64_t bad : {16, 17, 500, 9990, 19990, 19999})
      for (int kind = 0; kind < 3; ++kind)
        for (const int threads : {1, 2})
          for (const bool inplace : {false, true}) {
            SCOPED_TRACE(testing::Message() << "V " << v << " row " << bad << " kind " << kind << " threads "
                                            << threads << (inplace ? " in place" : ""));
            Buffer z = random_logits(DType::kF32, n, v, 2.0, 41);
            const std::int64_t col = (bad * 7) % v;
            if (kind == 0) z.set(bad, col, std::nan(""));
            if (kind == 1) z.set(bad, col, std::numeric_limits<double>::infinity());
            if (kind == 2)
              for (std::int64_t c = 0; c < v; ++c) z.set(bad, c, -std::numeric_limits<double>::infinity());
            if (bad == 9990) z.set(10100, 0, std::nan(""));
            std::vector<std::int64_t> t(static_cast<std::size_t>(n));
            for (std::int64_t r = 0; r < n; ++r) t[static_cast<std::size_t>(r)] = (r * 3) % v;
            Buffer g(DType::kF32, n, v);
            CrossEntropyOptions o;
            o.num_threads = threads;
            CrossEntropyOutputs outs;
            outs.grad = inplace ? z.mut() : g.mut();
            auto run = [&] { cross_entropy_loss(z.view(), Targets::Index(t.data()), o, outs); };
            if (kind == 2)
              expect_error(run, ErrorCode::kUndefined, {("row " + std::to_string(bad)).c_str()});
            else
              expect_error(run, ErrorCode::kNonFinite,
                           {("logits[" + std::to_string(bad) + "][" + std::to_string(col) + "]").c_str()});
          }
}

// Errors in paired rows name the first failing row: either row of a pair,
// the first of two failing rows of one pair, before a failing row of a later
// pair; with and without a gradient, on 1 and 2 threads.
TEST(CrossEntropyLoss, ShortRowsPairedErrors) {
  const std::int64_t n = 64, v = 1000;
  const ForcePairingRows force(true);
  const double inf = std::numeric_limits<double>::infinity();
  for (const std::int64_t bad : {8, 9})
    for (int kind = 0; kind < 2; ++kind)
      for (const bool grad : {true, false})
        for (const int threads : {1, 2}) {
          SCOPED_TRACE(testing::Message() << "row " << bad << " kind " << kind << (grad ? " fwd+bwd" : " fwd")
                                          << " threads " << threads);
          Buffer z = random_logits(DType::kF32, n, v, 2.0, 71);
          if (kind == 0) {
            z.set(bad, 123, std::nan(""));
            if (bad == 8) z.set(9, 5, inf);  // the pair's second row fails too
          } else {
            for (std::int64_t c = 0; c < v; ++c) z.set(bad, c, -inf);
          }
          z.set(40, 7, std::nan(""));  // a later pair (the other thread's, on 2)
          const auto t = random_targets(n, v, 72);
          Buffer g(DType::kF32, n, v);
          CrossEntropyOptions o;
          o.num_threads = threads;
          CrossEntropyOutputs outs;
          if (grad) outs.grad = g.mut();
          auto run = [&] { cross_entropy_loss(z.view(), Targets::Index(t.data()), o, outs); };
          if (kind == 1)
            expect_error(run, ErrorCode::kUndefined, {("row " + std::to_string(bad)).c_str()});
          else
            expect_error(run, ErrorCode::kNonFinite, {("logits[" + std::to_string(bad) + "][123]").c_str()});
        }
}

TEST(LossNames, DTypeAndReduction) {
  EXPECT_STREQ(DTypeName(DType::kBF16), "bfloat16");
  EXPECT_STREQ(DTypeName(DType::kF16), "float16");
  EXPECT_EQ(DTypeSize(DType::kF64), 8u);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_STREQ(ReductionName(Reduction::kMean), "mean");
  EXPECT_STREQ(ReductionName(Reduction::kNone), "none");
}

}  // namespace
}  // namespace xent::test

// Regression: the scalar path (temperature ≠ 1, softcap, focal) computed the
// gradient at a −inf (masked) logit as f·(1 + γ·q·(−log q)/(1 − q)) with
// q = 0 and −log q = ∞: 0·∞ = NaN, even for γ = 0 (found by the MPI tests of
// vocab_parallel_cross_entropy). A masked class has q = 0 and gets gradient 0.
TEST(CrossEntropyLoss, MaskedLogitOnTheScalarPathHasZeroGradient) {
  const double ninf = -std::numeric_limits<double>::infinity();
  for (double gamma : {0.0, 2.0}) {
    for (double temperature : {1.0, 2.0}) {
      for (double softcap : {0.0, 5.0}) {
        std::vector<double> z = {1.0, ninf, 0.5, -0.3, ninf, 2.0};
        const std::vector<std::int64_t> t = {0};
        xent::CrossEntropyOptions o;
        o.focal_gamma = gamma;
        o.temperature = temperature;
        o.softcap = softcap;
        std::vector<double> g(z.size(), -7.0);
        xent::CrossEntropyOutputs out;
        out.grad = {g.data(), xent::DType::kF64, 1, 6, 6};
        const auto r = xent::cross_entropy_loss({z.data(), xent::DType::kF64, 1, 6, 6},
                                                xent::Targets::Index(t.data()), o, out);
        EXPECT_TRUE(std::isfinite(r.loss));
        double sum = 0;
        for (std::size_t j = 0; j < g.size(); ++j) {
          EXPECT_TRUE(std::isfinite(g[j])) << "gamma " << gamma << " T " << temperature
                                           << " softcap " << softcap << " j " << j;
          sum += g[j];
        }
        EXPECT_EQ(g[1], 0.0);
        EXPECT_EQ(g[4], 0.0);
        // (q − onehot)/T sums to 0; softcap scales each entry by its own 1 − tanh².
        if (gamma == 0 && softcap == 0) EXPECT_NEAR(sum, 0.0, 1e-15);
      }
    }
  }
}
