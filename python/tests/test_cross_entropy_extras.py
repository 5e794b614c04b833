"""Options PyTorch has no argument for (z_loss, softcap, temperature, focal
loss, off-target smoothing), checked against a float64 oracle composed from
torch primitives (its gradient by torch autograd), and
torch.autograd.gradcheck (finite differences) in float64 over every option."""

import itertools

import pytest
import torch

import xent.torch as xt
from conftest import assert_close


def reference(x, target, weight=None, ignore_index=-100, reduction="mean",
              label_smoothing=0.0, smoothing_mode="uniform", z_loss=0.0, softcap=None,
              temperature=1.0, focal_gamma=0.0):
    """The documented semantics (include/xent/loss.h), written out in torch:
    z' = softcap·tanh(z/softcap), z'' = z'/T, q = softmax(z''); row loss
    Σ_c w_c·t'_c·(1 − q_c)^γ·(−log q_c) + c·lse(z'')²; mean divides the CE
    part by Σ w[y] over non-ignored rows (N for probability targets) and the
    z-loss part by the number of non-ignored rows."""
    n, classes = x.shape
    z = x if softcap is None else softcap * torch.tanh(x / softcap)
    z = z / temperature
    logq = torch.log_softmax(z, dim=1)
    lse = torch.logsumexp(z, dim=1)
    w = torch.ones(classes, dtype=x.dtype) if weight is None else weight.to(x.dtype)
    if target.is_floating_point():
        valid = torch.ones(n, dtype=x.dtype)
        t = target.to(x.dtype)
        ce_denominator = torch.tensor(float(n), dtype=x.dtype)
    else:
        valid = (target != ignore_index).to(x.dtype)
        t = torch.nn.functional.one_hot(torch.where(target == ignore_index, 0, target),
                                        classes).to(x.dtype)
        ce_denominator = (w[torch.where(target == ignore_index, 0, target)] * valid).sum()
    eps = label_smoothing
    if smoothing_mode == "uniform":
        t = (1 - eps) * t + eps / classes
    elif classes > 1:
        t = (1 - eps) * t + eps * (1 - t) / (classes - 1)
    t = t * valid[:, None]
    focal = (1 - logq.exp()) ** focal_gamma if focal_gamma else 1.0
    ce = -(w * t * focal * logq).sum(dim=1)
    zl = z_loss * lse ** 2 * valid
    if reduction == "none":
        return ce + zl
    if reduction == "sum":
        return ce.sum() + zl.sum()
    return ce.sum() / ce_denominator + zl.sum() / valid.sum()


EXTRAS = [
    dict(z_loss=1e-3), dict(z_loss=0.5), dict(softcap=5.0), dict(softcap=30.0),
    dict(temperature=0.5), dict(temperature=4.0), dict(focal_gamma=2.0), dict(focal_gamma=0.5),
    dict(label_smoothing=0.2, smoothing_mode="off_target"),
    dict(z_loss=1e-2, softcap=10.0, temperature=2.0, label_smoothing=0.1),
    dict(focal_gamma=2.0, label_smoothing=0.1, z_loss=1e-3),
]


def _data(seed, n, classes, soft, dtype=torch.float64, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, classes, generator=g, dtype=torch.float64) * scale
    if soft:
        t = torch.softmax(torch.randn(n, classes, generator=g, dtype=torch.float64), 1)
    else:
        t = torch.randint(0, classes, (n,), generator=g)
        t[::4] = -100
    w = (torch.rand(classes, generator=g) + 0.2).to(torch.float32)
    return x.to(dtype), t, w


@pytest.mark.parametrize("extra", EXTRAS, ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()))
@pytest.mark.parametrize("dtype,rtol,atol", [(torch.float64, 1e-9, 1e-11),
                                             (torch.float32, 5e-5, 5e-6)])
@pytest.mark.parametrize("soft,weighted,reduction",
                         [(False, False, "mean"), (False, True, "mean"), (True, True, "sum"),
                          (False, True, "none"), (True, False, "mean")])
def test_extras_against_reference(extra, dtype, rtol, atol, soft, weighted, reduction):
    x, t, w = _data(3, 24, 37, soft, dtype)
    kw = dict(extra, reduction=reduction, weight=w if weighted else None)
    xr = x.detach().to(torch.float64).requires_grad_()
    ref = reference(xr, t, **kw)
    xo = x.detach().clone().requires_grad_()
    ours = xt.cross_entropy(xo, t.to(dtype) if soft else t, **kw)
    row_rtol = 1e-6 if reduction == "none" else 0.0  # float32 per-row losses
    assert_close(ours, ref, max(rtol, row_rtol), what="loss")
    up = torch.rand(ref.shape, dtype=torch.float64) + 0.5
    ref.backward(up)
    ours.backward(up.to(dtype))
    assert_close(xo.grad, xr.grad, rtol, atol, what="grad")


GRADCHECK_OPTIONS = [
    dict(), dict(label_smoothing=0.3), dict(weight=True), dict(weight=True, label_smoothing=0.2),
    dict(z_loss=0.1), dict(softcap=3.0), dict(temperature=0.7), dict(focal_gamma=2.0),
    dict(label_smoothing=0.2, smoothing_mode="off_target"),
    dict(weight=True, z_loss=0.05, softcap=4.0, temperature=1.5, focal_gamma=1.5,
         label_smoothing=0.1),
]


@pytest.mark.parametrize("options", GRADCHECK_OPTIONS, ids=str)
@pytest.mark.parametrize("soft,reduction", list(itertools.product([False, True], ["mean", "sum"])))
def test_gradcheck_float64(options, soft, reduction):
    x, t, w = _data(9, 5, 6, soft)
    options = dict(options)
    weight = w if options.pop("weight", False) else None
    x.requires_grad_()
    f = lambda x: xt.cross_entropy(x, t, weight=weight, reduction=reduction, **options)
    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_gradcheck_k_dimensional_input():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 4, (2, 3, 2), generator=g)
    t[0, 1, 1] = -100
    assert torch.autograd.gradcheck(lambda x: xt.cross_entropy(x, t, label_smoothing=0.1), (x,),
                                    eps=1e-6, atol=1e-8, rtol=1e-6)
