"""Drop-in replacements for torch.nn.functional's cross_entropy,
binary_cross_entropy_with_logits and kl_div, on the fused C++ kernels.

Each takes exactly its torch counterpart's arguments (same names, order and
defaults, including the deprecated size_average/reduce) and returns the same
values, plus keyword-only extras. Differences from torch, all on purpose:
  * CPU tensors; CUDA tensors go to the CUDA backend when it is built
    (cross_entropy and BCE; not kl_div; float64 logits refused there).
  * Gradients flow to the input only; a target or weight that requires grad
    is refused rather than silently left without a gradient.
  * Invalid input raises instead of producing NaN: NaN/+inf logits,
    probability targets that are not distributions (ValueError), class
    indices out of range (IndexError naming the row and value).
  * bfloat16/float16 inputs are accumulated in float32 (torch does too); the
    loss is returned in the input dtype, as torch does.
"""

from __future__ import annotations

import torch
from torch.nn import _reduction as _torch_reduction

from .._guard import check_logits
from . import _autograd, _cuda
from ._tensors import (
    check_cpu,
    check_float,
    check_inplace_safe,
    check_no_grad,
    rows_view,
    viewable,
)

_SMOOTHING = {"uniform": "uniform", "off_target": "off_target", "off-target": "off_target"}


def _reduction(name, size_average, reduce, reduction, allowed=("none", "sum", "mean")):
    if size_average is not None or reduce is not None:
        reduction = _torch_reduction.legacy_get_string(size_average, reduce)
    if reduction not in allowed:
        raise ValueError(f"{name}: {reduction} is not a valid value for reduction")
    return reduction


def _needs_input_grad(x):
    return torch.is_grad_enabled() and x.requires_grad


def _prepare_inplace(name, x, inplace_backward):
    """Whether to write the gradient over x, after refusing unsafe cases."""
    if not inplace_backward or not _needs_input_grad(x):
        return False
    check_inplace_safe(name, x)
    return True


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
                  reduce=None, reduction="mean", label_smoothing=0.0, *, z_loss=0.0,
                  softcap=None, temperature=1.0, smoothing_mode="uniform", focal_gamma=0.0,
                  inplace_backward=False, process_group=None):
    """torch.nn.functional.cross_entropy on xent's fused kernel.

    input: (N, C), (C,) or (N, C, d1, ..., dk), float32/float64/bfloat16/
    float16. target: class indices of shape (N, d1, ..., dk) (int64 or
    int32), or class probabilities of input's shape. Extras (keyword only):
      z_loss: c, adds c·lse² per non-ignored row (PaLM).
      softcap: s, logits become s·tanh(z/s) before the softmax (Gemma 2).
      temperature: T, logits become z/T (after softcap).
      smoothing_mode: "uniform" (torch's label_smoothing, ε/C everywhere) or
        "off_target" (ε spread over the C − 1 other classes).
      focal_gamma: γ of the focal loss (0 = cross-entropy).
      inplace_backward: write the gradient into input's storage instead of
        a new buffer (saves allocating N×C). The input then holds the
        gradient; refused (ValueError) when input is a leaf that requires
        grad or autograd saved it for another backward.
      process_group: a torch.distributed group over which the classes are
        sharded: input holds this rank's columns (ranks in group order),
        target/weight/options are global and the same on every rank; the
        loss is the full logits' (see xent.torch.distributed).
    The backward uses the gradient the kernel computed in forward; no
    softmax is recomputed.
    """
    name = "xent.torch.cross_entropy"
    reduction = _reduction(name, size_average, reduce, reduction)
    # [cuda] CUDA tensors go to the GPU kernels (xent/torch/_cuda.py).
    cuda = _cuda.on_cuda(name, input=input, target=target, weight=weight)
    if cuda and (input.dtype == torch.float64 or process_group is not None):
        raise (TypeError if process_group is None else NotImplementedError)(
            f"{name}: on CUDA tensors xent supports float32, bfloat16 and float16 logits "
            "without process_group (got "
            f"{input.dtype}{'' if process_group is None else ' with a process_group'})")
    check_float(name, "input", input)
    check_no_grad(name, target=target, weight=weight)
    if smoothing_mode not in _SMOOTHING:
        raise ValueError(f"{name}: smoothing_mode must be 'uniform' or 'off_target', "
                         f"got {smoothing_mode!r}")
    if process_group is not None:
        from .distributed import vocab_parallel_cross_entropy
        return vocab_parallel_cross_entropy(
            name, input, target, weight, ignore_index, reduction, label_smoothing,
            _SMOOTHING[smoothing_mode], z_loss, softcap, temperature, focal_gamma,
            inplace_backward, process_group, _needs_input_grad(input))
    if input.dim() == 0:
        raise ValueError(f"{name}: input must have a class dimension, got a 0-d tensor")
    unbatched = input.dim() == 1
    if unbatched:
        input, target = input.unsqueeze(0), target.unsqueeze(0)
    classes = input.shape[1]
    soft = target.shape == input.shape
    if soft:
        if not target.is_floating_point():
            raise TypeError(f"{name}: a target of the input's shape holds class "
                            f"probabilities and must be floating point, got {target.dtype}")
        if ignore_index >= 0:
            raise ValueError(f"{name}: ignore_index is not supported for probability "
                             "targets (as in torch)")
    else:
        expected = input.shape[:1] + input.shape[2:]
        if target.shape != expected:
            raise ValueError(f"{name}: target has shape {tuple(target.shape)}; expected "
                             f"{tuple(expected)} (class indices) or {tuple(input.shape)} "
                             "(probabilities)")
        if target.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"{name}: class-index target must be int64 or int32, "
                            f"got {target.dtype}")
    if weight is not None:
        if weight.shape != (classes,):
            raise ValueError(f"{name}: weight has shape {tuple(weight.shape)}, "
                             f"expected ({classes},)")
        weight = weight.detach().to(torch.float32).contiguous()

    # Classes to the last axis: (N, C, d...) → (N·d..., C); a copy only for
    # K-dimensional input (torch's own kernel gathers the same way).
    x = input if input.dim() == 2 else input.movedim(1, -1).reshape(-1, classes)
    x = viewable(x)
    if soft:
        t = target if target.dim() == 2 else target.movedim(1, -1).reshape(-1, classes)
        t = viewable(t.detach())
    else:
        t = target.detach().reshape(-1).contiguous()
    if not cuda:  # the guard reads the rows from the host
        check_logits(rows_view(x), name, stacklevel=2)
    cfg = _autograd.CrossEntropyConfig(
        reduction=reduction, ignore_index=int(ignore_index),
        label_smoothing=float(label_smoothing), smoothing=_SMOOTHING[smoothing_mode],
        temperature=float(temperature), softcap=0.0 if softcap is None else float(softcap),
        z_loss=float(z_loss), focal_gamma=float(focal_gamma), empty_mean="nan",
        inplace=_prepare_inplace(name, x, inplace_backward), want_grad=_needs_input_grad(x))
    loss = _autograd.CrossEntropyFunction.apply(x, t, weight, cfg)
    if reduction == "none":
        loss = loss.reshape(input.shape[:1] + input.shape[2:])
        if unbatched:
            loss = loss.squeeze(0)
    return loss


def _label_vector(name, arg, v, shape):
    """A (C,) float32 vector for a tensor broadcasting along the last axis
    only (torch's pos_weight; weight when it is per label), else None."""
    classes = shape[-1]
    if v.dim() > len(shape) or any(n != 1 for n in v.shape[:-1]):
        return None
    if v.numel() == 1:
        return v.detach().reshape(1).to(torch.float32).expand(classes).contiguous()
    if v.shape[-1] != classes:
        raise ValueError(f"{name}: {arg} of shape {tuple(v.shape)} does not broadcast "
                         f"to the input shape {tuple(shape)}")
    return v.detach().reshape(classes).to(torch.float32).contiguous()


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
                                     reduce=None, reduction="mean", pos_weight=None, *,
                                     inplace_backward=False):
    """torch.nn.functional.binary_cross_entropy_with_logits on xent's fused
    kernel: l = −w·[pw·y·log σ(x) + (1 − y)·log σ(−x)], elementwise over any
    shape; pos_weight broadcasts along the last axis, weight to the input.
    inplace_backward as in cross_entropy."""
    name = "xent.torch.binary_cross_entropy_with_logits"
    reduction = _reduction(name, size_average, reduce, reduction)
    _cuda.on_cuda(name, input=input, target=target, weight=weight, pos_weight=pos_weight)
    check_float(name, "input", input)
    check_no_grad(name, target=target, weight=weight, pos_weight=pos_weight)
    if target.shape != input.shape:
        raise ValueError(f"{name}: target size ({tuple(target.shape)}) must be the same "
                         f"as input size ({tuple(input.shape)})")
    shape = tuple(input.shape) if input.dim() else (1,)
    classes = shape[-1]
    x = viewable(input.reshape(-1, classes) if classes else input.reshape(0, 0))
    y = viewable(target.detach().to(input.dtype).reshape(x.shape))
    w, weight_rows = None, 0
    if weight is not None:
        w = _label_vector(name, "weight", weight, shape)
        weight_rows = 1
        if w is None:
            w = weight.detach().to(torch.float32).expand(shape).reshape(x.shape).contiguous()
            weight_rows = x.shape[0]
    pw = None
    if pos_weight is not None:
        pw = _label_vector(name, "pos_weight", pos_weight, shape)
        if pw is None:
            raise NotImplementedError(f"{name}: pos_weight of shape {tuple(pos_weight.shape)} "
                                      "varies along more than the last axis; xent supports "
                                      "one value per label")
    cfg = _autograd.BceConfig(reduction, weight_rows,
                              _prepare_inplace(name, x, inplace_backward), _needs_input_grad(x))
    loss = _autograd.BceWithLogitsFunction.apply(x, y, w, pw, cfg)
    return loss.reshape(input.shape) if reduction == "none" else loss


def kl_div(input, target, size_average=None, reduce=None, reduction="mean",
           log_target=False, *, inplace_backward=False):
    """torch.nn.functional.kl_div on xent's fused kernel: pointwise
    target·(log target − input), or exp(target)·(target − input) with
    log_target; "batchmean" divides the sum by input.size(0).
    inplace_backward as in cross_entropy."""
    name = "xent.torch.kl_div"
    reduction = _reduction(name, size_average, reduce, reduction,
                           allowed=("none", "sum", "mean", "batchmean"))
    check_cpu(name, input=input, target=target)
    check_float(name, "input", input)
    check_no_grad(name, target=target)
    if target.shape != input.shape:
        raise ValueError(f"{name}: target has shape {tuple(target.shape)}, expected the "
                         f"input's {tuple(input.shape)} (xent does not broadcast here)")
    # Rows = input.size(0), so the kernel's batchmean (sum / rows) is torch's.
    rows = input.shape[0] if input.dim() else 1
    cols = input.numel() // rows if rows else 0
    x = viewable(input.reshape(rows, cols))
    t = viewable(target.detach().to(input.dtype).reshape(rows, cols))
    cfg = _autograd.KlConfig(reduction, bool(log_target),
                             _prepare_inplace(name, x, inplace_backward), _needs_input_grad(x))
    loss = _autograd.KlDivFunction.apply(x, t, cfg)
    return loss.reshape(input.shape) if reduction == "none" else loss
