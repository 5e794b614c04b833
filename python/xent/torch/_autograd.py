"""torch.autograd.Functions over the fused C++ losses.

Gradient strategy (why forward may already compute it):
  * Scalar reductions ("mean"/"sum"): the C++ kernel writes d(loss)/d(logits)
    during the forward pass, in the same read of the logits (one read + one
    write, instead of forward's read plus backward's read + write). backward
    only scales it by the upstream gradient when that is not 1.
  * reduction="none": the upstream gradient is per row and unknown until
    backward, so forward saves the per-row lse and backward runs
    cross_entropy_backward once (read logits, write grad) with those rows.
  * inplace_backward: the gradient is written into the logits' own storage
    (no fresh N×V buffer to allocate and first-touch). The caller's logits
    then hold the gradient; the functional layer refuses the cases where
    autograd still needs them, and bump_version makes any case it cannot see
    fail loudly at backward time.
A gradient computed in forward is handed to autograd once; a second backward
through the same graph (retain_graph=True) recomputes it from the saved
logits, which is impossible after an in-place write, hence a clear error.
"""

from __future__ import annotations

import torch

from .. import _xent
from . import _cuda
from ._tensors import bump_version, empty, mutable_view, rows_view


def _kernel(x, fname):
    """The C++ entry point for x's device: _xent's on the CPU, _xent_cuda's
    (with the current stream appended) for CUDA tensors."""
    if x.is_cuda:
        return lambda *args: _cuda.call(x.device, fname, *args)
    return getattr(_xent, fname)


class CrossEntropyConfig:
    """The options of one call, in _xent terms."""

    def __init__(self, reduction, ignore_index, label_smoothing, smoothing, temperature,
                 softcap, z_loss, focal_gamma, empty_mean, inplace, want_grad):
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.smoothing = smoothing
        self.temperature = temperature
        self.softcap = softcap
        self.z_loss = z_loss
        self.focal_gamma = focal_gamma
        self.empty_mean = empty_mean
        self.inplace = inplace
        # ctx.needs_input_grad is True even under torch.no_grad() for an input
        # that requires grad; want_grad (grad mode at the call) avoids
        # computing a gradient nobody will use.
        self.want_grad = want_grad

    def options(self, weight):
        o = _xent.CrossEntropyOptions()
        o.reduction = getattr(_xent.Reduction, self.reduction)
        o.ignore_index = self.ignore_index
        o.class_weight = 0 if weight is None else weight.data_ptr()
        o.label_smoothing = self.label_smoothing
        o.smoothing = getattr(_xent.Smoothing, self.smoothing)
        o.temperature = self.temperature
        o.softcap = self.softcap
        o.z_loss = self.z_loss
        o.focal_gamma = self.focal_gamma
        o.empty_mean = getattr(_xent.EmptyMean, self.empty_mean)
        # Follow torch's intra-op thread setting, as torch's own loss does
        # (torch.set_num_threads); results do not depend on it.
        o.num_threads = torch.get_num_threads()
        return o


def _targets(target):
    """_xent.Targets for (M,) int32/int64 indices or an (M, C) soft target,
    both already laid out by the functional layer."""
    if target.is_floating_point():
        return _xent.Targets.soft(rows_view(target))
    if target.dtype == torch.int32:
        return _xent.Targets.index_int32(target.data_ptr())
    return _xent.Targets.index_int64(target.data_ptr())


def _scalar_upstream(grad_output):
    return float(grad_output)


class CrossEntropyFunction(torch.autograd.Function):
    """loss = cross_entropy(x (M, C), target, weight); see module docstring."""

    @staticmethod
    def forward(ctx, x, target, weight, cfg):
        needs_grad = ctx.needs_input_grad[0] and cfg.want_grad
        fused = needs_grad and cfg.reduction != "none"
        m = x.shape[0]
        outs = _xent.CrossEntropyOutputs()
        lse = torch.empty(m, dtype=torch.float32, device=x.device)
        outs.row_lse = lse.data_ptr()
        row_loss = None
        if cfg.reduction == "none":
            row_loss = torch.empty(m, dtype=torch.float32, device=x.device)
            outs.row_loss = row_loss.data_ptr()
        grad = None
        if fused:
            # In place: an alias without autograd history (shares storage and
            # version counter with x).
            grad = x.detach() if cfg.inplace else empty(x.shape, x.dtype, x.device)
            outs.grad = mutable_view(grad)
        res = _kernel(x, "cross_entropy_loss")(rows_view(x), _targets(target),
                                               cfg.options(weight), outs)
        if fused and cfg.inplace:
            bump_version(x)
        if needs_grad:
            ctx.cfg = cfg
            ctx.grad = grad
            ctx.lse = lse
            # After an in-place fused write x holds the gradient: nothing to
            # recompute from.
            ctx.can_recompute = not (fused and cfg.inplace)
            ctx.save_for_backward(x if ctx.can_recompute else None, target, weight)
        if row_loss is not None:
            return row_loss.to(x.dtype)
        return torch.scalar_tensor(res.loss, dtype=x.dtype, device=x.device)

    @staticmethod
    def backward(ctx, grad_output):
        if ctx.grad is not None:
            grad, ctx.grad = ctx.grad, None
            scale = _scalar_upstream(grad_output)
            if scale != 1.0:
                grad.mul_(scale)
            return grad, None, None, None
        if not ctx.can_recompute:
            raise RuntimeError(
                "xent.torch.cross_entropy: backward ran a second time through a loss "
                "computed with inplace_backward=True; its gradient was written over the "
                "logits by the first backward, so there is nothing to recompute it from. "
                "Use inplace_backward=False with retain_graph=True.")
        x, target, weight = ctx.saved_tensors
        cfg = ctx.cfg
        opts = cfg.options(weight)
        row_upstream = None
        # The C++ per-row upstream is float32; a float64 input keeps its
        # precision by taking the gradient of Σ row_loss and scaling after.
        scale_after = cfg.reduction == "none" and x.dtype == torch.float64
        if cfg.reduction == "none" and not scale_after:
            row_upstream = grad_output.to(torch.float32).contiguous()
        elif cfg.reduction != "none":
            opts.grad_scale = _scalar_upstream(grad_output)
        out = x.detach() if cfg.inplace else empty(x.shape, x.dtype, x.device)
        upstream_ptr = 0 if row_upstream is None else row_upstream.data_ptr()
        if x.is_cuda:  # the GPU backward recomputes the statistics (no lse argument)
            _cuda.call(x.device, "cross_entropy_backward", rows_view(x), _targets(target), opts,
                       upstream_ptr, mutable_view(out))
        else:
            _xent.cross_entropy_backward(
                rows_view(x), _targets(target), ctx.lse.data_ptr(), opts,
                upstream_ptr, mutable_view(out))
        if scale_after:
            out.mul_(grad_output.unsqueeze(1))
        if cfg.inplace:
            bump_version(x)
            ctx.can_recompute = False
        return out, None, None, None


def _run_kernel(kernel, outs, x, other, opts, per_element, grad):
    """Runs an elementwise loss kernel (BCE, KL) on (M, C) x and its second
    operand: per-element losses (reduction none) or the reduced scalar, in
    x's dtype; the gradient, when `grad` is given, is written into it."""
    elem = None
    if per_element:
        elem = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        outs.elem_loss = mutable_view(elem)
    if grad is not None:
        outs.grad = mutable_view(grad)
    total = kernel(rows_view(x), rows_view(other), opts, outs)
    if elem is not None:
        return elem.to(x.dtype)
    return torch.scalar_tensor(total, dtype=x.dtype, device=x.device)


class _ElementwiseLossFunction(torch.autograd.Function):
    """Shared backward of BCE-with-logits and kl_div: the C++ kernel writes
    the gradient of the (reduced, or for "none" summed) loss in forward;
    backward scales it by the upstream gradient (a scalar, or elementwise for
    "none"). A second backward re-runs the kernel from the saved tensors."""

    @staticmethod
    def _run(x, tensors, cfg, grad):  # pragma: no cover - overridden
        raise NotImplementedError

    @classmethod
    def _forward(cls, ctx, x, tensors, cfg):
        needs_grad = ctx.needs_input_grad[0] and cfg.want_grad
        grad = None
        if needs_grad:
            grad = x.detach() if cfg.inplace else empty(x.shape, x.dtype, x.device)
        loss = cls._run(x, tensors, cfg, grad)
        if needs_grad:
            if cfg.inplace:
                bump_version(x)
            ctx.cfg = cfg
            ctx.grad = grad
            ctx.can_recompute = not cfg.inplace
            ctx.save_for_backward(None if cfg.inplace else x, *tensors)
        return loss

    @classmethod
    def _backward(cls, ctx, grad_output):
        grad, ctx.grad = ctx.grad, None
        if grad is None:
            if not ctx.can_recompute:
                raise RuntimeError(
                    f"xent.torch: backward ran a second time through {cls.__name__} "
                    "computed with inplace_backward=True; its gradient was written over "
                    "the input. Use inplace_backward=False with retain_graph=True.")
            x, *tensors = ctx.saved_tensors
            grad = empty(x.shape, x.dtype, x.device)
            cls._run(x, tensors, ctx.cfg, grad)
        if ctx.cfg.reduction == "none":
            grad.mul_(grad_output.reshape(grad.shape))
        else:
            scale = _scalar_upstream(grad_output)
            if scale != 1.0:
                grad.mul_(scale)
        return grad


class BceConfig:
    def __init__(self, reduction, weight_rows, inplace, want_grad):
        self.reduction = reduction
        self.weight_rows = weight_rows  # 0: no weight, 1: per label, else per element
        self.inplace = inplace
        self.want_grad = want_grad  # see CrossEntropyConfig


class BceWithLogitsFunction(_ElementwiseLossFunction):
    """x, y: (M, C); weight: None, (C,) or (M, C) float32; pos_weight: None or (C,) float32."""

    @staticmethod
    def _run(x, tensors, cfg, grad):
        y, weight, pos_weight = tensors
        opts = _xent.BceOptions()
        opts.reduction = getattr(_xent.Reduction, cfg.reduction)
        if weight is not None:
            opts.weight = rows_view(weight.reshape(cfg.weight_rows, x.shape[1]))
        opts.pos_weight = 0 if pos_weight is None else pos_weight.data_ptr()
        opts.num_threads = torch.get_num_threads()
        return _run_kernel(_kernel(x, "binary_cross_entropy_with_logits_loss"), _xent.BceOutputs(),
                           x, y, opts, cfg.reduction == "none", grad)

    @staticmethod
    def forward(ctx, x, y, weight, pos_weight, cfg):
        return BceWithLogitsFunction._forward(ctx, x, (y, weight, pos_weight), cfg)

    @staticmethod
    def backward(ctx, grad_output):
        return BceWithLogitsFunction._backward(ctx, grad_output), None, None, None, None


class KlConfig:
    def __init__(self, reduction, log_target, inplace, want_grad):
        self.reduction = reduction
        self.log_target = log_target
        self.inplace = inplace
        self.want_grad = want_grad  # see CrossEntropyConfig


class KlDivFunction(_ElementwiseLossFunction):
    """x = log q and target: (M, C)."""

    @staticmethod
    def _run(x, tensors, cfg, grad):
        (target,) = tensors
        opts = _xent.KlDivOptions()
        opts.reduction = getattr(_xent.KlReduction, cfg.reduction)
        opts.log_target = cfg.log_target
        opts.num_threads = torch.get_num_threads()
        return _run_kernel(_xent.kl_div_loss, _xent.KlDivOutputs(), x, target, opts,
                           cfg.reduction == "none", grad)

    @staticmethod
    def forward(ctx, x, target, cfg):
        return KlDivFunction._forward(ctx, x, (target,), cfg)

    @staticmethod
    def backward(ctx, grad_output):
        return KlDivFunction._backward(ctx, grad_output), None, None
