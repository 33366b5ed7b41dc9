"""Colour jitter as timm applies it: torchvision's ``ColorJitter(j, j, j)`` (brightness, contrast and saturation
factors each uniform in [max(0, 1 - j), 1 + j], the three applied in a random order), and only when RandAugment
is off (timm 0.4.12's ``transforms_imagenet_train``; timm 1.0 keeps the rule for ``rand-`` specs).

    strength        the jitter a run's settings give: None when off (not set, 0, or RandAugment on)
    jitter_params   the factors and order of ``n`` samples, from uniforms drawn on the device
    apply_jitter    the jitter on whole batches of 0-255 levels, as PIL computes each op

Each op is PIL's ``Image.blend(degenerate, image, factor)``, which works in float32 and truncates: Brightness
blends with black, Contrast with the mean grey of the image at that point (rounded, of its "L" conversion),
Saturation with the image's "L" conversion (the identity for one channel). On one channel the first two are
point ops: their lookup tables compose through the image's histogram, so one gather applies all three.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# torchvision's op ids, the order ``jitter_params`` gives (its fourth, hue, is off in timm's jitter).
BRIGHTNESS, CONTRAST, SATURATION = range(3)


def strength(color_jitter: float | None, auto_augment: str | None) -> float | None:
    """The jitter applied: ``color_jitter`` unless it is off (None or 0) or RandAugment is on."""
    return float(color_jitter) if color_jitter and not auto_augment else None


def jitter_params(uniforms: torch.Tensor, strength: float) -> dict[str, torch.Tensor]:
    """``jitter``: the factors ``[n, 3]`` (brightness, contrast, saturation); ``jitter_order``: the op ids ``[n, 3]``
    in the order they apply, a uniform permutation (torchvision's ``randperm`` with hue left out); both from
    ``uniforms`` ``[n, 6]``, drawn with the batch's other parameters."""
    lo = max(0.0, 1 - strength)
    factors, keys = uniforms.view(-1, 2, 3).unbind(1)
    return {"jitter": factors * (1 + strength - lo) + lo, "jitter_order": keys.argsort(1)}


def _blend(degenerate: torch.Tensor, image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ``Image.blend(degenerate, image, factor)`` of 8-bit levels: float32, truncated, clipped."""
    return (degenerate + factor * (image - degenerate)).floor_().clamp_(0, 255)


def _rounded_mean(total: torch.Tensor, count: int) -> torch.Tensor:
    """``int(total / count + 0.5)`` as PIL's Contrast takes it, in integers (exact at any image size)."""
    return torch.div(2 * total + count, 2 * count, rounding_mode="floor").float()


def apply_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor,
                 gray: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``x``: whole 0-255 levels ``[B, C, H, W]`` (C 1 or 3) -> the jittered levels; ``gray``: PIL's "L" conversion
    of ``[B, 3, H, W]``."""
    b, c, h, w = x.shape
    if c == 1:
        return _one_channel(x, factors, order)
    for k in range(3):
        op = order[:, k:k + 1]
        factor = factors.gather(1, op).view(b, 1, 1, 1)
        op = op.view(b, 1, 1, 1)
        luma = gray(x)
        mean = _rounded_mean(luma.to(torch.int64).sum((2, 3), keepdim=True), h * w)
        degenerate = torch.where(op == SATURATION, luma, torch.where(op == CONTRAST, mean, 0.0))
        x = _blend(degenerate, x, factor)
    return x


def _one_channel(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Brightness and Contrast as one composed lookup table per sample; the mean grey after the ops before
    Contrast comes from the histogram of the input through the table so far."""
    b, _, h, w = x.shape
    index = x.to(torch.int64, memory_format=torch.contiguous_format).view(b, h * w)
    ones = torch.ones(1, 1, dtype=torch.int64, device=x.device).expand(b, h * w)
    hist = torch.zeros(b, 256, dtype=torch.int64, device=x.device).scatter_add_(1, index, ones)
    lut = torch.arange(256, dtype=torch.float32, device=x.device).expand(b, 256)
    for k in range(3):
        op = order[:, k:k + 1]
        factor = torch.where(op == SATURATION, 1.0, factors.gather(1, op))  # one channel: Color is the identity
        mean = _rounded_mean((hist * lut.to(torch.int64)).sum(1, keepdim=True), h * w)
        lut = _blend(torch.where(op == CONTRAST, mean, 0.0), lut, factor)
    return lut.gather(1, index).view(b, 1, h, w)
