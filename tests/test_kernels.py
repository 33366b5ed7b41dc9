import numpy as np
import pytest

from fracbuild import ifs
from fracbuild.codec import decode_png, encode_png
from fracbuild.kernels import INK, PAD, chaos_game, fill_rate, map_choices, random_sequence, render_image

SQUARE = np.array([[0.5, 0, 0, 0.5, 0, 0], [0.5, 0, 0, 0.5, 0.5, 0], [0.5, 0, 0, 0.5, 0, 0.5],
                   [0.5, 0, 0, 0.5, 0.5, 0.5]])


def sequence(maps, points=20000, seed=0):
    uniforms, masks = random_sequence(points, np.random.default_rng(seed))
    return map_choices(ifs.map_probabilities(maps), uniforms), masks


def test_chaos_game_applies_the_chosen_maps_from_the_origin():
    choices = np.array([1, 0, 3], dtype=np.intp)
    points = np.empty((3, 2))
    chaos_game(SQUARE, choices, points)
    np.testing.assert_allclose(points, [[0.5, 0.0], [0.25, 0.0], [0.625, 0.5]])


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


def test_patches_stay_within_a_pixel_of_points_and_density_is_log_scaled():
    choices, masks = sequence(SQUARE, 3000)
    point = render_image(SQUARE, choices, masks, 64, "point") > 0
    patch = render_image(SQUARE, choices, masks, 64, "patch") > 0
    full = render_image(SQUARE, choices, np.full_like(masks, 511), 64, "patch") > 0
    density = render_image(SQUARE, choices, masks, 64, "density")
    assert (patch <= dilate(point)).all() and patch.sum() > point.sum()
    np.testing.assert_array_equal(full, dilate(point))  # all nine cells on: a 3 x 3 dilation
    assert ((density > 0) == point).all()
    assert density.max() == 255 and len(np.unique(density)) > 3


def test_image_is_upright():
    # One map pulls everything to the top-left corner (x small, y large), the other to the middle.
    maps = np.array([[0.3, 0, 0, 0.3, 0.0, 0.7], [0.3, 0, 0, 0.3, 0.35, 0.35]])
    choices, masks = sequence(maps)
    image = render_image(maps, choices, masks, 64, "point")
    top_left = image[:32, :32].astype(bool).sum()
    bottom_right = image[32:, 32:].astype(bool).sum()
    assert top_left > bottom_right


@pytest.mark.parametrize("draw", ["point", "patch", "density"])
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
