"""One real image (the paper's Tables 11 and 12): its Canny edges, its gray levels or its colours, warped.

The image (a file, or ``skimage:NAME`` for one of scikit-image's bundled photographs) is made
gray (``convert: canny`` or ``gray``) or RGB (``convert: rgb``, Table 11's RGB row), cropped to its
central square and resized to ``render.size``; ``convert: canny`` keeps its Canny edges (white on
black). Class c is one random warp of it: ``affine`` and
``polynomial`` (order 2) perturb the identity's parameters by ``U(-Δ/2, Δ/2)`` each (the paper's
Eq. 9), ``elastic`` displaces every pixel by a smooth random field whose largest displacement is
Δ/2. Warps act in coordinates where the image spans [-1, 1], so a class is the same warp at any
size, and the sampled region is shrunk towards the centre until it lies within the image:
no pixel of a class comes from outside the photograph. scikit-image does the edges, the
transforms, the smoothing and the resampling; it is the optional extra ``image``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from .. import ifs
from ..checks import choice, flag, number, section
from ..errors import FracbuildError
from ..kernels import fill_rate
from ..settings import CONVERSIONS, WARPS
from .common import NOISE, check_delta, flip, flip_name, settings_lines, shared_keys

BUILTIN = "skimage:"
#: The identity of each parametric warp: an affine map ``a b c d e f`` (as the IFS maps), and
#: the ``(2, 6)`` coefficients of an order-2 polynomial over ``1, x, y, x², xy, y²``.
IDENTITY = {
    "affine": np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]),
    "polynomial": np.array([[0.0, 1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]]),
}
#: The elastic field is drawn on this many cells per side, smoothed and resized to the image.
GRID = 64

IMAGE_DEFAULTS: dict[str, Any] = {"path": None, "convert": "canny", "canny_sigma": 2.0, "sha256": None}
PERTURB_DEFAULTS: dict[str, Any] = {"warp": "affine", "delta": 0.1, "smooth": 0.05, "classes": 1000, "seed": 0}
RENDER_DEFAULTS: dict[str, Any] = {"size": 512, "instances": 1, "flips": False, "shard_size": 100}
DEFAULTS = {"image": {"perturb": PERTURB_DEFAULTS, "render": RENDER_DEFAULTS}}
OPTIONS = {"image": {"image", "convert", "warp", "delta", "flips"}}


def skimage():
    """scikit-image, or one error that names the extra to install."""
    try:
        import skimage.feature
        import skimage.filters
        import skimage.transform
    except ImportError:
        raise FracbuildError("the image source needs scikit-image: pip install '.[image]' in fracbuild's "
                             "checkout") from None
    return skimage


def builtin_images() -> list[str]:
    """Names ``skimage:NAME`` can take: the PNG photographs bundled with scikit-image."""
    return sorted(p.stem for p in _builtin_dir().glob("*.png"))


def _builtin_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        skimage()  # raises the error that names the extra
    return Path(spec.origin).parent / "data"


def image_file(path: Any) -> Path:
    """The file behind ``image.path``; a missing one is a one-line error."""
    if not isinstance(path, str) or not path:
        raise FracbuildError(f"image.path must be a file or {BUILTIN}NAME, got {path!r}")
    if path.startswith(BUILTIN):
        name = path[len(BUILTIN):]
        file = _builtin_dir() / f"{name}.png"
        if not name or "/" in name or not file.is_file():
            raise FracbuildError(f"no built-in image {path!r}; scikit-image bundles {', '.join(builtin_images())}")
        return file
    file = Path(path)
    if not file.is_file():
        raise FracbuildError(f"image {path} not found")
    return file


def check_decodes(file: Path) -> Path:
    """``file`` if it holds an image PIL decodes: a recipe is refused when it is made, not when it renders."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as im:
            im.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise FracbuildError(f"image {file} cannot be decoded: {getattr(e, 'strerror', None) or e}") from None
    return file


def file_digest(file: Path) -> str:
    try:
        return hashlib.sha256(file.read_bytes()).hexdigest()
    except OSError as e:
        raise FracbuildError(f"cannot read image {file}: {e.strerror or e}") from None


def validate(recipe: dict[str, Any]) -> dict[str, Any]:
    """Check the image (it must exist, and match ``image.sha256`` when that is given) and the warp."""
    recipe = shared_keys(recipe, DEFAULTS, ("image",))
    image = section(recipe, "image", IMAGE_DEFAULTS, "image")
    digest = file_digest(check_decodes(image_file(image["path"])))
    if image["sha256"] is not None and image["sha256"] != digest:
        raise FracbuildError(f"image {image['path']} has changed: its sha256 is {digest}, "
                             f"the recipe pins {image['sha256']}")
    choice("image.convert", image["convert"], CONVERSIONS)
    number("image.canny_sigma", image["canny_sigma"], 0.0)
    perturb, render = recipe["perturb"], recipe["render"]
    choice("perturb.warp", perturb["warp"], WARPS)
    check_delta(perturb)
    number("perturb.smooth", perturb["smooth"], 0.0, lo_open=True)
    flag("render.flips", render["flips"])
    if render["instances"] > (4 if render["flips"] else 1):
        raise FracbuildError("render.instances must be <= 4 with render.flips (instances of an image class "
                             f"differ only by their flip) and 1 without, got {render['instances']} "
                             "(search --source image --flips makes a recipe with flips)")
    return {**recipe, "image": image}


def new_recipe(source: str = "image", image: str = "skimage:camera", convert: str = "canny", warp: str = "affine",
               name: str | None = None, classes: int = 1000, seed: int = 0,
               delta: float | None = None, flips: bool = False) -> dict[str, Any]:
    """An image recipe for the file (or ``skimage:NAME``) ``image``, its sha256 pinned; nothing is searched.
    ``flips``: each class in its 4 flips (``render.flips``, ``render.instances`` 4)."""
    digest = file_digest(check_decodes(image_file(image)))
    perturb = {"warp": warp, "classes": classes, "seed": seed, **({"delta": delta} if delta is not None else {})}
    return validate({"name": name or f"real-{convert}-{warp}", "source": source,
                     "image": {**IMAGE_DEFAULTS, "path": image, "convert": convert, "sha256": digest},
                     "perturb": perturb, "render": {"flips": True, "instances": 4} if flips else {}})


def describe(recipe: dict[str, Any], seconds: float) -> str:
    image, perturb = recipe["image"], recipe["perturb"]
    return f"{image['path']} ({image['convert']}), {perturb['warp']} warps, {perturb['classes']} classes"


def summary(manifest: dict[str, Any]) -> list[str]:
    return settings_lines(manifest.get("recipe", {}))


def load_image(image: dict[str, Any], size: int) -> np.ndarray:
    """The recipe's image as ``size x size`` uint8 (``x 3`` for ``rgb``): gray or RGB, central square,
    resized, maybe edges."""
    from PIL import Image

    ski = skimage()
    with Image.open(image_file(image["path"])) as im:
        im = im.convert("RGB" if image["convert"] == "rgb" else "L")
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
    pixels = np.asarray(im)
    if image["convert"] == "canny":
        edges = ski.feature.canny(pixels / 255.0, sigma=image["canny_sigma"])
        pixels = edges.astype(np.uint8) * 255
    return pixels


@functools.lru_cache(maxsize=2)
def grid(size: int) -> np.ndarray:
    """``(size², 2)`` ``(x, y)`` coordinates of every pixel, spanning [-1, 1], row by row.

    Cached, so every class of a source shares one array: it is read-only.
    """
    axis = np.linspace(-1.0, 1.0, size)
    y, x = np.meshgrid(axis, axis, indexing="ij")
    xy = np.column_stack([x.ravel(), y.ravel()])
    xy.flags.writeable = False
    return xy


def warp_params(warp: str, delta: float, rng: np.random.Generator) -> np.ndarray:
    """A class's warp: perturbed identity parameters, or for ``elastic`` its raw random field."""
    if warp == "elastic":
        return rng.uniform(-1.0, 1.0, size=(2, GRID, GRID))
    return ifs.perturb_params(IDENTITY[warp], "additive", delta, rng)


def source_coordinates(warp: str, params: np.ndarray, size: int, delta: float, smooth: float) -> np.ndarray:
    """``(2, size, size)`` (row, column) coordinates, within the image, that each pixel samples."""
    ski = skimage()
    xy = grid(size)
    if warp == "affine":
        a, b, c, d, e, f = params
        src = ski.transform.AffineTransform(matrix=np.array([[a, b, e], [c, d, f], [0.0, 0.0, 1.0]]))(xy)
    elif warp == "polynomial":
        src = ski.transform.PolynomialTransform(params)(xy)
    else:
        field = [ski.filters.gaussian(f, sigma=smooth * GRID) for f in params]
        peak = max(max(np.abs(f).max() for f in field), 1e-12)  # the largest displacement is delta / 2
        dx, dy = (ski.transform.resize(f / peak, (size, size), order=3).ravel() for f in field)
        src = xy + delta / 2.0 * np.column_stack([dx, dy])
    src = src / max(1.0, float(np.abs(src).max()))  # shrink towards the centre until inside
    pixels = (src + 1.0) * (size - 1) / 2.0  # [-1, 1] to [0, size - 1], exactly at the ends
    return np.stack([pixels[:, 1].reshape(size, size), pixels[:, 0].reshape(size, size)])


def create(recipe: dict[str, Any]) -> ImageSource:
    return ImageSource(recipe)


class ImageSource:
    """Class c's warp comes from ``default_rng([seed, NOISE, c])``; instance i is flipped by
    ``FLIPS[i]`` when ``render.flips`` is on. The prepared image is made once per source."""

    def __init__(self, recipe: dict[str, Any]):
        self.image = recipe["image"]
        self.perturb = recipe["perturb"]
        self.render = recipe["render"]
        self.base = load_image(self.image, self.render["size"])
        self._class: tuple[int, np.ndarray, np.ndarray] | None = None

    def warped(self, cls: int) -> tuple[np.ndarray, np.ndarray]:
        """Class ``cls``'s warp parameters and image (the last class is kept for its flips)."""
        if self._class is None or self._class[0] != cls:
            p = self.perturb
            params = warp_params(p["warp"], p["delta"], np.random.default_rng([p["seed"], NOISE, cls]))
            coords = source_coordinates(p["warp"], params, self.render["size"], p["delta"], p["smooth"])
            warp = skimage().transform.warp
            # Coordinates address rows and columns: an RGB image is warped channel by channel, alike.
            planes = [self.base] if self.base.ndim == 2 else np.moveaxis(self.base, 2, 0)
            out = np.stack([warp(plane.astype(np.float64), coords, order=1, preserve_range=True) for plane in planes],
                           axis=-1)
            self._class = cls, params, np.rint(out.reshape(self.base.shape)).astype(np.uint8)
        return self._class[1], self._class[2]

    def sample(self, cls: int, instance: int) -> tuple[np.ndarray, dict[str, Any]]:
        params, image = self.warped(cls)
        how = flip_name(instance, self.render["flips"])
        image = flip(image, how)
        meta = {
            "class": cls,
            "instance": instance,
            "warp": self.perturb["warp"],
            # An elastic warp's field is large: its seed says how to draw it again.
            "params": None if self.perturb["warp"] == "elastic" else params.tolist(),
            "fill": float(fill_rate(image if image.ndim == 2 else image.max(axis=2))),  # ink: any channel
            "flip": how,
            "seeds": {"warp": [self.perturb["seed"], NOISE, cls]},
        }
        return image, meta
