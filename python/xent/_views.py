"""NumPy arrays and torch tensors → the address-based matrix views of _xent.

The C++ kernels take a matrix as (address, dtype, rows, cols, row_stride):
rows need not be packed, but each row's elements must be contiguous. So an
array of shape (..., C) is passed without a copy whenever its leading axes
collapse into one row axis with a single stride (any C-contiguous array, a
slice of columns ``x[:, :V]``, every other row ``x[::2]``, ...); it is copied
only when the last axis is itself strided or the leading axes do not collapse
(e.g. a transposed array). The caller keeps the returned owner alive for as
long as the view is used; every public function does so for the duration of
the kernel call.
"""

from __future__ import annotations

import numpy as np

from . import _xent

_NUMPY_DTYPES = {
    np.dtype(np.float32): _xent.DType.f32,
    np.dtype(np.float64): _xent.DType.f64,
}


def collapsed_row_stride(shape, strides):
    """The row stride (in elements) of an array of `shape` with `strides` (in
    elements) seen as rows × shape[-1], or None when it cannot be expressed
    without a copy. Axes of length 1 carry no stride information and are
    skipped."""
    cols = shape[-1] if shape else 1
    if cols > 1 and strides[-1] != 1:
        return None
    leading = [(n, s) for n, s in zip(shape[:-1], strides[:-1]) if n != 1]
    if not leading:
        return cols
    row_stride = leading[-1][1]
    expected = row_stride
    for n, s in reversed(leading):
        if s != expected:
            return None
        expected = s * n
    # The kernels read row r at r·row_stride; rows must not overlap (and a
    # negative stride would walk backwards), so anything else is copied.
    if row_stride < cols:
        return None
    return row_stride


def numpy_dtype(a, name):
    try:
        return _NUMPY_DTYPES[a.dtype]
    except KeyError:
        raise TypeError(
            f"{name}: dtype {a.dtype} is not supported (float32 or float64; "
            "bfloat16/float16 through xent.torch)") from None


def as_float_array(x, name, dtype=None):
    """x as a NumPy float array (float32/float64 kept; ints and Python lists
    become float64 unless `dtype` is given)."""
    a = np.asarray(x, dtype=dtype)
    if a.dtype not in _NUMPY_DTYPES:
        if a.dtype.kind in "biu" and dtype is None:
            a = a.astype(np.float64)
        else:
            numpy_dtype(a, name)
    return a


def numpy_rows(a, name):
    """(owner, MatrixView) for a float NumPy array of shape (..., C), C ≥ 0,
    seen as rows × C. Zero-copy where the strides allow it."""
    dt = numpy_dtype(a, name)
    if a.ndim == 0:
        a = a.reshape(1)
    item = a.itemsize
    cols = a.shape[-1]
    rows = a.size // cols if cols else int(np.prod(a.shape[:-1]))
    strides = [s // item if s % item == 0 else None for s in a.strides]
    stride = None if None in strides else collapsed_row_stride(a.shape, strides)
    if stride is None:
        a = np.ascontiguousarray(a)
        stride = cols
    return a, _xent.MatrixView(a.ctypes.data, dt, rows, cols, stride)


def numpy_out(shape, dtype):
    """A fresh packed output array and its MutableMatrixView (rows × last)."""
    out = np.empty(shape, dtype=dtype)
    cols = shape[-1] if len(shape) else 1
    rows = out.size // cols if cols else 0
    return out, _xent.MutableMatrixView(out.ctypes.data, _NUMPY_DTYPES[out.dtype],
                                        rows, cols, cols)
