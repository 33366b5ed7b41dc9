import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fracbuild import FracbuildError, backends
from fracbuild.backends import in_order, parallel_backend, worker_count

ROOT = Path(__file__).resolve().parents[1]


def test_worker_count_follows_joblibs_convention(monkeypatch):
    monkeypatch.setattr(backends, "cpu_count", lambda: 4)
    assert [worker_count(j) for j in (1, 3, 8, -1, -2, -4, -9)] == [1, 3, 8, 4, 3, 1, 1]
    assert worker_count(-1, cores=16) == 16 and worker_count(-2, cores=16) == 15  # a cluster's cores
    assert worker_count(-1, tasks=2) == 2 and worker_count(3, tasks=10) == 3 and worker_count(-1, tasks=0) == 1
    for bad in (0, True, 1.5, "2"):
        with pytest.raises(FracbuildError, match="--jobs must be a number of workers"):
            worker_count(bad)


# In a process of its own: the kernels this test process loaded for other tests would be inherited anyway.
WORKER_STARTS_READY = textwrap.dedent("""
    import sys

    import fracbuild.rendering as R
    from fracbuild.recipe import load_recipe
    from numba.core.registry import CPUDispatcher

    def compiled():
        return sum(len(v.overloads) for name, m in list(sys.modules.items()) if name.startswith("fracbuild")
                   for v in vars(m).values() if isinstance(v, CPUDispatcher))

    original = R.render_shard

    def render_shard(*args):
        # A worker's first shard finds the kernels loaded and the modules imported.
        modules, kernels = set(sys.modules), compiled()
        record = original(*args)
        new = sorted(set(sys.modules) - modules)
        if new or compiled() != kernels:
            raise RuntimeError(f"a worker loaded {compiled() - kernels} kernels and imported {new}")
        return record

    R.render_shard = render_shard
    recipe = load_recipe(sys.argv[1])
    recipe["perturb"]["classes"] = 4
    recipe["render"].update(size=64, shard_size=1, instances=1)
    if "points" in recipe["render"]:
        recipe["render"]["points"] = 2000
    R.render(recipe, sys.argv[2], jobs=2, backend="fork", progress=False, preview=False)
""")


@pytest.mark.parametrize("source", ["1p-frac", "paper/rcdb-1k"])
def test_forked_workers_start_with_the_kernels_ready(source, tmp_path):
    run = subprocess.run([sys.executable, "-c", WORKER_STARTS_READY, str(ROOT / "manifests" / f"{source}.json"),
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]


def _after(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


def test_in_order_gives_the_tasks_order_whatever_finishes_first():
    from joblib import delayed

    with parallel_backend("fork", jobs=2, tasks=3) as run:
        assert list(in_order(run, [delayed(_after)(0.5, 0), delayed(_after)(0, 1), delayed(_after)(0, 2)])) == [0, 1, 2]


def test_check_memory_counts_the_workers_that_start(recipe, monkeypatch):
    from fracbuild import rendering

    monkeypatch.setattr(backends, "cpu_count", lambda: 4)
    render = recipe["render"]
    worker = (rendering.WORKER_BYTES + rendering.POINT_BYTES * render["points"]
              + rendering.PIXEL_BYTES * render["size"] ** 2)
    monkeypatch.setattr(rendering, "memory_bytes", lambda: 3 * worker)  # room for 3 workers
    recipe["perturb"]["classes"] = 3 * render["shard_size"]  # 3 shards: -1 starts 3 workers, not 4
    rendering.check_memory(recipe, -1)
    recipe["perturb"]["classes"] = 8 * render["shard_size"]
    rendering.check_memory(recipe, -2)  # all cores but one
    with pytest.raises(FracbuildError, match="4 workers need about"):
        rendering.check_memory(recipe, -1)


def _fail(message: str) -> None:
    raise ValueError(message)


def test_a_forked_workers_error_and_death_reach_the_parent():
    from fracbuild.forked import WorkerDied

    with parallel_backend("fork", jobs=2, tasks=2) as run, pytest.raises(ValueError, match="bad shard"):
        list(run([(_after, (0, 1), {}), (_fail, ("bad shard",), {})]))
    with parallel_backend("fork", jobs=2, tasks=2) as run, pytest.raises(WorkerDied):
        list(run([(_after, (0.5, 1), {}), (os._exit, (1,), {})]))
