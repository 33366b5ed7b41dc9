"""The memory input: a small dataset decoded once into the training device's memory, augmented there in batches.

    decode_source     every sample of every shard, once -> one uint8 tensor [N, C, H, W] and the labels, on the
                      training device (grayscale stays one channel)
    decode_images     the same for a downstream split (at its own size: a 32 px image stays 32 px)
    epoch_order       pass p is a permutation of the dataset seeded with (seed, p), split between ranks, drawn
                      on the device
    BatchOrder        the sample indices of each batch: passes that drop their last partial batch, or run on
                      into each other (``pass_end``)
    MemoryLoader      ``steps`` batches ``{"image", "label", "index", "augment"}`` on the device: the held uint8
                      images and the random parameters of their augmentation (``device_augment``), which the
                      training step applies (inside its compiled graph, when it compiles)

Mixup/CutMix stay in the training step, as on the stream input.
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
from ..settings import PASS_ENDS
from .augment_draws import draw_params
from .device_augment import Augmentation
from .downstream import ImageList

if TYPE_CHECKING:  # the shard readers (webdataset, braceexpand) are imported only where shards are read
    from .shardlists import ShardList

# ``auto`` holds the data in memory when it takes less than this share of the device's free memory.
AUTO_SHARE = 0.25
# Images are held at their own size, as timm's RandomResizedCrop reads them, unless their shorter side passes this
# many times the training resolution (then downscaled once, as PIL does, at decode time): the paper's 512 px
# images are held whole for 224 px training, so that each crop is PIL's resize of the same pixels.
HOLD_FACTOR = 4


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


def epoch_order(samples: int, *, seed: int, epoch: int, rank: int = 0, world: int = 1,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """This rank's share of pass ``epoch``: a permutation seeded with (seed, epoch), cut to a multiple of
    ``world`` and dealt out, so that ranks are disjoint and equal.

    Drawn on ``device`` by a generator of that device: no permutation made on the host and copied over, no
    wait for the device. A CPU and a GPU draw different permutations from the same seed (their generators
    differ); every rank of a run draws on the same kind of device, so the ranks still agree.
    """
    device = torch.device(device)
    g = torch.Generator(device).manual_seed((seed * 1_000_003 + epoch) % 2**63)
    order = torch.randperm(samples, generator=g, device=device)
    return order[: samples - samples % world][rank::world]


def avoiding(order: torch.Tensor, carried: torch.Tensor, head: int, samples: int) -> torch.Tensor:
    """``order`` (a pass) with none of ``carried`` (dataset indices) in its first ``head`` places: each one
    there trades places with one of the first samples after the head that is not carried, in turn.

    This is how a batch that spans two passes (the end of one, ``carried``, and the ``head`` of the next)
    holds no sample twice. It needs ``len(order) - head >= len(carried)``; the draw stays a permutation, and
    it runs on the device with no wait for it (masks and prefix sums, no ``nonzero``).
    """
    n, device = len(order), order.device
    pos = torch.arange(n, device=device)
    is_carried = torch.zeros(samples, dtype=torch.bool, device=device).index_fill_(0, carried, True)[order]
    out = is_carried & (pos < head)  # carried samples in the head: they leave it
    into = ~is_carried & (pos >= head)  # the others after it: the first of them come in
    out_rank, into_rank = out.cumsum(0) - 1, into.cumsum(0) - 1
    # The place of the k-th of each kind at index k (the rest parked at n + place, out of the way).
    out_at = torch.zeros(2 * n, dtype=torch.long, device=device).scatter_(
        0, torch.where(out, out_rank, n + pos), pos)
    into_at = torch.zeros(2 * n, dtype=torch.long, device=device).scatter_(
        0, torch.where(into, into_rank, n + pos), pos)
    moves = into & (into_rank < out.sum())
    source = torch.where(out, into_at[out_rank.clamp(min=0)],
                         torch.where(moves, out_at[into_rank.clamp(min=0)], pos))
    return order[source]


class BatchOrder:
    """The sample indices of ``steps`` batches of ``batch_size`` from ``samples``, from step ``start`` of a run:
    this rank's share of each pass (``epoch_order``), drawn on ``device``.

    ``pass_end`` says how a pass ends. ``drop`` (the reference's): step t is batch ``t % per_pass`` of pass
    ``t // per_pass``, the last partial batch of a pass dropped. ``continue``: the passes follow one another
    and step t takes the rank's samples ``t * batch_size`` to ``(t + 1) * batch_size`` of that sequence, so
    every sample is seen once per pass; a batch that spans two passes holds no sample twice (the next pass's
    head is drawn to avoid the last one's tail, ``avoiding``). Either way a resumed run (``start``) continues
    the same sequence. A share smaller than a batch is read as the stream input reads it: passes one after
    the other, cut into batches (a batch then repeats samples: it must). Iterated, it gives lists (a
    DataLoader's ``batch_sampler``).
    """

    def __init__(self, samples: int, *, batch_size: int, steps: int, start: int = 0, seed: int = 0, rank: int = 0,
                 world: int = 1, pass_end: str = "drop", device: torch.device | str = "cpu"):
        self.share = samples // world
        if self.share < 1:
            raise TrainerError(f"the data's {samples} samples do not reach {world} processes")
        if pass_end not in PASS_ENDS:
            raise TrainerError(f"--pass-end must be one of {', '.join(PASS_ENDS)}, got {pass_end!r}")
        self.samples, self.batch_size, self.steps, self.start = samples, batch_size, steps, start
        self.seed, self.rank, self.world, self.pass_end, self.device = seed, rank, world, pass_end, device

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        return (index.tolist() for index in self.indices())

    def _order(self, epoch: int) -> torch.Tensor:
        return epoch_order(self.samples, seed=self.seed, epoch=epoch, rank=self.rank, world=self.world,
                           device=self.device)

    def indices(self) -> Iterator[torch.Tensor]:
        """The sample indices of each batch, in order: tensors on the device, made with no wait for it."""
        b, share = self.batch_size, self.share
        per_pass = share // b
        # Each pass's head depends on the last one's tail when passes run on into each other (and do not
        # end on a batch): those passes are made in order, from the first, also on a resumed run.
        chained = self.pass_end == "continue" and per_pass and share % b
        cache: dict[int, torch.Tensor] = {}

        def order(epoch: int) -> torch.Tensor:
            if epoch in cache:
                return cache[epoch]
            if not chained:
                if len(cache) > 2:  # passes are visited in order: keep only the last few
                    cache.clear()
                cache[epoch] = self._order(epoch)
                return cache[epoch]
            for e in range(max((k + 1 for k in cache if k < epoch), default=0), epoch + 1):
                cache[e] = self._order(e)
                tail = (e * share) % b  # samples of pass e - 1 in the batch that ends in pass e
                if e and tail:
                    cache[e] = avoiding(cache[e], cache[e - 1][share - tail:], b - tail, self.samples)
                cache.pop(e - 2, None)
            return cache[epoch]

        for step in range(self.start, self.start + self.steps):
            if per_pass and self.pass_end == "drop":
                e, k = divmod(step, per_pass)
                yield order(e)[k * b : (k + 1) * b]
            else:  # passes one after the other
                first, last = step * b, (step + 1) * b
                passes = range(first // share, (last - 1) // share + 1)
                if len(passes) == 1:
                    yield order(passes[0])[first - passes[0] * share : last - passes[0] * share]
                else:
                    yield torch.cat([order(e) for e in passes])[first - passes[0] * share :][:b]


class MemoryLoader:
    """``steps`` batches of ``batch_size`` from a ``MemoryData``, starting at step ``start`` of the run, in the
    order of ``BatchOrder`` (``pass_end``: how a pass ends), so a resumed run continues the same sequence of
    images. Augmentation draws come from a generator on the device seeded with (seed, rank, start).
    """

    def __init__(self, data: MemoryData, augmentation: Augmentation, *, batch_size: int, steps: int, start: int = 0,
                 seed: int = 0, rank: int = 0, world: int = 1, pass_end: str = "drop"):
        self.order = BatchOrder(data.samples, batch_size=batch_size, steps=steps, start=start, seed=seed, rank=rank,
                                world=world, pass_end=pass_end, device=data.images.device)
        self.share = self.order.share
        self.data, self.augmentation, self.batch_size = data, augmentation, batch_size
        self.steps, self.start, self.seed, self.rank, self.world = steps, start, seed, rank, world
        device = data.images.device
        self.generator = torch.Generator(device).manual_seed(seed * 7919 + rank * 104_729 + start)

    def __len__(self) -> int:
        return self.steps

    def indices(self) -> Iterator[torch.Tensor]:
        """The sample indices of each batch, in order (``BatchOrder``)."""
        return self.order.indices()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        _, _, h, w = self.data.images.shape
        device = self.data.images.device
        for index in self.indices():
            params = draw_params(self.augmentation, len(index), h, w, self.generator, device)
            yield {"image": self.data.images[index], "label": self.data.labels[index], "index": index,
                   "augment": params}


def summary(data: MemoryData) -> dict[str, Any]:
    """What config.json records of the data held in memory."""
    n, c, h, w = data.images.shape
    return {"samples": n, "channels": c, "height": h, "width": w, "bytes": data.images.numel()}

