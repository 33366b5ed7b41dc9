"""Sources of images. A source turns ``(class, instance)`` into an image and its metadata.

``SOURCES`` is the only list of source names: the recipe checks, ``fracbuild search``, ``render``,
``info`` and ``preview`` find a source's module through it, so a new kind of image is one module
here (and its line in ``SOURCES``). A source module (``SourceModule``) has

- ``DEFAULTS``: ``{source: {"perturb": {...}, "render": {...}}}``, the keys each of its sources
  takes in those sections, with their defaults (the keys every source shares are listed in
  ``common.shared_keys``);
- ``OPTIONS``: ``{source: {...}}``, the options ``new_recipe`` takes besides ``name``, ``classes``
  and ``seed`` (``fracbuild search`` refuses the others);
- ``validate(recipe)``: checks the shared keys (``common.shared_keys``) and its own, and returns the
  recipe with defaults filled in;
- ``new_recipe(source, **options)``: a new validated recipe (what ``fracbuild search`` writes);
- ``describe(recipe, seconds)``: the line ``fracbuild search`` prints about a recipe it made;
- ``summary(manifest)``: the lines ``fracbuild info`` prints about a rendered dataset's own settings;
- ``create(recipe)``: the ``Source`` of a validated recipe.

Modules import what they share from ``common`` and the value checks from ``fracbuild.checks``,
never from this package's ``__init__`` or from ``fracbuild.recipe``: nothing here is imported back.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import FracbuildError

if TYPE_CHECKING:  # the command line reads SOURCES before it knows whether it needs numpy
    import numpy as np

DEFAULT_SOURCE = "fractal"
#: Every source name a recipe may give, and the module that implements it.
SOURCES = {
    "fractal": "fractal",
    "fractaldb": "fractaldb",
    "ofdb": "fractaldb",
    "noise-gaussian": "noise",
    "noise-uniform": "noise",
    "image": "image",
    "rcdb": "contour",
    "visualatom": "contour",
}


class Source(Protocol):
    def sample(self, cls: int, instance: int) -> tuple[np.ndarray, dict[str, Any]]:
        """The ``size x size`` uint8 image of one sample and its JSON-able metadata."""
        ...


class SourceModule(Protocol):
    DEFAULTS: dict[str, dict[str, dict[str, Any]]]
    OPTIONS: dict[str, set[str]]

    def validate(self, recipe: dict[str, Any]) -> dict[str, Any]: ...

    def new_recipe(self, source: str, **options: Any) -> dict[str, Any]: ...

    def describe(self, recipe: dict[str, Any], seconds: float) -> str: ...

    def summary(self, manifest: dict[str, Any]) -> list[str]: ...

    def create(self, recipe: dict[str, Any]) -> Source: ...


def source_module(name: Any) -> SourceModule:
    """The module implementing source ``name``; an unknown name lists the valid ones."""
    if not isinstance(name, str) or name not in SOURCES:
        raise FracbuildError(f"unknown source {name!r}; expected one of {', '.join(SOURCES)}")
    return importlib.import_module(f".{SOURCES[name]}", __name__)


def create_source(recipe: dict[str, Any]) -> Source:
    """The source a (validated) recipe names."""
    return source_module(recipe.get("source", DEFAULT_SOURCE)).create(recipe)
