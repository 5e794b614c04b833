// linear_cross_entropy with a communicator (weight sharded by vocabulary
// rows, issue 9) on MPI against the single-process linear_cross_entropy on
// the full weight, which every rank builds from the same seed (that function
// is itself tested against the unfused long-double path in
// tests/linear_cross_entropy_test.cc). Run under mpirun -np 2 / 3: unequal
// shards (∝ rank + 1), the last shard holds no target, small chunks so the
// batch spans several chunks. Checked on every rank: loss, z_loss, count,
// weight_sum, row_loss, row_lse, grad_hidden (all-reduced: the full one),
// and this rank's slices of grad_weight and grad_bias, for each option alone
// and combined, float32 and bfloat16 inputs, int32 and int64 targets.
//
//   linear_cross_entropy_mpi_test              the comparison
//   linear_cross_entropy_mpi_test --bad-shape  rank 1's weight shard has the
//       wrong D: every rank must leave with an xent::Error naming rank 1.
#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "xent/error.h"
#include "xent/linear_cross_entropy.h"
#include "xent/mpi_communicator.h"

namespace {

using xent::DType;
using xent::LinearCrossEntropyOptions;
using xent::LinearCrossEntropyOutputs;

int g_failures = 0, g_rank = 0;

void expect_close(double got, double want, double rel, double abs, const std::string& what) {
  const bool ok = std::isnan(want) ? std::isnan(got)
                                   : std::fabs(got - want) <= std::max(rel * std::fabs(want), abs);
  if (!ok && ++g_failures <= 20)
    std::fprintf(stderr, "rank %d: FAIL %s: got %.9g want %.9g\n", g_rank, what.c_str(), got, want);
}

std::uint16_t to_bf16(float f) {  // round to nearest even
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<std::uint16_t>(u >> 16);
}

struct Case {
  std::string name;
  xent::Reduction reduction = xent::Reduction::kMean;
  bool ignore = false, weights = false, bias = false, bf16 = false, int32 = false, accuracy = false;
  double smoothing = 0, z_loss = 0, softcap = 0, temperature = 1, focal = 0;
  xent::Smoothing mode = xent::Smoothing::kUniform;
  std::int64_t chunk = 5;
};

void run_case(xent::MpiCommunicator& comm, const Case& k) {
  const std::int64_t N = 23, D = 12, V = 29;
  const int P = comm.size(), r = comm.rank();
  // Shards ∝ rank + 1; the last one holds no target (targets < its offset).
  std::vector<std::int64_t> off(P + 1, 0);
  for (int q = 0; q < P; ++q) off[q + 1] = off[q] + V * (q + 1) / (P * (P + 1) / 2);
  off[P] = V;
  const std::int64_t lo = off[r], Vr = off[r + 1] - off[r];

  std::mt19937 gen(1234);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> h(N * D), w(V * D), b(V), cw(V);
  for (auto& x : h) x = nd(gen);
  for (auto& x : w) x = 0.7f * nd(gen);
  for (auto& x : b) x = 0.3f * nd(gen);
  for (auto& x : cw) x = 0.5f + std::fabs(nd(gen));
  std::vector<std::int64_t> t64(N);
  std::uniform_int_distribution<std::int64_t> ud(0, off[P - 1] - 1);
  for (auto& x : t64) x = ud(gen);
  if (k.ignore) for (std::int64_t i = 0; i < N; i += 4) t64[i] = -100;
  if (k.accuracy)  // some rows point at their target's weight row: argmax = target
    for (std::int64_t i = 0; i < N; i += 2)
      if (t64[i] >= 0)
        for (std::int64_t d = 0; d < D; ++d) h[i * D + d] = 3 * w[t64[i] * D + d];
  std::vector<std::int32_t> t32(t64.begin(), t64.end());
  const xent::Targets tg = k.int32 ? xent::Targets::Index(t32.data()) : xent::Targets::Index(t64.data());
  std::vector<std::uint16_t> hb(N * D), wb(V * D);
  for (std::size_t i = 0; i < h.size(); ++i) hb[i] = to_bf16(h[i]);
  for (std::size_t i = 0; i < w.size(); ++i) wb[i] = to_bf16(w[i]);
  const DType dt = k.bf16 ? DType::kBF16 : DType::kF32;
  auto hview = [&] { return xent::MatrixView{k.bf16 ? (const void*)hb.data() : h.data(), dt, N, D, D}; };
  auto wview = [&](std::int64_t r0, std::int64_t rows) {
    return k.bf16 ? xent::MatrixView{wb.data() + r0 * D, dt, rows, D, D}
                  : xent::MatrixView{w.data() + r0 * D, dt, rows, D, D};
  };

  LinearCrossEntropyOptions o;
  o.loss.reduction = k.reduction;
  o.loss.class_weight = k.weights ? cw.data() : nullptr;
  o.loss.label_smoothing = k.smoothing;
  o.loss.smoothing = k.mode;
  o.loss.z_loss = k.z_loss;
  o.loss.softcap = k.softcap;
  o.loss.temperature = k.temperature;
  o.loss.compute_accuracy = k.accuracy;
  o.loss.focal_gamma = k.focal;

  // Single process, full weight.
  std::vector<float> rl(N), rlse(N), gh(N * D), gw(V * D), gb(V);
  LinearCrossEntropyOutputs ro;
  ro.row_loss = rl.data();
  ro.row_lse = rlse.data();
  ro.grad_hidden = {gh.data(), DType::kF32, N, D, D};
  ro.grad_weight = {gw.data(), DType::kF32, V, D, D};
  ro.grad_bias = k.bias ? gb.data() : nullptr;
  const auto want = xent::linear_cross_entropy(hview(), wview(0, V), k.bias ? b.data() : nullptr, tg, o, ro);

  // Sharded.
  LinearCrossEntropyOptions so = o;
  so.communicator = &comm;
  so.vocab_offset = lo;
  so.vocab_total = V;
  so.chunk_rows = k.chunk;
  std::vector<float> sl(N), slse(N), sgh(N * D, -1), sgw(Vr * D, -1), sgb(Vr, -1);
  LinearCrossEntropyOutputs sout;
  sout.row_loss = sl.data();
  sout.row_lse = slse.data();
  sout.grad_hidden = {sgh.data(), DType::kF32, N, D, D};
  sout.grad_weight = {sgw.data(), DType::kF32, Vr, D, D};
  sout.grad_bias = k.bias ? sgb.data() : nullptr;
  const auto got = xent::linear_cross_entropy(hview(), wview(lo, Vr), k.bias ? b.data() + lo : nullptr, tg, so, sout);

  const std::string n = k.name + " (rank " + std::to_string(r) + ")";
  const double rel = 2e-5, abs = 2e-6;
  expect_close(got.loss, want.loss, rel, abs, n + " loss");
  expect_close(got.z_loss, want.z_loss, rel, abs, n + " z_loss");
  expect_close(double(got.count), double(want.count), 0, 0, n + " count");
  expect_close(double(got.correct), double(want.correct), 0, 0, n + " correct");
  if (k.accuracy) expect_close(double(want.correct > 0), 1, 0, 0, n + " some row correct");
  expect_close(got.weight_sum, want.weight_sum, 1e-12, 0, n + " weight_sum");
  for (std::int64_t i = 0; i < N; ++i) {
    expect_close(sl[i], rl[i], rel, abs, n + " row_loss[" + std::to_string(i) + "]");
    expect_close(slse[i], rlse[i], rel, abs, n + " row_lse[" + std::to_string(i) + "]");
  }
  for (std::int64_t i = 0; i < N * D; ++i)
    expect_close(sgh[i], gh[i], 1e-4, 2e-6, n + " grad_hidden[" + std::to_string(i) + "]");
  for (std::int64_t i = 0; i < Vr * D; ++i)
    expect_close(sgw[i], gw[lo * D + i], 1e-4, 2e-6, n + " grad_weight[" + std::to_string(lo * D + i) + "]");
  if (k.bias)
    for (std::int64_t c = 0; c < Vr; ++c)
      expect_close(sgb[c], gb[lo + c], 1e-4, 2e-6, n + " grad_bias[" + std::to_string(lo + c) + "]");
}

int compare_all(xent::MpiCommunicator& comm) {
  std::vector<Case> cases;
  auto add = [&](Case c) { cases.push_back(c); };
  add({.name = "mean"});
  add({.name = "sum", .reduction = xent::Reduction::kSum});
  add({.name = "none", .reduction = xent::Reduction::kNone});
  add({.name = "ignore_index", .ignore = true});
  add({.name = "weights", .weights = true});
  add({.name = "bias", .bias = true});
  add({.name = "smoothing uniform", .smoothing = 0.1});
  add({.name = "smoothing off-target", .smoothing = 0.2, .mode = xent::Smoothing::kOffTarget});
  add({.name = "z_loss mean + ignore", .ignore = true, .z_loss = 1e-3});
  add({.name = "softcap + temperature", .softcap = 4, .temperature = 1.3});
  add({.name = "bf16 int32", .bf16 = true, .int32 = true});
  add({.name = "one chunk", .chunk = 1000});
  add({.name = "accuracy", .ignore = true, .accuracy = true});
  add({.name = "focal 2 + weights + ignore", .ignore = true, .weights = true, .focal = 2});
  add({.name = "focal 0.5 + smoothing + z_loss, sum", .reduction = xent::Reduction::kSum,
       .smoothing = 0.1, .z_loss = 1e-3, .focal = 0.5});
  add({.name = "all combined", .ignore = true, .weights = true, .bias = true, .smoothing = 0.1,
       .z_loss = 1e-3, .softcap = 6, .temperature = 0.9});
  add({.name = "all combined, sum, chunk 1", .reduction = xent::Reduction::kSum, .ignore = true,
       .weights = true, .bias = true, .smoothing = 0.1, .z_loss = 1e-3, .chunk = 1});
  for (const auto& c : cases) {
    try {
      run_case(comm, c);
    } catch (const xent::Error& e) {
      ++g_failures;
      std::fprintf(stderr, "rank %d: %s threw: %s\n", g_rank, c.name.c_str(), e.what());
    }
  }
  return g_failures;
}

int bad_shape(xent::MpiCommunicator& comm) {
  const std::int64_t N = 4, D = 3, V = 6;
  std::vector<float> h(N * D, 0.5f), w(V * D, 0.25f);
  std::vector<std::int64_t> t = {0, 1, 2, 5};
  const std::int64_t per = V / comm.size(), lo = per * comm.rank();
  const std::int64_t Vr = comm.rank() == comm.size() - 1 ? V - lo : per;
  LinearCrossEntropyOptions o;
  o.communicator = &comm;
  o.vocab_offset = lo;
  o.vocab_total = V;
  const std::int64_t d = comm.rank() == 1 ? D - 1 : D;  // rank 1: wrong D
  try {
    xent::linear_cross_entropy({h.data(), DType::kF32, N, D, D}, {w.data(), DType::kF32, Vr, d, d},
                               nullptr, xent::Targets::Index(t.data()), o);
  } catch (const xent::Error& e) {
    std::fprintf(stderr, "rank %d: xent::Error (%s): %s\n", comm.rank(), xent::ErrorCodeName(e.code()), e.what());
    return 3;
  }
  std::fprintf(stderr, "rank %d: no error\n", comm.rank());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rc = 0;
  {
    xent::MpiCommunicator comm;
    g_rank = comm.rank();
    if (argc > 1 && std::strcmp(argv[1], "--bad-shape") == 0) {
      rc = bad_shape(comm);
    } else {
      double f = compare_all(comm);
      comm.allreduce_sum(&f, 1);
      if (comm.rank() == 0)
        std::printf("linear_cross_entropy_mpi_test: %d ranks, %s (%g failed checks)\n", comm.size(),
                    f == 0 ? "all passed" : "FAILED", f);
      rc = f == 0 ? 0 : 1;
    }
  }
  MPI_Finalize();
  return rc;
}
