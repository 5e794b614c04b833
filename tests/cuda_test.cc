// The CUDA backend (xent/cuda.h) against the CPU library on the same inputs:
// fused cross-entropy (every option, three dtypes, strides, in place, V up to
// 262144, -inf masks, ignore_index, errors, determinism), its backward, BCE
// with logits and the fused linear + cross-entropy. Every test skips when
// there is no CUDA device (cudaGetDeviceCount failing — no driver — or 0).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "loss_test_util.h"
#include "xent/cuda.h"
#include "xent/linear_cross_entropy.h"
#include "xent/loss.h"

namespace xent {
namespace {

using test::Buffer;

class Cuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device (or no driver)";
  }
};

// A device copy of host bytes, freed at scope exit.
struct Dev {
  void* p = nullptr;
  std::size_t n = 0;
  Dev() = default;
  explicit Dev(std::size_t bytes) : n(bytes) {
    EXPECT_EQ(cudaMalloc(&p, bytes ? bytes : 1), cudaSuccess);
  }
  Dev(const void* host, std::size_t bytes) : Dev(bytes) {
    if (bytes) {
      EXPECT_EQ(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice), cudaSuccess);
    }
  }
  template <class T>
  explicit Dev(const std::vector<T>& v) : Dev(v.data(), v.size() * sizeof(T)) {}
  ~Dev() { if (p) cudaFree(p); }
  Dev(const Dev&) = delete;
  template <class T>
  std::vector<T> get(std::size_t count) const {
    std::vector<T> out(count);
    EXPECT_EQ(cudaMemcpy(out.data(), p, count * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }
  std::vector<unsigned char> bytes() const { return get<unsigned char>(n); }
};

MatrixView on_device(const Buffer& b, const Dev& d) { return {d.p, b.dtype, b.rows, b.cols, b.stride}; }
MutableMatrixView on_device_mut(const Buffer& b, const Dev& d) {
  return {d.p, b.dtype, b.rows, b.cols, b.stride};
}

// Gradient tolerance for the stored dtype: a few of its ulps of the row's
// largest entry (float32: the CPU and GPU compute exp differently).
double grad_tol(DType dt) {
  switch (dt) {
    case DType::kF32: return 2e-6;
    case DType::kBF16: return 1.6e-2;
    case DType::kF16: return 2e-3;
    default: return 1e-12;
  }
}

// A rounding to the stored dtype, relative (one unit in the last place:
// the GPU's float64 value is rounded to float32, then to bf16 / f16).
double store_ulp(DType dt) {
  switch (dt) {
    case DType::kF32: return 0x1p-23;
    case DType::kBF16: return 0x1p-7;
    case DType::kF16: return 0x1p-10;
    default: return 0x1p-52;
  }
}

struct CeCase {
  const char* name;
  DType dtype = DType::kF32;
  std::int64_t N = 9, V = 1000, stride = 0;
  bool soft = false, weights = false, int32 = false, masks = false, ignore = false, accuracy = true;
  bool row_outputs = true;  // false: no row_loss / row_lse asked for
  CrossEntropyOptions o{};
  double sigma = 3;
};

void compare_ce(const CeCase& c, bool in_place = false) {
  SCOPED_TRACE(c.name);
  Buffer z = test::random_logits(c.dtype, c.N, c.V, c.sigma, 11, c.stride);
  std::vector<std::int64_t> t = test::random_targets(c.N, c.V, 12);
  if (c.ignore)
    for (std::int64_t r = 1; r < c.N; r += 3) t[r] = c.o.ignore_index;
  if (c.masks)
    for (std::int64_t r = 0; r < c.N; ++r)
      for (std::int64_t j = 0; j < c.V; j += 5)
        if (j != t[r]) z.set(r, j, -std::numeric_limits<double>::infinity());
  std::vector<std::int32_t> t32(t.begin(), t.end());
  Buffer p;
  if (c.soft) p = test::random_soft(c.dtype, c.N, c.V, 13);
  std::vector<float> w;
  if (c.weights) {
    std::mt19937 rng(14);
    std::uniform_real_distribution<float> u(0.2f, 2.f);
    for (std::int64_t j = 0; j < c.V; ++j) w.push_back(u(rng));
  }
  CrossEntropyOptions o = c.o;
  o.compute_accuracy = c.accuracy;
  // CPU
  Buffer g_cpu(c.dtype, c.N, c.V, c.stride);
  std::vector<float> rl_cpu(c.N), lse_cpu(c.N);
  o.class_weight = c.weights ? w.data() : nullptr;
  Targets tc = c.soft ? Targets::Soft(p.view()) : (c.int32 ? Targets::Index(t32.data()) : Targets::Index(t.data()));
  const auto want = cross_entropy_loss(z.view(), tc, o, {rl_cpu.data(), lse_cpu.data(), g_cpu.mut()});
  // GPU
  Dev dz(z.bytes), dt(t), dt32(t32), dw(w), dp(c.soft ? p.bytes : std::vector<unsigned char>{});
  Dev dg(z.bytes.size()), drl(c.N * 4), dlse(c.N * 4);
  o.class_weight = c.weights ? static_cast<const float*>(dw.p) : nullptr;
  Targets td = c.soft ? Targets::Soft({dp.p, p.dtype, p.rows, p.cols, p.stride})
                      : (c.int32 ? Targets::Index(static_cast<const std::int32_t*>(dt32.p))
                                 : Targets::Index(static_cast<const std::int64_t*>(dt.p)));
  MutableMatrixView gv = in_place ? on_device_mut(z, dz) : on_device_mut(z, dg);
  float* rl_out = c.row_outputs ? static_cast<float*>(drl.p) : nullptr;
  float* lse_out = c.row_outputs ? static_cast<float*>(dlse.p) : nullptr;
  const auto got = cuda::cross_entropy_loss(on_device(z, dz), td, o, {rl_out, lse_out, gv}, nullptr);
  EXPECT_TRUE(test::Near(got.loss, want.loss, 1e-5, 1e-7)) << "loss";
  EXPECT_TRUE(test::Near(got.z_loss, want.z_loss, 1e-5, 1e-9)) << "z_loss";
  EXPECT_EQ(got.count, want.count);
  EXPECT_NEAR(got.weight_sum, want.weight_sum, 1e-9 * want.weight_sum);
  EXPECT_EQ(got.correct, want.correct);
  const auto rl = drl.get<float>(c.N), lse = dlse.get<float>(c.N);
  for (std::int64_t r = 0; c.row_outputs && r < c.N; ++r) {
    EXPECT_TRUE(test::Near(rl[r], rl_cpu[r], 1e-5, 1e-6)) << "row_loss " << r;
    EXPECT_TRUE(test::Near(lse[r], lse_cpu[r], 1e-6, 1e-6)) << "row_lse " << r;
  }
  Buffer g_gpu(c.dtype, c.N, c.V, c.stride);
  g_gpu.bytes = in_place ? dz.bytes() : dg.bytes();
  for (std::int64_t r = 0; r < c.N; ++r) {
    double gmax = 0;
    for (std::int64_t j = 0; j < c.V; ++j) gmax = std::max(gmax, std::fabs(g_cpu.get(r, j)));
    for (std::int64_t j = 0; j < c.V; ++j)
      ASSERT_NEAR(g_gpu.get(r, j), g_cpu.get(r, j), grad_tol(c.dtype) * gmax + 1e-30)
          << "grad[" << r << "][" << j << "]";
  }
}

CrossEntropyOptions opts(Reduction red = Reduction::kMean) {
  CrossEntropyOptions o;
  o.reduction = red;
  return o;
}

TEST_F(Cuda, CrossEntropyMatrixOfCases) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    CeCase base{.name = "plain", .dtype = dt};
    compare_ce(base);
    CeCase c = base;
    c.name = "sum, int32 targets, odd V, padded stride";
    c.o = opts(Reduction::kSum); c.int32 = true; c.V = 333; c.stride = 347;
    compare_ce(c);
    c = base; c.name = "none"; c.o = opts(Reduction::kNone); compare_ce(c);
    c = base; c.name = "weights"; c.weights = true; compare_ce(c);
    c = base; c.name = "uniform smoothing"; c.o.label_smoothing = 0.1; compare_ce(c);
    c = base; c.name = "off-target smoothing + weights"; c.o.label_smoothing = 0.2;
    c.o.smoothing = Smoothing::kOffTarget; c.weights = true; compare_ce(c);
    c = base; c.name = "temperature + softcap + z_loss"; c.o.temperature = 1.7; c.o.softcap = 15;
    c.o.z_loss = 1e-3; c.sigma = 10; compare_ce(c);
    c = base; c.name = "focal"; c.o.focal_gamma = 2; compare_ce(c);
    c = base; c.name = "focal + smoothing"; c.o.focal_gamma = 1.5; c.o.label_smoothing = 0.1; compare_ce(c);
    c = base; c.name = "soft"; c.soft = true; compare_ce(c);
    c = base; c.name = "soft + weights + smoothing"; c.soft = true; c.weights = true;
    c.o.label_smoothing = 0.05; compare_ce(c);
    c = base; c.name = "ignore_index"; c.ignore = true; compare_ce(c);
    c = base; c.name = "all ignored, NaN mean"; c.ignore = true; c.N = 1; c.o.empty_mean = EmptyMean::kNaN;
    compare_ce(c);
    c = base; c.name = "-inf masks"; c.masks = true; compare_ce(c);
    c = base; c.name = "confident rows"; c.sigma = 60; compare_ce(c);
    c = base; c.name = "grad_scale"; c.o.grad_scale = -0.37; compare_ce(c);
    c = base; c.name = "in place"; compare_ce(c, true);
    c = base; c.name = "in place, odd V, padded stride"; c.V = 333; c.stride = 347; c.ignore = true;
    compare_ce(c, true);
    c = base; c.name = "ignore_index, no row outputs"; c.ignore = true; c.row_outputs = false;
    compare_ce(c);
  }
}

// Rows of LLM vocabularies: the fast kernel (ce_chunks) cuts them into
// chunks of one block each, exchanged within a thread-block cluster on
// sm_90 (up to 8 chunks: 128256 float32 columns take 8 blocks of 512
// threads). Odd V and padded strides make rows start off 16-byte vectors;
// targets land in every chunk.
TEST_F(Cuda, CrossEntropyChunkedRows) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (std::int64_t V : {4093, 32000, 50257, 128256}) {
      CeCase base{.name = "plain", .dtype = dt, .N = 11, .V = V};
      compare_ce(base);
      CeCase c = base;
      c.name = "weights + z_loss + ignore_index, sum, padded stride";
      c.weights = true; c.ignore = true; c.o = opts(Reduction::kSum); c.o.z_loss = 1e-3;
      c.stride = V + 3;
      compare_ce(c);
      c = base; c.name = "in place, padded stride, masks"; c.stride = V + 5; c.masks = true;
      compare_ce(c, true);
      c = base; c.name = "confident rows, none, no row outputs"; c.sigma = 60;
      c.o = opts(Reduction::kNone); c.row_outputs = false; c.ignore = true;
      compare_ce(c);
    }
  }
}

TEST_F(Cuda, CrossEntropyHugeVocabulary) {
  for (DType dt : {DType::kF32, DType::kBF16}) {
    CeCase c{.name = "V=262144", .dtype = dt, .N = 3, .V = 262144};
    compare_ce(c);
    c.name = "V=262144 smoothing + masks";
    c.o.label_smoothing = 0.1;
    c.masks = true;
    compare_ce(c);
  }
  CeCase small_rows{.name = "V=2, N=4097", .N = 4097, .V = 2};
  compare_ce(small_rows);
  CeCase one{.name = "V=1", .N = 5, .V = 1};
  compare_ce(one);
}

TEST_F(Cuda, CrossEntropyIsDeterministic) {
  Buffer z = test::random_logits(DType::kF32, 64, 50257, 4, 3);
  auto t = test::random_targets(64, 50257, 4);
  Dev dz(z.bytes), dt(t), dg(z.bytes.size());
  // Smoothing takes ce_rows; without it ce_chunks (7 chunks a row, a cluster).
  for (double eps : {0.1, 0.0}) {
    CrossEntropyOptions o;
    o.label_smoothing = eps;
    auto run = [&] {
      const auto r = cuda::cross_entropy_loss(on_device(z, dz), Targets::Index(static_cast<const std::int64_t*>(dt.p)), o,
                                              {nullptr, nullptr, on_device_mut(z, dg)}, nullptr);
      return std::make_pair(r.loss, dg.bytes());
    };
    const auto a = run(), b = run();
    EXPECT_EQ(std::memcmp(&a.first, &b.first, sizeof(double)), 0) << eps;
    EXPECT_TRUE(a.second == b.second) << eps;
  }
}

TEST_F(Cuda, CrossEntropyErrorsMatchTheCpu) {
  Buffer z = test::random_logits(DType::kF32, 4, 100, 1, 5);
  auto t = test::random_targets(4, 100, 6);
  auto expect_code = [&](Buffer& zz, std::vector<std::int64_t>& tt, ErrorCode code) {
    Dev dz(zz.bytes), dt(tt), dg(zz.bytes.size());
    try {
      cuda::cross_entropy_loss(on_device(zz, dz), Targets::Index(static_cast<const std::int64_t*>(dt.p)), {},
                               {nullptr, nullptr, on_device_mut(zz, dg)}, nullptr);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      try {
        cross_entropy_loss(zz.view(), Targets::Index(tt.data()), {});
        ADD_FAILURE() << "CPU: no error";
      } catch (const Error& ce) {
        EXPECT_EQ(ce.code(), code);
      }
    }
  };
  Buffer a = z;
  a.set(2, 17, std::nan(""));
  expect_code(a, t, ErrorCode::kNonFinite);
  Buffer b = z;
  b.set(1, 3, std::numeric_limits<double>::infinity());
  expect_code(b, t, ErrorCode::kNonFinite);
  Buffer c = z;
  for (int j = 0; j < 100; ++j) c.set(3, j, -std::numeric_limits<double>::infinity());
  expect_code(c, t, ErrorCode::kUndefined);
  auto bad = t;
  bad[2] = 100;
  expect_code(z, bad, ErrorCode::kTargetOutOfRange);
  // A gradient that overlaps an input it must not overwrite (the class
  // weights, the index targets, the backward's row_upstream): refused, with
  // the CPU's code and words.
  {
    Dev big(static_cast<std::size_t>(4 * 100 * 4 + 4096));
    Dev dz(z.bytes), dt(t);
    const MutableMatrixView gview{big.p, DType::kF32, 4, 100, 100};
    const float* inside = static_cast<const float*>(big.p) + 50;
    auto expect_overlap = [&](const char* what, auto&& call) {
      try {
        call();
        ADD_FAILURE() << "no error (" << what << ")";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
        EXPECT_NE(std::string(e.what()).find(std::string("grad overlaps the ") + what), std::string::npos)
            << e.what();
      }
    };
    CrossEntropyOptions wo;
    wo.class_weight = inside;
    expect_overlap("class weights", [&] {
      cuda::cross_entropy_loss(on_device(z, dz), Targets::Index(static_cast<const std::int64_t*>(dt.p)), wo,
                               {nullptr, nullptr, gview}, nullptr);
    });
    expect_overlap("targets", [&] {
      cuda::cross_entropy_loss(on_device(z, dz), Targets::Index(reinterpret_cast<const std::int64_t*>(inside)), {},
                               {nullptr, nullptr, gview}, nullptr);
    });
    expect_overlap("row_upstream", [&] {
      cuda::cross_entropy_backward(on_device(z, dz), Targets::Index(static_cast<const std::int64_t*>(dt.p)),
                                   opts(Reduction::kNone), inside, gview, nullptr);
    });
  }
  // float64 logits are refused on the GPU.
  Buffer d = test::random_logits(DType::kF64, 2, 10, 1, 7);
  Dev dd(d.bytes), dt(t);
  EXPECT_THROW(cuda::cross_entropy_loss(on_device(d, dd), Targets::Index(static_cast<const std::int64_t*>(dt.p)),
                                        {}, {}, nullptr),
               Error);
}

TEST_F(Cuda, BackwardWithRowUpstream) {
  for (DType dt : {DType::kF32, DType::kBF16}) {
    Buffer z = test::random_logits(dt, 17, 777, 3, 21);
    auto t = test::random_targets(17, 777, 22);
    std::vector<float> up(17);
    for (int r = 0; r < 17; ++r) up[r] = 0.1f * static_cast<float>(r) - 0.5f;
    CrossEntropyOptions o = opts(Reduction::kNone);
    o.z_loss = 1e-3;
    o.label_smoothing = 0.1;
    Buffer g_cpu(dt, 17, 777);
    cross_entropy_backward(z.view(), Targets::Index(t.data()), nullptr, o, up.data(), g_cpu.mut());
    Dev dz(z.bytes), dtt(t), dup(up), dg(z.bytes.size());
    cuda::cross_entropy_backward(on_device(z, dz), Targets::Index(static_cast<const std::int64_t*>(dtt.p)), o,
                                 static_cast<const float*>(dup.p), on_device_mut(z, dg), nullptr);
    Buffer g(dt, 17, 777);
    g.bytes = dg.bytes();
    for (int r = 0; r < 17; ++r) {
      double gmax = 0;
      for (int j = 0; j < 777; ++j) gmax = std::max(gmax, std::fabs(g_cpu.get(r, j)));
      for (int j = 0; j < 777; ++j) ASSERT_NEAR(g.get(r, j), g_cpu.get(r, j), grad_tol(dt) * gmax + 1e-30);
    }
  }
}

TEST_F(Cuda, BinaryCrossEntropyWithLogits) {
  const std::int64_t N = 37, C = 129;
  for (DType dt : {DType::kF32, DType::kBF16}) {
    for (int variant = 0; variant < 3; ++variant) {
      Buffer x = test::random_logits(dt, N, C, 4, 31);
      x.set(0, 0, std::numeric_limits<double>::infinity());
      x.set(1, 1, -std::numeric_limits<double>::infinity());
      Buffer y(dt, N, C);
      std::mt19937 rng(32);
      std::uniform_real_distribution<double> u(0, 1);
      for (std::int64_t r = 0; r < N; ++r)
        for (std::int64_t c = 0; c < C; ++c) y.set(r, c, u(rng) < 0.5 ? std::round(u(rng)) : u(rng));
      y.set(0, 0, 1.0);
      y.set(1, 1, 0.0);
      Buffer w(DType::kF32, variant == 2 ? N : 1, C);
      for (std::int64_t r = 0; r < w.rows; ++r)
        for (std::int64_t c = 0; c < C; ++c) w.set(r, c, 0.5 + u(rng));
      std::vector<float> pw(C);
      for (auto& v : pw) v = static_cast<float>(0.5 + 2 * u(rng));
      BceOptions o;
      o.reduction = variant == 0 ? Reduction::kMean : (variant == 1 ? Reduction::kSum : Reduction::kNone);
      if (variant > 0) o.weight = w.view();
      if (variant == 1) o.pos_weight = pw.data();
      Buffer g_cpu(dt, N, C), l_cpu(DType::kF32, N, C);
      const double want = binary_cross_entropy_with_logits_loss(x.view(), y.view(), o, {l_cpu.mut(), g_cpu.mut()});
      Dev dx(x.bytes), dy(y.bytes), dw(w.bytes), dpw(pw), dg(x.bytes.size()), dl(l_cpu.bytes.size());
      BceOptions od = o;
      if (variant > 0) od.weight = on_device(w, dw);
      if (variant == 1) od.pos_weight = static_cast<const float*>(dpw.p);
      const double got = cuda::binary_cross_entropy_with_logits_loss(
          on_device(x, dx), on_device(y, dy), od, {on_device_mut(l_cpu, dl), on_device_mut(x, dg)}, nullptr);
      EXPECT_TRUE(test::Near(got, want, 1e-6, 1e-9)) << variant;
      Buffer g(dt, N, C), l(DType::kF32, N, C);
      g.bytes = dg.bytes();
      l.bytes = dl.bytes();
      const double gs = variant == 0 ? 1.0 / static_cast<double>(N * C) : 1.0;
      for (std::int64_t r = 0; r < N; ++r)
        for (std::int64_t c = 0; c < C; ++c) {
          ASSERT_TRUE(test::Near(l.get(r, c), l_cpu.get(r, c), 1e-6, 1e-7)) << r << "," << c;
          // The gradient gs·w·num/(1 + e), e = e^{−|x|}, num = x ≥ 0 ? (1 − y) − pw·y·e
          // : (1 − y)·e − pw·y, whose two terms cancel where it crosses 0.
          // The GPU takes num in float64: within a rounding to the stored
          // dtype of the exact value (long double, same formula).
          const long double xv = x.get(r, c), yv = y.get(r, c);
          const long double wv = variant > 0 ? w.get(variant == 2 ? r : 0, c) : 1.0;
          const long double pv = variant == 1 ? pw[c] : 1.0f;
          const long double e = std::exp(-std::fabs(xv));
          const long double num = xv >= 0 ? (1 - yv) - pv * yv * e : (1 - yv) * e - pv * yv;
          const double exact = static_cast<double>(gs * wv * num / (1 + e));
          ASSERT_NEAR(g.get(r, c), exact, store_ulp(dt) * std::fabs(exact)) << r << "," << c;
          // The CPU's float32 path (src/cpu/bce-inl.h) rounds num's terms
          // in float32 (Exp, 1 − y, pw·y, the fused multiply-add): its error
          // is a few 2^-24 of the terms' magnitude, not of the result (on
          // this data 1.4e-5 of the result where they cancel). So the CPU is
          // checked relative to the terms, with grad_tol's margin.
          const double terms = static_cast<double>(
              std::fabs(gs * wv) * ((1 - yv) * (xv >= 0 ? 1 : e) + pv * yv * (xv >= 0 ? e : 1)) / (1 + e));
          ASSERT_NEAR(g.get(r, c), g_cpu.get(r, c), grad_tol(dt) * terms + 1e-30) << r << "," << c;
        }
    }
  }
  // NaN logit: the CPU's error code.
  Buffer x = test::random_logits(DType::kF32, 2, 3, 1, 1), y(DType::kF32, 2, 3);
  x.set(1, 2, std::nan(""));
  Dev dx(x.bytes), dy(y.bytes);
  try {
    cuda::binary_cross_entropy_with_logits_loss(on_device(x, dx), on_device(y, dy), {}, {}, nullptr);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNonFinite);
    EXPECT_NE(std::string(e.what()).find("[1][2]"), std::string::npos) << e.what();
  }
}

// Data for compare_linear. kSpread: logits h·w_j of std ≈ 2.9 over 1100
// classes; every 256-column tile has some row with a q ≥ 0.3 (on this data:
// the CPU and the GPU both skip nothing even at grad_filter 0.3), which is
// why a filtering test on it cannot expect skips. kPeaked: logits of std ≈ 1,
// plus a constant feature (h[·][0] = 4) that only class kHotClass (in tile
// 0) weighs (w[kHotClass][0] = 2.5): z_hot ≈ 10 ± 1 in every row, q_hot ≥ 0.33
// in every row (≈ 0.9 typically), while every class outside tile 0 has
// q ≤ 0.02 (computed on the CPU for both dtypes). With grad_filter 0.3 tile 0
// is kept and every other tile skipped, with a wide margin either way.
enum class LinearData { kSpread, kPeaked };
constexpr std::int64_t kHotClass = 7;

void compare_linear(DType dt, const LinearCrossEntropyOptions& lo, bool with_bias, bool forward_only,
                    LinearData data = LinearData::kSpread, std::int64_t want_skipped = -1) {
  const std::int64_t N = 70, D = 96, V = 1100;
  const bool peaked = data == LinearData::kPeaked;
  Buffer h = test::random_logits(dt, N, D, 1, 41), w = test::random_logits(dt, V, D, peaked ? 0.1 : 0.3, 42);
  if (peaked) {
    for (std::int64_t r = 0; r < N; ++r) h.set(r, 0, 4.0);
    w.set(kHotClass, 0, 2.5);
  }
  std::vector<float> bias(V);
  for (std::int64_t j = 0; j < V; ++j) bias[j] = 0.01f * static_cast<float>(j % 13);
  auto t = test::random_targets(N, V, 43);
  t[5] = lo.loss.ignore_index;
  std::vector<float> gh(N * D), gw(V * D), gb(V), rl(N), lse(N);
  LinearCrossEntropyOutputs out_cpu{rl.data(), lse.data(), {}, {}, nullptr};
  if (!forward_only) {
    out_cpu.grad_hidden = {gh.data(), DType::kF32, N, D, D};
    out_cpu.grad_weight = {gw.data(), DType::kF32, V, D, D};
    out_cpu.grad_bias = with_bias ? gb.data() : nullptr;
  }
  // The CPU's vocab-tiled path with the same block shape (all rows × the
  // GPU's tile) makes the same gradient-filtering decisions.
  LinearCrossEntropyOptions cpu_o = lo;
  cpu_o.algorithm = LinearCrossEntropyAlgorithm::kVocabTiled;
  cpu_o.chunk_rows = N;
  const auto want = linear_cross_entropy(h.view(), w.view(), with_bias ? bias.data() : nullptr,
                                         Targets::Index(t.data()), cpu_o, out_cpu);
  Dev dh(h.bytes), dw(w.bytes), db(bias), dtt(t), dgh(gh.size() * 4), dgw(gw.size() * 4), dgb(V * 4),
      drl(N * 4), dlse(N * 4);
  LinearCrossEntropyOutputs out{static_cast<float*>(drl.p), static_cast<float*>(dlse.p), {}, {}, nullptr};
  if (!forward_only) {
    out.grad_hidden = {dgh.p, DType::kF32, N, D, D};
    out.grad_weight = {dgw.p, DType::kF32, V, D, D};
    out.grad_bias = with_bias ? static_cast<float*>(dgb.p) : nullptr;
  }
  cuda::workspace_peak_bytes(true);
  const auto got = cuda::linear_cross_entropy(on_device(h, dh), on_device(w, dw),
                                              with_bias ? static_cast<const float*>(db.p) : nullptr,
                                              Targets::Index(static_cast<const std::int64_t*>(dtt.p)), lo, out,
                                              nullptr);
  EXPECT_TRUE(test::Near(got.loss, want.loss, 2e-5, 1e-6));
  EXPECT_EQ(got.count, want.count);
  // The tile buffer is counted by the workspace high-water mark.
  EXPECT_GE(cuda::workspace_peak_bytes(false), got.buffer_bytes);
  if (!forward_only) {
    // The CPU's vocab-tiled path makes the same skip decisions; where the
    // data makes them certain (kPeaked), the count itself is checked too.
    EXPECT_EQ(got.blocks, want.blocks);
    EXPECT_EQ(got.blocks_skipped, want.blocks_skipped);
    if (want_skipped >= 0) {
      EXPECT_EQ(got.blocks_skipped, want_skipped);
    }
  }
  const auto lse_g = dlse.get<float>(N);
  for (std::int64_t r = 0; r < N; ++r) EXPECT_TRUE(test::Near(lse_g[r], lse[r], 1e-5, 1e-5)) << r;
  if (forward_only) return;
  // The products accumulate in a different order (cuBLAS vs OpenBLAS):
  // float32-level agreement relative to the largest entry.
  auto close = [](const std::vector<float>& a, const std::vector<float>& b, double rel) {
    double m = 0;
    for (float v : b) m = std::max(m, std::fabs(static_cast<double>(v)));
    for (std::size_t i = 0; i < a.size(); ++i)
      if (std::fabs(a[i] - b[i]) > rel * m) return ::testing::AssertionFailure() << "index " << i << ": " << a[i] << " vs " << b[i];
    return ::testing::AssertionSuccess();
  };
  const double rel = dt == DType::kBF16 ? 1e-2 : 1e-4;
  EXPECT_TRUE(close(dgh.get<float>(gh.size()), gh, rel)) << "grad_hidden";
  EXPECT_TRUE(close(dgw.get<float>(gw.size()), gw, rel)) << "grad_weight";
  if (with_bias) {
    EXPECT_TRUE(close(dgb.get<float>(V), gb, rel)) << "grad_bias";
  }
}

TEST_F(Cuda, LinearCrossEntropy) {
  for (DType dt : {DType::kF32, DType::kBF16}) {
    LinearCrossEntropyOptions lo;
    lo.tile_cols = 256;  // several tiles and a partial one
    compare_linear(dt, lo, true, false);
    lo.loss.label_smoothing = 0.1;
    lo.loss.z_loss = 1e-4;
    lo.loss.softcap = 20;
    compare_linear(dt, lo, false, false);
    lo.loss.reduction = Reduction::kSum;
    compare_linear(dt, lo, true, true);  // forward only
    LinearCrossEntropyOptions f;
    f.tile_cols = 256;
    f.grad_filter = 0x1p-12;  // spread logits: nothing to skip
    compare_linear(dt, f, false, false, LinearData::kSpread, 0);
    // One row block (all 70 rows) × 5 tiles (4 × 256 + 76): tile 0 holds
    // kHotClass and is kept, tiles 1-4 are skipped, and the rows whose
    // target lies there (most) go through the sparse target updates.
    f.grad_filter = 0.3;
    compare_linear(dt, f, true, false, LinearData::kPeaked, 4);
    f.loss.ignore_index = 700;  // row 5's target: an ignored class inside a skipped tile
    compare_linear(dt, f, true, false, LinearData::kPeaked, 4);
  }
}

TEST(CudaNoDevice, DeviceCountNeverThrows) {
  // On a machine without a driver this is 0; with one, ≥ 1. Either way no throw.
  EXPECT_GE(cuda::device_count(), 0);
}

}  // namespace
}  // namespace xent
