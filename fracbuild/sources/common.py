"""What every source module shares: the recipe keys all sources take, seed tags, flips."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..checks import check_name, number, section
from ..errors import FracbuildError
from ..kernels import PAD

#: Seed-sequence tags, so that class noise, random sequences and drawn categories never share a stream.
#: numpy pads a seed list with zeros to four words, so ``[seed, tag, c]`` is ``[seed, tag, c, 0]``:
#: each kind of stream needs a tag of its own, not only a list of another length.
NOISE, SHARED_SEQUENCE, CLASS_SEQUENCE, CATEGORY = 0, 1, 2, 3
#: ``render.sequence``: one random sequence for every class, or one per class.
SEQUENCE_MODES = ("shared", "per-class")
#: Instance i of a class is flipped by FLIPS[i % 4] when ``render.flips`` is on.
FLIPS = ("none", "horizontal", "vertical", "both")
#: The recipe keys of every source; a source adds its own (``shared_keys``'s ``own``).
TOP_KEYS = ("name", "source", "search", "perturb", "render")
#: Δ above this scales a parameter a million-fold (no image is left to draw), and near the float range
#: the uniform draw of the perturbation overflows.
MAX_DELTA = 1e6


def shared_keys(recipe: dict[str, Any], defaults: dict[str, dict[str, dict[str, Any]]],
                own: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keys every source shares, checked, with ``perturb`` and ``render`` filled from the
    source's entry in ``defaults`` (a module's ``DEFAULTS``): ``name``, ``perturb.classes``,
    ``perturb.seed``, ``render.size``, ``render.instances``, ``render.shard_size``; ``search`` is
    an object. A key the source does not take, at the top (``TOP_KEYS`` and its ``own``), in ``perturb``
    or in ``render``, is an error: a misspelt key would otherwise be left out unnoticed."""
    check_name(recipe.get("name"))
    source = recipe.get("source")
    if source not in defaults:
        raise FracbuildError(f"source must be one of {', '.join(defaults)} here, got {source!r}")
    unknown = set(recipe) - set(TOP_KEYS) - set(own)
    if unknown:
        raise FracbuildError(f"recipe has unknown key(s) for source {source!r}: {', '.join(sorted(map(str, unknown)))}")
    perturb = section(recipe, "perturb", defaults[source]["perturb"], source)
    number("perturb.classes", perturb["classes"], 1, integer=True)
    number("perturb.seed", perturb["seed"], 0, integer=True)
    render = section(recipe, "render", defaults[source]["render"], source)
    number("render.size", render["size"], 2 * PAD + 4, 65536, integer=True)
    number("render.instances", render["instances"], 1, integer=True)
    number("render.shard_size", render["shard_size"], 1, integer=True)
    search = recipe.get("search", {})
    if not isinstance(search, dict):
        raise FracbuildError("recipe key 'search' must be an object")
    out = {"name": recipe["name"], "source": source, **recipe}
    out.update(search=search, perturb=perturb, render=render)
    return out


def check_delta(perturb: dict[str, Any]) -> float:
    return number("perturb.delta", perturb["delta"], 0.0, MAX_DELTA)


def settings_lines(recipe: dict[str, Any], keys: tuple[str, ...] = ("perturb", "render")) -> list[str]:
    """``info``'s lines for a recipe's own settings, as the recipe spells them."""
    return [f"  {key}: " + ", ".join(f"{k} {v}" for k, v in recipe[key].items())
            for key in keys if isinstance(recipe.get(key), dict)]


def sequence_seed(seed: int, sequence: str, cls: int, instance: int) -> list[int]:
    """The seed of a sample's random sequence: ``shared`` by every class, or ``per-class``."""
    if sequence == "shared":
        return [seed, SHARED_SEQUENCE, instance]
    return [seed, CLASS_SEQUENCE, instance, cls]


def flip_name(instance: int, flips: bool) -> str:
    """How instance ``instance`` of a class is flipped: ``FLIPS[instance % 4]``, or ``none`` without flips."""
    return FLIPS[instance % 4] if flips else "none"


def flip(image: np.ndarray, how: str) -> np.ndarray:
    if how in ("horizontal", "both"):
        image = image[:, ::-1]
    if how in ("vertical", "both"):
        image = image[::-1, :]
    return np.ascontiguousarray(image)
