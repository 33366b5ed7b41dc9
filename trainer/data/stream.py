"""The pre-training input pipeline: shards -> samples -> augmented batches, as a chain of small stages.

    EpochShards            endless: pass p visits the shards in an order shuffled with (seed, p)
    read_samples           opens each shard (file or http), groups tar members into samples,
                           keeps this consumer's share of the pass, skips a corrupt shard with a warning
    shuffle_samples        a shuffle buffer of encoded samples, emptied at the end of every pass; numbers
                           the samples of a pass in the order it lets them out
    skip_consumed          on a resumed stream, drops (undecoded) what the original stream's batches took
    decode_samples         image bytes -> PIL image (grayscale stays one channel), ``cls`` -> int
    transform_samples      the training transform, its random draws seeded by (seed, pass, sample)
    batch_samples          small batches (``WORKER_BATCH``) that never span two passes; each carries
                           its worker's problem log
    Rebatch                in the main process: the workers' small batches, taken in turn, cut into
                           the rank's batches; a pass's last partial batch is dropped, or filled from the
                           next pass (``pass_end``, ``rebatch``)

A *consumer* is one DataLoader worker of one rank (consumer ``rank * workers + worker`` of
``world * workers``; rank and world size are passed in, never guessed). Pass p hands every sample
to exactly one consumer, drawn with (seed, p): whole shards when the shards split evenly over the
consumers (shard i of the pass's shuffled order to consumer i mod n), otherwise single samples
(every consumer reads every shard; of each run of n samples, a seeded permutation gives one to each
consumer). Either way the shares are disjoint, change every pass and differ in size by at most a
shard, so every stream is endless, every rank makes the same number of steps and DDP cannot hang.

A batch mixes the whole dataset: each worker's share of a pass is shuffled (the whole share when it
fits the buffer), and the main process builds every batch from all workers' small batches in turn
(webdataset's own idiom: batch in the workers, rebatch in the loader), instead of one worker's
stream. With ``pass_end`` ``drop``, as in the reference's ``DistributedSampler`` + ``drop_last``, a batch
never spans two passes: with the paper's 1000 images and batch 256, every pass gives 3 batches of 256
distinct images and drops the other 232 (different ones every pass); a pass too small for one batch is
not dropped but carried into the next. With ``continue`` a pass's last partial batch is filled from the
next pass (no sample twice in it), so every sample is seen once per pass.

The stream is endless and the loader is cut with ``with_epoch`` to the run's number of steps:
one set of workers lives for the whole run (the paper's dataset is 3 steps per epoch, so
restarting workers every epoch would cost more than the epoch). Every draw of pass p is seeded
with the seed, p and the consumer (the augmentation's with the sample too), never with where the
stream started or with a worker's history, so no worker holds a state worth saving: a stream
started at ``start_pass`` gives the same passes as the original stream from that pass on, and one
started at a ``Rebatch`` position (a resumed run) gives the very batches that followed it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from .rebatch import END, Rebatch, taken
from .shardlists import ShardList
from .shards import SAMPLE_ERRORS, SHARD_ERRORS, Problems, image_and_label, open_image, shard_samples
from .transforms import stack_images


def worker_slot() -> tuple[int, int]:
    """``(worker id, number of workers)`` of the DataLoader worker running this code; (0, 1) outside one."""
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class EpochShards(IterableDataset):
    """This consumer's endless shard stream, one dict ``{"url", "pass", "share", "shards"}`` per shard visit.

    ``share``: None to keep every sample of the shard, else ``(seed, consumer, consumers)``: keep the
    samples that ``sample_owner`` gives to this consumer. ``shards``: how many there are in all.
    """

    def __init__(self, urls: Iterable[str], *, seed: int = 0, start_pass: int = 0, rank: int = 0, world: int = 1):
        self.urls, self.seed, self.start_pass, self.rank, self.world = list(urls), seed, start_pass, rank, world

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, workers = worker_slot()
        consumer, consumers = self.rank * workers + worker, self.world * workers
        by_shard = len(self.urls) % consumers == 0
        for epoch in itertools.count(self.start_pass):
            order = list(self.urls)
            random.Random(f"{self.seed}/{epoch}").shuffle(order)  # the same order in every consumer
            if by_shard:
                for url in order[consumer::consumers]:
                    yield {"url": url, "pass": epoch, "share": None, "shards": len(order)}
            else:
                for url in order:
                    yield {"url": url, "pass": epoch, "share": (self.seed, consumer, consumers), "shards": len(order)}


@functools.lru_cache(maxsize=8)
def _block_owners(seed: int, epoch: int, consumers: int, block: int) -> tuple[int, ...]:
    return tuple(random.Random(f"{seed}/{epoch}/{block}").sample(range(consumers), consumers))


def sample_owner(seed: int, epoch: int, consumers: int, position: int) -> int:
    """The consumer of the sample at ``position`` of pass ``epoch`` (counted over the pass's shards in
    order): each run of ``consumers`` samples gives one to every consumer, in a seeded order."""
    block, at = divmod(position, consumers)
    return _block_owners(seed, epoch, consumers, block)[at]


def _owned(share: tuple[int, int, int] | None, epoch: int, start: int, stop: int) -> int:
    """How many of the pass's positions ``start`` to ``stop`` are this consumer's."""
    if share is None:
        return stop - start
    return sum(sample_owner(share[0], epoch, share[2], p) == share[1] for p in range(start, stop))


def _read_samples(shards: Iterator[dict[str, Any]], problems: Problems,
                  records: Mapping[str, tuple[int, str]] | None = None) -> Iterator[dict[str, Any]]:
    # ``records``: each shard's (samples, sha256) from the manifest: the digest checks the bytes read, the count
    # says how many samples a damaged shard leaves out (and keeps the later shards' positions where a whole
    # pass would put them).
    records = records or {}
    position, epoch = 0, None
    for shard in shards:
        if shard["pass"] != epoch:
            position, epoch = 0, shard["pass"]
        url, share = shard["url"], shard["share"]
        count, sha256 = records.get(url, (None, None))
        if url in problems.shards:  # known to be damaged: do not pay for it again every pass
            if len(problems.shards) == shard["shards"]:
                return  # every shard is: end the stream rather than spin
            if count is not None:
                problems.skipped(_owned(share, epoch, position, position + count))
                position += count
            continue
        start = position
        try:
            for sample in shard_samples(url, problems, sha256):
                mine = share is None or sample_owner(share[0], epoch, share[2], position) == share[1]
                position += 1
                if mine:
                    sample["__pass__"] = epoch
                    yield sample
        except SHARD_ERRORS as e:
            # What the shard held past the damage, as far as the manifest says (none past a digest mismatch:
            # its samples were handed over before the end of the shard showed it).
            rest = _owned(share, epoch, position, start + count) if count is not None and start + count > position \
                else 0
            problems.bad_shard(url, e, rest)
            if count is not None:
                position = max(position, start + count)


def _shuffle_samples(samples: Iterator[dict], buffer: int, seed: int, rank: int) -> Iterator[dict]:
    worker = worker_slot()[0]
    for epoch, group in itertools.groupby(samples, key=lambda s: s["__pass__"]):
        # Seeded by the pass alone (not by where the stream started), and emptied at its end, so a
        # pass's samples stay in that pass.
        rng = random.Random(f"{seed}/{epoch}/{rank}/{worker}")
        shuffled = wds.shuffle(buffer, initial=buffer, rng=rng) if buffer > 1 else iter
        for order, sample in enumerate(shuffled(group)):
            sample["__order__"] = order
            yield sample


def _skip_consumed(samples: Iterator[dict], position: dict[str, Any] | None) -> Iterator[dict]:
    # Before decoding: what a resumed stream skips costs its reading, not its decoding and augmenting.
    worker = worker_slot()[0]
    for sample in samples:
        if not taken(position, sample["__pass__"], worker, sample["__order__"]):
            yield sample


def _decode_samples(samples: Iterator[dict], problems: Problems) -> Iterator[tuple]:
    """``(image, label, key, pass, order, shard file name)`` of each readable sample."""
    for sample in samples:
        try:
            encoded, label = image_and_label(sample)
            image = open_image(encoded)
        except SAMPLE_ERRORS as e:
            problems.bad_sample(sample, e)
            continue
        yield (image, label, sample["__key__"], sample["__pass__"], sample.get("__order__", 0),
               os.path.basename(sample.get("__url__", "")))


@contextlib.contextmanager
def seeded(text: str, device: torch.device | None = None) -> Iterator[None]:
    """Python's, numpy's and torch's global generators (the CPU's, and ``device``'s if a GPU) seeded from ``text``
    inside the block, and put back after it (the training process's own draws go on as if it had not run)."""
    generators = [torch.random.default_generator]
    if device is not None and device.type == "cuda":
        generators.append(torch.cuda.default_generators[device.index if device.index is not None
                                                        else torch.cuda.current_device()])
    saved = random.getstate(), np.random.get_state(), [g.get_state() for g in generators]
    random.seed(text)
    np.random.seed(random.getrandbits(32))
    for g in generators:
        g.manual_seed(random.getrandbits(63))
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        for g, state in zip(generators, saved[2], strict=True):
            g.set_state(state)


class SeededTail:
    """A batch tail (normalisation, random erasing on the device) whose draws for the batch of step ``t`` are
    seeded by (seed, rank, t): on a GPU the next batch's tail runs while this one trains, so drawing from the
    run's generators would tie its draws to where the run was cut."""

    def __init__(self, tail: Callable, *, seed: int, rank: int, start: int, device: torch.device):
        self.tail, self.seed, self.rank, self.step, self.device = tail, seed, rank, start, device

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.step += 1
        with seeded(f"{self.seed}/{self.rank}/{self.step}", self.device):
            return self.tail(images)


def _transform_samples(samples: Iterator[tuple], transform: Callable, seed: int) -> Iterator[tuple]:
    # timm's transforms draw from the global generators (random, numpy, torch). Seeded by the sample and
    # its pass, they draw the same whichever worker runs them and whatever came before, so nothing of a
    # worker needs saving for a resumed run to draw what the uninterrupted one drew.
    for image, label, key, epoch, order, shard in samples:
        with seeded(f"{seed}/{epoch}/{shard}/{key}"):
            image = transform(image)
        yield image, label, key, epoch, order


def _batch_samples(samples: Iterator[tuple], batch_size: int, problems: Problems) -> Iterator[dict[str, Any]]:
    worker = worker_slot()[0]
    for epoch, group in itertools.groupby(samples, key=lambda s: s[3]):
        while chunk := list(itertools.islice(group, batch_size)):
            images, labels, keys, _, orders = zip(*chunk, strict=True)
            yield {"image": stack_images(images), "label": torch.tensor(labels), "key": list(keys),
                   "order": list(orders), "pass": epoch, "problems": problems.snapshot(worker)}
    # The stream ended (every shard unreadable): ``Rebatch`` stops waiting for this worker.
    yield {"image": None, "label": None, "key": [], "order": [], "pass": END, "problems": problems.snapshot(worker)}


read_samples = wds.pipelinefilter(_read_samples)
shuffle_samples = wds.pipelinefilter(_shuffle_samples)
skip_consumed = wds.pipelinefilter(_skip_consumed)
decode_samples = wds.pipelinefilter(_decode_samples)
transform_samples = wds.pipelinefilter(_transform_samples)
batch_samples = wds.pipelinefilter(_batch_samples)
# Samples per batch a worker sends: small, so that every batch takes part of every worker's share.
WORKER_BATCH = 32


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
    position: dict[str, Any] | None = None,
    records: Mapping[str, tuple[int, str]] | None = None,
) -> wds.DataPipeline:
    """One consumer's endless stream of small batches (``{"image", "label", "key", "order", "pass",
    "problems"}``), none spanning two passes; ``create_loader`` rebatches them. ``position`` (a ``Rebatch``
    position, whose pass is ``start_pass``): skip what it says was taken. ``records``: each shard's (samples,
    sha256) by URL, as the manifest lists them."""
    problems = Problems()  # one per process: each worker gets its own copy
    return wds.DataPipeline(
        EpochShards(urls, seed=seed, start_pass=start_pass, rank=rank, world=world),
        read_samples(problems, records),
        shuffle_samples(shuffle_buffer, seed, rank),
        skip_consumed(position),
        decode_samples(problems),
        transform_samples(transform, seed),
        batch_samples(batch_size, problems),
    )


def create_loader(
    source: ShardList,
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
    position: dict[str, Any] | None = None,
    pass_end: str = "drop",
) -> wds.WebLoader:
    """A loader that yields exactly ``steps`` batches of ``batch_size`` (per rank) from ``source``; its
    ``rebatch.position()`` says where the batches handed out so far end, and a loader made with that
    ``position`` (and the same settings) continues with the batches that came next."""
    producers = max(1, workers)
    small = max(1, min(WORKER_BATCH, batch_size // producers))
    if position is not None:
        start_pass = position["pass"]
    pipeline = create_pipeline(source.urls, transform=transform, batch_size=small, seed=seed,
                               start_pass=start_pass, rank=rank, world=world, shuffle_buffer=shuffle_buffer,
                               position=position, records={u: (n, sha) for u, n, sha in source.records})
    # A generator of its own: the loader draws its workers' base seed from it instead of from the run's
    # torch generator, which a resumed run puts back as it was.
    loader = wds.WebLoader(pipeline, batch_size=None, num_workers=workers, prefetch_factor=4 if workers else None,
                           persistent_workers=False, worker_init_fn=worker_init_fn,
                           generator=torch.Generator().manual_seed(seed))
    # Rebatched in this process (and pinned there: the batch is a new tensor). with_epoch on the
    # loader, not on the dataset: on the dataset it would count per worker.
    rebatch = Rebatch(batch_size, producers, small, pin_memory=pin_memory, position=position, pass_end=pass_end)
    loader = loader.compose(rebatch).with_epoch(steps).with_length(steps, silent=True)
    loader.rebatch = rebatch
    return loader


class ProblemLog:
    """The union of the problem logs that batches carry, over every worker of this rank."""

    def __init__(self):
        self.by_worker: dict[int, dict] = {}

    def update(self, snapshots: dict[str, Any] | Iterable[dict[str, Any]]) -> None:
        """Take a batch's ``problems``: one worker's snapshot, or a list of them (oldest first)."""
        for snapshot in [snapshots] if isinstance(snapshots, dict) else snapshots:
            self.by_worker[snapshot["worker"]] = snapshot

    @property
    def shards(self) -> set[str]:
        return {url for s in self.by_worker.values() for url in s["shards"]}

    @property
    def samples(self) -> int:
        return sum(s["samples"] for s in self.by_worker.values())

    @property
    def retries(self) -> int:
        return sum(s.get("retries", 0) for s in self.by_worker.values())
