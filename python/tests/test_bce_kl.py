"""binary_cross_entropy_with_logits and kl_div against torch (float64
oracle), torch and NumPy APIs, forward and gradients."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import xent
import xent.torch as xt
from conftest import assert_close


TOL = {torch.float64: (1e-9, 1e-11), torch.float32: (2e-5, 2e-6), torch.bfloat16: (1e-2, 1e-2)}
NONE_RTOL = 1e-6  # elementwise losses come back as float32 (C++ API)


def _bce_inputs(seed, shape, dtype, weight_kind, pos_weight):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 4).to(dtype)
    y = torch.rand(shape, generator=g, dtype=torch.float64)
    y[..., ::3] = (y[..., ::3] > 0.5).double()  # hard labels too
    y = y.to(dtype)
    w = None
    if weight_kind == "label":
        w = torch.rand(shape[-1], generator=g) + 0.5
    elif weight_kind == "elem":
        w = torch.rand(shape, generator=g) + 0.5
    elif weight_kind == "row":  # broadcast over the last axis: (N, 1)
        w = torch.rand(shape[:-1] + (1,), generator=g) + 0.5
    pw = torch.rand(shape[-1], generator=g) * 3 + 0.1 if pos_weight else None
    return x, y, w, pw


BCE_CASES = list(itertools.product(
    [(1, 1), (8, 5), (64, 300), (3, 4, 7), (17,)],
    [torch.float64, torch.float32, torch.bfloat16],
    [None, "label", "elem", "row"],
    [False, True],
    ["mean", "sum", "none"]))


@pytest.mark.parametrize("shape,dtype,weight_kind,pos_weight,reduction", BCE_CASES,
                         ids=lambda v: str(v).replace("torch.", ""))
def test_bce_with_logits_parity(shape, dtype, weight_kind, pos_weight, reduction):
    x, y, w, pw = _bce_inputs(len(shape) * 7 + shape[-1], shape, dtype, weight_kind, pos_weight)
    rtol, atol = TOL[dtype]
    xr = x.detach().double().requires_grad_()
    ref = F.binary_cross_entropy_with_logits(
        xr, y.double(), weight=None if w is None else w.double(), reduction=reduction,
        pos_weight=None if pw is None else pw.double())
    xo = x.detach().clone().requires_grad_()
    ours = xt.binary_cross_entropy_with_logits(xo, y, weight=w, reduction=reduction,
                                               pos_weight=pw)
    assert ours.dtype == dtype
    assert_close(ours, ref, max(rtol, NONE_RTOL if reduction == "none" else 0), atol,
                 what="loss")
    up = torch.rand(ref.shape, dtype=torch.float64) + 0.5
    ref.backward(up)
    ours.backward(up.to(dtype))
    assert_close(xo.grad, xr.grad, rtol, atol, what="grad")


KL_CASES = list(itertools.product(
    [(1, 1), (6, 9), (32, 500), (2, 3, 5), (7,)],
    [torch.float64, torch.float32, torch.bfloat16],
    [False, True],
    ["none", "sum", "mean", "batchmean"]))


@pytest.mark.filterwarnings("ignore:reduction. .mean. divides:UserWarning")
@pytest.mark.parametrize("shape,dtype,log_target,reduction", KL_CASES,
                         ids=lambda v: str(v).replace("torch.", ""))
def test_kl_div_parity(shape, dtype, log_target, reduction):
    g = torch.Generator().manual_seed(shape[-1] + len(shape))
    q = torch.log_softmax(torch.randn(shape, generator=g, dtype=torch.float64) * 2, -1)
    p = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64) * 2, -1)
    if p.numel() > 3:
        p.view(-1)[::4] = 0.0  # 0·log 0 = 0 terms
    x = q.to(dtype)
    # log_target: log 0 as a large finite negative (torch's exp(t)·(t − x) is
    # NaN at t = -inf).
    t = (p.clamp_min(1e-300).log() if log_target else p).to(dtype)
    rtol, atol = TOL[dtype]
    xr = x.detach().double().requires_grad_()
    ref = F.kl_div(xr, t.double(), reduction=reduction, log_target=log_target)
    xo = x.detach().clone().requires_grad_()
    ours = xt.kl_div(xo, t, reduction=reduction, log_target=log_target)
    assert_close(ours, ref, max(rtol, NONE_RTOL if reduction == "none" else 0), atol,
                 what="loss")
    up = torch.rand(ref.shape, dtype=torch.float64) + 0.5
    ref.backward(up)
    ours.backward(up.to(dtype))
    assert_close(xo.grad, xr.grad, rtol, atol, what="grad")


def test_gradcheck_bce_and_kl():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(4, 3, generator=g, dtype=torch.float64)
    w, pw = torch.rand(3, generator=g) + 0.5, torch.rand(3, generator=g) + 0.5
    for reduction in ("mean", "sum"):
        assert torch.autograd.gradcheck(
            lambda x: xt.binary_cross_entropy_with_logits(x, y, w, reduction=reduction,
                                                          pos_weight=pw), (x,))
        p = torch.softmax(y, -1)
        assert torch.autograd.gradcheck(lambda x: xt.kl_div(x, p, reduction=reduction), (x,))


def test_numpy_api_bce_and_kl_match_torch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 6))
    y = rng.random((10, 6))
    pw = (rng.random(6) + 0.5).astype(np.float32)  # the C++ API takes float32 pos_weight
    loss, grad = xent.binary_cross_entropy_with_logits(x, y, pos_weight=pw, return_grad=True)
    xt_ = torch.tensor(x, requires_grad=True)
    ref = F.binary_cross_entropy_with_logits(xt_, torch.tensor(y),
                                             pos_weight=torch.tensor(pw))
    ref.backward()
    assert_close(loss, ref, 1e-10)
    assert_close(grad, xt_.grad, 1e-10, 1e-12)

    logq = np.log(xent.softmax(x))
    p = xent.softmax(rng.standard_normal((10, 6)))
    kl, grad = xent.kl_div(logq, p, return_grad=True)  # batchmean by default
    xt_ = torch.tensor(logq, requires_grad=True)
    ref = F.kl_div(xt_, torch.tensor(p), reduction="batchmean")
    ref.backward()
    assert_close(kl, ref, 1e-10)
    assert_close(grad, xt_.grad, 1e-10, 1e-12)
