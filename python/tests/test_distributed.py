"""xent.torch.cross_entropy(..., process_group=pg): logits sharded along the
class dimension over torch.distributed (gloo, CPU), issue 9.

2 and 3 processes (torch.multiprocessing, init_method file://). Every rank
builds the same full logits (same seed), keeps an unequal slice of the
classes (one rank's slice holds no target), and compares its loss and its
gradient slice with torch.nn.functional.cross_entropy on the full logits in
float64 (z-loss, softcap and temperature composed from torch ops), for every
reduction, ignore_index, label smoothing, class weights. Then a bad target on
one rank only: every rank must raise (no hang), and the group stays usable.
"""

import gc
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import xent.torch as xt

N, V = 23, 37


def _shards(world):
    # Unequal sizes ∝ rank + 1, the last rank gets the rest.
    total = world * (world + 1) // 2
    sizes = [V * (r + 1) // total for r in range(world)]
    sizes[-1] = V - sum(sizes[:-1])
    offsets = [sum(sizes[:r]) for r in range(world)]
    return offsets, sizes


def _reference(z, t, weight, reduction, ignore_index, eps, z_loss, softcap, temperature,
               focal=0.0):
    """torch in float64 on the full logits (focal: −Σ_c t'_c (1 − q_c)^γ log q_c,
    hard targets, unweighted, from torch ops)."""
    x = z
    if softcap:
        x = softcap * torch.tanh(x / softcap)
    x = x / temperature
    if focal:
        keep = t != ignore_index
        logq = torch.log_softmax(x, dim=1)
        lq = logq[torch.arange(len(t)), torch.where(keep, t, 0)]
        rows = -(1 - lq.exp()) ** focal * lq * keep
        loss = rows if reduction == "none" else rows.sum() if reduction == "sum" else rows.sum() / keep.sum()
    else:
        loss = F.cross_entropy(x, t, weight=weight, reduction=reduction, ignore_index=ignore_index,
                               label_smoothing=eps)
    if z_loss:
        keep = t != ignore_index
        zl = z_loss * torch.logsumexp(x, dim=1) ** 2 * keep
        if reduction == "none":
            loss = loss + zl
        elif reduction == "sum":
            loss = loss + zl.sum()
        else:
            loss = loss + zl.sum() / keep.sum()
    return loss


CASES = [
    dict(reduction="mean"),
    dict(reduction="sum"),
    dict(reduction="none"),
    dict(reduction="mean", ignore_index=3),
    dict(reduction="mean", label_smoothing=0.1),
    dict(reduction="sum", label_smoothing=0.2, weighted=True),
    dict(reduction="mean", weighted=True, ignore_index=-100),
    dict(reduction="none", weighted=True, label_smoothing=0.05),
    dict(reduction="mean", z_loss=1e-3, softcap=5.0, temperature=1.5),
    dict(reduction="mean", focal_gamma=2.0),
    dict(reduction="none", focal_gamma=0.5, temperature=1.2),
]


def _worker(rank, world, init_file, dtype_name):
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank,
                            world_size=world)
    torch.set_num_threads(1)
    dtype = getattr(torch, dtype_name)
    offsets, sizes = _shards(world)
    lo, hi = offsets[rank], offsets[rank] + sizes[rank]
    g = torch.Generator().manual_seed(9)
    z = torch.randn(N, V, generator=g, dtype=torch.float64) * 3
    t = torch.randint(0, V, (N,), generator=g)
    t[t >= offsets[-1]] = 0  # the last shard holds no target
    t[::5] = -100
    t[1] = 3
    w = torch.rand(V, generator=g, dtype=torch.float64) + 0.5
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    for case in CASES:
        reduction = case["reduction"]
        ignore_index = case.get("ignore_index", -100)
        tt = t.clone()
        tt[tt == -100] = ignore_index
        eps = case.get("label_smoothing", 0.0)
        # float32 weights on both sides (what xent takes), exact in float64.
        weight = w.float() if case.get("weighted") else None
        extras = dict(z_loss=case.get("z_loss", 0.0), softcap=case.get("softcap"),
                      temperature=case.get("temperature", 1.0),
                      focal_gamma=case.get("focal_gamma", 0.0))
        full = z.to(dtype).to(torch.float64).detach().clone().requires_grad_()
        ref = _reference(full, tt, None if weight is None else weight.double(), reduction,
                         ignore_index, eps, extras["z_loss"], extras["softcap"],
                         extras["temperature"], extras["focal_gamma"])
        (ref.sum() if reduction == "none" else ref * 1.7).backward()
        local = z.to(dtype)[:, lo:hi].detach().clone().requires_grad_()
        loss = xt.cross_entropy(local, tt, weight=weight, reduction=reduction,
                                ignore_index=ignore_index, label_smoothing=eps,
                                process_group=dist.group.WORLD, **extras)
        (loss.sum() if reduction == "none" else loss * 1.7).backward()
        assert loss.dtype == dtype, (case, loss.dtype)
        # reduction="none" returns the float32 row losses of the kernel.
        ltol = 1e-6 if reduction == "none" else tol
        torch.testing.assert_close(loss.double(), ref.detach(), rtol=ltol, atol=ltol,
                                   msg=lambda m: f"rank {rank} {case} loss: {m}")
        torch.testing.assert_close(local.grad.double(), full.grad[:, lo:hi], rtol=tol, atol=tol,
                                   msg=lambda m: f"rank {rank} {case} grad: {m}")

    # A bad target on the last rank only: every rank raises, nobody hangs.
    bad = t.clone()
    if rank == world - 1:
        bad[4] = V + 7
    local = z.to(dtype)[:, lo:hi].clone()
    with pytest.raises((ValueError, IndexError)) as err:
        xt.cross_entropy(local, bad, process_group=dist.group.WORLD)
    msg = str(err.value)
    if rank == world - 1:
        assert msg.startswith(f"rank {rank}: ") and str(V + 7) in msg, msg
    else:
        assert f"rank {world - 1} failed" in msg, msg
    # The group still works: the agreement completed on every rank.
    ok = xt.cross_entropy(local, t, process_group=dist.group.WORLD)
    expect = F.cross_entropy(z.to(dtype).double(), t)
    torch.testing.assert_close(ok.double(), expect, rtol=tol, atol=tol)
    del err
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_sharded_cross_entropy_matches_torch(world, dtype_name):
    with tempfile.TemporaryDirectory() as d:
        mp.spawn(_worker, args=(world, os.path.join(d, "init"), dtype_name), nprocs=world,
                 join=True)


def test_process_group_requires_initialized_distributed():
    if dist.is_initialized():
        pytest.skip("a default group exists in this process")
    with pytest.raises(RuntimeError, match="not initialized"):
        xt.cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), process_group=object())
