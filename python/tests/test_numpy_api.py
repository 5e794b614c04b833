"""The NumPy cross_entropy against torch (float64 oracle): values, the
return_grad form, layouts, and the NumPy-specific choices (classes on the
last axis, empty_mean)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import xent
from conftest import assert_close


def _oracle(logits, target, reduction="mean", **kw):
    """torch in float64; NumPy's (..., C) layout flattened to rows."""
    x = torch.tensor(np.asarray(logits, dtype=np.float64)).reshape(-1, logits.shape[-1])
    x.requires_grad_()
    t = torch.tensor(target)
    t = t.reshape(-1, logits.shape[-1]).double() if t.is_floating_point() else t.reshape(-1).long()
    loss = F.cross_entropy(x, t, reduction=reduction, **kw)
    loss.sum().backward()
    shape = logits.shape[:-1] if reduction == "none" else ()
    return loss.detach().reshape(shape), x.grad.reshape(logits.shape)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 2e-5)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kw", [dict(), dict(label_smoothing=0.2), dict(ignore_index=2),
                                dict(weight=True, label_smoothing=0.1)], ids=str)
def test_cross_entropy_matches_torch(dtype, rtol, reduction, kw):
    rng = np.random.default_rng(4)
    logits = (rng.standard_normal((3, 5, 17)) * 3).astype(dtype)
    target = rng.integers(0, 17, (3, 5))
    kw = dict(kw)
    if kw.pop("weight", False):
        kw["weight"] = rng.random(17).astype(np.float32) + 0.5
    ref_loss, ref_grad = _oracle(logits, target, reduction,
                                 **{k: torch.tensor(v, dtype=torch.float64) if k == "weight" else v
                                    for k, v in kw.items()})
    loss, grad = xent.cross_entropy(logits, target, reduction=reduction, return_grad=True, **kw)
    assert grad.dtype == dtype and grad.shape == logits.shape
    assert np.asarray(loss).dtype == dtype
    assert_close(loss, ref_loss, max(rtol, 1e-6 if reduction == "none" else 0), what="loss")
    assert_close(grad, ref_grad, rtol, rtol / 10, what="grad")


def test_probability_targets_int32_targets_and_strided_logits():
    rng = np.random.default_rng(5)
    big = rng.standard_normal((10, 30))
    logits = big[::2, :20]  # read in place: row stride 60, 20 classes
    p = xent.softmax(rng.standard_normal((5, 20)))
    ref_loss, ref_grad = _oracle(np.ascontiguousarray(logits), p)
    loss, grad = xent.cross_entropy(logits, p, return_grad=True)
    assert_close(loss, ref_loss, 1e-12)
    assert_close(grad, ref_grad, 1e-12, 1e-14)
    t32 = rng.integers(0, 20, 5).astype(np.int32)
    ref_loss, _ = _oracle(np.ascontiguousarray(logits), t32.astype(np.int64))
    assert_close(xent.cross_entropy(logits, t32), ref_loss, 1e-12)


def test_empty_mean_choice():
    logits = np.zeros((3, 4))
    t = np.full(3, -100)
    assert xent.cross_entropy(logits, t) == 0.0
    assert np.isnan(xent.cross_entropy(logits, t, empty_mean="nan"))
    loss, grad = xent.cross_entropy(logits, t, return_grad=True)
    assert not grad.any()


def test_perplexity_of_logits_is_exp_of_mean_cross_entropy():
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((50, 9))
    t = rng.integers(0, 9, 50)
    ref_loss, _ = _oracle(logits, t)
    np.testing.assert_allclose(xent.perplexity(logits, t), np.exp(ref_loss.item()), rtol=1e-12)
    with pytest.raises(ValueError, match="reduction"):
        xent.perplexity(logits, t, reduction="sum")


def test_bad_arguments():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="shape"):
        xent.cross_entropy(x, np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="weight"):
        xent.cross_entropy(x, np.zeros(2, dtype=np.int64), weight=np.ones(4))
    with pytest.raises(TypeError, match="target"):
        xent.cross_entropy(x, np.array(["a", "b"]))
    with pytest.raises(ValueError, match="reduction"):
        xent.cross_entropy(x, np.zeros(2, dtype=np.int64), reduction="avg")
    with pytest.raises(IndexError):
        xent.cross_entropy(x, np.array([0, 3]))
