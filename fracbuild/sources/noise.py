"""Noise images (the paper's Table 4): one noise distribution whose parameters are perturbed.

``noise-gaussian`` draws every pixel from N(mean, variance), ``noise-uniform`` from U(low, high),
in gray levels scaled to [0, 1] and clipped there. Class c perturbs the distribution's parameters
(the paper adds ε to the mean and covariance; with one gray channel these are a mean and a
variance) and draws with a random sequence shared by every class, so, as with the fractal
classes, an image is a function of its parameters. Noise images are dense, fractals sparse.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ifs
from ..checks import choice, number, section
from ..errors import FracbuildError
from ..kernels import fill_rate
from ..settings import PERTURB_MODES
from .common import NOISE, SEQUENCE_MODES, check_delta, sequence_seed, settings_lines, shared_keys

#: The distribution parameters of each noise source, in gray levels scaled to [0, 1].
PARAMETERS: dict[str, dict[str, float]] = {
    "noise-gaussian": {"mean": 0.5, "variance": 0.0625},
    "noise-uniform": {"low": 0.0, "high": 1.0},
}
#: Additive by default: the paper adds ε to the distribution's parameters, and a multiplied
#: bound of 0 would never move.
PERTURB_DEFAULTS: dict[str, Any] = {"mode": "additive", "delta": 0.1, "classes": 1000, "seed": 0}
RENDER_DEFAULTS: dict[str, Any] = {"size": 512, "instances": 1, "sequence": "shared", "shard_size": 100}
DEFAULTS = {source: {"perturb": PERTURB_DEFAULTS, "render": RENDER_DEFAULTS} for source in PARAMETERS}
OPTIONS = dict.fromkeys(PARAMETERS, {"delta"})


def validate(recipe: dict[str, Any]) -> dict[str, Any]:
    """Check the ``noise`` parameters and the perturbation and render keys."""
    recipe = shared_keys(recipe, DEFAULTS, ("noise",))
    source = recipe["source"]
    if "noise" not in recipe:
        raise FracbuildError(f"recipe needs 'noise' with {', '.join(PARAMETERS[source])}")
    noise = section(recipe, "noise", PARAMETERS[source], source)
    for key, value in noise.items():
        number(f"noise.{key}", value, 0.0 if key == "variance" else -np.inf)
    if source == "noise-uniform" and not noise["low"] < noise["high"]:
        raise FracbuildError(f"noise.low must be < noise.high, got {noise['low']} and {noise['high']}")
    choice("perturb.mode", recipe["perturb"]["mode"], PERTURB_MODES)
    check_delta(recipe["perturb"])
    choice("render.sequence", recipe["render"]["sequence"], SEQUENCE_MODES)
    return {**recipe, "noise": noise}


def new_recipe(source: str = "noise-gaussian", name: str | None = None, classes: int = 1000, seed: int = 0,
               delta: float | None = None, noise: dict[str, float] | None = None) -> dict[str, Any]:
    """A noise recipe: nothing is searched, the distribution is given (defaults: ``PARAMETERS``)."""
    if source not in PARAMETERS:
        raise FracbuildError(f"a noise source is one of {', '.join(PARAMETERS)}, got {source!r}")
    perturb = {"classes": classes, "seed": seed, **({"delta": delta} if delta is not None else {})}
    return validate({"name": name or source, "source": source, "noise": {**PARAMETERS[source], **(noise or {})},
                     "perturb": perturb})


def describe(recipe: dict[str, Any], seconds: float) -> str:
    params = ", ".join(f"{k} {v}" for k, v in recipe["noise"].items())
    return f"{recipe['source']} ({params}), {recipe['perturb']['classes']} classes"


def summary(manifest: dict[str, Any]) -> list[str]:
    return settings_lines(manifest.get("recipe", {}))


def create(recipe: dict[str, Any]) -> NoiseSource:
    return NoiseSource(recipe)


class NoiseSource:
    """Class c's parameters come from ``default_rng([seed, NOISE, c])``; instance i's pixels from
    the sample's sequence generator (shared by every class unless ``render.sequence`` is
    ``per-class``): standard normal or standard uniform draws, shifted and scaled."""

    def __init__(self, recipe: dict[str, Any]):
        self.source = recipe["source"]
        self.names = list(PARAMETERS[self.source])
        self.params = np.array([recipe["noise"][k] for k in self.names])
        self.perturb = recipe["perturb"]
        self.render = recipe["render"]

    def class_params(self, cls: int) -> dict[str, float]:
        rng = np.random.default_rng([self.perturb["seed"], NOISE, cls])
        values = ifs.perturb_params(self.params, self.perturb["mode"], self.perturb["delta"], rng)
        return dict(zip(self.names, values.tolist(), strict=True))

    def sample(self, cls: int, instance: int) -> tuple[np.ndarray, dict[str, Any]]:
        params = self.class_params(cls)
        seed = sequence_seed(self.perturb["seed"], self.render["sequence"], cls, instance)
        rng = np.random.default_rng(seed)
        shape = (self.render["size"],) * 2
        if self.source == "noise-gaussian":
            # A perturbed variance below 0 is taken as 0: a flat image of the mean.
            gray = params["mean"] + np.sqrt(max(params["variance"], 0.0)) * rng.standard_normal(shape)
        else:
            low, high = sorted((params["low"], params["high"]))  # perturbed bounds may cross
            gray = low + (high - low) * rng.random(shape)
        image = np.rint(np.clip(gray, 0.0, 1.0) * 255.0).astype(np.uint8)
        meta = {
            "class": cls,
            "instance": instance,
            "noise": params,
            "fill": float(fill_rate(image)),
            "seeds": {"noise": [self.perturb["seed"], NOISE, cls], "sequence": seed},
        }
        return image, meta
