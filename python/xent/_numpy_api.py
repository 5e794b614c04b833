"""The NumPy API: classes on the last axis, float32/float64, no autograd.

Every function accepts an array of shape (..., C) (C classes on the last
axis, any number of leading axes; 1-D is one row), reads it without a copy
where the strides allow (see _views.py) and runs the C++ kernel with the GIL
released. Losses that PyTorch also has take PyTorch's argument names.
"""

from __future__ import annotations

import numpy as np

from . import _views, _xent
from ._guard import check_logits

_REDUCTIONS = ("none", "sum", "mean")
_SMOOTHING = {"uniform": "uniform", "off_target": "off_target", "off-target": "off_target"}
_EMPTY_MEAN = ("zero", "nan")


def _unit(unit):
    if unit not in ("nats", "bits"):
        raise ValueError(f"unit must be 'nats' or 'bits', got {unit!r}")
    return getattr(_xent.Unit, unit)


def _map_rows(fn, x):
    a, view = _views.numpy_rows(_views.as_float_array(x, fn.__name__), fn.__name__)
    out, out_view = _views.numpy_out(a.shape, a.dtype)
    fn(view, out_view)
    return out


def softmax(x):
    """softmax over the last axis. -inf entries are masks; NaN or +inf, or a
    row of all -inf, raise ValueError."""
    return _map_rows(_xent.softmax, x)


def log_softmax(x):
    """log_softmax over the last axis, computed as (z − max) − log Σ exp(z − max)."""
    return _map_rows(_xent.log_softmax, x)


def _reduce_rows(x, name, call):
    a, view = _views.numpy_rows(_views.as_float_array(x, name), name)
    out = np.empty(a.shape[:-1], dtype=a.dtype)
    call(view, out.ctypes.data)
    return out if out.ndim else out[()]


def logsumexp(x):
    """log Σ exp over the last axis; shape x.shape[:-1] (a scalar for 1-D)."""
    return _reduce_rows(x, "logsumexp", _xent.logsumexp)


def entropy(p, *, unit="nats"):
    """H(p) = −Σ p log p over the last axis (0·log 0 = 0). Each row must be a
    distribution (entries in [0, 1], sum 1 within tolerance), else ValueError."""
    u = _unit(unit)
    return _reduce_rows(p, "entropy", lambda v, out: _xent.entropy(v, out, u))


def perplexity(x, target=None, *, unit="nats", **cross_entropy_kwargs):
    """Perplexity.

    perplexity(h, unit=...): elementwise exp(h) (nats) or 2**h (bits) of
    per-token cross-entropies h ≥ 0.
    perplexity(logits, target, **kw): exp of the mean cross-entropy of
    `logits` against `target` (any cross_entropy keyword except reduction).
    """
    if target is not None:
        if "reduction" in cross_entropy_kwargs:
            raise ValueError("perplexity(logits, target) always uses the mean; "
                             "do not pass reduction")
        h = cross_entropy(x, target, **cross_entropy_kwargs)
        return perplexity(h, unit="nats")
    u = _unit(unit)
    h = np.ascontiguousarray(_views.as_float_array(x, "perplexity"))
    out = np.empty_like(h)
    _xent.perplexity(h.ctypes.data, out.ctypes.data, h.size,
                     _views.numpy_dtype(h, "perplexity"), u)
    return out if out.ndim else out[()]


def _reduction(reduction, allowed=_REDUCTIONS):
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {reduction!r}")
    return reduction


def _targets(target, logits, name):
    """(owner, _xent.Targets) for index targets of shape logits.shape[:-1] or
    a soft target of logits' shape."""
    t = np.asarray(target)
    if t.dtype.kind in "biu":
        if t.shape != logits.shape[:-1]:
            raise ValueError(f"{name}: index target has shape {t.shape}, expected "
                             f"{logits.shape[:-1]} (the logits' shape without the class axis)")
        if t.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
            t = t.astype(np.int64)
        t = np.ascontiguousarray(t).reshape(-1)
        make = _xent.Targets.index_int32 if t.dtype == np.int32 else _xent.Targets.index_int64
        return t, make(t.ctypes.data)
    if t.dtype.kind == "f":
        if t.shape != logits.shape:
            raise ValueError(f"{name}: probability target has shape {t.shape}, expected "
                             f"the logits' shape {logits.shape}")
        t, view = _views.numpy_rows(t, name + " target")
        return t, _xent.Targets.soft(view)
    raise TypeError(f"{name}: target must be integer class indices or float "
                    f"probabilities, got dtype {t.dtype}")


def _class_weight(weight, cols, name):
    if weight is None:
        return None
    w = np.ascontiguousarray(weight, dtype=np.float32)
    if w.shape != (cols,):
        raise ValueError(f"{name}: weight has shape {w.shape}, expected ({cols},)")
    return w


def _scalar(value, dtype):
    return dtype.type(value)


def cross_entropy(logits, target, *, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, smoothing_mode="uniform", z_loss=0.0, softcap=None,
                  temperature=1.0, focal_gamma=0.0, empty_mean="zero", num_threads=0,
                  return_grad=False):
    """Cross-entropy of softmax(logits) against class indices or probabilities.

    logits: (..., C) float32/float64. target: integer indices of shape
    logits.shape[:-1], or probabilities of logits' shape. Semantics are
    torch.nn.functional.cross_entropy's (mean divides by the summed weights
    of non-ignored targets, smoothing with weights as PyTorch), plus the
    extras of the C++ API: smoothing_mode ("uniform" = PyTorch, or
    "off_target"), z_loss, softcap, temperature, focal_gamma.
    empty_mean: what mean returns when every target is ignored, "zero"
    (default, gradient 0) or "nan" (PyTorch).

    Returns the loss (a scalar for "sum"/"mean", shape logits.shape[:-1] for
    "none"), or (loss, grad) with return_grad=True, grad being d(loss)/d(logits)
    (for "none": of the sum of the per-row losses) with logits' shape and dtype.
    """
    name = "xent.cross_entropy"
    logits = _views.as_float_array(logits, name)
    a, view = _views.numpy_rows(logits, name)
    check_logits(view, name, stacklevel=2)
    t_owner, targets = _targets(target, logits, name)
    w = _class_weight(weight, view.cols, name)
    if smoothing_mode not in _SMOOTHING:
        raise ValueError(f"smoothing_mode must be 'uniform' or 'off_target', got {smoothing_mode!r}")
    if empty_mean not in _EMPTY_MEAN:
        raise ValueError(f"empty_mean must be 'zero' or 'nan', got {empty_mean!r}")

    opts = _xent.CrossEntropyOptions()
    opts.reduction = getattr(_xent.Reduction, _reduction(reduction))
    opts.ignore_index = int(ignore_index)
    opts.class_weight = 0 if w is None else w.ctypes.data
    opts.label_smoothing = float(label_smoothing)
    opts.smoothing = getattr(_xent.Smoothing, _SMOOTHING[smoothing_mode])
    opts.temperature = float(temperature)
    opts.softcap = 0.0 if softcap is None else float(softcap)
    opts.z_loss = float(z_loss)
    opts.focal_gamma = float(focal_gamma)
    opts.empty_mean = getattr(_xent.EmptyMean, empty_mean)
    opts.num_threads = int(num_threads)

    outs = _xent.CrossEntropyOutputs()
    row_loss = None
    if reduction == "none":
        row_loss = np.empty(view.rows, dtype=np.float32)
        outs.row_loss = row_loss.ctypes.data
    grad = None
    if return_grad:
        grad, outs.grad = _views.numpy_out(logits.shape, logits.dtype)
    res = _xent.cross_entropy_loss(view, targets, opts, outs)
    del a, t_owner  # kept alive until here on purpose
    if reduction == "none":
        loss = row_loss.astype(logits.dtype).reshape(logits.shape[:-1])
    else:
        loss = _scalar(res.loss, logits.dtype)
    return (loss, grad) if return_grad else loss


def _matrix_like(x, shape, name, what):
    """x broadcast to `shape` as a rows × C view, or as one row of C."""
    arr = np.asarray(x, dtype=np.float32)
    cols = shape[-1]
    if arr.size == cols and (arr.ndim <= 1 or all(n == 1 for n in arr.shape[:-1])):
        arr = np.ascontiguousarray(arr.reshape(cols))
        return arr, _xent.MatrixView(arr.ctypes.data, _xent.DType.f32, 1, cols, cols)
    try:
        arr = np.ascontiguousarray(np.broadcast_to(arr, shape))
    except ValueError:
        raise ValueError(f"{name}: {what} of shape {np.shape(x)} does not broadcast "
                         f"to the input shape {shape}") from None
    return _views.numpy_rows(arr, name)


def binary_cross_entropy_with_logits(logits, target, *, weight=None, pos_weight=None,
                                     reduction="mean", num_threads=0, return_grad=False):
    """Binary cross-entropy of sigmoid(logits) against targets in [0, 1],
    elementwise (multi-label: the last axis is the C labels), with PyTorch's
    semantics: l = −w·[pw·y·log σ(x) + (1 − y)·log σ(−x)]; `weight`
    broadcasts to the input, `pos_weight` has one entry per label (last axis);
    mean averages over all elements."""
    name = "xent.binary_cross_entropy_with_logits"
    logits = _views.as_float_array(logits, name)
    if logits.ndim == 0:
        logits = logits.reshape(1)
    a, view = _views.numpy_rows(logits, name)
    y = _views.as_float_array(target, name, dtype=logits.dtype)
    if y.shape != logits.shape:
        raise ValueError(f"{name}: target has shape {y.shape}, expected {logits.shape}")
    y_owner, y_view = _views.numpy_rows(y, name + " target")
    opts = _xent.BceOptions()
    opts.reduction = getattr(_xent.Reduction, _reduction(reduction))
    w_owner = pw = None
    if weight is not None:
        w_owner, opts.weight = _matrix_like(weight, logits.shape, name, "weight")
    if pos_weight is not None:
        pw = np.asarray(pos_weight, dtype=np.float32)
        if pw.size == 1:
            pw = np.full(view.cols, pw.reshape(()), dtype=np.float32)
        if pw.shape[-1:] != (view.cols,) or pw.size != view.cols:
            raise ValueError(f"{name}: pos_weight has shape {np.shape(pos_weight)}, "
                             f"expected ({view.cols},) (one per label)")
        pw = np.ascontiguousarray(pw.reshape(view.cols))
        opts.pos_weight = pw.ctypes.data
    opts.num_threads = int(num_threads)
    outs = _xent.BceOutputs()
    elem = grad = None
    if reduction == "none":
        elem, outs.elem_loss = _views.numpy_out(logits.shape, np.float32)
    if return_grad:
        grad, outs.grad = _views.numpy_out(logits.shape, logits.dtype)
    total = _xent.binary_cross_entropy_with_logits_loss(view, y_view, opts, outs)
    del a, y_owner, w_owner, pw
    loss = elem.astype(logits.dtype) if reduction == "none" else _scalar(total, logits.dtype)
    return (loss, grad) if return_grad else loss


def kl_div(input, target, *, reduction="batchmean", log_target=False, num_threads=0,
           return_grad=False):
    """KL(target ‖ q) with input = log q (…, C), PyTorch's kl_div pointwise
    terms target·(log target − input) (0·log 0 = 0), or with log_target
    exp(target)·(target − input). reduction: "none", "sum", "mean" (over
    elements) or "batchmean" (default here: the sum divided by the number of
    rows, i.e. the true KL per distribution; for a 2-D input this is
    PyTorch's batchmean). The gradient is with respect to input."""
    name = "xent.kl_div"
    x = _views.as_float_array(input, name)
    if x.ndim == 0:
        x = x.reshape(1)
    a, view = _views.numpy_rows(x, name)
    t = _views.as_float_array(target, name, dtype=x.dtype)
    if t.shape != x.shape:
        raise ValueError(f"{name}: target has shape {t.shape}, expected {x.shape}")
    t_owner, t_view = _views.numpy_rows(t, name + " target")
    opts = _xent.KlDivOptions()
    opts.reduction = getattr(_xent.KlReduction,
                             _reduction(reduction, _REDUCTIONS + ("batchmean",)))
    opts.log_target = bool(log_target)
    opts.num_threads = int(num_threads)
    outs = _xent.KlDivOutputs()
    elem = grad = None
    if reduction == "none":
        elem, outs.elem_loss = _views.numpy_out(x.shape, np.float32)
    if return_grad:
        grad, outs.grad = _views.numpy_out(x.shape, x.dtype)
    total = _xent.kl_div_loss(view, t_view, opts, outs)
    del a, t_owner
    loss = elem.astype(x.dtype) if reduction == "none" else _scalar(total, x.dtype)
    return (loss, grad) if return_grad else loss
