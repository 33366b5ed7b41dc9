"""The random parameters of the device augmentation, drawn by timm's rules for a whole batch at once on the
device with a ``torch.Generator``: RandomResizedCrop boxes, flips, RandAugment ops, magnitudes and signs,
random erasing boxes, and colour jitter factors and order. ``device_augment.DeviceAugment`` applies them.

Every parameter of a batch comes from one draw of uniforms (one launch on a GPU), a column range per parameter;
a Gaussian (RandAugment's magnitude noise) is the normal quantile of its uniform. The uniforms are then turned
into timm's parameters: the crop's and the erasing's boxes (the same rule with other constants) in one
computation."""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import torch

from .color_jitter import jitter_params

if TYPE_CHECKING:
    from .device_augment import Augmentation


@functools.lru_cache(maxsize=256)
def _constant(values: tuple[float, ...], shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``values`` as a float32 tensor of ``shape`` on ``device``, made once (a tensor made from host numbers on
    every batch would be a host-to-device copy)."""
    return torch.tensor(values, dtype=torch.float32).view(shape).to(device)


def _rule(area: float, scale, log_ratio, fit: tuple[int, int], bound: tuple[int, int]) -> tuple[float, ...]:
    """timm's box draw as numbers: 10 tries of an area in ``scale`` of ``area`` and a log-uniform aspect, the first
    whose (h, w) is at most ``fit`` kept, placed uniformly in (0..bound - h, 0..bound - w)."""
    return (scale[0], scale[1] - scale[0], area, log_ratio[0], log_ratio[1] - log_ratio[0], *fit, *bound)


def _boxes(rules: list[tuple[float, ...]], tries: torch.Tensor, corners: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes ``[K, 4, n]`` = (top, left, h, w) of ``K`` rules at once from the uniforms of their tries ``[n, K * 20]``
    (per rule: 10 areas, then 10 aspects) and of their positions ``[n, K * 2]``, and whether a try fitted ``[K, n]``
    (where none did: the first try's box)."""
    k, n, device = len(rules), tries.shape[0], tries.device
    columns = tuple(zip(*rules, strict=True))
    # the areas' and the log-aspects' uniforms both scaled and shifted, in one op each
    span = _constant(sum(zip(columns[1], columns[4], strict=True), ()), (k, 2, 1, 1), device)
    lo = _constant(sum(zip(columns[0], columns[3], strict=True), ()), (k, 2, 1, 1), device)
    area = _constant(columns[2], (k, 1, 1), device)
    fit = _constant(sum(zip(*columns[5:7], strict=True), ()), (k, 2, 1, 1), device)
    bound = _constant(sum(zip(*columns[7:9], strict=True), ()), (k, 2, 1), device)
    fraction, log_aspect = (tries.view(n, k, 2, 10).permute(1, 2, 0, 3) * span + lo).unbind(1)  # each [K, n, 10]
    corners = corners.view(n, k, 2).permute(1, 2, 0)  # [K, (top, left), n]
    target = fraction * area
    aspect = torch.exp(log_aspect)
    hw = torch.stack([target / aspect, target * aspect], 1).sqrt_().round_()  # [K, (h, w), n, tries]
    ok = (hw <= fit).all(1)
    first = ok.to(torch.int8).argmax(-1, keepdim=True)
    hw = hw.gather(3, first.unsqueeze(1).expand(-1, 2, -1, -1)).squeeze(3)
    upper = bound - hw  # like random.randint(0, upper)
    top_left = torch.floor(corners * (upper + 1)).minimum(upper)
    return torch.cat([top_left, hw], 1), ok.any(-1)


def _crop_rule(height: int, width: int, scale, ratio) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """RandomResizedCrop's ``_rule``, and its box after 10 misses: the central crop at the nearest allowed
    aspect, as (top, left, h, w)."""
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    fallback = (float((height - fh) // 2), float((width - fw) // 2), float(fh), float(fw))
    return _rule(height * width, scale, log_ratio, (height, width), (height, width)), fallback


def _crops(boxes: torch.Tensor, ok: torch.Tensor, fallback: tuple[float, ...]) -> torch.Tensor:
    return torch.where(ok, boxes, _constant(fallback, (4, 1), boxes.device)).t()


def draw_crops(n: int, height: int, width: int, scale, ratio, g: torch.Generator, device) -> torch.Tensor:
    """RandomResizedCrop boxes ``[n, 4]`` = (top, left, h, w), drawn as timm's ``get_params`` draws them."""
    rule, fallback = _crop_rule(height, width, scale, ratio)
    tries, corners = torch.rand((n, 22), generator=g, device=device).split([20, 2], 1)
    boxes, ok = _boxes([rule], tries, corners)
    return _crops(boxes[0], ok[0], fallback)


def _columns(a: Augmentation) -> dict[str, int]:
    """How many uniforms per sample each parameter takes, in the order they are drawn."""
    ra, boxes = a.rand_augment, 1 + (a.re_prob > 0)  # the crop, and the erasing where it is on
    layers = ra.layers if ra is not None else 0
    return {"tries": 20 * boxes, "corners": 2 * boxes, "flips": 2,
            "op": layers if ra is not None and ra.weights is None else 0, "rand_augment": 3 * layers,
            "erase": int(a.re_prob > 0), "jitter": 6 if a.color_jitter else 0}


def draw_params(augmentation: Augmentation, n: int, height: int, width: int, g: torch.Generator,
                device: torch.device) -> dict[str, torch.Tensor]:
    """Every random parameter of ``n`` samples: crop, flips, RandAugment ops/magnitudes/signs, erasing box, colour
    jitter factors and order."""
    a, ra = augmentation, augmentation.rand_augment
    widths = _columns(a)
    u = dict(zip(widths, torch.rand((n, sum(widths.values())), generator=g, device=device).split(
        list(widths.values()), 1), strict=True))
    rule, fallback = _crop_rule(height, width, a.scale, a.ratio)
    rules = [rule]
    flips = u["flips"] < _constant((a.hflip, a.vflip), (2,), device)
    p: dict[str, torch.Tensor] = {}
    p["hflip"], p["vflip"] = flips.unbind(1)
    if ra is not None:
        if ra.weights is None:  # timm: np.random.choice with replacement (u < 1: the product stays below the count)
            p["op"] = (u["op"] * len(ra.ops)).long().clamp_(max=len(ra.ops) - 1)
        else:  # timm: weighted choice without replacement
            w = torch.tensor(ra.weights, device=device).expand(n, -1)
            p["op"] = torch.multinomial(w, ra.layers, replacement=False, generator=g)
        # per layer: apply?, magnitude noise, sign (timm's _randomly_negate: negative when random() > 0.5)
        applied, noise, sign = u["rand_augment"].view(n, 3, ra.layers).unbind(1)
        p["apply"] = applied <= ra.prob
        if math.isinf(ra.magnitude_std):
            m = noise * ra.magnitude
        elif ra.magnitude_std > 0:  # (a uniform of exactly 0, once in 2^24, gives -inf: clamped to 0 below)
            m = torch.special.ndtri(noise).mul_(ra.magnitude_std).add_(ra.magnitude)
        else:
            m = torch.full((n, ra.layers), ra.magnitude, device=device)
        p["magnitude"] = m.clamp(0.0, ra.magnitude_max)
        p["sign"] = torch.where(sign > 0.5, _constant((-1.0,), (), device), _constant((1.0,), (), device))
    if a.re_prob > 0:
        s = a.img_size
        # timm's RandomErasing: 10 tries of an area in [0.02, 1/3] and a log-uniform aspect in [0.3, 1/0.3], the
        # first smaller than the image on both sides
        rules.append(_rule(s * s, (0.02, 1 / 3), (math.log(0.3), math.log(1 / 0.3)), (s - 1, s - 1), (s, s)))
    boxes, ok = (v.unbind(0) for v in _boxes(rules, u["tries"], u["corners"]))  # per rule
    p["crop"] = _crops(boxes[0], ok[0], fallback)
    if a.re_prob > 0:
        p["erase"] = (u["erase"].view(n) < a.re_prob) & ok[1]
        p["erase_box"] = boxes[1].t()
    if a.color_jitter:
        p.update(jitter_params(u["jitter"], a.color_jitter))
    return p
