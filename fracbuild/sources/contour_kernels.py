"""The numeric kernels of the contour sources (numba, no I/O): 1-D Perlin noise equal to the
``noise`` package's ``pnoise1``, Pillow's 1-px line, and the radial contour update.

Every random input (the noise inputs, the gray levels) is drawn outside and passed in, so an image
is a function of its parameters and its draws.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Ken Perlin's permutation of 0..255 (his "Improved Noise" reference, 2002), which ``pnoise1`` hashes with.
PERM = np.array([
    151, 160, 137, 91, 90, 15, 131, 13, 201, 95, 96, 53, 194, 233, 7, 225, 140, 36, 103, 30, 69, 142, 8, 99, 37, 240,
    21, 10, 23, 190, 6, 148, 247, 120, 234, 75, 0, 26, 197, 62, 94, 252, 219, 203, 117, 35, 11, 32, 57, 177, 33, 88,
    237, 149, 56, 87, 174, 20, 125, 136, 171, 168, 68, 175, 74, 165, 71, 134, 139, 48, 27, 166, 77, 146, 158, 231, 83,
    111, 229, 122, 60, 211, 133, 230, 220, 105, 92, 41, 55, 46, 245, 40, 244, 102, 143, 54, 65, 25, 63, 161, 1, 216, 80,
    73, 209, 76, 132, 187, 208, 89, 18, 169, 200, 196, 135, 130, 116, 188, 159, 86, 164, 100, 109, 198, 173, 186, 3, 64,
    52, 217, 226, 250, 124, 123, 5, 202, 38, 147, 118, 126, 255, 82, 85, 212, 207, 206, 59, 227, 47, 16, 58, 17, 182,
    189, 28, 42, 223, 183, 170, 213, 119, 248, 152, 2, 44, 154, 163, 70, 221, 153, 101, 155, 167, 43, 172, 9, 129, 22,
    39, 253, 19, 98, 108, 110, 79, 113, 224, 232, 178, 185, 112, 104, 218, 246, 97, 228, 251, 34, 242, 193, 238, 210,
    144, 12, 191, 179, 162, 241, 81, 51, 145, 235, 249, 14, 239, 107, 49, 192, 214, 31, 181, 199, 106, 157, 184, 84,
    204, 176, 115, 121, 50, 45, 127, 4, 150, 254, 138, 236, 205, 93, 222, 114, 67, 29, 24, 72, 243, 141, 128, 195, 78,
    66, 215, 61, 156, 180,
], dtype=np.int64)
#: ``pnoise1`` computes in single precision: its constants as float32, so that numba keeps every step there.
_ONE, _SIX, _TEN, _FIFTEEN, _SCALE = (np.float32(v) for v in (1.0, 6.0, 10.0, 15.0, 0.4))
#: ``pnoise1``'s default period (the originals call it with the defaults: one octave, base 0).
REPEAT = 1024


@njit(cache=True, nogil=True)
def _c_remainder(a, m):
    """``a % m`` as C computes it (the sign of ``a``), not as Python does."""
    r = abs(a) % m
    return -r if a < 0 else r


@njit(cache=True, nogil=True)
def _gradient(hash_, t):
    # pnoise1's gradient: (hash & 7) + 1, or -1 when bit 3 is set.
    g = np.float32(-1.0) if hash_ & 8 else np.float32((hash_ & 7) + 1)
    return g * t


@njit(cache=True, nogil=True)
def perlin1(x, out):
    """``out[k] = pnoise1(x[k])`` bit for bit (``|x| < 2**31``): ``x`` rounded to float32, then the
    fade, the two gradients and the interpolation in float32, times 0.4, returned as float64."""
    for k in range(x.shape[0]):
        v = np.float32(x[k])
        floor = np.floor(v)
        i = _c_remainder(int(floor), REPEAT)
        j = _c_remainder(i + 1, REPEAT)
        t = v - floor
        fade = t * t * t * (t * (t * _SIX - _FIFTEEN) + _TEN)
        a = _gradient(PERM[i & 255], t)
        b = _gradient(PERM[j & 255], t - _ONE)
        out[k] = (a + fade * (b - a)) * _SCALE


@njit(cache=True, nogil=True)
def _ceil_div(a, b):
    return -((-a) // b)


@njit(cache=True, nogil=True)
def _major_steps(start, step, n, size):
    """The steps ``i`` in ``[0, n)`` at which ``start + step * i`` (``step`` = ±1) lies in ``[0, size)``."""
    if step > 0:
        return max(0, -start), min(n, size - start)
    return max(0, start - size + 1), min(n, start + 1)


@njit(cache=True, nogil=True)
def _minor_steps(start, step, d_major, d_minor, n, size):
    """The steps ``i`` in ``[0, n)`` at which the minor coordinate ``start + step * k(i)``, with
    ``k(i) = (2 d_minor i + d_major) // (2 d_major)`` minor steps made, lies in ``[0, size)``."""
    lo_k, hi_k = (-start, size - 1 - start) if step > 0 else (start - size + 1, start)
    lo_k = max(lo_k, 0)  # k(i) >= 0
    if hi_k < lo_k:
        return 0, 0
    if d_minor == 0:  # k(i) = 0 for every step
        return (0, n) if lo_k == 0 else (0, 0)
    # k(i) >= K  <=>  i >= (2 d_major K - d_major) / (2 d_minor)
    # k(i) <= K  <=>  i < (2 d_major (K + 1) - d_major) / (2 d_minor)
    lo = _ceil_div(2 * d_major * lo_k - d_major, 2 * d_minor)
    hi = _ceil_div(2 * d_major * (hi_k + 1) - d_major, 2 * d_minor)
    return max(lo, 0), min(hi, n)


@njit(cache=True, nogil=True)
def _walk(image, major, minor, d_major, d_minor, s_major, s_minor, n, transposed, inside, ink):
    """Bresenham's walk along the major axis as Pillow makes it (error ``2 d_minor - d_major`` to
    start, a minor step whenever it is >= 0), over the steps at which both coordinates are inside
    the image (all of them when both ends are, ``inside``): after ``i`` steps the walk has made
    ``k(i) = (2 d_minor i + d_major) // (2 d_major)`` minor steps, so it starts there directly."""
    height, width = image.shape
    lo, hi, k = 0, n, 0
    if not inside:  # most segments lie inside: no divisions for them
        lo, hi = _major_steps(major, s_major, n, height if transposed else width)
        lo_minor, hi_minor = _minor_steps(minor, s_minor, d_major, d_minor, n, width if transposed else height)
        lo, hi = max(lo, lo_minor), min(hi, hi_minor)
        if lo >= hi:
            return
        k = (2 * d_minor * lo + d_major) // (2 * d_major)
    e = 2 * d_minor - d_major + 2 * d_minor * lo - 2 * d_major * k
    a, b = major + s_major * lo, minor + s_minor * k
    if transposed:  # two loops, so that neither tests the orientation per pixel
        for _ in range(hi - lo):
            if 0 <= b < width:  # always, by the ranges above: a guard, never a clip
                image[np.uintp(a), np.uintp(b)] = ink  # unsigned: no negative-index wraparound
            if e >= 0:
                b += s_minor
                e -= 2 * d_major
            e += 2 * d_minor
            a += s_major
    else:
        for _ in range(hi - lo):
            if 0 <= b < height:
                image[np.uintp(b), np.uintp(a)] = ink
            if e >= 0:
                b += s_minor
                e -= 2 * d_major
            e += 2 * d_minor
            a += s_major


@njit(cache=True, nogil=True)
def segment(image, x0, y0, x1, y1, ink):
    """Pillow's 1-px line from ``(x0, y0)`` to ``(x1, y1)``, the end pixel excluded: a horizontal
    run, or Bresenham's walk along the longer axis (a vertical run when the shorter is 0). Only the
    steps inside the image are walked, so a long line costs at most the image's side."""
    height, width = image.shape
    dy = y1 - y0
    if dy == 0:
        lo, hi = (x0, x1 - 1) if x1 > x0 else (x1 + 1, x0)
        if 0 <= y0 < height:
            for x in range(max(lo, 0), min(hi, width - 1) + 1):
                image[y0, x] = ink
        return
    dx = x1 - x0
    ys = 1 if dy > 0 else -1
    xs = 1 if dx >= 0 else -1
    dx, dy = abs(dx), abs(dy)
    inside = 0 <= x0 < width and 0 <= x1 < width and 0 <= y0 < height and 0 <= y1 < height
    if dx > dy:
        _walk(image, x0, y0, dx, dy, xs, ys, dx, False, inside, ink)
    else:  # dx == 0 walks straight down the column: no minor step is ever made
        _walk(image, y0, x0, dy, dx, ys, xs, dy, True, inside, ink)


#: Pixel coordinates are clamped to this before the integer cast (Pillow casts to a C int, undefined
#: past ±2**31): a line's walk then never overflows, and any finite coordinate terminates.
LIMIT = 2.0 ** 29


@njit(cache=True, nogil=True)
def _pixel(value):
    return int(min(max(value, -LIMIT), LIMIT))


@njit(cache=True, nogil=True)
def _polyline(image, px, py, ink):
    """``polyline`` of integer pixel coordinates."""
    n = px.shape[0]
    for k in range(n - 1):
        segment(image, px[k], py[k], px[k + 1], py[k + 1], ink)
    if n > 1 and 0 <= px[n - 1] < image.shape[1] and 0 <= py[n - 1] < image.shape[0]:
        image[py[n - 1], px[n - 1]] = ink


@njit(cache=True, nogil=True)
def polyline(image, xy, ink):
    """Pillow's ``ImageDraw.line(xy, width=1)``: each coordinate truncated towards zero (C's cast),
    every segment drawn without its end, then the last point. The same pixels as one call per
    segment, as each segment's end is the next one's start."""
    px = np.empty(xy.shape[0], dtype=np.int64)
    py = np.empty(xy.shape[0], dtype=np.int64)
    for k in range(xy.shape[0]):
        px[k] = _pixel(xy[k, 0])
        py[k] = _pixel(xy[k, 1])
    _polyline(image, px, py, ink)


@njit(cache=True, nogil=True)
def draw_contours(image, cos, sin, wave1, wave2, shape, origin, shift, scale, perlin, gain, offset, inputs, gray):
    """Contour lines on ``image``, as the RCDB and VisualAtom renderers draw them.

    Vertex v starts on the oval ``(cos[v] r ox + origin_x, sin[v] r oy + origin_y)`` (``shape`` is
    ``r, ox, oy``). Contour line l computes, per vertex and axis, ``noise = pnoise1(input) * perlin
    * gain - perlin - wave1[v] - wave2[v]``, moves the vertex by ``-(cos[v], sin[v]) * (noise -
    offset)`` and draws the closed polygon through ``(vertex + shift) * scale`` in gray level
    ``gray[l]``. ``inputs`` is ``(lines, 2, vertices)``: the x inputs of a line, then its y inputs.
    Every step in the originals' order of operations, so the same pixels to the last rounding.
    """
    n = cos.shape[0]
    x = np.empty(n)
    y = np.empty(n)
    for v in range(n):
        x[v] = cos[v] * shape[0] * shape[1] + origin[0]
        y[v] = sin[v] * shape[0] * shape[2] + origin[1]
    noise = np.empty(inputs.size)
    perlin1(inputs.ravel(), noise)
    noise = noise.reshape(inputs.shape)
    px = np.empty(n + 1, dtype=np.int64)
    py = np.empty(n + 1, dtype=np.int64)
    for line in range(inputs.shape[0]):
        for v in range(n):
            nx = noise[line, 0, v] * perlin * gain - perlin - wave1[v] - wave2[v]
            ny = noise[line, 1, v] * perlin * gain - perlin - wave1[v] - wave2[v]
            x[v] -= cos[v] * (nx - offset)
            y[v] -= sin[v] * (ny - offset)
            px[v] = _pixel((x[v] + shift[0]) * scale)
            py[v] = _pixel((y[v] + shift[1]) * scale)
        px[n], py[n] = px[0], py[0]  # closed
        _polyline(image, px, py, gray[line])


@njit(cache=True, nogil=True)
def ink_fraction(image, background):
    """The share of pixels that are not ``background``."""
    count = 0
    for value in image.ravel():
        count += value != background
    return count / image.size
