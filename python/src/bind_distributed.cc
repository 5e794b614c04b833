// Vocab-parallel cross-entropy for Python (issue 9): xent::Communicator whose
// collectives call back into Python — xent.torch passes a function that runs
// torch.distributed.all_reduce on the buffer, so any process group (gloo on
// CPU) carries the O(1)-doubles-per-row statistics, one collective per
// statistic for the whole batch, as in C++ with MPI.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "views.h"
#include "xent/communicator.h"
#include "xent/vocab_parallel.h"

namespace xent::py {
namespace {

namespace pb = pybind11;

class PyCommunicator final : public Communicator {
 public:
  // allreduce(buffer: memoryview (writable, 1-D), op: "max" | "sum") reduces
  // the buffer in place over the group; rank/size are the group's.
  PyCommunicator(int rank, int size, pb::function allreduce)
      : rank_(rank), size_(size), allreduce_(std::move(allreduce)) {}

  void allreduce_max(double* v, std::size_t n) override { call(v, n, "max"); }
  void allreduce_sum(double* v, std::size_t n) override { call(v, n, "sum"); }
  void allreduce_sum(float* v, std::size_t n) override { call(v, n, "sum"); }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  [[noreturn]] void abort(const std::string& message) override {
    // No process-wide abort from inside Python: an Error the caller sees.
    throw Error(ErrorCode::kInvalidArgument, "rank " + std::to_string(rank_) + ": " + message);
  }
  std::uint64_t bytes_reduced() const { return bytes_; }

 private:
  template <class T>
  void call(T* v, std::size_t n, const char* op) {
    bytes_ += n * sizeof(T);
    // Every rank calls with the same n, so skipping empty buffers keeps the
    // collectives matched (torch.frombuffer refuses an empty buffer).
    if (n == 0) return;
    pb::gil_scoped_acquire gil;
    auto mv = pb::memoryview::from_buffer(v, {static_cast<pb::ssize_t>(n)},
                                          {static_cast<pb::ssize_t>(sizeof(T))});
    allreduce_(mv, op);
  }
  int rank_, size_;
  pb::function allreduce_;
  std::uint64_t bytes_ = 0;
};

}  // namespace

void bind_distributed(pb::module_& m) {
  pb::class_<PyCommunicator>(m, "PyCommunicator")
      .def(pb::init<int, int, pb::function>(), pb::arg("rank"), pb::arg("size"),
           pb::arg("allreduce"))
      .def_property_readonly("rank", &PyCommunicator::rank)
      .def_property_readonly("size", &PyCommunicator::size)
      .def_property_readonly("bytes_reduced", &PyCommunicator::bytes_reduced);

  // The kernel runs without the GIL; the communicator takes it back for each
  // collective.
  m.def(
      "vocab_parallel_cross_entropy",
      [](const MatrixView& local_logits, std::int64_t vocab_offset, std::int64_t vocab_total,
         const Targets& targets, const CrossEntropyOptions& options, PyCommunicator& comm,
         std::uintptr_t row_loss, std::uintptr_t row_lse, const MutableMatrixView& grad) {
        VocabParallelOutputs out;
        out.row_loss = static_cast<float*>(as_mut_ptr(row_loss));
        out.row_lse = static_cast<float*>(as_mut_ptr(row_lse));
        out.grad = grad;
        return vocab_parallel_cross_entropy(local_logits, vocab_offset, vocab_total, targets,
                                            options, comm, out);
      },
      pb::arg("local_logits"), pb::arg("vocab_offset"), pb::arg("vocab_total"),
      pb::arg("targets"), pb::arg("options"), pb::arg("comm"), pb::arg("row_loss"),
      pb::arg("row_lse"), pb::arg("grad"), pb::call_guard<pb::gil_scoped_release>());
}

}  // namespace xent::py
