"""The double-softmax guard: fires on probabilities, silent on logits."""

import warnings

import numpy as np
import pytest
import torch

import xent
import xent.torch as xt


def _no_warning():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("error", xent.DoubleSoftmaxWarning)
    return ctx


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_fires_on_softmax_outputs(dtype):
    logits = torch.randn(64, 100)
    probs = torch.softmax(logits, -1).to(dtype)
    t = torch.randint(0, 100, (64,))
    with pytest.warns(xent.DoubleSoftmaxWarning, match="look like probabilities"):
        xt.cross_entropy(probs, t)
    with pytest.warns(xent.DoubleSoftmaxWarning):
        xt.CrossEntropyLoss()(probs, t)


def test_fires_in_numpy_api_and_k_dim_input():
    p = xent.softmax(np.random.default_rng(0).standard_normal((8, 10)))
    with pytest.warns(xent.DoubleSoftmaxWarning):
        xent.cross_entropy(p, np.zeros(8, dtype=np.int64))
    probs = torch.softmax(torch.randn(2, 5, 3, 3), dim=1)  # classes on dim 1
    with pytest.warns(xent.DoubleSoftmaxWarning):
        xt.cross_entropy(probs, torch.zeros(2, 3, 3, dtype=torch.int64))


@pytest.mark.parametrize("make", [
    lambda: torch.randn(64, 100) * 3,                  # ordinary logits
    lambda: torch.rand(64, 100),                       # in [0, 1], sums ≠ 1
    lambda: torch.zeros(64, 100),                      # untrained, all zero
    lambda: torch.full((64, 2), 0.5) + torch.tensor([0.0, 1e-2]),  # sums 1.01
    lambda: torch.cat([torch.softmax(torch.randn(32, 10), -1), torch.randn(32, 10)]),
    lambda: torch.ones(8, 1),                          # K = 1: [1.0] is not a mistake
])
def test_silent_on_logits(make):
    x = make()
    ctx = _no_warning()
    try:
        xt.cross_entropy(x, torch.zeros(x.shape[0], dtype=torch.int64))
        xent.cross_entropy(x.numpy(), np.zeros(x.shape[0], dtype=np.int64))
    finally:
        ctx.__exit__(None, None, None)


def test_users_can_turn_it_into_an_error_or_silence_it():
    probs = torch.softmax(torch.randn(4, 6), -1)
    t = torch.zeros(4, dtype=torch.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", xent.DoubleSoftmaxWarning)
        with pytest.raises(xent.DoubleSoftmaxWarning):
            xt.cross_entropy(probs, t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=xent.DoubleSoftmaxWarning)
        xt.cross_entropy(probs, t)
    assert issubclass(xent.DoubleSoftmaxWarning, UserWarning)
