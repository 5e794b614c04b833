"""xent.torch on CUDA tensors (the CUDA backend, xent._xent_cuda).

GPU tests skip when torch has no CUDA device; they hold the GPU results to
the same oracle as the CPU tests: torch.nn.functional in float64 on the CPU,
on the same input values, for the CPU parity matrix of
test_cross_entropy_parity.py (float64 cases expect the GPU's TypeError).
The dispatch's error paths that need no GPU run everywhere.
"""

import sys

import pytest
import torch
import torch.nn.functional as F

import xent.torch as xt
from xent.torch import _cuda
from conftest import assert_close
from test_cross_entropy_parity import CASES, TOL, NONE_ROW_RTOL, _ids, _inputs, _kwargs, _upstream

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


# ------------------------------------------------------------ no GPU needed

def test_missing_backend_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_cuda, "_module", None)
    monkeypatch.setitem(sys.modules, "xent._xent_cuda", None)  # import fails
    with pytest.raises(RuntimeError, match="built without its CUDA backend"):
        _cuda.module("xent.torch.cross_entropy")


def test_other_devices_are_refused():
    x = torch.empty(2, 3, device="meta")
    t = torch.zeros(2, dtype=torch.long)
    with pytest.raises(NotImplementedError, match="CPU and CUDA tensors"):
        xt.cross_entropy(x, t)


def test_cpu_tensors_do_not_touch_the_cuda_module(monkeypatch):
    monkeypatch.setattr(_cuda, "module", lambda name: pytest.fail("CUDA backend used for CPU"))
    x = torch.randn(3, 5, requires_grad=True)
    t = torch.tensor([0, 4, 2])
    loss = xt.cross_entropy(x, t)
    loss.backward()
    ref = F.cross_entropy(x.detach().double(), t)
    assert abs(loss.item() - ref.item()) < 1e-6


# ------------------------------------------------------------ on the GPU

@gpu
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_gpu_parity_with_torch(case):
    c, x, target, weight = _inputs(case)
    dev = torch.device("cuda")
    if c["dtype"] == torch.float64:
        with pytest.raises(TypeError, match="float32, bfloat16 and float16"):
            xt.cross_entropy(x.to(dev), target.to(dev), **_kwargs(c, None if weight is None else weight.to(dev)))
        return
    loss_rtol, grad_rtol, grad_atol = TOL[c["dtype"]]
    x_ref = x.detach().to(torch.float64).requires_grad_()
    t_ref = target.to(torch.float64) if c["soft"] else target
    ref = F.cross_entropy(x_ref, t_ref, **_kwargs(c, weight, torch.float64))

    x_gpu = x.detach().to(dev).requires_grad_()
    ours = xt.cross_entropy(x_gpu, target.to(dev), **_kwargs(c, None if weight is None else weight.to(dev)))
    assert ours.device.type == "cuda" and ours.dtype == x.dtype and ours.shape == ref.shape
    if c["reduction"] == "none":
        loss_rtol = max(loss_rtol, NONE_ROW_RTOL.get(c["dtype"], 0.0))
    assert_close(ours.cpu(), ref, loss_rtol, what="loss")
    up = _upstream(c, ref, torch.Generator().manual_seed(c["seed"] + 1))
    ref.backward(up)
    ours.backward(up.to(x.dtype).to(dev))
    assert x_gpu.grad.dtype == x.dtype
    assert_close(x_gpu.grad.cpu(), x_ref.grad, grad_rtol, grad_atol, what="grad")


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_extras_against_float64_formulas(dtype):
    """z_loss, softcap, temperature and focal against their float64 formulas."""
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(64, 3000, generator=g, dtype=torch.float64) * 4).to(dtype)
    t = torch.randint(0, 3000, (64,), generator=g)
    xr = x.double().requires_grad_()
    z = 20 * torch.tanh(xr / 20) / 1.5
    lse = torch.logsumexp(z, 1)
    logq = z - lse[:, None]
    q = logq.exp()
    qt, lqt = q.gather(1, t[:, None])[:, 0], logq.gather(1, t[:, None])[:, 0]
    ref = (-(1 - qt) ** 2 * lqt + 1e-3 * lse ** 2).mean()
    ref.backward()
    xg = x.to("cuda").requires_grad_()
    ours = xt.cross_entropy(xg, t.cuda(), z_loss=1e-3, softcap=20.0, temperature=1.5, focal_gamma=2.0)
    ours.backward()
    rtol, _, gatol = TOL[dtype]
    assert_close(ours.cpu(), ref, rtol, what="loss")
    assert_close(xg.grad.cpu(), xr.grad, rtol, gatol, what="grad")


@gpu
def test_gpu_inplace_backward_and_large_vocabulary():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(8, 262144, generator=g) * 3
    t = torch.randint(0, 262144, (8,), generator=g)
    ref_x = x.double().requires_grad_()
    ref = F.cross_entropy(ref_x, t)
    ref.backward()
    h = (x.cuda() * 1.0).requires_grad_()
    logits = h * 1.0  # a non-leaf whose producer saved nothing
    loss = xt.cross_entropy(logits, t.cuda(), inplace_backward=True)
    loss.backward()
    assert_close(loss.cpu(), ref, 2e-6, what="loss")
    assert_close(h.grad.cpu(), ref_x.grad, 2e-5, 2e-6, what="grad")


@gpu
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gpu_bce_with_logits(reduction):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(33, 70, generator=g) * 5
    y = torch.rand(33, 70, generator=g)
    w = torch.rand(70, generator=g) + 0.5
    pw = torch.rand(70, generator=g) * 3
    xr = x.double().requires_grad_()
    ref = F.binary_cross_entropy_with_logits(xr, y.double(), weight=w.double(), pos_weight=pw.double(),
                                             reduction=reduction)
    up = torch.rand(ref.shape, generator=g, dtype=torch.float64) + 0.5
    ref.backward(up)
    xg = x.cuda().requires_grad_()
    ours = xt.binary_cross_entropy_with_logits(xg, y.cuda(), weight=w.cuda(), pos_weight=pw.cuda(),
                                               reduction=reduction)
    ours.backward(up.float().cuda())
    assert_close(ours.cpu(), ref, 2e-6, what="loss")
    assert_close(xg.grad.cpu(), xr.grad, 2e-5, 2e-6, what="grad")


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("grad_filter", [0.0, 2.0 ** -12])
def test_gpu_linear_cross_entropy(dtype, grad_filter):
    g = torch.Generator().manual_seed(4)
    n, d, v = 300, 128, 5000
    h = (torch.randn(n, d, generator=g) * 0.5).to(dtype)
    w = (torch.randn(v, d, generator=g) * 0.1).to(dtype)
    b = torch.randn(v, generator=g) * 0.1
    t = torch.randint(0, v, (n,), generator=g)
    t[7] = -100
    hr, wr, br = (a.double().requires_grad_() for a in (h, w, b))
    ref = F.cross_entropy(hr @ wr.T + br, t, label_smoothing=0.1)
    ref.backward()
    hg, wg, bg = (a.cuda().requires_grad_() for a in (h, w, b))
    ours = xt.linear_cross_entropy(hg, wg, t.cuda(), bias=bg, label_smoothing=0.1,
                                   grad_filter=grad_filter)
    ours.backward()
    tol = 2e-2 if dtype == torch.bfloat16 else 2e-4
    assert_close(ours.float().cpu(), ref, tol, what="loss")
    for got, want, name in ((hg.grad, hr.grad, "hidden"), (wg.grad, wr.grad, "weight"),
                            (bg.grad, br.grad, "bias")):
        scale = want.abs().max().item()
        # Filtering drops entries below 2^-12 of the softmax: allow that much.
        atol = (tol + (2.0 ** -12 * v / n if grad_filter else 0)) * scale
        assert_close(got.float().cpu(), want, tol, atol / scale, what=name)


@gpu
def test_gpu_errors_name_the_row():
    x = torch.randn(4, 10, device="cuda")
    x[2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"logits\[2\]\[3\]"):
        xt.cross_entropy(x, torch.zeros(4, dtype=torch.long, device="cuda"))
    with pytest.raises(IndexError, match=r"targets\[1\] = 10"):
        xt.cross_entropy(torch.randn(4, 10, device="cuda"),
                         torch.tensor([0, 10, 1, 2], device="cuda"))
    with pytest.raises(ValueError, match="all on one CUDA device"):
        xt.cross_entropy(torch.randn(4, 10, device="cuda"), torch.zeros(4, dtype=torch.long))
