// xent/communicator.h — the collectives that vocab-parallel cross-entropy
// needs, behind a small interface (issue 9). libxent itself knows no
// transport; xent_mpi (xent/mpi_communicator.h) implements it on MPI, and a
// test or another engine (NCCL, gloo) can implement it too.
//
// It extends VocabCommunicator (declared in xent/linear_cross_entropy.h, the
// hook that the sharded linear + cross-entropy will use) with the rank, the
// size and the error handling, so that one communicator serves both.
#pragma once

#include <string>

#include "xent/error.h"
#include "xent/linear_cross_entropy.h"  // VocabCommunicator

namespace xent {

class Communicator : public VocabCommunicator {
 public:
  // allreduce_max / allreduce_sum (inherited): in place, element-wise over
  // all ranks; collective (every rank calls with the same count).
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // Collective error agreement, called by every rank at the same point.
  // Returns normally when every rank passed ok = true. Otherwise every rank
  // throws xent::Error: the lowest failing rank rethrows its own message
  // prefixed by "rank R: ", the others an Error with the same code that names
  // that rank. This is what keeps a bad input on one rank from leaving the
  // others blocked in the next collective. Costs one allreduce of 1 double.
  void agree(bool ok, ErrorCode code = ErrorCode::kInvalidArgument,
             const std::string& message = {}, const char* fn = "xent");

  // The last resort for an application that cannot recover (e.g. an error
  // outside any collective): print the message naming this rank and end
  // every rank (MPI_Abort for MPI). Never called by libxent itself.
  [[noreturn]] virtual void abort(const std::string& message) = 0;
};

}  // namespace xent
