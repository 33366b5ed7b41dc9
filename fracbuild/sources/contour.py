"""RCDB and VisualAtom (the paper's Table 3): contour lines of a polygon whose vertices 1-D Perlin
noise moves radially, drawn as their public renderers draw them.

A category is one parameter set (``FIELDS``): a vertex count, a contour-line count, a Perlin
coefficient, a radial offset (the originals' "line width"), a radius, two oval rates and a centre,
and for VisualAtom two sine frequencies. ``new_recipe`` draws C of them from ``ranges`` (the
originals' draws, ``RANGES``), category c from ``default_rng(category_seed(seed, c))``. An instance
starts the polygon on the category's oval and, for each contour line, draws a gray level and two
Perlin inputs per vertex, moves every vertex and draws the closed polygon (``contour_kernels``);
RCDB's instances after the first redraw the oval rates, the radius and the centre, VisualAtom's the
centre, as the originals do. An instance's draws come from ``(seed, class, instance)``.

With ``perturb.delta`` set (the LPCE form) class c is category 0 with its radius perturbed by Δ
(``default_rng([seed, NOISE, c])``), and every class draws from the same sequences (those of
``(seed, instance)``), as the 1p-frac classes share their chaos-game sequence: an image is then a
function of its radius. Geometry is in pixels of a ``ranges.canvas`` image (512, the originals'
size); ``render.size`` scales it.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .. import ifs
from ..checks import check_name, check_seed, choice, number, section
from ..errors import FracbuildError
from ..settings import PERTURB_MODES
from .common import CATEGORY, NOISE, check_delta, sequence_seed, settings_lines, shared_keys
from .contour_kernels import draw_contours, ink_fraction

SHAPE = ("radius", "oval_x", "oval_y", "centre_x", "centre_y")
FIELDS = {
    "rcdb": ("vertices", "lines", "perlin", "line_width", *SHAPE),
    "visualatom": ("vertices", "lines", "perlin", "line_width", *SHAPE, "wave1", "wave2"),
}
#: The originals' draws: ``make_rcdb.py`` as ``RCDB_render.sh`` runs it, ``render_VisualAtom.py`` as
#: ``make_VisualAtom.sh`` runs it (manifests/README.md: the script's values, not the file's defaults).
#: Pairs are inclusive ranges (integers drawn uniformly, other numbers uniform between); RCDB's vertex
#: count is an exponential of mean ``vertex_mean``, truncated, redrawn until inside ``vertices``.
#: A centre coordinate is ``(canvas + U{-centre..centre}) / 2``.
RANGES: dict[str, dict[str, Any]] = {
    "rcdb": {"canvas": 512, "vertices": [3, 200], "vertex_mean": 100, "lines": [1, 200], "perlin": [0, 4],
             "line_width": [0, 0.1], "radius": [0, 100], "oval": [1, 2], "centre": 400, "gray": [0, 256]},
    "visualatom": {"canvas": 512, "vertices": [200, 1000], "lines": [1, 200], "perlin": [0, 4],
                   "line_width": [0, 0.1], "radius": [10, 60], "oval": [1, 2], "centre": 512, "waves": [0, 20],
                   "gray": [0, 255]},
}
INTEGER_RANGES = ("vertices", "lines", "radius", "waves", "gray")
#: The least value (and whether an integer) of a category's field; the others are any finite number.
FIELD_BOUNDS = {"vertices": (3, True), "lines": (1, True), "perlin": (0.0, False), "radius": (0.0, False),
                "oval_x": (0.0, False), "oval_y": (0.0, False), "wave1": (0, True), "wave2": (0, True)}
#: What an instance after the first draws afresh, in the originals' order.
REDRAWN = {"rcdb": ("oval", "radius", "centre"), "visualatom": ("centre",)}
#: RCDB draws on white, VisualAtom on black.
BACKGROUND = {"rcdb": 255, "visualatom": 0}
#: RCDB doubles its Perlin term; VisualAtom subtracts two sines of the vertex angle instead.
GAIN = {"rcdb": 2.0, "visualatom": 1.0}
#: The Perlin inputs are uniform in [0, NOISE_SPAN), as the originals draw them.
NOISE_SPAN = 10000.0
#: Vertex updates per image at most (the originals' largest is 200 lines x 1000 vertices).
MAX_STEPS = 2_000_000
MAX_TRIES = 10_000

PERTURB_DEFAULTS: dict[str, Any] = {"classes": 1000, "seed": 0, "delta": None, "mode": "multiplicative"}
DEFAULTS = {source: {"perturb": PERTURB_DEFAULTS, "render": {"size": 512, "instances": 1000, "shard_size": 1000}}
            for source in FIELDS}
OPTIONS = dict.fromkeys(FIELDS, {"delta", "instances", "ranges"})


def _pair(where: str, value: Any, lo: float, integer: bool) -> list:
    if not isinstance(value, list) or len(value) != 2:
        raise FracbuildError(f"{where} must be a pair [min, max], got {value!r}")
    a = number(f"{where}[0]", value[0], lo, integer=integer)
    number(f"{where}[1]", value[1], a, integer=integer)
    return value


def check_ranges(recipe: dict[str, Any]) -> dict[str, Any]:
    source = recipe["source"]
    ranges = section(recipe, "ranges", RANGES[source], source)
    number("ranges.canvas", ranges["canvas"], 16, 65536, integer=True)
    number("ranges.centre", ranges["centre"], 0, integer=True)
    lows = {"vertices": 3, "lines": 1, "perlin": 0.0, "line_width": -math.inf, "radius": 0, "oval": 0.0,
            "waves": 0, "gray": 0}
    for key, lo in lows.items():
        if key in ranges:
            _pair(f"ranges.{key}", ranges[key], lo, key in INTEGER_RANGES)
    if ranges["oval"][0] <= 0:
        raise FracbuildError(f"ranges.oval[0] must be > 0, got {ranges['oval'][0]!r}")
    if ranges["gray"][1] > 256:
        raise FracbuildError(f"ranges.gray[1] must be at most 256 (drawn as 255, as Pillow clips it), "
                             f"got {ranges['gray'][1]!r}")
    if "vertex_mean" in ranges:
        number("ranges.vertex_mean", ranges["vertex_mean"], 0.0, lo_open=True)
    if "waves" in ranges and ranges["waves"][0] == ranges["waves"][1] != 0:
        raise FracbuildError("ranges.waves must allow two different frequencies (or be [0, 0])")
    if ranges["vertices"][1] * ranges["lines"][1] > MAX_STEPS:
        raise FracbuildError(f"ranges.vertices x ranges.lines must be at most {MAX_STEPS:,} per image")
    return ranges


def check_categories(recipe: dict[str, Any]) -> dict[str, list]:
    """``categories``: for each of ``FIELDS``, a list with one value per category."""
    source, columns = recipe["source"], recipe.get("categories")
    fields = FIELDS[source]
    if not isinstance(columns, dict) or set(columns) != set(fields):
        raise FracbuildError(f"recipe needs 'categories': an object of lists {', '.join(fields)}")
    sizes = {len(v) if isinstance(v, list) else -1 for v in columns.values()}
    if len(sizes) != 1 or sizes == {-1} or sizes == {0}:
        raise FracbuildError("categories must hold lists of one and the same length (one value per category)")
    for field in fields:
        lo, integer = FIELD_BOUNDS.get(field, (-math.inf, False))
        for i, value in enumerate(columns[field]):
            number(f"categories.{field}[{i}]", value, lo, integer=integer, lo_open=field.startswith("oval"))
    for i, (n, lines) in enumerate(zip(columns["vertices"], columns["lines"], strict=True)):
        if n * lines > MAX_STEPS:
            raise FracbuildError(f"category {i}: vertices x lines must be at most {MAX_STEPS:,}, got {n * lines:,}")
    return {field: columns[field] for field in fields}


def validate(recipe: dict[str, Any]) -> dict[str, Any]:
    """Check the categories, the ranges and the form (categories, or LPCE with ``perturb.delta``)."""
    recipe = shared_keys(recipe, DEFAULTS, ("categories", "ranges"))
    categories, ranges = check_categories(recipe), check_ranges(recipe)
    perturb = recipe["perturb"]
    count = len(categories["vertices"])
    choice("perturb.mode", perturb["mode"], PERTURB_MODES)
    if perturb["delta"] is None:
        if perturb["classes"] > count:
            raise FracbuildError(f"perturb.classes must be <= the recipe's {count} categories, got "
                                 f"{perturb['classes']} (or set perturb.delta: the LPCE form of category 0)")
    else:
        check_delta(perturb)
    return {**recipe, "categories": categories, "ranges": ranges}


def draw_shape(source: str, ranges: dict[str, Any], rng: np.random.Generator, keys: tuple[str, ...]) -> dict:
    """Oval rates, radius and centre (those in ``keys``), drawn as the originals draw them."""
    shape: dict[str, Any] = {}
    for key in keys:
        if key == "oval":
            shape["oval_x"], shape["oval_y"] = (float(rng.uniform(*ranges["oval"])) for _ in range(2))
        elif key == "radius":
            shape["radius"] = int(rng.integers(ranges["radius"][0], ranges["radius"][1] + 1))
        else:  # (canvas + U{-c..c}) / 2, the row's coordinate first
            c = ranges["centre"]
            shape["centre_y"], shape["centre_x"] = ((ranges["canvas"] + int(rng.integers(-c, c + 1))) / 2
                                                    for _ in range(2))
    return shape


def category_seed(seed: int, category: int) -> list[int]:
    """The seed of category ``category``'s draws in ``new_recipe``: a stream no sample draws from."""
    return [seed, CATEGORY, category]


def draw_category(source: str, ranges: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """One category's parameter set: ``FIELDS[source]``."""
    lo, hi = ranges["vertices"]
    for _ in range(MAX_TRIES):
        n = int(rng.exponential(ranges["vertex_mean"])) if source == "rcdb" else int(rng.integers(lo, hi + 1))
        if lo <= n <= hi:
            break
    else:
        raise FracbuildError(f"no vertex count in {lo}-{hi} in {MAX_TRIES} exponential draws of mean "
                             f"{ranges['vertex_mean']}")
    category = {"vertices": n, "lines": int(rng.integers(ranges["lines"][0], ranges["lines"][1] + 1)),
                "perlin": float(rng.uniform(*ranges["perlin"])),
                "line_width": float(rng.uniform(*ranges["line_width"]))}
    if source == "rcdb":
        category.update(draw_shape(source, ranges, rng, ("radius", "oval", "centre")))
    else:
        category["radius"] = draw_shape(source, ranges, rng, ("radius",))["radius"]
        w0, w1 = ranges["waves"][0], ranges["waves"][1] + 1
        category["wave1"] = int(rng.integers(w0, w1))
        while True:  # the originals' rule: two different frequencies, unless the first is 0
            category["wave2"] = int(rng.integers(w0, w1))
            if category["wave2"] != category["wave1"] or category["wave1"] == 0:
                break
        category.update(draw_shape(source, ranges, rng, ("oval", "centre")))
    return category


def new_recipe(source: str, name: str | None = None, classes: int = 1000, seed: int = 0, delta: float | None = None,
               instances: int | None = None, ranges: dict[str, Any] | None = None) -> dict[str, Any]:
    """C categories drawn from ``seed`` (``classes``), or with ``delta`` the LPCE form: one category
    (the first of ``seed``'s, centred on the canvas), ``classes`` classes perturbing its radius, 1
    instance by default."""
    name = check_name(name or source)
    check_seed(seed)
    number("classes", classes, 1, integer=True)
    ranges = check_ranges({"source": source, "ranges": ranges or {}})
    count = classes if delta is None else 1
    drawn = [draw_category(source, ranges, np.random.default_rng(category_seed(seed, c))) for c in range(count)]
    if delta is not None:  # one parameter set for every image: in the middle, not at a random place
        drawn[0].update(centre_x=ranges["canvas"] / 2, centre_y=ranges["canvas"] / 2)
    perturb = {"classes": classes, "seed": seed, **({"delta": delta} if delta is not None else {})}
    if instances is None and delta is not None:
        instances = 1
    # One image per class: shards of 100, as OFDB's (a few shards per worker); otherwise a category's.
    render = {} if instances is None else {"instances": instances, **({"shard_size": 100} if instances == 1 else {})}
    return validate({"name": name, "source": source,
                     "categories": {field: [c[field] for c in drawn] for field in FIELDS[source]},
                     "ranges": ranges, "search": {"classes": count, "seed": seed}, "perturb": perturb,
                     "render": render})


def describe(recipe: dict[str, Any], seconds: float) -> str:
    p = recipe["perturb"]
    if p["delta"] is not None:
        return (f"1 {recipe['source']} category (seed {recipe['search']['seed']}), {p['classes']} classes "
                f"perturbing its radius ({p['mode']}, delta {p['delta']})")
    k = recipe["render"]["instances"]
    return (f"{p['classes']} {recipe['source']} categories (seed {recipe['search']['seed']}), "
            f"{k} instance{'s' if k != 1 else ''} each, {seconds:.2f} s")


def summary(manifest: dict[str, Any]) -> list[str]:
    recipe = manifest.get("recipe", {})
    columns = recipe.get("categories", {})
    spans = ", ".join(f"{field} {min(columns[field])}-{max(columns[field])}" for field in ("vertices", "lines")
                      if isinstance(columns.get(field), list) and columns[field])
    return [f"  categories: {len(columns.get('vertices', []))}" + (f" ({spans})" if spans else ""),
            *settings_lines(recipe)]


@functools.lru_cache(maxsize=64)
def angles(n: int, wave1: int = 0, wave2: int = 0) -> tuple[np.ndarray, ...]:
    """``cos``, ``sin`` of each vertex's angle ``2π/n · v`` and the two half sines ``0.5 sin(2π/n · v · f)``,
    with Python's ``math`` as the originals compute them (read-only: cached)."""
    step = (math.pi * 2) / n
    tables = (np.array([math.cos(step * v) for v in range(n)]), np.array([math.sin(step * v) for v in range(n)]),
              np.array([0.5 * math.sin(step * v * wave1) for v in range(n)]),
              np.array([0.5 * math.sin(step * v * wave2) for v in range(n)]))
    for table in tables:
        table.flags.writeable = False
    return tables


def draw(source: str, params: dict[str, Any], inputs: np.ndarray, gray: np.ndarray, size: int,
         canvas: int = 512) -> np.ndarray:
    """The ``size x size`` image of one parameter set and its draws: ``inputs`` ``(lines, 2,
    vertices)`` Perlin inputs (a line's x inputs, then its y inputs; float64 or float32, which
    pnoise1 rounds them to) and ``gray`` ``(lines,)``."""
    waves = (params["wave1"], params["wave2"]) if source == "visualatom" else (0, 0)
    cos, sin, wave1, wave2 = angles(params["vertices"], *waves)
    centre = np.array([params["centre_x"], params["centre_y"]], dtype=np.float64)
    # RCDB adds the centre where it draws; VisualAtom places the start polygon around it.
    origin, shift = (np.zeros(2), centre) if source == "rcdb" else (centre, np.zeros(2))
    shape = np.array([params["radius"], params["oval_x"], params["oval_y"]], dtype=np.float64)
    image = np.full((size, size), BACKGROUND[source], dtype=np.uint8)
    ink = np.minimum(gray, 255).astype(np.uint8)  # Pillow clips a gray level of 256 to 255
    draw_contours(image, cos, sin, wave1, wave2, shape, origin, shift, size / canvas, float(params["perlin"]),
                  GAIN[source], float(params["line_width"]), np.ascontiguousarray(inputs), ink)
    return image


def create(recipe: dict[str, Any]) -> ContourSource:
    return ContourSource(recipe)


class ContourSource:
    """Class c is category c (or, in the LPCE form, category 0 with its radius perturbed); instance
    i's draws come from ``default_rng(sequence_seed(seed, ..., c, i))``, per class, or shared by
    every class in the LPCE form."""

    def __init__(self, recipe: dict[str, Any]):
        self.source = recipe["source"]
        self.categories = recipe["categories"]
        self.ranges = recipe["ranges"]
        self.perturb = recipe["perturb"]
        self.render = recipe["render"]
        self.lpce = self.perturb["delta"] is not None

    def class_params(self, cls: int) -> dict[str, Any]:
        params = {field: column[0 if self.lpce else cls] for field, column in self.categories.items()}
        if self.lpce:
            rng = np.random.default_rng([self.perturb["seed"], NOISE, cls])
            radius = ifs.perturb_params(np.array([params["radius"]]), self.perturb["mode"], self.perturb["delta"], rng)
            params["radius"] = float(radius[0])
        return params

    def sample(self, cls: int, instance: int) -> tuple[np.ndarray, dict[str, Any]]:
        params = self.class_params(cls)
        seed = sequence_seed(self.perturb["seed"], "shared" if self.lpce else "per-class", cls, instance)
        rng = np.random.default_rng(seed)
        if instance and not self.lpce:
            params.update(draw_shape(self.source, self.ranges, rng, REDRAWN[self.source]))
        lo, hi = self.ranges["gray"]
        gray = rng.integers(lo, hi + 1, size=params["lines"])
        # pnoise1 takes float32: the inputs are drawn in it (half the generator's work of doubles).
        inputs = rng.random((params["lines"], 2, params["vertices"]), dtype=np.float32) * np.float32(NOISE_SPAN)
        image = draw(self.source, params, inputs, gray, self.render["size"], self.ranges["canvas"])
        seeds = {"draws": seed, **({"radius": [self.perturb["seed"], NOISE, cls]} if self.lpce else {})}
        meta = {"class": cls, "instance": instance, "category": 0 if self.lpce else cls, **params,
                "fill": ink_fraction(image, BACKGROUND[self.source]), "seeds": seeds}
        return image, meta
