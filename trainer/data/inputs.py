"""The one input interface: whatever holds the data, a training loop takes its batches the same way.

    create_train_input   the input of a run (``--input stream|memory|auto``) over shards or a downstream split
    TrainInput           its batches ``{"image", "label"}`` on the training device, from any step of the run;
                         what was chosen and why (for ``config.json``); damaged shards met; its random state
    create_eval_input    a test split's batches through the evaluation transform, on the device

Two kinds stand behind it, for shards and for downstream splits alike. ``stream``: samples decoded and
augmented by timm's transforms in CPU loader workers (``stream``'s pipeline over shards of any size, or a
DataLoader over a downstream split), handed over as uint8 batches, copied to the device (on a side CUDA
stream, a batch ahead) and finished there (``transforms.BatchTail``: float, normalisation, random erasing).
``memory``: the whole set decoded once onto the device (``memory``) and augmented there in batches
(``device_augment``). ``auto`` takes memory when the decoded set fits comfortably.
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from ..distributed import Dist, plan_cores
from ..errors import TrainerError
from ..settings import INPUTS
from ..signals import leave_stops_to_parent
from .device_augment import Augmentation, DeviceAugment
from .device_eval import eval_images
from .downstream import ImageList
from .memory import (
    AUTO_SHARE,
    BatchOrder,
    MemoryData,
    MemoryLoader,
    MixedSizes,
    decode_images,
    decode_source,
    free_memory,
    held_bytes,
    summary,
)
from .transforms import BatchTail, eval_tail, eval_transform, mean_std, stack_images, train_tail, train_transform

if TYPE_CHECKING:  # the shard readers (webdataset, braceexpand) are imported only where shards are read
    from .shardlists import ShardList


class TrainInput(ABC):
    """A run's training input: ``batches`` for the loop, and what the run records of it."""

    kind: str  # one of INPUTS, "auto" aside
    samples: int | None  # samples in one pass (None: unknown until read)
    workers: int  # loader worker processes of this process
    threads: int  # torch threads that leave the workers their cores
    why: str  # why this kind
    # The augmentation the training step applies on the device, to batches that carry its parameters
    # (``batch["augment"]``): the memory input's; None where batches come finished.
    augment: torch.nn.Module | None = None

    @abstractmethod
    def batches(self, *, batch_size: int, steps: int, start: int = 0, steps_per_epoch: int | None = None,
                state: dict[str, Any] | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """``steps`` batches of ``batch_size`` (this process's) ``{"image", "label"}`` on the device (and
        ``"augment"``, the parameters of ``augment``, where the images are still to be augmented), continuing
        a run at step ``start``; ``state``, one that ``state`` returned, continues its random draws exactly."""

    def state(self) -> dict[str, Any] | None:
        """The random state to save for an exact resume; None where a resumed run draws afresh."""
        return None

    def problems(self) -> tuple[set[str], int, int]:
        """The damaged shards, the unreadable samples and the reconnections to shards met so far."""
        return set(), 0, 0

    def describe(self) -> dict[str, Any]:
        """What ``config.json`` records of the input."""
        return {"input_used": self.kind, "input_why": self.why, "workers_per_process": self.workers,
                "threads": self.threads, "held_in_memory": None}


class StreamInput(TrainInput):
    """Shards through ``stream``'s pipeline, or a downstream split through a DataLoader: decoded and augmented
    by timm's transforms in CPU workers up to uint8, finished on the device (``BatchTail``)."""

    kind = "stream"

    def __init__(self, data: ShardList | ImageList, config: Mapping[str, Any], d: Dist, *, why: str,
                 num_classes: int | None = None, tail_on_device: bool = True):
        self.data, self.config, self.d, self.why, self.num_classes = data, config, d, why, num_classes
        self.samples = len(data) if isinstance(data, ImageList) else data.samples
        self.workers, self.threads = plan_cores(d.device.type, loader=True, workers=config["workers"])
        # tail_on_device=False: the whole transform in the workers, as before the tail moved (for comparison)
        self.transform = train_transform(config, use_prefetcher=tail_on_device)
        self.tail = train_tail(config, d.device) if tail_on_device else _to_float
        self.log = self.loader = self.position = None
        self.layout: dict[str, int] = {}

    def batches(self, *, batch_size, steps, start=0, steps_per_epoch=None, state=None):
        if isinstance(self.data, ImageList):
            return on_device(self._dataset_batches(batch_size, steps, start), self.d.device, self.tail, self._check)
        from .stream import ProblemLog, SeededTail, create_loader

        self.log = ProblemLog()
        # What the stream's batches depend on besides the seed and the data: a saved position holds only
        # for the same.
        self.layout = {"world": self.d.world, "workers": self.workers, "batch_size": batch_size,
                       "shuffle_buffer": self.config["shuffle_buffer"], "seed": self.config["seed"]}
        position = None
        if state is not None and state.get("layout") == self.layout:
            position = state["position"]
        elif state is not None:
            changed = ", ".join(f"{k} {state['layout'].get(k)} -> {v}" for k, v in self.layout.items()
                                if state["layout"].get(k) != v)
            if self.d.main:
                sys.stderr.write(f"Warning: the stream was saved with other settings ({changed}): the run goes on "
                                 "from the start of its pass, not with the batches the uncut run would have had\n")
        self.loader = create_loader(self.data, transform=self.transform, batch_size=batch_size, steps=steps,
                                    workers=self.workers, seed=self.config["seed"],
                                    start_pass=int(start // steps_per_epoch) if steps_per_epoch else start,
                                    rank=self.d.rank, world=self.d.world, shuffle_buffer=self.config["shuffle_buffer"],
                                    pin_memory=self.d.device.type == "cuda", worker_init_fn=leave_stops_to_parent,
                                    position=position, pass_end=self.config.get("pass_end", "drop"))
        tail = SeededTail(self.tail, seed=self.config["seed"], rank=self.d.rank, start=start, device=self.d.device)
        return self._handed_out(self.loader, tail)

    def _handed_out(self, loader, tail) -> Iterator[dict[str, torch.Tensor]]:
        # ``on_device`` may hold a batch ahead (on a GPU): the position is that of the batch the loop gets.
        positions: deque[dict] = deque()

        def noting(batches):
            for batch in batches:
                positions.append(batch["position"])
                yield batch

        for batch in on_device(noting(loader), self.d.device, tail, self._check):
            self.position = positions.popleft()
            yield batch

    def state(self):
        # Where the batches handed out end: the workers hold nothing else (their draws are seeded by sample).
        return {"position": self.position, "layout": self.layout} if self.position is not None else None

    def _dataset_batches(self, batch_size: int, steps: int, start: int = 0) -> Iterator[dict]:
        """A downstream split's batches, epoch after epoch (each a new permutation), ``steps`` in all; with
        ``pass_end`` ``continue``, in the memory input's order from step ``start`` (``batch_indices``)."""
        d, seed = self.d, self.config["seed"]
        dataset = self.data.with_transform(self.transform)
        if self.config.get("pass_end", "drop") == "continue":
            order = BatchOrder(len(dataset), batch_size=batch_size, steps=steps, start=start, seed=seed, rank=d.rank,
                               world=d.world, pass_end="continue")
            for images, labels in DataLoader(dataset, batch_sampler=order, **_loader_options(self.workers, d)):
                yield {"image": images, "label": labels}
            return
        if d.world > 1:
            sampler = DistributedSampler(dataset, num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed,
                                         drop_last=True)
        else:
            sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True,
                            **_loader_options(self.workers, d))
        done, epoch = 0, 0
        while done < steps:
            if isinstance(sampler, DistributedSampler):
                sampler.set_epoch(epoch)
            for images, labels in loader:
                yield {"image": images, "label": labels}
                done += 1
                if done == steps:
                    return
            epoch += 1

    def _check(self, batch: dict[str, Any]) -> None:
        """A batch's labels against the class count, and its problem log, on the host."""
        if self.log is not None:
            self.log.update(batch["problems"])
        labels = batch["label"]
        if self.num_classes is not None and (labels.max().item() >= self.num_classes or labels.min().item() < 0):
            bad = labels[(labels >= self.num_classes) | (labels < 0)][0].item()
            raise TrainerError(f"label {bad} in the data is outside [0, {self.num_classes}): the class count "
                               "does not match the data")

    def problems(self):
        return (self.log.shards, self.log.samples, self.log.retries) if self.log is not None else (set(), 0, 0)


def on_device(batches: Iterable[dict[str, Any]], device: torch.device, tail: BatchTail,
              check: Callable[[dict[str, Any]], None] | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """uint8 batches from CPU workers -> ``{"image", "label"}`` on ``device``, the images finished by ``tail``.

    On a GPU the copy and the tail of the next batch run on a side stream while the current batch trains
    (timm's ``PrefetchLoader``); ``check`` sees each batch on the host first.
    """
    if device.type != "cuda":
        for batch in batches:
            if check is not None:
                check(batch)
            yield {"image": tail(batch["image"]), "label": batch["label"]}
        return
    side, pending = torch.cuda.Stream(device=device), None
    for batch in batches:
        if check is not None:
            check(batch)
        with torch.cuda.stream(side):
            ready = {"image": tail(batch["image"].to(device, non_blocking=True)),
                     "label": batch["label"].to(device, non_blocking=True)}
        if pending is not None:
            yield pending
        torch.cuda.current_stream(device).wait_stream(side)
        for t in ready.values():
            t.record_stream(torch.cuda.current_stream(device))  # made on the side stream, used on this one
        pending = ready
    if pending is not None:
        yield pending


class MemoryInput(TrainInput):
    """A dataset held on the training device (``memory``), augmented there in batches (``device_augment``)."""

    kind = "memory"

    def __init__(self, held: MemoryData, config: Mapping[str, Any], d: Dist, *, why: str,
                 num_classes: int | None = None):
        if num_classes is not None:
            bad = held.labels[(held.labels < 0) | (held.labels >= num_classes)]
            if bad.numel():
                raise TrainerError(f"label {bad[0].item()} in the data is outside [0, {num_classes}): the class "
                                   "count does not match the data")
        if held.skipped_samples or held.corrupt_shards:
            sys.stderr.write(f"Warning: {len(held.corrupt_shards)} corrupt shard(s), {held.skipped_samples} "
                             f"sample(s) left out of memory ({held.samples} held)\n")
        self.held, self.config, self.d, self.why = held, config, d, why
        self.samples = held.samples
        self.workers, self.threads = plan_cores(d.device.type, loader=False)
        self.augmentation = Augmentation.from_config(config)
        self.augment = DeviceAugment(self.augmentation, d.device)
        self.generator: torch.Generator | None = None

    def batches(self, *, batch_size, steps, start=0, steps_per_epoch=None, state=None):
        loader = MemoryLoader(self.held, self.augmentation, batch_size=batch_size, steps=steps, start=start,
                              seed=self.config["seed"], rank=self.d.rank, world=self.d.world,
                              pass_end=self.config.get("pass_end", "drop"))
        self.generator = loader.generator
        if state is not None:
            self.generator.set_state(state["generator"])
        return iter(loader)

    def state(self):
        return {"generator": self.generator.get_state()} if self.generator is not None else None

    def problems(self):
        return set(self.held.corrupt_shards), self.held.skipped_samples, self.held.shard_retries

    def describe(self):
        return {**super().describe(), "held_in_memory": summary(self.held)}


def choose_input(setting: str, source: ShardList | ImageList, *, img_size: int, device: torch.device,
                 processes_per_device: int = 1) -> tuple[str, str]:
    """``(kind, why)``: ``auto`` takes memory when the decoded set fits comfortably (``AUTO_SHARE`` of the free
    memory, shared by the processes on the device)."""
    if setting not in INPUTS:
        raise TrainerError(f"--input must be one of {', '.join(INPUTS)}, got {setting!r}")
    if setting != "auto":
        return setting, f"--input {setting}"
    need = held_bytes(source, img_size)
    if need is None:
        return "stream", "auto: the decoded size is unknown (no sample count, or no readable first image)"
    free = free_memory(device)
    fits = need * processes_per_device < AUTO_SHARE * free
    return ("memory" if fits else "stream"), (
        f"auto: {processes_per_device} x {need / 2**20:.0f} MiB decoded {'<' if fits else '>='} "
        f"{AUTO_SHARE:.0%} of the {free / 2**30:.1f} GiB free on {device.type}")


def create_train_input(data: ShardList | ImageList, config: Mapping[str, Any], d: Dist, *,
                       num_classes: int | None = None) -> TrainInput:
    """The training input of a run over ``data`` (shards, or a downstream training split), as ``--input`` says.

    Labels outside ``[0, num_classes)`` are an error (once for memory, per batch on the host for the stream).
    Under ``auto``, a set of images of several sizes takes the stream.
    """
    kind, why = choose_input(config["input"], data, img_size=config["img_size"], device=d.device,
                             processes_per_device=_processes_per_device(d))
    if kind == "memory":
        try:
            held = _hold(data, config, d)
        except MixedSizes:
            if config["input"] != "auto":
                raise
            kind, why = "stream", "auto: images of several sizes"
        else:
            return MemoryInput(held, config, d, why=why, num_classes=num_classes)
    return StreamInput(data, config, d, why=why, num_classes=num_classes)


def _hold(data: ShardList | ImageList, config: Mapping[str, Any], d: Dist) -> MemoryData:
    if isinstance(data, ImageList):
        return decode_images(data, img_size=config["img_size"], device=d.device)
    return decode_source(data, img_size=config["img_size"], device=d.device)


class EvalInput:
    """A test split's batches ``{"image", "label"}`` on the device, through timm's evaluation transform in CPU
    workers (up to uint8) and ``BatchTail``; each rank takes every world-th image."""

    kind = "stream"

    def __init__(self, data: ImageList, config: Mapping[str, Any], d: Dist, *, batch_size: int, workers: int):
        part = data.with_transform(eval_transform(config, use_prefetcher=True))
        part = part.subset(range(d.rank, len(data), d.world))
        self.loader = DataLoader(part, batch_size=batch_size, shuffle=False, **_loader_options(workers, d))
        self.device, self.tail = d.device, eval_tail(config, d.device)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return on_device(({"image": x, "label": y} for x, y in self.loader), self.device, self.tail)


class MemoryEvalInput:
    """A test split held on the device, through the evaluation transform there (``device_augment.eval_images``)."""

    kind = "memory"

    def __init__(self, held: MemoryData, config: Mapping[str, Any], d: Dist, *, batch_size: int):
        self.held, self.batch_size, self.d = held, batch_size, d
        self.options = dict(img_size=config["img_size"], crop_pct=config.get("crop_pct", 1.0), **mean_std(config))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        mine = torch.arange(self.d.rank, self.held.samples, self.d.world, device=self.held.images.device)
        for index in mine.split(self.batch_size):
            yield {"image": eval_images(self.held.images[index], **self.options), "label": self.held.labels[index]}


def create_eval_input(data: ImageList, config: Mapping[str, Any], d: Dist, *, batch_size: int,
                      like: TrainInput) -> EvalInput | MemoryEvalInput:
    """The evaluation input over a test split, of the training input's kind: batches of at least 256 (no
    gradients to hold). A test split of several image sizes takes the stream."""
    batch_size = max(batch_size, 256)
    if like.kind == "memory":
        try:
            return MemoryEvalInput(_hold(data, config, d), config, d, batch_size=batch_size)
        except MixedSizes:
            pass
    return EvalInput(data, config, d, batch_size=batch_size, workers=like.workers)


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float()


def _collate(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*batch, strict=True)
    return stack_images(images), torch.tensor(labels)


def _loader_options(workers: int, d: Dist) -> dict[str, Any]:
    return dict(num_workers=workers, pin_memory=d.device.type == "cuda", persistent_workers=workers > 0,
                worker_init_fn=leave_stops_to_parent if workers else None, collate_fn=_collate)


def _processes_per_device(d: Dist) -> int:
    """Processes that share this rank's memory: one per GPU, every local rank on a CPU host."""
    return 1 if d.device.type == "cuda" else int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
