"""xent.torch.linear_cross_entropy: F.cross_entropy(hidden @ weight.T + bias,
target) without the (N, V) logits, on libxent's fused linear + cross-entropy
(include/xent/linear_cross_entropy.h).

The forward pass computes the loss and, when autograd will need them, the
gradients with respect to hidden, weight and bias in the same call (the C++
side never holds more than one block of logits). backward only scales them by
the upstream gradient. Because the gradients are sums over tokens,
reduction="none" cannot fold a per-token upstream gradient in afterwards:
it is supported for evaluation (no gradient) and refused with a clear error
when a gradient is required, rather than returning a wrong one.
"""

from __future__ import annotations

import torch

from .. import _xent
from . import _cuda
from ._tensors import DTYPES, mutable_view

_SMOOTHING = {"uniform": "uniform", "off_target": "off_target", "off-target": "off_target"}
_ALGORITHMS = ("auto", "token_chunked", "vocab_tiled")


def _view(t):
    return _xent.MatrixView(t.data_ptr(), DTYPES[t.dtype], t.shape[0], t.shape[1], t.shape[1])


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, bias32, target, class_weight, options, want_grad):
        # bias is the caller's tensor (so autograd routes its gradient);
        # bias32 is the float32 contiguous copy the kernel reads.
        n, d = hidden.shape
        v = weight.shape[0]
        dev = hidden.device
        out = _xent.LinearCrossEntropyOutputs()
        row_loss = None
        if options.loss.reduction == _xent.Reduction.none:
            row_loss = torch.empty(n, dtype=torch.float32, device=dev)
            out.row_loss = row_loss.data_ptr()
        grads = (None, None, None)
        if want_grad:
            gh = torch.empty((n, d), dtype=torch.float32, device=dev)
            gw = torch.empty((v, d), dtype=torch.float32, device=dev)
            gb = torch.empty(v, dtype=torch.float32, device=dev) if bias is not None else None
            out.grad_hidden = mutable_view(gh)
            out.grad_weight = mutable_view(gw)
            if gb is not None:
                out.grad_bias = gb.data_ptr()
            grads = (gh, gw, gb)
        if class_weight is not None:
            options.loss.class_weight = class_weight.data_ptr()
        t = (_xent.Targets.index_int32(target.data_ptr()) if target.dtype == torch.int32
             else _xent.Targets.index_int64(target.data_ptr()))
        args = (_view(hidden), _view(weight), 0 if bias32 is None else bias32.data_ptr(), t,
                options, out)
        if hidden.is_cuda:  # [cuda] the GPU's vocabulary-tiled kernel (cuBLAS tiles)
            res = _cuda.call(dev, "linear_cross_entropy", *args)
        else:
            res = _xent.linear_cross_entropy(*args)
        ctx.grads = grads
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        if row_loss is not None:
            return row_loss.to(hidden.dtype)
        return torch.tensor(res.loss, dtype=torch.float32, device=dev).to(hidden.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        gh, gw, gb = ctx.grads
        if gh is None:
            raise RuntimeError("xent.torch.linear_cross_entropy: no gradient was computed in "
                               "forward (grad mode was off, or no input required grad)")
        ctx.grads = (None, None, None)  # one backward per forward (the buffers are handed over)
        scale = float(grad_output)
        out = []
        for g, dt in zip((gh, gw, gb), ctx.dtypes):
            if g is None:
                out.append(None)
                continue
            if scale != 1.0:
                g.mul_(scale)
            out.append(g.to(dt))
        return out[0], out[1], out[2], None, None, None, None, None


def linear_cross_entropy(hidden, weight, target, bias=None, *, ignore_index=-100,
                         reduction="mean", label_smoothing=0.0, class_weight=None,
                         smoothing_mode="uniform", z_loss=0.0, softcap=None, temperature=1.0,
                         algorithm="auto", grad_filter=0.0, max_buffer_bytes=0):
    """F.cross_entropy(hidden @ weight.T + bias, target, ...) without the logits.

    hidden: (..., D) float32 or bfloat16; weight: (V, D) of the same dtype;
    bias: (V,) or None; target: (...) int64/int32 class indices. Options as
    xent.torch.cross_entropy (class_weight is F.cross_entropy's `weight`),
    plus algorithm ("auto", "token_chunked", "vocab_tiled"), grad_filter
    (skip vocabulary tiles whose softmax entries are all below it; 2**-12 is
    the published choice for bf16; changes the gradients slightly, never the
    loss) and max_buffer_bytes (bound on the logits block; 0: 1/112 of the
    2·N·V floats of logits + gradient). Gradients flow to hidden, weight and
    bias. reduction="none" works without gradients only. CUDA tensors run the
    GPU backend (vocabulary tiles by cuBLAS; `algorithm` is ignored there).
    """
    name = "xent.torch.linear_cross_entropy"
    _cuda.on_cuda(name, hidden=hidden, weight=weight, target=target, bias=bias,
                  class_weight=class_weight)
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(f"{name}: {reduction} is not a valid value for reduction")
    if smoothing_mode not in _SMOOTHING:
        raise ValueError(f"{name}: smoothing_mode must be 'uniform' or 'off_target'")
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"{name}: algorithm must be one of {_ALGORITHMS}, got {algorithm!r}")
    for arg, t in (("hidden", hidden), ("weight", weight)):
        if t.dtype not in (torch.float32, torch.bfloat16):
            raise TypeError(f"{name}: {arg} has dtype {t.dtype}; expected float32 or bfloat16")
    if hidden.dim() < 1 or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"{name}: hidden {tuple(hidden.shape)} and weight "
                         f"{tuple(weight.shape)} must be (..., D) and (V, D)")
    if target.shape != hidden.shape[:-1]:
        raise ValueError(f"{name}: target has shape {tuple(target.shape)}; expected "
                         f"{tuple(hidden.shape[:-1])}")
    if target.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name}: target must be int64 or int32, got {target.dtype}")
    v, d = weight.shape
    if bias is not None and bias.shape != (v,):
        raise ValueError(f"{name}: bias has shape {tuple(bias.shape)}, expected ({v},)")
    if class_weight is not None:
        if class_weight.shape != (v,):
            raise ValueError(f"{name}: class_weight has shape {tuple(class_weight.shape)}, "
                             f"expected ({v},)")
        class_weight = class_weight.detach().to(torch.float32).contiguous()
    want_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (hidden, weight, bias))
    if want_grad and reduction == "none":
        raise NotImplementedError(
            f"{name}: reduction='none' with gradients is not supported: the weight gradient "
            "is a sum over tokens, so a per-token upstream gradient cannot be applied after "
            "the fused pass. Use reduction='sum' (and scale), or evaluate under torch.no_grad()")

    lead = hidden.shape[:-1]
    h = hidden.reshape(-1, d).contiguous()
    w = weight.contiguous()
    b = None if bias is None else bias.detach().to(torch.float32).contiguous()
    t = target.reshape(-1).contiguous()

    o = _xent.LinearCrossEntropyOptions()
    lo = o.loss
    lo.reduction = getattr(_xent.Reduction, reduction)
    lo.ignore_index = int(ignore_index)
    lo.label_smoothing = float(label_smoothing)
    lo.smoothing = getattr(_xent.Smoothing, _SMOOTHING[smoothing_mode])
    lo.z_loss = float(z_loss)
    lo.softcap = 0.0 if softcap is None else float(softcap)
    lo.temperature = float(temperature)
    lo.empty_mean = _xent.EmptyMean.nan  # as F.cross_entropy
    lo.num_threads = torch.get_num_threads()
    o.loss = lo
    o.algorithm = getattr(_xent.LinearCrossEntropyAlgorithm, algorithm)
    o.grad_filter = float(grad_filter)
    o.max_buffer_bytes = int(max_buffer_bytes)

    loss = _LinearCrossEntropy.apply(h, w, bias, b, t, class_weight, o, want_grad)
    if reduction == "none":
        loss = loss.reshape(lead)
    return loss

