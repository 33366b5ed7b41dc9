"""The evaluation transform on the device, as timm's: resize the short side to ``img_size / crop_pct`` with
PIL's own arithmetic (its bicubic weights in its 22-bit fixed point, rows then columns, each pass rounded and
clipped to 8 bits), centre crop, normalise. On the same images it gives timm's grey levels."""

from __future__ import annotations

import functools
import math

import torch

from .device_augment import MEAN, STD, normalize
from .resample import columns_first, pil_resize, pil_weights


def eval_size(height: int, width: int, img_size: int, crop_pct: float) -> tuple[int, int]:
    """The size timm's evaluation transform resizes an image to: short side ``floor(img_size / crop_pct)``, the long
    side in proportion (torchvision's Resize)."""
    short = math.floor(img_size / crop_pct)
    if height <= width:
        return (height, width) if height == short else (short, int(short * width / height))
    return (height, width) if width == short else (int(short * height / width), short)


@functools.lru_cache(maxsize=16)
def _weights(in_size: int, out_size: int, device: torch.device) -> torch.Tensor:
    """Pillow's resize of a whole axis as a ``[1, out, in]`` matrix, in float64 (exact: every product and sum of
    8-bit values and 22-bit weights), made once per size on the device."""
    zero = torch.zeros(1, device=device)
    return pil_weights(zero, zero + in_size, None, in_size, out_size, dtype=torch.float64)


def eval_images(images: torch.Tensor, *, img_size: int, crop_pct: float = 1.0, mean: tuple[float, ...] = MEAN,
                std: tuple[float, ...] = STD) -> torch.Tensor:
    """timm's evaluation transform on uint8 [B, C, H, W] on the device -> normalised float [B, 3, S, S]: resize the
    short side to ``img_size / crop_pct`` as PIL does (``resample.pil_resize``: its weights and its 8-bit rounding
    between the two passes, so that sharp images ring as PIL's do), centre crop."""
    h, w = images.shape[-2:]
    nh, nw = eval_size(h, w, img_size, crop_pct)
    if (nh, nw) != (h, w):
        device = images.device
        x = pil_resize(images, _weights(h, nh, device), _weights(w, nw, device), columns_first(h, w, nh, nw)).float()
    else:
        x = images.float()
    top, left = int(round((nh - img_size) / 2.0)), int(round((nw - img_size) / 2.0))
    return normalize(x[..., top:top + img_size, left:left + img_size], mean, std)
