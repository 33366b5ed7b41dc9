"""Writes that fail part-way (a file-size limit stands in for a full disk, without root): the preview and the
dataset card are written aside and renamed in like every other file, so a failed write leaves the old file or
none, never a truncated one that ``verify`` would pass; the error names its path; and a fresh training run whose
first checkpoint fails leaves a directory that the same command takes again."""

import os
import resource
import subprocess
import sys
from pathlib import Path

import forked_python
from conftest import COUNTS, trials

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def limited(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def record(kind: str, ok: bool) -> None:
    COUNTS[kind]["trials"] += 1
    COUNTS[kind]["survived"] += ok
    COUNTS[kind]["lost"] += not ok


def fracbuild(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "fracbuild", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=300, **kwargs)


def test_a_file_size_limit_while_the_preview_is_written(tmp_path):
    recipe = ROOT / "manifests" / "1p-frac.json"
    args = ["--classes", "16", "--size", "64", "--points", "20000", "--shard-size", "2", "--jobs", "1"]
    reference = tmp_path / "reference"
    assert fracbuild("render", recipe, "-o", reference, *args).returncode == 0
    preview = (reference / "preview.png").stat().st_size
    others = max(p.stat().st_size for p in reference.iterdir() if p.name != "preview.png")
    assert preview > others + 64, "the preview must be the largest file for the limit to fall on it"
    failures = []
    for t, rng in enumerate(trials("full disk: preview write")):
        out = tmp_path / str(t)
        failed = fracbuild("render", recipe, "-o", out, *args, preexec_fn=limited(rng.randrange(others + 1, preview)))
        lines = failed.stderr.strip().splitlines()
        ok = (failed.returncode != 0 and len(lines) == 1 and "preview.png" in lines[0]
              and "Traceback" not in failed.stderr and not (out / "preview.png").exists())
        again = fracbuild("render", recipe, "-o", out, *args)
        ok = ok and again.returncode == 0 and fracbuild("verify", out).returncode == 0
        record("full disk: preview write", ok)
        if not ok:
            failures.append((t, failed.stderr[-500:], again.stderr[-300:]))
    assert not failures, failures


def test_verify_refuses_a_truncated_preview(tmp_path):
    out = tmp_path / "d"
    args = ["--classes", "4", "--size", "16", "--points", "200", "--jobs", "1"]
    assert fracbuild("render", ROOT / "manifests" / "1p-frac.json", "-o", out, *args).returncode == 0
    png = out / "preview.png"
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    result = fracbuild("verify", out)
    assert result.returncode != 0 and "preview.png: does not decode" in result.stderr


def test_a_fresh_run_whose_first_checkpoint_fails_is_taken_by_a_plain_rerun(tmp_path):
    from test_trainer_data import render_tiny

    from fracbuild.recipe import load_recipe

    recipe = load_recipe(ROOT / "manifests" / "1p-frac.json")
    recipe["perturb"]["classes"] = 4
    recipe["render"].update(size=16, points=200)
    data = render_tiny(recipe, tmp_path / "data")
    failures = []
    for t, rng in enumerate(trials("full disk: first checkpoint of a fresh run")):
        out = tmp_path / str(t)
        cmd = [sys.executable, "-m", "trainer", "pretrain", "--data", str(data), "--out", str(out), "--preset",
               "smoke", "--samples", "32", "--no-progress"]
        # Above config.json and metrics.jsonl, below the smoke model's checkpoint (about 1 MB).
        failed = forked_python.run(cmd[1:], env=ENV, timeout=300, fsize=rng.randrange(64 << 10, 256 << 10))
        lines = failed.stderr.strip().splitlines()
        ok = (failed.returncode != 0 and len(lines) == 1 and "checkpoint" in lines[0]
              and "previous one is kept" not in lines[0])
        again = forked_python.run(cmd[1:], env=ENV, timeout=300)
        ok = ok and again.returncode == 0 and (out / "checkpoint.pt").is_file()
        record("full disk: first checkpoint of a fresh run", ok)
        if not ok:
            failures.append((t, failed.stderr[-500:], again.stderr[-500:]))
    assert not failures, failures
