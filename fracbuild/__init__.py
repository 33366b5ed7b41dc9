"""fracbuild: formula-driven pre-training data (1p-frac) rendered to WebDataset shards."""

from .errors import FracbuildError
from .recipe import load_recipe, make_recipe, validate_recipe
from .searching import new_recipe, search, search_categories

__version__ = "0.1.0"

__all__ = [
    "FracbuildError", "load_recipe", "make_recipe", "new_recipe", "search", "search_categories", "validate_recipe",
    "__version__",
]
