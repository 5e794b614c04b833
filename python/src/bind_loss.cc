// The fused batch losses of xent/loss.h, bound 1:1: option structs with the
// header's field names, pointer fields as integer addresses (0 = nullptr),
// and the kernels called with the GIL released.
#include <pybind11/pybind11.h>

#include "views.h"
#include "xent/linear_cross_entropy.h"
#include "xent/loss.h"

namespace xent::py {
namespace {

namespace pb = pybind11;

template <class T>
const T* typed(std::uintptr_t a) {
  return static_cast<const T*>(as_ptr(a));
}

template <class C, class T>
auto addr_property(T* C::*field) {
  return std::make_pair(
      [field](const C& c) { return reinterpret_cast<std::uintptr_t>(c.*field); },
      [field](C& c, std::uintptr_t a) { c.*field = static_cast<T*>(as_mut_ptr(a)); });
}

template <class C, class T>
auto const_addr_property(const T* C::*field) {
  return std::make_pair(
      [field](const C& c) { return reinterpret_cast<std::uintptr_t>(c.*field); },
      [field](C& c, std::uintptr_t a) { c.*field = typed<T>(a); });
}

void bind_cross_entropy(pb::module_& m) {
  pb::enum_<Reduction>(m, "Reduction")
      .value("none", Reduction::kNone)
      .value("sum", Reduction::kSum)
      .value("mean", Reduction::kMean);
  pb::enum_<Smoothing>(m, "Smoothing")
      .value("uniform", Smoothing::kUniform)
      .value("off_target", Smoothing::kOffTarget);
  pb::enum_<EmptyMean>(m, "EmptyMean")
      .value("zero", EmptyMean::kZero)
      .value("nan", EmptyMean::kNaN);

  pb::class_<Targets>(m, "Targets")
      .def_static("index_int32", [](std::uintptr_t a) { return Targets::Index(typed<std::int32_t>(a)); })
      .def_static("index_int64", [](std::uintptr_t a) { return Targets::Index(typed<std::int64_t>(a)); })
      .def_static("soft", [](const MatrixView& p) { return Targets::Soft(p); });

  auto weight = const_addr_property(&CrossEntropyOptions::class_weight);
  pb::class_<CrossEntropyOptions>(m, "CrossEntropyOptions")
      .def(pb::init<>())
      .def_readwrite("reduction", &CrossEntropyOptions::reduction)
      .def_readwrite("ignore_index", &CrossEntropyOptions::ignore_index)
      .def_property("class_weight", weight.first, weight.second)
      .def_readwrite("label_smoothing", &CrossEntropyOptions::label_smoothing)
      .def_readwrite("smoothing", &CrossEntropyOptions::smoothing)
      .def_readwrite("temperature", &CrossEntropyOptions::temperature)
      .def_readwrite("softcap", &CrossEntropyOptions::softcap)
      .def_readwrite("z_loss", &CrossEntropyOptions::z_loss)
      .def_readwrite("focal_gamma", &CrossEntropyOptions::focal_gamma)
      .def_readwrite("empty_mean", &CrossEntropyOptions::empty_mean)
      .def_readwrite("grad_scale", &CrossEntropyOptions::grad_scale)
      .def_readwrite("compute_accuracy", &CrossEntropyOptions::compute_accuracy)
      .def_readwrite("num_threads", &CrossEntropyOptions::num_threads);

  auto row_loss = addr_property(&CrossEntropyOutputs::row_loss);
  auto row_lse = addr_property(&CrossEntropyOutputs::row_lse);
  pb::class_<CrossEntropyOutputs>(m, "CrossEntropyOutputs")
      .def(pb::init<>())
      .def_property("row_loss", row_loss.first, row_loss.second)
      .def_property("row_lse", row_lse.first, row_lse.second)
      .def_readwrite("grad", &CrossEntropyOutputs::grad);

  pb::class_<CrossEntropyResult>(m, "CrossEntropyResult")
      .def_readonly("loss", &CrossEntropyResult::loss)
      .def_readonly("z_loss", &CrossEntropyResult::z_loss)
      .def_readonly("count", &CrossEntropyResult::count)
      .def_readonly("weight_sum", &CrossEntropyResult::weight_sum)
      .def_readonly("correct", &CrossEntropyResult::correct);

  const auto nogil = pb::call_guard<pb::gil_scoped_release>();
  m.def("cross_entropy_loss", &cross_entropy_loss, pb::arg("logits"), pb::arg("targets"),
        pb::arg("options"), pb::arg("outputs"), nogil);
  m.def(
      "cross_entropy_backward",
      [](const MatrixView& logits, const Targets& targets, std::uintptr_t row_lse,
         const CrossEntropyOptions& options, std::uintptr_t row_upstream,
         const MutableMatrixView& grad) {
        cross_entropy_backward(logits, targets, typed<float>(row_lse), options,
                               typed<float>(row_upstream), grad);
      },
      pb::arg("logits"), pb::arg("targets"), pb::arg("row_lse"), pb::arg("options"),
      pb::arg("row_upstream"), pb::arg("grad"), nogil);
}

void bind_bce(pb::module_& m) {
  auto pos_weight = const_addr_property(&BceOptions::pos_weight);
  pb::class_<BceOptions>(m, "BceOptions")
      .def(pb::init<>())
      .def_readwrite("reduction", &BceOptions::reduction)
      .def_readwrite("weight", &BceOptions::weight)
      .def_property("pos_weight", pos_weight.first, pos_weight.second)
      .def_readwrite("grad_scale", &BceOptions::grad_scale)
      .def_readwrite("num_threads", &BceOptions::num_threads);
  pb::class_<BceOutputs>(m, "BceOutputs")
      .def(pb::init<>())
      .def_readwrite("elem_loss", &BceOutputs::elem_loss)
      .def_readwrite("grad", &BceOutputs::grad);
  m.def("binary_cross_entropy_with_logits_loss", &binary_cross_entropy_with_logits_loss,
        pb::arg("logits"), pb::arg("targets"), pb::arg("options"), pb::arg("outputs"),
        pb::call_guard<pb::gil_scoped_release>());
}

void bind_kl(pb::module_& m) {
  pb::enum_<KlReduction>(m, "KlReduction")
      .value("none", KlReduction::kNone)
      .value("sum", KlReduction::kSum)
      .value("mean", KlReduction::kMean)
      .value("batchmean", KlReduction::kBatchMean);
  pb::class_<KlDivOptions>(m, "KlDivOptions")
      .def(pb::init<>())
      .def_readwrite("reduction", &KlDivOptions::reduction)
      .def_readwrite("log_target", &KlDivOptions::log_target)
      .def_readwrite("grad_scale", &KlDivOptions::grad_scale)
      .def_readwrite("num_threads", &KlDivOptions::num_threads);
  pb::class_<KlDivOutputs>(m, "KlDivOutputs")
      .def(pb::init<>())
      .def_readwrite("elem_loss", &KlDivOutputs::elem_loss)
      .def_readwrite("grad", &KlDivOutputs::grad);
  m.def("kl_div_loss", &kl_div_loss, pb::arg("input"), pb::arg("target"), pb::arg("options"),
        pb::arg("outputs"), pb::call_guard<pb::gil_scoped_release>());
}

// linear_cross_entropy: the option struct nests CrossEntropyOptions (bound
// above); gradients are float32 buffers the caller allocates.
void bind_linear(pb::module_& m) {
  pb::enum_<LinearCrossEntropyAlgorithm>(m, "LinearCrossEntropyAlgorithm")
      .value("auto", LinearCrossEntropyAlgorithm::kAuto)
      .value("token_chunked", LinearCrossEntropyAlgorithm::kTokenChunked)
      .value("vocab_tiled", LinearCrossEntropyAlgorithm::kVocabTiled);
  pb::class_<LinearCrossEntropyOptions>(m, "LinearCrossEntropyOptions")
      .def(pb::init<>())
      .def_readwrite("loss", &LinearCrossEntropyOptions::loss)
      .def_readwrite("algorithm", &LinearCrossEntropyOptions::algorithm)
      .def_readwrite("max_buffer_bytes", &LinearCrossEntropyOptions::max_buffer_bytes)
      .def_readwrite("chunk_rows", &LinearCrossEntropyOptions::chunk_rows)
      .def_readwrite("tile_cols", &LinearCrossEntropyOptions::tile_cols)
      .def_readwrite("grad_filter", &LinearCrossEntropyOptions::grad_filter);
  auto row_loss = addr_property(&LinearCrossEntropyOutputs::row_loss);
  auto row_lse = addr_property(&LinearCrossEntropyOutputs::row_lse);
  auto grad_bias = addr_property(&LinearCrossEntropyOutputs::grad_bias);
  pb::class_<LinearCrossEntropyOutputs>(m, "LinearCrossEntropyOutputs")
      .def(pb::init<>())
      .def_property("row_loss", row_loss.first, row_loss.second)
      .def_property("row_lse", row_lse.first, row_lse.second)
      .def_readwrite("grad_hidden", &LinearCrossEntropyOutputs::grad_hidden)
      .def_readwrite("grad_weight", &LinearCrossEntropyOutputs::grad_weight)
      .def_property("grad_bias", grad_bias.first, grad_bias.second);
  pb::class_<LinearCrossEntropyResult, CrossEntropyResult>(m, "LinearCrossEntropyResult")
      .def_property_readonly("algorithm", [](const LinearCrossEntropyResult& r) {
        return std::string(LinearCrossEntropyAlgorithmName(r.algorithm));
      })
      .def_readonly("chunk_rows", &LinearCrossEntropyResult::chunk_rows)
      .def_readonly("tile_cols", &LinearCrossEntropyResult::tile_cols)
      .def_readonly("buffer_bytes", &LinearCrossEntropyResult::buffer_bytes)
      .def_readonly("blocks", &LinearCrossEntropyResult::blocks)
      .def_readonly("blocks_skipped", &LinearCrossEntropyResult::blocks_skipped);
  m.def(
      "linear_cross_entropy",
      [](const MatrixView& hidden, const MatrixView& weight, std::uintptr_t bias,
         const Targets& targets, const LinearCrossEntropyOptions& options,
         const LinearCrossEntropyOutputs& outputs) {
        return linear_cross_entropy(hidden, weight, typed<float>(bias), targets, options, outputs);
      },
      pb::arg("hidden"), pb::arg("weight"), pb::arg("bias"), pb::arg("targets"),
      pb::arg("options"), pb::arg("outputs"), pb::call_guard<pb::gil_scoped_release>());
}

}  // namespace

void bind_loss(pb::module_& m) {
  bind_cross_entropy(m);
  bind_bce(m);
  bind_kl(m);
  bind_linear(m);
}

}  // namespace xent::py
