"""The random parameters of the device augmentation, drawn by timm's rules for a whole batch at once on the
device with a ``torch.Generator``: RandomResizedCrop boxes, flips, RandAugment ops, magnitudes and signs,
random erasing boxes, and colour jitter factors and order. ``device_augment.DeviceAugment`` applies them."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .color_jitter import draw_jitter

if TYPE_CHECKING:
    from .device_augment import Augmentation


def _uniform(shape, lo, hi, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=g, device=device) * (hi - lo) + lo


def _randint(shape, upper: torch.Tensor, g: torch.Generator, device) -> torch.Tensor:
    """Integers uniform in [0, upper] (inclusive, like ``random.randint(0, upper)``), per element."""
    return torch.floor(torch.rand(shape, generator=g, device=device) * (upper + 1)).clamp(max=upper)


def _boxes(n: int, area: float, scale, log_ratio, fits, g: torch.Generator, device):
    """timm's box draw, batched: 10 tries of (area, log-uniform aspect); per sample the first that ``fits``."""
    target = _uniform((n, 10), *scale, g, device) * area
    aspect = torch.exp(_uniform((n, 10), *log_ratio, g, device))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = fits(w, h)
    first = ok.to(torch.int8).argmax(1, keepdim=True)
    return w.gather(1, first)[:, 0], h.gather(1, first)[:, 0], ok.any(1)


def draw_crops(n: int, height: int, width: int, scale, ratio, g: torch.Generator, device) -> torch.Tensor:
    """RandomResizedCrop boxes ``[n, 4]`` = (top, left, h, w), drawn as timm's ``get_params`` draws them."""
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    w, h, ok = _boxes(n, height * width, scale, log_ratio, lambda w, h: (w <= width) & (h <= height), g, device)
    # timm's fallback after 10 misses: the central crop at the nearest allowed aspect.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    w, h = torch.where(ok, w, float(fw)), torch.where(ok, h, float(fh))
    top = torch.where(ok, _randint((n,), height - h, g, device), float((height - fh) // 2))
    left = torch.where(ok, _randint((n,), width - w, g, device), float((width - fw) // 2))
    return torch.stack([top, left, h, w], 1)


def draw_params(augmentation: Augmentation, n: int, height: int, width: int, g: torch.Generator,
                device: torch.device) -> dict[str, torch.Tensor]:
    """Every random parameter of ``n`` samples: crop, flips, RandAugment ops/magnitudes/signs, erasing box, colour
    jitter factors and order."""
    a = augmentation
    p: dict[str, torch.Tensor] = {"crop": draw_crops(n, height, width, a.scale, a.ratio, g, device)}
    flips = torch.rand((n, 2), generator=g, device=device)
    p["hflip"], p["vflip"] = flips[:, 0] < a.hflip, flips[:, 1] < a.vflip
    ra = a.rand_augment
    if ra is not None:
        shape = (n, ra.layers)
        if ra.weights is None:  # timm: np.random.choice with replacement
            p["op"] = torch.randint(len(ra.ops), shape, generator=g, device=device)
        else:  # timm: weighted choice without replacement
            w = torch.tensor(ra.weights, device=device).expand(n, -1)
            p["op"] = torch.multinomial(w, ra.layers, replacement=False, generator=g)
        # per layer: apply?, magnitude noise, sign (timm's _randomly_negate: negative when random() > 0.5)
        u = torch.rand((3, *shape), generator=g, device=device)
        p["apply"] = u[0] <= ra.prob
        if math.isinf(ra.magnitude_std):
            m = u[1] * ra.magnitude
        elif ra.magnitude_std > 0:
            m = ra.magnitude + ra.magnitude_std * torch.randn(shape, generator=g, device=device)
        else:
            m = torch.full(shape, ra.magnitude, device=device)
        p["magnitude"] = m.clamp(0.0, ra.magnitude_max)
        p["sign"] = torch.where(u[2] > 0.5, -1.0, 1.0)
    if a.re_prob > 0:
        s = a.img_size
        erase = torch.rand(n, generator=g, device=device) < a.re_prob
        log_aspect = (math.log(0.3), math.log(1 / 0.3))
        w, h, ok = _boxes(n, s * s, (0.02, 1 / 3), log_aspect, lambda w, h: (w < s) & (h < s), g, device)
        corner = torch.rand((n, 2), generator=g, device=device)
        top = torch.floor(corner[:, 0] * (s - h + 1)).clamp(max=s - h)
        left = torch.floor(corner[:, 1] * (s - w + 1)).clamp(max=s - w)
        p["erase"] = erase & ok
        p["erase_box"] = torch.stack([top, left, h, w], 1)
    if a.color_jitter:
        p.update(draw_jitter(n, a.color_jitter, g, device))
    return p
