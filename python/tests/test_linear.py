"""xent.torch.linear_cross_entropy against torch's unfused
F.cross_entropy(hidden @ weight.T + bias, target) computed in float64.

Tolerances: the fused path runs float32 GEMMs (OpenBLAS, K = D terms) and the
float32 loss kernel; the reference is float64 end to end. With D ≤ 64 and
entries of O(1), float32 products carry ~D·6e-8 relative error, so 1e-5
relative on the loss and 1e-4 on the gradients (relative to each gradient's
largest entry) leave margin without hiding a wrong term (a missing smoothing
or z-loss term changes them by > 1e-3). bfloat16 inputs are compared against
the float64 reference on the same bf16-rounded values, at 2e-3.
"""

import pytest
import torch
import torch.nn.functional as F

import xent.torch as xt

CASES = [
    dict(),
    dict(reduction="sum"),
    dict(ignore_index=3),
    dict(label_smoothing=0.1),
    dict(label_smoothing=0.2, smoothing_mode="off_target"),
    dict(z_loss=1e-3),
    dict(softcap=4.0),
    dict(temperature=1.7),
    dict(class_weight=True),
    dict(label_smoothing=0.1, class_weight=True, z_loss=1e-3, softcap=5.0, temperature=1.3),
]


def reference(h, w, b, t, **kw):
    """float64 unfused: logits, then the options as documented in loss.h."""
    z = h.double() @ w.double().T
    if b is not None:
        z = z + b.double()
    if kw.get("softcap"):
        z = kw["softcap"] * torch.tanh(z / kw["softcap"])
    z = z / kw.get("temperature", 1.0)
    weight = kw.get("class_weight")
    eps = kw.get("label_smoothing", 0.0)
    mode = kw.get("smoothing_mode", "uniform")
    ignore = kw.get("ignore_index", -100)
    red = kw.get("reduction", "mean")
    if mode == "uniform":
        ce = F.cross_entropy(z, t, weight=None if weight is None else weight.double(),
                             ignore_index=ignore, reduction=red, label_smoothing=eps)
    else:  # off-target: target 1 − ε, others ε/(V−1), weighted per class, mean over Σ w[y]
        v = z.shape[1]
        keep = t != ignore
        tt = torch.full_like(z, eps / (v - 1))
        tt[torch.arange(len(t)), t.clamp(min=0)] = 1 - eps
        wv = torch.ones(v, dtype=torch.float64) if weight is None else weight.double()
        rows = -(tt * wv * torch.log_softmax(z, 1)).sum(1) * keep
        ce = rows.sum() / (wv[t.clamp(min=0)] * keep).sum() if red == "mean" else rows.sum()
    if kw.get("z_loss"):
        keep = t != ignore
        lse = torch.logsumexp(z, 1)[keep]
        zl = kw["z_loss"] * (lse ** 2)
        ce = ce + (zl.mean() if red == "mean" else zl.sum())
    return ce


@pytest.mark.parametrize("algorithm", ["token_chunked", "vocab_tiled"])
@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("with_bias", [False, True])
def test_parity_float32(algorithm, case, with_bias):
    kw = dict(CASES[case])
    g = torch.Generator().manual_seed(100 + case)
    n, d, v = 37, 16, 53
    h = torch.randn(n, d, generator=g)
    w = torch.randn(v, d, generator=g) * 0.5
    b = torch.randn(v, generator=g) if with_bias else None
    t = torch.randint(0, v, (n,), generator=g)
    t[5] = kw.get("ignore_index", t[5])
    if kw.get("class_weight"):
        kw["class_weight"] = torch.rand(v, generator=g) + 0.5
    hx, wx = h.clone().requires_grad_(), w.clone().requires_grad_()
    bx = b.clone().requires_grad_() if b is not None else None
    # A 4 KiB logits budget forces many chunks/tiles that do not divide N or V.
    loss = xt.linear_cross_entropy(hx, wx, t, bx, algorithm=algorithm, max_buffer_bytes=4096, **kw)
    loss.backward()
    hr, wr = h.double().requires_grad_(), w.double().requires_grad_()
    br = b.double().requires_grad_() if b is not None else None
    ref = reference(hr, wr, br, t, **kw)
    ref.backward()
    assert abs(loss.item() - ref.item()) <= 1e-5 * abs(ref.item()) + 1e-7
    for got, want in ((hx.grad, hr.grad), (wx.grad, wr.grad)) + (((bx.grad, br.grad),) if b is not None else ()):
        scale = want.abs().max().item()
        assert (got.double() - want).abs().max().item() <= 1e-4 * scale


def test_bfloat16_inputs():
    g = torch.Generator().manual_seed(7)
    h = torch.randn(20, 8, generator=g).bfloat16()
    w = torch.randn(30, 8, generator=g).bfloat16()
    t = torch.randint(0, 30, (20,), generator=g)
    hx, wx = h.clone().requires_grad_(), w.clone().requires_grad_()
    loss = xt.linear_cross_entropy(hx, wx, t)
    loss.backward()
    assert hx.grad.dtype == torch.bfloat16 and wx.grad.dtype == torch.bfloat16
    hr, wr = h.double().requires_grad_(), w.double().requires_grad_()
    ref = F.cross_entropy(hr @ wr.T, t)
    ref.backward()
    assert abs(loss.float().item() - ref.item()) <= 2e-3 * abs(ref.item())
    assert (hx.grad.double() - hr.grad).abs().max() <= 2e-2 * hr.grad.abs().max()


def test_upstream_scale_and_leading_dims():
    g = torch.Generator().manual_seed(3)
    h = torch.randn(2, 5, 8, generator=g, requires_grad=True)
    w = torch.randn(11, 8, generator=g, requires_grad=True)
    t = torch.randint(0, 11, (2, 5), generator=g)
    (3.0 * xt.linear_cross_entropy(h, w, t)).backward()
    h2, w2 = h.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    (3.0 * F.cross_entropy((h2 @ w2.T).reshape(10, 11), t.reshape(-1))).backward()
    assert torch.allclose(h.grad.double(), h2.grad, rtol=1e-4, atol=1e-6)
    assert torch.allclose(w.grad.double(), w2.grad, rtol=1e-4, atol=1e-6)


def test_reduction_none_evaluation_and_refusal():
    g = torch.Generator().manual_seed(4)
    h = torch.randn(6, 4, generator=g)
    w = torch.randn(9, 4, generator=g)
    t = torch.randint(0, 9, (6,), generator=g)
    with torch.no_grad():
        rows = xt.linear_cross_entropy(h, w, t, reduction="none")
    want = F.cross_entropy(h.double() @ w.double().T, t, reduction="none")
    assert torch.allclose(rows.double(), want, rtol=1e-5)
    with pytest.raises(NotImplementedError, match="reduction='none'"):
        xt.linear_cross_entropy(h.requires_grad_(), w, t, reduction="none")


def test_errors():
    h, w = torch.randn(4, 3), torch.randn(5, 3)
    with pytest.raises(ValueError, match="weight"):
        xt.linear_cross_entropy(h, torch.randn(5, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="target"):
        xt.linear_cross_entropy(h, w, torch.zeros(3, dtype=torch.long))
    with pytest.raises(IndexError, match=r"targets\[2\] = 7"):
        xt.linear_cross_entropy(h, w, torch.tensor([0, 1, 7, 2]))
    with pytest.raises(TypeError):
        xt.linear_cross_entropy(h.double(), w.double(), torch.zeros(4, dtype=torch.long))
