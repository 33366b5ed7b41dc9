"""The other sources' figures: FractalDB-1k-scale rendering and category search, noise and image."""

from __future__ import annotations

import argparse
import os
import tempfile

from common import ROOT, timed

MANIFESTS = ROOT / "manifests"


def fractaldb(args: argparse.Namespace) -> None:
    """FractalDB-1k (1000 categories x 1000 instances, 362 px, 200k points) on a slice, and its search."""
    import fracbuild.rendering as R
    from fracbuild.recipe import load_recipe
    from fracbuild.sources.fractaldb import search_categories

    recipe = load_recipe(MANIFESTS / "fractaldb-1k.json")
    jobs = os.cpu_count() or 1
    categories = 4  # whole categories: a category's instances share its traced systems
    with tempfile.TemporaryDirectory() as tmp:
        R.render(recipe, f"{tmp}/warmup", classes=2, instances=8, progress=False, preview=False, jobs=jobs)
        seconds = timed(lambda: R.render(recipe, f"{tmp}/slice", classes=categories, progress=False,
                                         preview=False, jobs=jobs))
        size = sum(p.stat().st_size for p in os.scandir(f"{tmp}/slice") if p.name.endswith(".tar"))
    images = categories * 1000
    rate = images / seconds
    print(f"fractaldb  render FractalDB-1k slice ({categories} categories x 1000 instances, 362 px, 200k points, "
          f"patch, flips), {jobs} jobs: {seconds:.2f} s = {rate:.0f} images/s -> 1,000,000 images in "
          f"{1e6 / rate / 3600:.2f} h, {size / images * 1e6 / 1e9:.1f} GB on this machine "
          f"(FractalDB: 1-2 days on 40 processes)")

    search_categories(classes=2, jobs=jobs, progress=False)  # workers and kernels warm
    n = 40
    seconds = timed(lambda: search_categories(classes=n, seed=1, jobs=jobs, progress=False))
    print(f"fractaldb  category search (fill >= 0.2, 2-7 maps), {n} categories, {jobs} jobs: {seconds:.2f} s "
          f"-> 1000 categories in {1000 / n * seconds:.0f} s")


def others(args: argparse.Namespace) -> None:
    """Noise and real-image recipes at their default size, 100 classes each."""
    import fracbuild.rendering as R
    from fracbuild.recipe import load_recipe

    jobs = os.cpu_count() or 1
    classes = 100
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("noise-gaussian", "noise-uniform", "real-canny-affine", "real-canny-elastic",
                     "real-canny-polynomial"):
            recipe = load_recipe(MANIFESTS / f"{name}.json")
            R.render(recipe, f"{tmp}/{name}-warmup", classes=4, progress=False, preview=False, jobs=jobs)
            seconds = timed(lambda recipe=recipe, name=name: R.render(
                recipe, f"{tmp}/{name}", classes=classes, progress=False, preview=False, jobs=jobs))
            print(f"sources    {name} ({recipe['render']['size']} px), {classes} classes, {jobs} jobs: "
                  f"{seconds:.2f} s = {classes / seconds:.0f} images/s")


SECTIONS = {"fractaldb": fractaldb, "sources": others}
