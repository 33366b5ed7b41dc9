import numpy as np
import pytest

from fracbuild import ifs
from fracbuild.codec import decode_png, encode_png
from fracbuild.kernels import (
    DRAW_MODES,
    INK,
    PAD,
    chaos_game,
    draw_image,
    fill_rate,
    fills,
    map_choices,
    random_sequence,
    render_image,
    scale_to_pixels,
)

SQUARE = np.array([[0.5, 0, 0, 0.5, 0, 0], [0.5, 0, 0, 0.5, 0.5, 0], [0.5, 0, 0, 0.5, 0, 0.5],
                   [0.5, 0, 0, 0.5, 0.5, 0.5]])


def sequence(maps, points=20000, seed=0):
    uniforms, masks = random_sequence(points, np.random.default_rng(seed))
    return map_choices(ifs.map_probabilities(maps), uniforms), masks


def test_chaos_game_counts_the_start_and_applies_the_chosen_maps():
    points = np.empty((4, 2))
    for last in (0, 2):  # N points from N choices: the start, then N - 1 iterates; the last choice is unused
        chaos_game(SQUARE, np.array([1, 0, 3, last], dtype=np.intp), points)
        np.testing.assert_allclose(points, [[0.0, 0.0], [0.5, 0.0], [0.25, 0.0], [0.625, 0.5]])


def test_map_choices_follow_the_probabilities():
    uniforms = np.random.default_rng(0).random(100_000)
    counts = np.bincount(map_choices(np.array([0.1, 0.6, 0.3]), uniforms), minlength=3) / 1e5
    np.testing.assert_allclose(counts, [0.1, 0.6, 0.3], atol=0.01)


def test_square_fills_the_image_inside_the_padding():
    choices, masks = sequence(SQUARE)
    image = render_image(SQUARE, choices, masks, 64, "point")
    assert set(np.unique(image)) == {0, INK}
    rows, cols = np.nonzero(image)
    # Points are scaled into [PAD, size - PAD] on both axes (rows counted from the bottom).
    assert cols.min() == PAD and cols.max() == 64 - PAD
    assert rows.min() == PAD - 1 and rows.max() == 64 - 1 - PAD
    assert fill_rate(image) > 0.5


def dilate(mask):
    padded = np.pad(mask, 1)
    return np.any([padded[1 + dr:1 + dr + mask.shape[0], 1 + dc:1 + dc + mask.shape[1]]
                   for dr in (-1, 0, 1) for dc in (-1, 0, 1)], axis=0)


def test_patches_lie_around_points_and_density_is_log_scaled():
    choices, masks = sequence(SQUARE, 3000)
    point = render_image(SQUARE, choices, masks, 64, "point") > 0
    union = render_image(SQUARE, choices, masks, 64, "patch-union") > 0
    union_full = render_image(SQUARE, choices, np.full_like(masks, 511), 64, "patch-union") > 0
    patch = render_image(SQUARE, choices, masks, 64, "patch") > 0
    patch_full = render_image(SQUARE, choices, np.full_like(masks, 511), 64, "patch") > 0
    density = render_image(SQUARE, choices, masks, 64, "density")
    assert (union <= dilate(point)).all() and union.sum() > point.sum()
    np.testing.assert_array_equal(union_full, dilate(point))  # all nine cells on: a 3 x 3 dilation
    # The reference's patches are centred 2 rows up and 2 columns right of the point.
    np.testing.assert_array_equal(patch_full, np.roll(dilate(point), (-2, 2), axis=(0, 1)))
    # Pasted patches erase: less ink than OR-ing the same patches in, on the same pixels.
    assert (patch <= patch_full).all() and patch.sum() < np.roll(union, (-2, 2), axis=(0, 1)).sum()
    assert ((density > 0) == point).all()
    assert density.max() == 255 and len(np.unique(density)) > 3


def test_a_patch_erases_the_ink_of_earlier_patches():
    pixels = np.array([[20, 20], [20, 20]], dtype=np.int32)  # two points on one pixel
    masks = np.array([511, 1], dtype=np.uint16)  # all nine cells, then only one
    later_wins = draw_image(pixels, masks, 32, "patch")
    assert np.count_nonzero(later_wins) == 1
    assert np.count_nonzero(draw_image(pixels, masks[::-1], 32, "patch")) == 9  # order matters
    assert np.count_nonzero(draw_image(pixels, masks, 32, "patch-union")) == 9  # OR never erases


def test_a_point_lands_on_the_reference_pixel():
    # One map sends everything to (1, 1): the points are the start (0, 0) and (1, 1), scaled to the
    # corners of the box [PAD, size - PAD] on both axes.
    size, span = 64, 64 - 2 * PAD
    maps = np.array([[0.0, 0, 0, 0, 1, 1]])
    top_left_cell, bottom_right_cell = 1 << 8, 1  # mask strings '100000000' and '000000001'
    masks = np.array([top_left_cell, bottom_right_cell], dtype=np.uint16)
    image = render_image(maps, np.zeros(2, dtype=np.intp), masks, size, "patch")
    # The reference: pixel (x, y) = (PAD, PAD) for the start and (PAD + span, PAD + span) for (1, 1);
    # patch cell (i, j) goes to row y + 1 + i, column x + 1 + j of an image whose rows grow with y,
    # which is then flipped top to bottom: row size - 1 - (y + 1 + i).
    start = (size - 1 - (PAD + 1 + 0), PAD + 1 + 0)
    end = (size - 1 - (PAD + span + 1 + 2), PAD + span + 1 + 2)
    assert sorted(zip(*np.nonzero(image), strict=True)) == sorted([start, end])
    assert image[start] == image[end] == INK


def rules_image(maps, uniforms, masks, size):
    """The reference's rules, written out in plain numpy: the start (0, 0) and N - 1 iterates,
    min-max scaled into [PAD, size - PAD] and truncated, each point pasting its 3 x 3 patch (mask
    string '{:09b}', cell i * 3 + j) with its top-left corner at the point + 1 on an image whose
    rows grow with y, then the image flipped top to bottom."""
    cdf = np.cumsum(ifs.map_probabilities(maps))
    xy = [np.zeros(2)]
    for u in uniforms[:-1]:
        m = maps[min(int(np.sum(cdf <= u)), len(maps) - 1)]
        x, y = xy[-1]
        xy.append(np.array([m[0] * x + m[1] * y + m[4], m[2] * x + m[3] * y + m[5]]))
    xy = np.array(xy)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    pixels = ((xy - lo) / (hi - lo) * (size - 2 * PAD) + PAD).astype(np.uint16)
    image = np.zeros((size, size), dtype=np.uint8)
    for (x, y), mask in zip(pixels, masks, strict=True):
        image[y + 1:y + 4, x + 1:x + 4] = np.array([int(bit) for bit in f"{int(mask):09b}"]).reshape(3, 3) * INK
    return image[::-1]


@pytest.mark.parametrize("maps", [SQUARE, np.array([[0.094, 0.142, -0.329, -0.165, 0.459, 0.087],
                                                    [0.011, -0.998, -0.989, -0.001, 0.715, -0.933]])])
def test_patch_drawing_and_fill_follow_the_reference_rules(maps):
    uniforms, masks = random_sequence(5000, np.random.default_rng(3))
    image = render_image(maps, map_choices(ifs.map_probabilities(maps), uniforms), masks, 96, "patch")
    expected = rules_image(maps, uniforms, masks, 96)
    assert fill_rate(image) == np.count_nonzero(expected) / expected.size
    np.testing.assert_array_equal(image, expected)


def test_non_finite_points_are_handled_as_the_reference_handles_them():
    size = 64
    points = np.column_stack([np.linspace(-1.0, 1.0, 400), np.linspace(0.0, 2.0, 400)])
    pixels = np.empty((400, 2), dtype=np.int32)
    # A NaN at 300 (and after): it and the 100 points before it are dropped; the rest scale alone.
    nan = points.copy()
    nan[300:] = np.nan
    assert scale_to_pixels(nan, size, PAD, pixels) == 200
    assert (pixels[200:] == -1).all() and pixels[:200, 1].min() == PAD and pixels[:200, 1].max() == size - PAD
    # An infinity is kept: the finite points collapse onto the padding, the infinite one onto pixel 0.
    inf = points.copy()
    inf[399, 0] = np.inf
    assert scale_to_pixels(inf, size, PAD, pixels) == 400
    assert (pixels[:399, 1] == PAD).all() and pixels[399, 1] == 0
    assert pixels[0, 0] == size - 1 - PAD and pixels[399, 0] == PAD - 1  # y is finite: scaled as usual
    # A flat axis divides 0 by 0: pixel 0, as the reference's integer cast of NaN.
    flat = points.copy()
    flat[:, 0] = 0.0
    scale_to_pixels(flat, size, PAD, pixels)
    assert (pixels[:, 1] == 0).all()


def test_fill_check_is_strictly_above_the_threshold():
    image = np.zeros((10, 10), dtype=np.uint8)
    image.flat[:5] = INK  # fill 0.05 exactly
    assert not fills(image, 0.05)
    image.flat[5] = INK
    assert fills(image, 0.05)


def test_image_is_upright():
    # One map pulls everything to the top-left corner (x small, y large), the other to the middle.
    maps = np.array([[0.3, 0, 0, 0.3, 0.0, 0.7], [0.3, 0, 0, 0.3, 0.35, 0.35]])
    choices, masks = sequence(maps)
    image = render_image(maps, choices, masks, 64, "point")
    top_left = image[:32, :32].astype(bool).sum()
    bottom_right = image[32:, 32:].astype(bool).sum()
    assert top_left > bottom_right


@pytest.mark.parametrize("draw", DRAW_MODES)
def test_diverging_and_degenerate_systems_stay_in_bounds(draw):
    expanding = np.array([[1.7, 0.3, -0.2, 1.5, 0.1, 0.2], [1.9, 0, 0, 1.9, 1, 1]])  # overflows to inf
    for maps in (expanding, np.zeros((2, 6)), np.array([[0.5, 0, 0, 0.0, 0.1, 0], [0.5, 0, 0, 0, 0.3, 0]])):
        choices, masks = sequence(maps, 5000)
        image = render_image(maps, choices, masks, 32, draw)
        assert image.shape == (32, 32) and image.dtype == np.uint8


def test_png_round_trip_and_pillow_agrees():
    choices, masks = sequence(SQUARE, 2000)
    image = render_image(SQUARE, choices, masks, 48, "density")
    data = encode_png(image)
    np.testing.assert_array_equal(decode_png(data), image)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(image.astype(np.int32))
