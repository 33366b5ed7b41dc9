"""fracbuild: formula-driven pre-training data (1p-frac) rendered to WebDataset shards."""

from .dataset import info, preview, verify
from .errors import FracbuildError
from .fetching import fetch
from .recipe import load_recipe, make_recipe, validate_recipe
from .rendering import render
from .searching import new_recipe, search, search_categories

__version__ = "0.1.0"

__all__ = [
    "FracbuildError", "fetch", "info", "load_recipe", "make_recipe", "new_recipe", "preview", "render", "search",
    "search_categories", "validate_recipe", "verify", "__version__",
]
