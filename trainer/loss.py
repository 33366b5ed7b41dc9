"""The training loss: Mixup/CutMix as timm draws and applies them (which also smooths the labels), and the
matching cross-entropy.

Mixing draws its random numbers on the training device, as tensors (``Mixing.draw``), and applies them with
arithmetic only (``Mixing.apply``): the same code on every device, no value read back by the host, and a step
that ``torch.compile`` takes whole. timm's ``Mixup`` draws on the host with numpy and slices with Python numbers;
the distributions here are its own (tests compare them).
"""

from __future__ import annotations

from typing import Any

import torch
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import nn


class Mixing(nn.Module):
    """timm's ``Mixup`` in batch mode with ``prob`` 1 and ``correct_lam``: for every ``chunk`` samples (0: the
    whole batch) one draw of Mixup (lambda ~ Beta(mixup, mixup)) or, with probability ``switch``, CutMix (lambda
    ~ Beta(cutmix, cutmix), a box of side sqrt(1 - lambda) pasted from the partner, lambda corrected to the
    box's area), samples paired with the chunk read backwards; targets one-hot with ``smoothing``, mixed with
    the same lambda. The reference mixes each GPU's batch (32 of the 256) on its own."""

    def __init__(self, *, mixup: float, cutmix: float, switch: float, smoothing: float, num_classes: int,
                 chunk: int = 0):
        super().__init__()
        self.mixup, self.cutmix, self.switch, self.smoothing = mixup, cutmix, switch, smoothing
        self.num_classes, self.chunk = num_classes, chunk

    def chunks(self, batch: int) -> int:
        return -(-batch // self.chunk) if self.chunk and batch > self.chunk else 1

    def draw(self, batch: int, size: int, device: torch.device) -> dict[str, torch.Tensor]:
        """Each chunk's lambda, CutMix choice and box (top, bottom, left, right) in images of ``size`` x ``size``,
        drawn on ``device``."""
        n, s = self.chunks(batch), size
        u = torch.rand(3, n, device=device)
        if self.mixup > 0 and self.cutmix > 0:
            cut = u[0] < self.switch
        else:
            cut = torch.full((n,), self.cutmix > 0, device=device)
        alpha = torch.where(cut, self.cutmix, self.mixup).expand(2, n)
        gamma = torch._standard_gamma(alpha.contiguous())  # Beta(a, a) = G1 / (G1 + G2)
        lam = gamma[0] / (gamma[0] + gamma[1])
        # timm's rand_bbox: the box's half sides int(size x sqrt(1 - lambda)) // 2 about a centre U{0..size-1}
        half = torch.floor(torch.floor(s * torch.sqrt(1 - lam)) / 2)
        centre = torch.floor(u[1:] * s)
        low, high = (centre - half).clamp(0, s), (centre + half).clamp(0, s)
        area = (high[0] - low[0]) * (high[1] - low[1])
        lam = torch.where(cut, 1 - area / (s * s), lam)
        return {"lam": lam, "cut": cut, "box": torch.stack([low[0], high[0], low[1], high[1]], 1)}

    def partner(self, batch: int, device: torch.device) -> torch.Tensor:
        """The sample each one is mixed with: its chunk read backwards (timm's ``flip(0)`` per chunk)."""
        i = torch.arange(batch, device=device)
        size = self.chunk if self.chunk and batch > self.chunk else batch
        start = i // size * size
        length = (batch - start).clamp(max=size)
        return start + length - 1 - (i - start)

    def apply(self, x: torch.Tensor, target: torch.Tensor, p: dict[str, torch.Tensor]
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` [B, C, S, S] mixed and the soft targets [B, classes], with the drawn ``p``."""
        b = x.shape[0]
        size = self.chunk if self.chunk and b > self.chunk else b
        of = torch.arange(b, device=x.device) // size  # each sample's chunk
        partner = self.partner(b, x.device)
        lam, cut, box = p["lam"][of], p["cut"][of], p["box"][of]
        rows = torch.arange(x.shape[-2], device=x.device).view(1, -1, 1)
        cols = torch.arange(x.shape[-1], device=x.device).view(1, 1, -1)
        top, bottom, left, right = (v.view(-1, 1, 1) for v in box.unbind(1))
        pasted = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
        # The weight of the sample's own pixel: lambda (Mixup), or 0 inside the box and 1 outside (CutMix)
        weight = torch.where(cut.view(-1, 1, 1), (~pasted).to(x.dtype), lam.view(-1, 1, 1)).unsqueeze(1)
        mixed = torch.lerp(x[partner], x, weight.to(x.dtype))
        off = self.smoothing / self.num_classes
        y = torch.full((b, self.num_classes), off, device=x.device).scatter_(1, target.view(-1, 1),
                                                                            1 - self.smoothing + off)
        return mixed, torch.lerp(y[partner], y, lam.view(-1, 1))

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw and apply in one call."""
        return self.apply(x, target, self.draw(x.shape[0], x.shape[-1], x.device))


def create_criterion(config: dict[str, Any], num_classes: int) -> tuple[Mixing | None, nn.Module]:
    """Mixup/CutMix (which also smooths the labels) and the matching training loss.

    With mixing on, the targets are soft and the loss is soft-target cross-entropy: over the
    perturbation classes this is the paper's LPCE loss.
    """
    if config["mixup"] > 0 or config["cutmix"] > 0:
        mixing = Mixing(mixup=config["mixup"], cutmix=config["cutmix"], switch=config["mixup_switch"],
                        smoothing=config["smoothing"], num_classes=num_classes, chunk=config.get("mix_chunk", 0))
        return mixing, SoftTargetCrossEntropy()
    if config["smoothing"] > 0:
        return None, LabelSmoothingCrossEntropy(smoothing=config["smoothing"])
    return None, nn.CrossEntropyLoss()
