"""Worker processes forked from the render itself, after it has loaded what the tasks need.

A worker started fresh (loky's) imports numpy and numba and loads the compiled kernels from numba's
cache before its first task, about a second of CPU each; forked from a process that has done that
once, it starts with all of it in memory, in milliseconds. Fork safety: the workers are forked
before the caller starts threads of its own (the progress bar's), numba runs no threads here, and a
worker never returns into the caller's code: it serves tasks over its pipe and leaves with
``os._exit``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any


class WorkerDied(RuntimeError):
    """A worker process ended without answering (killed, or out of memory)."""


@contextlib.contextmanager
def forked_workers(workers: int, watch: Callable[[int], None]) -> Iterator[Callable[[Iterable[Any]], Iterator[Any]]]:
    """Fork ``workers`` processes from this one; yields ``run(tasks)``, which runs joblib ``delayed`` tasks
    on them and yields each result as it comes. ``watch(parent)`` runs first in each worker (it makes the
    worker exit with this process). The workers are killed when the block ends, whatever way it ends."""
    context = multiprocessing.get_context("fork")
    pool: list[tuple[Any, Connection]] = []
    for stream in (sys.stdout, sys.stderr):  # a buffer left unflushed would be written again by each worker
        with contextlib.suppress(Exception):
            stream.flush()
    # SIGINT and SIGTERM stay blocked from the fork until the worker has reset its handlers: the caller's
    # handlers (SIGTERM raised as an interrupt) are the caller's, not the worker's.
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        for _ in range(workers):
            ours, theirs = context.Pipe()
            process = context.Process(target=_serve, args=(theirs, [c for _, c in pool] + [ours], os.getpid(),
                                                           watch), daemon=True)
            process.start()
            theirs.close()
            pool.append((process, ours))
    except BaseException:
        _stop(pool)
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    try:
        yield lambda tasks: _run(pool, tasks)
    finally:
        _stop(pool)


def _run(pool: list[tuple[Any, Connection]], tasks: Iterable[Any]) -> Iterator[Any]:
    """One task at a time per worker, the next one as soon as it answers."""
    tasks = iter(tasks)
    busy: dict[Connection, Any] = {}
    for process, conn in pool:
        task = next(tasks, None)
        if task is None:
            break
        _send(process, conn, task)
        busy[conn] = process
    while busy:
        ready = wait([*busy, *(p.sentinel for p in busy.values())])
        for conn, process in list(busy.items()):
            if conn not in ready and process.sentinel not in ready:
                continue
            try:
                ok, value = conn.recv()
            except (EOFError, OSError):
                raise WorkerDied(f"worker {process.pid} died") from None
            del busy[conn]
            if not ok:
                raise value
            yield value
            task = next(tasks, None)
            if task is not None:
                _send(process, conn, task)
                busy[conn] = process


def _send(process: Any, conn: Connection, task: Any) -> None:
    try:
        conn.send(task)
    except OSError:  # the pipe's other end is gone: the worker died between two tasks
        raise WorkerDied(f"worker {process.pid} died") from None


def _stop(pool: list[tuple[Any, Connection]]) -> None:
    for process, conn in pool:
        with contextlib.suppress(OSError):
            conn.close()
        if process.is_alive():
            process.kill()  # a partial shard it leaves is removed by the render that failed or resumes
    for process, _ in pool:
        process.join()


def _serve(conn: Connection, inherited: list[Connection], parent: int, watch: Callable[[int], None]) -> None:
    """A worker's life: reset the signals, watch the parent, answer tasks until told to stop or orphaned."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the parent's to handle
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    for other in inherited:  # the parent's ends of the pipes: a worker holding one would hide its sibling's death
        other.close()
    code = 0
    try:
        watch(parent)
        while True:
            try:
                task = conn.recv()
            except (EOFError, OSError):
                break
            fn, args, kwargs = task
            try:
                answer = (True, fn(*args, **kwargs))
            except BaseException as e:  # sent to the parent, which raises it
                answer = (False, e)
            try:
                conn.send(answer)
            except (pickle.PicklingError, TypeError, AttributeError) as e:
                conn.send((False, RuntimeError(f"{answer[1]!r} (not picklable: {e})")))
    except BaseException:
        code = 1
    finally:
        os._exit(code)  # never back into the caller's code, its atexit handlers or its buffers
