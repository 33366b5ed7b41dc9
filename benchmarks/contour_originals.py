"""The RCDB and VisualAtom renderers' approach, restated for ``make bench``'s side-by-side figures.

The originals (``make_rcdb.py``, ``render_VisualAtom.py``) are not a dependency, so the bench times
this restatement of how they draw: Python's ``random`` for every draw, a Python loop over the
vertices for the noise and the update, one ``ImageDraw.line`` call per segment on an RGB image, and
an RGB PNG written per image. Its 1-D Perlin noise is the ``noise`` package's ``pnoise1`` per vertex,
as the originals call it, when ``noise`` is installed; otherwise fracbuild's ``perlin1`` once per
contour line and axis (the same values; measured 4-8 % faster than ``pnoise1`` per vertex in the
same interpreter). ``PERLIN`` says which. Fed the originals' draws it draws their pixels
(``tests/test_fracbuild_contour.py``), and it takes 15-25 % less CPU time than the originals' own scripts on
the same images (docs/performance.md): a speed-up measured against it understates the one against
the originals."""

from __future__ import annotations

import io
import math
import random

import numpy as np
from PIL import Image, ImageDraw

try:
    from noise import pnoise1

    PERLIN = "noise.pnoise1 per vertex"

    def perlin_values(inputs: list[float]) -> list[float]:
        return [pnoise1(u) for u in inputs]
except ImportError:
    from fracbuild.sources.contour_kernels import perlin1

    PERLIN = "fracbuild's perlin1 per contour line (noise is not installed)"

    def perlin_values(inputs: list[float]) -> list[float]:
        out = np.empty(len(inputs))
        perlin1(np.array(inputs), out)
        return out.tolist()

    perlin_values([0.5])  # numba's compiled code loads at the first call: not in any timing


def draw_image(source: str, p: dict, rnd: random.Random, size: int = 512) -> Image.Image:
    """One image of parameter set ``p`` (fracbuild's field names), every draw from ``rnd`` in the
    originals' order: per contour line its gray level, then the x inputs, then the y inputs."""
    rcdb = source == "rcdb"
    im = Image.new("RGB", (size, size), (255, 255, 255) if rcdb else (0, 0, 0))
    draw = ImageDraw.Draw(im)
    n, c, w = p["vertices"], p["perlin"], p["line_width"]
    angle = (math.pi * 2) / n
    # RCDB adds its centre where it draws; VisualAtom starts its polygon around it (+ 0.0 is exact).
    (cx, cy), (ox, oy) = ((p["centre_x"], p["centre_y"]), (0.0, 0.0))[::1 if rcdb else -1]
    x = [math.cos(angle * v) * p["radius"] * p["oval_x"] + ox for v in range(n)]
    y = [math.sin(angle * v) * p["radius"] * p["oval_y"] + oy for v in range(n)]
    x.append(x[0])
    y.append(y[0])
    for _ in range(p["lines"]):
        gray = rnd.randint(0, size // 2 if rcdb else 255)
        noise_x = perlin_values([rnd.uniform(0, 10000) for _ in range(n)])
        noise_y = perlin_values([rnd.uniform(0, 10000) for _ in range(n)])
        for v in range(n):
            if rcdb:
                nx = noise_x[v] * c * 2 - c
                ny = noise_y[v] * c * 2 - c
            else:
                waves = (0.5 * math.sin(angle * v * p["wave1"]), 0.5 * math.sin(angle * v * p["wave2"]))
                nx = noise_x[v] * c - c - waves[0] - waves[1]
                ny = noise_y[v] * c - c - waves[0] - waves[1]
            x[v] -= math.cos(angle * v) * (nx - w)
            y[v] -= math.sin(angle * v) * (ny - w)
        x[n] = x[0]
        y[n] = y[0]
        for i in range(n):
            draw.line((x[i] + cx, y[i] + cy, x[i + 1] + cx, y[i + 1] + cy), fill=(gray, gray, gray), width=1)
    return im


def render_png(source: str, p: dict, rnd: random.Random, size: int = 512) -> bytes:
    """``draw_image`` saved as the originals save it: an RGB PNG."""
    out = io.BytesIO()
    draw_image(source, p, rnd, size).save(out, format="PNG")
    return out.getvalue()
