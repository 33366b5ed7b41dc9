"""The other sources' figures: FractalDB-1k-scale rendering and category search, noise and image,
RCDB and VisualAtom against their originals' approach."""

from __future__ import annotations

import argparse
import os
import tempfile
import time

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


def restated_seconds(source: str, recipe: dict, categories: int, instances: int) -> float:
    """Seconds per image of the originals' approach (``contour_originals``) on the recipe's first
    categories, each instance after the first redrawing what the originals redraw."""
    import random

    import contour_originals


    rnd = random.Random(1)
    start = time.perf_counter()
    for c in range(categories):
        p = {field: column[c] for field, column in recipe["categories"].items()}
        for i in range(instances):
            if i:  # the redraws, with Python's random as the originals draw them
                ranges = recipe["ranges"]
                if source == "rcdb":
                    p.update(oval_x=rnd.uniform(*ranges["oval"]), oval_y=rnd.uniform(*ranges["oval"]),
                             radius=rnd.randint(*ranges["radius"]))
                p.update(centre_y=(512 + rnd.randint(-ranges["centre"], ranges["centre"])) / 2,
                         centre_x=(512 + rnd.randint(-ranges["centre"], ranges["centre"])) / 2)
            contour_originals.render_png(source, p, rnd)
    return (time.perf_counter() - start) / (categories * instances)


def contours(args: argparse.Namespace) -> None:
    """RCDB and VisualAtom: the originals' approach and fracbuild on the same categories, one core
    each, then the shipped forms on every core."""
    import contour_originals

    import fracbuild.rendering as R
    from fracbuild.recipe import load_recipe

    jobs = os.cpu_count() or 1
    categories = 12
    print(f"contours   the originals' approach is restated (Python loops, one ImageDraw.line per segment, RGB PNG "
          f"per image; Perlin noise: {contour_originals.PERLIN}), not the originals' own scripts")
    with tempfile.TemporaryDirectory() as tmp:
        for source in ("rcdb", "visualatom"):
            recipe = load_recipe(MANIFESTS / "paper" / f"{source}-1m.json")
            R.render(recipe, f"{tmp}/{source}-warmup", classes=2, instances=4, progress=False, preview=False, jobs=1)
            original = restated_seconds(source, recipe, categories, args.reference_images)
            start = time.perf_counter()
            R.render(recipe, f"{tmp}/{source}-one", classes=categories, instances=20, progress=False, preview=False,
                     jobs=1)
            ours = (time.perf_counter() - start) / (categories * 20)
            print(f"contours   {source}, categories 0-{categories - 1}: originals' approach {original * 1e3:.1f} ms "
                  f"per image ({categories * args.reference_images} images), fracbuild {ours * 1e3:.2f} ms per image "
                  f"({categories * 20} images, PNG shards), one core each: {original / ours:.1f}x per core")
            for form in ("1m", "1k", "lpce"):
                recipe = load_recipe(MANIFESTS / "paper" / f"{source}-{form}.json")
                # The 1M form on 40 of its categories x 100 instances: an image costs what it costs in all 1000.
                slice_ = {"classes": 40, "instances": 100} if form == "1m" else {"classes": 1000}
                start = time.perf_counter()
                m = R.render(recipe, f"{tmp}/{source}-{form}", progress=False, preview=False, jobs=jobs, **slice_)
                seconds = time.perf_counter() - start
                rate = m["samples"] / seconds
                images = recipe["perturb"]["classes"] * recipe["render"]["instances"]
                print(f"contours   {source}-{form} ({m['classes']} classes x {m['instances']} instances), {jobs} jobs: "
                      f"{seconds:.2f} s = {rate:.0f} images/s -> {images:,} images in {images / rate / 3600:.2f} h, "
                      f"{m['bytes'] / m['samples'] * images / 1e9:.1f} GB")


def sources(args: argparse.Namespace) -> None:
    others(args)
    contours(args)


SECTIONS = {"fractaldb": fractaldb, "sources": sources}
