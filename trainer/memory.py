"""The device-resident input path: a small dataset decoded once into device memory, augmented there in batches.

    decode_source     every sample of every shard, once -> one uint8 tensor [N, C, H, W] and the labels, on the
                      training device (grayscale stays one channel)
    epoch_order       pass p is a permutation of the dataset seeded with (seed, p), split between ranks
    draw_params       the recipe's random parameters, one set per sample, drawn on the device by timm's rules
    apply_params      crop + flips as one affine ``grid_sample``, RandAugment, normalisation, random erasing
    MemoryLoader      the two together: ``steps`` batches ``{"image", "label", "index", "problems"}``, like the
                      stream loader's but already augmented, normalised and on the device

Mixup/CutMix stay in the training loop, as on the stream path. How the device recipe differs from
timm's PIL recipe is listed in the README (Training, "Data path").
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import TrainerError
from .presets import DATA_PATHS

if TYPE_CHECKING:  # the shard readers (webdataset, braceexpand) are imported only where shards are read
    from .sources import ShardSource

# ``auto`` holds the data in memory when it takes less than this share of the device's free memory.
AUTO_SHARE = 0.25
# Images are held at no more than this many times the training resolution (downscaled once, with
# antialiasing, at decode time): grid_sample does not antialias, so no crop shrinks by more than about 2x.
HOLD_FACTOR = 2
MEAN = STD = 0.5
FILL = 128  # RandAugment's fill for geometric ops: the mean, as timm fills (img_mean)

# timm's RandAugment ops that the device recipe implements (the ``inc1`` set and the plain one).
OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "PosterizeIncreasing", "Solarize",
       "SolarizeIncreasing", "SolarizeAdd", "Color", "ColorIncreasing", "Contrast", "ContrastIncreasing",
       "Brightness", "BrightnessIncreasing", "Sharpness", "SharpnessIncreasing", "ShearX", "ShearY",
       "TranslateXRel", "TranslateYRel")
GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


# ---------------------------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class MemoryData:
    """A dataset held on one device: ``images`` uint8 [N, C, H, W], ``labels`` int64 [N]."""

    images: torch.Tensor
    labels: torch.Tensor
    corrupt_shards: tuple[str, ...] = ()
    skipped_samples: int = 0

    @property
    def samples(self) -> int:
        return self.images.shape[0]

    def snapshot(self) -> dict[str, Any]:
        """The problem log that batches carry (``data.ProblemLog`` reads it)."""
        return {"worker": 0, "shards": self.corrupt_shards, "samples": self.skipped_samples}


def hold_size(width: int, height: int, img_size: int) -> tuple[int, int]:
    """The size an image is held at: its own, or shrunk so that its shorter side is ``HOLD_FACTOR * img_size``."""
    limit = HOLD_FACTOR * img_size
    if min(width, height) <= limit:
        return width, height
    s = limit / min(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def _to_array(encoded: bytes, img_size: int) -> np.ndarray:
    image = Image.open(io.BytesIO(encoded))
    if image.mode not in ("L", "RGB"):  # other grayscale modes to L, anything else (palette, alpha) to RGB
        image = image.convert("L" if image.mode in ("1", "I", "I;16", "F", "LA") else "RGB")
    size = hold_size(*image.size, img_size)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=None)
    array = np.asarray(image)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def decode_source(source: ShardSource, *, img_size: int, device: torch.device) -> MemoryData:
    """Every sample of ``source``, decoded once, held at ``hold_size`` on ``device``.

    A corrupt shard or sample is skipped with a warning (as on the stream path); images of different
    sizes, or a set with nothing readable, are an error.
    """
    from .data import SHARD_ERRORS, Problems, image_and_label, shard_samples

    problems = Problems()
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    for url in source.urls:
        try:
            for sample in shard_samples(url):
                try:
                    encoded, label = image_and_label(sample)
                    array = _to_array(encoded, img_size)
                except (ValueError, OSError, SyntaxError, Image.DecompressionBombError) as e:
                    problems.bad_sample(sample, e)
                    continue
                if arrays and array.shape != arrays[0].shape:
                    raise TrainerError(f"--data-path memory needs images of one size: {sample.get('__key__')} in "
                                       f"{url} is {array.shape[1:]} ({array.shape[0]} channels), the first was "
                                       f"{arrays[0].shape[1:]} ({arrays[0].shape[0]}); use --data-path stream")
                arrays.append(array)
                labels.append(label)
        except SHARD_ERRORS as e:
            problems.bad_shard(url, e)
    if not arrays:
        raise TrainerError("no readable sample in the data: every shard is unreadable")
    if any(a.shape[0] != arrays[0].shape[0] for a in arrays):  # grayscale and colour mixed: hold colour
        arrays = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in arrays]
    images = torch.from_numpy(np.stack(arrays)).to(device)
    return MemoryData(images, torch.tensor(labels, dtype=torch.int64, device=device), tuple(sorted(problems.shards)),
                      problems.samples)


def _first_image(source: ShardSource) -> tuple[int, int, int] | None:
    """``(channels, height, width)`` of the first readable image, or None."""
    from .data import SHARD_ERRORS, image_and_label, shard_samples

    for url in source.urls[:3]:
        try:
            for sample in shard_samples(url):
                image = Image.open(io.BytesIO(image_and_label(sample)[0]))
                return (1 if image.mode in ("L", "1", "I", "I;16") else 3), image.height, image.width
        except (*SHARD_ERRORS, SyntaxError):
            continue
    return None


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device``: the GPU's free memory, or the host's available RAM."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def held_bytes(source: ShardSource, img_size: int) -> int | None:
    """Bytes the decoded dataset would take in memory, from its sample count and first image; None if unknown."""
    first = _first_image(source) if source.samples else None
    if first is None:
        return None
    channels, height, width = first
    w, h = hold_size(width, height, img_size)
    return source.samples * channels * w * h


def choose_data_path(setting: str, source: ShardSource, *, img_size: int, device: torch.device,
                     processes_per_device: int = 1) -> str:
    """``stream`` or ``memory``: ``auto`` takes memory when the decoded set fits comfortably (``AUTO_SHARE`` of
    the free memory, shared by the processes on the device)."""
    if setting not in DATA_PATHS:
        raise TrainerError(f"--data-path must be one of {', '.join(DATA_PATHS)}, got {setting!r}")
    if setting != "auto":
        return setting
    need = held_bytes(source, img_size)
    if need is None:
        return "stream"
    return "memory" if need * processes_per_device < AUTO_SHARE * free_memory(device) else "stream"


# --------------------------------------------------------------------------------------------- the recipe


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
            raise TrainerError(f"--data-path memory supports RandAugment ('rand-...') only, not {spec!r}")
        try:
            ra = rand_augment_transform(spec, {"translate_const": 100, "img_mean": FILL})
        except (AssertionError, ValueError) as e:
            raise TrainerError(f"bad --auto-augment {spec!r}: {e}") from None
        names = tuple(op.name for op in ra.ops)
        unknown = [n for n in names if n not in OPS]
        if unknown:
            raise TrainerError(f"--data-path memory does not implement RandAugment op {unknown[0]}")
        op = ra.ops[0]
        weights = None if ra.choice_weights is None else tuple(float(w) for w in ra.choice_weights)
        return cls(names, ra.num_layers, op.prob, float(op.magnitude), float(op.magnitude_std),
                   float(op.magnitude_max or _LEVEL_DENOM), weights)


@dataclass(frozen=True)
class Recipe:
    """The per-sample augmentation of a run, as the stream path's timm transform has it."""

    img_size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    vflip: float = 0.5
    rand_augment: RandAugmentSpec | None = None
    re_prob: float = 0.5

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Recipe:
        spec = config.get("auto_augment")
        return cls(config["img_size"], tuple(config["scale"]), tuple(config["ratio"]), config["hflip"],
                   config["vflip"], RandAugmentSpec.parse(spec) if spec else None, config["re_prob"])


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


def draw_params(recipe: Recipe, n: int, height: int, width: int, g: torch.Generator,
                device: torch.device) -> dict[str, torch.Tensor]:
    """Every random parameter of ``n`` samples: crop, flips, RandAugment ops/magnitudes/signs, erasing box."""
    p: dict[str, torch.Tensor] = {"crop": draw_crops(n, height, width, recipe.scale, recipe.ratio, g, device)}
    p["hflip"] = torch.rand(n, generator=g, device=device) < recipe.hflip
    p["vflip"] = torch.rand(n, generator=g, device=device) < recipe.vflip
    ra = recipe.rand_augment
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
    if recipe.re_prob > 0:
        s = recipe.img_size
        erase = torch.rand(n, generator=g, device=device) < recipe.re_prob
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


# --------------------------------------------------------------------------------------- applying the recipe


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
                 sparse: bool | None = None) -> torch.Tensor:
    """RandAugment with per-sample op choice. ``x`` holds 0-255 values and is rounded to them after every op,
    as PIL's 8-bit images are. Each layer's geometric ops run together as one warp.

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
                out[at] = _warp(x[at], matrix[at], (size, size), fill=FILL)
        else:
            out = torch.where(geometric.view(-1, 1, 1, 1), _warp(x, matrix, (size, size), fill=FILL), out)
        x = out.clamp(0, 255).round()
    return x


def apply_params(images: torch.Tensor, recipe: Recipe, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """uint8 [B, C, H, W] -> the recipe's float [B, 3, S, S]: crop + flips, RandAugment, normalisation, erasing."""
    s = recipe.img_size
    x = images.float()
    x = _warp(x, crop_matrices(p["crop"], p["hflip"], p["vflip"], s), (s, s), fill=None).clamp(0, 255).round()
    if recipe.rand_augment is not None:
        x = rand_augment(x, recipe.rand_augment, p)
    x = (x.expand(-1, 3, -1, -1) / 255 - MEAN) / STD
    if "erase" in p:
        top, left, h, w = (v.view(-1, 1, 1, 1) for v in p["erase_box"].unbind(1))
        rows = torch.arange(s, device=x.device, dtype=x.dtype).view(1, 1, s, 1)
        cols = torch.arange(s, device=x.device, dtype=x.dtype).view(1, 1, 1, s)
        inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w) & p["erase"].view(-1, 1, 1, 1)
        x = torch.where(inside, torch.randn_like(x), x)  # timm's pixel mode: per-pixel, per-channel N(0, 1)
    return x


# ----------------------------------------------------------------------------------------------- batches


def epoch_order(samples: int, *, seed: int, epoch: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """This rank's share of pass ``epoch``: a permutation seeded with (seed, epoch), cut to a multiple of
    ``world`` and dealt out, so that ranks are disjoint and equal."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)
    order = torch.randperm(samples, generator=g)
    return order[: samples - samples % world][rank::world]


class MemoryLoader:
    """``steps`` batches of ``batch_size`` from a ``MemoryData``, starting at step ``start`` of the run.

    Step t of the run is batch ``t % per_pass`` of pass ``t // per_pass`` (the last partial batch of a pass
    is dropped), so a resumed run continues the same sequence of images. A dataset smaller than a batch
    per process is read as the stream path reads it: passes one after the other, cut into batches.
    Augmentation draws come from a generator on the device seeded with (seed, rank, start).
    """

    def __init__(self, data: MemoryData, recipe: Recipe, *, batch_size: int, steps: int, start: int = 0,
                 seed: int = 0, rank: int = 0, world: int = 1):
        self.share = data.samples // world
        if self.share < 1:
            raise TrainerError(f"the data's {data.samples} samples do not reach {world} processes")
        self.data, self.recipe, self.batch_size = data, recipe, batch_size
        self.steps, self.start, self.seed, self.rank, self.world = steps, start, seed, rank, world
        device = data.images.device
        self.generator = torch.Generator(device).manual_seed(seed * 7919 + rank * 104_729 + start)

    def __len__(self) -> int:
        return self.steps

    def _order(self, epoch: int) -> torch.Tensor:
        return epoch_order(self.data.samples, seed=self.seed, epoch=epoch, rank=self.rank, world=self.world)

    def indices(self) -> Iterator[torch.Tensor]:
        """The sample indices of each batch, in order."""
        b, device = self.batch_size, self.data.images.device
        per_pass = self.share // b
        cache: dict[int, torch.Tensor] = {}

        def order(epoch: int) -> torch.Tensor:
            if epoch not in cache:
                if len(cache) > 2:  # passes are visited in order: keep only the last few
                    cache.clear()
                cache[epoch] = self._order(epoch).to(device)
            return cache[epoch]

        for step in range(self.start, self.start + self.steps):
            if per_pass:
                e, k = divmod(step, per_pass)
                yield order(e)[k * b : (k + 1) * b]
            else:  # fewer samples than a batch: consecutive passes
                first, last = step * b, (step + 1) * b
                passes = range(first // self.share, (last - 1) // self.share + 1)
                yield torch.cat([order(e) for e in passes])[first - passes[0] * self.share :][:b]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        _, _, h, w = self.data.images.shape
        device = self.data.images.device
        for index in self.indices():
            params = draw_params(self.recipe, len(index), h, w, self.generator, device)
            images = apply_params(self.data.images[index], self.recipe, params)
            yield {"image": images, "label": self.data.labels[index], "index": index,
                   "problems": self.data.snapshot()}


def create_memory_loader(data: MemoryData, config: Mapping[str, Any], *, batch_size: int, steps: int,
                         start: int = 0, rank: int = 0, world: int = 1, num_classes: int | None = None
                         ) -> MemoryLoader:
    """A ``MemoryLoader`` with a run's recipe; labels are checked against ``num_classes`` once, here."""
    if num_classes is not None:
        bad = data.labels[(data.labels < 0) | (data.labels >= num_classes)]
        if bad.numel():
            raise TrainerError(f"label {bad[0].item()} in the data is outside [0, {num_classes}): the class count "
                               "does not match the data")
    if data.skipped_samples or data.corrupt_shards:
        sys.stderr.write(f"Warning: {len(data.corrupt_shards)} corrupt shard(s), {data.skipped_samples} "
                         "unreadable sample(s) left out of memory\n")
    return MemoryLoader(data, Recipe.from_config(config), batch_size=batch_size, steps=steps, start=start,
                        seed=config["seed"], rank=rank, world=world)


def summary(data: MemoryData) -> dict[str, Any]:
    """What config.json records of the data held in memory."""
    n, c, h, w = data.images.shape
    return {"samples": n, "channels": c, "height": h, "width": w, "bytes": data.images.numel()}

