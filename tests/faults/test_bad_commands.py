"""Every bad command line an outside campaign found accepted or ending in a traceback: each must end with one
line on stderr and a non-zero exit, and leave nothing behind (no output folder, no file)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import forked_python
import pytest
from conftest import COUNTS
from test_trainer_data import render_tiny

# Under pytest-xdist, on one worker: the module fixture is made once.
pytestmark = pytest.mark.xdist_group("faults-commands")

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "manifests" / "1p-frac.json"


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    """4 classes, 16 px, in 2 shards."""
    from fracbuild.recipe import load_recipe

    recipe = load_recipe(RECIPE)
    recipe["perturb"]["classes"] = 4
    recipe["render"].update(size=16, points=200)
    return render_tiny(recipe, tmp_path_factory.mktemp("data") / "four")


def recipe_with(tmp: Path, change) -> str:
    """The shipped recipe with ``change`` made, in a file of its own (each command keeps its own recipe)."""
    recipe = json.loads(RECIPE.read_text())
    change(recipe)
    path = tmp / f"recipe-{len(list(tmp.glob('recipe-*.json')))}.json"
    path.write_text(json.dumps(recipe))
    return str(path)


def commands(tmp: Path, four: Path) -> dict[str, list[str]]:
    fb, tr = [sys.executable, "-m", "fracbuild"], [sys.executable, "-m", "trainer"]
    small = ["--classes", "2", "--size", "16", "--points", "200", "--jobs", "1", "--no-preview"]
    text = tmp / "text.txt"
    text.write_text("not an image\n")
    bad = tmp / "BAD.json"
    bad.write_text("not json\n")
    run = ["pretrain", "--data", str(four), "--preset", "smoke", "--samples", "32", "--no-progress", "--out", "run"]
    return {
        "delta 1e308": [*fb, "render", recipe_with(tmp, lambda r: r["perturb"].update(delta=1e308)), "-o", "out",
                        *small],
        "unknown top-level key": [*fb, "render", recipe_with(tmp, lambda r: r.update(bogus=1)), "-o", "out", *small],
        "unknown key in ifs": [*fb, "render", recipe_with(tmp, lambda r: r["ifs"].update(bogus=1)), "-o", "out",
                               *small],
        "render -o ''": [*fb, "render", str(RECIPE), "-o", "", *small],
        "search --jobs 0": [*fb, "search", "--source", "ofdb", "--classes", "2", "--jobs", "0", "-o", "s.json"],
        "search --image TEXTFILE": [*fb, "search", "--source", "image", "--image", str(text), "-o", "s.json"],
        "verify --deep -1": [*fb, "verify", str(four), "--deep", "-1"],
        "verify --deep past the classes": [*fb, "verify", str(four), "--deep", "1000000"],
        "pretrain --device tpu9": [*tr, *run, "--device", "tpu9"],
        "pretrain --device cuda:999": [*tr, *run, "--device", "cuda:999"],
        "pretrain --mixup -1": [*tr, *run, "--mixup", "-1"],
        "pretrain --epochs -1 --samples 32": [*tr, *run, "--epochs", "-1"],
        "experiment --recipe BAD.json": [*tr, "experiment", "--recipe", str(bad), "--out", "runs", "--report", "rep",
                                         "--data-dir", "shards"],
    }


def test_every_bad_command_ends_in_one_line_and_leaves_nothing(four, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    failed = []
    for name, argv in commands(tmp_path, four).items():
        work = tmp_path / name.replace(" ", "_").replace("/", "_")
        work.mkdir()
        if argv[1:3] == ["-m", "trainer"]:  # forked with torch loaded: the same process, less its imports
            result = forked_python.run(argv[1:], cwd=work, env=env, timeout=300)
        else:
            result = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        lines = result.stderr.strip().splitlines()
        ok = (result.returncode != 0 and len(lines) == 1 and lines[0].startswith("Error: ")
              and "Traceback" not in result.stderr and not any(work.iterdir()))
        COUNTS["bad input: campaign command"]["trials"] += 1
        COUNTS["bad input: campaign command"]["survived"] += ok
        if not ok:
            failed.append(f"{name}: exit {result.returncode}, {len(lines)} line(s): {result.stderr[-300:]!r}, "
                          f"left {sorted(p.name for p in work.iterdir())}")
    assert not failed, "\n".join(failed)
