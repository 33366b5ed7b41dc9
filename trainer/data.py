"""The pre-training input pipeline: shards -> samples -> augmented batches, as a chain of small stages.

    EpochShards            endless: pass p visits the shards in an order shuffled with (seed, p)
    read_samples           opens each shard (file or http), groups tar members into samples,
                           keeps this consumer's share, skips a corrupt shard with a warning
    shuffle_samples        a shuffle buffer of encoded samples, seeded per consumer
    decode_samples         image bytes -> PIL image (grayscale stays one channel), ``cls`` -> int
    transform_samples      the training transform
    batch_samples          stacks tensors; each batch carries its worker's problem log

A *consumer* is one DataLoader worker of one rank. Ranks split the shards explicitly (rank and
world size are passed in, never guessed), then each rank's workers split its share. A split by
shards is used only when it is even, so that every shard is drawn equally often; otherwise
(fewer shards than consumers, or a count that does not divide) every consumer reads the shards
and keeps every n-th sample. Either way consumers never see the same sample in a pass and the
streams never run dry, so every rank makes the same number of steps and DDP cannot hang.

The stream is endless and the loader is cut with ``with_epoch`` to the run's number of steps:
one set of workers lives for the whole run (the paper's dataset is 3 steps per epoch, so
restarting workers every epoch would cost more than the epoch), and the shard order still
changes every pass because the pass number is part of the shuffle seed.
"""

from __future__ import annotations

import http.client
import io
import itertools
import json
import random
import sys
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.tariterators import base_plus_ext

from .sources import ShardSource, open_url

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp")
# What reading a damaged shard can raise: tar structure, truncation, network, compression, labels.
SHARD_ERRORS = (tarfile.TarError, OSError, EOFError, http.client.HTTPException, zlib.error, ValueError)


def worker_slot() -> tuple[int, int]:
    """``(worker id, number of workers)`` of the DataLoader worker running this code; (0, 1) outside one."""
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class Problems:
    """Corrupt shards and undecodable samples met by one consumer; warns once per shard."""

    def __init__(self):
        self.shards: dict[str, str] = {}
        self.samples = 0

    def bad_shard(self, url: str, error: BaseException) -> None:
        if url not in self.shards:
            self.shards[url] = f"{type(error).__name__}: {error}"
            sys.stderr.write(f"Warning: skipping corrupt shard {url} ({self.shards[url]})\n")

    def bad_sample(self, sample: dict, error: BaseException) -> None:
        self.samples += 1
        self.bad_shard(sample.get("__url__", "?"), ValueError(f"sample {sample.get('__key__')}: {error}"))

    def snapshot(self) -> dict[str, Any]:
        return {"worker": worker_slot()[0], "shards": tuple(sorted(self.shards)), "samples": self.samples}


class EpochShards(IterableDataset):
    """This consumer's endless shard stream, one dict ``{"url", "stride", "offset"}`` per shard visit.

    ``stride``/``offset``: of the samples read in order, keep those at positions ``offset (mod stride)``.
    """

    def __init__(self, urls: Iterable[str], *, seed: int = 0, start_pass: int = 0, rank: int = 0, world: int = 1):
        self.urls, self.seed, self.start_pass, self.rank, self.world = list(urls), seed, start_pass, rank, world

    def plan(self, worker: int, workers: int) -> tuple[list[str], bool, int, int]:
        """``(shards, split_by_shard_within_rank, stride, offset)`` for one consumer."""
        if len(self.urls) % self.world == 0:
            mine, stride, offset = self.urls[self.rank :: self.world], 1, 0
        else:
            mine, stride, offset = self.urls, self.world, self.rank
        if len(mine) % workers == 0:
            return mine, True, stride, offset
        return mine, False, stride * workers, offset + stride * worker

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, workers = worker_slot()
        mine, by_shard, stride, offset = self.plan(worker, workers)
        for epoch in itertools.count(self.start_pass):
            order = list(mine)
            random.Random(f"{self.seed}/{epoch}").shuffle(order)  # same order on every worker of the rank
            for url in order[worker::workers] if by_shard else order:
                yield {"url": url, "stride": stride, "offset": offset, "pass": epoch}


def group_samples(files: Iterator[dict[str, Any]], url: str) -> Iterator[dict[str, Any]]:
    """Consecutive tar members with the same key (the name up to the first dot) as one sample."""
    sample: dict[str, Any] = {}
    for f in files:
        key, ext = base_plus_ext(f["fname"])
        if key is None:
            continue
        if sample and key != sample["__key__"]:
            yield sample
            sample = {}
        sample.setdefault("__key__", key)
        sample["__url__"] = url
        sample[ext.lower()] = f["data"]
    if sample:
        yield sample


def tar_members(stream) -> Iterator[dict[str, Any]]:
    """``{"fname", "data"}`` of each file in a tar stream. tarfile takes a damaged header for the end
    of the archive and drops the rest unnoticed; here reading goes past it, and the gap it leaves
    (or a stream with no member at all) is an error, so the shard is counted as damaged."""
    end = 0
    with tarfile.open(fileobj=stream, mode="r|", ignore_zeros=True) as tar:
        for info in tar:
            if info.offset != end:
                raise tarfile.ReadError(f"damaged tar header at byte {end}")
            end = info.offset_data + -(-info.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            if info.isreg():
                yield {"fname": info.name, "data": tar.extractfile(info).read()}
            tar.members = []  # a stream: keep no index
    if end == 0:
        raise tarfile.ReadError("no tar member: not a tar file")


def shard_samples(url: str) -> Iterator[dict[str, Any]]:
    """The samples of one shard (a path or an http(s) URL), as dicts of raw bytes by extension."""
    with open_url(url) as stream:
        yield from group_samples(tar_members(stream), url)


def image_and_label(sample: dict[str, Any]) -> tuple[bytes, int]:
    """A sample's encoded image and its ``cls`` label; ValueError if it lacks either."""
    ext = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
    if ext is None:
        raise ValueError(f"sample {sample.get('__key__')} has no image ({', '.join(IMAGE_EXTENSIONS)})")
    if "cls" not in sample:
        raise ValueError(f"sample {sample.get('__key__')} has no .cls label")
    label = int(sample["cls"])
    if "json" in sample:  # fracbuild's metadata repeats the class: a damaged label byte shows as a mismatch
        meta = json.loads(sample["json"])
        recorded = meta.get("class", label) if isinstance(meta, dict) else label
        if recorded != label:
            raise ValueError(f"sample {sample.get('__key__')}: .cls {label} but .json class {recorded}")
    return sample[ext], label


def _read_samples(shards: Iterator[dict[str, Any]], problems: Problems) -> Iterator[dict[str, Any]]:
    position = 0
    for shard in shards:
        url = shard["url"]
        if url in problems.shards:  # known to be damaged: do not pay for it again every pass
            continue
        try:
            for sample in shard_samples(url):
                keep = position % shard["stride"] == shard["offset"]
                position += 1
                if keep:
                    yield sample
        except SHARD_ERRORS as e:
            problems.bad_shard(url, e)


def _shuffle_samples(samples: Iterator[dict], buffer: int, seed: int, rank: int) -> Iterator[dict]:
    if buffer <= 1:
        yield from samples
        return
    rng = random.Random(f"{seed}/{rank}/{worker_slot()[0]}")
    yield from wds.shuffle(buffer, initial=buffer, rng=rng)(samples)


def _decode_samples(samples: Iterator[dict], problems: Problems) -> Iterator[tuple[Image.Image, int, str]]:
    for sample in samples:
        try:
            encoded, label = image_and_label(sample)
            image = Image.open(io.BytesIO(encoded))
            image.load()
        except (ValueError, OSError, SyntaxError, Image.DecompressionBombError) as e:
            problems.bad_sample(sample, e)
            continue
        yield image, label, sample["__key__"]


def _transform_samples(samples: Iterator[tuple], transform: Callable) -> Iterator[tuple]:
    for image, label, key in samples:
        yield transform(image), label, key


def _batch_samples(samples: Iterator[tuple], batch_size: int, problems: Problems) -> Iterator[dict[str, Any]]:
    batch = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == batch_size:
            images, labels, keys = zip(*batch, strict=True)
            yield {"image": torch.stack(images), "label": torch.tensor(labels), "key": list(keys),
                   "problems": problems.snapshot()}
            batch = []


read_samples = wds.pipelinefilter(_read_samples)
shuffle_samples = wds.pipelinefilter(_shuffle_samples)
decode_samples = wds.pipelinefilter(_decode_samples)
transform_samples = wds.pipelinefilter(_transform_samples)
batch_samples = wds.pipelinefilter(_batch_samples)


def create_pipeline(
    urls: Iterable[str],
    *,
    transform: Callable,
    batch_size: int,
    seed: int = 0,
    start_pass: int = 0,
    rank: int = 0,
    world: int = 1,
    shuffle_buffer: int = 1000,
) -> wds.DataPipeline:
    """The endless stream of one rank's batches (``{"image", "label", "key", "problems"}``)."""
    problems = Problems()  # one per process: each worker gets its own copy
    return wds.DataPipeline(
        EpochShards(urls, seed=seed, start_pass=start_pass, rank=rank, world=world),
        read_samples(problems),
        shuffle_samples(shuffle_buffer, seed + start_pass, rank),
        decode_samples(problems),
        transform_samples(transform),
        batch_samples(batch_size, problems),
    )


def create_loader(
    source: ShardSource,
    *,
    transform: Callable,
    batch_size: int,
    steps: int,
    workers: int = 0,
    seed: int = 0,
    start_pass: int = 0,
    rank: int = 0,
    world: int = 1,
    shuffle_buffer: int = 1000,
    pin_memory: bool = False,
    worker_init_fn: Callable[[int], None] | None = None,
) -> wds.WebLoader:
    """A loader that yields exactly ``steps`` batches of ``batch_size`` (per rank) from ``source``."""
    pipeline = create_pipeline(source.urls, transform=transform, batch_size=batch_size, seed=seed,
                               start_pass=start_pass, rank=rank, world=world, shuffle_buffer=shuffle_buffer)
    loader = wds.WebLoader(pipeline, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                           prefetch_factor=4 if workers else None, persistent_workers=False,
                           worker_init_fn=worker_init_fn)
    # with_epoch on the loader, not on the dataset: on the dataset it would count per worker.
    return loader.with_epoch(steps).with_length(steps, silent=True)


class ProblemLog:
    """The union of the problem logs that batches carry, over every worker of this rank."""

    def __init__(self):
        self.by_worker: dict[int, dict] = {}

    def update(self, snapshot: dict[str, Any]) -> None:
        self.by_worker[snapshot["worker"]] = snapshot

    @property
    def shards(self) -> set[str]:
        return {url for s in self.by_worker.values() for url in s["shards"]}

    @property
    def samples(self) -> int:
        return sum(s["samples"] for s in self.by_worker.values())
