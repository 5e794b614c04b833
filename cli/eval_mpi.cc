// `mpirun -np K xent eval`: rows split across ranks, accumulated on rank 0 in
// row order so the output equals a single process's to the bit.
//
// Why a gather of per-row records rather than an allreduce of partial sums:
// floating-point sums are not associative, so Σ over rank 0's rows + Σ over
// rank 1's rows differs in the last bits from one sum over all rows; and the
// list of highest-loss rows is not a sum at all. A row's record is 72 bytes
// whatever V is, so sending them costs little next to reading the V logits of
// the row, and rank 0 receives them in bounded pieces (O(1) memory).
#include "eval_mpi.h"

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common.h"
#include "npy.h"
#include "xent/error.h"
#include "xent/mpi_communicator.h"

namespace xent::cli {

bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(var) != nullptr) return true;
  return false;
}

namespace {

// MPI_Init/MPI_Finalize around the run, including when it throws (every rank
// throws together, after the error agreement, so every rank finalizes).
struct MpiSession {
  bool owns = false;
  MpiSession() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      MPI_Init(nullptr, nullptr);
      owns = true;
    }
  }
  ~MpiSession() {
    if (owns) MPI_Finalize();
  }
};

// Runs `step` on this rank, then agrees with every rank: if any failed, every
// rank throws (see Communicator::agree).
template <class F>
void collectively(Communicator& comm, F&& step) {
  bool ok = true;
  ErrorCode code = ErrorCode::kInvalidArgument;
  std::string message;
  try {
    step();
  } catch (const Error& e) {
    ok = false;
    code = e.code();
    message = e.what();
  } catch (const std::exception& e) {  // NpyError, UsageError, bad_alloc
    ok = false;
    message = e.what();
  }
  comm.agree(ok, code, message, "xent eval");
}

constexpr std::size_t kPiece = 1 << 14;  // records per message (~1.2 MB)
constexpr int kTag = 9;

}  // namespace

nlohmann::json evaluate_mpi(const EvalOptions& options) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  const int rank = comm.rank(), size = comm.size();
  EvalOptions opt = options;
  if (rank != 0) opt.progress = false;  // one progress bar, rank 0's

  // 1. Open and check the inputs (each rank its slice), then agree: an error
  //    in a header is every rank's, a bad target only its slice's.
  std::unique_ptr<RowEvaluator> rows;
  collectively(comm, [&] { rows = std::make_unique<RowEvaluator>(opt, rank, size); });

  // 2. Evaluate: rank 0 accumulates its rows as they come, the others keep
  //    their records for the gather. Agree again (a probability row that does
  //    not sum to 1 is found only here).
  std::optional<EvalAccumulator> acc;
  std::vector<EvalRow> mine;
  collectively(comm, [&] {
    if (rank == 0) {
      acc.emplace(opt, rows->classes());
      rows->run([&](std::span<const EvalRow> chunk) { acc->add(chunk); });
    } else {
      mine.reserve(static_cast<std::size_t>(rows->end() - rows->begin()));
      rows->run([&](std::span<const EvalRow> chunk) { mine.insert(mine.end(), chunk.begin(), chunk.end()); });
    }
  });

  // 3. Gather in rank order = row order. Every rank knows every slice's size
  //    (the same split of the same N), so the messages match without a probe.
  const std::int64_t n = rows->rows();
  if (rank == 0) {
    std::vector<EvalRow> buf(kPiece);
    for (int r = 1; r < size; ++r) {
      std::int64_t left = split_begin(n, r + 1, size) - split_begin(n, r, size);
      while (left > 0) {
        const auto k = static_cast<std::size_t>(std::min<std::int64_t>(left, kPiece));
        MPI_Recv(buf.data(), static_cast<int>(k * sizeof(EvalRow)), MPI_BYTE, r, kTag,
                 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        acc->add(std::span<const EvalRow>(buf.data(), k));
        left -= static_cast<std::int64_t>(k);
      }
    }
    return acc->result(rows->inputs());
  }
  for (std::size_t i = 0; i < mine.size(); i += kPiece) {
    const std::size_t k = std::min(kPiece, mine.size() - i);
    MPI_Send(mine.data() + i, static_cast<int>(k * sizeof(EvalRow)), MPI_BYTE, 0, kTag,
             MPI_COMM_WORLD);
  }
  return nullptr;
}

int run_eval_mpi(const EvalOptions& options, const std::function<void(const nlohmann::json&)>& print) {
  MpiSession session;
  try {
    const nlohmann::json result = evaluate_mpi(options);
    if (!result.is_null()) print(result);
    return kExitOk;
  } catch (const std::exception& e) {
    // Every rank gets here together (the errors are agreed). Each prints its
    // line before anyone finalizes and exits: mpirun kills the remaining
    // ranks as soon as one exits non-zero, which would swallow their lines.
    std::string line = e.what();
    for (char& c : line)
      if (c == '\n' || c == '\r') c = ' ';
    std::fprintf(stderr, "xent: error: %s\n", line.c_str());
    std::fflush(stderr);
    MPI_Barrier(MPI_COMM_WORLD);
    return kExitUsage;
  }
}

}  // namespace xent::cli
