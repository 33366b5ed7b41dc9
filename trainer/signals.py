"""Stopping on a signal: SIGINT/SIGTERM end a run at a step boundary, with a checkpoint, instead of mid-step;
and loader workers leave the first such signal to the process that can save."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def stop_requests() -> Iterator[list[bool]]:
    """SIGINT/SIGTERM set a flag instead of raising, so that the loop can finish its step and save.

    A second Ctrl-C raises KeyboardInterrupt at once; a second SIGTERM does not (a scheduler or
    torchrun may send more than one, and kills outright when it stops waiting). Once a stop is
    asked for, a loader worker's death no longer raises inside the step (torch's SIGCHLD handler
    would): the loader reports it at the next batch instead, where the loop can still save.
    """
    flag = [False]
    previous = {}

    def handler(signum, frame):
        if flag[0] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not flag[0]:
            with contextlib.suppress(ValueError, AttributeError):  # no SIGCHLD off POSIX
                previous.setdefault(signal.SIGCHLD, signal.signal(signal.SIGCHLD, _ignore))
        flag[0] = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _ignore(signum, frame) -> None:
    """A Python-level no-op handler (SIG_DFL set while a signal is pending makes CPython warn)."""


def _leave_to_parent(signum, frame) -> None:
    # The next signal acts as usual: multiprocessing stops a worker with SIGTERM when it must.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def leave_stops_to_parent(worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: the worker outlives the first SIGINT/SIGTERM.

    Ctrl-C, ``timeout``, Slurm and torchrun signal the whole process group; the main process
    answers by finishing its step and saving, and it needs its workers' batches to get there.
    It then stops them itself.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _leave_to_parent)
