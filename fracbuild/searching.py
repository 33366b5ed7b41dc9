"""``fracbuild.search``: find an IFS with a target σ-factor that renders with enough fill."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import ifs
from .errors import FracbuildError
from .kernels import fill_rate, map_choices, random_sequence, render_image
from .recipe import RENDER_DEFAULTS, check_name, make_recipe


def search(
    sigma: float = 3.5,
    maps: int = 2,
    tolerance: float = 0.1,
    seed: int = 0,
    fill_min: float = 0.05,
    name: str = "1p-frac",
    max_tries: int = 10_000,
    perturb: dict[str, Any] | None = None,
    render: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Sample systems until one renders with fill >= ``fill_min``; return its recipe.

    Every draw comes from ``numpy.random.default_rng(seed)``, so the same arguments give the
    same recipe on any machine. The fill check renders with the recipe's render settings (the
    paper's defaults unless ``render`` overrides them). ``search.tries`` records how many
    systems were drawn, ``search.fill`` the accepted system's fill rate.
    """
    check_name(name)
    ifs.check_sigma(sigma, maps, tolerance)
    if not 0.0 <= fill_min < 1.0:
        raise FracbuildError(f"fill_min must lie in [0, 1), got {fill_min}")
    if max_tries < 1:
        raise FracbuildError(f"max_tries must be at least 1, got {max_tries}")
    settings = {**RENDER_DEFAULTS, **(render or {})}
    rng = np.random.default_rng(seed)
    # One random sequence for the whole search: each candidate turns it into map choices
    # with its own probabilities, so a check costs one render.
    uniforms, masks = random_sequence(settings["points"], np.random.default_rng([seed, 1]))
    fill, tries = -1.0, 0
    while fill < fill_min:
        if tries == max_tries:
            raise FracbuildError(
                f"no system with sigma {sigma} ± {tolerance} reached fill {fill_min} in {max_tries} tries"
            )
        tries += 1
        system = ifs.sample_system(sigma, maps, rng, tolerance)
        choices = map_choices(ifs.map_probabilities(system), uniforms)
        image = render_image(system, choices, masks, settings["size"], settings["draw"])
        fill = float(fill_rate(image))
    return make_recipe(
        name,
        system,
        search={"sigma": sigma, "tolerance": tolerance, "maps": maps, "seed": seed,
                "fill_min": fill_min, "tries": tries, "fill": fill},
        perturb=perturb,
        render=render,
    )
