// _xent_cuda: the CUDA backend (xent/cuda.h) for the `xent` Python package.
//
// It takes the very option, view and output objects of _xent (their pybind11
// types are registered by _xent, which is imported first; both modules are
// built together, so they share pybind11's type registry and _xent's
// exception translation: xent::Error → ValueError / IndexError). Views hold
// DEVICE addresses (torch's tensor.data_ptr() of CUDA tensors); `stream` is
// the cudaStream_t as an integer (torch.cuda.current_stream().cuda_stream).
// No torch or CUDA headers are needed here. Every call releases the GIL.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "xent/cuda.h"

namespace pb = pybind11;

namespace {

void* stream_of(std::uintptr_t s) { return reinterpret_cast<void*>(s); }

}  // namespace

PYBIND11_MODULE(_xent_cuda, m) {
  m.doc() = "Private CUDA bindings of libxent (xent_cuda); use xent.torch with CUDA tensors.";
  pb::module_::import("xent._xent");  // the shared types and the error translator
  m.def("device_count", &xent::cuda::device_count);
  m.def("workspace_peak_bytes", &xent::cuda::workspace_peak_bytes, pb::arg("reset") = false);
  m.def(
      "cross_entropy_loss",
      [](const xent::MatrixView& logits, const xent::Targets& targets,
         const xent::CrossEntropyOptions& options, const xent::CrossEntropyOutputs& outputs,
         std::uintptr_t stream) {
        return xent::cuda::cross_entropy_loss(logits, targets, options, outputs, stream_of(stream));
      },
      pb::arg("logits"), pb::arg("targets"), pb::arg("options"), pb::arg("outputs"),
      pb::arg("stream"), pb::call_guard<pb::gil_scoped_release>());
  m.def(
      "cross_entropy_backward",
      [](const xent::MatrixView& logits, const xent::Targets& targets,
         const xent::CrossEntropyOptions& options, std::uintptr_t row_upstream,
         const xent::MutableMatrixView& grad, std::uintptr_t stream) {
        xent::cuda::cross_entropy_backward(logits, targets, options,
                                           reinterpret_cast<const float*>(row_upstream), grad,
                                           stream_of(stream));
      },
      pb::arg("logits"), pb::arg("targets"), pb::arg("options"), pb::arg("row_upstream"),
      pb::arg("grad"), pb::arg("stream"), pb::call_guard<pb::gil_scoped_release>());
  m.def(
      "binary_cross_entropy_with_logits_loss",
      [](const xent::MatrixView& logits, const xent::MatrixView& targets,
         const xent::BceOptions& options, const xent::BceOutputs& outputs, std::uintptr_t stream) {
        return xent::cuda::binary_cross_entropy_with_logits_loss(logits, targets, options, outputs,
                                                                 stream_of(stream));
      },
      pb::arg("logits"), pb::arg("targets"), pb::arg("options"), pb::arg("outputs"),
      pb::arg("stream"), pb::call_guard<pb::gil_scoped_release>());
  m.def(
      "linear_cross_entropy",
      [](const xent::MatrixView& hidden, const xent::MatrixView& weight, std::uintptr_t bias,
         const xent::Targets& targets, const xent::LinearCrossEntropyOptions& options,
         const xent::LinearCrossEntropyOutputs& outputs, std::uintptr_t stream) {
        return xent::cuda::linear_cross_entropy(hidden, weight, reinterpret_cast<const float*>(bias),
                                                targets, options, outputs, stream_of(stream));
      },
      pb::arg("hidden"), pb::arg("weight"), pb::arg("bias"), pb::arg("targets"), pb::arg("options"),
      pb::arg("outputs"), pb::arg("stream"), pb::call_guard<pb::gil_scoped_release>());
}
