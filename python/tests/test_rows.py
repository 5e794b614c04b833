"""NumPy API row functions against float64/longdouble closed forms, and the
zero-copy view rules."""

import numpy as np
import pytest

import xent
from xent import _views


def _ref_lse(x):
    x = np.asarray(x, dtype=np.longdouble)
    m = np.max(x, axis=-1, keepdims=True)
    return (m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True)))


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 2e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (2, 3, 50), (1000,), (4, 4096)])
def test_softmax_family_matches_closed_form(dtype, rtol, shape):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    lse = _ref_lse(x)
    np.testing.assert_allclose(xent.logsumexp(x), lse[..., 0].astype(np.float64), rtol=rtol)
    np.testing.assert_allclose(xent.log_softmax(x), (x - lse).astype(np.float64),
                               rtol=rtol, atol=rtol * float(np.abs(lse).max()))
    np.testing.assert_allclose(xent.softmax(x), np.exp(x - lse).astype(np.float64),
                               rtol=rtol, atol=1e-300)
    assert xent.softmax(x).dtype == dtype and xent.softmax(x).shape == x.shape


def test_extreme_and_masked_rows():
    x = np.array([[1e30, -1e30, 0.0], [-np.inf, 0.0, 1.0], [88.7, 88.7, -np.inf]], np.float32)
    np.testing.assert_allclose(xent.logsumexp(x), _ref_lse(x)[:, 0].astype(np.float64), rtol=1e-6)
    p = xent.softmax(x)
    assert p[1, 0] == 0.0 and p[2, 2] == 0.0
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("unit,div", [("nats", 1.0), ("bits", np.log(2.0))])
def test_entropy_and_perplexity(unit, div):
    rng = np.random.default_rng(3)
    p = rng.random((5, 11))
    p[0, :5] = 0.0  # 0·log 0 = 0
    p /= p.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ref = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=-1) / div
    np.testing.assert_allclose(xent.entropy(p, unit=unit), ref, rtol=1e-13)
    h = np.array([0.0, 0.5, 3.0])
    base = 2.0 if unit == "bits" else np.e
    np.testing.assert_allclose(xent.perplexity(h, unit=unit), base ** h, rtol=1e-14)


def test_strided_inputs_are_read_in_place_and_correct():
    rng = np.random.default_rng(1)
    big = rng.standard_normal((8, 40))
    cases = {
        "column slice": big[:, :30],
        "every other row": big[::2],
        "3-d column slice": big.reshape(2, 4, 40)[:, :, 5:25],
    }
    for what, a in cases.items():
        owner, view = _views.numpy_rows(a, what)
        assert owner is a, f"{what} was copied"
        assert np.shares_memory(owner, big)
        np.testing.assert_allclose(xent.logsumexp(a), _ref_lse(a)[..., 0].astype(np.float64),
                                   rtol=1e-13, err_msg=what)
    # Not expressible as rows × contiguous columns: copied, still correct.
    for what, a in {"transposed": big.T, "column stride 2": big[:, ::2],
                    "rows with gaps": big.reshape(2, 4, 40)[:, 1:3, 5:25]}.items():
        owner, _ = _views.numpy_rows(a, what)
        assert owner is not a
        np.testing.assert_allclose(xent.logsumexp(a), _ref_lse(a)[..., 0].astype(np.float64),
                                   rtol=1e-13, err_msg=what)


def test_row_errors_name_the_row_and_map_to_value_error():
    x = np.zeros((3, 4))
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"nan.*row 2"):
        xent.softmax(x)
    with pytest.raises(ValueError, match="every logit is -inf"):
        xent.softmax(np.full((1, 3), -np.inf))
    with pytest.raises(ValueError):
        xent.entropy(np.array([0.5, 0.6]))  # not a distribution
    with pytest.raises(ValueError):
        xent.logsumexp(np.zeros((2, 0)))  # K = 0
    with pytest.raises(TypeError, match="not supported"):
        xent.softmax(np.zeros((2, 2), dtype=np.float16))
    with pytest.raises(ValueError, match="unit"):
        xent.entropy(np.array([1.0]), unit="hartleys")
