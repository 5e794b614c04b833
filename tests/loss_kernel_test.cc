// The SIMD kernels' own exp against the long-double exp: the loss accuracy
// rests on it (every e_j = exp(z_j − max) has x ≤ 0).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "cpu/kernels.h"

namespace xent::cpu {
namespace {

// |got − want| in units of float's ulp at want.
double UlpError(float got, long double want) {
  const double ulp = std::nextafter(static_cast<float>(want), INFINITY) - static_cast<float>(want);
  return std::fabs(static_cast<double>(got - want)) / ulp;
}

TEST(KernelExp, WithinTwoUlpOnTheWholeRange) {
  // Every float in [−86.6, 0] would be 1.1e9 values; a dense stride of
  // them, plus the ends and the values near −ln2/2 steps.
  std::vector<float> x;
  for (float v = 0.0f; v > -86.6f; v = std::nextafter(v, -100.0f) - 3.7e-5f * (1.0f - v)) x.push_back(v);
  x.push_back(-0.0f);
  x.push_back(-1e-30f);
  x.push_back(-86.59f);
  std::vector<float> y(x.size());
  ExpRowF32(x.data(), y.data(), x.size());
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const long double want = std::exp(static_cast<long double>(x[i]));
    const double err = UlpError(y[i], want);
    worst = std::max(worst, err);
    ASSERT_LE(err, 2.0) << "exp(" << x[i] << ") = " << y[i] << ", want " << static_cast<double>(want);
  }
  EXPECT_EQ(y[0], 1.0f);  // exp(0) is exact: the true-class gradient relies on it
  RecordProperty("max_ulp", std::to_string(worst));
  std::printf("kernel exp: %zu points, max error %.3f ulp\n", x.size(), worst);
}

TEST(KernelExp, UnderflowAndMasks) {
  const float x[] = {-87.0f, -100.0f, -1e30f, -INFINITY};
  float y[4];
  ExpRowF32(x, y, 4);
  // Below the normal range: 0 or the subnormal (both within 1e-37 of exp).
  EXPECT_LE(y[0], 2.4e-38f);
  EXPECT_LE(y[1], 2.4e-38f);
  EXPECT_GE(y[0], 0.0f);
  EXPECT_GE(y[1], 0.0f);
  EXPECT_EQ(y[2], 0.0f);  // masks are exactly 0
  EXPECT_EQ(y[3], 0.0f);
}

// The short-row tile's log(1 + x), x = Σexp − 1 ∈ [0, 127] (V ≤ 128): on
// AVX-512 a table and a polynomial instead of Highway's Log1p. Relative
// error against the long-double log1p ≤ 2e-14 (it is ≤ 2^-53 absolute from
// rounding 1 + x where x ≥ 1/64: 7e-15 relative just above 1/64), tiny x
// (confident rows) to full relative precision, and the special values an
// unchecked (ignored) row can hold.
TEST(KernelLog1p, TileLog1pAccurateOnTheSumRange) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> x;
  for (int i = 0; i < 200000; ++i) x.push_back(std::expm1(u(rng) * std::log(128.0)));  // 1 + x log-uniform on [1, 128]
  for (int i = 0; i < 50000; ++i) x.push_back(std::ldexp(u(rng), -static_cast<int>(rng() % 60)));  // tiny
  for (int i = -40; i <= 40; ++i) x.push_back(1.0 / 64 + i * 0x1p-58);  // the switch to the table
  for (double v : {0.0, 1.0 / 16, 1.0, 2.0, 127.0, 1e-300, 4.9e-324}) x.push_back(v);
  std::vector<double> y(x.size());
  TileLog1pF64(x.data(), y.data(), x.size());
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const long double want = std::log1p(static_cast<long double>(x[i]));
    const double rel = want == 0 ? std::fabs(y[i]) : static_cast<double>(std::fabs((y[i] - want) / want));
    worst = std::max(worst, rel);
    ASSERT_LE(rel, 2e-14) << "log1p(" << x[i] << ") = " << y[i] << ", want " << static_cast<double>(want);
  }
  std::printf("tile log1p: %zu points, max relative error %.3g\n", x.size(), worst);
  const double special[] = {-1.0, INFINITY, NAN};
  double ys[3];
  TileLog1pF64(special, ys, 3);
  EXPECT_EQ(ys[0], -INFINITY);  // s = 0: an all -inf row's lse is -inf
  EXPECT_EQ(ys[1], INFINITY);
  EXPECT_TRUE(std::isnan(ys[2]));
}

// The index-target scan (count of kept rows, first bad row) against a plain
// loop: bad entries at every position of a block and in the tail, int64 and
// int32 targets, an ignore index inside and outside int32, and an int32 run
// long enough to empty the per-lane counters (every 2^16 blocks).
TEST(TargetScan, MatchesAPlainLoop) {
  std::mt19937_64 rng(11);
  auto plain = [](const auto& t, std::int64_t V, std::int64_t ig) {
    TargetScan s;
    for (std::size_t i = 0; i < t.size(); ++i) {
      const std::int64_t v = t[i];
      if (v == ig) continue;
      if (v < 0 || v >= V) {
        s.first_bad = static_cast<std::int64_t>(i);
        return s;
      }
      ++s.count;
    }
    return s;
  };
  for (std::int64_t ig : {std::int64_t{-100}, std::int64_t{3}, std::int64_t{1} << 40, -(std::int64_t{1} << 40)})
    for (std::size_t n : {0, 1, 7, 64, 100, 257, 1000})
      for (int bad_at = -1; bad_at < static_cast<int>(n); bad_at += 1 + static_cast<int>(n) / 13) {
        const std::int64_t V = 10;
        std::vector<std::int64_t> t64(n);
        for (auto& v : t64) v = rng() % 4 == 0 ? ig : static_cast<std::int64_t>(rng() % V);
        if (bad_at >= 0) t64[static_cast<std::size_t>(bad_at)] = rng() % 2 ? V : -1;
        std::vector<std::int32_t> t32(t64.begin(), t64.end());  // (ignore indices outside int32 wrap)
        const TargetScan a = ScanTargets(t64.data(), n, V, ig), b = ScanTargets(t32.data(), n, V, ig);
        const TargetScan wa = plain(t64, V, ig), wb = plain(t32, V, ig);
        ASSERT_EQ(a.first_bad, wa.first_bad) << n << " " << bad_at << " " << ig;
        ASSERT_EQ(b.first_bad, wb.first_bad) << n << " " << bad_at << " " << ig;
        if (wa.first_bad < 0) ASSERT_EQ(a.count, wa.count) << n << " " << ig;  // (only meaningful then)
        if (wb.first_bad < 0) ASSERT_EQ(b.count, wb.count) << n << " " << ig;
      }
  // 2^16 blocks of 4 AVX-512 int32 vectors and more.
  std::vector<std::int32_t> big((std::size_t{1} << 22) + 77);
  for (auto& v : big) v = static_cast<std::int32_t>(rng() % 5);
  big[1000] = -100;
  const TargetScan s = ScanTargets(big.data(), big.size(), 5, -100);
  EXPECT_EQ(s.count, static_cast<std::int64_t>(big.size()) - 1);
  EXPECT_EQ(s.first_bad, -1);
  big.back() = 5;
  EXPECT_EQ(ScanTargets(big.data(), big.size(), 5, -100).first_bad, static_cast<std::int64_t>(big.size()) - 1);
}

// The statistics pass runs most blocks' exps without their underflow test
// (AVX2: blocks wholly within −86.6 ≤ z − ref < 0). Rows whose logits sit
// on both sides of that edge, with -inf masks and far-below values in some
// blocks and not in others: every stored exp must be the exp of its own
// z − ref (within 2 ulp of the long-double one above the edge, 0 or a
// subnormal below it, exactly 0 for -inf), and Σexp the long-double sum.
// A block sent to the wrong exp would show as a garbage exponent here.
TEST(KernelStats, ExpsAtTheUnderflowEdge) {
  const float edge[] = {-86.59f, -86.6f, -86.61f, -86.7f, -87.0f, -87.3f, -87.5f, -90.0f, -150.0f, -1e30f,
                        -std::numeric_limits<float>::infinity()};
  std::mt19937 rng(7);
  for (const std::size_t n : {std::size_t{1000}, std::size_t{4096}, std::size_t{20000}}) {
    for (const bool given_ref : {false, true}) {
      const float mx = 3.25f;
      std::vector<float> z(n);
      std::uniform_real_distribution<float> u(-86.5f, 0.0f);
      for (auto& v : z) v = mx + u(rng);
      // Every 7th block of 32 untouched (all within 86.5 of the maximum);
      // the others get one or two edge values at varying lanes.
      for (std::size_t blk = 0; blk * 32 < n; ++blk) {
        if (blk % 7 == 3) continue;
        const std::size_t j = blk * 32 + (blk * 5) % 32;
        if (j < n) z[j] = mx + edge[blk % std::size(edge)];
        const std::size_t j2 = blk * 32 + (blk * 11 + 3) % 32;
        if (blk % 3 == 0 && j2 < n) z[j2] = mx + edge[(blk / 3) % std::size(edge)];
      }
      z[n / 2] = mx;  // the maximum (mid-row: a running maximum rises to it)
      CoefSpec spec;
      std::vector<float> e(n, -1.0f);
      std::vector<Segment> segs;
      spec.e_out = e.data();
      spec.segments = &segs;
      if (given_ref) spec.init_ref = mx;
      ChunkStats st;
      ChunkStatsF32(z.data(), n, spec, &st);
      ASSERT_FALSE(st.nonfinite);
      ASSERT_EQ(st.max, mx);
      std::size_t seg = 0;
      for (std::size_t j = 0; j < n; ++j) {
        while (seg + 1 < segs.size() && segs[seg + 1].start <= j) ++seg;
        const float x = z[j] - static_cast<float>(segs[seg].ref);  // the kernel's own argument
        const long double want = std::exp(static_cast<long double>(x));
        if (std::isinf(x)) {
          ASSERT_EQ(e[j], 0.0f) << "n " << n << " column " << j;
        } else if (x < -86.6f) {
          // Below the edge a kernel may flush to 0 or a subnormal (AVX2's
          // blocks without the underflow test) or give the exp itself
          // (AVX-512: exp(−86.61) = 2.43e-38 is still a normal float).
          ASSERT_GE(e[j], 0.0f) << "n " << n << " column " << j << " x " << x;
          if (e[j] > 2.4e-38f)
            ASSERT_LE(UlpError(e[j], want), 2.0) << "n " << n << " column " << j << " x " << x << " exp " << e[j];
        } else {
          ASSERT_LE(UlpError(e[j], want), 2.0)
              << "n " << n << " column " << j << " x " << x << " exp " << e[j];
        }
      }
      // Σexp against the final reference: the terms taken before the
      // maximum was reached were rescaled, so compare with all terms.
      long double all = 0;
      for (std::size_t j = 0; j < n; ++j) all += std::exp(static_cast<long double>(z[j]) - mx);
      EXPECT_NEAR(st.sum_exp, static_cast<double>(all), 1e-6 * static_cast<double>(all)) << "n " << n;
    }
  }
}

// A NaN logit marks the chunk non-finite wherever it sits, also beside a
// -inf in the same lane of the same block.
TEST(KernelStats, NaNBesideMasksIsFlagged) {
  for (const std::size_t n : {std::size_t{64}, std::size_t{1000}, std::size_t{20000}}) {
    for (std::size_t at = 0; at + 16 < n; at += n / 7 + 1) {
      for (const std::size_t lane_step : {std::size_t{4}, std::size_t{8}, std::size_t{16}}) {
        std::vector<float> z(n);
        for (std::size_t j = 0; j < n; ++j) z[j] = std::sin(0.37f * static_cast<float>(j)) * 5.0f;
        z[at] = -std::numeric_limits<float>::infinity();
        z[at + lane_step] = std::numeric_limits<float>::quiet_NaN();
        for (const bool store : {false, true}) {
          std::vector<float> e(n);
          CoefSpec spec;
          if (store) spec.e_out = e.data();
          ChunkStats st;
          ChunkStatsF32(z.data(), n, spec, &st);
          EXPECT_TRUE(st.nonfinite) << "n " << n << " at " << at << " step " << lane_step;
        }
      }
    }
  }
}

// A maximum of zero held as +0 and as −0: every one of them is an exactly-1
// term, counted apart from the rest (the AVX2 block test must not take a −0
// for a value below the reference).
TEST(KernelStats, ZeroMaximumOfEitherSign) {
  for (const std::size_t n : {std::size_t{1000}, std::size_t{20000}}) {
    for (const bool given_ref : {false, true}) {
      std::vector<float> z(n);
      for (std::size_t j = 0; j < n; ++j) z[j] = -1.0f - std::fabs(std::sin(0.37f * static_cast<float>(j))) * 20.0f;
      std::size_t zeros = 0;
      for (std::size_t j = 5; j < n; j += 97) {
        z[j] = (j / 97) % 2 ? -0.0f : 0.0f;
        ++zeros;
      }
      long double rest = 0;
      for (const float v : z)
        if (v != 0.0f) rest += std::exp(static_cast<long double>(v));
      CoefSpec spec;
      if (given_ref) spec.init_ref = 0.0;
      ChunkStats st;
      ChunkStatsF32(z.data(), n, spec, &st);
      EXPECT_EQ(st.max, 0.0);
      EXPECT_EQ(st.ones, static_cast<double>(zeros)) << "n " << n;
      EXPECT_NEAR(st.rest, static_cast<double>(rest), 1e-6 * static_cast<double>(rest)) << "n " << n;
    }
  }
}

// The gradient pass writes the hard target's own entry (fix_index) inside
// the kernel, in the one vector that holds it: at every position of rows of
// many lengths, with streaming stores from every misalignment (peeled
// prologue, pairs, single vectors, partial tail) and with plain stores, from
// stored exps and recomputing them, the entry is fix_value exactly and every
// other entry has the bits of the same pass without a target.
TEST(KernelGrad, TargetEntryAtEveryPosition) {
  std::vector<float> z(300), gbuf(300 + 64), ref(300 + 64);
  for (std::size_t j = 0; j < z.size(); ++j) z[j] = -std::fabs(std::sin(0.61f * static_cast<float>(j))) * 9.0f;
  for (const std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{8}, std::size_t{9}, std::size_t{16},
                              std::size_t{17}, std::size_t{31}, std::size_t{40}, std::size_t{63}, std::size_t{257}}) {
    for (std::size_t mis = 0; mis < 16; mis += 3) {
      float* g = gbuf.data() + mis;
      float* want = ref.data() + mis;
      for (const bool stream : {false, true}) {
        for (const bool from_exp : {false, true}) {
          GradSpec spec;
          spec.max = from_exp ? 0.0 : 0.5;
          spec.alpha = 0.37;
          spec.subtract = true;
          spec.beta = 1e-3;
          spec.stream = stream;
          spec.from_exp = from_exp;
          ChunkGradF32(z.data(), n, want, spec);  // no target
          StreamFence();
          for (std::size_t fix = 0; fix < n; ++fix) {
            GradSpec f = spec;
            f.fix_index = fix;
            f.fix_value = -0.75;
            ChunkGradF32(z.data(), n, g, f);
            StreamFence();
            for (std::size_t j = 0; j < n; ++j) {
              if (j == fix)
                ASSERT_EQ(g[j], -0.75f) << "n " << n << " mis " << mis << " fix " << fix;
              else
                ASSERT_EQ(g[j], want[j]) << "n " << n << " mis " << mis << " fix " << fix << " j " << j;
            }
          }
          // And the pass without a target against the formula.
          for (std::size_t j = 0; j < n; ++j) {
            const double e = from_exp ? z[j] : std::exp(static_cast<double>(z[j]) - 0.5);
            EXPECT_NEAR(want[j], 0.37 * e - 1e-3, 1e-6) << "n " << n << " j " << j;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace xent::cpu
