"""Cross-entropy over logits sharded along the class dimension (tensor-
parallel output layers, Megatron style; issue 9), on torch.distributed.

    loss = xent.torch.cross_entropy(local_logits, target, process_group=pg)

Rank r of the group holds the columns [offset_r, offset_r + C_r) of the
N × V logits, ranks in group-rank order (offset_r = C_0 + ... + C_{r-1});
target (global class ids), weight (all V entries) and the options are the
same on every rank. Every rank gets the loss of the full logits and, in
backward, the gradient of its own slice; the logits are never gathered.

The work is xent::vocab_parallel_cross_entropy (C++); its collectives call
back into torch.distributed.all_reduce on the group (gloo works on CPU): per
call, one all_gather of 2 integers per rank (the shard sizes and N, checked),
then three all_reduces whatever N: an error agreement (1 double), the row
maxima (N doubles), and [Σ exp(z − m), target logit (, smoothing sum)] plus
one count (2N or 3N + 1 doubles). O(1) doubles per row, never O(V).

Supported: reduction, ignore_index, weight, label_smoothing (both modes, with
the global V), z_loss, softcap, temperature, focal_gamma (one more
all_reduce of 2 doubles per row); float32/float64 logits, int32/int64 class
indices. Not supported: probability targets, inplace_backward,
bfloat16/float16 (errors, not silent fallbacks). A bad input
on one rank raises on every rank (the failing rank's message prefixed
"rank R: ", the others naming rank R), so no rank is left in a collective.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .. import _xent
from ._autograd import CrossEntropyConfig, _targets
from ._tensors import empty, mutable_view, rows_view, viewable


def communicator(group):
    """A _xent.PyCommunicator whose all_reduce is torch.distributed's on
    `group` (None: the default group)."""
    max_op, sum_op = dist.ReduceOp.MAX, dist.ReduceOp.SUM

    def allreduce(buffer, op):
        dtype = torch.float64 if buffer.format == "d" else torch.float32
        dist.all_reduce(torch.frombuffer(buffer, dtype=dtype),
                        op=max_op if op == "max" else sum_op, group=group)

    return _xent.PyCommunicator(dist.get_rank(group), dist.get_world_size(group), allreduce)


def shard_layout(name, group, local_classes, rows):
    """(vocab_offset, vocab_total) of this rank, from one all_gather of
    (C_r, N) over the group; every rank raises alike if the Ns differ."""
    size = dist.get_world_size(group)
    mine = torch.tensor([local_classes, rows], dtype=torch.int64)
    every = [torch.empty(2, dtype=torch.int64) for _ in range(size)]
    dist.all_gather(every, mine, group=group)
    counts = [int(t[0]) for t in every]
    ns = [int(t[1]) for t in every]
    if len(set(ns)) != 1:
        raise ValueError(f"{name}: the ranks of the process group hold different numbers of "
                         f"rows {ns}; every rank must pass the same N (only the classes are "
                         "sharded)")
    rank = dist.get_rank(group)
    return sum(counts[:rank]), sum(counts)


class VocabParallelCrossEntropyFunction(torch.autograd.Function):
    """loss of the full logits from this rank's (M, C_r) slice x; backward
    returns the gradient of the slice (computed in forward, scaled here)."""

    @staticmethod
    def forward(ctx, x, target, weight, cfg, comm, offset, total):
        needs_grad = ctx.needs_input_grad[0] and cfg.want_grad
        m = x.shape[0]
        lse = torch.empty(m, dtype=torch.float32)
        row_loss = torch.empty(m, dtype=torch.float32) if cfg.reduction == "none" else None
        grad = empty(x.shape, x.dtype) if needs_grad else None
        res = _xent.vocab_parallel_cross_entropy(
            rows_view(x), offset, total, _targets(target), cfg.options(weight), comm,
            0 if row_loss is None else row_loss.data_ptr(), lse.data_ptr(),
            mutable_view(grad) if grad is not None else _xent.MutableMatrixView())
        if needs_grad:
            ctx.grad = grad
            ctx.reduction = cfg.reduction
        if row_loss is not None:
            return row_loss.to(x.dtype)
        return torch.scalar_tensor(res.loss, dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        grad, ctx.grad = ctx.grad, None
        if grad is None:
            raise RuntimeError(
                "xent.torch.cross_entropy(process_group=...): backward ran a second time; "
                "the sharded loss hands its gradient (computed in forward) to autograd once "
                "(a second backward would need the collectives again). Recompute the loss.")
        if ctx.reduction == "none":
            grad.mul_(grad_output.to(grad.dtype).unsqueeze(1))
        else:
            scale = float(grad_output)
            if scale != 1.0:
                grad.mul_(scale)
        return grad, None, None, None, None, None, None


def vocab_parallel_cross_entropy(name, input, target, weight, ignore_index, reduction,
                                 label_smoothing, smoothing, z_loss, softcap, temperature,
                                 focal_gamma, inplace_backward, process_group, want_grad):
    """The process_group path of xent.torch.cross_entropy (arguments already
    parsed there)."""
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(f"{name}: process_group given but torch.distributed is not "
                           "initialized (call torch.distributed.init_process_group first)")
    for arg, t in (("input", input), ("target", target), ("weight", weight)):
        if t is not None and not t.is_cpu:
            raise NotImplementedError(f"{name}: with process_group, {arg} must be a CPU tensor "
                                      f"(got device '{t.device}')")
    if inplace_backward:
        raise NotImplementedError(f"{name}: inplace_backward is not supported with "
                                  "process_group")
    if input.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name}: with process_group the logits must be float32 or float64, "
                        f"got {input.dtype}")
    if input.dim() == 0:
        raise ValueError(f"{name}: input must have a class dimension, got a 0-d tensor")
    unbatched = input.dim() == 1
    if unbatched:
        input, target = input.unsqueeze(0), target.unsqueeze(0)
    classes = input.shape[1]
    if target.shape == input.shape and target.is_floating_point():
        raise NotImplementedError(f"{name}: probability targets are not supported with "
                                  "process_group (class indices only)")
    expected = input.shape[:1] + input.shape[2:]
    if target.shape != expected:
        raise ValueError(f"{name}: target has shape {tuple(target.shape)}; expected "
                         f"{tuple(expected)} (class indices of the sharded input)")
    if target.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name}: class-index target must be int64 or int32, got {target.dtype}")
    x = input if input.dim() == 2 else input.movedim(1, -1).reshape(-1, classes)
    x = viewable(x)
    t = target.detach().reshape(-1).contiguous()
    offset, total = shard_layout(name, process_group, classes, x.shape[0])
    if weight is not None:
        if weight.shape != (total,):
            raise ValueError(f"{name}: weight has shape {tuple(weight.shape)}; with "
                             f"process_group it holds all {total} classes, ({total},)")
        weight = weight.detach().to(torch.float32).contiguous()
    cfg = CrossEntropyConfig(
        reduction=reduction, ignore_index=int(ignore_index), label_smoothing=float(label_smoothing),
        smoothing=smoothing, temperature=float(temperature),
        softcap=0.0 if softcap is None else float(softcap), z_loss=float(z_loss),
        focal_gamma=float(focal_gamma), empty_mean="nan", inplace=False, want_grad=want_grad)
    loss = VocabParallelCrossEntropyFunction.apply(x, t, weight, cfg, communicator(process_group),
                                                   offset, total)
    if reduction == "none":
        loss = loss.reshape(input.shape[:1] + input.shape[2:])
        if unbatched:
            loss = loss.squeeze(0)
    return loss
