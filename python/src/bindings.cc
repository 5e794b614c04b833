// _xent: the private extension module behind the `xent` Python package.
//
// Layering (see python/README.md): _xent binds the C++ API almost 1:1 on
// address-based matrix views; xent/_views.py turns NumPy arrays and torch
// tensors into those views; xent/__init__.py (NumPy API) and xent/torch/
// (autograd) sit on top. Every kernel call releases the GIL.
//
// Errors: xent::Error becomes ValueError, except kTargetOutOfRange which
// becomes IndexError (as nanobind maps invalid_argument / out_of_range); the
// message is kept verbatim, and the code is on the exception as `.xent_code`.
#include <pybind11/pybind11.h>

#include <string>

#include "views.h"
#include "xent/error.h"
#include "xent/loss.h"
#include "xent/version.h"

namespace py = pybind11;

namespace xent::py {
namespace {

void raise_error(const Error& e) {
  PyObject* type = e.code() == ErrorCode::kTargetOutOfRange ? PyExc_IndexError
                                                            : PyExc_ValueError;
  // Build the exception object ourselves so it can carry the code name.
  pybind11::object exc = pybind11::reinterpret_steal<pybind11::object>(
      PyObject_CallFunction(type, "s", e.what()));
  if (!exc) return;  // the Python error from the failed call stays set
  if (PyObject_SetAttrString(exc.ptr(), "xent_code",
                             pybind11::str(ErrorCodeName(e.code())).ptr()) != 0)
    PyErr_Clear();
  PyErr_SetObject(type, exc.ptr());
}

void bind_views(pybind11::module_& m) {
  pybind11::enum_<DType>(m, "DType")
      .value("f32", DType::kF32)
      .value("f64", DType::kF64)
      .value("bf16", DType::kBF16)
      .value("f16", DType::kF16);

  // MatrixView(address, dtype, rows, cols, row_stride): row r at
  // address + r·row_stride elements (0 = packed).
  pybind11::class_<MatrixView>(m, "MatrixView")
      .def(pybind11::init([](std::uintptr_t data, DType dtype, std::int64_t rows,
                             std::int64_t cols, std::int64_t row_stride) {
             return MatrixView{as_ptr(data), dtype, rows, cols, row_stride};
           }),
           pybind11::arg("data"), pybind11::arg("dtype"), pybind11::arg("rows"),
           pybind11::arg("cols"), pybind11::arg("row_stride") = 0)
      .def(pybind11::init<>())
      .def_property_readonly("data", [](const MatrixView& v) {
        return reinterpret_cast<std::uintptr_t>(v.data);
      })
      .def_readonly("dtype", &MatrixView::dtype)
      .def_readonly("rows", &MatrixView::rows)
      .def_readonly("cols", &MatrixView::cols)
      .def_readonly("row_stride", &MatrixView::row_stride);

  pybind11::class_<MutableMatrixView>(m, "MutableMatrixView")
      .def(pybind11::init([](std::uintptr_t data, DType dtype, std::int64_t rows,
                             std::int64_t cols, std::int64_t row_stride) {
             return MutableMatrixView{as_mut_ptr(data), dtype, rows, cols, row_stride};
           }),
           pybind11::arg("data"), pybind11::arg("dtype"), pybind11::arg("rows"),
           pybind11::arg("cols"), pybind11::arg("row_stride") = 0)
      .def(pybind11::init<>())
      .def_property_readonly("data", [](const MutableMatrixView& v) {
        return reinterpret_cast<std::uintptr_t>(v.data);
      });
}

}  // namespace
}  // namespace xent::py

PYBIND11_MODULE(_xent, m) {
  m.doc() = "Private bindings of libxent; use the `xent` package.";
  m.attr("__version__") = XENT_VERSION_STRING;
  pybind11::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const xent::Error& e) {
      xent::py::raise_error(e);
    }
  });
  xent::py::bind_views(m);
  xent::py::bind_core(m);
  xent::py::bind_loss(m);
  xent::py::bind_memory(m);
  xent::py::bind_distributed(m);
}
