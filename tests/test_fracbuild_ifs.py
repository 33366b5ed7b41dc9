import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fracbuild import ifs
from fracbuild.errors import FracbuildError


def svd_free_singular_values(maps):
    """Singular values from the eigenvalues of AᵀA in closed form (no numpy SVD)."""
    out = []
    for a, b, c, d, _, _ in maps:
        t = a * a + b * b + c * c + d * d  # trace of AᵀA
        det = a * d - b * c
        disc = np.sqrt(max(t * t - 4 * det * det, 0.0))
        out.append((np.sqrt((t + disc) / 2), np.sqrt(max((t - disc) / 2, 0.0))))
    return np.array(out)


@st.composite
def targets(draw):
    n = draw(st.integers(2, 7))
    sigma = draw(st.floats(1e-3, 3 * n - 1e-3))
    tol = draw(st.floats(0, 0.5))
    return n, sigma, tol, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=300, deadline=None)
@given(targets())
def test_sampled_sigma_is_in_target_range_and_matches_independent_svd(case):
    n, sigma, tol, seed = case
    maps = ifs.sample_system(sigma, n, np.random.default_rng(seed), tol)
    assert maps.shape == (n, 6)
    sv = svd_free_singular_values(maps)
    independent = float(np.sum(sv[:, 0] + 2 * sv[:, 1]))
    # The closed form loses ~1e-9 when a map's singular values nearly coincide.
    assert ifs.sigma_factor(maps) == pytest.approx(independent, abs=1e-7)
    lo, hi = max(sigma - tol, 0), min(sigma + tol, 3 * n)
    assert lo - 1e-9 <= ifs.sigma_factor(maps) <= hi + 1e-9


@settings(max_examples=300, deadline=None)
@given(targets())
def test_every_map_is_contractive(case):
    n, sigma, tol, seed = case
    maps = ifs.sample_system(sigma, n, np.random.default_rng(seed), tol)
    # Operator 2-norm below 1 (the closed form above is too coarse near s1 = s2 = 1 for this).
    assert all(np.linalg.norm(a, 2) < 1.0 for a in maps[:, :4].reshape(-1, 2, 2))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 7), st.floats(0.0, 1.0, exclude_min=True, exclude_max=True), st.integers(0, 2**32 - 1))
def test_singular_values_are_ordered_bounded_and_sum_to_sigma(n, frac, seed):
    sigma = frac * 3 * n
    s = ifs.sample_singular_values(sigma, n, np.random.default_rng(seed))
    assert (s[:, 0] <= 1.0).all() and (s[:, 1] >= 0.0).all()
    assert (s[:, 0] >= s[:, 1] - 1e-12).all()
    assert float(np.sum(s[:, 0] + 2 * s[:, 1])) == pytest.approx(sigma, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(targets())
def test_probabilities_sum_to_one_and_follow_abs_det(case):
    n, sigma, tol, seed = case
    maps = ifs.sample_system(sigma, n, np.random.default_rng(seed), tol)
    p = ifs.map_probabilities(maps)
    det = np.abs(maps[:, 0] * maps[:, 3] - maps[:, 1] * maps[:, 2])
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(p, det / det.sum(), rtol=1e-9)


def test_same_seed_same_system_other_seed_other_system():
    a = ifs.sample_system(3.5, 2, np.random.default_rng(7), 0.1)
    b = ifs.sample_system(3.5, 2, np.random.default_rng(7), 0.1)
    c = ifs.sample_system(3.5, 2, np.random.default_rng(8), 0.1)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_target_is_drawn_uniformly_from_the_interval():
    rng = np.random.default_rng(0)
    found = np.array([ifs.sigma_factor(ifs.sample_system(3.5, 2, rng, 0.1)) for _ in range(4000)])
    # Uniform on [3.4, 3.6]: each quarter holds a quarter of the draws (4000 draws: sd ≈ 0.007).
    quarters = np.histogram(found, bins=4, range=(3.4, 3.6))[0] / len(found)
    np.testing.assert_allclose(quarters, 0.25, atol=0.03)


def test_singular_probabilities_fall_back_to_uniform():
    maps = np.zeros((3, 6))
    np.testing.assert_allclose(ifs.map_probabilities(maps), 1 / 3)


@pytest.mark.parametrize(
    "sigma,n,tol,message",
    [(0.0, 2, 0.1, "sigma must lie in"), (6.0, 2, 0.1, "sigma must lie in"), (-1, 2, 0.1, "sigma"),
     (3.5, 0, 0.1, "maps must be at least 1"), (3.5, 2, -0.1, "tolerance")],
)
def test_infeasible_settings_raise_one_line(sigma, n, tol, message):
    with pytest.raises(FracbuildError, match=message) as err:
        ifs.sample_system(sigma, n, np.random.default_rng(0), tol)
    assert "\n" not in str(err.value)
