"""Shared helpers of the xent Python tests.

Oracles: torch.nn.functional in float64 on the exact (upcast) input values,
closed forms in float64/longdouble NumPy, finite differences
(torch.autograd.gradcheck), and properties; never the function under test
itself (test_properties also compares the batch kernel with the separately
tested row functions of core.h)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread for torch and xent (xent.torch follows
    torch.get_num_threads()): on a busy 2-core machine, OpenMP teams of 2
    spin against other processes and small calls slow down 10-50x. The
    tests that are about threads use `threads` below."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def threads():
    """Call threads(n) to run the rest of the test with n intra-op threads."""
    return torch.set_num_threads


def assert_close(actual, expected, rtol, atol_rel=None, what=""):
    """|actual − expected| ≤ rtol·|expected| + atol_rel·max|expected|,
    elementwise, in float64; NaN must match NaN."""
    a = torch.as_tensor(actual).detach().to(torch.float64)
    e = torch.as_tensor(expected).detach().to(torch.float64)
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    scale = e[torch.isfinite(e)].abs().max().item() if torch.isfinite(e).any() else 0.0
    atol = (atol_rel if atol_rel is not None else rtol) * scale
    torch.testing.assert_close(a, e, rtol=rtol, atol=atol, equal_nan=True, msg=lambda m: f"{what}: {m}")
