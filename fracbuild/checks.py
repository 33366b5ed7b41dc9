"""Value checks shared by every source and the recipe: each returns the value or raises a one-line
``FracbuildError`` that names the key (``where``)."""

from __future__ import annotations

import math
from typing import Any

from .errors import FracbuildError


def number(where: str, value: Any, lo: float, hi: float = math.inf, integer: bool = False,
           lo_open: bool = False) -> Any:
    """``value`` if it is a finite number (an integer if asked) within the bounds; ``where`` names it."""
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise FracbuildError(f"{where} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if value < lo or (lo_open and value == lo) or value > hi:
        bound = f"{'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi < math.inf else "")
        raise FracbuildError(f"{where} must be {bound}, got {value!r}")
    return value


def choice(where: str, value: Any, options: tuple[str, ...]) -> str:
    if value not in options:
        raise FracbuildError(f"{where} must be one of {', '.join(options)}, got {value!r}")
    return value


def flag(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise FracbuildError(f"{where} must be true or false, got {value!r}")
    return value


def section(recipe: dict, key: str, defaults: dict, source: str) -> dict:
    """``recipe[key]`` (an object) over ``defaults``; a key the source does not know is an error."""
    value = recipe.get(key, {})
    if not isinstance(value, dict):
        raise FracbuildError(f"recipe key {key!r} must be an object")
    unknown = set(value) - set(defaults)
    if unknown:
        raise FracbuildError(
            f"recipe {key!r} has unknown key(s) for source {source!r}: {', '.join(sorted(unknown))}"
        )
    return {**defaults, **value}


def check_name(name: Any) -> str:
    """A dataset name becomes the shard prefix: no path separators, dots (webdataset keys) or spaces."""
    if not isinstance(name, str) or not name or any(c in name for c in "/\\. \t\n"):
        raise FracbuildError(f"name must be a non-empty string without '/', '.' or spaces, got {name!r}")
    return name


def check_seed(seed: Any) -> int:
    """numpy seeds generators with non-negative integers only."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise FracbuildError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


def check_jobs(jobs: Any) -> int:
    """A number of worker processes, or -1 (or below: joblib's all-but) for all cores; 0 has no meaning."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs == 0:
        raise FracbuildError(f"--jobs must be a number of workers, or -1 for all cores, got {jobs!r}")
    return jobs


def check_out_path(where: str, path: Any) -> Any:
    """An output path that names something: an empty one would write into the current directory."""
    if not str(path if path is not None else ""):
        raise FracbuildError(f"{where} is empty: name the output")
    return path
