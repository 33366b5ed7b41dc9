"""The evaluation transform on the device, as timm's: resize the short side to ``img_size / crop_pct`` with
PIL's own arithmetic (its bicubic weights in its 22-bit fixed point, rows then columns, each pass rounded and
clipped to 8 bits), centre crop, normalise. On the same images it gives timm's grey levels."""

from __future__ import annotations

import functools
import math

import torch

from .device_augment import MEAN, STD, normalize


def eval_size(height: int, width: int, img_size: int, crop_pct: float) -> tuple[int, int]:
    """The size timm's evaluation transform resizes an image to: short side ``floor(img_size / crop_pct)``, the long
    side in proportion (torchvision's Resize)."""
    short = math.floor(img_size / crop_pct)
    if height <= width:
        return (height, width) if height == short else (short, int(short * width / height))
    return (height, width) if width == short else (int(short * height / width), short)


PRECISION_BITS = 22  # PIL's fixed point for 8-bit resampling


@functools.lru_cache(maxsize=16)
def _pil_bicubic_weights(in_size: int, out_size: int) -> torch.Tensor:
    """PIL's bicubic resampling of one axis as a matrix [out, in] of its fixed-point weights (as float64, exact):
    the antialiased support, a = -0.5, weights normalised per output pixel and rounded to 22 bits, as Pillow's
    ``precompute_coeffs`` and ``normalize_coeffs_8bpc`` compute them."""
    def cubic(x: float) -> float:
        x = abs(x)
        if x < 1.0:
            return (1.5 * x - 2.5) * x * x + 1
        return (((x - 5) * x + 8) * x - 4) * -0.5 if x < 2.0 else 0.0

    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        lo, hi = max(0, int(center - support + 0.5)), min(in_size, int(center + support + 0.5))
        k = [cubic((x - center + 0.5) / filterscale) for x in range(lo, hi)]
        total = sum(k)
        for x, w in zip(range(lo, hi), k, strict=True):
            w = w / total if total else w
            weights[xx, x] = int(w * (1 << PRECISION_BITS) + (0.5 if w >= 0 else -0.5))
    return weights


def _pil_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """0-255 values [B, C, H, W] resized as PIL resizes 8-bit images (bicubic): rows first, each pass rounded
    (halves up) and clipped to 8 bits."""
    half, shift = float(1 << (PRECISION_BITS - 1)), float(1 << PRECISION_BITS)
    x = x.double()
    for axis, n in ((3, size[1]), (2, size[0])):
        if x.shape[axis] == n:
            continue
        w = _pil_bicubic_weights(x.shape[axis], n).to(x.device)
        x = (x @ w.T) if axis == 3 else (w @ x)
        x = torch.floor((x + half) / shift).clamp(0, 255)
    return x.float()


def eval_images(images: torch.Tensor, *, img_size: int, crop_pct: float = 1.0, mean: tuple[float, ...] = MEAN,
                std: tuple[float, ...] = STD) -> torch.Tensor:
    """timm's evaluation transform on uint8 [B, C, H, W] on the device -> normalised float [B, 3, S, S]: resize the
    short side to ``img_size / crop_pct`` as PIL does (``_pil_resize``: its weights and its 8-bit rounding between
    the two passes, so that sharp images ring as PIL's do), centre crop."""
    h, w = images.shape[-2:]
    nh, nw = eval_size(h, w, img_size, crop_pct)
    x = _pil_resize(images, (nh, nw)) if (nh, nw) != (h, w) else images.float()
    top, left = int(round((nh - img_size) / 2.0)), int(round((nw - img_size) / 2.0))
    return normalize(x[..., top:top + img_size, left:left + img_size], mean, std)
