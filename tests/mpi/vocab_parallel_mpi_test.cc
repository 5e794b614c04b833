// vocab_parallel_cross_entropy on MPI against the single-process fused loss
// (xent::cross_entropy_loss on the full logits, which every rank builds from
// the same seed). Run under mpirun -np 2 / 3 / 4: the shards are of unequal
// size, the last rank's shard holds no target, and with 4 ranks one shard is
// empty. Checked on every rank: loss, z_loss, count, weight_sum, row_loss,
// row_lse and this rank's gradient slice, for every option alone and all
// combined, float32 and float64 logits, int64 and int32 targets. Every output
// is also checked against the long-double reference (src/reference/).
//
//   vocab_parallel_mpi_test             the comparison (exit 0 iff all pass)
//   vocab_parallel_mpi_test --bad-target
//       rank 1 alone gets an out-of-range target: every rank must leave the
//       call with an xent::Error naming rank 1 and exit non-zero (3).
//   vocab_parallel_mpi_test --bad-logit
//       the same for a NaN logit in rank 1's shard (a counted row); rank 1's
//       message must name the row and the GLOBAL column, and a NaN in an
//       ignored row (rank 0) must not be an error.
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "reference/loss_reference.h"
#include "xent/error.h"
#include "xent/loss.h"
#include "xent/mpi_communicator.h"
#include "xent/vocab_parallel.h"

namespace {

using xent::CrossEntropyOptions;
using xent::DType;

int g_failures = 0;
int g_rank = 0;

bool close(double got, double want, double rel, double abs) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::fabs(got - want) <= std::max(rel * std::fabs(want), abs);
}

void expect(bool ok, const std::string& what) {
  if (!ok) {
    ++g_failures;
    if (g_failures <= 20) std::fprintf(stderr, "rank %d: FAIL %s\n", g_rank, what.c_str());
  }
}

std::string str(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.17g", v);
  return b;
}

struct Shard {
  std::int64_t offset, cols;
};

// Unequal shards of V over P ranks: sizes ∝ (r + 1); with P = 4 rank 1's is empty.
std::vector<Shard> make_shards(std::int64_t V, int P) {
  std::vector<std::int64_t> w(P);
  for (int r = 0; r < P; ++r) w[r] = (P == 4 && r == 1) ? 0 : r + 1;
  std::int64_t total_w = 0;
  for (auto x : w) total_w += x;
  std::vector<Shard> s(P);
  std::int64_t off = 0;
  for (int r = 0; r < P; ++r) {
    const std::int64_t n = r == P - 1 ? V - off : V * w[r] / total_w;
    s[r] = {off, n};
    off += n;
  }
  return s;
}

template <class T>
void run_case(const std::string& name, const CrossEntropyOptions& o, bool int32_targets,
              bool all_ignored, xent::MpiCommunicator& comm, std::uint64_t seed) {
  const std::int64_t N = 13, V = 37;
  const DType dt = sizeof(T) == 4 ? DType::kF32 : DType::kF64;
  const auto shards = make_shards(V, comm.size());
  const Shard me = shards[comm.rank()];
  // Same data on every rank. Targets avoid the last rank's shard.
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, 3.0);
  const std::int64_t tmax = shards.back().offset;  // exclusive
  std::vector<T> full(N * V);
  std::vector<std::int64_t> t64(N);
  for (std::int64_t r = 0; r < N; ++r) {
    t64[r] = std::int64_t(rng() % std::uint64_t(tmax));
    if (r % 5 == 3 || all_ignored) t64[r] = o.ignore_index;
    for (std::int64_t c = 0; c < V; ++c) {
      T v = T(nd(rng));
      // With compute_accuracy: logits on a 0.5 grid, so rows have tied maxima
      // (argmax = the first index of the maximum).
      if (o.compute_accuracy) v = T(std::round(double(v) * 2) / 2);
      // (No masks under focal + smoothing: every class then has a term
      // −ε·log q_c, infinite at a mask, and 0·∞ in the reference's gradient.)
      if (c != t64[r] && rng() % 17 == 0 && !(o.focal_gamma > 0 && o.label_smoothing > 0)) v = -std::numeric_limits<T>::infinity();  // a mask
      full[r * V + c] = v;
    }
  }
  if (o.compute_accuracy)  // targets that win outright (r % 4 == 0) or tie the max (r % 4 == 2)
    for (std::int64_t r = 0; r < N; r += 2) {
      if (t64[r] == o.ignore_index) continue;
      T mx = full[r * V];
      for (std::int64_t c = 1; c < V; ++c) mx = std::max(mx, full[r * V + c]);
      full[r * V + t64[r]] = r % 4 == 0 ? mx + T(0.5) : mx;
    }
  std::vector<std::int32_t> t32(t64.begin(), t64.end());
  const xent::Targets tg = int32_targets ? xent::Targets::Index(t32.data())
                                         : xent::Targets::Index(t64.data());

  // Single-process fused loss on the full vocabulary.
  std::vector<float> ref_loss(N), ref_lse(N);
  std::vector<T> ref_grad(N * V);
  const auto ref = xent::cross_entropy_loss(
      {full.data(), dt, N, V, 0}, tg, o,
      {ref_loss.data(), ref_lse.data(), {ref_grad.data(), dt, N, V, 0}});

  // This rank's shard, with a padded row stride to exercise strides.
  const std::int64_t stride = me.cols + 3;
  std::vector<T> local(N * stride, T(12345));
  for (std::int64_t r = 0; r < N; ++r)
    for (std::int64_t c = 0; c < me.cols; ++c) local[r * stride + c] = full[r * V + me.offset + c];
  std::vector<float> got_loss(N, -1), got_lse(N, -1);
  std::vector<T> grad(N * stride, T(-7));
  const auto got = xent::vocab_parallel_cross_entropy(
      {local.data(), dt, N, me.cols, stride}, me.offset, V, tg, o, comm,
      {got_loss.data(), got_lse.data(), {grad.data(), dt, N, me.cols, stride}});

  // The long-double reference on the full logits.
  xent::reference::CeRefOptions ro;
  ro.reduction = o.reduction == xent::Reduction::kNone  ? xent::reference::RefReduction::kNone
                 : o.reduction == xent::Reduction::kSum ? xent::reference::RefReduction::kSum
                                                        : xent::reference::RefReduction::kMean;
  ro.ignore_index = o.ignore_index;
  if (o.class_weight)
    for (std::int64_t c = 0; c < V; ++c) ro.weight.push_back(o.class_weight[c]);
  ro.epsilon = o.label_smoothing;
  ro.off_target = o.smoothing == xent::Smoothing::kOffTarget;
  ro.temperature = o.temperature;
  ro.softcap = o.softcap;
  ro.z_loss = o.z_loss;
  ro.gamma = o.focal_gamma;
  ro.empty_nan = o.empty_mean == xent::EmptyMean::kNaN;
  ro.grad_scale = o.grad_scale;
  std::vector<xent::reference::Row> rows(N, xent::reference::Row(V));
  for (std::int64_t r = 0; r < N; ++r)
    for (std::int64_t c = 0; c < V; ++c) rows[r][c] = full[r * V + c];
  const auto lref = xent::reference::cross_entropy_batch(rows, t64, {}, ro);

  const bool f32 = sizeof(T) == 4;
  const double rel = f32 ? 2e-6 : 1e-11, abs = f32 ? 1e-6 : 1e-13;
  // row_loss / row_lse are float32 outputs whatever the logits' dtype.
  const double rrel = f32 ? rel : 2e-7, rabs = f32 ? abs : 1e-7;
  const double grel = f32 ? 5e-6 : 1e-10, gabs = f32 ? 1e-8 : 1e-15;
  const std::string tag = name + (f32 ? " f32" : " f64") + (int32_targets ? " i32" : " i64");
  expect(close(got.loss, ref.loss, rel, abs), tag + ": loss " + str(got.loss) + " vs " + str(ref.loss));
  expect(close(got.loss, double(lref.loss), rel, abs),
         tag + ": loss " + str(got.loss) + " vs reference " + str(double(lref.loss)));
  for (std::int64_t r = 0; r < N; ++r) {
    expect(close(got_loss[r], double(lref.row_loss[r]), rrel, rabs),
           tag + ": row_loss[" + std::to_string(r) + "] vs reference " + str(double(lref.row_loss[r])));
    expect(close(got_lse[r], double(lref.row_lse[r]), rrel, rabs),
           tag + ": row_lse[" + std::to_string(r) + "] vs reference " + str(double(lref.row_lse[r])));
    for (std::int64_t c = 0; c < me.cols; ++c)
      expect(close(grad[r * stride + c], double(lref.grad[r][me.offset + c]), grel, gabs),
             tag + ": grad[" + std::to_string(r) + "][" + std::to_string(me.offset + c) +
                 "] vs reference " + str(double(lref.grad[r][me.offset + c])));
  }
  expect(close(got.z_loss, ref.z_loss, rel, abs), tag + ": z_loss " + str(got.z_loss) + " vs " + str(ref.z_loss));
  expect(got.count == ref.count, tag + ": count");
  if (o.compute_accuracy) {  // against the fused loss and a direct count
    std::int64_t direct = 0;
    for (std::int64_t r = 0; r < N; ++r) {
      if (t64[r] == o.ignore_index) continue;
      std::int64_t best = 0;
      for (std::int64_t c = 1; c < V; ++c)
        if (full[r * V + c] > full[r * V + best]) best = c;
      direct += best == t64[r];
    }
    expect(got.correct == ref.correct && got.correct == direct,
           tag + ": correct " + std::to_string(got.correct) + " vs " + std::to_string(ref.correct) +
               " (fused) and " + std::to_string(direct) + " (direct)");
    expect(direct > 0, tag + ": no correct row (the check would be vacuous)");
  }
  expect(close(got.weight_sum, ref.weight_sum, 1e-12, 1e-12), tag + ": weight_sum");
  for (std::int64_t r = 0; r < N; ++r) {
    expect(close(got_loss[r], ref_loss[r], rrel, rabs),
           tag + ": row_loss[" + std::to_string(r) + "] " + str(got_loss[r]) + " vs " + str(ref_loss[r]));
    expect(close(got_lse[r], ref_lse[r], rrel, rabs),
           tag + ": row_lse[" + std::to_string(r) + "] " + str(got_lse[r]) + " vs " + str(ref_lse[r]));
    for (std::int64_t c = 0; c < me.cols; ++c) {
      expect(close(grad[r * stride + c], ref_grad[r * V + me.offset + c], grel, gabs),
             tag + ": grad[" + std::to_string(r) + "][" + std::to_string(me.offset + c) + "] " +
                 str(grad[r * stride + c]) + " vs " + str(ref_grad[r * V + me.offset + c]));
    }
    for (std::int64_t c = me.cols; c < stride; ++c)  // the padding is not touched
      expect(grad[r * stride + c] == T(-7), tag + ": wrote outside the row");
  }
  // Every rank reports the same loss, to the bit.
  double mm[2] = {got.loss, -got.loss};
  comm.allreduce_max(mm, 2);
  expect(std::isnan(got.loss) || (mm[0] == got.loss && -mm[1] == got.loss),
         tag + ": the ranks disagree on the loss");
}

int compare_all(xent::MpiCommunicator& comm) {
  std::vector<float> w(37);
  for (int c = 0; c < 37; ++c) w[c] = float(0.25 + (c * 7 % 11) * 0.2);
  w[5] = 0;  // a zero weight
  std::vector<std::pair<std::string, std::function<void(CrossEntropyOptions&)>>> cases = {
      {"plain mean", [](auto&) {}},
      {"sum", [](auto& o) { o.reduction = xent::Reduction::kSum; }},
      {"none", [](auto& o) { o.reduction = xent::Reduction::kNone; }},
      {"ignore_index=7", [](auto& o) { o.ignore_index = 7; }},
      {"smoothing uniform 0.1", [](auto& o) { o.label_smoothing = 0.1; }},
      {"smoothing off-target 0.2",
       [](auto& o) { o.label_smoothing = 0.2; o.smoothing = xent::Smoothing::kOffTarget; }},
      {"z_loss 1e-2", [](auto& o) { o.z_loss = 1e-2; }},
      {"softcap 4", [](auto& o) { o.softcap = 4; }},
      {"temperature 1.7", [](auto& o) { o.temperature = 1.7; }},
      {"class weights", [&](auto& o) { o.class_weight = w.data(); }},
      {"grad_scale 0.5", [](auto& o) { o.grad_scale = 0.5; }},
      {"compute_accuracy (ties)", [](auto& o) { o.compute_accuracy = true; }},
      {"focal 2", [](auto& o) { o.focal_gamma = 2; }},
      {"focal 0.5 + weights, sum", [&](auto& o) {
         o.focal_gamma = 0.5; o.class_weight = w.data(); o.reduction = xent::Reduction::kSum; }},
      {"focal 1.5 + smoothing + z_loss + softcap, none", [](auto& o) {
         o.focal_gamma = 1.5; o.label_smoothing = 0.1; o.z_loss = 1e-3; o.softcap = 5;
         o.reduction = xent::Reduction::kNone; }},
      {"compute_accuracy + softcap + smoothing",
       [](auto& o) { o.compute_accuracy = true; o.softcap = 2; o.label_smoothing = 0.1; }},
      {"all ignored, mean NaN",
       [](auto& o) { o.ignore_index = -100; o.empty_mean = xent::EmptyMean::kNaN; }},
      {"combined uniform",
       [&](auto& o) {
         o.class_weight = w.data(); o.label_smoothing = 0.15; o.z_loss = 1e-3;
         o.softcap = 6; o.temperature = 0.9; o.grad_scale = 3;
       }},
      {"combined off-target sum",
       [&](auto& o) {
         o.reduction = xent::Reduction::kSum; o.class_weight = w.data();
         o.label_smoothing = 0.3; o.smoothing = xent::Smoothing::kOffTarget;
         o.z_loss = 1e-2; o.softcap = 5;
       }},
  };
  std::uint64_t seed = 42;
  for (auto& [name, set] : cases) {
    CrossEntropyOptions o;
    set(o);
    const bool all_ignored = name.rfind("all ignored", 0) == 0;
    for (int variant = 0; variant < 4; ++variant) {
      ++seed;
      if (variant % 2 == 0)
        run_case<float>(name, o, variant >= 2, all_ignored, comm, seed);
      else
        run_case<double>(name, o, variant >= 2, all_ignored, comm, seed);
    }
  }
  return g_failures;
}

int bad_target(xent::MpiCommunicator& comm) {
  const std::int64_t N = 4, V = 10;
  const auto shards = make_shards(V, comm.size());
  const Shard me = shards[comm.rank()];
  std::vector<float> local(N * me.cols, 0.5f);
  std::vector<std::int64_t> t = {1, 2, 3, 4};
  if (comm.rank() == 1) t[2] = V + 5;  // only rank 1's copy is bad
  try {
    xent::vocab_parallel_cross_entropy({local.data(), DType::kF32, N, me.cols, 0}, me.offset, V,
                                       xent::Targets::Index(t.data()), {}, comm);
  } catch (const xent::Error& e) {
    std::fprintf(stderr, "rank %d: xent::Error (%s): %s\n", comm.rank(),
                 xent::ErrorCodeName(e.code()), e.what());
    return 3;
  }
  std::fprintf(stderr, "rank %d: no error was raised\n", comm.rank());
  return 0;  // the test script wants a non-zero exit: this fails it
}

int bad_logit(xent::MpiCommunicator& comm) {
  const std::int64_t N = 4, V = 10;
  const auto shards = make_shards(V, comm.size());
  const Shard me = shards[comm.rank()];
  std::vector<float> local(N * me.cols, 0.5f);
  const std::vector<std::int64_t> t = {1, 2, 3, -100};  // row 3 is ignored
  const float nan = std::numeric_limits<float>::quiet_NaN();
  if (comm.rank() == 0 && me.cols > 0) local[3 * me.cols] = nan;  // ignored row: fine
  if (comm.rank() == 1 && me.cols > 1) local[2 * me.cols + 1] = nan;  // counted row 2
  try {
    xent::vocab_parallel_cross_entropy({local.data(), DType::kF32, N, me.cols, 0}, me.offset, V,
                                       xent::Targets::Index(t.data()), {}, comm);
  } catch (const xent::Error& e) {
    std::fprintf(stderr, "rank %d: xent::Error (%s): %s\n", comm.rank(),
                 xent::ErrorCodeName(e.code()), e.what());
    const std::string want = "local_logits[2][1] (global column " +
                             std::to_string(me.offset + 1) + ") = nan";
    if (comm.rank() == 1 && std::string(e.what()).find(want) == std::string::npos) {
      std::fprintf(stderr, "rank 1: the message does not name \"%s\"\n", want.c_str());
      return 0;  // fails the test
    }
    return 3;
  }
  std::fprintf(stderr, "rank %d: no error was raised\n", comm.rank());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rc = 0;
  {
    xent::MpiCommunicator comm;
    g_rank = comm.rank();
    if (argc > 1 && std::strcmp(argv[1], "--bad-target") == 0) {
      rc = bad_target(comm);
    } else if (argc > 1 && std::strcmp(argv[1], "--bad-logit") == 0) {
      rc = bad_logit(comm);
    } else {
      double failed = compare_all(comm);
      comm.allreduce_sum(&failed, 1);
      if (comm.rank() == 0)
        std::printf("vocab_parallel_mpi_test: %d ranks, %s (%g failed checks in all)\n",
                    comm.size(), failed == 0 ? "all passed" : "FAILED", failed);
      rc = failed == 0 ? 0 : 1;
    }
  }
  MPI_Finalize();
  return rc;
}
