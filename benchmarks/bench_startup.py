"""A render from a fresh process against the same render on warm workers, and --jobs 1 against --jobs 2.

Measured side by side, interleaved, in one run: compare the ratios, not the rates (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
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


def fresh(recipe, out: str, *options: str) -> tuple[float, float, float]:
    """``fracbuild render`` in a new process: (the images/s it reports for its render, images/s of the whole
    command: interpreter start, imports, manifest and card included, and the CPU seconds per image of the command
    and its workers: the figure a loaded machine changes least)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "fracbuild", "render", str(recipe), "-o", out, "--no-preview",
                          *options], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    found = re.search(r"(\d+) images rendered in ([\d.]+) s", run.stdout)
    images, seconds = int(found[1]), float(found[2])
    return images / seconds, images / wall, cpu / images


@section
def startup(args: argparse.Namespace) -> None:
    """The default render from a fresh process against warm workers; --jobs 1 against 2 for three recipes."""
    import fracbuild.rendering as R
    from fracbuild.recipe import load_recipe

    print(f"startup    {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the start")
    recipe = load_recipe(RECIPE)
    with tempfile.TemporaryDirectory() as tmp:
        # Warm: this process has rendered before (kernels loaded here; loky's pool started and kept).
        for backend in ("fork", "loky"):
            R.render(recipe, f"{tmp}/warm-up-{backend}", classes=20, shard_size=2, progress=False, preview=False,
                     backend=backend)
        rates: dict[str, list[float]] = {}
        for r in range(args.startup_repeats):
            for backend in ("fork", "loky"):
                m = R.render(recipe, f"{tmp}/warm-{backend}-{r}", progress=False, preview=False, backend=backend)
                rates.setdefault(f"warm {backend}", []).append(m["run"]["images_per_second"])
                rate, command, cpu = fresh(RECIPE, f"{tmp}/fresh-{backend}-{r}", "--backend", backend)
                rates.setdefault(f"fresh {backend}", []).append(rate)
                rates.setdefault(f"command {backend}", []).append(command)
                rates.setdefault(f"cpu {backend}", []).append(cpu * 1e3)
        m = {k: statistics.median(v) for k, v in rates.items()}
        warm = max(m["warm fork"], m["warm loky"])
        print(f"startup    1p-frac L=1000, all cores, {args.startup_repeats} interleaved runs, medians in images/s: "
              f"warm: fork {m['warm fork']:.0f}, loky's pool {m['warm loky']:.0f}; from a fresh process: fork "
              f"{m['fresh fork']:.0f} = {m['fresh fork'] / warm:.0%} of the faster warm (target >= 80 %), loky "
              f"{m['fresh loky']:.0f} = {m['fresh loky'] / warm:.0%}; the whole command (interpreter start, imports, "
              f"manifest): fork {m['command fork']:.0f}, loky {m['command loky']:.0f}; CPU per image of the whole "
              f"command: fork {m['cpu fork']:.1f} ms, loky {m['cpu loky']:.1f} ms  (load {os.getloadavg()[0]:.1f})")
        images = args.startup_images
        for name, path in JOBS_RECIPES.items():
            classes = ["--classes", str(images)] if images != 1000 else []
            runs: dict[int, list[tuple[float, float, float]]] = {1: [], 2: []}
            for r in range(args.startup_repeats):
                for jobs in (1, 2) if r % 2 == 0 else (2, 1):  # neither always runs first
                    runs[jobs].append(fresh(path, f"{tmp}/{name}-{jobs}-{r}", "--jobs", str(jobs), *classes))
            (one, one_cpu), (two, two_cpu) = ((statistics.median(x[0] for x in runs[j]),
                                               statistics.median(x[2] for x in runs[j])) for j in (1, 2))
            print(f"startup    {name} {images} images from a fresh process, {args.startup_repeats} interleaved runs, "
                  f"medians: --jobs 1 {one:.0f} images/s, --jobs 2 {two:.0f} images/s = {two / one:.2f}x "
                  f"(target >= 1); CPU per image {one_cpu * 1e3:.1f} and {two_cpu * 1e3:.1f} ms  "
                  f"(load {os.getloadavg()[0]:.1f})")
