"""Recipes: the JSON that pins a dataset (the IFS, how it was found, how to perturb and render).

``make_recipe`` builds one, ``validate_recipe`` fills defaults and checks every value with a
one-line error, ``load_recipe`` / ``save_json`` are the file edges.
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
from .kernels import DRAW_MODES, PAD

PERTURB_MODES = ("multiplicative", "additive")

#: The paper's perturbation defaults (REFERENCE.md): Δ = 0.1 multiplicative, L = 1000 classes.
PERTURB_DEFAULTS: dict[str, Any] = {
    "mode": "multiplicative",
    "delta": 0.1,
    "classes": 1000,
    "seed": 0,
}
SEQUENCE_MODES = ("shared", "per-class")

#: The paper's render defaults: 512 px, 100,000 points, patch drawing, fill >= 0.05, 1 image/class,
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
    """A complete recipe for ``maps`` (probabilities and σ computed here), with defaults filled."""
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


def _section(recipe: dict, key: str, defaults: dict) -> dict:
    value = recipe.get(key, {})
    if not isinstance(value, dict):
        raise FracbuildError(f"recipe key {key!r} must be an object")
    unknown = set(value) - set(defaults)
    if unknown:
        raise FracbuildError(f"recipe {key!r} has unknown key(s): {', '.join(sorted(unknown))}")
    return {**defaults, **value}


def _number(section: str, key: str, value: Any, lo: float, hi: float = math.inf,
            integer: bool = False, lo_open: bool = False) -> Any:
    where = f"{section}.{key}"
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise FracbuildError(f"{where} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if value < lo or (lo_open and value == lo) or value > hi:
        bound = f"{'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi < math.inf else "")
        raise FracbuildError(f"{where} must be {bound}, got {value!r}")
    return value


def check_name(name: Any) -> str:
    """A dataset name becomes the shard prefix: no path separators, dots (webdataset keys) or spaces."""
    if not isinstance(name, str) or not name or any(c in name for c in "/\\. \t\n"):
        raise FracbuildError(f"name must be a non-empty string without '/', '.' or spaces, got {name!r}")
    return name


def validate_recipe(recipe: Any) -> dict[str, Any]:
    """Check every value of a recipe and fill defaults; raise ``FracbuildError`` with one line."""
    if not isinstance(recipe, dict):
        raise FracbuildError("a recipe must be a JSON object")
    check_name(recipe.get("name"))
    system = recipe.get("ifs")
    if not isinstance(system, dict) or "maps" not in system:
        raise FracbuildError("recipe needs 'ifs' with 'maps' (a list of [a, b, c, d, e, f])")
    try:
        maps = np.array(system["maps"], dtype=np.float64)
    except (TypeError, ValueError):
        raise FracbuildError("ifs.maps must be a list of [a, b, c, d, e, f] numbers") from None
    if maps.ndim != 2 or maps.shape[1] != 6 or len(maps) < 1 or not np.isfinite(maps).all():
        raise FracbuildError(f"ifs.maps must be N >= 1 finite rows [a, b, c, d, e, f], got shape {maps.shape}")
    probs = system.get("probs")
    if probs is None:
        probs = ifs.map_probabilities(maps)
    try:
        probs = np.array(probs, dtype=np.float64)
    except (TypeError, ValueError):
        raise FracbuildError("ifs.probs must be a list of numbers") from None
    if probs.shape != (len(maps),) or (probs < 0).any() or abs(probs.sum() - 1.0) > 1e-6:
        raise FracbuildError(f"ifs.probs must be {len(maps)} non-negative numbers summing to 1")
    sigma = ifs.sigma_factor(maps)
    if "sigma" in system and not (isinstance(system["sigma"], (int, float)) and abs(system["sigma"] - sigma) < 1e-6):
        raise FracbuildError(f"ifs.sigma {system['sigma']!r} does not match the maps' σ-factor {sigma:.6f}")

    perturb = _section(recipe, "perturb", PERTURB_DEFAULTS)
    if perturb["mode"] not in PERTURB_MODES:
        raise FracbuildError(f"perturb.mode must be one of {', '.join(PERTURB_MODES)}, got {perturb['mode']!r}")
    _number("perturb", "delta", perturb["delta"], 0.0)
    _number("perturb", "classes", perturb["classes"], 1, integer=True)
    _number("perturb", "seed", perturb["seed"], 0, integer=True)

    render = _section(recipe, "render", RENDER_DEFAULTS)
    _number("render", "size", render["size"], 2 * PAD + 4, 65536, integer=True)
    _number("render", "points", render["points"], 1, integer=True)
    if render["draw"] not in DRAW_MODES:
        raise FracbuildError(f"render.draw must be one of {', '.join(DRAW_MODES)}, got {render['draw']!r}")
    _number("render", "fill_min", render["fill_min"], 0.0, 1.0)
    _number("render", "instances", render["instances"], 1, integer=True)
    if render["sequence"] not in SEQUENCE_MODES:
        raise FracbuildError(f"render.sequence must be one of {', '.join(SEQUENCE_MODES)}, got {render['sequence']!r}")
    if not isinstance(render["flips"], bool):
        raise FracbuildError(f"render.flips must be true or false, got {render['flips']!r}")
    _number("render", "shard_size", render["shard_size"], 1, integer=True)

    search = recipe.get("search", {})
    if not isinstance(search, dict):
        raise FracbuildError("recipe key 'search' must be an object")
    out = dict(recipe)
    out.update(
        ifs={"maps": maps.tolist(), "probs": probs.tolist(), "sigma": sigma},
        search=search, perturb=perturb, render=render,
    )
    return out


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
            json.dump(obj, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise FracbuildError(f"cannot write {path}: {e.strerror or e}") from None
    return path
