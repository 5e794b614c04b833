"""inplace_backward: same gradients, the logits' storage reused, and the
unsafe cases refused (at the call, or by torch's version check)."""

import pytest
import torch

import xent.torch as xt
from conftest import assert_close


def _model_and_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(32, 16, generator=g)
    w = torch.randn(16, 50, generator=g, requires_grad=True)
    t = torch.randint(0, 50, (32,), generator=g)
    return h, w, t


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("upstream", [1.0, 0.25])
def test_same_gradient_as_out_of_place(reduction, upstream):
    h, w, t = _model_and_data()
    grads = []
    for inplace in (False, True):
        w.grad = None
        logits = h @ w
        loss = xt.cross_entropy(logits, t, reduction=reduction, label_smoothing=0.1,
                                inplace_backward=inplace)
        (loss.sum() * upstream).backward()
        grads.append(w.grad.clone())
        if inplace:
            # The gradient went into the logits' own storage.
            z = (h @ w).detach().requires_grad_()
            ref = torch.nn.functional.cross_entropy(z, t, reduction=reduction,
                                                    label_smoothing=0.1)
            (ref.sum() * upstream).backward()
            assert_close(logits.detach(), z.grad, 1e-6, 1e-7, what="logits after backward")
    assert_close(grads[1], grads[0], 1e-6, 1e-7, what="weight grad")


def test_refuses_leaf_that_requires_grad():
    x = torch.randn(4, 5, requires_grad=True)
    with pytest.raises(ValueError, match="leaf"):
        xt.cross_entropy(x, torch.zeros(4, dtype=torch.int64), inplace_backward=True)
    with pytest.raises(ValueError, match="leaf"):
        xt.cross_entropy(x[:, :3], torch.zeros(4, dtype=torch.int64), inplace_backward=True)


@pytest.mark.parametrize("make", [lambda h: h.exp(), lambda h: torch.tanh(h).view(8, 5),
                                  lambda h: torch.sigmoid(h)[:, :4]])
def test_refuses_logits_saved_by_their_producer(make):
    h = torch.randn(8, 5, requires_grad=True)
    x = make(h)
    with pytest.raises(ValueError, match="saved"):
        xt.cross_entropy(x, torch.zeros(8, dtype=torch.int64), inplace_backward=True)


def test_undetectable_reuse_fails_loudly_at_backward():
    h, w, t = _model_and_data()
    logits = h @ w
    other = (logits * logits).sum()  # MulBackward saved the logits
    loss = xt.cross_entropy(logits, t, inplace_backward=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (loss + other).backward()


def test_k_dim_input_overwrites_only_the_internal_copy():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(2, 3, 4, generator=g, requires_grad=True)
    x = h * 2  # (N, C, d) → a transposed copy is what gets overwritten
    t = torch.randint(0, 3, (2, 4), generator=g)
    before = x.detach().clone()
    xt.cross_entropy(x, t, inplace_backward=True).backward()
    assert torch.equal(x.detach(), before)
    h2 = h.detach().clone().requires_grad_()
    torch.nn.functional.cross_entropy(h2 * 2, t).backward()
    assert_close(h.grad, h2.grad, 1e-6, 1e-7)


def test_retain_graph_second_backward():
    h, w, t = _model_and_data()
    loss = xt.cross_entropy(h @ w, t)
    loss.backward(retain_graph=True)
    first = w.grad.clone()
    loss.backward()  # recomputed from the saved logits and lse
    assert_close(w.grad, 2 * first, 1e-6, 1e-7)
    loss = xt.cross_entropy(h @ w, t, inplace_backward=True)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_no_gradient_work_under_no_grad():
    h, w, t = _model_and_data()
    logits = h @ w
    before = logits.detach().clone()
    with torch.no_grad():
        loss = xt.cross_entropy(logits, t, inplace_backward=True)
    assert torch.equal(logits.detach(), before)  # nothing written
    assert_close(loss, torch.nn.functional.cross_entropy(before, t), 1e-6)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("loss", ["bce", "kl"])
def test_bce_and_kl_inplace_same_gradient(loss, reduction):
    g = torch.Generator().manual_seed(3)
    h = torch.randn(16, 8, generator=g)
    w = torch.randn(8, 12, generator=g, requires_grad=True)
    y = torch.rand(16, 12, generator=g)
    grads = []
    for inplace in (False, True):
        w.grad = None
        out = h @ w
        if loss == "bce":
            value = xt.binary_cross_entropy_with_logits(out, y, reduction=reduction,
                                                        inplace_backward=inplace)
        else:
            value = xt.kl_div(out, torch.softmax(y, -1), reduction=reduction,
                              inplace_backward=inplace)
        value.sum().backward()
        grads.append(w.grad.clone())
    assert_close(grads[1], grads[0], 1e-6, 1e-7)
