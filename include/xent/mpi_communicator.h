// xent/mpi_communicator.h — xent::Communicator on MPI (target xent::xent_mpi,
// built only where CMake finds MPI; issue 9).
//
// Wraps an MPI communicator that the caller owns (MPI_Init / MPI_Finalize
// are the application's). Collectives are MPI_Allreduce with MPI_IN_PLACE.
// MPI's own failures follow the communicator's MPI error handler (by default
// MPI_ERRORS_ARE_FATAL: every rank ends); bad input to xent is reported by
// Communicator::agree as an xent::Error on every rank.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "xent/communicator.h"

namespace xent {

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD);

  void allreduce_max(double* values, std::size_t count) override;
  void allreduce_sum(double* values, std::size_t count) override;
  void allreduce_sum(float* values, std::size_t count) override;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  // Prints "xent: rank R: <message>" to stderr and calls MPI_Abort(comm, 1).
  [[noreturn]] void abort(const std::string& message) override;

  // Bytes this rank has passed to allreduce so far (the payload, not the
  // wire traffic of MPI's algorithm), for the bytes-per-row accounting.
  std::uint64_t bytes_reduced() const { return bytes_; }
  MPI_Comm comm() const { return comm_; }

 private:
  void allreduce(void* values, std::size_t count, MPI_Datatype type, std::size_t elem, MPI_Op op);
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  std::uint64_t bytes_ = 0;
};

}  // namespace xent
