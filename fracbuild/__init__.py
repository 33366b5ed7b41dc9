"""fracbuild: formula-driven pre-training data (1p-frac) rendered to WebDataset shards."""

from .errors import FracbuildError
from .recipe import load_recipe, make_recipe, validate_recipe
from .searching import search

__version__ = "0.1.0"

__all__ = ["FracbuildError", "load_recipe", "make_recipe", "search", "validate_recipe", "__version__"]
