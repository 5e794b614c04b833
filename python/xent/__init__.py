"""xent: cross-entropy, exact and at the speed of memory.

NumPy API (classes on the last axis, float32/float64):
    cross_entropy, binary_cross_entropy_with_logits, kl_div,
    softmax, log_softmax, logsumexp, entropy, perplexity
PyTorch drop-in (autograd, CPU tensors, also bfloat16/float16):
    import xent.torch   # xent.torch.cross_entropy, CrossEntropyLoss, ...

Errors from the library: ValueError (IndexError for an out-of-range class
index), with the C++ message naming the argument, row and value.
Warnings: DoubleSoftmaxWarning when logits look like probabilities.
"""

from . import _xent
from ._guard import DoubleSoftmaxWarning
from ._numpy_api import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    entropy,
    kl_div,
    log_softmax,
    logsumexp,
    perplexity,
    softmax,
)

__version__ = _xent.__version__

__all__ = [
    "DoubleSoftmaxWarning",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "entropy",
    "kl_div",
    "log_softmax",
    "logsumexp",
    "perplexity",
    "softmax",
]
