"""New recipes. ``search`` finds the one IFS of a ``fractal`` recipe (a target σ-factor that
renders with enough fill); ``search_categories`` finds the C systems of a ``fractaldb`` or ``ofdb``
recipe, in parallel; ``new_recipe`` makes a recipe of any source (``fracbuild search --source``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import ifs
from .errors import FracbuildError
from .kernels import fill_rate, fills, map_choices, random_sequence, render_image
from .progress import progress_bar
from .recipe import RENDER_DEFAULTS, check_name, make_recipe, validate_recipe
from .sources import source_module

#: Seed-sequence tags of the searches' generators.
SEQUENCE, CATEGORY = 1, 2
CATEGORY_METHODS = ("fill", "sigma")
#: FractalDB's fill check of a candidate category: 512 px, 100,000 points, single pixels.
FILL_CHECK: dict[str, Any] = {"size": 512, "points": 100_000, "draw": "point"}
#: The options ``new_recipe`` takes for each source, besides ``name``, ``classes`` and ``seed``.
SEARCH_OPTIONS: dict[str, set[str]] = {
    "fractal": {"sigma", "maps", "tolerance", "fill_min", "max_tries", "delta"},
    "fractaldb": {"method", "maps", "fill_min", "max_tries", "jobs", "progress"},
    "ofdb": {"method", "maps", "fill_min", "max_tries", "jobs", "progress"},
    "noise-gaussian": {"delta"},
    "noise-uniform": {"delta"},
    "image": {"image", "convert", "warp", "delta"},
}
#: Category parameters are rounded to this many decimals (far below a pixel) before the fill
#: check, so that the recipe pins exactly what was checked and stays compact.
DECIMALS = 6


def check_seed(seed: Any) -> int:
    """numpy seeds generators with non-negative integers only."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise FracbuildError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


def check_fill_min(fill_min: float) -> float:
    if not 0.0 <= fill_min < 1.0:
        raise FracbuildError(f"fill_min must lie in [0, 1), got {fill_min}")
    return fill_min


def system_image(system: np.ndarray, uniforms: np.ndarray, masks: np.ndarray, size: int, draw: str) -> np.ndarray:
    """``system`` rendered from a random sequence, with its own map probabilities."""
    return render_image(system, map_choices(ifs.map_probabilities(system), uniforms), masks, size, draw)


def search(
    sigma: float = 3.5,
    maps: int = 2,
    tolerance: float = 0.1,
    seed: int = 0,
    fill_min: float = 0.05,
    name: str = "1p-frac",
    max_tries: int = 10_000,
    perturb: dict[str, Any] | None = None,
    render: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Sample systems until one renders with fill > ``fill_min`` (the render's check); return its recipe.

    Every draw comes from ``numpy.random.default_rng(seed)``, so the same arguments give the
    same recipe on any machine. The fill check renders with the recipe's render settings (the
    paper's defaults unless ``render`` overrides them). ``search.tries`` records how many
    systems were drawn, ``search.fill`` the accepted system's fill rate.
    """
    check_name(name)
    check_seed(seed)
    ifs.check_sigma(sigma, maps, tolerance)
    check_fill_min(fill_min)
    if max_tries < 1:
        raise FracbuildError(f"max_tries must be at least 1, got {max_tries}")
    settings = {**RENDER_DEFAULTS, **(render or {})}
    rng = np.random.default_rng(seed)
    # One random sequence for the whole search: each candidate turns it into map choices
    # with its own probabilities, so a check costs one render.
    uniforms, masks = random_sequence(settings["points"], np.random.default_rng([seed, SEQUENCE]))
    tries, image = 0, None
    while image is None or not fills(image, fill_min):
        if tries == max_tries:
            raise FracbuildError(
                f"no system with sigma {sigma} ± {tolerance} exceeded fill {fill_min} in {max_tries} tries"
            )
        tries += 1
        system = ifs.sample_system(sigma, maps, rng, tolerance)
        image = system_image(system, uniforms, masks, settings["size"], settings["draw"])
    fill = float(fill_rate(image))
    return make_recipe(
        name,
        system,
        search={"sigma": sigma, "tolerance": tolerance, "maps": maps, "seed": seed,
                "fill_min": fill_min, "tries": tries, "fill": fill},
        perturb=perturb,
        render=render,
    )


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
    from joblib import Parallel, delayed

    name = check_name(name or source)
    check_seed(seed)
    if method not in CATEGORY_METHODS:
        raise FracbuildError(f"method must be one of {', '.join(CATEGORY_METHODS)}, got {method!r}")
    lo, hi = maps
    if not 1 <= lo <= hi:
        raise FracbuildError(f"maps must be a range 1 <= min <= max, got {lo}-{hi}")
    check_fill_min(fill_min)
    if classes < 1 or max_tries < 1:
        raise FracbuildError(f"classes and max_tries must be at least 1, got {classes} and {max_tries}")
    chunk = 4  # categories per task: enough work to outweigh a task's overhead
    tasks = (delayed(_find_categories)(range(c, min(c + chunk, classes)), method, (lo, hi), fill_min, seed, max_tries)
             for c in range(0, classes, chunk))
    found = []
    with progress_bar(total=classes, desc=f"search {source}", unit="category", progress=progress) as bar:
        for results in Parallel(n_jobs=jobs, return_as="generator")(tasks):
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
    return validate_recipe(recipe)


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


def new_recipe(source: str = "fractal", **options: Any) -> dict[str, Any]:
    """A new recipe of ``source``: ``search`` (``fractal``), ``search_categories`` (``fractaldb``,
    ``ofdb``) or the source's ``make_recipe`` (noise, image: nothing to search, the recipe is made
    from the options). Options that ``source`` does not take are an error."""
    module = source_module(source)
    unknown = set(options) - SEARCH_OPTIONS[source] - {"name", "classes", "seed"}
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in sorted(unknown))
        raise FracbuildError(f"{flags} {'does' if len(unknown) == 1 else 'do'} not apply to --source {source}")
    maps = options.get("maps")
    if source == "fractal" and isinstance(maps, tuple):
        raise FracbuildError(f"--source fractal takes one number of maps, got the range {maps[0]}-{maps[1]}")
    if isinstance(maps, int) and source != "fractal":
        options["maps"] = (maps, maps)
    if source == "fractal":
        perturb = {k: options.pop(k) for k in ("classes", "delta") if k in options}
        return search(**options, perturb=perturb or None)
    if source in ("fractaldb", "ofdb"):
        return search_categories(source=source, **options)
    if source == "image":
        return module.make_recipe(**options)
    return module.make_recipe(source, **options)
