"""Recipes: the JSON that pins a dataset (its source, how it was found, how to perturb and render).

``validate_recipe`` checks a recipe of any source and ``new_recipe`` makes one, each through the
module the registry (``sources.SOURCES``) names; every error is one line. ``counts`` is the one
place that says how many classes and instances a recipe has, and ``shard_plan`` how they are cut into
shards; ``load_recipe`` is the file edge; ``effective_recipe`` applies render's overrides
(``settings.OVERRIDES``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .checks import check_name
from .errors import FracbuildError
from .settings import OVERRIDES
from .sources import DEFAULT_SOURCE, source_module

#: Options ``new_recipe`` takes for every source.
COMMON_OPTIONS = {"name", "classes", "seed"}


def validate_recipe(recipe: Any) -> dict[str, Any]:
    """Check every value of a recipe and fill defaults; raise ``FracbuildError`` with one line.

    ``source`` (default ``fractal``) picks the source module, whose ``validate`` checks the keys
    every source shares and its own.
    """
    if not isinstance(recipe, dict):
        raise FracbuildError("a recipe must be a JSON object")
    check_name(recipe.get("name"))
    source = recipe.get("source", DEFAULT_SOURCE)
    module = source_module(source)
    return module.validate({**recipe, "source": source})


def new_recipe(source: str = DEFAULT_SOURCE, **options: Any) -> dict[str, Any]:
    """A new recipe of ``source`` (``fracbuild search --source``), made by its module from the
    options: a search (``fractal``, ``fractaldb``, ``ofdb``), or nothing to search (the recipe is
    made from the options). Options that ``source`` does not take are an error."""
    module = source_module(source)
    unknown = set(options) - module.OPTIONS[source] - COMMON_OPTIONS
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in sorted(unknown))
        raise FracbuildError(f"{flags} {'does' if len(unknown) == 1 else 'do'} not apply to --source {source}")
    return module.new_recipe(source, **options)


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


def effective_recipe(recipe: dict | str | os.PathLike, **overrides: Any) -> dict[str, Any]:
    """The recipe with every non-None override applied, validated."""
    recipe = load_recipe(recipe) if isinstance(recipe, (str, os.PathLike)) else validate_recipe(recipe)
    recipe = json.loads(json.dumps(recipe))  # a deep copy
    for option, value in overrides.items():
        if value is not None:
            section, key = OVERRIDES[option]
            recipe[section][key] = value
    return validate_recipe(recipe)


def shard_plan(recipe: dict[str, Any]) -> list[tuple[int, int, int]]:
    """``(shard, first index, samples)`` for every shard, in order."""
    classes, instances = counts(recipe)
    total = classes * instances
    size = recipe["render"]["shard_size"]
    return [(s, first, min(size, total - first)) for s, first in enumerate(range(0, total, size))]
