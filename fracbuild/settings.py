"""Every option of ``fracbuild search`` and ``render``, defined once: its name, type, help, choices, default and,
for a render override, the recipe key it sets.

The command line's options (``fracbuild.cli``), the keyword arguments of ``fracbuild.render`` (its signature and
the check of a call's names) and the recipe overrides (``recipe.effective_recipe``) are made from ``SEARCH``
and ``RENDER``. The lists of choices sit here, free of numpy and numba, so that the command line builds its
options without loading them; the modules that check a value against a list import it from here. (``search
--source`` is the registry's, ``sources.SOURCES``.) Nothing here imports the rest of the package.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Drawing modes, as the recipe spells them (``kernels``): ``patch`` is the reference's drawing;
#: ``patch-union`` is an older one of this project (patches OR-ed in, centred), not the reference's.
DRAW_MODES = ("point", "patch", "patch-union", "density")
#: How Δ perturbs a parameter (``ifs.perturb``).
PERTURB_MODES = ("multiplicative", "additive")
#: Engines that run the shard tasks (``backends``). Forked workers start with the parent's kernels ready;
#: loky's start fresh. macOS's system libraries are not safe to use in a forked child (Python's
#: multiprocessing spawns there too), Windows has no fork.
BACKENDS = ("fork", "loky", "threading", "dask", "ray")
DEFAULT_BACKEND = "fork" if sys.platform.startswith("linux") else "loky"
#: How a category of FractalDB or OFDB is drawn (``sources.fractaldb``).
CATEGORY_METHODS = ("fill", "sigma")
#: The class warps and the image conversions of the image source (``sources.image``).
WARPS = ("affine", "elastic", "polynomial")
CONVERSIONS = ("canny", "gray", "rgb")
#: Value types besides int, float, str and bool: ``N`` or ``MIN-MAX`` maps, and a directory.
MAPS, DIR = "maps", "dir"


@dataclass(frozen=True)
class Setting:
    name: str
    type: Any  # int, float, str, bool (a flag), MAPS or DIR
    help: str
    default: Any = None  # None: the recipe's (or the source's) value
    choices: tuple[str, ...] | None = None
    key: tuple[str, str] | None = None  # the recipe section and key a render option overrides
    flag: str | None = None  # the command line's flag, where it is not the name's

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


SEARCH: tuple[Setting, ...] = (
    Setting("sigma", float, "Target σ-factor, small = complex (3.5)."),
    Setting("maps", MAPS, "Number of affine maps (fractal: 2), or their range (categories: 2-7)."),
    Setting("tolerance", float, "Target σ drawn from σ ± tolerance (0.1)."),
    Setting("seed", int, "Seed of every random draw (0)."),
    Setting("fill_min", float, "Least fill rate of a rendered system (fractal 0.05; categories 0.2)."),
    Setting("max_tries", int, "Give up after this many systems, per category (10000)."),
    Setting("classes", int, "Classes L, or categories C of a source of categories (1000)."),
    Setting("delta", float, "Perturbation strength Δ (0.1)."),
    Setting("instances", int, "Images per class K written into the recipe."),
    Setting("method", str, "Category draw: FractalDB's uniform parameters, or by σ-factor (fill).",
            choices=CATEGORY_METHODS),
    Setting("jobs", int, "Worker processes of a category search (-1: all cores)."),
    Setting("from_dir", DIR, "Read the categories from FractalDB's published parameter CSVs in this folder.",
            flag="--from"),
    Setting("image", str, "Image file, or skimage:NAME for a bundled photograph (skimage:camera)."),
    Setting("convert", str, "Canny edges, gray levels or the colours, RGB shards (canny).", choices=CONVERSIONS),
    Setting("warp", str, "Class warps (affine).", choices=WARPS),
    Setting("flips", bool, "Each class in its 4 flips: 4 instances (off)."),
    Setting("name", str, "Dataset name, the shard prefix (1p-frac; image: real-CONVERT-WARP; others: the source)."),
)

RENDER: tuple[Setting, ...] = (
    Setting("classes", int, "Number of classes L (fractaldb, ofdb: the first C categories).",
            key=("perturb", "classes")),
    Setting("delta", float, "Perturbation strength Δ.", key=("perturb", "delta")),
    Setting("perturb", str, "Perturbation mode.", choices=PERTURB_MODES, key=("perturb", "mode")),
    Setting("instances", int, "Images per class K (fractaldb: M per category).", key=("render", "instances")),
    Setting("size", int, "Image side in pixels.", key=("render", "size")),
    Setting("points", int, "Chaos-game points per image.", key=("render", "points")),
    Setting("draw", str, "Drawing mode (patch: the reference's; patch-union: patches OR-ed in, not the reference's).",
            choices=DRAW_MODES, key=("render", "draw")),
    Setting("shard_size", int, "Samples per shard.", key=("render", "shard_size")),
    Setting("seed", int, "Perturbation seed.", key=("perturb", "seed")),
    Setting("jobs", int, "Worker processes (-1: all cores).", -1),
    Setting("backend", str, "What runs the shard tasks: processes forked from this one (their kernels ready), or a "
            "joblib backend.", DEFAULT_BACKEND, BACKENDS),
    Setting("address", str, "Scheduler address of an existing Dask or Ray cluster."),
)
#: The render options that override a recipe value, and the key each sets.
OVERRIDES: dict[str, tuple[str, str]] = {s.name: s.key for s in RENDER if s.key}


def _annotation(setting: Setting) -> str:
    name = getattr(setting.type, "__name__", "str")  # MAPS and DIR are spelt as strings
    return name if setting.default is not None else f"{name} | None"


def takes_settings(settings: tuple[Setting, ...]) -> Callable[[Callable], Callable]:
    """Give a library function (``fracbuild.render``) ``settings`` as keyword arguments.

    The function is written with ``**settings`` and receives every one of them, with its default where the
    caller left it out; its signature shows them, and a name it does not take is a TypeError as in any call.
    """

    def decorate(func: Callable) -> Callable:
        sig = inspect.signature(func)
        fixed = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        params = fixed + [inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=s.default,
                                            annotation=_annotation(s)) for s in settings]
        names = {p.name for p in fixed}
        defaults = {s.name: s.default for s in settings}

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            unknown = sorted(set(kwargs) - names - set(defaults))
            if unknown:
                raise TypeError(f"{func.__name__}() got unexpected keyword argument(s): {', '.join(unknown)}")
            return func(*args, **{**defaults, **kwargs})

        wrapper.__signature__ = sig.replace(parameters=params)
        return wrapper

    return decorate
