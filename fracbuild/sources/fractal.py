"""1p-frac: class c is the recipe's IFS with every parameter perturbed (the LIEP classes)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ifs
from ..errors import FracbuildError
from ..kernels import fill_rate, map_choices, random_sequence, render_image

#: Seed-sequence tags, so that class noise and chaos-game sequences never share a stream.
NOISE, SHARED_SEQUENCE, CLASS_SEQUENCE = 0, 1, 2
#: A class whose perturbations keep failing the fill check this often is an error, not a loop.
MAX_REDRAWS = 1000
#: Instance i of a class is flipped by FLIPS[i % 4] when ``render.flips`` is on.
FLIPS = ("none", "horizontal", "vertical", "both")


def flip(image: np.ndarray, how: str) -> np.ndarray:
    if how in ("horizontal", "both"):
        image = image[:, ::-1]
    if how in ("vertical", "both"):
        image = image[::-1, :]
    return np.ascontiguousarray(image)


class FractalSource:
    """Renders perturbation classes of one IFS; instances differ in their chaos-game sequence.

    Class c's noise comes from ``default_rng([seed, NOISE, c])``: one class can be re-rendered
    alone, and a perturbation whose instance-0 image has fill below ``fill_min`` is replaced by
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
        seed = self.perturb["seed"]
        if self.render["sequence"] == "shared":
            return [seed, SHARED_SEQUENCE, instance]
        return [seed, CLASS_SEQUENCE, instance, cls]

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
                if fill_rate(image) >= self.render["fill_min"]:
                    self._classes[cls] = maps, redraws, image
                    break
            else:
                raise FracbuildError(
                    f"class {cls}: no perturbation reached fill {self.render['fill_min']} in {MAX_REDRAWS} draws"
                )
        return self._classes[cls]

    def sample(self, cls: int, instance: int) -> tuple[np.ndarray, dict[str, Any]]:
        maps, redraws, image = self.class_maps(cls)
        if instance:
            image = self.draw(maps, cls, instance)
        how = FLIPS[instance % 4] if self.render["flips"] else "none"
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
