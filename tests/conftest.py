import json
from pathlib import Path

import pytest

from fracbuild.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def recipe():
    """The shipped 1p-frac recipe, shrunk so that a render takes a fraction of a second."""
    r = load_recipe(ROOT / "manifests" / "1p-frac.json")
    r["perturb"]["classes"] = 12
    r["render"].update(size=64, points=3000, shard_size=5)
    return r


@pytest.fixture
def recipe_file(recipe, tmp_path):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    return path
