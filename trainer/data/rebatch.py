"""The stream's last stage, in the main process: the loader workers' small batches cut into the rank's batches,
in an order that does not depend on when each worker delivered, and where that cutting stands (for a resume).

Every sample of pass p carries ``(worker w, order r)``: its place in worker w's share of the pass as the
shuffle buffer let it out. A pass's samples are taken in the order ``(r // small, w, r)``, that is the
workers' small batches in turn (``small`` samples each), and a batch is the next ``batch_size`` of them.
That order is a function of the samples alone, so a stream started again in the middle of a pass, each
worker skipping the samples already taken, makes the same batches as the stream that was never stopped:
``Rebatch.position()`` (also in each batch, as it stood after that batch) is all a resume needs.

A pass ends when every worker has sent a sample of a later pass. With ``pass_end`` ``drop`` (the reference's
``DistributedSampler`` + ``drop_last``) a batch never spans two passes: a pass's last partial batch is dropped,
unless the pass gave no full batch at all (a pass smaller than a batch), which is then carried into the next.
With ``continue`` the last partial batch is filled from the next pass, every sample once per pass; a sample of
the next pass that the batch already holds (by key) waits for the batch after, where it comes first, as its
place in the order says it would: a position lists those waiting samples (``deferred``), so that a resumed
stream lets them through too. (A pass smaller than a batch still repeats samples: it must.)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from typing import Any

import torch

END = math.inf  # the pass of the marker a worker sends when its stream ends


class Rebatch:
    """Cuts small batches ``{"image", "label", "key", "order", "pass", "problems"}`` from ``workers`` workers
    (a worker's comes in its order; ``problems["worker"]`` says whose) into batches of ``batch_size``.

    ``position``: one that ``position()`` returned, to continue from; the workers must then skip what it
    says was taken (``taken``). ``pass_end``: ``drop`` or ``continue`` (above).
    """

    def __init__(self, batch_size: int, workers: int, small: int, *, pin_memory: bool = False,
                 position: dict[str, Any] | None = None, pass_end: str = "drop"):
        self.batch_size, self.workers, self.small, self.pin_memory = batch_size, workers, small, pin_memory
        self.carry = pass_end == "continue"
        position = position or {"pass": None, "full": 0, "next": [0] * workers}
        self.epoch: float | None = position["pass"]  # the pass being cut
        self.full = position["full"]  # batches cut in it so far
        self.next = list(position["next"])  # per worker: the first order not yet taken in a batch
        # Samples of this pass set aside from the batch cut last (it held their keys): (small batch, index).
        self.deferred: list[tuple[dict, int]] = []

    def position(self) -> dict[str, Any] | None:
        """Where the batches handed out so far end: the pass, the batches cut in it, per worker the first order
        of that pass not taken, and the samples before it that wait for the next batch (None before the first
        batch)."""
        if self.epoch is None or self.epoch == END:
            return None
        position = {"pass": int(self.epoch), "full": self.full, "next": list(self.next)}
        if self.deferred:
            position["deferred"] = [[b["problems"]["worker"], b["order"][i]] for b, i in self.deferred]
        return position

    def __call__(self, small: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        queues: list[deque[dict[str, Any]]] = [deque() for _ in range(self.workers)]
        offsets = [0] * self.workers  # samples of each queue's first small batch already taken
        runs: list[tuple[dict, int, int]] = []  # (small batch, start, stop) of the batch being filled
        filled, problems = 0, []
        earlier: set[str] = set()  # keys of the batch being filled that came from an earlier pass
        for b in small:
            queues[b["problems"]["worker"]].append(b)
            problems.append(b["problems"])
            while all(queues):
                heads = [(q[0]["pass"], q[0]["order"][offsets[w]] // self.small if q[0]["order"] else 0, w)
                         for w, q in enumerate(queues)]
                if self.epoch is None:
                    self.epoch = min(h[0] for h in heads)
                mine = sorted((g, w) for p, g, w in heads if p == self.epoch)
                if not mine:  # every worker is past this pass
                    if self.full and not self.carry:
                        runs, filled = [], 0
                    # A pass that ended before the batch its samples waited for (smaller than a batch): they
                    # join the batch, twice over if they must, as many as it has room for; the rest wait on.
                    room = self.batch_size - filled
                    runs += [(d, i, i + 1) for d, i in self.deferred[:room]]
                    filled += len(self.deferred[:room])
                    self.deferred = self.deferred[room:]
                    if filled == self.batch_size:
                        waiting, self.deferred = self.deferred, []
                        batch = self._cut(runs, problems, waiting)
                        runs = [(d, i, i + 1) for d, i in waiting]
                        filled, problems = len(runs), []
                        yield batch
                    earlier = {key for r, start, stop in runs for key in r["key"][start:stop]} if self.carry else set()
                    self.epoch, self.full, self.next = min(h[0] for h in heads), 0, [0] * self.workers
                    self.deferred = []
                    continue
                if self.epoch == END:
                    return
                w = mine[0][1]
                rival = mine[1] if len(mine) > 1 else None
                b0, start = queues[w][0], offsets[w]
                stop = start + 1  # the first is the least of all; take on while it stays so
                while (stop < len(b0["key"]) and stop - start < self.batch_size - filled
                       and (rival is None or (b0["order"][stop] // self.small, w) < rival)):
                    stop += 1
                if earlier:  # the batch holds samples of the last pass: set aside the keys it holds already
                    stop = start + 1
                    if b0["key"][start] in earlier:
                        self.deferred.append((b0, start))
                    else:
                        runs.append((b0, start, stop))
                        filled += 1
                else:
                    runs.append((b0, start, stop))
                    filled += stop - start
                offsets[w] = stop
                if stop == len(b0["key"]):
                    queues[w].popleft()
                    offsets[w] = 0
                if filled == self.batch_size:
                    waiting, self.deferred = self.deferred, []
                    batch = self._cut(runs, problems, waiting)
                    # What was set aside comes first in the next batch (the least of what is left, in order).
                    runs = [(d, i, i + 1) for d, i in waiting]
                    filled, problems, earlier = len(runs), [], set()
                    yield batch

    def _cut(self, runs: list[tuple[dict, int, int]], problems: list[dict],
             waiting: list[tuple[dict, int]]) -> dict[str, Any]:
        """One batch from ``runs``, each image copied once, straight into it (pinned if asked, for an
        asynchronous copy to the GPU); records what it took, and the samples ``waiting`` for the next."""
        first = runs[0][0]["image"]
        channels = max(b["image"].shape[1] for b, _, _ in runs)  # gray and colour batches: copy_ repeats the gray
        images = torch.empty((self.batch_size, channels, *first.shape[2:]), dtype=first.dtype,
                             pin_memory=self.pin_memory)
        labels, keys, at = [], [], 0
        for b, start, stop in runs:
            images[at:at + stop - start].copy_(b["image"][start:stop])
            labels.append(b["label"][start:stop])
            keys += b["key"][start:stop]
            at += stop - start
            if b["pass"] == self.epoch:
                w = b["problems"]["worker"]
                self.next[w] = max(self.next[w], b["order"][stop - 1] + 1)
        self.full += 1
        self.deferred = waiting
        position = self.position()
        self.deferred = []
        return {"image": images, "label": torch.cat(labels), "key": keys, "pass": runs[0][0]["pass"],
                "problems": problems, "position": position}


def consumed(position: dict[str, Any] | None, epoch: int, worker: int) -> int:
    """How many of ``worker``'s first samples (by order) of pass ``epoch`` ``position`` says were taken, or set
    aside for the next batch (``taken``)."""
    if position is None or position["pass"] != epoch:
        return 0
    return position["next"][worker]


def taken(position: dict[str, Any] | None, epoch: int, worker: int, order: int) -> bool:
    """Whether ``position`` says that ``worker``'s sample ``order`` of pass ``epoch`` is in a batch handed out."""
    if order >= consumed(position, epoch, worker):
        return False
    return [worker, order] not in position.get("deferred", ())
