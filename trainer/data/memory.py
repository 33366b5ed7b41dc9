"""The memory input: a small dataset decoded once into the training device's memory, augmented there in batches.

    decode_source     every sample of every shard, once -> one uint8 tensor [N, C, H, W] and the labels, on the
                      training device (grayscale stays one channel)
    decode_images     the same for a downstream split (at its own size: a 32 px image stays 32 px)
    epoch_order       pass p is a permutation of the dataset seeded with (seed, p), split between ranks
    MemoryLoader      ``steps`` batches ``{"image", "label", "index"}``, augmented (``device_augment``),
                      normalised and on the device

Mixup/CutMix stay in the training loop, as on the stream input.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from ..errors import TrainerError
from .device_augment import Augmentation, apply_params, draw_params
from .downstream import ImageList

if TYPE_CHECKING:  # the shard readers (webdataset, braceexpand) are imported only where shards are read
    from .shardlists import ShardList

# ``auto`` holds the data in memory when it takes less than this share of the device's free memory.
AUTO_SHARE = 0.25
# Images are held at no more than this many times the training resolution (downscaled once, with
# antialiasing, at decode time): grid_sample does not antialias, so no crop shrinks by more than about 2x.
HOLD_FACTOR = 2


# ---------------------------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class MemoryData:
    """A dataset held on one device: ``images`` uint8 [N, C, H, W], ``labels`` int64 [N]."""

    images: torch.Tensor
    labels: torch.Tensor
    corrupt_shards: tuple[str, ...] = ()
    skipped_samples: int = 0
    shard_retries: int = 0  # reconnections while reading shards over http(s)

    @property
    def samples(self) -> int:
        return self.images.shape[0]


def hold_size(width: int, height: int, img_size: int) -> tuple[int, int]:
    """The size an image is held at: its own, or shrunk so that its shorter side is ``HOLD_FACTOR * img_size``."""
    limit = HOLD_FACTOR * img_size
    if min(width, height) <= limit:
        return width, height
    s = limit / min(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


class MixedSizes(TrainerError):
    """Images of more than one size: they cannot be held as one tensor (``auto`` then takes the stream)."""


def _to_array(image: Image.Image, img_size: int) -> np.ndarray:
    if image.mode not in ("L", "RGB"):  # other grayscale modes to L, anything else (palette, alpha) to RGB
        image = image.convert("L" if image.mode in ("1", "I", "I;16", "F", "LA") else "RGB")
    size = hold_size(*image.size, img_size)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=None)
    array = np.asarray(image)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def decode_source(source: ShardList, *, img_size: int, device: torch.device) -> MemoryData:
    """Every sample of ``source``, decoded once, held at ``hold_size`` on ``device``.

    A shard's samples are kept only once the whole shard has been read and its bytes match the manifest's
    sha256: a damaged shard is left out whole, with a warning (an undecodable sample alone, in a shard that
    has no digest to check). ``skipped_samples`` counts every sample left out (a damaged shard's as the manifest
    counts them). Images of different sizes, or a set with nothing readable, are an error.
    """
    from .shards import SAMPLE_ERRORS, SHARD_ERRORS, Problems, image_and_label, shard_samples

    problems = Problems()
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    for url in source.urls:
        count, sha256 = source.record(url)
        kept: list[tuple[np.ndarray, int]] = []
        seen = 0
        try:
            for sample in shard_samples(url, problems, sha256):
                seen += 1
                try:
                    encoded, label = image_and_label(sample)
                    array = _to_array(Image.open(io.BytesIO(encoded)), img_size)
                except SAMPLE_ERRORS as e:
                    problems.bad_sample(sample, e)
                    continue
                _check_size(array, [a for a, _ in kept] or arrays, f"{sample.get('__key__')} in {url}")
                kept.append((array, label))
        except SHARD_ERRORS as e:
            # The samples decoded before the damage showed go too; those already counted as unreadable stay counted.
            problems.bad_shard(url, e, len(kept) + max(0, (count or seen) - seen))
            continue
        arrays += [a for a, _ in kept]
        labels += [label for _, label in kept]
    if not arrays:
        raise TrainerError("no readable sample in the data: every shard is unreadable")
    return _held(arrays, labels, device, tuple(sorted(problems.shards)), problems.samples, problems.retries)


def decode_images(images: ImageList, *, img_size: int, device: torch.device) -> MemoryData:
    """A downstream split's images, decoded once at their own size (shrunk only past ``hold_size``), on ``device``."""
    arrays: list[np.ndarray] = []
    for i in range(len(images)):
        array = _to_array(images.image(i), img_size)
        _check_size(array, arrays, f"image {i}")
        arrays.append(array)
    if not arrays:
        raise TrainerError("the split holds no image")
    return _held(arrays, images.labels, device)


def _check_size(array: np.ndarray, arrays: list[np.ndarray], where: str) -> None:
    if arrays and array.shape[1:] != arrays[0].shape[1:]:
        raise MixedSizes(f"--input memory needs images of one size: {where} is {array.shape[1:]}, the first was "
                         f"{arrays[0].shape[1:]}; use --input stream")


def _held(arrays: list[np.ndarray], labels: list[int], device: torch.device, corrupt: tuple[str, ...] = (),
          skipped: int = 0, retries: int = 0) -> MemoryData:
    if any(a.shape[0] != arrays[0].shape[0] for a in arrays):  # grayscale and colour mixed: hold colour
        arrays = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in arrays]
    images = torch.from_numpy(np.stack(arrays)).to(device)
    return MemoryData(images, torch.tensor(labels, dtype=torch.int64, device=device), corrupt, skipped, retries)


def _first_image(source: ShardList) -> tuple[int, int, int] | None:
    """``(channels, height, width)`` of the first readable image, or None."""
    from .shards import SHARD_ERRORS, image_and_label, shard_samples

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


def held_bytes(source: ShardList | ImageList, img_size: int) -> int | None:
    """Bytes the decoded dataset would take in memory, from its sample count and first image; None if unknown."""
    if isinstance(source, ImageList):
        if not len(source):
            return None
        image = source.image(0)
        w, h = hold_size(image.width, image.height, img_size)
        return len(source) * (1 if image.mode in ("L", "1", "I", "I;16") else 3) * w * h
    first = _first_image(source) if source.samples else None
    if first is None:
        return None
    channels, height, width = first
    w, h = hold_size(width, height, img_size)
    return source.samples * channels * w * h


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
    per process is read as the stream input reads it: passes one after the other, cut into batches.
    Augmentation draws come from a generator on the device seeded with (seed, rank, start).
    """

    def __init__(self, data: MemoryData, augmentation: Augmentation, *, batch_size: int, steps: int, start: int = 0,
                 seed: int = 0, rank: int = 0, world: int = 1):
        self.share = data.samples // world
        if self.share < 1:
            raise TrainerError(f"the data's {data.samples} samples do not reach {world} processes")
        self.data, self.augmentation, self.batch_size = data, augmentation, batch_size
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
            params = draw_params(self.augmentation, len(index), h, w, self.generator, device)
            images = apply_params(self.data.images[index], self.augmentation, params)
            yield {"image": images, "label": self.data.labels[index], "index": index}


def summary(data: MemoryData) -> dict[str, Any]:
    """What config.json records of the data held in memory."""
    n, c, h, w = data.images.shape
    return {"samples": n, "channels": c, "height": h, "width": w, "bytes": data.images.numel()}

