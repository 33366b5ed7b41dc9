"""Device augmentation: the training recipe run on whole batches on the training device, one set of random
parameters per sample, drawn by timm's rules.

    Augmentation    the per-sample augmentation of a run (crop, flips, RandAugment, erasing, mean/std), from
                    its settings
    draw_params     its random parameters for ``n`` samples, drawn on the device with a ``torch.Generator``
    apply_params    crop + flips as one affine ``grid_sample``, RandAugment, normalisation, random erasing

How this differs from timm's PIL recipe is listed in the README (Training, "Inputs").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kornia
import torch
import torch.nn.functional as F

from ..errors import TrainerError
from .transforms import mean_std

MEAN = STD = (0.5, 0.5, 0.5)
FILL = 128  # RandAugment's fill for geometric ops at mean 0.5 (timm fills with the mean: img_mean)

# timm's RandAugment ops that device augmentation implements (the ``inc1`` set and the plain one).
OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "PosterizeIncreasing", "Solarize",
       "SolarizeIncreasing", "SolarizeAdd", "Color", "ColorIncreasing", "Contrast", "ContrastIncreasing",
       "Brightness", "BrightnessIncreasing", "Sharpness", "SharpnessIncreasing", "ShearX", "ShearY",
       "TranslateXRel", "TranslateYRel")
GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


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

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Augmentation:
        spec = config.get("auto_augment")
        norm = mean_std(config)
        return cls(config["img_size"], tuple(config["scale"]), tuple(config["ratio"]), config["hflip"],
                   config["vflip"], RandAugmentSpec.parse(spec) if spec else None, config["re_prob"],
                   norm["mean"], norm["std"])

    @property
    def fill(self) -> tuple[int, ...]:
        """RandAugment's fill of geometric ops per channel: the mean in 8-bit values, as timm's img_mean."""
        return tuple(min(255, round(255 * m)) for m in self.mean)


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
    """Every random parameter of ``n`` samples: crop, flips, RandAugment ops/magnitudes/signs, erasing box."""
    a = augmentation
    p: dict[str, torch.Tensor] = {"crop": draw_crops(n, height, width, a.scale, a.ratio, g, device)}
    p["hflip"] = torch.rand(n, generator=g, device=device) < augmentation.hflip
    p["vflip"] = torch.rand(n, generator=g, device=device) < augmentation.vflip
    ra = augmentation.rand_augment
    if ra is not None:
        shape = (n, ra.layers)
        if ra.weights is None:  # timm: np.random.choice with replacement
            p["op"] = torch.randint(len(ra.ops), shape, generator=g, device=device)
        else:  # timm: weighted choice without replacement
            w = torch.tensor(ra.weights, device=device).expand(n, -1)
            p["op"] = torch.multinomial(w, ra.layers, replacement=False, generator=g)
        p["apply"] = torch.rand(shape, generator=g, device=device) <= ra.prob
        if math.isinf(ra.magnitude_std):
            m = _uniform(shape, 0.0, ra.magnitude, g, device)
        elif ra.magnitude_std > 0:
            m = ra.magnitude + ra.magnitude_std * torch.randn(shape, generator=g, device=device)
        else:
            m = torch.full(shape, ra.magnitude, device=device)
        p["magnitude"] = m.clamp(0.0, ra.magnitude_max)
        # timm's _randomly_negate: negative when random() > 0.5
        p["sign"] = torch.where(torch.rand(shape, generator=g, device=device) > 0.5, -1.0, 1.0)
    if augmentation.re_prob > 0:
        s = augmentation.img_size
        erase = torch.rand(n, generator=g, device=device) < augmentation.re_prob
        log_aspect = (math.log(0.3), math.log(1 / 0.3))
        w, h, ok = _boxes(n, s * s, (0.02, 1 / 3), log_aspect, lambda w, h: (w < s) & (h < s), g, device)
        top, left = _randint((n,), s - h, g, device), _randint((n,), s - w, g, device)
        p["erase"] = erase & ok
        p["erase_box"] = torch.stack([top, left, h, w], 1)
    return p


def level(name: str, magnitude: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """timm's level-to-argument rule of op ``name`` for magnitudes on timm's 0-10 scale (batched)."""
    f = magnitude / 10.0
    if name == "Rotate":
        return f * 30.0 * sign
    if name in ("ShearX", "ShearY"):
        return f * 0.3 * sign
    if name in ("TranslateXRel", "TranslateYRel"):
        return f * 0.45 * sign
    if name == "Posterize":
        return torch.floor(f * 4)
    if name == "PosterizeIncreasing":
        return 4 - torch.floor(f * 4)
    if name == "Solarize":
        return torch.floor(f * 256).clamp(max=256)
    if name == "SolarizeIncreasing":
        return 256 - torch.floor(f * 256).clamp(max=256)
    if name == "SolarizeAdd":
        return torch.floor(f * 110).clamp(max=128)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return f * 1.8 + 0.1
    if name.endswith("Increasing"):  # the enhance ops: 1 +- 0.9 f, at least 0.1
        return (1.0 + f * 0.9 * sign).clamp(min=0.1)
    return torch.zeros_like(magnitude)  # AutoContrast, Equalize, Invert take no argument


# ------------------------------------------------------------------------------------ applying the parameters


def _warp(x: torch.Tensor, matrix: torch.Tensor, out_hw: tuple[int, int], *, fill: float | None) -> torch.Tensor:
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


def crop_matrices(crop: torch.Tensor, hflip: torch.Tensor, vflip: torch.Tensor, size: int) -> torch.Tensor:
    """Output pixel -> input pixel maps [B, 2, 3] of RandomResizedCrop to ``size`` followed by the flips."""
    top, left, h, w = crop.unbind(1)
    sx, sy = w / size, h / size
    zero = torch.zeros_like(sx)
    # a flip reads the output from the other side: u -> size - u
    ax = torch.where(hflip, -sx, sx)
    bx = torch.where(hflip, left + w, left)
    ay = torch.where(vflip, -sy, sy)
    by = torch.where(vflip, top + h, top)
    return torch.stack([torch.stack([ax, zero, bx], 1), torch.stack([zero, ay, by], 1)], 1)


def _geometry(name: str, arg: torch.Tensor, size: int) -> torch.Tensor:
    """PIL's affine map (output pixel -> input pixel) of a RandAugment geometric op, per sample [B, 2, 3]."""
    one, zero = torch.ones_like(arg), torch.zeros_like(arg)
    if name == "ShearX":
        rows = [(one, arg, zero), (zero, one, zero)]
    elif name == "ShearY":
        rows = [(one, zero, zero), (arg, one, zero)]
    elif name == "TranslateXRel":
        rows = [(one, zero, arg * size), (zero, one, zero)]
    elif name == "TranslateYRel":
        rows = [(one, zero, zero), (zero, one, arg * size)]
    else:  # Rotate by arg degrees counter-clockwise about the centre, as Image.rotate
        a = torch.deg2rad(-arg)
        c, s, centre = torch.cos(a), torch.sin(a), size / 2
        rows = [(c, s, centre - c * centre - s * centre), (-s, c, centre + s * centre - c * centre)]
    return torch.stack([torch.stack(r, 1) for r in rows], 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``convert("L")`` of [B, C, H, W] (identity for one channel)."""
    if x.shape[1] == 1:
        return x
    return (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).round()


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return degenerate + factor.view(-1, 1, 1, 1) * (x - degenerate)


def _pixel_op(name: str, x: torch.Tensor, arg: torch.Tensor) -> torch.Tensor:
    """A RandAugment colour op on [B, C, H, W] holding 0-255 values; ``arg`` [B] from ``level``."""
    a = arg.view(-1, 1, 1, 1)
    if name == "Invert":
        return 255 - x
    if name == "AutoContrast":
        lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
        scaled = torch.floor((x - lo) * (255 / (hi - lo).clamp(min=1)))
        return torch.where(hi > lo, scaled, x)
    if name == "Equalize":
        return kornia.enhance.equalize(x / 255) * 255
    if name.startswith("Posterize"):  # keep the top ``a`` bits; 0 bits: black (see transforms._posterize)
        step = torch.exp2(8 - a)
        return torch.where(a >= 8, x, torch.floor(x / step) * step)
    if name.startswith("Solarize") and name != "SolarizeAdd":
        return torch.where(x >= a, 255 - x, x)
    if name == "SolarizeAdd":
        return torch.where(x < 128, (x + a).clamp(max=255), x)
    if name.startswith("Color"):
        return _blend(_gray(x), x, arg)
    if name.startswith("Contrast"):
        mean = torch.floor(_gray(x).mean((1, 2, 3), keepdim=True) + 0.5)
        return _blend(mean, x, arg)
    if name.startswith("Brightness"):
        return x * a
    if name.startswith("Sharpness"):
        return kornia.enhance.sharpness(x / 255, arg) * 255
    raise AssertionError(name)


def rand_augment(x: torch.Tensor, spec: RandAugmentSpec, p: Mapping[str, torch.Tensor], *,
                 sparse: bool | None = None, fill: float | torch.Tensor = FILL) -> torch.Tensor:
    """RandAugment with per-sample op choice. ``x`` holds 0-255 values and is rounded to them after every op,
    as PIL's 8-bit images are. Each layer's geometric ops run together as one warp, filling with ``fill`` (a
    value, or one per channel as ``[1, C, 1, 1]``).

    On a GPU every op is computed for the whole batch and selected per sample (no host sync, so the GPU
    never waits for the host); on the CPU (``sparse``) each op runs on the samples that chose it only.
    """
    size = x.shape[-1]
    sparse = x.device.type == "cpu" if sparse is None else sparse
    for layer in range(spec.layers):
        op, apply = p["op"][:, layer], p["apply"][:, layer]
        magnitude, sign = p["magnitude"][:, layer], p["sign"][:, layer]
        geometric = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        matrix = torch.eye(3, device=x.device, dtype=x.dtype)[:2].expand(x.shape[0], 2, 3)
        out = x.clone() if sparse else x
        for k, name in enumerate(spec.ops):
            chosen = apply & (op == k)
            if name in GEOMETRIC:
                matrix = torch.where(chosen.view(-1, 1, 1), _geometry(name, level(name, magnitude, sign), size),
                                     matrix)
                geometric |= chosen
            elif name in ("Color", "ColorIncreasing") and x.shape[1] == 1:  # colour of one channel: identity
                continue
            elif sparse:
                at = chosen.nonzero()[:, 0]
                if len(at):
                    out[at] = _pixel_op(name, x[at], level(name, magnitude[at], sign[at]))
            else:
                out = torch.where(chosen.view(-1, 1, 1, 1), _pixel_op(name, x, level(name, magnitude, sign)), out)
        if sparse:
            at = geometric.nonzero()[:, 0]
            if len(at):
                out[at] = _warp(x[at], matrix[at], (size, size), fill=fill)
        else:
            out = torch.where(geometric.view(-1, 1, 1, 1), _warp(x, matrix, (size, size), fill=fill), out)
        x = out.clamp(0, 255).round()
    return x


def apply_params(images: torch.Tensor, augmentation: Augmentation, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float [B, 3, S, S]: crop + flips, RandAugment, normalisation, random erasing."""
    s, a = augmentation.img_size, augmentation
    x = images.float()
    x = _warp(x, crop_matrices(p["crop"], p["hflip"], p["vflip"], s), (s, s), fill=None).clamp(0, 255).round()
    if a.rand_augment is not None:
        if len(set(a.fill)) == 1:
            fill: float | torch.Tensor = float(a.fill[0])
        else:  # a fill per channel (ImageNet's mean): a gray image becomes the RGB image timm's route makes
            x = x.expand(-1, 3, -1, -1)
            fill = torch.tensor(a.fill, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = rand_augment(x, a.rand_augment, p, fill=fill)
    x = normalize(x, a.mean, a.std)
    if "erase" in p:
        top, left, h, w = (v.view(-1, 1, 1, 1) for v in p["erase_box"].unbind(1))
        rows = torch.arange(s, device=x.device, dtype=x.dtype).view(1, 1, s, 1)
        cols = torch.arange(s, device=x.device, dtype=x.dtype).view(1, 1, 1, s)
        inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w) & p["erase"].view(-1, 1, 1, 1)
        x = torch.where(inside, torch.randn_like(x), x)  # timm's pixel mode: per-pixel, per-channel N(0, 1)
    return x


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """0-255 values [B, C, H, W] (one channel or three) -> normalised float [B, 3, H, W]."""
    if len(set(mean)) == 1 and len(set(std)) == 1:  # the same arithmetic as one number per channel
        return (x.expand(-1, 3, -1, -1) / 255 - mean[0]) / std[0]
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x.expand(-1, 3, -1, -1) / 255 - m) / s


def eval_size(height: int, width: int, img_size: int, crop_pct: float) -> tuple[int, int]:
    """The size timm's evaluation transform resizes an image to: short side ``floor(img_size / crop_pct)``, the long
    side in proportion (torchvision's Resize)."""
    short = math.floor(img_size / crop_pct)
    if height <= width:
        return (height, width) if height == short else (short, int(short * width / height))
    return (height, width) if width == short else (int(short * height / width), short)
