"""FractalDB and OFDB: C categories, each its own IFS (found by ``search_categories``, or read
from FractalDB's published parameter files by ``import_categories``).

A FractalDB category has M instances made as the reference makes them: the category's system
with one of its six parameters (in every map) scaled by a factor, a patch render (its own
random 3 x 3 masks over the same chaos-game points) and a flip. With FractalDB's factors
``{0.2, 0.6, 1.4, 1.8}`` that is 25 systems x 10 patch renders x 4 flips = 1000 instances.
OFDB renders one instance per category, unflipped: the system scaled by ``perturb.weight_row``,
by default FractalDB's first weight row (a x 0.2), which OFDB's parallel generator renders.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import ifs
from ..checks import check_jobs, check_name, check_seed, number
from ..errors import FracbuildError
from ..kernels import draw_image, fill_rate, map_choices, random_sequence, trace
from ..progress import progress_bar
from ..settings import CATEGORY_METHODS
from .common import flip, flip_name, sequence_seed, settings_lines, shared_keys
from .fractal import SEQUENCE, check_drawing, check_fill_min, check_maps, system_image

#: FractalDB's parameter-scaling factors (its ``weights_0.4``); 1.0, the system itself, is always in.
SCALES = [0.2, 0.6, 1.4, 1.8]
#: The multipliers of ``a b c d e f`` OFDB's generator renders each category with: the first row
#: of ``weights_0.4.csv``, which its parallel script passes (see manifests/README.md).
WEIGHT_ROW = [0.2, 1.0, 1.0, 1.0, 1.0, 1.0]
#: The reference renderer of FractalDB and OFDB: 362 px, 200,000 points, 3 x 3 patches, flips.
PERTURB_DEFAULTS: dict[str, Any] = {"classes": 1000, "scales": SCALES, "seed": 0}
RENDER_DEFAULTS: dict[str, Any] = {
    "size": 362,
    "points": 200_000,
    "draw": "patch",
    "instances": 1000,
    "flips": True,
    "shard_size": 1000,
}
DEFAULTS = {
    "fractaldb": {"perturb": PERTURB_DEFAULTS, "render": RENDER_DEFAULTS},
    "ofdb": {"perturb": {"classes": 1000, "weight_row": WEIGHT_ROW, "seed": 0},
             "render": {**RENDER_DEFAULTS, "instances": 1, "flips": False, "shard_size": 100}},
}
OPTIONS = dict.fromkeys(DEFAULTS, {"method", "maps", "fill_min", "max_tries", "jobs", "progress", "from_dir"})
#: Seed-sequence tag of a category's generator in the search (``SEQUENCE`` is the fill check's sequence).
CATEGORY = 2
#: FractalDB's fill check of a candidate category: 512 px, 100,000 points, single pixels.
FILL_CHECK: dict[str, Any] = {"size": 512, "points": 100_000, "draw": "point"}
#: Category parameters are rounded to this many decimals (far below a pixel) before the fill
#: check, so that the recipe pins exactly what was checked and stays compact.
DECIMALS = 6


def validate(recipe: dict[str, Any]) -> dict[str, Any]:
    """Check the categories (``perturb.classes`` takes the first C of them) and the scales."""
    recipe = shared_keys(recipe, DEFAULTS, ("categories",))
    categories = recipe.get("categories")
    if not isinstance(categories, list) or not categories:
        raise FracbuildError("recipe needs 'categories': a list of systems, each a list of [a, b, c, d, e, f]")
    categories = [check_maps(maps, f"categories[{i}]").tolist() for i, maps in enumerate(categories)]
    perturb, render = recipe["perturb"], recipe["render"]
    if perturb["classes"] > len(categories):
        raise FracbuildError(f"perturb.classes must be <= the recipe's {len(categories)} categories, "
                             f"got {perturb['classes']}")
    key = "weight_row" if recipe["source"] == "ofdb" else "scales"
    factors = perturb[key]
    if not isinstance(factors, list) or (key == "weight_row" and len(factors) != 6):
        what = "6 numbers (multipliers of a b c d e f)" if key == "weight_row" else "a list of numbers"
        raise FracbuildError(f"perturb.{key} must be {what}, got {factors!r}")
    for i, factor in enumerate(factors):
        number(f"perturb.{key}[{i}]", factor, 0.0)
    check_drawing(render)
    if recipe.get("source") == "ofdb" and render["instances"] != 1:
        raise FracbuildError(f"render.instances must be 1 for ofdb (one image per category), got {render['instances']}")
    return {**recipe, "categories": categories}


def scale_table(scales: list[float]) -> np.ndarray:
    """``(1 + 6 S, 6)`` multipliers of ``a b c d e f`` in the order of FractalDB's weight files:
    ``a`` scaled by each factor and by 1.0 (the system as found), in increasing order, then each
    other parameter in turn by each factor."""
    rows = []
    for p in range(6):
        for factor in sorted(scales + [1.0]) if p == 0 else scales:
            row = np.ones(6)
            row[p] = factor
            rows.append(row)
    return np.array(rows)


def read_categories(directory: str | os.PathLike) -> tuple[list[list[list[float]]], str]:
    """The systems of FractalDB's published parameter files (``NNNNN.csv`` under ``directory``,
    in any subfolders, ordered by file name: the category number) and the sha256 of their bytes.

    A file holds one map per line, ``a, b, c, d, e, f, p``; ``p`` must be the map's
    ``|det| / Σ |det|``, which the sources compute for themselves.
    """
    root = Path(directory)
    if not root.is_dir():
        raise FracbuildError(f"{directory} is not a directory")
    files = sorted(root.rglob("*.csv"), key=lambda f: (f.name, str(f)))
    if not files:
        raise FracbuildError(f"{directory} holds no .csv parameter files")
    digest = hashlib.sha256()
    systems = []
    for f in files:
        data = f.read_bytes()
        digest.update(data)
        try:
            rows = np.loadtxt(data.decode().splitlines(), delimiter=",", ndmin=2)
        except ValueError:
            raise FracbuildError(f"{f}: not rows of 7 comma-separated numbers") from None
        if rows.shape[1] != 7:
            raise FracbuildError(f"{f}: expected rows a, b, c, d, e, f, p, got {rows.shape[1]} columns")
        maps = check_maps(rows[:, :6], str(f))
        if not np.allclose(rows[:, 6], ifs.map_probabilities(maps), rtol=0, atol=1e-9):
            raise FracbuildError(f"{f}: the probabilities are not |det| / Σ |det| of the maps")
        systems.append(maps.tolist())
    return systems, digest.hexdigest()


def search_categories(
    classes: int = 1000,
    method: str = "fill",
    maps: tuple[int, int] = (2, 7),
    fill_min: float = 0.2,
    seed: int = 0,
    name: str | None = None,
    source: str = "fractaldb",
    max_tries: int = 10_000,
    jobs: int = -1,
    progress: bool | None = None,
    perturb: dict[str, Any] | None = None,
    render: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The C categories of a ``fractaldb`` (or ``ofdb``) recipe, searched FractalDB-style.

    Category c draws systems from ``default_rng([seed, CATEGORY, c])`` until one renders (with
    ``FILL_CHECK``'s settings) with fill >= ``fill_min``: N maps uniform in ``maps`` (inclusive),
    then ``method`` ``fill`` draws every parameter uniform in (-1, 1) (FractalDB), ``sigma`` draws
    a σ-factor uniform in ``[(5 + N) / 2, (6 + N) / 2]`` (Anderson & Farrell). Categories are
    independent, so ``jobs`` workers find the same categories as one, and the first C categories
    of a search for more are those of a search for C. ``search.tries`` counts every system drawn.
    """
    from joblib import delayed

    from ..backends import in_order, parallel_backend

    name = check_name(name or source)
    check_seed(seed)
    if method not in CATEGORY_METHODS:
        raise FracbuildError(f"method must be one of {', '.join(CATEGORY_METHODS)}, got {method!r}")
    lo, hi = maps
    if not 1 <= lo <= hi:
        raise FracbuildError(f"maps must be a range 1 <= min <= max, got {lo}-{hi}")
    check_fill_min(fill_min)
    check_jobs(jobs)
    if classes < 1 or max_tries < 1:
        raise FracbuildError(f"classes and max_tries must be at least 1, got {classes} and {max_tries}")
    chunk = 4  # categories per task: enough work to outweigh a task's overhead
    tasks = [delayed(_find_categories)(range(c, min(c + chunk, classes)), method, (lo, hi), fill_min, seed, max_tries)
             for c in range(0, classes, chunk)]
    found = []
    # The workers start before the progress bar's thread, and with the fill check's kernels loaded.
    with parallel_backend(jobs=jobs, tasks=len(tasks), prepare=lambda: _warm_up(seed)) as run, \
            progress_bar(total=classes, desc=f"search {source}", unit="category", progress=progress) as bar:
        for results in in_order(run, tasks):
            found += results
            bar.update(len(results))
    recipe = {
        "name": name,
        "source": source,
        "categories": [system for system, _ in found],
        "search": {"method": method, "classes": classes, "maps": [lo, hi], "fill_min": fill_min, "seed": seed,
                   **FILL_CHECK, "tries": sum(tries for _, tries in found)},
        "perturb": {**(perturb or {}), "classes": classes},
        "render": dict(render or {}),
    }
    return validate(recipe)


def import_categories(
    from_dir: str,
    classes: int | None = None,
    seed: int = 0,
    name: str | None = None,
    source: str = "fractaldb",
) -> dict[str, Any]:
    """A ``fractaldb`` (or ``ofdb``) recipe of the systems in FractalDB's published parameter files
    (``data/csv_rate0.2_category1000/`` in its repository; see ``fractaldb.read_categories``).
    ``search`` records the folder, the number of files and the sha256 of their bytes."""
    name = check_name(name or source)
    check_seed(seed)
    systems, sha256 = read_categories(from_dir)
    recipe = {
        "name": name,
        "source": source,
        "categories": systems,
        "search": {"from": str(from_dir), "files": len(systems), "sha256": sha256},
        "perturb": {"classes": len(systems) if classes is None else classes, "seed": seed},
    }
    return validate(recipe)


def _warm_up(seed: int) -> None:
    """Load the fill check's kernels with the types a search passes them: one system drawn and drawn."""
    uniforms, masks = random_sequence(FILL_CHECK["points"], np.random.default_rng([seed, SEQUENCE]))
    system = np.round(ifs.sample_uniform_system(2, np.random.default_rng(0)), DECIMALS)
    fill_rate(system_image(system, uniforms, masks, FILL_CHECK["size"], FILL_CHECK["draw"]))


def _find_categories(categories: range, method: str, maps: tuple[int, int], fill_min: float, seed: int,
                     max_tries: int) -> list[tuple[list, int]]:
    """``(system, tries)`` of each category: the first of its draws that passes the fill check."""
    uniforms, masks = random_sequence(FILL_CHECK["points"], np.random.default_rng([seed, SEQUENCE]))
    found = []
    for c in categories:
        rng = np.random.default_rng([seed, CATEGORY, c])
        for tries in range(1, max_tries + 1):
            n = int(rng.integers(maps[0], maps[1] + 1))
            if method == "fill":
                system = ifs.sample_uniform_system(n, rng)
            else:
                system = ifs.sample_system((11 + 2 * n) / 4, n, rng, tolerance=0.25)
            system = np.round(system, DECIMALS)
            # FractalDB's search keeps a fill of at least the threshold (>=), unlike the render's check.
            image = system_image(system, uniforms, masks, FILL_CHECK["size"], FILL_CHECK["draw"])
            if fill_rate(image) >= fill_min:
                found.append((system.tolist(), tries))
                break
        else:
            raise FracbuildError(f"category {c}: no system reached fill {fill_min} in {max_tries} tries")
    return found


def new_recipe(source: str, **options: Any) -> dict[str, Any]:
    """``search_categories``, or ``import_categories`` with ``from_dir``."""
    if isinstance(options.get("maps"), int):
        options["maps"] = (options["maps"], options["maps"])
    if options.get("from_dir") is not None:
        searched = sorted(set(options) - {"from_dir", "name", "classes", "seed", "progress"})
        if searched:
            flags = ", ".join("--" + k.replace("_", "-") for k in searched)
            raise FracbuildError(f"{flags} {'does' if len(searched) == 1 else 'do'} not apply with --from")
        return import_categories(source=source, **options)
    options.pop("from_dir", None)
    return search_categories(source=source, **options)


def describe(recipe: dict[str, Any], seconds: float) -> str:
    found = recipe["search"]
    if "from" in found:
        return f"{found['files']} categories read from {found['from']}"
    return (f"{found['classes']} categories ({found['method']}, {found['maps'][0]}-{found['maps'][1]} maps, "
            f"fill >= {found['fill_min']}), {found['tries']} systems tried, {seconds:.1f} s")


def summary(manifest: dict[str, Any]) -> list[str]:
    return settings_lines(manifest.get("recipe", {}))


def create(recipe: dict[str, Any]) -> CategorySource:
    return CategorySource(recipe)


class CategorySource:
    """Renders category c's instances; instance i is ``(scale, patch render, flip)`` with the flip
    varying fastest, then the scale, then the patch render, so the first M instances of any M
    cover every scale. Every render of every category uses the same chaos-game uniforms (those of
    patch render 0, as the reference fixes its sequence); patch render k has its own masks.
    Traced points are kept per scale while a category renders, so each system runs once.
    """

    def __init__(self, recipe: dict[str, Any]):
        self.categories = recipe["categories"]
        self.perturb = recipe["perturb"]
        self.render = recipe["render"]
        if "weight_row" in self.perturb:
            self.scales = np.array([self.perturb["weight_row"]], dtype=np.float64)
        else:
            self.scales = scale_table(self.perturb["scales"])
        uniforms, masks = self.sequence(0)
        self._uniforms, self._masks = uniforms, {0: masks}
        self._class: int | None = None
        self._choices = np.empty(0, dtype=np.intp)
        self._pixels: dict[int, np.ndarray] = {}
        self._image: tuple[tuple[int, int, int], np.ndarray] | None = None

    def sequence_seed(self, patch: int) -> list[int]:
        return sequence_seed(self.perturb["seed"], "shared", 0, patch)

    def sequence(self, patch: int) -> tuple[np.ndarray, np.ndarray]:
        return random_sequence(self.render["points"], np.random.default_rng(self.sequence_seed(patch)))

    def masks(self, patch: int) -> np.ndarray:
        """Patch render ``patch``'s masks, shared by every category (cached: 10 for FractalDB's M)."""
        if patch not in self._masks:
            if len(self._masks) >= 16:
                self._masks.clear()
            self._masks[patch] = self.sequence(patch)[1]
        return self._masks[patch]

    def layout(self, instance: int) -> tuple[int, int, str]:
        """``(scale row, patch render, flip)`` of an instance."""
        how = flip_name(instance, self.render["flips"])
        rest = instance // 4 if self.render["flips"] else instance
        return rest % len(self.scales), rest // len(self.scales), how

    def pixels(self, cls: int, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Category ``cls``'s system under scale ``row`` and its traced pixels."""
        base = np.array(self.categories[cls], dtype=np.float64)
        if cls != self._class:  # samples come in class order: one category at a time
            self._class, self._pixels = cls, {}
            # Probabilities stay those of the system as found, as in the reference.
            self._choices = map_choices(ifs.map_probabilities(base), self._uniforms)
        maps = base * self.scales[row]
        if row not in self._pixels:
            self._pixels[row] = trace(maps, self._choices, self.render["size"])
        return maps, self._pixels[row]

    def sample(self, cls: int, instance: int) -> tuple[np.ndarray, dict[str, Any]]:
        row, patch, how = self.layout(instance)
        maps, pixels = self.pixels(cls, row)
        key = (cls, row, patch)
        if self._image is None or self._image[0] != key:  # the flips of one patch render come together
            self._image = key, draw_image(pixels, self.masks(patch), self.render["size"], self.render["draw"])
        image = flip(self._image[1], how)
        meta = {
            "class": cls,
            "instance": instance,
            "maps": maps.tolist(),
            "scale": self.scales[row].tolist(),
            "patch": patch,
            "fill": float(fill_rate(image)),
            "flip": how,
            "seeds": {"sequence": self.sequence_seed(0), "masks": self.sequence_seed(patch)},
        }
        return image, meta
