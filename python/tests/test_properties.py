"""Properties of the NumPy cross_entropy on generated inputs (Hypothesis):
invariance to shifting a row's logits, a non-negative loss, gradient rows
that sum to zero, and agreement with the row function of core.h."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import xent

finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def batches(draw):
    rows = draw(st.integers(1, 6))
    classes = draw(st.integers(1, 40))
    logits = draw(hnp.arrays(np.float64, (rows, classes), elements=finite))
    target = draw(hnp.arrays(np.int64, (rows,), elements=st.integers(0, classes - 1)))
    return logits, target


@settings(max_examples=150, deadline=None)
@given(batches(), st.floats(-1e3, 1e3), st.sampled_from([0.0, 0.1, 0.5]))
def test_shift_invariance_and_gradient_rows(batch, shift, eps):
    logits, target = batch
    loss, grad = xent.cross_entropy(logits, target, reduction="sum", label_smoothing=eps,
                                    return_grad=True)
    shifted = xent.cross_entropy(logits + shift, target, reduction="sum", label_smoothing=eps)
    assert loss >= 0.0
    # Shifting by s changes each logit by at most |s|·2^-52 relative.
    tol = 1e-12 * (1 + abs(shift) + np.abs(logits).max()) * logits.size
    assert abs(shifted - loss) <= tol
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-13 * logits.shape[1])


@settings(max_examples=150, deadline=None)
@given(batches())
def test_rows_match_the_row_function(batch):
    logits, target = batch
    rows = xent.cross_entropy(logits, target, reduction="none")
    # −log softmax(z)_t from the row functions: lse − z_t.
    expected = xent.logsumexp(logits) - logits[np.arange(len(target)), target]
    np.testing.assert_allclose(rows, expected, rtol=2e-7, atol=1e-12)  # float32 rows
