"""The contour sources' kernels: Perlin noise equal to ``noise.pnoise1``, Pillow's 1-px line."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fracbuild.sources.contour_kernels import perlin1, polyline

DATA = Path(__file__).resolve().parent / "data" / "originals"


def test_perlin_equals_the_noise_packages_pnoise1_bit_for_bit():
    """``pnoise1.npy`` holds 1,345 inputs and what ``noise.pnoise1`` (noise 1.2.2, the originals'
    dependency) returned for them (see data/originals/README.md): the originals' range [0, 10000),
    negative inputs, integers and halves, float32 rounding and period edges."""
    x, expected = np.load(DATA / "pnoise1.npy")
    out = np.empty_like(x)
    perlin1(x, out)
    assert len(x) == 1345
    np.testing.assert_array_equal(out.view(np.uint64), expected.view(np.uint64))


def pillow_line(size, xy, ink, background=7):
    image = Image.new("L", size, background)
    ImageDraw.Draw(image).line(xy.ravel().tolist(), fill=ink, width=1)
    return np.asarray(image)


@pytest.mark.parametrize("seed", range(4))
def test_polyline_draws_pillows_pixels(seed):
    """Random paths, far inside and outside small images, with integer, fractional and negative
    coordinates (C's cast truncates towards zero) and repeated points."""
    rng = np.random.default_rng(seed)
    for trial in range(500):
        w, h = (int(v) for v in rng.integers(1, 40, 2))
        xy = rng.normal(w / 2, rng.choice([3, 20, 60, 300]), (int(rng.integers(1, 12)), 2))
        if trial % 3 == 0:
            xy = np.round(xy)
        if trial % 5 == 0:
            xy[1::2] = xy[::2][: len(xy[1::2])]
        ink = int(rng.integers(0, 256))
        ours = np.full((h, w), 7, dtype=np.uint8)
        polyline(ours, xy, ink)
        np.testing.assert_array_equal(ours, pillow_line((w, h), xy, ink), err_msg=f"trial {trial}: {xy.tolist()}")


def test_one_polyline_is_one_call_per_segment():
    """The originals draw each segment with its own call; one polyline call gives the same pixels
    (each call draws its segment and then its end point, which the next segment starts from)."""
    rng = np.random.default_rng(9)
    for _ in range(300):
        xy = rng.normal(15, 12, (int(rng.integers(2, 9)), 2))
        image = Image.new("L", (30, 30), 0)
        draw = ImageDraw.Draw(image)
        for k in range(len(xy) - 1):
            draw.line((*xy[k], *xy[k + 1]), fill=200, width=1)
        np.testing.assert_array_equal(np.asarray(image), pillow_line((30, 30), xy, 200, background=0))
