"""RandAugment's ops as the device augmentation runs them: timm's op names and level rules as data, the kind of
each op, the settings of a spec string (``RandAugmentSpec``), and PIL's affine maps and bicubic warps of the
geometric ops. ``device_augment.DeviceAugment`` applies them to whole batches."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import TrainerError

FILL = 128  # RandAugment's fill for geometric ops at mean 0.5 (timm fills with the mean: img_mean)

# timm's level-to-argument rule of each RandAugment op, as data: with f = magnitude / 10,
# raw = f * mult (floored where ``whole``, times the random sign where ``signed``, at most ``cap``), and the
# argument is max(add + scale * raw, least).
#          (mult,  whole, signed, cap,   add, scale, least)
NO_LEVEL = (0.0, False, False, math.inf, 0.0, 1.0, -math.inf)
LEVELS: dict[str, tuple] = {
    "AutoContrast": NO_LEVEL, "Equalize": NO_LEVEL, "Invert": NO_LEVEL,
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
OPS = tuple(LEVELS)
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


def level_table(names) -> torch.Tensor:
    return torch.tensor([[float(v) for v in LEVELS[name]] for name in names], dtype=torch.float32)


def level_args(table: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """The argument of each sample's op from its row of ``LEVELS`` (``table`` ``[..., 7]``)."""
    mult, whole, signed, cap, add, scale, least = table.unbind(-1)
    raw = magnitude / 10.0 * mult
    # where(flag, b, a) for flags of 0 or 1, in one op: lerp gives a at 0 and b at 1 exactly
    raw = torch.lerp(raw, torch.floor(raw), whole)
    raw = torch.lerp(raw, raw * sign, signed).minimum(cap)
    return torch.addcmul(add, scale, raw).maximum(least)  # (exact in one op: every scale is 1 or -1)


def level(name: str, magnitude: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """timm's level-to-argument rule of op ``name`` for magnitudes on timm's 0-10 scale (batched)."""
    return level_args(level_table([name])[0].to(magnitude.device), magnitude, sign)


def theta(radians: torch.Tensor, shear_x: torch.Tensor, shear_y: torch.Tensor, shift_x: torch.Tensor,
          shift_y: torch.Tensor) -> torch.Tensor:
    """PIL's affine map of the geometric ops on a square image (output pixel -> input pixel; rotation by
    ``radians`` counter-clockwise about the centre as ``Image.rotate`` builds it, the shears, and ``shift``: the
    third column) as grid_sample's ``theta`` [..., 2, 3], in normalised coordinates (align_corners=False:
    n = 2 x / size - 1). With PIL's matrix [[c, s + shear_x, m02], [shear_y - s, c, m12]] the size cancels:
    the third column is shear + 2 x translation / size (the rotation's centring terms cancel too)."""
    c, s = torch.cos(radians), torch.sin(radians)
    return torch.stack([c, s + shear_x, shift_x, shear_y - s, c, shift_y], -1).unflatten(-1, (2, 3))


def warp(x: torch.Tensor, theta: torch.Tensor, *, fill: float | torch.Tensor) -> torch.Tensor:
    """``x`` [B, C, S, S] resampled bicubic at grid_sample's ``theta`` [B, 2, 3], ``fill`` outside the image."""
    grid = F.affine_grid(theta, [x.shape[0], 1, *x.shape[-2:]], align_corners=False)
    return F.grid_sample(x - fill, grid, mode="bicubic", padding_mode="zeros", align_corners=False) + fill
