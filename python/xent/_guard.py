"""The double-softmax guard.

Passing probabilities (the output of a softmax) where logits are expected is
the most common cross-entropy bug: the loss still decreases, only slower,
because softmax(softmax(z)) is nearly uniform. The probe (in C++, reading the
first, middle and last rows only) asks whether those rows all lie in [0, 1]
and sum to 1; real logits essentially never do. On a hit it warns with
DoubleSoftmaxWarning, a UserWarning subclass, so the usual `warnings`
machinery applies: shown once per call site by default, silenced with
``warnings.filterwarnings("ignore", category=xent.DoubleSoftmaxWarning)``, or
turned into an exception with ``"error"``.
"""

from __future__ import annotations

import warnings

from . import _xent


class DoubleSoftmaxWarning(UserWarning):
    """Logits passed to a cross-entropy look like probabilities."""


def check_logits(view, fn_name, stacklevel):
    """Warn if the rows of `view` (a _xent.MatrixView) look like softmax
    outputs. `stacklevel` counts from the caller of this function."""
    if _xent.looks_like_probabilities(view):
        warnings.warn(
            f"{fn_name}: the logits look like probabilities (sampled rows lie in "
            "[0, 1] and sum to 1). Cross-entropy applies its own softmax, so pass "
            "the raw scores, not softmax outputs.",
            DoubleSoftmaxWarning, stacklevel=stacklevel + 1)
