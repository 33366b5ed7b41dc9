"""Sources of images. A source turns ``(class, instance)`` into an image and its metadata.

The render pipeline (shards, manifest, parallelism, resume, verify) only ever calls
``create_source(recipe).sample(cls, instance)``; a new kind of image is one module here,
named by the recipe's ``source`` key. A source module has

- ``DEFAULTS``: ``{source: {"perturb": {...}, "render": {...}}}``, the keys each of its sources
  takes in those sections, with their defaults (``perturb.classes``, ``perturb.seed``,
  ``render.size``, ``render.instances`` and ``render.shard_size`` are checked by the recipe);
- ``validate(recipe)``: checks its own keys and returns the recipe with them filled in;
- ``create(recipe)``: the ``Source`` of a validated recipe.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from ..errors import FracbuildError

DEFAULT_SOURCE = "fractal"
#: Every source name a recipe may give, and the module that implements it.
SOURCES = {
    "fractal": "fractal",
    "fractaldb": "fractaldb",
    "ofdb": "fractaldb",
    "noise-gaussian": "noise",
    "noise-uniform": "noise",
    "image": "image",
}

#: Seed-sequence tags, so that class noise and random sequences never share a stream.
NOISE, SHARED_SEQUENCE, CLASS_SEQUENCE = 0, 1, 2
#: Instance i of a class is flipped by FLIPS[i % 4] when ``render.flips`` is on.
FLIPS = ("none", "horizontal", "vertical", "both")


class Source(Protocol):
    def sample(self, cls: int, instance: int) -> tuple[np.ndarray, dict[str, Any]]:
        """The ``size x size`` uint8 image of one sample and its JSON-able metadata."""
        ...


def source_module(name: Any) -> ModuleType:
    """The module implementing source ``name``; an unknown name lists the valid ones."""
    if not isinstance(name, str) or name not in SOURCES:
        raise FracbuildError(f"unknown source {name!r}; expected one of {', '.join(SOURCES)}")
    return importlib.import_module(f".{SOURCES[name]}", __name__)


def create_source(recipe: dict[str, Any]) -> Source:
    """The source a (validated) recipe names."""
    return source_module(recipe.get("source", DEFAULT_SOURCE)).create(recipe)


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
