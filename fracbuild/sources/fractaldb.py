"""FractalDB and OFDB: C categories, each its own IFS (found by ``searching.search_categories``).

A FractalDB category has M instances made as the reference makes them: the category's system
with one of its six parameters (in every map) scaled by a factor, a patch render (its own
random 3 x 3 masks over the same chaos-game points) and a flip. With FractalDB's factors
``{0.2, 0.6, 1.4, 1.8}`` that is 25 systems x 10 patch renders x 4 flips = 1000 instances.
OFDB is the same with one instance per category: the system as found, unflipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ifs
from ..errors import FracbuildError
from ..kernels import draw_image, fill_rate, map_choices, random_sequence, trace
from ..recipe import number
from . import flip, flip_name, sequence_seed
from .fractal import check_drawing, check_maps

#: FractalDB's parameter-scaling factors (its ``weights_0.4``); 1.0, the system itself, is always in.
SCALES = [0.2, 0.6, 1.4, 1.8]
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
    "ofdb": {"perturb": PERTURB_DEFAULTS, "render": {**RENDER_DEFAULTS, "instances": 1, "shard_size": 100}},
}


def validate(recipe: dict[str, Any]) -> dict[str, Any]:
    """Check the categories (``perturb.classes`` takes the first C of them) and the scales."""
    categories = recipe.get("categories")
    if not isinstance(categories, list) or not categories:
        raise FracbuildError("recipe needs 'categories': a list of systems, each a list of [a, b, c, d, e, f]")
    categories = [check_maps(maps, f"categories[{i}]").tolist() for i, maps in enumerate(categories)]
    perturb, render = recipe["perturb"], recipe["render"]
    if perturb["classes"] > len(categories):
        raise FracbuildError(f"perturb.classes must be <= the recipe's {len(categories)} categories, "
                             f"got {perturb['classes']}")
    scales = perturb["scales"]
    if not isinstance(scales, list):
        raise FracbuildError(f"perturb.scales must be a list of numbers, got {scales!r}")
    for i, factor in enumerate(scales):
        number(f"perturb.scales[{i}]", factor, 0.0)
    check_drawing(render)
    if recipe.get("source") == "ofdb" and render["instances"] != 1:
        raise FracbuildError(f"render.instances must be 1 for ofdb (one image per category), got {render['instances']}")
    return {**recipe, "categories": categories}


def scale_table(scales: list[float]) -> np.ndarray:
    """``(1 + 6 S, 6)`` multipliers of ``a b c d e f``: row 0 keeps the system as found, then each
    parameter in turn is scaled by each factor (FractalDB's weights)."""
    rows = [np.ones(6)]
    for p in range(6):
        for factor in scales:
            row = np.ones(6)
            row[p] = factor
            rows.append(row)
    return np.array(rows)


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
