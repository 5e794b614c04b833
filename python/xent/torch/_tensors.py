"""torch tensors → _xent matrix views, argument checks, and the safety rules
of the in-place backward."""

from __future__ import annotations

import torch

from .. import _xent
from .._views import collapsed_row_stride

DTYPES = {
    torch.float32: _xent.DType.f32,
    torch.float64: _xent.DType.f64,
    torch.bfloat16: _xent.DType.bf16,
    torch.float16: _xent.DType.f16,
}


def check_cpu(name, **tensors):
    for arg, t in tensors.items():
        if t is not None and not t.is_cpu:
            raise NotImplementedError(
                f"{name}: {arg} is on device '{t.device}'; xent.torch supports CPU "
                "tensors only for now (move it with .cpu(), or use torch's own loss)")


def check_float(name, arg, t):
    if t.dtype not in DTYPES:
        raise TypeError(f"{name}: {arg} has dtype {t.dtype}; expected float32, float64, "
                        "bfloat16 or float16")


def check_no_grad(name, **tensors):
    """xent differentiates with respect to the input only."""
    if not torch.is_grad_enabled():
        return
    for arg, t in tensors.items():
        if t is not None and t.requires_grad:
            raise NotImplementedError(
                f"{name}: {arg} requires grad, but xent computes the gradient with "
                f"respect to the input only; pass {arg}.detach()")


def _row_stride(t):
    """collapsed_row_stride of a tensor of dim ≥ 1, with the common
    contiguous case first (it is on every call's path)."""
    if t.is_contiguous():
        return t.shape[-1]
    return collapsed_row_stride(tuple(t.shape), t.stride())


def viewable(t):
    """t itself if its rows × last-dim layout can be passed without a copy,
    else a contiguous copy (made by autograd-aware torch ops)."""
    if t.dim() == 0:
        return t.reshape(1, 1)
    if _row_stride(t) is None:
        return t.contiguous()
    return t


def rows_view(t):
    """MatrixView of a tensor of shape (..., C) already made `viewable`."""
    cols = t.shape[-1] if t.dim() else 1
    rows = t.numel() // cols if cols else 0
    stride = _row_stride(t) if t.dim() else 1
    assert stride is not None, "rows_view on a tensor that is not viewable"
    return _xent.MatrixView(t.data_ptr(), DTYPES[t.dtype], rows, cols, stride)


def mutable_view(t):
    cols = t.shape[-1]
    rows = t.numel() // cols if cols else 0
    stride = _row_stride(t)
    assert stride is not None, "mutable_view on a tensor that is not viewable"
    return _xent.MutableMatrixView(t.data_ptr(), DTYPES[t.dtype], rows, cols, stride)


# Below this size a buffer has no whole 2 MiB page worth advising.
_HUGEPAGE_MIN_BYTES = 4 << 20


def empty(shape, dtype, device=None):
    """torch.empty for a buffer the kernel is about to write in full: large
    ones get transparent-huge-page advice first (see src/bind_memory.cc),
    which cuts the first-touch cost of a fresh N×V gradient about 4x.
    A CUDA `device` gets a plain device allocation."""
    if device is not None and device.type == "cuda":
        return torch.empty(shape, dtype=dtype, device=device)
    t = torch.empty(shape, dtype=dtype)
    nbytes = t.numel() * t.element_size()
    if nbytes >= _HUGEPAGE_MIN_BYTES:
        _xent.advise_hugepages(t.data_ptr(), nbytes)
    return t


def bump_version(t):
    """Tell autograd that t was modified in place (our kernel wrote through a
    raw pointer, which autograd cannot see). Any graph node that saved t then
    fails its version check with torch's own "modified by an inplace
    operation" error instead of silently using the gradient as logits. An
    in-place op on an empty slice bumps the shared version counter at no cost."""
    t.detach()[:0].zero_()


def _storage_ptr(t):
    return t.storage().data_ptr()


def _saved_tensors(node):
    for attr in dir(node):
        if not attr.startswith("_saved_"):
            continue
        try:
            value = getattr(node, attr)
        except RuntimeError:  # already freed by an earlier backward
            continue
        if isinstance(value, torch.Tensor):
            yield attr, value
        elif isinstance(value, (tuple, list)):
            for v in value:
                if isinstance(v, torch.Tensor):
                    yield attr, v


# How far up the graph the check looks for a node that saved the logits'
# storage: producers of views of the logits sit directly above them (view →
# exp → ...), so a few nodes cover every realistic case; anything deeper is
# still caught at backward time through bump_version.
_INPLACE_SEARCH_NODES = 16


def check_inplace_safe(name, x):
    """Refuse inplace_backward where overwriting x with its gradient would be
    wrong: x (or the tensor it is a view of) is a leaf that requires grad, or
    the autograd node that produced x saved x's values for its own backward
    (e.g. exp, sigmoid, tanh, softmax save their output)."""
    base = x._base if x._base is not None else x
    for t in (x, base):
        if t.is_leaf and t.requires_grad:
            raise ValueError(
                f"{name}: inplace_backward=True would overwrite a leaf tensor that "
                "requires grad (a parameter or user input) with the gradient; use "
                "inplace_backward=False")
    storage = _storage_ptr(x)
    seen, frontier = set(), [n for n in (x.grad_fn, base.grad_fn) if n is not None]
    while frontier and len(seen) < _INPLACE_SEARCH_NODES:
        node = frontier.pop(0)
        if node in seen:
            continue
        seen.add(node)
        for attr, saved in _saved_tensors(node):
            if saved.numel() and _storage_ptr(saved) == storage:
                raise ValueError(
                    f"{name}: inplace_backward=True is unsafe here: autograd node "
                    f"{type(node).__name__} saved these logits ({attr}) for its own "
                    "backward, so they must not be overwritten with the gradient; "
                    "use inplace_backward=False")
        frontier.extend(n for n, _ in node.next_functions if n is not None)
