// cli/eval_mpi.h — `mpirun -np K xent eval`: data-parallel evaluation (issue 9).
//
// Built only where CMake finds MPI (XENT_CLI_MPI); without it `xent eval` is
// the single-process command and nothing here exists.
#pragma once

#include <functional>

#include <nlohmann/json_fwd.hpp>

#include "eval.h"

namespace xent::cli {

// True when an MPI launcher started this process (mpirun/mpiexec of Open MPI,
// MPICH's hydra, a PMIx launcher such as srun): only then does `xent eval`
// call MPI_Init. A plain `xent eval` never touches MPI, so it behaves and
// costs exactly as a build without MPI.
bool launched_by_mpi();

// Rank r evaluates rows [r·N/K, (r+1)·N/K) (mapping only those bytes), rank 0
// accumulates every rank's rows in row order and returns the result; the
// other ranks return null. The result is the single process's, to the bit.
// A failure on any rank (a malformed file, a bad target in its slice) throws
// on every rank: the failing rank its own message prefixed "rank R: ", the
// others an error naming rank R (xent::Communicator::agree), so no rank is
// left waiting. MPI must be initialized (run_eval_mpi does it).
nlohmann::json evaluate_mpi(const EvalOptions& options);

// The whole command under MPI: MPI_Init, evaluate_mpi, `print` on rank 0,
// MPI_Finalize. Errors are printed here, one line 'xent: error: ...' per rank
// (before any rank exits, so mpirun cannot cut one off), and give exit code 2
// on every rank.
int run_eval_mpi(const EvalOptions& options, const std::function<void(const nlohmann::json&)>& print);

}  // namespace xent::cli
