"""1p-frac: class c is the recipe's IFS with every parameter perturbed (the LIEP classes)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ifs
from ..errors import FracbuildError
from ..kernels import DRAW_MODES, fill_rate, fills, map_choices, random_sequence, render_image
from ..recipe import PERTURB_DEFAULTS, PERTURB_MODES, RENDER_DEFAULTS, SEQUENCE_MODES, choice, flag, number
from . import NOISE, flip, flip_name, sequence_seed

#: A class whose perturbations keep failing the fill check this often is an error, not a loop.
MAX_REDRAWS = 1000
DEFAULTS = {"fractal": {"perturb": PERTURB_DEFAULTS, "render": RENDER_DEFAULTS}}


def check_maps(value: Any, where: str) -> np.ndarray:
    """An ``(N, 6)`` float array of N >= 1 finite maps ``[a, b, c, d, e, f]``, or a one-line error."""
    try:
        maps = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise FracbuildError(f"{where} must be a list of [a, b, c, d, e, f] numbers") from None
    if maps.ndim != 2 or maps.shape[1] != 6 or len(maps) < 1 or not np.isfinite(maps).all():
        raise FracbuildError(f"{where} must be N >= 1 finite rows [a, b, c, d, e, f], got shape {maps.shape}")
    return maps


def check_drawing(render: dict[str, Any]) -> None:
    """The chaos-game render keys that fractal sources share."""
    number("render.points", render["points"], 1, integer=True)
    choice("render.draw", render["draw"], DRAW_MODES)
    flag("render.flips", render["flips"])


def validate(recipe: dict[str, Any]) -> dict[str, Any]:
    """Check the IFS (probabilities and σ filled in) and the perturbation and render keys."""
    system = recipe.get("ifs")
    if not isinstance(system, dict) or "maps" not in system:
        raise FracbuildError("recipe needs 'ifs' with 'maps' (a list of [a, b, c, d, e, f])")
    maps = check_maps(system["maps"], "ifs.maps")
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
    perturb, render = recipe["perturb"], recipe["render"]
    choice("perturb.mode", perturb["mode"], PERTURB_MODES)
    number("perturb.delta", perturb["delta"], 0.0)
    check_drawing(render)
    number("render.fill_min", render["fill_min"], 0.0, 1.0)
    choice("render.sequence", render["sequence"], SEQUENCE_MODES)
    return {**recipe, "ifs": {"maps": maps.tolist(), "probs": probs.tolist(), "sigma": sigma}}


def create(recipe: dict[str, Any]) -> FractalSource:
    return FractalSource(recipe)


class FractalSource:
    """Renders perturbation classes of one IFS; instances differ in their chaos-game sequence.

    Class c's noise comes from ``default_rng([seed, NOISE, c])``: one class can be re-rendered
    alone, and a perturbation whose instance-0 image has fill not above ``fill_min`` is replaced by
    the generator's next draw (counted as a redraw). Map probabilities stay the base system's.
    """

    def __init__(self, recipe: dict[str, Any]):
        self.maps = np.array(recipe["ifs"]["maps"], dtype=np.float64)
        self.probs = np.array(recipe["ifs"]["probs"], dtype=np.float64)
        self.perturb = recipe["perturb"]
        self.render = recipe["render"]
        self._sequences: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._classes: dict[int, tuple[np.ndarray, int, np.ndarray]] = {}

    def sequence_seed(self, cls: int, instance: int) -> list[int]:
        return sequence_seed(self.perturb["seed"], self.render["sequence"], cls, instance)

    def sequence(self, cls: int, instance: int) -> tuple[np.ndarray, np.ndarray]:
        """Map choices and patch masks, cached: shared sequences are reused by every class."""
        key = tuple(self.sequence_seed(cls, instance))
        if key not in self._sequences:
            if len(self._sequences) >= 4:  # instances vary fastest; a few entries suffice
                self._sequences.clear()
            uniforms, masks = random_sequence(self.render["points"], np.random.default_rng(list(key)))
            self._sequences[key] = map_choices(self.probs, uniforms), masks
        return self._sequences[key]

    def draw(self, maps: np.ndarray, cls: int, instance: int) -> np.ndarray:
        choices, masks = self.sequence(cls, instance)
        return render_image(maps, choices, masks, self.render["size"], self.render["draw"])

    def class_maps(self, cls: int) -> tuple[np.ndarray, int, np.ndarray]:
        """Class ``cls``'s perturbed maps, how many draws were rejected, and its instance-0 image."""
        if cls not in self._classes:
            self._classes.clear()  # samples come in class order: one class at a time
            rng = np.random.default_rng([self.perturb["seed"], NOISE, cls])
            for redraws in range(MAX_REDRAWS):
                maps = ifs.perturb_maps(self.maps, self.perturb["mode"], self.perturb["delta"], rng)
                image = self.draw(maps, cls, 0)
                if fills(image, self.render["fill_min"]):
                    self._classes[cls] = maps, redraws, image
                    break
            else:
                raise FracbuildError(
                    f"class {cls}: no perturbation exceeded fill {self.render['fill_min']} in {MAX_REDRAWS} draws"
                )
        return self._classes[cls]

    def sample(self, cls: int, instance: int) -> tuple[np.ndarray, dict[str, Any]]:
        maps, redraws, image = self.class_maps(cls)
        if instance:
            image = self.draw(maps, cls, instance)
        how = flip_name(instance, self.render["flips"])
        image = flip(image, how)
        meta = {
            "class": cls,
            "instance": instance,
            "maps": maps.tolist(),
            "redraws": redraws,
            "fill": float(fill_rate(image)),
            "flip": how,
            "seeds": {"noise": [self.perturb["seed"], NOISE, cls], "sequence": self.sequence_seed(cls, instance)},
        }
        return image, meta
