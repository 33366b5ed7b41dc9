"""Recipes: the JSON that pins a dataset (its source, how it was found, how to perturb and render).

``validate_recipe`` checks the keys every source shares (``name``, ``source``, ``perturb``,
``render``) and hands the rest to the source's own ``validate``; every error is one line.
``make_recipe`` builds a ``fractal`` recipe, ``counts`` is the one place that says how many
classes and instances a recipe has, ``load_recipe`` / ``save_json`` are the file edges.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import ifs
from .errors import FracbuildError
from .kernels import PAD
from .sources import DEFAULT_SOURCE, source_module

PERTURB_MODES = ("multiplicative", "additive")

#: The paper's perturbation defaults (REFERENCE.md): Δ = 0.1 multiplicative, L = 1000 classes.
PERTURB_DEFAULTS: dict[str, Any] = {
    "mode": "multiplicative",
    "delta": 0.1,
    "classes": 1000,
    "seed": 0,
}
SEQUENCE_MODES = ("shared", "per-class")

#: The paper's render defaults: 512 px, 100,000 points, patch drawing, fill > 0.05, 1 image/class,
#: the same chaos-game sequence for every class (an image is a function of its parameters).
RENDER_DEFAULTS: dict[str, Any] = {
    "size": 512,
    "points": 100_000,
    "draw": "patch",
    "fill_min": 0.05,
    "instances": 1,
    "sequence": "shared",
    "flips": False,
    "shard_size": 100,
}


def make_recipe(
    name: str,
    maps: np.ndarray,
    search: dict[str, Any] | None = None,
    perturb: dict[str, Any] | None = None,
    render: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete ``fractal`` recipe for ``maps`` (probabilities and σ computed here), defaults filled."""
    maps = np.asarray(maps, dtype=np.float64)
    recipe = {
        "name": name,
        "ifs": {
            "maps": maps.tolist(),
            "probs": ifs.map_probabilities(maps).tolist(),
            "sigma": ifs.sigma_factor(maps),
        },
        "search": dict(search or {}),
        "perturb": {**PERTURB_DEFAULTS, **(perturb or {})},
        "render": {**RENDER_DEFAULTS, **(render or {})},
    }
    return validate_recipe(recipe)


def section(recipe: dict, key: str, defaults: dict, source: str = DEFAULT_SOURCE) -> dict:
    """``recipe[key]`` (an object) over ``defaults``; a key the source does not know is an error."""
    value = recipe.get(key, {})
    if not isinstance(value, dict):
        raise FracbuildError(f"recipe key {key!r} must be an object")
    unknown = set(value) - set(defaults)
    if unknown:
        raise FracbuildError(
            f"recipe {key!r} has unknown key(s) for source {source!r}: {', '.join(sorted(unknown))}"
        )
    return {**defaults, **value}


def number(where: str, value: Any, lo: float, hi: float = math.inf, integer: bool = False,
           lo_open: bool = False) -> Any:
    """``value`` if it is a finite number (an integer if asked) within the bounds; ``where`` names it."""
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise FracbuildError(f"{where} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if value < lo or (lo_open and value == lo) or value > hi:
        bound = f"{'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi < math.inf else "")
        raise FracbuildError(f"{where} must be {bound}, got {value!r}")
    return value


def choice(where: str, value: Any, options: tuple[str, ...]) -> str:
    if value not in options:
        raise FracbuildError(f"{where} must be one of {', '.join(options)}, got {value!r}")
    return value


def flag(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise FracbuildError(f"{where} must be true or false, got {value!r}")
    return value


def check_name(name: Any) -> str:
    """A dataset name becomes the shard prefix: no path separators, dots (webdataset keys) or spaces."""
    if not isinstance(name, str) or not name or any(c in name for c in "/\\. \t\n"):
        raise FracbuildError(f"name must be a non-empty string without '/', '.' or spaces, got {name!r}")
    return name


def validate_recipe(recipe: Any) -> dict[str, Any]:
    """Check every value of a recipe and fill defaults; raise ``FracbuildError`` with one line.

    ``source`` (default ``fractal``) picks the source module, whose ``DEFAULTS`` say which
    ``perturb`` and ``render`` keys it takes and whose ``validate`` checks its own keys.
    """
    if not isinstance(recipe, dict):
        raise FracbuildError("a recipe must be a JSON object")
    check_name(recipe.get("name"))
    source = recipe.get("source", DEFAULT_SOURCE)
    module = source_module(source)
    defaults = module.DEFAULTS[source]
    perturb = section(recipe, "perturb", defaults["perturb"], source)
    number("perturb.classes", perturb["classes"], 1, integer=True)
    number("perturb.seed", perturb["seed"], 0, integer=True)
    render = section(recipe, "render", defaults["render"], source)
    number("render.size", render["size"], 2 * PAD + 4, 65536, integer=True)
    number("render.instances", render["instances"], 1, integer=True)
    number("render.shard_size", render["shard_size"], 1, integer=True)
    search = recipe.get("search", {})
    if not isinstance(search, dict):
        raise FracbuildError("recipe key 'search' must be an object")
    out = {"name": recipe["name"], "source": source, **recipe}
    out.update(search=search, perturb=perturb, render=render)
    return module.validate(out)


def counts(recipe: dict[str, Any]) -> tuple[int, int]:
    """``(classes, instances)`` of a validated recipe, for every source; the pipeline reads them here."""
    return recipe["perturb"]["classes"], recipe["render"]["instances"]


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a recipe file."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise FracbuildError(f"cannot read recipe {path}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise FracbuildError(f"recipe {path} is not valid JSON: {e.msg} (line {e.lineno})") from None
    try:
        return validate_recipe(data)
    except FracbuildError as e:
        raise FracbuildError(f"recipe {path}: {e}") from None


def check_output(path: str | os.PathLike, force: bool = False) -> Path:
    """Refuse an existing file (without ``force``) or a directory before any work is done."""
    path = Path(path)
    if path.is_dir():
        raise FracbuildError(f"{path} is a directory")
    if path.exists() and not force:
        raise FracbuildError(f"{path} exists; pass --force to overwrite it")
    return path


def save_json(obj: Any, path: str | os.PathLike, force: bool = False) -> Path:
    """Write JSON atomically (temporary file, then rename): a reader never sees half a file."""
    path = check_output(path, force)
    # A sibling temporary file (created with the umask's permissions) and an atomic rename.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as f:
            f.write(to_json(obj) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise FracbuildError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def to_json(obj: Any, indent: int = 2, level: int = 0) -> str:
    """JSON indented like ``json.dumps(obj, indent=2)``, except that a list holding no objects or
    lists (a map's six parameters, a shard's fields) stays on one line: a recipe of 1000
    FractalDB categories is a few thousand lines instead of fifty thousand."""
    inner = " " * (indent * (level + 1))
    if isinstance(obj, dict) and obj:
        items = [f"{inner}{json.dumps(str(k))}: {to_json(v, indent, level + 1)}" for k, v in obj.items()]
    elif isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        items = [inner + to_json(v, indent, level + 1) for v in obj]
    else:
        return json.dumps(obj, separators=(", ", ": "))
    brackets = "{}" if isinstance(obj, dict) else "[]"
    return brackets[0] + "\n" + ",\n".join(items) + "\n" + " " * (indent * level) + brackets[1]
