"""Device augmentation: the training recipe run on whole batches on the training device, one set of random
parameters per sample, drawn by timm's rules.

    Augmentation    the per-sample augmentation of a run (crop, flips, RandAugment, erasing, mean/std), from
                    its settings
    draw_params     its random parameters for ``n`` samples, drawn on the device with a ``torch.Generator``
                    (``augment_draws``)
    DeviceAugment   applies them: crop + flips as PIL resizes (``resample``), RandAugment (its ops:
                    ``rand_augment``) or colour jitter (``color_jitter``), normalisation, random erasing; its
                    constants are made once, on the device
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

from .color_jitter import apply_jitter, strength
from .rand_augment import (
    AUTOCONTRAST,
    BRIGHTNESS,
    COLOR,
    CONTRAST,
    EQUALIZE,
    IDENTITY,
    INVERT,
    LEVELS,
    NO_LEVEL,
    POSTERIZE,
    ROTATE,
    SHARPNESS,
    SHEAR_X,
    SHEAR_Y,
    SOLARIZE,
    SOLARIZE_ADD,
    TRANSLATE_X,
    TRANSLATE_Y,
    RandAugmentSpec,
    kind,
    level_args,
    theta,
    warp,
)
from .resample import (
    columns_first,
    columns_first_when_taller,
    pil_resize,
    pil_resize_square,
    pil_weight_pair,
    pil_weights,
    pil_window_table,
)
from .transforms import mean_std

MEAN = STD = (0.5, 0.5, 0.5)
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


# The columns of ``_TERMS``: what each sample's op does, per layer, before its image is seen, as
# ``constant + slope * argument`` per kind of op. The lookup table of an op that does not look at the image is
# floor(level * GAIN + OFFSET) (OFFSET: 0.5 rounds the product, 0 for AutoContrast's floor, 255.5 for Invert),
# levels >= SOLARIZE_AT inverted, levels < RAISE_BELOW raised by RAISE, then the low POSTERIZE_DROP bits dropped.
# Contrast: mean + CONTRAST_GAIN (level - mean), with MEAN_WEIGHT = 1 - its argument. BLEND: the factor of Color
# and Sharpness (1: the identity). RADIANS, SHEAR_X/Y, SHIFT_X/Y: the geometric ops' map (rand_augment.theta):
# rotation, shears, and the third column of the map in normalised coordinates, which is the shear, or twice the
# translation over the size. IS_CONTRAST, IS_COLOR: 1 for Contrast (whose table needs the image's mean) and
# Color (which blends with its grey image). EQUALIZE_ABOVE, AUTOCONTRAST_ABOVE: 0 for Equalize and AutoContrast,
# infinite for the other ops: Equalize's step and AutoContrast's spread (hi - lo) of an image must exceed it, so that
# one comparison holds both the op's choice and PIL's condition for changing the image.
_COLUMNS = ("GAIN", "OFFSET", "SOLARIZE_AT", "RAISE_BELOW", "RAISE", "POSTERIZE_DROP", "CONTRAST_GAIN",
            "MEAN_WEIGHT", "BLEND", "RADIANS", "SHEAR_X", "SHEAR_Y", "SHIFT_X", "SHIFT_Y", "AUTOCONTRAST_ABOVE",
            "IS_CONTRAST", "EQUALIZE_ABOVE", "IS_COLOR")
_IDENTITY_TERMS = {"GAIN": 1.0, "OFFSET": 0.5, "SOLARIZE_AT": 256.0, "RAISE": "arg", "BLEND": 1.0,
                   "AUTOCONTRAST_ABOVE": math.inf, "EQUALIZE_ABOVE": math.inf}
_KIND_TERMS = {
    IDENTITY: {}, AUTOCONTRAST: {"OFFSET": 0.0, "AUTOCONTRAST_ABOVE": 0.0}, EQUALIZE: {"EQUALIZE_ABOVE": 0.0},
    INVERT: {"GAIN": -1.0, "OFFSET": 255.5}, POSTERIZE: {"POSTERIZE_DROP": "8-arg"}, SOLARIZE: {"SOLARIZE_AT": "arg"},
    SOLARIZE_ADD: {"RAISE_BELOW": 128.0}, BRIGHTNESS: {"GAIN": "arg"},
    CONTRAST: {"GAIN": "arg", "CONTRAST_GAIN": "arg", "MEAN_WEIGHT": "1-arg", "IS_CONTRAST": 1.0},
    COLOR: {"BLEND": "arg", "IS_COLOR": 1.0}, SHARPNESS: {"BLEND": "arg"}, ROTATE: {"RADIANS": "-radians"},
    SHEAR_X: {"SHEAR_X": "arg", "SHIFT_X": "arg"}, SHEAR_Y: {"SHEAR_Y": "arg", "SHIFT_Y": "arg"},
    TRANSLATE_X: {"SHIFT_X": "2arg"}, TRANSLATE_Y: {"SHIFT_Y": "2arg"}}
_AS_LINE = {"arg": (0.0, 1.0), "2arg": (0.0, 2.0), "1-arg": (1.0, -1.0), "8-arg": (8.0, -1.0),
            "-radians": (0.0, -math.pi / 180)}
(_GAIN, _OFFSET, _SOLARIZE_AT, _RAISE_BELOW, _RAISE, _POSTERIZE_DROP, _CONTRAST_GAIN, _MEAN_WEIGHT, _BLEND,
 _RADIANS, _SHEAR_X, _SHEAR_Y, _SHIFT_X, _SHIFT_Y, _AUTOCONTRAST_ABOVE, _IS_CONTRAST, _EQUALIZE_ABOVE,
 _IS_COLOR) = range(len(_COLUMNS))


def _kind_terms(k: int) -> list[tuple[float, float]]:
    """(constant, slope) of every column for kind ``k``."""
    values = {**_IDENTITY_TERMS, **_KIND_TERMS[k]}
    return [_AS_LINE[v] if isinstance(v, str) else (v, 0.0) for v in (values.get(c, 0.0) for c in _COLUMNS)]


def geometry(name: str, arg: torch.Tensor) -> torch.Tensor:
    """``theta`` of geometric op ``name`` at its arguments ``arg`` [B] (degrees; shear; translation over size),
    from the op table's columns as ``DeviceAugment`` makes them."""
    return theta(*(constant + slope * arg for constant, slope in _kind_terms(kind(name))[_RADIANS:_SHIFT_Y + 1]))


def _op_table(names, gray: bool) -> torch.Tensor:
    """One row per op, then one for no op: its ``LEVELS`` row, then every column's constants, then slopes.
    ``gray``: Color is the identity (as in PIL for a one-channel image)."""
    rows = []
    for levels, k in [(LEVELS[n], kind(n)) for n in names] + [(NO_LEVEL, IDENTITY)]:
        terms = _kind_terms(IDENTITY if gray and k == COLOR else k)
        rows.append([float(v) for v in levels] + [c for c, _ in terms] + [s for _, s in terms])
    return torch.tensor(rows, dtype=torch.float32)


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
        self.register_buffer("one", torch.ones(1, 1, 1, 1), persistent=False)
        ra = a.rand_augment
        self.uniform_fill = len(set(a.fill)) == 1
        self.uniform_norm = len(set(a.mean)) == len(set(a.std)) == 1
        self.when_taller = columns_first_when_taller()  # probed here: Pillow cannot run inside a compiled graph
        self.window_tables: dict[int, torch.Tensor] = {}  # per held size: the resize's weights (pil_window_table)
        self.register_buffer("fill", torch.tensor(a.fill, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        # The grey image of Color, Contrast and the colour jitter: PIL's convert("L"), ITU-R 601-2 luma in its
        # 16-bit fixed point
        self.register_buffer("luma", torch.tensor([19595.0, 38470.0, 7471.0]).view(1, 3, 1, 1), persistent=False)
        if ra is not None:
            self.register_buffer("ops_gray", _op_table(ra.ops, gray=True), persistent=False)
            self.register_buffer("ops_colour", _op_table(ra.ops, gray=False), persistent=False)
            self.register_buffer("no_op", torch.tensor(len(ra.ops)), persistent=False)
            self.has = {kind(n) for n in ra.ops}
            # PIL's ImageFilter.SMOOTH (Sharpness's degenerate image): 3 x 3, centre 5, the rest 1, over 13
            smooth = torch.ones(3, 3)
            smooth[1, 1] = 5
            self.register_buffer("smooth", (smooth / 13).view(1, 1, 3, 3), persistent=False)
            border = torch.ones(s, s, dtype=torch.bool)  # the pixels that SMOOTH keeps
            border[1:-1, 1:-1] = False
            self.register_buffer("border", border, persistent=False)
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
            # the rows and the columns inside each box [B, 2, S]: between (top, left) and (top + h, left + w)
            first, size = p["erase_box"].view(-1, 2, 2, 1).unbind(1)
            within = (self.grid >= first) & (self.grid < first + size) & p["erase"].view(-1, 1, 1)
            rows, cols = within.unbind(1)
            inside = rows.view(-1, 1, s, 1) & cols.view(-1, 1, 1, s)
            x = torch.where(inside, torch.randn_like(x), x)  # timm's pixel mode: per-pixel, per-channel N(0, 1)
        return x

    def crop(self, images: torch.Tensor, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """RandomResizedCrop and the flips: each sample's box resized to the training size as PIL resizes it."""
        s, (h, w) = self.augmentation.img_size, images.shape[-2:]
        top, left, ch, cw = p["crop"].unbind(1)
        order = columns_first(ch, cw, s, s, when_taller=self.when_taller)
        if h == w:  # both axes' weights in one go, in the order the passes run (see pil_resize_square)
            box = torch.stack([top, ch, p["vflip"], left, cw, p["hflip"]]).view(2, 3, -1)  # per axis, the flips 0/1
            start, length, flip = torch.where(order, box.flip(0), box).unbind(1)  # each [pass, B]
            high, low = (w.unbind(0) for w in pil_weight_pair(self._window_table(h), start, length, flip, h))
            return pil_resize_square(images, (high[0], low[0]), (high[1], low[1]), order)
        wy, wx = pil_weights(top, ch, p["vflip"], h, s), pil_weights(left, cw, p["hflip"], w, s)
        return pil_resize(images, wy, wx, order)

    def _window_table(self, size: int) -> torch.Tensor:
        """``pil_window_table`` of images held at ``size`` px, made on the first batch and kept (made in the graph
        when compiling, where it is fused)."""
        if torch.compiler.is_compiling():
            return pil_window_table(size, self.augmentation.img_size, self.values.device)
        if size not in self.window_tables:
            self.window_tables[size] = pil_window_table(size, self.augmentation.img_size, self.values.device)
        return self.window_tables[size]

    def rand_augment(self, x: torch.Tensor, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """RandAugment on 0-255 values, rounded to them after every op as PIL's 8-bit images are."""
        b, c = x.shape[:2]
        layers = self.augmentation.rand_augment.layers
        # Everything that does not depend on the image, for all layers at once, from one row per sample and layer
        # (the last row, no op, for the layers not applied).
        table = self.ops_gray if c == 1 else self.ops_colour
        levels, constant, slope = table[torch.where(p["apply"], p["op"], self.no_op)].split(
            [7, len(_COLUMNS), len(_COLUMNS)], -1)
        terms = torch.addcmul(constant, slope, level_args(levels, p["magnitude"], p["sign"]).unsqueeze(-1))
        terms = terms.permute(1, 2, 0)  # [layers, columns, B]
        columns = terms.view(layers, len(_COLUMNS), b, 1, 1, 1).unbind(1)  # each [layers, B, 1, 1, 1]
        static, contrast = self._static_tables(columns)
        # each layer's columns and their flags, each [B, 1, 1, 1]: cells[layer * columns + column]
        cells = terms.reshape(layers * len(_COLUMNS), b, 1, 1, 1)
        cells, flag_cells = cells.unbind(0), (cells > 0).unbind(0)
        per_layer = zip(static.unbind(0), contrast.unbind(0), strict=True)
        geometric = bool(self.has & {ROTATE, SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y})
        if geometric:
            thetas = theta(*columns[_RADIANS:_SHIFT_Y + 1]).view(layers, b, 2, 3).unbind(0)
            fill = self.fill if not self.uniform_fill else float(self.augmentation.fill[0])
        for layer, (static_lut, contrast_lut) in enumerate(per_layer):
            t, flags = (v[layer * len(_COLUMNS):(layer + 1) * len(_COLUMNS)] for v in (cells, flag_cells))
            # the grey image of colour (Contrast's mean, Color's blend): made once, before the point ops, which
            # keep the image of the samples that drew Color
            gray = self._gray(x) if c == 3 and self.has & {CONTRAST, COLOR} else None
            x = self._point_ops(x, t, flags, static_lut, contrast_lut, gray)
            if SHARPNESS in self.has or (COLOR in self.has and c == 3):
                x = self._blend(x, t, flags, gray)
            if geometric:
                x = warp(x, thetas[layer], fill=fill).clamp_(0, 255).round_()
        return x

    def _static_tables(self, columns: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per layer and sample ``[layers, B, 1, 1, 256]``: the lookup table of the ops that do not look at the
        image (Invert, Posterize, Solarize, SolarizeAdd, Brightness; the identity for the others, which the
        image-dependent ones replace), and Contrast's gain times each level."""
        i = self.values
        lut = (i * columns[_GAIN] + columns[_OFFSET]).floor_()
        # Solarize: levels >= a inverted; SolarizeAdd: levels < 128 raised by a; Posterize: the low 8 - a bits dropped.
        lut = torch.where(i >= columns[_SOLARIZE_AT], 255 - lut, lut)
        # (above 255 where raised: clipped with the rest in _point_ops; Posterize is the identity for these samples)
        lut = torch.where(i < columns[_RAISE_BELOW], i + columns[_RAISE], lut)
        step = torch.exp2(columns[_POSTERIZE_DROP]).clamp_(min=1)
        return lut.sub_(torch.fmod(lut, step)), i * columns[_CONTRAST_GAIN]

    def _point_ops(self, x: torch.Tensor, t, flags, static: torch.Tensor, contrast: torch.Tensor,
                   gray: torch.Tensor | None) -> torch.Tensor:
        """The ops that map each grey level to another: one lookup table per sample and channel, applied in one
        gather. The image-free ones come made (``static``); AutoContrast, Contrast and Equalize are made here from
        the histogram. ``t``, ``flags``: the layer's columns and their flags, each ``[B, 1, 1, 1]``; ``gray``: the
        grey image of colour images."""
        b, c, h, w = x.shape
        index = x.to(torch.int64, memory_format=torch.contiguous_format).view(b, c, 1, h * w)
        hist = torch.zeros(b, c, 1, 256, device=x.device).scatter_add_(3, index, self.one.expand(b, c, 1, h * w))
        i = self.values
        lo, hi = index.aminmax(dim=3, keepdim=True)  # PIL's autocontrast: the darkest and brightest levels present
        # Contrast's degenerate image: the mean grey (of the "L" image for colour), halves rounded up, as
        # floor((sum + n / 2) / n) (the sum of whole levels is exact in float32 up to 256 x 256 pixels)
        mean = torch.div((x if gray is None else gray).sum((2, 3), keepdim=True) + h * w / 2, h * w,
                         rounding_mode="floor")
        # Contrast: mean + a (x - mean); AutoContrast: (x - lo) 255 / (hi - lo), floored, where hi > lo.
        contrasted = (contrast + mean * t[_MEAN_WEIGHT]).add_(0.5).floor_()
        # (whole numbers over a whole number: the floor of the exact quotient; not finite where hi == lo, where
        # the image is kept)
        spread = hi - lo
        stretched = torch.div((i - lo) * 255, spread, rounding_mode="floor")
        # Equalize: PIL's ImageOps.equalize, where step > 0 (else the image is kept, and the table, not finite, is
        # not used). Whole numbers below 2^24: the floored divisions are exact.
        step = torch.div(h * w - hist.gather(3, hi), 255, rounding_mode="floor")
        below = hist.cumsum(3) - hist  # pixels below each level
        equalized = below.add_(torch.div(step, 2, rounding_mode="floor"))
        equalized = torch.div(equalized, step, rounding_mode="floor")
        lut = torch.where(step > t[_EQUALIZE_ABOVE], equalized, static)
        lut = torch.where(flags[_IS_CONTRAST], contrasted, lut)
        lut = torch.where(spread > t[_AUTOCONTRAST_ABOVE], stretched, lut)
        return lut.clamp_(0, 255).gather(3, index).view(b, c, h, w)

    def _gray(self, x: torch.Tensor) -> torch.Tensor:
        """PIL's ``convert("L")`` of [B, 3, H, W]: ITU-R 601-2 luma in its 16-bit fixed point (exact in float32:
        every sum is a whole number below 2^24)."""
        return (x * self.luma).sum(1, keepdim=True).add_(32768).div_(65536).floor_()

    def _blend(self, x: torch.Tensor, t, flags, gray: torch.Tensor | None) -> torch.Tensor:
        """Color and Sharpness: a blend with the grey image, or with the image smoothed by PIL's
        ``ImageFilter.SMOOTH`` (its border kept); the identity (factor 1) for the other samples."""
        b, c, h, w = x.shape
        weight = self.smooth if c == 1 else self.smooth.expand(c, -1, -1, -1)  # each channel on its own
        smooth = F.conv2d(x, weight, padding=1, groups=c).round_()
        border = self.border if self.border.shape == (h, w) else _border(h, w, x.device)
        degenerate = torch.where(border, x, smooth)
        if COLOR in self.has and c == 3:
            degenerate = torch.where(flags[_IS_COLOR], gray, degenerate)
        return degenerate.lerp_(x, t[_BLEND]).round_()


def _border(h: int, w: int, device) -> torch.Tensor:
    border = torch.ones(h, w, dtype=torch.bool, device=device)
    border[1:-1, 1:-1] = False
    return border


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
