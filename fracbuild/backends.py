"""Where shards are rendered: joblib's local backends, or a Dask or Ray cluster through joblib.

Nothing here schedules work: joblib hands each shard task to the chosen engine, and every
engine runs the same ``render_shard``, so the output does not depend on the backend.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from .errors import FracbuildError

BACKENDS = ("loky", "threading", "dask", "ray")


@contextlib.contextmanager
def parallel_backend(backend: str = "loky", address: str | None = None, jobs: int = -1) -> Iterator[None]:
    """Run the enclosed ``joblib.Parallel`` calls on ``backend``.

    ``dask``: the workers of the dask.distributed scheduler at ``address``, or of a local cluster
    of ``jobs`` single-threaded worker processes when no address is given. ``ray``: Ray's joblib
    backend, on the cluster at ``address`` or a local one.
    """
    from joblib import parallel_config

    if backend not in BACKENDS:
        raise FracbuildError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if address and backend not in ("dask", "ray"):
        raise FracbuildError(f"--address needs --backend dask or ray, not {backend}")
    if backend in ("loky", "threading"):
        with parallel_config(backend=backend, n_jobs=jobs):
            yield
    elif backend == "dask":
        with _dask_client(address, jobs), parallel_config(backend="dask"):
            yield
    else:
        _start_ray(address)
        with parallel_config(backend="ray", n_jobs=jobs):
            yield


@contextlib.contextmanager
def _dask_client(address: str | None, jobs: int) -> Iterator[None]:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise FracbuildError("backend dask needs dask.distributed: pip install 'fracbuild[dask]'") from None
    if address:
        try:
            client = Client(address, timeout=10)
        except (OSError, TimeoutError) as e:
            raise FracbuildError(f"cannot reach the dask scheduler at {address}: {e}") from None
        with client:
            yield
        return
    workers = jobs if jobs > 0 else (os.cpu_count() or 1)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster):
        yield


def _start_ray(address: str | None) -> None:
    try:
        import ray
        from ray.util.joblib import register_ray
    except ImportError:
        raise FracbuildError("backend ray needs Ray: pip install 'ray[default]'") from None
    register_ray()
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
