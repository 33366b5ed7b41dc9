"""1p-frac: class c is the recipe's IFS with every parameter perturbed (the LIEP classes).

``search`` finds the IFS: a system with a target σ-factor whose render fills enough.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ifs
from ..checks import check_name, check_seed, choice, flag, number
from ..errors import FracbuildError
from ..kernels import fill_rate, fills, map_choices, random_sequence, render_image
from ..settings import DRAW_MODES, PERTURB_MODES
from .common import NOISE, SEQUENCE_MODES, check_delta, flip, flip_name, sequence_seed, settings_lines, shared_keys

#: A class whose perturbations keep failing the fill check this often is an error, not a loop.
MAX_REDRAWS = 1000
#: The paper's perturbation defaults (docs/reference.md): Δ = 0.1 multiplicative, L = 1000 classes.
PERTURB_DEFAULTS: dict[str, Any] = {
    "mode": "multiplicative",
    "delta": 0.1,
    "classes": 1000,
    "seed": 0,
}
#: The paper's render defaults: 512 px, 100,000 points, patch drawing, fill > 0.05, 1 image/class,
#: the same chaos-game sequence for every class (an image is a function of its parameters).
RENDER_DEFAULTS: dict[str, Any] = {
    "size": 512,
    "points": 100_000,
    "draw": "patch",
    "fill_min": 0.05,
    "instances": 1,
    "sequence": "shared",
    "flips": False,
    "shard_size": 100,
}
DEFAULTS = {"fractal": {"perturb": PERTURB_DEFAULTS, "render": RENDER_DEFAULTS}}
OPTIONS = {"fractal": {"sigma", "maps", "tolerance", "fill_min", "max_tries", "delta"}}
#: Seed-sequence tag of the search's random sequence (its systems come from ``default_rng(seed)``).
SEQUENCE = 1


def check_maps(value: Any, where: str) -> np.ndarray:
    """An ``(N, 6)`` float array of N >= 1 finite maps ``[a, b, c, d, e, f]``, or a one-line error."""
    try:
        maps = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise FracbuildError(f"{where} must be a list of [a, b, c, d, e, f] numbers") from None
    if maps.ndim != 2 or maps.shape[1] != 6 or len(maps) < 1 or not np.isfinite(maps).all():
        raise FracbuildError(f"{where} must be N >= 1 finite rows [a, b, c, d, e, f], got shape {maps.shape}")
    return maps


def check_fill_min(fill_min: float) -> float:
    if not 0.0 <= fill_min < 1.0:
        raise FracbuildError(f"fill_min must lie in [0, 1), got {fill_min}")
    return fill_min


def check_drawing(render: dict[str, Any]) -> None:
    """The chaos-game render keys that fractal sources share."""
    number("render.points", render["points"], 1, integer=True)
    choice("render.draw", render["draw"], DRAW_MODES)
    flag("render.flips", render["flips"])


def validate(recipe: dict[str, Any]) -> dict[str, Any]:
    """Check the IFS (probabilities and σ filled in) and the perturbation and render keys."""
    recipe = shared_keys(recipe, DEFAULTS, ("ifs",))
    system = recipe.get("ifs")
    if not isinstance(system, dict) or "maps" not in system:
        raise FracbuildError("recipe needs 'ifs' with 'maps' (a list of [a, b, c, d, e, f])")
    unknown = set(system) - {"maps", "probs", "sigma"}
    if unknown:
        raise FracbuildError(f"recipe 'ifs' has unknown key(s): {', '.join(sorted(map(str, unknown)))}")
    maps = check_maps(system["maps"], "ifs.maps")
    probs = system.get("probs")
    if probs is None:
        probs = ifs.map_probabilities(maps)
    try:
        probs = np.array(probs, dtype=np.float64)
    except (TypeError, ValueError):
        raise FracbuildError("ifs.probs must be a list of numbers") from None
    if probs.shape != (len(maps),) or (probs < 0).any() or abs(probs.sum() - 1.0) > 1e-6:
        raise FracbuildError(f"ifs.probs must be {len(maps)} non-negative numbers summing to 1")
    sigma = ifs.sigma_factor(maps)
    if "sigma" in system and not (isinstance(system["sigma"], (int, float)) and abs(system["sigma"] - sigma) < 1e-6):
        raise FracbuildError(f"ifs.sigma {system['sigma']!r} does not match the maps' σ-factor {sigma:.6f}")
    perturb, render = recipe["perturb"], recipe["render"]
    choice("perturb.mode", perturb["mode"], PERTURB_MODES)
    check_delta(perturb)
    check_drawing(render)
    number("render.fill_min", render["fill_min"], 0.0, 1.0)
    choice("render.sequence", render["sequence"], SEQUENCE_MODES)
    return {**recipe, "ifs": {"maps": maps.tolist(), "probs": probs.tolist(), "sigma": sigma}}


def make_recipe(
    name: str,
    maps: np.ndarray,
    search: dict[str, Any] | None = None,
    perturb: dict[str, Any] | None = None,
    render: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete ``fractal`` recipe for ``maps`` (probabilities and σ computed here), defaults filled."""
    maps = np.asarray(maps, dtype=np.float64)
    recipe = {
        "name": name,
        "source": "fractal",
        "ifs": {
            "maps": maps.tolist(),
            "probs": ifs.map_probabilities(maps).tolist(),
            "sigma": ifs.sigma_factor(maps),
        },
        "search": dict(search or {}),
        "perturb": {**PERTURB_DEFAULTS, **(perturb or {})},
        "render": {**RENDER_DEFAULTS, **(render or {})},
    }
    return validate(recipe)


def system_image(system: np.ndarray, uniforms: np.ndarray, masks: np.ndarray, size: int, draw: str) -> np.ndarray:
    """``system`` rendered from a random sequence, with its own map probabilities."""
    return render_image(system, map_choices(ifs.map_probabilities(system), uniforms), masks, size, draw)


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
    """Sample systems until one renders with fill > ``fill_min`` (the render's check); return its recipe.

    Every draw comes from ``numpy.random.default_rng(seed)``, so the same arguments give the
    same recipe on any machine. The fill check renders with the recipe's render settings (the
    paper's defaults unless ``render`` overrides them). ``search.tries`` records how many
    systems were drawn, ``search.fill`` the accepted system's fill rate.
    """
    check_name(name)
    check_seed(seed)
    ifs.check_sigma(sigma, maps, tolerance)
    check_fill_min(fill_min)
    if max_tries < 1:
        raise FracbuildError(f"max_tries must be at least 1, got {max_tries}")
    settings = {**RENDER_DEFAULTS, **(render or {})}
    rng = np.random.default_rng(seed)
    # One random sequence for the whole search: each candidate turns it into map choices
    # with its own probabilities, so a check costs one render.
    uniforms, masks = random_sequence(settings["points"], np.random.default_rng([seed, SEQUENCE]))
    tries, image = 0, None
    while image is None or not fills(image, fill_min):
        if tries == max_tries:
            raise FracbuildError(
                f"no system with sigma {sigma} ± {tolerance} exceeded fill {fill_min} in {max_tries} tries"
            )
        tries += 1
        system = ifs.sample_system(sigma, maps, rng, tolerance)
        image = system_image(system, uniforms, masks, settings["size"], settings["draw"])
    fill = float(fill_rate(image))
    return make_recipe(
        name,
        system,
        search={"sigma": sigma, "tolerance": tolerance, "maps": maps, "seed": seed,
                "fill_min": fill_min, "tries": tries, "fill": fill},
        perturb=perturb,
        render=render,
    )


def new_recipe(source: str, **options: Any) -> dict[str, Any]:
    """``search`` with ``classes`` and ``delta`` as the recipe's perturbation."""
    maps = options.get("maps")
    if isinstance(maps, tuple):
        raise FracbuildError(f"--source fractal takes one number of maps, got the range {maps[0]}-{maps[1]}")
    perturb = {k: options.pop(k) for k in ("classes", "delta") if k in options}
    return search(**options, perturb=perturb or None)


def describe(recipe: dict[str, Any], seconds: float) -> str:
    found = recipe["search"]
    return (f"sigma {recipe['ifs']['sigma']:.4f} (target {found['sigma']} ± {found['tolerance']}), "
            f"fill {found['fill']:.3f}, {found['tries']} tries, {seconds:.3f} s")


def summary(manifest: dict[str, Any]) -> list[str]:
    recipe = manifest.get("recipe", {})
    system = recipe.get("ifs")
    if not isinstance(system, dict) or "maps" not in system:  # a manifest of another shape: as it is spelt
        return settings_lines(recipe)
    p, r = recipe.get("perturb", {}), recipe.get("render", {})
    return [
        f"  ifs: {len(system['maps'])} maps, sigma {system.get('sigma', float('nan')):.4f}",
        f"  perturb: {p.get('mode')} delta {p.get('delta')} seed {p.get('seed')}; redraws {manifest.get('redraws')}",
        f"  render: {r.get('size')} px, {r.get('points')} points, {r.get('draw')}, fill > {r.get('fill_min')}",
    ]


def create(recipe: dict[str, Any]) -> FractalSource:
    return FractalSource(recipe)
class FractalSource:
    """Renders perturbation classes of one IFS; instances differ in their chaos-game sequence.

    Class c's noise comes from ``default_rng([seed, NOISE, c])``: one class can be re-rendered
    alone, and a perturbation whose instance-0 image has fill not above ``fill_min`` is replaced by
    the generator's next draw (counted as a redraw). Map probabilities stay the base system's.
    """

    def __init__(self, recipe: dict[str, Any]):
        self.maps = np.array(recipe["ifs"]["maps"], dtype=np.float64)
        self.probs = np.array(recipe["ifs"]["probs"], dtype=np.float64)
        self.perturb = recipe["perturb"]
        self.render = recipe["render"]
        self._sequences: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._classes: dict[int, tuple[np.ndarray, int, np.ndarray]] = {}

    def sequence_seed(self, cls: int, instance: int) -> list[int]:
        return sequence_seed(self.perturb["seed"], self.render["sequence"], cls, instance)

    def sequence(self, cls: int, instance: int) -> tuple[np.ndarray, np.ndarray]:
        """Map choices and patch masks, cached: shared sequences are reused by every class."""
        key = tuple(self.sequence_seed(cls, instance))
        if key not in self._sequences:
            if len(self._sequences) >= 4:  # instances vary fastest; a few entries suffice
                self._sequences.clear()
            uniforms, masks = random_sequence(self.render["points"], np.random.default_rng(list(key)))
            self._sequences[key] = map_choices(self.probs, uniforms), masks
        return self._sequences[key]

    def draw(self, maps: np.ndarray, cls: int, instance: int) -> np.ndarray:
        choices, masks = self.sequence(cls, instance)
        return render_image(maps, choices, masks, self.render["size"], self.render["draw"])

    def class_maps(self, cls: int) -> tuple[np.ndarray, int, np.ndarray]:
        """Class ``cls``'s perturbed maps, how many draws were rejected, and its instance-0 image."""
        if cls not in self._classes:
            self._classes.clear()  # samples come in class order: one class at a time
            rng = np.random.default_rng([self.perturb["seed"], NOISE, cls])
            for redraws in range(MAX_REDRAWS):
                maps = ifs.perturb_maps(self.maps, self.perturb["mode"], self.perturb["delta"], rng)
                image = self.draw(maps, cls, 0)
                if fills(image, self.render["fill_min"]):
                    self._classes[cls] = maps, redraws, image
                    break
            else:
                raise FracbuildError(
                    f"class {cls}: no perturbation exceeded fill {self.render['fill_min']} in {MAX_REDRAWS} draws"
                )
        return self._classes[cls]

    def sample(self, cls: int, instance: int) -> tuple[np.ndarray, dict[str, Any]]:
        maps, redraws, image = self.class_maps(cls)
        if instance:
            image = self.draw(maps, cls, instance)
        how = flip_name(instance, self.render["flips"])
        image = flip(image, how)
        meta = {
            "class": cls,
            "instance": instance,
            "maps": maps.tolist(),
            "redraws": redraws,
            "fill": float(fill_rate(image)),
            "flip": how,
            "seeds": {"noise": [self.perturb["seed"], NOISE, cls], "sequence": self.sequence_seed(cls, instance)},
        }
        return image, meta
