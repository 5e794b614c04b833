"""xent.torch: drop-in PyTorch losses on xent's fused CPU kernels.

    import xent.torch as xt
    loss = xt.cross_entropy(logits, target)          # as F.cross_entropy
    loss_fn = xt.CrossEntropyLoss(label_smoothing=0.1, z_loss=1e-4)

Same arguments and results as torch.nn.functional's cross_entropy,
binary_cross_entropy_with_logits and kl_div, with autograd; extras are
keyword-only (z_loss, softcap, temperature, smoothing_mode, focal_gamma,
inplace_backward). See xent.torch.functional for the differences from torch.
"""

from .functional import binary_cross_entropy_with_logits, cross_entropy, kl_div
from .linear import linear_cross_entropy
from .nn import BCEWithLogitsLoss, CrossEntropyLoss, KLDivLoss

__all__ = [
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "KLDivLoss",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "kl_div",
    "linear_cross_entropy",
]
