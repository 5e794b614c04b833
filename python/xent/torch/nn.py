"""nn.Module forms of the xent.torch losses, with torch's constructor
arguments (the extras of the functional forms as keyword-only arguments)."""

from __future__ import annotations

import torch

from . import functional as F


class CrossEntropyLoss(torch.nn.Module):
    """torch.nn.CrossEntropyLoss on xent's fused kernel; see
    xent.torch.cross_entropy for the extras."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean", label_smoothing=0.0, *, z_loss=0.0, softcap=None,
                 temperature=1.0, smoothing_mode="uniform", focal_gamma=0.0,
                 inplace_backward=False):
        super().__init__()
        if size_average is not None or reduce is not None:
            reduction = torch.nn._reduction.legacy_get_string(size_average, reduce)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.temperature = temperature
        self.smoothing_mode = smoothing_mode
        self.focal_gamma = focal_gamma
        self.inplace_backward = inplace_backward

    def forward(self, input, target):
        return F.cross_entropy(
            input, target, weight=self.weight, ignore_index=self.ignore_index,
            reduction=self.reduction, label_smoothing=self.label_smoothing,
            z_loss=self.z_loss, softcap=self.softcap, temperature=self.temperature,
            smoothing_mode=self.smoothing_mode, focal_gamma=self.focal_gamma,
            inplace_backward=self.inplace_backward)

    def extra_repr(self):
        return (f"reduction={self.reduction!r}, ignore_index={self.ignore_index}, "
                f"label_smoothing={self.label_smoothing}")


class BCEWithLogitsLoss(torch.nn.Module):
    """torch.nn.BCEWithLogitsLoss on xent's fused kernel."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean",
                 pos_weight=None, *, inplace_backward=False):
        super().__init__()
        if size_average is not None or reduce is not None:
            reduction = torch.nn._reduction.legacy_get_string(size_average, reduce)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)
        self.reduction = reduction
        self.inplace_backward = inplace_backward

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(
            input, target, self.weight, reduction=self.reduction,
            pos_weight=self.pos_weight, inplace_backward=self.inplace_backward)


class KLDivLoss(torch.nn.Module):
    """torch.nn.KLDivLoss on xent's fused kernel."""

    def __init__(self, size_average=None, reduce=None, reduction="mean", log_target=False,
                 *, inplace_backward=False):
        super().__init__()
        if size_average is not None or reduce is not None:
            reduction = torch.nn._reduction.legacy_get_string(size_average, reduce)
        self.reduction = reduction
        self.log_target = log_target
        self.inplace_backward = inplace_backward

    def forward(self, input, target):
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target,
                        inplace_backward=self.inplace_backward)
