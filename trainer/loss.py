"""The training loss: timm's Mixup/CutMix (which also smooths the labels) and the matching cross-entropy."""

from __future__ import annotations

from typing import Any

import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import nn


class ChunkedMixup(Mixup):
    """timm's Mixup/CutMix applied to every ``chunk`` samples of a batch on its own: one lambda and one
    Mixup-or-CutMix choice per chunk, samples paired within it. The reference mixes each GPU's batch
    (32 of the 256) on its own; ``chunk`` 0 mixes the whole batch at once."""

    def __init__(self, *, chunk: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        self.chunk = chunk

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mix = super().__call__
        if not self.chunk or len(x) <= self.chunk:
            return mix(x, target)
        parts = [mix(xs, ts) for xs, ts in zip(x.split(self.chunk), target.split(self.chunk), strict=True)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def create_criterion(config: dict[str, Any], num_classes: int) -> tuple[ChunkedMixup | None, nn.Module]:
    """timm's Mixup/CutMix (which also smooths the labels) and the matching training loss.

    With mixing on, the targets are soft and the loss is soft-target cross-entropy: over the
    perturbation classes this is the paper's LPCE loss.
    """
    if config["mixup"] > 0 or config["cutmix"] > 0:
        mixup = ChunkedMixup(chunk=config.get("mix_chunk", 0), mixup_alpha=config["mixup"],
                             cutmix_alpha=config["cutmix"], prob=1.0, switch_prob=config["mixup_switch"], mode="batch",
                             label_smoothing=config["smoothing"], num_classes=num_classes)
        return mixup, SoftTargetCrossEntropy()
    if config["smoothing"] > 0:
        return None, LabelSmoothingCrossEntropy(smoothing=config["smoothing"])
    return None, nn.CrossEntropyLoss()
