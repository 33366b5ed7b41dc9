"""The pre-training input pipeline: shards -> samples -> augmented batches, as a chain of small stages.

    EpochShards            endless: pass p visits the shards in an order shuffled with (seed, p)
    read_samples           opens each shard (file or http), groups tar members into samples,
                           keeps this consumer's share of the pass, skips a corrupt shard with a warning
    shuffle_samples        a shuffle buffer of encoded samples, emptied at the end of every pass
    decode_samples         image bytes -> PIL image (grayscale stays one channel), ``cls`` -> int
    transform_samples      the training transform
    batch_samples          small batches (``WORKER_BATCH``) that never span two passes; each carries
                           its worker's problem log
    rebatch                in the main process: the workers' small batches, taken in turn, cut into
                           the rank's batches; a pass's last partial batch is dropped

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
stream. As in the reference's ``DistributedSampler`` + ``drop_last``, a batch never spans two passes:
with the paper's 1000 images and batch 256, every pass gives 3 batches of 256 distinct images and
drops the other 232 (different ones every pass). A pass too small for one batch is not dropped but
carried into the next.

The stream is endless and the loader is cut with ``with_epoch`` to the run's number of steps:
one set of workers lives for the whole run (the paper's dataset is 3 steps per epoch, so
restarting workers every epoch would cost more than the epoch). Every draw of pass p is seeded
with the seed, p and the consumer, never with where the stream started, so a stream started at
``start_pass`` (a resumed run) gives the same passes as the original stream from that pass on.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

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


def _read_samples(shards: Iterator[dict[str, Any]], problems: Problems) -> Iterator[dict[str, Any]]:
    position, epoch = 0, None
    for shard in shards:
        if shard["pass"] != epoch:
            position, epoch = 0, shard["pass"]
        url, share = shard["url"], shard["share"]
        if url in problems.shards:  # known to be damaged: do not pay for it again every pass
            if len(problems.shards) == shard["shards"]:
                return  # every shard is: end the stream rather than spin
            continue
        try:
            for sample in shard_samples(url):
                mine = share is None or sample_owner(share[0], epoch, share[2], position) == share[1]
                position += 1
                if mine:
                    sample["__pass__"] = epoch
                    yield sample
        except SHARD_ERRORS as e:
            problems.bad_shard(url, e)


def _shuffle_samples(samples: Iterator[dict], buffer: int, seed: int, rank: int) -> Iterator[dict]:
    worker = worker_slot()[0]
    for epoch, group in itertools.groupby(samples, key=lambda s: s["__pass__"]):
        if buffer <= 1:
            yield from group
            continue
        # Seeded by the pass alone (not by where the stream started), and emptied at its end, so a
        # pass's samples stay in that pass.
        rng = random.Random(f"{seed}/{epoch}/{rank}/{worker}")
        yield from wds.shuffle(buffer, initial=buffer, rng=rng)(group)


def _decode_samples(samples: Iterator[dict], problems: Problems) -> Iterator[tuple[Image.Image, int, str, int]]:
    for sample in samples:
        try:
            encoded, label = image_and_label(sample)
            image = open_image(encoded)
        except SAMPLE_ERRORS as e:
            problems.bad_sample(sample, e)
            continue
        yield image, label, sample["__key__"], sample["__pass__"]


def _transform_samples(samples: Iterator[tuple], transform: Callable) -> Iterator[tuple]:
    for image, *rest in samples:
        yield transform(image), *rest


def _batch_samples(samples: Iterator[tuple], batch_size: int, problems: Problems) -> Iterator[dict[str, Any]]:
    for epoch, group in itertools.groupby(samples, key=lambda s: s[3]):
        while chunk := list(itertools.islice(group, batch_size)):
            images, labels, keys, _ = zip(*chunk, strict=True)
            yield {"image": stack_images(images), "label": torch.tensor(labels), "key": list(keys), "pass": epoch,
                   "problems": problems.snapshot(worker_slot()[0])}


def _take(held: list[dict[str, Any]], n: int, pin_memory: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The first ``n`` samples of the small batches ``held`` as one batch, and the small batches left.

    Each image is copied once, straight into the batch (pinned if asked, for an asynchronous copy to the GPU).
    """
    first = held[0]["image"]
    channels = max(b["image"].shape[1] for b in held)  # gray and colour batches: copy_ repeats the gray channel
    images = torch.empty((n, channels, *first.shape[2:]), dtype=first.dtype, pin_memory=pin_memory)
    labels, keys, problems, filled = [], [], [], 0
    for i, b in enumerate(held):
        k = min(len(b["key"]), n - filled)
        images[filled:filled + k].copy_(b["image"][:k])
        labels.append(b["label"][:k])
        keys += b["key"][:k]
        problems.append(b["problems"])
        filled += k
        if filled == n:
            left = b["key"][k:]
            rest = [{**b, "image": b["image"][k:], "label": b["label"][k:], "key": left}] if left else []
            return ({"image": images, "label": torch.cat(labels), "key": keys, "pass": held[0]["pass"],
                     "problems": problems}, rest + held[i + 1:])
    raise ValueError(f"{filled} samples held, {n} asked for")


def _rebatch(small: Iterator[dict[str, Any]], batch_size: int, workers: int, pin_memory: bool
             ) -> Iterator[dict[str, Any]]:
    # The loader takes the workers' small batches in turn, so a batch holds an equal part of each
    # worker's share. A pass ends when every worker has sent a batch of a later pass; its partial
    # batch is dropped, unless the pass gave no full batch at all (then it is carried on).
    epoch, held, ahead, full = None, [], [], 0
    for b in small:
        if epoch is None:
            epoch = b["pass"]
        (held if b["pass"] == epoch else ahead).append(b)
        while ahead and len({a["problems"]["worker"] for a in ahead}) == workers:
            if full:
                held = []
            epoch, full = min(a["pass"] for a in ahead), 0
            held += [a for a in ahead if a["pass"] == epoch]
            ahead = [a for a in ahead if a["pass"] != epoch]
        while sum(len(h["key"]) for h in held) >= batch_size:
            batch, held = _take(held, batch_size, pin_memory)
            full += 1
            yield batch


read_samples = wds.pipelinefilter(_read_samples)
shuffle_samples = wds.pipelinefilter(_shuffle_samples)
decode_samples = wds.pipelinefilter(_decode_samples)
transform_samples = wds.pipelinefilter(_transform_samples)
batch_samples = wds.pipelinefilter(_batch_samples)
rebatch = wds.pipelinefilter(_rebatch)
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
) -> wds.DataPipeline:
    """One consumer's endless stream of small batches (``{"image", "label", "key", "pass", "problems"}``),
    none spanning two passes; ``create_loader`` rebatches them."""
    problems = Problems()  # one per process: each worker gets its own copy
    return wds.DataPipeline(
        EpochShards(urls, seed=seed, start_pass=start_pass, rank=rank, world=world),
        read_samples(problems),
        shuffle_samples(shuffle_buffer, seed, rank),
        decode_samples(problems),
        transform_samples(transform),
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
) -> wds.WebLoader:
    """A loader that yields exactly ``steps`` batches of ``batch_size`` (per rank) from ``source``."""
    producers = max(1, workers)
    small = max(1, min(WORKER_BATCH, batch_size // producers))
    pipeline = create_pipeline(source.urls, transform=transform, batch_size=small, seed=seed,
                               start_pass=start_pass, rank=rank, world=world, shuffle_buffer=shuffle_buffer)
    loader = wds.WebLoader(pipeline, batch_size=None, num_workers=workers, prefetch_factor=4 if workers else None,
                           persistent_workers=False,
                           worker_init_fn=worker_init_fn)
    # Rebatched in this process (and pinned there: the batch is a new tensor). with_epoch on the
    # loader, not on the dataset: on the dataset it would count per worker.
    loader = loader.compose(rebatch(batch_size, producers, pin_memory))
    return loader.with_epoch(steps).with_length(steps, silent=True)


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
