"""xent.torch.cross_entropy against torch.nn.functional.cross_entropy.

A seeded, randomized matrix of cases (shape incl. K-dimensional and
unbatched input, dtype, index or probability targets, class weights,
ignore_index, label smoothing, reduction, logit scale up to 1e4, -inf
masks, upstream gradient) is compared, forward and gradient, with torch's
loss evaluated in float64 on the same input values (the oracle), so every
dtype is held to its own rounding error rather than to torch's.
"""

import random

import pytest
import torch
import torch.nn.functional as F

import xent.torch as xt
from conftest import assert_close


# (loss rtol, gradient rtol, gradient atol relative to max|grad|).
# float64: the kernel works in double, but per-row losses (reduction="none")
# come back through float32 (the C++ API's row_loss is float*).
# float32: a few ulps of the fast exp and of the float32 result.
# bfloat16/float16: accumulation is float32, so the error is the final
# rounding of each value to 8 (bf16) or 11 (f16) mantissa bits.
TOL = {
    torch.float64: (1e-9, 1e-9, 1e-11),
    torch.float32: (2e-5, 2e-5, 2e-6),
    torch.bfloat16: (1e-2, 1e-2, 1e-2),
    torch.float16: (2e-3, 2e-3, 2e-3),
}
NONE_ROW_RTOL = {torch.float64: 1e-6}  # float32 row_loss, see above

SHAPES = [(1, 1), (1, 2), (2, 3), (7, 10), (33, 257), (64, 1000), (5, 3000), (128, 50),
          (1, 20000), (96, 4099), (3, 7, 4), (2, 5, 3, 3), (6,), (4, 11, 1)]


def _case(i):
    r = random.Random(1000 + i)
    shape = r.choice(SHAPES)
    dtype = r.choice([torch.float64, torch.float32, torch.float32, torch.bfloat16, torch.float16])
    classes = shape[0] if len(shape) == 1 else shape[1]
    soft = r.random() < 0.3
    half = dtype in (torch.bfloat16, torch.float16)
    return dict(
        seed=i, shape=shape, dtype=dtype, soft=soft,
        weight=r.random() < 0.4,
        ignore=None if soft or r.random() < 0.5 else r.choice([-100, 1 % classes]),
        smoothing=r.choice([0.0, 0.0, 0.1, 1.0]),
        reduction=r.choice(["mean", "sum", "none"]),
        scale=r.choice([1.0, 5.0, 30.0] + ([] if half else [1e4])),
        mask=not soft and r.random() < 0.2,
        upstream=r.choice([1.0, 1.0, 0.37]),
    )


CASES = [_case(i) for i in range(140)]


def _ids(c):
    return (f"{c['seed']}-{'x'.join(map(str, c['shape']))}-{str(c['dtype'])[6:]}"
            f"-{'soft' if c['soft'] else 'idx'}-{c['reduction']}")


def _inputs(c):
    g = torch.Generator().manual_seed(c["seed"])
    shape = c["shape"]
    unbatched = len(shape) == 1
    classes = shape[0] if unbatched else shape[1]
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * c["scale"]).to(c["dtype"])
    tshape = () if unbatched else shape[:1] + shape[2:]
    if c["soft"]:
        logits_t = torch.randn(shape, generator=g, dtype=torch.float64) * 2
        # Half-precision logits get float32 or same-dtype probabilities (the
        # latter sum to 1 only within their rounding: accepted as torch does).
        half = c["dtype"] in (torch.bfloat16, torch.float16)
        tdtype = torch.float32 if half and c["seed"] % 2 else c["dtype"]
        target = torch.softmax(logits_t, dim=0 if unbatched else 1).to(tdtype)
    else:
        target = torch.randint(0, classes, tshape, generator=g)
        if c["ignore"] is not None and target.numel() > 1:
            drop = torch.rand(tshape, generator=g) < 0.25
            target[drop] = c["ignore"]
    if c["mask"] and classes > 2:
        # -inf masks on classes that are never the target.
        mask = torch.rand(shape, generator=g) < 0.3
        cls = torch.arange(classes).view((classes,) + (1,) * (len(shape) - 2 if not unbatched else 0))
        tgt = target.unsqueeze(0 if unbatched else 1)
        mask &= cls != tgt
        x = x.masked_fill(mask, float("-inf"))
        c = dict(c, smoothing=0.0)  # smoothing over a -inf class is +inf in both
    weight = None
    if c["weight"]:
        # float32-representable weights, so xent's float32 class_weight is exact.
        weight = (torch.rand(classes, generator=g) * 2 + 0.1).to(torch.float32)
    return c, x, target, weight


def _kwargs(c, weight, dtype=None):
    kw = dict(reduction=c["reduction"], label_smoothing=c["smoothing"])
    if weight is not None:
        kw["weight"] = weight if dtype is None else weight.to(dtype)
    if c["ignore"] is not None:
        kw["ignore_index"] = c["ignore"]
    return kw


def _upstream(c, out, g):
    if c["reduction"] == "none":
        return torch.rand(out.shape, generator=g, dtype=torch.float64) + 0.5
    return torch.tensor(c["upstream"], dtype=torch.float64)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_parity_with_torch(case):
    c, x, target, weight = _inputs(case)
    loss_rtol, grad_rtol, grad_atol = TOL[c["dtype"]]

    x_ref = x.detach().to(torch.float64).requires_grad_()
    t_ref = target.to(torch.float64) if c["soft"] else target
    ref = F.cross_entropy(x_ref, t_ref, **_kwargs(c, weight, torch.float64))

    x_ours = x.detach().clone().requires_grad_()
    ours = xt.cross_entropy(x_ours, target, **_kwargs(c, weight))
    assert ours.dtype == x.dtype and ours.shape == ref.shape

    if c["reduction"] == "none":
        loss_rtol = max(loss_rtol, NONE_ROW_RTOL.get(c["dtype"], 0.0))
    assert_close(ours, ref, loss_rtol, what="loss")

    up = _upstream(c, ref, torch.Generator().manual_seed(c["seed"] + 1))
    ref.backward(up)
    ours.backward(up.to(x.dtype))
    assert x_ours.grad.dtype == x.dtype
    assert_close(x_ours.grad, x_ref.grad, grad_rtol, grad_atol, what="grad")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_targets_ignored(dtype, reduction):
    x = torch.randn(4, 5, dtype=dtype, requires_grad=True)
    t = torch.full((4,), -100)
    ours = xt.cross_entropy(x, t, reduction=reduction)
    ref = F.cross_entropy(x.detach(), t, reduction=reduction)
    assert_close(ours, ref, 0.0, what="loss")  # NaN for mean, as torch
    ours.sum().backward() if reduction == "none" else ours.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_empty_batch():
    x = torch.zeros(0, 5, requires_grad=True)
    t = torch.zeros(0, dtype=torch.int64)
    assert xt.cross_entropy(x, t, reduction="sum").item() == 0.0
    assert xt.cross_entropy(x, t, reduction="none").shape == (0,)


def test_int32_targets_and_row_strided_logits_read_in_place():
    g = torch.Generator().manual_seed(5)
    storage = torch.randn(16, 40, generator=g)
    x = storage[:, :33]  # rows of 33 classes, row stride 40: read without a copy
    t32 = torch.randint(0, 33, (16,), generator=g, dtype=torch.int32)
    ref = F.cross_entropy(x.double(), t32.long())
    xr = x.clone().requires_grad_()
    (ref_grad,) = torch.autograd.grad(F.cross_entropy(xr.double(), t32.long()), xr)
    xs = x.detach().requires_grad_()
    ours = xt.cross_entropy(xs, t32)
    ours.backward()
    assert_close(ours, ref, 2e-6, what="loss")
    assert_close(xs.grad, ref_grad, 2e-5, 2e-6, what="grad")


@pytest.mark.parametrize("shape", [(4096, 50257), (1, 262144)])
def test_large_shapes(shape, threads):
    """Parity at LLM vocabulary sizes (one long row takes the column-chunked
    path). The oracle is torch in float64, on row blocks for the loss and on
    sampled rows for the gradient, to bound time and memory. (torch's own
    float32 gradient is off by up to ~2e-4 relative here: it exponentiates a
    float32 log_softmax.)"""
    threads(2)
    g = torch.Generator().manual_seed(11)
    x = torch.randn(shape, generator=g) * 4
    t = torch.randint(0, shape[1], (shape[0],), generator=g)
    t[::7] = -100
    n_valid = int((t != -100).sum())
    x.requires_grad_()
    ours = xt.cross_entropy(x, t, label_smoothing=0.05)
    ours.backward()

    ref_sum = sum(F.cross_entropy(x.detach()[i:i + 256].double(), t[i:i + 256],
                                  label_smoothing=0.05, reduction="sum")
                  for i in range(0, shape[0], 256))
    assert_close(ours, ref_sum / n_valid, 1e-6, what="loss")
    rows = torch.unique(torch.cat([torch.tensor([0, shape[0] - 1]),
                                   torch.randint(0, shape[0], (62,), generator=g)]))
    z = x.detach()[rows].double().requires_grad_()
    (F.cross_entropy(z, t[rows], label_smoothing=0.05, reduction="sum") / n_valid).backward()
    assert_close(x.grad[rows], z.grad, 1e-5, 1e-6, what="grad (sampled rows)")


@pytest.mark.parametrize("options", [dict(), dict(label_smoothing=0.1, z_loss=1e-3)], ids=str)
def test_same_bits_for_any_thread_count(options, threads):
    """Deterministic: the loss and every gradient bit are the same with 1 and
    2 threads (a fixed partition and reduction order in the kernel)."""
    g = torch.Generator().manual_seed(8)
    shapes = [(512, 3000), (2, 100000)]  # rows split across threads; one long row split in chunks
    for shape in shapes:
        x = torch.randn(shape, generator=g) * 3
        t = torch.randint(0, shape[1], (shape[0],), generator=g)
        results = []
        for n in (1, 2):
            threads(n)
            xi = x.clone().requires_grad_()
            loss = xt.cross_entropy(xi, t, **options)
            loss.backward()
            results.append((loss.detach(), xi.grad))
        assert torch.equal(results[0][0], results[1][0]), shape
        assert torch.equal(results[0][1], results[1][1]), shape
