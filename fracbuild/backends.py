"""Where shards are rendered: processes forked from the render, joblib's local backends, or a Dask or Ray
cluster through joblib.

Nothing here schedules work: each shard task goes to the chosen engine, and every engine runs the same
``render_shard``, so the output does not depend on the backend. ``worker_count`` is the one reading of
``--jobs`` that they all use.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .checks import check_jobs
from .errors import FracbuildError
from .settings import BACKENDS, DEFAULT_BACKEND

_watching = threading.Lock()

#: Runs joblib ``delayed`` tasks and yields their results as they finish.
Runner = Callable[[Iterable[Any]], Iterator[Any]]


def cpu_count() -> int:
    """The cores this process may use (its affinity; a container's CPU quota where joblib reads one)."""
    if "joblib" in sys.modules:  # already paid for: it also reads cgroup quotas
        from joblib import cpu_count as joblib_cpu_count

        return max(1, joblib_cpu_count())
    with contextlib.suppress(AttributeError):  # not on every platform
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def worker_count(jobs: int, tasks: int | None = None, cores: int | None = None) -> int:
    """The workers that ``jobs`` asks for, by joblib's convention: a positive number as it is, -1 for every
    core (``cores``, by default this machine's), -2 for all but one, and so on (at least 1); never more than
    ``tasks``, when known, since a worker without a task only costs its start."""
    check_jobs(jobs)
    workers = jobs if jobs > 0 else max(1, (cpu_count() if cores is None else cores) + 1 + jobs)
    return max(1, min(workers, tasks)) if tasks is not None else workers


@contextlib.contextmanager
def parallel_backend(backend: str = DEFAULT_BACKEND, address: str | None = None, jobs: int = -1,
                     tasks: int | None = None, prepare: Callable[[], Any] | None = None) -> Iterator[Runner]:
    """Run joblib tasks on ``backend``; yields a runner, ``run(tasks)``, that yields each result as it comes.

    ``jobs`` workers (``worker_count``, at most ``tasks`` when the number of tasks is given).
    ``fork``: processes forked from this one once ``prepare()`` has run here, so that what it loads
    (the kernels) is in every worker from its start; one worker runs the tasks in this process.
    ``dask``: the workers of the dask.distributed scheduler at ``address``, or of a local cluster
    of single-threaded worker processes when no address is given. ``ray``: Ray's joblib
    backend, on the cluster at ``address`` or a local one (started here and stopped after).
    """
    if backend not in BACKENDS:
        raise FracbuildError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if address and backend not in ("dask", "ray"):
        raise FracbuildError(f"--address needs --backend dask or ray, not {backend}")
    if backend == "fork":
        import multiprocessing

        if not hasattr(os, "fork"):
            raise FracbuildError("backend fork needs a system that forks processes: use --backend loky")

        workers = worker_count(jobs, tasks)
        if workers == 1 or multiprocessing.current_process().daemon:  # a daemon process may not have children
            yield _in_this_process
            return
        from .forked import forked_workers

        if prepare is not None:
            prepare()
        with forked_workers(workers, _watch_from_fork) as run:
            yield run
        return
    from joblib import parallel_config

    if backend == "loky":
        jobs = worker_count(jobs, tasks)
        # Each worker watches this process from its start (its initializer), not from its first task: one
        # that was still starting when the render was killed would otherwise wait loky's 300 s for a task.
        with parallel_config(backend=backend, n_jobs=jobs, initializer=_watch_parent, initargs=(os.getpid(),)):
            if jobs > 1:  # one job runs in this process (joblib's fallback): nothing to start
                _start_workers()
            yield _as_completed
    elif backend == "threading":
        with parallel_config(backend=backend, n_jobs=worker_count(jobs, tasks)):
            yield _as_completed
    elif backend == "dask":
        with _dask_client(address, worker_count(jobs, tasks)), parallel_config(backend="dask"):
            yield _as_completed
    else:
        with _ray(address) as cores, parallel_config(backend="ray", n_jobs=worker_count(jobs, cores=cores)):
            yield _in_rounds(2 * worker_count(jobs, cores=cores))


@contextlib.contextmanager
def _ctrl_c_to_parent_only(also: frozenset[signal.Signals] = frozenset()) -> Iterator[None]:
    """Start worker processes inside this block: they start with SIGINT (and ``also``) blocked, kept through
    exec.

    A terminal's Ctrl-C reaches the whole process group, and a worker it hits while starting up
    prints a traceback; the parent alone takes the interrupt (delivered when the block ends) and
    stops its workers.
    """
    from multiprocessing import resource_tracker

    if not hasattr(signal, "pthread_sigmask"):  # not POSIX
        yield
        return
    # Started first: starting it unblocks SIGINT in this thread (Python 3.11's multiprocessing).
    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, *also})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def exit_with_parent(poll: float = 0.2, parent: int | None = None) -> None:
    """In a worker process, exit as soon as the process that started it (``parent``, if known) is gone.

    A render killed with SIGKILL cannot stop its workers, and loky's idle ones wait 300 s for a
    task before giving up. PR_SET_PDEATHSIG would not do: it fires when the *thread* that forked
    the worker exits, and loky starts workers from a thread of its own. Once the parent dies the
    worker is re-parented, which ``getppid`` shows: a worker told its parent's pid sees it even when the
    parent died before the worker got this far. Started once per process.
    """
    if not _watching.acquire(blocking=False):
        return
    parent = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os._exit(1)  # no cleanup: the render that resumes removes the partial shard

    threading.Thread(target=watch, name="fracbuild-exit-with-parent", daemon=True).start()


def _watch_parent(parent: int) -> None:
    """A loky worker's initializer: exit with the render (``exit_with_parent``) from the worker's start."""
    exit_with_parent(parent=parent)


def _watch_from_fork(parent: int) -> None:
    """A forked worker's watch: the parent's own state of the watch (a parent that is itself a worker) is
    not the worker's."""
    global _watching
    _watching = threading.Lock()
    exit_with_parent(parent=parent)


def _started() -> int:
    """A warm-up task: the worker watches its parent from now on, not only once it gets a shard (one that
    never does would otherwise outlive a killed render by loky's 300 s)."""
    exit_with_parent()
    return os.getpid()


def _start_workers() -> None:
    """Start loky's worker processes now, for the render's tasks to reuse."""
    from joblib import Parallel, delayed

    # SIGTERM as SIGINT: the parent takes it when the block ends (raised as an interrupt while loky built its
    # executor, it left a semaphore made and not yet owned, which the resource tracker reported as leaked), and
    # the workers keep it blocked (one killed by a group's SIGTERM broke the executor as the parent stopped it,
    # with the same leak); the parent stops them with SIGKILL, and they exit with it.
    with _ctrl_c_to_parent_only(also=frozenset({signal.SIGTERM})):
        parallel = Parallel()
        parallel(delayed(_started)() for _ in range(parallel.n_jobs))


def in_order(run: Runner, tasks: Iterable[Any]) -> Iterator[Any]:
    """The results of ``run(tasks)`` in the order of ``tasks``, each as soon as those before it are in."""
    waiting: dict[int, Any] = {}
    following = 0
    for i, result in run((_numbered, (i, task), {}) for i, task in enumerate(tasks)):
        waiting[i] = result
        while following in waiting:
            yield waiting.pop(following)
            following += 1


def _numbered(i: int, task: Any) -> tuple[int, Any]:
    fn, args, kwargs = task
    return i, fn(*args, **kwargs)


def _in_this_process(tasks: Iterable[Any]) -> Iterator[Any]:
    for fn, args, kwargs in tasks:
        yield fn(*args, **kwargs)


def _as_completed(tasks: Iterable[Any]) -> Iterator[Any]:
    from joblib import Parallel

    yield from Parallel(return_as="generator_unordered")(tasks)


def _in_rounds(size: int) -> Runner:
    """Ray's joblib backend returns whole lists only: run the tasks a few per worker at a time, so
    that finished results still come back (and are recorded) while the rest runs."""
    from joblib import Parallel

    def run(tasks: Iterable[Any]) -> Iterator[Any]:
        tasks = iter(tasks)
        with Parallel() as parallel:  # one pool of workers for every round
            while batch := list(itertools.islice(tasks, size)):
                yield from parallel(batch)

    return run


@contextlib.contextmanager
def _dask_client(address: str | None, workers: int) -> Iterator[None]:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise FracbuildError("backend dask needs dask.distributed: pip install '.[dask]' in fracbuild's "
                             "checkout") from None
    if address:
        try:
            client = Client(address, timeout=10)
        except (OSError, TimeoutError) as e:
            raise FracbuildError(f"cannot reach the dask scheduler at {address}: {e}") from None
        with client:
            yield
        return
    with _ctrl_c_to_parent_only():
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
    with cluster, Client(cluster):
        yield


@contextlib.contextmanager
def _ray(address: str | None) -> Iterator[int]:
    """Connect to Ray (or start a local Ray) unless already connected; yields the cluster's CPUs."""
    try:
        import ray
        from ray.util.joblib import register_ray
    except ImportError:
        raise FracbuildError("backend ray needs Ray: pip install '.[ray]' in fracbuild's checkout") from None
    register_ray()
    started = not ray.is_initialized()
    if started:
        if address:
            _check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        except ConnectionError as e:
            raise FracbuildError(f"cannot reach the Ray cluster at {address}: {e}") from None
    try:
        yield max(1, int(ray.cluster_resources().get("CPU", 1)))
    finally:
        if started:
            ray.shutdown()


def _check_reachable(address: str) -> None:
    """Refuse a ``[ray://]HOST:PORT`` that nothing answers at: Ray itself would retry for minutes."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(address if "://" in address else f"//{address}")
    if not (where.hostname and where.port):
        return  # "auto" and the like: Ray resolves them
    try:
        socket.create_connection((where.hostname, where.port), timeout=10).close()
    except OSError as e:
        raise FracbuildError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from None
