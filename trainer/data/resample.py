"""PIL's bicubic resize of 8-bit images, batched on the device: a box of each image (its own box per sample) to
one output size, as ``Image.resize`` computes it after ``crop`` (torchvision's ``resized_crop``, timm's
RandomResizedCrop, and timm's evaluation resize).

Pillow resamples in two passes, each with the cubic kernel (a = -0.5) widened by the scale when shrinking
(antialiasing), weights normalised per output pixel and rounded to 22-bit fixed point, each pass's result
rounded (halves up) and clipped to 8 bits. It runs the rows first, except (in recent releases) where the height
shrinks by more than twice as many pixels as the width: then the columns first. Here one pass is a batched
matrix product with a weight matrix ``[B, out, in]`` that holds every sample's box, flip and weights, and the
order is chosen per sample by the same rule, so that nothing is decided on the host.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

PRECISION_BITS = 22  # Pillow's fixed point for 8-bit resampling
_ONE = float(1 << PRECISION_BITS)
_TF32_DROPPED_BITS = 13  # a float32 mantissa has 23 bits, TF32 keeps 10


def _cubic(t: torch.Tensor) -> torch.Tensor:
    """Pillow's bicubic kernel (a = -0.5) at ``t``."""
    t = t.abs()
    near = (1.5 * t - 2.5) * t * t + 1
    far = ((-0.5 * t + 2.5) * t - 4) * t + 2
    return torch.where(t < 1, near, torch.where(t < 2, far, 0.0))


def pil_weights(start: torch.Tensor, length: torch.Tensor, flip: torch.Tensor | None, in_size: int, out_size: int,
                *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Weights ``[B, out_size, in_size]`` that resample pixels ``[start, start + length)`` of an axis of ``in_size``
    pixels to ``out_size`` pixels as Pillow does, read backwards where ``flip``; ``start``, ``length`` (whole
    numbers) and ``flip`` are ``[B]`` tensors on the device."""
    device = start.device
    start, length = start.to(dtype).view(-1, 1, 1), length.to(dtype).view(-1, 1, 1)
    out = torch.arange(out_size, device=device, dtype=dtype).view(1, -1, 1)
    if flip is not None:
        out = torch.where(flip.view(-1, 1, 1), out_size - 1 - out, out)
    scale = length / out_size
    support = scale.clamp(min=1.0)  # the kernel's width in input pixels: widened when shrinking
    pixel = torch.arange(in_size, device=device, dtype=dtype).view(1, 1, -1)
    # Pillow: the centre of output pixel o in the box is (o + 0.5) * scale; input pixel i weighs cubic((i + 0.5 -
    # centre) / support), over the box's pixels only.
    k = _cubic((pixel - start + 0.5 - (out + 0.5) * scale) / support)
    k = torch.where((pixel >= start) & (pixel < start + length), k, 0.0)
    k = k / k.sum(-1, keepdim=True)
    return torch.round(k * _ONE) / _ONE  # the fixed point (exact in float32: 22 bits after the point, |k| < 2)


def _split_for_tf32(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``w = high + low`` with ``high`` exact in TF32 and ``low`` small: a float32 matrix product of 8-bit values
    with both parts keeps float32 precision even where TF32 matrix products are allowed (the model's)."""
    if w.dtype != torch.float32:
        return w, torch.zeros_like(w)
    high = (w.view(torch.int32) & -(1 << _TF32_DROPPED_BITS)).view(torch.float32)
    return high, w - high


def _round8(x: torch.Tensor) -> torch.Tensor:
    """Pillow's end of a pass: round halves up, clip to 8 bits."""
    return torch.floor(x + 0.5).clamp_(0, 255)


@functools.cache
def columns_first_when_taller() -> bool:
    """Whether the installed Pillow resamples the columns first where the height shrinks by more than twice as
    many pixels as the width (found by resizing a small image both ways)."""
    from PIL import Image

    image = Image.fromarray((np.random.default_rng(0).random((40, 12)) * 255).astype(np.uint8))
    both = np.asarray(image.resize((10, 10), Image.Resampling.BICUBIC))
    columns = image.resize((12, 10), Image.Resampling.BICUBIC).resize((10, 10), Image.Resampling.BICUBIC)
    return bool(np.array_equal(both, np.asarray(columns)))


def columns_first(height: torch.Tensor | int, width: torch.Tensor | int, out_height: int, out_width: int, *,
                  when_taller: bool | None = None):
    """Pillow's choice of pass order for a ``height`` x ``width`` box resized to ``out_height`` x ``out_width``
    (tensors per sample, or numbers): True where it resamples the columns first. ``when_taller``: the installed
    Pillow's rule (``columns_first_when_taller()``), given by callers that run inside a compiled graph."""
    if not (columns_first_when_taller() if when_taller is None else when_taller):
        return torch.zeros_like(height, dtype=torch.bool) if isinstance(height, torch.Tensor) else False
    shrink = height - out_height
    return (shrink > 0) & (shrink > (width - out_width) * 2)


def _rows_first(x: torch.Tensor, wy: torch.Tensor, wx: torch.Tensor) -> torch.Tensor:
    high, low = _split_for_tf32(wx.unsqueeze(1).transpose(-1, -2))
    x = _round8(torch.matmul(x, high).add_(torch.matmul(x, low)))
    high, low = _split_for_tf32(wy.unsqueeze(1))
    return _round8(torch.matmul(high, x).add_(torch.matmul(low, x)))


def pil_resize(x: torch.Tensor, wy: torch.Tensor, wx: torch.Tensor,
               columns_first: torch.Tensor | bool = False) -> torch.Tensor:
    """0-255 values ``[B, C, H, W]`` resampled with ``wx`` ``[B|1, S, W]`` along rows and ``wy`` ``[B|1, T, H]`` along
    columns, the rows first except where ``columns_first`` (a ``[B]`` tensor, or one choice for all), each pass
    rounded to 8 bits: ``[B, C, T, S]`` in ``wx``'s dtype."""
    x = x.to(wx.dtype)
    if isinstance(columns_first, bool):
        if not columns_first:
            return _rows_first(x, wy, wx)
        return _rows_first(x.transpose(-1, -2), wx, wy).transpose(-1, -2)
    flip = columns_first.view(-1, 1, 1)
    if x.shape[-1] == x.shape[-2] and wx.shape[1] == wy.shape[1]:
        # Columns first is rows first of the transposed image: transpose the samples that need it, once.
        x = torch.where(flip.unsqueeze(1), x.transpose(-1, -2), x)
        out = _rows_first(x, torch.where(flip, wx, wy), torch.where(flip, wy, wx))
        return torch.where(flip.unsqueeze(1), out.transpose(-1, -2), out)
    by_columns = _rows_first(x.transpose(-1, -2), wx, wy).transpose(-1, -2)
    return torch.where(flip.unsqueeze(1), by_columns, _rows_first(x, wy, wx))
