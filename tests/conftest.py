import json
import os
from pathlib import Path

import pytest

from fracbuild.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


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
