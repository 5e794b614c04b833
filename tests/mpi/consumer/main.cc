// Two ranks each hold half of the 4 classes of one row; the loss must be
// −log softmax(z)_target computed in closed form here.
#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <cstdio>

#include "xent/mpi_communicator.h"
#include "xent/vocab_parallel.h"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int status = 1;
  {
    xent::MpiCommunicator comm;
    const float z[4] = {1.0f, 2.0f, 0.5f, -1.0f};
    const std::int64_t target = 2;
    const int r = comm.rank();  // 2 ranks: columns [2r, 2r + 2)
    xent::MatrixView local{z + 2 * r, xent::DType::kF32, 1, 2, 2};
    const auto res = xent::vocab_parallel_cross_entropy(local, 2 * r, 4, xent::Targets::Index(&target),
                                                        xent::CrossEntropyOptions{}, comm);
    double s = 0;
    for (float v : z) s += std::exp(double(v));
    const double expect = std::log(s) - z[target];
    std::printf("rank %d: loss %.6f expected %.6f\n", r, double(res.loss), expect);
    status = std::fabs(res.loss - expect) < 1e-6 ? 0 : 1;
  }
  MPI_Finalize();
  return status;
}
