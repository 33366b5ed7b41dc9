"""A render from a fresh process against the same render on warm workers, and --jobs 1 against --jobs 2.

Measured side by side, interleaved, in one run: compare the ratios, not the rates (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from common import RECIPE, ROOT, registry

SECTIONS, section = registry()

PAPER = ROOT / "manifests" / "paper"
#: The recipes whose --jobs 1 and --jobs 2 are compared, and the options of their render.
JOBS_RECIPES = {"1p-frac": RECIPE, "rcdb-1k": PAPER / "rcdb-1k.json", "visualatom-1k": PAPER / "visualatom-1k.json"}


def fresh(recipe, out: str, *options: str) -> tuple[float, float]:
    """``fracbuild render`` in a new process: (the images/s it reports for its render, images/s of the whole
    command: interpreter start, imports, manifest and card included)."""
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "fracbuild", "render", str(recipe), "-o", out, "--no-preview",
                          *options], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    found = re.search(r"(\d+) images rendered in ([\d.]+) s", run.stdout)
    images, seconds = int(found[1]), float(found[2])
    return images / seconds, images / wall


@section
def startup(args: argparse.Namespace) -> None:
    """The default render from a fresh process against warm workers; --jobs 1 against 2 for three recipes."""
    import fracbuild.rendering as R
    from fracbuild.recipe import load_recipe

    print(f"startup    {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the start")
    recipe = load_recipe(RECIPE)
    with tempfile.TemporaryDirectory() as tmp:
        # Warm: this process has rendered before (kernels loaded; loky's pool, with --backend loky, kept).
        R.render(recipe, f"{tmp}/warm-up", classes=20, shard_size=2, progress=False, preview=False)
        warm, cold, whole = [], [], []
        for r in range(args.startup_repeats):
            m = R.render(recipe, f"{tmp}/warm{r}", progress=False, preview=False)
            warm.append(m["run"]["images_per_second"])
            rate, command = fresh(RECIPE, f"{tmp}/fresh{r}")
            cold.append(rate)
            whole.append(command)
        w, c, f = (statistics.median(x) for x in (warm, cold, whole))
        print(f"startup    1p-frac L=1000, all cores, {args.startup_repeats} interleaved runs, medians: warm "
              f"{w:.0f} images/s, fresh process {c:.0f} images/s = {c / w:.0%} of warm (target >= 80 %); the whole "
              f"command from a fresh interpreter {f:.0f} images/s = {f / w:.0%}  (load {os.getloadavg()[0]:.1f})")
        images = args.startup_images
        for name, path in JOBS_RECIPES.items():
            classes = ["--classes", str(images)] if images != 1000 else []
            rates: dict[int, list[float]] = {1: [], 2: []}
            for r in range(args.startup_repeats):
                for jobs in (1, 2) if r % 2 == 0 else (2, 1):  # neither always runs first
                    rates[jobs].append(fresh(path, f"{tmp}/{name}-{jobs}-{r}", "--jobs", str(jobs), *classes)[0])
            one, two = statistics.median(rates[1]), statistics.median(rates[2])
            print(f"startup    {name} {images} images from a fresh process, {args.startup_repeats} interleaved runs, "
                  f"medians: --jobs 1 {one:.0f} images/s, --jobs 2 {two:.0f} images/s = {two / one:.2f}x "
                  f"(target >= 1)  (load {os.getloadavg()[0]:.1f})")
