"""timm's training and evaluation transforms, with a one-channel path for grayscale images.

fracbuild's images (and MNIST's) are 8-bit grayscale. timm's transforms expect RGB, so the usual
route is ``convert("RGB")`` and three identical channels through every PIL operation. Here a
grayscale image runs the same operations on one channel and is replicated to three channels only
as a tensor, just before normalisation: with the same random state the result is identical to
timm's RGB route (a test checks this), and about 1.5x cheaper. This needs equal mean and std in
every channel (the recipe's 0.5); otherwise grayscale images take the RGB route.

With ``use_prefetcher`` (timm's name) the transforms end in uint8 tensors, a grayscale image still one
channel, and ``BatchTail`` finishes whole batches on the training device, as timm's ``PrefetchLoader`` does:
conversion to float, three channels, normalisation and random erasing. Loader workers then do less, and
copy a quarter of the bytes (a twelfth for grayscale).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform, rand_augment_transform
from timm.data import auto_augment as timm_auto_augment
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import MaybeToTensor, str_to_pil_interp
from torchvision import transforms as T

from ..settings import RANDAUGMENT
from .color_jitter import strength

MEAN = STD = (0.5, 0.5, 0.5)
# --normalize: the recipe's 0.5 (pre-training's), or ImageNet's (the reference's fine-tuning; timm then
# fills RandAugment's geometric ops with the ImageNet mean, (124, 116, 104)).
MEAN_STD = {"0.5": (MEAN, STD), "imagenet": (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)}


def mean_std(config: Mapping[str, Any]) -> dict[str, tuple[float, ...]]:
    """``{"mean", "std"}`` of a run's ``normalize`` setting (0.5 where it has none)."""
    mean, std = MEAN_STD[config.get("normalize") or "0.5"]
    return {"mean": tuple(mean), "std": tuple(std)}


class ExpandChannels:
    """A one-channel image tensor repeated to ``channels`` channels."""

    def __init__(self, channels: int = 3):
        self.channels = channels

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(self.channels, -1, -1).contiguous() if x.shape[0] == 1 else x

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.channels})"


def _posterize(img: Image.Image, bits_to_keep: int, **kwargs) -> Image.Image:
    # RandAugment's PosterizeIncreasing at the top magnitude asks for 0 bits. Pillow < 11 returned a
    # black image (what the reference code trained with); newer Pillow raises ValueError instead.
    if bits_to_keep < 1:
        return Image.new(img.mode, img.size, 0)
    return timm_auto_augment.posterize(img, bits_to_keep, **kwargs)


def patch_posterize(transform) -> None:
    """Give every RandAugment op in ``transform`` the Pillow-safe posterize (see ``_posterize``)."""
    for t in getattr(transform, "transforms", [transform]):
        for op in getattr(t, "ops", ()):
            if getattr(op, "aug_fn", None) is timm_auto_augment.posterize:
                op.aug_fn = _posterize


def _one_channel(transform: T.Compose) -> T.Compose:
    """``transform`` with the channel expansion inserted right after the tensor conversion (none when the
    transform ends in uint8 tensors: ``BatchTail`` expands on the device)."""
    steps = list(transform.transforms)
    at = next((i for i, t in enumerate(steps) if isinstance(t, (MaybeToTensor, T.ToTensor))), None)
    if at is None:
        return transform
    return T.Compose([*steps[: at + 1], ExpandChannels(3), *steps[at + 1:]])


class ImageTransform:
    """Applies the RGB transform to colour images and the one-channel equivalent to grayscale ones."""

    def __init__(self, rgb: T.Compose, gray: T.Compose | None):
        self.rgb, self.gray = rgb, gray

    def __call__(self, img: Image.Image) -> torch.Tensor:
        if img.mode == "L" and self.gray is not None:
            return self.gray(img)
        return self.rgb(img if img.mode == "RGB" else img.convert("RGB"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rgb={self.rgb}, gray={'same ops on one channel' if self.gray else None})"


def create_train_transform(
    *,
    img_size: int,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    hflip: float = 0.5,
    vflip: float = 0.5,
    auto_augment: str | None = RANDAUGMENT,
    re_prob: float = 0.5,
    re_mode: str = "pixel",
    interpolation: str = "bicubic",
    color_jitter: float | None = None,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    use_prefetcher: bool = False,
) -> ImageTransform:
    """timm's training transform (RandomResizedCrop, flips, RandAugment or colour jitter, random erasing) on PIL
    images; ``use_prefetcher``: up to uint8 tensors, without normalisation and random erasing (``BatchTail``'s).

    ``color_jitter`` (None or 0: off) applies only when RandAugment is off, as timm 0.4.12 decides
    (``color_jitter.strength``); timm's own default, 0.4, is not taken.
    """
    kwargs = dict(input_size=img_size, is_training=True, scale=tuple(scale), ratio=tuple(ratio), hflip=hflip,
                  vflip=vflip, auto_augment=auto_augment or None, interpolation=interpolation, mean=tuple(mean),
                  std=tuple(std), re_prob=re_prob, re_mode=re_mode, re_count=1,
                  color_jitter=strength(color_jitter, auto_augment),
                  use_prefetcher=use_prefetcher)
    rgb = create_transform(**kwargs)
    patch_posterize(rgb)
    if len(set(mean)) > 1 or len(set(std)) > 1:
        return ImageTransform(rgb, None)
    primary, secondary, final = create_transform(**kwargs, separate=True)
    if auto_augment:
        # timm fills RandAugment's geometric ops with the mean as an RGB tuple; one channel needs one value.
        fill = min(255, round(255 * mean[0]))
        hparams = dict(translate_const=int(img_size * 0.45), img_mean=fill)
        if interpolation and interpolation != "random":
            hparams["interpolation"] = str_to_pil_interp(interpolation)
        secondary = T.Compose([rand_augment_transform(auto_augment, hparams)])
        patch_posterize(secondary)
    gray = _one_channel(T.Compose([*primary.transforms, *secondary.transforms, *final.transforms]))
    return ImageTransform(rgb, gray)


def train_transform(config: Mapping[str, Any], *, use_prefetcher: bool = False) -> ImageTransform:
    """``create_train_transform`` with a run's settings (img_size, scale, ratio, flips, auto_augment, color_jitter,
    re_prob, normalize)."""
    keys = ("img_size", "scale", "ratio", "hflip", "vflip", "auto_augment", "re_prob")
    return create_train_transform(**{k: config[k] for k in keys}, color_jitter=config.get("color_jitter"),
                                  **mean_std(config), use_prefetcher=use_prefetcher)


def eval_transform(config: Mapping[str, Any], *, use_prefetcher: bool = False) -> ImageTransform:
    """``create_eval_transform`` with a run's settings (img_size, crop_pct, normalize)."""
    return create_eval_transform(img_size=config["img_size"], crop_pct=config.get("crop_pct", 1.0),
                                 **mean_std(config), use_prefetcher=use_prefetcher)


def create_eval_transform(*, img_size: int, crop_pct: float = 1.0, interpolation: str = "bicubic",
                          mean: Sequence[float] = MEAN, std: Sequence[float] = STD,
                          use_prefetcher: bool = False) -> ImageTransform:
    """timm's evaluation transform: resize the short side to ``img_size / crop_pct``, centre-crop
    ``img_size`` and normalise (``crop_pct`` 1: resize only; timm's default, the reference's, is 0.875:
    256 then 224); ``use_prefetcher``: up to uint8 tensors, ``BatchTail`` normalises."""
    rgb = create_transform(input_size=img_size, is_training=False, interpolation=interpolation, crop_pct=crop_pct,
                           mean=tuple(mean), std=tuple(std), use_prefetcher=use_prefetcher)
    gray = _one_channel(rgb) if len(set(mean)) == 1 and len(set(std)) == 1 else None
    return ImageTransform(rgb, gray)


def stack_images(images) -> torch.Tensor:
    """Image tensors as one batch; a one-channel image beside colour ones is repeated to three channels."""
    images = list(images)
    channels = max(x.shape[0] for x in images)
    return torch.stack([x.expand(channels, -1, -1) for x in images])


class BatchTail:
    """The end of timm's transform on whole uint8 batches ``[B, C, H, W]`` on the device, as timm's
    ``PrefetchLoader`` runs it: to float, three channels, normalised, then timm's random erasing (per sample)."""

    def __init__(self, *, mean: Sequence[float], std: Sequence[float], re_prob: float = 0.0, re_mode: str = "pixel",
                 device: torch.device | str = "cpu"):
        self.mean = torch.tensor([255 * m for m in mean], device=device).view(1, 3, 1, 1)
        self.std = torch.tensor([255 * s for s in std], device=device).view(1, 3, 1, 1)
        self.erase = RandomErasing(re_prob, mode=re_mode, max_count=1, device=device) if re_prob > 0 else None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().sub(self.mean).div(self.std)  # broadcasts one channel to three
        return self.erase(x) if self.erase is not None else x


def train_tail(config: Mapping[str, Any], device: torch.device) -> BatchTail:
    """The ``BatchTail`` of a run's training transform (``train_transform(config, use_prefetcher=True)``)."""
    return BatchTail(**mean_std(config), re_prob=config["re_prob"], device=device)


def eval_tail(config: Mapping[str, Any], device: torch.device) -> BatchTail:
    """The ``BatchTail`` of a run's evaluation transform: normalisation only."""
    return BatchTail(**mean_std(config), device=device)
