import json
import os
from pathlib import Path

import pytest

from fracbuild.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
# A parallel run's fault counts (tests/faults), added up over its workers: kind -> trials, survived, lost.
WORKER_FAULTS: dict[str, dict[str, int]] = {}


def pytest_configure(config):
    # A worker of a parallel run (pytest-xdist) shares the cores with the others: thread pools sized for the
    # whole machine (torch's, and those of the processes a test starts) would oversubscribe it.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))


@pytest.fixture
def recipe():
    """The shipped 1p-frac recipe, shrunk so that a render takes a fraction of a second."""
    r = load_recipe(ROOT / "manifests" / "1p-frac.json")
    r["perturb"]["classes"] = 12
    r["render"].update(size=64, points=3000, shard_size=5)
    return r


@pytest.fixture
def recipe_file(recipe, tmp_path):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    return path


@pytest.fixture
def disk_writes(monkeypatch):
    """Every ``os.fsync`` (as ``("fsync", path)``) and ``os.replace`` (``("replace", src, dst)``), in order:
    what a power loss could undo is a rename before its data was synced, or a rename never synced."""
    events = []
    fsync, replace = os.fsync, os.replace

    def synced(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def renamed(src, dst):
        events.append(("replace", os.fspath(src), os.fspath(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", synced)
    monkeypatch.setattr(os, "replace", renamed)
    return events


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist: a worker has finished; its fault counts join the others'."""
    for kind, counts in getattr(node, "workeroutput", {}).get("fault_counts", {}).items():
        total = WORKER_FAULTS.setdefault(kind, dict.fromkeys(counts, 0))
        for key, n in counts.items():
            total[key] += n


def pytest_terminal_summary(terminalreporter):
    if WORKER_FAULTS:  # only in a parallel run's controlling process: a single process prints its own
        from faults.conftest import summarise

        summarise(terminalreporter, WORKER_FAULTS)
