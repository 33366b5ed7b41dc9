"""Device augmentation: the training recipe run on whole batches on the training device, one set of random
parameters per sample, drawn by timm's rules.

    Augmentation    the per-sample augmentation of a run (crop, flips, RandAugment, erasing, mean/std), from
                    its settings
    draw_params     its random parameters for ``n`` samples, drawn on the device with a ``torch.Generator``
                    (``augment_draws``)
    DeviceAugment   applies them: crop + flips as PIL resizes (``resample``), RandAugment, normalisation, random
                    erasing; its constants are made once, on the device
    apply_params    the same, in one call

The same code runs on every device, with no value read back by the host: every choice is a per-sample tensor
and every op runs once per batch. RandAugment's colour ops are 8-bit lookup tables (one per sample, built from
its op, its argument and its image's histogram) applied in one gather; Color, Sharpness and the geometric ops
are one blend, one blend and one warp per layer, the identity for the samples that drew another op.

How this differs from timm's PIL recipe is listed in docs/training.md ("The memory input's augmentation").
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import TrainerError
from .augment_draws import draw_crops, draw_params  # noqa: F401 (where callers look for them)
from .color_jitter import apply_jitter, strength
from .resample import (
    columns_first,
    columns_first_when_taller,
    pil_resize,
    pil_resize_square,
    pil_weight_pair,
    pil_weights,
)
from .transforms import mean_std

MEAN = STD = (0.5, 0.5, 0.5)
FILL = 128  # RandAugment's fill for geometric ops at mean 0.5 (timm fills with the mean: img_mean)

# timm's level-to-argument rule of each RandAugment op, as data: with f = magnitude / 10,
# raw = f * mult (floored where ``whole``, times the random sign where ``signed``, at most ``cap``), and the
# argument is max(add + scale * raw, least).
#          (mult,  whole, signed, cap,   add, scale, least)
_NONE = (0.0, False, False, math.inf, 0.0, 1.0, -math.inf)
_LEVELS: dict[str, tuple] = {
    "AutoContrast": _NONE, "Equalize": _NONE, "Invert": _NONE,
    "Rotate": (30.0, False, True, math.inf, 0.0, 1.0, -math.inf),
    "ShearX": (0.3, False, True, math.inf, 0.0, 1.0, -math.inf),
    "ShearY": (0.3, False, True, math.inf, 0.0, 1.0, -math.inf),
    "TranslateXRel": (0.45, False, True, math.inf, 0.0, 1.0, -math.inf),
    "TranslateYRel": (0.45, False, True, math.inf, 0.0, 1.0, -math.inf),
    "Posterize": (4.0, True, False, math.inf, 0.0, 1.0, -math.inf),
    "PosterizeIncreasing": (4.0, True, False, math.inf, 4.0, -1.0, -math.inf),
    "Solarize": (256.0, True, False, 256.0, 0.0, 1.0, -math.inf),
    "SolarizeIncreasing": (256.0, True, False, 256.0, 256.0, -1.0, -math.inf),
    "SolarizeAdd": (110.0, True, False, 128.0, 0.0, 1.0, -math.inf),
    **{name: (1.8, False, False, math.inf, 0.1, 1.0, -math.inf) for name in ("Color", "Contrast", "Brightness",
                                                                            "Sharpness")},
    **{name + "Increasing": (0.9, False, True, math.inf, 1.0, 1.0, 0.1) for name in ("Color", "Contrast",
                                                                                     "Brightness", "Sharpness")},
}
# timm's RandAugment ops that device augmentation implements (the ``inc1`` set and the plain one).
OPS = tuple(_LEVELS)
GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")

# What each op does to a sample's pixels: a kind, the same for an op and its Increasing variant.
IDENTITY, AUTOCONTRAST, EQUALIZE, INVERT, POSTERIZE, SOLARIZE, SOLARIZE_ADD, BRIGHTNESS, CONTRAST, COLOR, \
    SHARPNESS, ROTATE, SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y = range(16)
_KINDS = {"AutoContrast": AUTOCONTRAST, "Equalize": EQUALIZE, "Invert": INVERT, "Posterize": POSTERIZE,
          "Solarize": SOLARIZE, "SolarizeAdd": SOLARIZE_ADD, "Brightness": BRIGHTNESS, "Contrast": CONTRAST,
          "Color": COLOR, "Sharpness": SHARPNESS, "Rotate": ROTATE, "ShearX": SHEAR_X, "ShearY": SHEAR_Y,
          "TranslateXRel": TRANSLATE_X, "TranslateYRel": TRANSLATE_Y}


def kind(name: str) -> int:
    return _KINDS[name.removesuffix("Increasing")]


@dataclass(frozen=True)
class RandAugmentSpec:
    """timm's RandAugment settings, read from the transform timm builds for a spec string."""

    ops: tuple[str, ...]
    layers: int
    prob: float
    magnitude: float
    magnitude_std: float
    magnitude_max: float
    weights: tuple[float, ...] | None = None

    @classmethod
    def parse(cls, spec: str) -> RandAugmentSpec:
        from timm.data.auto_augment import _LEVEL_DENOM, rand_augment_transform

        if not spec.startswith("rand"):
            raise TrainerError(f"--input memory supports RandAugment ('rand-...') only, not {spec!r}")
        try:
            ra = rand_augment_transform(spec, {"translate_const": 100, "img_mean": FILL})
        except (AssertionError, ValueError) as e:
            raise TrainerError(f"bad --auto-augment {spec!r}: {e}") from None
        names = tuple(op.name for op in ra.ops)
        unknown = [n for n in names if n not in OPS]
        if unknown:
            raise TrainerError(f"--input memory does not implement RandAugment op {unknown[0]}")
        op = ra.ops[0]
        weights = None if ra.choice_weights is None else tuple(float(w) for w in ra.choice_weights)
        return cls(names, ra.num_layers, op.prob, float(op.magnitude), float(op.magnitude_std),
                   float(op.magnitude_max or _LEVEL_DENOM), weights)


@dataclass(frozen=True)
class Augmentation:
    """The per-sample augmentation of a run, as the stream input's timm transform has it."""

    img_size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    vflip: float = 0.5
    rand_augment: RandAugmentSpec | None = None
    re_prob: float = 0.5
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD
    color_jitter: float | None = None  # as applied: None when RandAugment is on (color_jitter.strength)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Augmentation:
        spec = config.get("auto_augment")
        norm = mean_std(config)
        return cls(config["img_size"], tuple(config["scale"]), tuple(config["ratio"]), config["hflip"],
                   config["vflip"], RandAugmentSpec.parse(spec) if spec else None, config["re_prob"],
                   norm["mean"], norm["std"], strength(config.get("color_jitter"), spec))

    @property
    def fill(self) -> tuple[int, ...]:
        """RandAugment's fill of geometric ops per channel: the mean in 8-bit values, as timm's img_mean."""
        return tuple(min(255, round(255 * m)) for m in self.mean)


def _level_table(names) -> torch.Tensor:
    return torch.tensor([[float(v) for v in _LEVELS[name]] for name in names], dtype=torch.float32)


def _levels(table: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """The argument of each sample's op from its row of ``_LEVELS`` (``table`` ``[..., 7]``)."""
    mult, whole, signed, cap, add, scale, least = table.unbind(-1)
    raw = magnitude / 10.0 * mult
    raw = torch.where(whole > 0, torch.floor(raw), raw)
    raw = torch.where(signed > 0, raw * sign, raw).minimum(cap)
    return (add + scale * raw).maximum(least)


def level(name: str, magnitude: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """timm's level-to-argument rule of op ``name`` for magnitudes on timm's 0-10 scale (batched)."""
    return _levels(_level_table([name])[0].to(magnitude.device), magnitude, sign)


# ------------------------------------------------------------------------------------ applying the parameters


def _warp(x: torch.Tensor, matrix: torch.Tensor, out_hw: tuple[int, int], *, fill: float | torch.Tensor | None
          ) -> torch.Tensor:
    """``x`` [B, C, H, W] resampled at ``matrix`` [B, 2, 3] (output pixel -> input pixel, pixel-edge coordinates,
    as PIL's affine transform), bicubic; outside the image: ``fill``, or the nearest edge pixel if None."""
    b, _, h, w = x.shape
    oh, ow = out_hw
    # The same map between grid_sample's normalised coordinates (align_corners=False: n = 2 x / size - 1),
    # by arithmetic on the device (a tensor made from host numbers would cost a host-device sync).
    a, c, t = matrix[:, :, 0], matrix[:, :, 1], matrix[:, :, 2]
    rows = torch.stack([a * (ow / 2), c * (oh / 2), a * (ow / 2) + c * (oh / 2) + t], 2)  # from n_out to pixels_in
    theta = torch.stack([rows[:, 0] * (2 / w), rows[:, 1] * (2 / h)], 1)
    theta[:, :, 2] -= 1
    grid = F.affine_grid(theta, [b, 1, oh, ow], align_corners=False)
    if fill is None:
        return F.grid_sample(x, grid, mode="bicubic", padding_mode="border", align_corners=False)
    return F.grid_sample(x - fill, grid, mode="bicubic", padding_mode="zeros", align_corners=False) + fill


def _geometry(name: str, arg: torch.Tensor, size: int) -> torch.Tensor:
    """PIL's affine map (output pixel -> input pixel) of a RandAugment geometric op, per sample [B, 2, 3]."""
    k = torch.full_like(arg, kind(name))
    return _matrices(k, arg, size)


def _matrices(kinds: torch.Tensor, arg: torch.Tensor, size: int) -> torch.Tensor:
    """PIL's affine maps [B, 2, 3] of each sample's geometric op (the identity for any other kind): rotation by
    ``arg`` degrees counter-clockwise about the centre (``Image.rotate``), shear by ``arg``, translation by ``arg``
    of the size."""
    angle = torch.deg2rad(torch.where(kinds == ROTATE, -arg, 0.0))
    c, s, centre = torch.cos(angle), torch.sin(angle), size / 2
    shear_x = torch.where(kinds == SHEAR_X, arg, 0.0)
    shear_y = torch.where(kinds == SHEAR_Y, arg, 0.0)
    move_x = torch.where(kinds == TRANSLATE_X, arg * size, 0.0)
    move_y = torch.where(kinds == TRANSLATE_Y, arg * size, 0.0)
    # (only one of rotation, shear and translation is not the identity for a sample)
    row0 = torch.stack([c, s + shear_x, centre - c * centre - s * centre + move_x], 1)
    row1 = torch.stack([shear_y - s, c, centre + s * centre - c * centre + move_y], 1)
    return torch.stack([row0, row1], 1)


# The rows of ``_layer_terms``: what each sample's op does, per layer, before its image is seen.
_GAIN, _OFFSET, _MEAN_WEIGHT, _HALF, _AUTOCONTRAST, _SOLARIZE_AT, _RAISE_BELOW, _RAISE, _POSTERIZE_STEP, _EQUALIZE, \
    _COLOR, _SHARPNESS = range(12)


def _layer_terms(kinds: torch.Tensor, args: torch.Tensor) -> torch.Tensor:
    """The image-free parts of each sample's op ``[B, layers]`` as ``[B, layers, terms]`` (rows above): lookup
    table gain and offset (Brightness, Contrast, Invert), the weight of the image's mean grey (Contrast), the
    rounding (none for AutoContrast, which floors), flags, thresholds and steps, and the blend factors of Color
    and Sharpness (1 for the identity)."""
    def on(k: int, value, other) -> torch.Tensor:
        return torch.where(kinds == k, value, other)

    gain = torch.where((kinds == BRIGHTNESS) | (kinds == CONTRAST), args, on(INVERT, -1.0, 1.0))
    terms = [gain, on(INVERT, 255.0, 0.0), on(CONTRAST, 1 - args, 0.0), on(AUTOCONTRAST, 0.0, 0.5),
             on(AUTOCONTRAST, 1.0, 0.0), on(SOLARIZE, args, 256.0), on(SOLARIZE_ADD, 128.0, 0.0), args,
             on(POSTERIZE, torch.exp2(8 - args).clamp(min=1), 1.0), on(EQUALIZE, 1.0, 0.0), on(COLOR, args, 1.0),
             on(SHARPNESS, args, 1.0)]
    return torch.stack(terms, 2)


class DeviceAugment(torch.nn.Module):
    """An ``Augmentation`` on a device: uint8 ``[B, C, H, W]`` and ``draw_params``' parameters -> normalised float
    ``[B, 3, S, S]``: crop + flips, RandAugment, normalisation, random erasing. Its constants are buffers, made once."""

    def __init__(self, augmentation: Augmentation, device: torch.device | str = "cpu"):
        super().__init__()
        a = self.augmentation = augmentation
        s = a.img_size
        mean, std = torch.tensor(a.mean), torch.tensor(a.std)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("grid", torch.arange(s, dtype=torch.float32), persistent=False)
        self.register_buffer("values", torch.arange(256, dtype=torch.float32), persistent=False)
        self.register_buffer("one", torch.ones(1, 1, 1), persistent=False)
        ra = a.rand_augment
        self.uniform_fill = len(set(a.fill)) == 1
        self.uniform_norm = len(set(a.mean)) == len(set(a.std)) == 1
        self.when_taller = columns_first_when_taller()  # probed here: Pillow cannot run inside a compiled graph
        self.register_buffer("fill", torch.tensor(a.fill, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        if ra is not None:
            self.register_buffer("levels", _level_table(ra.ops), persistent=False)
            self.register_buffer("kinds", torch.tensor([kind(n) for n in ra.ops]), persistent=False)
            self.has = {kind(n) for n in ra.ops}
            # PIL's ImageFilter.SMOOTH (Sharpness's degenerate image): 3 x 3, centre 5, the rest 1, over 13
            smooth = torch.ones(3, 3)
            smooth[1, 1] = 5
            self.register_buffer("smooth", (smooth / 13).view(1, 1, 3, 3), persistent=False)
        self.to(device)

    def forward(self, images: torch.Tensor, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        a, s = self.augmentation, self.augmentation.img_size
        x = self.crop(images, p)
        if a.rand_augment is not None:
            if not self.uniform_fill:  # a fill per channel (ImageNet's mean): a gray image becomes timm's RGB image
                x = x.expand(-1, 3, -1, -1)
            x = self.rand_augment(x, p)
        elif a.color_jitter:
            x = apply_jitter(x, p["jitter"], p["jitter_order"], self._gray)
        # timm's ToTensor and Normalize; a gray image with the same mean and std for every channel is normalised
        # once, then seen as 3 channels
        if self.uniform_norm:
            x = (x / 255).sub_(a.mean[0]).div_(a.std[0]).expand(-1, 3, -1, -1)
        else:
            x = (x / 255).sub(self.mean).div_(self.std)
        if "erase" in p:
            top, left, h, w = (v.view(-1, 1, 1, 1) for v in p["erase_box"].unbind(1))
            rows, cols = self.grid.view(1, 1, s, 1), self.grid.view(1, 1, 1, s)
            inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
            inside = inside & p["erase"].view(-1, 1, 1, 1)
            x = torch.where(inside, torch.randn_like(x), x)  # timm's pixel mode: per-pixel, per-channel N(0, 1)
        return x

    def crop(self, images: torch.Tensor, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """RandomResizedCrop and the flips: each sample's box resized to the training size as PIL resizes it."""
        s, (h, w) = self.augmentation.img_size, images.shape[-2:]
        top, left, ch, cw = p["crop"].unbind(1)
        order = columns_first(ch, cw, s, s, when_taller=self.when_taller)
        if h == w:  # both axes' weights in one go, in the order the passes run (see pil_resize_square)
            box = torch.stack([top, ch, p["vflip"].to(top.dtype), left, cw, p["hflip"].to(top.dtype)])
            second, first = torch.where(order, box.roll(3, 0), box).view(2, 3, -1).unbind(0)
            start, length, flip = torch.cat([second, first], 1).unbind(0)
            high, low = (w.chunk(2) for w in pil_weight_pair(start, length, flip > 0, h, s))
            return pil_resize_square(images, (high[0], low[0]), (high[1], low[1]), order)
        wy, wx = pil_weights(top, ch, p["vflip"], h, s), pil_weights(left, cw, p["hflip"], w, s)
        return pil_resize(images, wy, wx, order)

    def rand_augment(self, x: torch.Tensor, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """RandAugment on 0-255 values, rounded to them after every op as PIL's 8-bit images are."""
        b, c, h, w = x.shape
        layers = self.augmentation.rand_augment.layers
        args = _levels(self.levels[p["op"]], p["magnitude"], p["sign"])  # [B, layers]
        kinds = torch.where(p["apply"], self.kinds[p["op"]], IDENTITY)
        if c == 1:  # colour of one channel is the identity, as in PIL
            kinds = torch.where(kinds == COLOR, IDENTITY, kinds)
        # Everything that does not depend on the image, for all layers at once: [layers, terms, B, 1, 1].
        terms = _layer_terms(kinds, args).permute(1, 2, 0).reshape(layers, -1, b, 1, 1)
        geometric = bool(self.has & {ROTATE, SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y})
        if geometric:
            matrices = _matrices(kinds.t().reshape(-1), args.t().reshape(-1), w).view(layers, b, 2, 3)
            fill = self.fill if not self.uniform_fill else float(self.augmentation.fill[0])
        for layer in range(layers):
            t = terms[layer]
            x = self._point_ops(x, t)
            if COLOR in self.has and c == 3:
                x = torch.lerp(self._gray(x), x, t[_COLOR].unsqueeze(1)).round_()
            if SHARPNESS in self.has:
                x = self._sharpness(x, t[_SHARPNESS])
            if geometric:
                x = _warp(x, matrices[layer], (h, w), fill=fill).clamp_(0, 255).round_()
        return x

    def _gray(self, x: torch.Tensor) -> torch.Tensor:
        """PIL's ``convert("L")`` of [B, 3, H, W]: ITU-R 601-2 luma in its 16-bit fixed point."""
        r, g, b = x.unbind(1)
        return torch.floor((r * 19595 + g * 38470 + b * 7471 + 32768) / 65536).unsqueeze(1)

    def _point_ops(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The ops that map each grey level to another (AutoContrast, Equalize, Invert, Posterize, Solarize,
        SolarizeAdd, Brightness, Contrast): one lookup table per sample and channel, applied in one gather.
        ``t``: the layer's ``_layer_terms`` ``[terms, B, 1, 1]``."""
        b, c, h, w = x.shape
        index = x.to(torch.int64, memory_format=torch.contiguous_format).view(b, c, h * w)
        hist = torch.zeros(b, c, 256, device=x.device).scatter_add_(2, index, self.one.expand(b, c, h * w))
        i = self.values
        seen = (hist > 0).to(torch.int8)
        # PIL's autocontrast: the darkest and brightest levels present
        lo = seen.argmax(2, keepdim=True).float()
        hi = seen.flip(2).argmax(2, keepdim=True).float().neg_().add_(255)
        if c == 1:  # Contrast's degenerate image: the mean grey, rounded (of the "L" image for colour)
            mean = (hist * i).sum(2, keepdim=True) / (h * w)
        else:
            mean = self._gray(x).mean((2, 3), keepdim=True).view(b, 1, 1)
        mean = mean.add_(0.5).floor_()
        # Brightness: a x; Contrast: mean + a (x - mean); Invert: 255 - x; AutoContrast: (x - lo) 255 / (hi - lo),
        # floored; anything else: x. The image-free parts (gain, offset, ...) come in ``t``.
        stretch = 255 / (hi - lo).clamp_(min=1)
        contrasted = (hi > lo) & (t[_AUTOCONTRAST] > 0)
        gain = torch.where(contrasted, stretch, t[_GAIN])
        offset = torch.where(contrasted, -lo * stretch, torch.addcmul(t[_OFFSET], mean, t[_MEAN_WEIGHT]))
        lut = (i * gain + offset + t[_HALF]).floor_()
        # Solarize: levels >= a inverted; SolarizeAdd: levels < 128 raised by a; Posterize: the top a bits.
        lut = torch.where(i >= t[_SOLARIZE_AT], 255 - lut, lut)
        lut = torch.where(i < t[_RAISE_BELOW], (i + t[_RAISE]).clamp_(max=255), lut)
        lut = lut.div_(t[_POSTERIZE_STEP]).floor_().mul_(t[_POSTERIZE_STEP])
        if EQUALIZE in self.has:
            lut = torch.where(t[_EQUALIZE] > 0, self._equalize(hist, hi), lut)
        return lut.clamp_(0, 255).gather(2, index).view(b, c, h, w)

    def _equalize(self, hist: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """PIL's ``ImageOps.equalize`` table per sample and channel, from the histogram ``[B, C, 256]``."""
        total = hist.sum(2, keepdim=True)
        step = torch.floor((total - hist.gather(2, hi.long())) / 255)
        before = hist.cumsum(2) - hist  # pixels below each level
        lut = torch.floor((torch.floor(step / 2) + before) / step.clamp(min=1))
        return torch.where(step > 0, lut, self.values)

    def _sharpness(self, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        """PIL's Sharpness: a blend with the image smoothed by ``ImageFilter.SMOOTH`` (its border kept)."""
        b, c, h, w = x.shape
        degenerate = x.clone()  # its border kept
        degenerate[..., 1:-1, 1:-1] = F.conv2d(x.reshape(b * c, 1, h, w), self.smooth).round_().view(b, c, h - 2, w - 2)
        return degenerate.lerp_(x, factor.view(-1, 1, 1, 1)).round_()


def apply_params(images: torch.Tensor, augmentation: Augmentation, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float [B, 3, S, S]: crop + flips, RandAugment, normalisation, random erasing."""
    return _device_augment(augmentation, images.device)(images, p)


@functools.lru_cache(maxsize=8)
def _device_augment(augmentation: Augmentation, device: torch.device) -> DeviceAugment:
    return DeviceAugment(augmentation, device)


@functools.lru_cache(maxsize=16)
def _normalisation(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device):
    """``mean`` and ``std`` as ``[1, 3, 1, 1]`` tensors on ``device``, made once."""
    return tuple(torch.tensor(v).view(1, 3, 1, 1).to(device) for v in (mean, std))


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """0-255 values [B, C, H, W] (one channel or three) -> normalised float [B, 3, H, W], as timm's ToTensor and
    Normalize compute it."""
    m, s = _normalisation(tuple(mean), tuple(std), x.device)
    return (x.expand(-1, 3, -1, -1) / 255).sub_(m).div_(s)
