"""fracbuild: formula-driven pre-training data (1p-frac) rendered to WebDataset shards.

``fracbuild.search``, ``render``, ``verify``, ``preview``, ``info`` and ``fetch`` are the library
forms of the commands of the same names. They are imported on first use, so that ``import
fracbuild`` (and the command line, before it knows its command) does not load numba.
"""

from __future__ import annotations

from typing import Any

from .errors import FracbuildError

__version__ = "0.1.0"

_EXPORTS = {
    "info": "manifest", "preview": "dataset", "verify": "dataset", "fetch": "fetching", "load_recipe": "recipe",
    "make_recipe": "sources.fractal", "validate_recipe": "recipe", "render": "rendering", "new_recipe": "recipe",
    "search": "sources.fractal", "search_categories": "sources.fractaldb",
}
__all__ = ["FracbuildError", "__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
