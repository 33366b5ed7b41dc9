"""The other sources' figures: FractalDB-1k-scale rendering and category search, noise and image,
RCDB and VisualAtom against their originals' approach."""

from __future__ import annotations

import argparse
import os
import tempfile
from functools import partial

from common import ROOT, cpu_timed, timed

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


def restate(source: str, recipe: dict, categories: int, instances: int, png: bool = True) -> None:
    """The originals' approach (``contour_originals``) on the recipe's first categories, each
    instance after the first redrawing what the originals redraw, with Python's ``random``; with
    ``png``, each image saved as they save it."""
    import random

    import contour_originals

    rnd = random.Random(1)
    ranges = recipe["ranges"]
    for c in range(categories):
        p = {field: column[c] for field, column in recipe["categories"].items()}
        for i in range(instances):
            if i:
                if source == "rcdb":
                    p.update(oval_x=rnd.uniform(*ranges["oval"]), oval_y=rnd.uniform(*ranges["oval"]),
                             radius=rnd.randint(*ranges["radius"]))
                p.update(centre_y=(512 + rnd.randint(-ranges["centre"], ranges["centre"])) / 2,
                         centre_x=(512 + rnd.randint(-ranges["centre"], ranges["centre"])) / 2)
            (contour_originals.render_png if png else contour_originals.draw_image)(source, p, rnd)


def contours(args: argparse.Namespace) -> None:
    """RCDB and VisualAtom: the originals' approach and fracbuild on the same categories, one core
    each (CPU time: the machine is shared), then the shipped forms on every core."""
    import contour_originals

    import fracbuild.rendering as R
    from fracbuild.recipe import load_recipe
    from fracbuild.sources import create_source

    jobs = os.cpu_count() or 1
    categories, ours_instances = 12, 20
    print(f"contours   the originals' approach is restated (Python loops, one ImageDraw.line per segment, RGB PNG "
          f"per image; Perlin noise: {contour_originals.PERLIN}), not the originals' own scripts")
    with tempfile.TemporaryDirectory() as tmp:
        for source in ("rcdb", "visualatom"):
            recipe = load_recipe(MANIFESTS / "paper" / f"{source}-1m.json")
            R.render(recipe, f"{tmp}/{source}-warmup", classes=2, instances=4, progress=False, preview=False, jobs=1)
            _, original, _ = cpu_timed(partial(restate, source, recipe, categories, args.reference_images))
            original /= categories * args.reference_images
            _, ours, _ = cpu_timed(partial(R.render, recipe, f"{tmp}/{source}-one", classes=categories,
                                           instances=ours_instances, progress=False, preview=False, jobs=1))
            ours /= categories * ours_instances
            # Drawing alone, without the image files: the originals' approach, and fracbuild's source.
            _, drawing, _ = cpu_timed(partial(restate, source, recipe, categories, args.reference_images, False))
            drawing /= categories * args.reference_images
            samples = create_source(recipe)
            _, ours_drawing, _ = cpu_timed(lambda samples=samples: [
                samples.sample(c, i) for c in range(categories) for i in range(ours_instances)])
            ours_drawing /= categories * ours_instances
            print(f"contours   {source}, categories 0-{categories - 1}, one process each: originals' approach "
                  f"{original * 1e3:.1f} ms CPU per image ({categories * args.reference_images} images), fracbuild "
                  f"{ours * 1e3:.2f} ms ({categories * ours_instances} images, PNG shards): {original / ours:.1f}x "
                  f"per core; drawing alone (no image files) {drawing * 1e3:.1f} ms and {ours_drawing * 1e3:.2f} ms: "
                  f"{drawing / ours_drawing:.1f}x")
            for form in ("1m", "1k", "lpce"):
                recipe = load_recipe(MANIFESTS / "paper" / f"{source}-{form}.json")
                # The 1M form on 40 of its categories x 100 instances: an image costs what it costs in all 1000.
                slice_ = {"classes": 40, "instances": 100} if form == "1m" else {"classes": 1000}
                wall, cpu, m = cpu_timed(partial(R.render, recipe, f"{tmp}/{source}-{form}", progress=False,
                                                 preview=False, jobs=jobs, **slice_))
                n, images = m["samples"], recipe["perturb"]["classes"] * recipe["render"]["instances"]
                free = jobs * n / cpu  # what the CPU time spent would give on dedicated cores
                whole = (f"{images:,} images in {images / free / 3600:.2f} h, {m['bytes'] / n * images / 1e9:.1f} GB"
                         if n < images else f"the whole form, {m['bytes'] / 1e6:.0f} MB")
                print(f"contours   {source}-{form} ({m['classes']} classes x {m['instances']} instances), {jobs} jobs: "
                      f"{wall:.2f} s = {n / wall:.0f} images/s (load {os.getloadavg()[0]:.1f}); {cpu / n * 1e3:.2f} ms "
                      f"CPU per image, so {free:.0f} images/s on {jobs} free cores -> {whole}")


def sources(args: argparse.Namespace) -> None:
    others(args)
    contours(args)


SECTIONS = {"fractaldb": fractaldb, "sources": sources}
