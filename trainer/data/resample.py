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
import math

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


def _kernel(length: torch.Tensor, flip: torch.Tensor | None, in_size: int, out_size: int, dtype: torch.dtype
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The non-zero part of ``pil_weights`` for boxes at 0: ``(pixels, weights)``, both ``[B, out_size, taps]``,
    the pixels in the box's coordinates."""
    device = length.device
    length = length.to(dtype).view(-1, 1, 1)
    out = torch.arange(out_size, device=device, dtype=dtype).view(1, -1, 1)
    if flip is not None:
        out = torch.where(flip.view(-1, 1, 1), out_size - 1 - out, out)
    scale = length / out_size
    support = scale.clamp(min=1.0)  # the kernel's width in input pixels: widened when shrinking
    # Pillow: the centre of output pixel o in the box is (o + 0.5) * scale; input pixel i of the box weighs
    # cubic((i + 0.5 - centre) / support), over the box's pixels only. The kernel is 0 beyond 2 supports of the
    # centre: only a window of ``taps`` pixels is computed, then placed in the matrix.
    centre = (out + 0.5) * scale
    taps = math.ceil(4 * max(in_size / out_size, 1.0)) + 2
    first = torch.floor(centre - 2 * support)
    pixel = first + torch.arange(taps, device=device, dtype=dtype)  # in the box's coordinates
    k = _cubic((pixel + 0.5 - centre) / support)
    k = torch.where((pixel >= 0) & (pixel < length), k, 0.0)
    k = k / k.sum(-1, keepdim=True)
    k = torch.round(k * _ONE) / _ONE  # the fixed point (exact in float32: 22 bits after the point, |k| < 2)
    return pixel, k


def _window(start: torch.Tensor, length: torch.Tensor, flip: torch.Tensor | None, in_size: int, out_size: int,
            dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The non-zero part of ``pil_weights``: ``(columns, weights)``, both ``[B, out_size, taps]``."""
    pixel, k = _kernel(length, flip, in_size, out_size, dtype)
    # Outside the box the weights are 0: their clamped columns add nothing.
    return (pixel + start.to(dtype).view(-1, 1, 1)).clamp_(0, in_size - 1).to(torch.int64), k


def _placed(columns: torch.Tensor, k: torch.Tensor, in_size: int) -> torch.Tensor:
    return torch.zeros(*k.shape[:-1], in_size, device=k.device, dtype=k.dtype).scatter_add_(-1, columns, k)


def pil_weights(start: torch.Tensor, length: torch.Tensor, flip: torch.Tensor | None, in_size: int, out_size: int,
                *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Weights ``[B, out_size, in_size]`` that resample pixels ``[start, start + length)`` of an axis of ``in_size``
    pixels to ``out_size`` pixels as Pillow does, read backwards where ``flip``; ``start``, ``length`` (whole
    numbers) and ``flip`` are ``[B]`` tensors on the device."""
    columns, k = _window(start, length, flip, in_size, out_size, dtype)
    return _placed(columns, k, in_size)


def pil_window_table(in_size: int, out_size: int, device: torch.device | str) -> torch.Tensor:
    """Every box's weights, made once for ``pil_weight_pair``: ``[(in_size + 1) * 2, out_size, taps, 3]``, row
    ``length * 2 + flip``: the (high, low) pair that ``_split_for_tf32`` makes of the float32 weights of a box of
    ``length`` pixels at 0 (read backwards where ``flip``), and the pixels they weigh (row 0: no box, unused)."""
    length = torch.arange(in_size + 1, device=device).repeat_interleave(2)
    flip = torch.arange(2, device=device).repeat(in_size + 1) > 0
    pixel, k = _kernel(length, flip, in_size, out_size, torch.float32)
    return torch.stack([*_split_for_tf32(k), pixel], -1)


def pil_weight_pair(table: torch.Tensor, start: torch.Tensor, length: torch.Tensor, flip: torch.Tensor,
                    in_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``pil_weights`` (float32) as the pair ``(high, low)`` that ``_split_for_tf32`` makes of it, read from
    ``pil_window_table``'s ``table``, each matrix written once; ``start``, ``length`` and ``flip`` (0 or 1) are
    tensors of one shape (``[B]``, or ``[passes, B]``), the matrices ``[..., out_size, in_size]``."""
    high, low, pixel = table[torch.add(flip, length, alpha=2).long()].unbind(-1)  # row length * 2 + flip
    # Outside the box the weights are 0: their clamped columns add nothing.
    columns = (pixel + start.view(*start.shape, 1, 1)).clamp_(0, in_size - 1).to(torch.int64)
    return _placed(columns, high, in_size), _placed(columns, low, in_size)


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
    # where the height shrinks by more than 0 and by more than twice as many pixels as the width:
    # height > out_height + max(0, 2 (width - out_width))
    bound = width * 2 + (out_height - 2 * out_width)
    return height > (bound.clamp(min=out_height) if isinstance(bound, torch.Tensor) else max(bound, out_height))


Weights = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # a matrix, or its (high, low) pair


def _pair(w: Weights) -> tuple[torch.Tensor, torch.Tensor]:
    return w if isinstance(w, tuple) else _split_for_tf32(w)


def _rows_first(x: torch.Tensor, wy: Weights, wx: Weights) -> torch.Tensor:
    b, c, h, w = x.shape
    high, low = (w.transpose(-1, -2) if w.shape[0] == b else w.transpose(-1, -2).expand(b, -1, -1) for w in _pair(wx))
    rows = x.reshape(b, c * h, w)  # the channels' rows as one matrix per sample
    x = _round8(torch.baddbmm(torch.bmm(rows, low), rows, high))
    high, low = (_per_channel(w, b, c) for w in _pair(wy))
    columns = x.view(b * c, h, -1)  # each channel's columns as one matrix
    return _round8(torch.baddbmm(torch.bmm(low, columns), high, columns).view(b, c, -1, columns.shape[-1]))


def _per_channel(w: torch.Tensor, b: int, c: int) -> torch.Tensor:
    """Weights ``[B|1, T, H]`` as one matrix per sample and channel ``[B * C, T, H]``."""
    return w if w.shape[0] == b and c == 1 else w.unsqueeze(1).expand(b, c, -1, -1).reshape(b * c, *w.shape[1:])


def pil_resize(x: torch.Tensor, wy: torch.Tensor, wx: torch.Tensor,
               columns_first: torch.Tensor | bool = False) -> torch.Tensor:
    """0-255 values ``[B, C, H, W]`` resampled with ``wx`` ``[B|1, S, W]`` along rows and ``wy`` ``[B|1, T, H]`` along
    columns, the rows first except where ``columns_first`` (a ``[B]`` tensor, or one choice for all), each pass
    rounded to 8 bits: ``[B, C, T, S]`` in ``wx``'s dtype."""
    if not isinstance(columns_first, bool) and x.shape[-1] == x.shape[-2] and wx.shape[1] == wy.shape[1]:
        flip = columns_first.view(-1, 1, 1)
        return pil_resize_square(x, torch.where(flip, wx, wy), torch.where(flip, wy, wx), columns_first)
    x = x.to(wx.dtype)
    if isinstance(columns_first, bool):
        if not columns_first:
            return _rows_first(x, wy, wx)
        return _rows_first(x.transpose(-1, -2), wx, wy).transpose(-1, -2)
    flip = columns_first.view(-1, 1, 1)
    by_columns = _rows_first(x.transpose(-1, -2), wx, wy).transpose(-1, -2)
    return torch.where(flip.unsqueeze(1), by_columns, _rows_first(x, wy, wx))


def pil_resize_square(x: torch.Tensor, w_second: Weights, w_first: Weights,
                      columns_first: torch.Tensor) -> torch.Tensor:
    """``pil_resize`` of square images to a square size, with the weights given in the order the passes run:
    columns first is rows first of the transposed image, so for those samples ``w_first`` holds the vertical
    axis' weights and ``w_second`` the horizontal one's (``pil_weights`` makes them so from swapped boxes, with no
    copy of the matrices); each a matrix or its ``pil_weight_pair``. Only the 8-bit images of those samples are
    transposed, then the results."""
    flip = columns_first.view(-1, 1, 1, 1)
    x = torch.where(flip, x.transpose(-1, -2), x).to(torch.float32)
    out = _rows_first(x, w_second, w_first)
    return torch.where(flip, out.transpose(-1, -2), out)
