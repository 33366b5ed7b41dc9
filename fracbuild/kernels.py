"""The numeric kernels: chaos game, rasterising and fill rate (numba, no I/O).

Every random input (the map choices, the patch masks) is drawn outside and passed in, so a
kernel is a pure function of its arguments and an image is a function of its parameters.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .settings import DRAW_MODES

#: Gray level of ``point`` and ``patch`` drawing on a black background (the reference's value).
INK = 127
#: Blank margin, in pixels, around the scaled points (the reference's value; a ``patch`` reaches
#: 3 pixels beyond its point, so it needs >= 4).
PAD = 6
#: The reference drops a NaN point together with this many points before it.
NAN_DROP = 100


@njit(cache=True, nogil=True)
def chaos_game(maps, choices, points):
    """The start ``(0, 0)`` then ``v <- w_{choices[t]}(v)``: ``len(choices)`` points in all.

    As in the reference, the start counts among the points (so it lies inside the scaling box)
    and the last choice goes unused: N uniforms drawn, N - 1 iterates.
    """
    x = 0.0
    y = 0.0
    points[0, 0] = x
    points[0, 1] = y
    for t in range(choices.shape[0] - 1):
        m = maps[choices[t]]
        x, y = m[0] * x + m[1] * y + m[4], m[2] * x + m[3] * y + m[5]
        points[t + 1, 0] = x
        points[t + 1, 1] = y


@njit(cache=True, nogil=True)
def _drop_nan(values, keep, before):
    """The reference's rule for a system that diverges to NaN: drop the first NaN among the kept
    values, the ``before`` kept points before it, and every later NaN (infinities stay)."""
    n = values.shape[0]
    first = -1
    for t in range(n):
        if keep[t] and np.isnan(values[t]):
            first = t
            break
    if first < 0:
        return
    dropped = 0
    t = first - 1
    while t >= 0 and dropped < before:
        if keep[t]:
            keep[t] = False
            dropped += 1
        t -= 1
    for t in range(first, n):
        if np.isnan(values[t]):
            keep[t] = False


@njit(cache=True, nogil=True, error_model="numpy")  # x / 0 is inf or NaN, as in numpy
def _axis_pixels(values, keep, size, pad, out):
    """One axis of the kept points, scaled as the reference scales it: shifted by its minimum when
    that is negative, divided by its range, times the span, plus ``pad``, truncated, in that order
    (the same pixel to the last rounding). With the start (0, 0) among the points that is min-max
    scaling into ``[pad, size - pad]``. Infinities are kept, as the reference keeps them: they
    stretch the range so that the finite points collapse onto ``pad``; a value the reference's
    integer cast turns to 0 (NaN from inf / inf, or 0 / 0 on a flat axis) is pixel 0."""
    lo = np.inf
    for t in range(values.shape[0]):
        if keep[t]:
            lo = min(lo, values[t])
    shift = lo if lo < 0.0 else 0.0
    vmin = np.inf
    vmax = -np.inf
    nan = False
    for t in range(values.shape[0]):
        if keep[t]:
            v = values[t] - shift
            if np.isnan(v):
                nan = True
            else:
                vmin = min(vmin, v)
                vmax = max(vmax, v)
    scale = np.nan if nan else vmax - vmin
    span = float(size - 2 * pad)
    for t in range(values.shape[0]):
        if keep[t]:
            u = (values[t] - shift) / scale * span + pad
            out[t] = int(u) if 0.0 <= u <= size - pad else 0


@njit(cache=True, nogil=True, error_model="numpy")
def _finite_pixels(points, size, pad, pixels):
    """``scale_to_pixels`` when every point is finite (nearly always): the same arithmetic as
    ``_axis_pixels`` (shift by a negative minimum, divide by the range, times the span, plus
    ``pad``, truncate; 0 / 0 on a flat axis is pixel 0) in two passes over the points."""
    xmin = np.inf
    xmax = -np.inf
    ymin = np.inf
    ymax = -np.inf
    for t in range(points.shape[0]):
        xmin = min(xmin, points[t, 0])
        xmax = max(xmax, points[t, 0])
        ymin = min(ymin, points[t, 1])
        ymax = max(ymax, points[t, 1])
    sx = xmin if xmin < 0.0 else 0.0
    sy = ymin if ymin < 0.0 else 0.0
    dx = (xmax - sx) - (xmin - sx)
    dy = (ymax - sy) - (ymin - sy)
    span = float(size - 2 * pad)
    top = float(size - pad)
    for t in range(points.shape[0]):
        u = (points[t, 0] - sx) / dx * span + pad
        v = (points[t, 1] - sy) / dy * span + pad
        pixels[t, 0] = size - 1 - (int(v) if 0.0 <= v <= top else 0)
        pixels[t, 1] = int(u) if 0.0 <= u <= top else 0
    return points.shape[0]


@njit(cache=True, nogil=True)
def scale_to_pixels(points, size, pad, pixels):
    """``(row, col)`` pixels of the points as the reference places them; dropped points are ``-1``.

    NaN points are dropped by the reference's rule (``_drop_nan``: the first NaN, the 100 points
    before it and every later NaN, x first, then y), then each axis is scaled by ``_axis_pixels``.
    Rows are counted from the bottom (y up), so the image is the right way up. Returns the number
    of points kept.
    """
    n = points.shape[0]
    if np.isfinite(points).all():
        return _finite_pixels(points, size, pad, pixels)
    keep = np.ones(n, dtype=np.bool_)
    _drop_nan(points[:, 0], keep, NAN_DROP)
    _drop_nan(points[:, 1], keep, NAN_DROP)
    rows = np.zeros(n, dtype=np.int64)
    cols = np.zeros(n, dtype=np.int64)
    _axis_pixels(points[:, 1], keep, size, pad, rows)
    _axis_pixels(points[:, 0], keep, size, pad, cols)
    kept = 0
    for t in range(n):
        if keep[t]:
            pixels[t, 0] = size - 1 - rows[t]
            pixels[t, 1] = cols[t]
            kept += 1
        else:
            pixels[t, 0] = -1
            pixels[t, 1] = -1
    return kept


@njit(cache=True, nogil=True)
def draw_points(pixels, image):
    """One pixel of gray ``INK`` per point."""
    for t in range(pixels.shape[0]):
        r = pixels[t, 0]
        if r >= 0:
            image[r, pixels[t, 1]] = INK


@njit(cache=True, nogil=True)
def draw_patches(pixels, masks, image, union):
    """A 3 x 3 patch per point, the cells of its 9-bit mask ``INK``; branch-free cell writes
    because random mask bits defeat branch prediction.

    ``union=False`` is the reference's drawing: each point in turn pastes its patch over its
    block, cells whose mask bit is off included, so later patches erase earlier ink. The
    reference pastes the patch with its top-left corner at the point + 1 on an image whose rows
    grow with y, then flips the image top to bottom; here rows already count from the top, so the
    patch spans rows ``r - 3 .. r - 1`` (bottom to top) and columns ``c + 1 .. c + 3``, and mask
    bit ``8 - k`` is patch cell ``(k // 3, k % 3)``, as the reference reads a mask's 9-digit binary
    string. The padding (at least 4) keeps every patch inside.

    ``union=True`` is not the reference's drawing: the patch is centred on the point and OR-ed in,
    so ink is never erased (about twice the reference's fill, solid where it is speckled).
    """
    for t in range(pixels.shape[0]):
        r = pixels[t, 0]
        if r < 0:
            continue
        c = pixels[t, 1]
        m = np.int32(masks[t])
        if union:
            for k in range(9):
                image[r + k // 3 - 1, c + k % 3 - 1] |= ((m >> k) & 1) * INK
        else:
            for k in range(9):
                image[r - 1 - k // 3, c + 1 + k % 3] = ((m >> (8 - k)) & 1) * INK


@njit(cache=True, nogil=True)
def draw_density(pixels, image):
    """Visit counts per pixel, log-scaled so that the most visited pixel is 255."""
    counts = np.zeros(image.shape, dtype=np.int64)
    top = 0
    for t in range(pixels.shape[0]):
        r = pixels[t, 0]
        if r >= 0:
            c = pixels[t, 1]
            counts[r, c] += 1
            top = max(top, counts[r, c])
    if top == 0:
        return
    scale = 255.0 / np.log1p(top)
    for r in range(image.shape[0]):
        for c in range(image.shape[1]):
            if counts[r, c] > 0:
                # At least 1, so that every visited pixel counts towards the fill rate.
                image[r, c] = max(1, int(np.log1p(counts[r, c]) * scale + 0.5))


@njit(cache=True, nogil=True)
def fill_rate(image):
    """Fraction of pixels that are not black."""
    n = 0
    for v in image.ravel():
        if v != 0:
            n += 1
    return n / image.size


def fills(image: np.ndarray, fill_min: float) -> bool:
    """The reference's fill check: an image is kept when its fill rate exceeds ``fill_min``."""
    return bool(fill_rate(image) > fill_min)


def trace(maps: np.ndarray, choices: np.ndarray, size: int) -> np.ndarray:
    """Run the chaos game for ``len(choices)`` points (the start among them) and scale them to
    ``(row, col)`` pixels."""
    points = np.empty((len(choices), 2))
    chaos_game(np.ascontiguousarray(maps, dtype=np.float64), choices, points)
    pixels = np.empty((len(choices), 2), dtype=np.int32)
    scale_to_pixels(points, size, PAD, pixels)
    return pixels


def draw_image(pixels: np.ndarray, masks: np.ndarray, size: int, draw: str = "patch") -> np.ndarray:
    """Draw traced pixels on a ``size²`` uint8 image; ``masks`` are used by the patch modes only."""
    image = np.zeros((size, size), dtype=np.uint8)
    if draw == "point":
        draw_points(pixels, image)
    elif draw == "patch":
        draw_patches(pixels, masks, image, False)
    elif draw == "patch-union":
        # Centred patches need a pixel of margin: a point on pixel 0 (a diverging system) moves in.
        inside = np.where(pixels < 0, -1, np.clip(pixels, 1, size - 2)).astype(np.int32)
        draw_patches(inside, masks, image, True)
    elif draw == "density":
        draw_density(pixels, image)
    else:
        raise ValueError(f"unknown draw mode {draw!r}; expected one of {DRAW_MODES}")
    return image


def render_image(
    maps: np.ndarray,
    choices: np.ndarray,
    masks: np.ndarray,
    size: int,
    draw: str = "patch",
) -> np.ndarray:
    """Run the chaos game for ``len(choices)`` points (the start among them) and draw them on a
    ``size²`` uint8 image."""
    return draw_image(trace(maps, choices, size), masks, size, draw)


def random_sequence(points: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The chaos game's random inputs: one uniform and one non-empty 9-bit patch mask per point."""
    uniforms = rng.random(points)
    masks = rng.integers(1, 512, size=points, dtype=np.uint16)
    return uniforms, masks


@njit(cache=True, nogil=True)
def _choose(cdf, uniforms, choices):
    """``choices[t]`` = the first ``j`` with ``cdf[j] > uniforms[t]``, i.e. the number of entries
    ``<= uniforms[t]`` before the last one (``cdf`` is sorted). Counted branch-free: N is small and
    random uniforms defeat branch prediction."""
    last = cdf.shape[0] - 1
    for t in range(uniforms.shape[0]):
        u = uniforms[t]
        j = 0
        for k in range(last):
            j += cdf[k] <= u
        choices[t] = j


def map_choices(probs: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Turn uniforms into map indices drawn with ``probs`` (inverse CDF).

    The same indices as ``np.searchsorted(cdf, uniforms, side="right")``, about ten times faster,
    which matters to searches that try thousands of systems.
    """
    cdf = np.cumsum(probs)
    cdf[-1] = 1.0
    choices = np.empty(len(uniforms), dtype=np.intp)
    _choose(cdf, np.ascontiguousarray(uniforms, dtype=np.float64), choices)
    return choices
