"""Error cases: the type and the message users see."""

import numpy as np
import pytest
import torch

import xent
import xent.torch as xt


def test_out_of_range_target_is_index_error_naming_row_and_value():
    x = torch.randn(5, 4)
    t = torch.tensor([0, 1, 2, 7, 3])
    with pytest.raises(IndexError, match=r"(?s)(row 3|\[3\]).*7|7.*(row 3|\[3\])") as e:
        xt.cross_entropy(x, t)
    assert e.value.xent_code == "target_out_of_range"
    with pytest.raises(IndexError):
        xent.cross_entropy(x.numpy(), np.array([0, -1, 0, 0, 0]))


def test_non_finite_logits_are_value_errors():
    x = torch.randn(3, 4)
    x[1, 2] = float("nan")
    with pytest.raises(ValueError, match="(?i)nan"):
        xt.cross_entropy(x, torch.zeros(3, dtype=torch.int64))
    x[1, 2] = float("inf")
    with pytest.raises(ValueError):
        xt.cross_entropy(x, torch.zeros(3, dtype=torch.int64))


def test_soft_target_that_is_not_a_distribution():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError):
        xt.cross_entropy(x, torch.full((3, 4), 0.5))


def test_shapes_dtypes_devices_and_arguments():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="expected"):
        xt.cross_entropy(x, torch.zeros(4, dtype=torch.int64))
    with pytest.raises(TypeError, match="int64 or int32"):
        xt.cross_entropy(x, torch.zeros(3, dtype=torch.int16))
    with pytest.raises(TypeError, match="dtype"):
        xt.cross_entropy(x.to(torch.int64), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="weight"):
        xt.cross_entropy(x, torch.zeros(3, dtype=torch.int64), weight=torch.ones(5))
    with pytest.raises(ValueError, match="reduction"):
        xt.cross_entropy(x, torch.zeros(3, dtype=torch.int64), reduction="avg")
    with pytest.raises(ValueError, match="smoothing_mode"):
        xt.cross_entropy(x, torch.zeros(3, dtype=torch.int64), smoothing_mode="gauss")
    with pytest.raises(ValueError, match="ignore_index"):
        xt.cross_entropy(x, torch.softmax(x, -1), ignore_index=0)
    with pytest.raises(ValueError):
        xt.cross_entropy(x, torch.zeros(3, dtype=torch.int64), label_smoothing=1.5)
    with pytest.raises(ValueError):
        xt.cross_entropy(x, torch.zeros(3, dtype=torch.int64), temperature=0.0)
    meta = torch.empty(3, 4, device="meta")
    with pytest.raises(NotImplementedError, match="CPU"):
        xt.cross_entropy(meta, torch.zeros(3, dtype=torch.int64))
    with pytest.raises(NotImplementedError, match="CPU"):
        xt.binary_cross_entropy_with_logits(meta, meta)


def test_gradients_for_targets_or_weights_are_refused():
    x = torch.randn(3, 4, requires_grad=True)
    p = torch.softmax(torch.randn(3, 4), -1).requires_grad_()
    with pytest.raises(NotImplementedError, match="detach"):
        xt.cross_entropy(x, p)
    with pytest.raises(NotImplementedError, match="detach"):
        xt.cross_entropy(x, torch.zeros(3, dtype=torch.int64),
                         weight=torch.ones(4, requires_grad=True))
    with pytest.raises(NotImplementedError, match="detach"):
        xt.kl_div(x, p)


@pytest.mark.filterwarnings("ignore:size_average and reduce args:UserWarning")
def test_legacy_reduction_arguments_follow_torch():
    x = torch.randn(3, 4)
    t = torch.tensor([0, 1, 2])
    ref = torch.nn.functional.cross_entropy(x, t, size_average=False)
    assert torch.allclose(xt.cross_entropy(x, t, size_average=False), ref)


@pytest.mark.parametrize("name", ["cross_entropy", "binary_cross_entropy_with_logits", "kl_div"])
def test_signature_is_torchs_plus_keyword_only_extras(name):
    import inspect

    theirs = list(inspect.signature(getattr(torch.nn.functional, name)).parameters.values())
    ours = list(inspect.signature(getattr(xt, name)).parameters.values())
    assert [(p.name, p.kind, p.default) for p in ours[:len(theirs)]] == \
           [(p.name, p.kind, p.default) for p in theirs]
    assert all(p.kind == inspect.Parameter.KEYWORD_ONLY for p in ours[len(theirs):])
