"""fracbuild's figures: search time, render throughput and memory, the reference-style renderer."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

import numpy as np
from common import RECIPE, registry, run_cli, timed

SECTIONS, section = registry()


@section
def search(args: argparse.Namespace) -> None:
    """One `fracbuild.search` at σ = 3.5 with the paper's render settings (JIT cache warm)."""
    import fracbuild

    fracbuild.search(sigma=3.5, seed=0)  # compile or load the kernels
    seeds = range(args.repeats)
    found: list[dict] = []
    times = [timed(lambda s=s: found.append(fracbuild.search(sigma=3.5, seed=s))) for s in seeds]
    tries = [recipe["search"]["tries"] for recipe in found]
    print(f"search  sigma=3.5 N=2 512px 100k points, seeds 0..{args.repeats - 1}: "
          f"median {statistics.median(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms, "
          f"mean tries {statistics.mean(tries):.2f}  (paper: 8 s)")


def reference_style_image(maps: np.ndarray, probs: np.ndarray, points: int, size: int, rng) -> np.ndarray:
    """The reference's way: a Python-level chaos game (the start among the points) and one 3 x 3
    patch pasted per point, corner at the point + 1, then the image flipped."""
    x = y = 0.0
    xs, ys = [x], [y]
    for _ in range(points - 1):
        a, b, c, d, e, f = maps[rng.choice(len(maps), p=probs)]
        x, y = a * x + b * y + e, c * x + d * y + f
        xs.append(x)
        ys.append(y)
    xs, ys = np.array(xs), np.array(ys)
    xs = ((xs - xs.min()) / (xs.max() - xs.min()) * (size - 12) + 6).astype(int)
    ys = ((ys - ys.min()) / (ys.max() - ys.min()) * (size - 12) + 6).astype(int)
    image = np.zeros((size, size), dtype=np.uint8)
    for px, py in zip(xs, ys, strict=True):
        mask = rng.integers(1, 512)
        image[py + 1:py + 4, px + 1:px + 4] = ((mask >> np.arange(8, -1, -1)) & 1).reshape(3, 3) * 127
    return image[::-1]


@section
def render(args: argparse.Namespace) -> None:
    """Default recipe throughput: the CLI from a fresh start, a warm worker pool, and memory."""
    import fracbuild.rendering as R
    from fracbuild.recipe import load_recipe

    recipe = load_recipe(RECIPE)
    jobs = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        R.render(recipe, f"{tmp}/warmup", classes=8 * jobs, shard_size=4, progress=False, preview=False,
                 jobs=jobs)  # JIT caches and every worker started
        done: dict[str, dict] = {}
        warm = timed(lambda: done.update(patch=R.render(recipe, f"{tmp}/warm", progress=False, preview=False,
                                                        jobs=jobs)))
        union = timed(lambda: done.update(union=R.render(recipe, f"{tmp}/union", draw="patch-union", progress=False,
                                                         preview=False, jobs=jobs)))
        cold, peak = run_cli(["render", str(RECIPE), "-o", f"{tmp}/cold", "--no-preview"])
        big = 5000
        _, peak_big = run_cli(["render", str(RECIPE), "-o", f"{tmp}/big", "--no-preview", "--classes", str(big)])
        rate = 1000 / warm
        print(f"render  1p-frac L=1000 512px 100k points patch PNG, {jobs} jobs on {os.cpu_count()} cores: "
              f"warm pool {warm:.2f} s = {rate:.0f} images/s; CLI from a fresh process {cold:.2f} s = "
              f"{1000 / cold:.0f} images/s  (target >= 400 images/s, L=1000 < 3 s)")
        draws = {k: (m["samples"] + m["redraws"]) / m["samples"] for k, m in done.items()}
        print(f"render  draws per accepted class: patch (the reference's) {draws['patch']:.2f}; patch-union "
              f"{draws['union']:.2f}, {union:.2f} s = {1000 / union:.0f} images/s in the same run")
        print(f"memory  peak resident, process tree: L=1000 {peak / 2**20:.0f} MiB, L={big} {peak_big / 2**20:.0f} MiB"
              "  (target < 1024 MiB at any L)")

        rng = np.random.default_rng(0)
        maps, probs = np.array(recipe["ifs"]["maps"]), np.array(recipe["ifs"]["probs"])
        n = args.reference_images
        ref = timed(lambda: [reference_style_image(maps, probs, 100_000, 512, rng) for _ in range(n)]) / n
        print(f"ref     reference-style renderer (Python loop, one 3x3 paste per point), {n} images: "
              f"{ref:.2f} s/image on 1 core; fracbuild is {rate * ref:.0f}x faster on {jobs} cores, "
              f"{rate * ref / jobs:.0f}x per core")

        small = timed(lambda: R.render(recipe, f"{tmp}/256", size=256, progress=False, preview=False, jobs=jobs))
        print(f"render  L=1000 at 256 px: {small:.2f} s = {1000 / small:.0f} images/s")
        slice_ = dict(classes=4, instances=250)
        fdb = timed(lambda: R.render(recipe, f"{tmp}/fdb", **slice_, progress=False, preview=False, jobs=jobs))
        per_s = 1000 / fdb
        print(f"render  FractalDB scale (1000 classes x 1000 instances, 512 px), measured on 4 x 250: "
              f"{per_s:.0f} images/s -> 1,000,000 images in {1e6 / per_s / 3600:.2f} h on this machine "
              f"(FractalDB: 1-2 days on 40 processes)")
