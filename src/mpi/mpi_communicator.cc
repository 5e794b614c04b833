// MpiCommunicator: xent::Communicator on MPI_Allreduce.
#include "xent/mpi_communicator.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>

namespace xent {

MpiCommunicator::MpiCommunicator(MPI_Comm comm) : comm_(comm) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

void MpiCommunicator::allreduce(void* values, std::size_t count, MPI_Datatype type,
                                std::size_t elem, MPI_Op op) {
  bytes_ += count * elem;
  // MPI counts are int: split larger arrays into INT_MAX-sized pieces (every
  // rank splits the same count the same way, so the collectives match).
  char* p = static_cast<char*>(values);
  while (count > 0) {
    const std::size_t piece = std::min<std::size_t>(count, INT_MAX);
    MPI_Allreduce(MPI_IN_PLACE, p, static_cast<int>(piece), type, op, comm_);
    p += piece * elem;
    count -= piece;
  }
}

void MpiCommunicator::allreduce_max(double* values, std::size_t count) {
  allreduce(values, count, MPI_DOUBLE, sizeof(double), MPI_MAX);
}
void MpiCommunicator::allreduce_sum(double* values, std::size_t count) {
  allreduce(values, count, MPI_DOUBLE, sizeof(double), MPI_SUM);
}
void MpiCommunicator::allreduce_sum(float* values, std::size_t count) {
  allreduce(values, count, MPI_FLOAT, sizeof(float), MPI_SUM);
}

void MpiCommunicator::abort(const std::string& message) {
  std::fprintf(stderr, "xent: rank %d: %s\n", rank_, message.c_str());
  std::fflush(stderr);
  MPI_Abort(comm_, 1);
  std::abort();  // MPI_Abort does not return; this keeps [[noreturn]] honest
}

}  // namespace xent
