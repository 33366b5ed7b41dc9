"""Single process or torchrun: the process group, this rank's device, and small collectives.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT; with them the process group is
NCCL on GPUs and gloo on CPUs (multi-node included: torchrun's rendezvous does the rest).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .errors import TrainerError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # whether ``setup`` created the process group (and so destroys it)

    @property
    def main(self) -> bool:
        """Rank 0: the only one that writes files and prints."""
        return self.rank == 0


def check_device(device: str) -> None:
    """``--device`` against what this torch build sees: cpu, or cuda[:N] with a GPU N there (anything else would
    train on the CPU while the run records the name it was given)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise TrainerError(f"--device must be cpu or cuda[:N], got {device!r}") from None
    if dev.type == "cpu":
        return
    if dev.type != "cuda":
        raise TrainerError(f"--device must be cpu or cuda[:N], got {device!r} (the trainer runs on CPUs and CUDA GPUs)")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise TrainerError(f"--device {device}: torch {torch.__version__} sees no CUDA GPU here; use --device cpu")
    if (dev.index or 0) >= count:
        raise TrainerError(f"--device {device}: torch sees {count} CUDA GPU(s) (cuda:0 to cuda:{count - 1})")


def setup(device: str | None = None) -> Dist:
    """Join the process group if torchrun started this process; pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is not None:
        check_device(device)
    cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if cuda:
        dev = torch.device("cuda", local_rank if device in (None, "cuda") else torch.device(device).index or 0)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world == 1:
        return Dist(device=dev)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), device=dev, owns_group=owns)


def usable_cores() -> int:
    """CPU cores this process may use, shared among the processes torchrun started on this node."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def plan_cores(device_type: str, *, loader: bool, workers: int | None = None, cores: int | None = None
               ) -> tuple[int, int]:
    """``(loader workers, torch threads)`` of one process, from its cores and whether its input has loader workers.

    An input without a loader (the memory input) leaves torch every core but one (OpenMP threads spin against
    whatever else runs: on this project's shared 2-core machine the cpu preset through memory ran at 7.6
    samples/s with 2 threads, while the stream input's 1 worker + 1 thread made 28-31). With a loader, the
    workers get all cores but one on a GPU host (the training loop only launches kernels there, and 8 workers
    beside 16 threads oversubscribed a 16-core host) and up to 4 on a CPU run, which needs cores for the model;
    torch gets the rest, never fewer than one thread (with no workers the loader runs in this process).
    ``workers`` (the setting) wins where given.
    """
    cores = cores or usable_cores()
    if not loader:
        return 0, max(1, cores - 1)
    if workers is None:
        workers = max(1, cores - 1 if device_type == "cuda" else min(4, cores - 1))
    return workers, max(1, cores - max(1, workers))


def set_threads(threads: int) -> int:
    """torch's intra-op threads, unless OMP_NUM_THREADS says otherwise; returns the count in force."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def teardown(d: Dist) -> None:
    if d.owns_group and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def session(device: str | None = None) -> Iterator[Dist]:
    """``setup`` for a run; on leaving, torch's thread count (``set_threads`` may change it) is
    restored and ``teardown`` done."""
    d = setup(device)
    threads = torch.get_num_threads()
    try:
        yield d
    finally:
        torch.set_num_threads(threads)
        teardown(d)


def mean(value: float, d: Dist) -> float:
    """The mean of a number over ranks."""
    if d.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.item() / d.world


def total(values: list[float], d: Dist) -> list[float]:
    """Element-wise sums of a list of numbers over ranks."""
    if d.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.tolist()


def gather(obj: Any, d: Dist) -> list[Any]:
    """Every rank's ``obj``, in rank order."""
    if d.world == 1:
        return [obj]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any, d: Dist) -> Any:
    """Rank 0's ``obj`` on every rank (for decisions only rank 0 can make, like a failed write)."""
    if d.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()
