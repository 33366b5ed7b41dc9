"""Iterated function systems: σ-factor, map probabilities and the σ-targeted sampler.

Pure numpy, no I/O. A system is an ``(N, 6)`` float64 array of affine maps in ``a b c d e f``
order: map j sends ``(x, y)`` to ``(a x + b y + e, c x + d y + f)``.
"""

from __future__ import annotations

import numpy as np

from .errors import FracbuildError


def linear_parts(maps: np.ndarray) -> np.ndarray:
    """The ``(N, 2, 2)`` linear parts ``[[a, b], [c, d]]`` of the maps."""
    maps = np.asarray(maps, dtype=np.float64)
    return maps[:, :4].reshape(-1, 2, 2)


def singular_values(maps: np.ndarray) -> np.ndarray:
    """``(N, 2)`` singular values of each map's linear part, largest first."""
    return np.linalg.svd(linear_parts(maps), compute_uv=False)


def sigma_factor(maps: np.ndarray) -> float:
    """Anderson & Farrell's σ-factor: ``Σ_j (s_j1 + 2 s_j2)``; small σ gives complex shapes."""
    s = singular_values(maps)
    return float(np.sum(s[:, 0] + 2.0 * s[:, 1]))


def map_probabilities(maps: np.ndarray) -> np.ndarray:
    """Map probabilities ``p_j = |det A_j| / Σ |det A|`` (uniform if every map is singular)."""
    det = np.abs(np.linalg.det(linear_parts(maps)))
    total = det.sum()
    if not np.isfinite(total) or total <= 0.0:
        return np.full(len(det), 1.0 / len(det))
    return det / total


def sigma_bounds(n_maps: int) -> tuple[float, float]:
    """The open interval of feasible σ-factors for ``n_maps`` contractive maps."""
    return 0.0, 3.0 * n_maps


def check_sigma(sigma: float, n_maps: int, tolerance: float = 0.0) -> None:
    """Raise a one-line error unless a σ-targeted sample with these settings is possible."""
    if n_maps < 1:
        raise FracbuildError(f"maps must be at least 1, got {n_maps}")
    if not np.isfinite(tolerance) or tolerance < 0:
        raise FracbuildError(f"tolerance must be a non-negative number, got {tolerance}")
    lo, hi = sigma_bounds(n_maps)
    if not (lo < sigma < hi):
        raise FracbuildError(
            f"sigma must lie in ({lo:g}, {hi:g}) for {n_maps} map(s), got {sigma}"
        )


def sample_singular_values(sigma: float, n_maps: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``(N, 2)`` singular values with ``1 ≥ s1 ≥ s2 ≥ 0`` and ``Σ (s1 + 2 s2) = sigma``.

    Maps are filled one at a time from the remaining budget ``p``. Map i may take any share that
    leaves ``p`` within ``[0, 3k]`` for the ``k`` maps after it, which bounds ``s1`` to
    ``[max(0, (p - 3k) / 3), min(1, p)]`` and then ``s2``; the last map's pair is solved exactly.
    """
    check_sigma(sigma, n_maps)
    s = np.empty((n_maps, 2))
    p = float(sigma)
    for i in range(n_maps - 1):
        k = n_maps - 1 - i
        s1 = _uniform(rng, (p - 3.0 * k) / 3.0, min(1.0, p))
        s2 = _uniform(rng, (p - s1 - 3.0 * k) / 2.0, min(s1, (p - s1) / 2.0))
        s[i] = s1, s2
        p = max(p - s1 - 2.0 * s2, 0.0)
    s2 = _uniform(rng, (p - 1.0) / 2.0, p / 3.0)
    s[-1] = p - 2.0 * s2, s2
    return s


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """``U(max(lo, 0), hi)``, with rounding that crossed the bounds over (tiny σ) folded back."""
    lo = max(lo, 0.0)
    return rng.uniform(lo, max(hi, lo))


def _rotation(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def sample_system(
    sigma: float, n_maps: int, rng: np.random.Generator, tolerance: float = 0.0
) -> np.ndarray:
    """Draw an ``(N, 6)`` system whose σ-factor is a target drawn from ``[σ - tol, σ + tol]``.

    Each linear part is ``R(θ) · diag(s1, s2) · R(φ) · D`` with angles uniform in ``(-π, π)`` and
    ``D`` a random diagonal sign matrix, so its singular values are exactly ``s1, s2``;
    translations ``e, f`` are uniform in ``(-1, 1)``. The target interval is clipped to the
    feasible range ``(0, 3N)``.
    """
    check_sigma(sigma, n_maps, tolerance)
    lo, hi = sigma_bounds(n_maps)
    target = rng.uniform(max(sigma - tolerance, lo), min(sigma + tolerance, hi))
    svs = sample_singular_values(target, n_maps, rng)
    maps = np.empty((n_maps, 6))
    for j, (s1, s2) in enumerate(svs):
        theta, phi = rng.uniform(-np.pi, np.pi, size=2)
        signs = rng.choice(np.array([-1.0, 1.0]), size=2)
        a = _rotation(theta) @ np.diag([s1, s2]) @ _rotation(phi) @ np.diag(signs)
        maps[j, :4] = a.ravel()
        maps[j, 4:] = rng.uniform(-1.0, 1.0, size=2)
    return maps


def sample_uniform_system(n_maps: int, rng: np.random.Generator) -> np.ndarray:
    """FractalDB's draw: an ``(N, 6)`` system with every parameter uniform in ``(-1, 1)``.

    Nothing keeps the maps contractive; a search keeps the systems whose render fills enough.
    """
    if n_maps < 1:
        raise FracbuildError(f"maps must be at least 1, got {n_maps}")
    return rng.uniform(-1.0, 1.0, size=(n_maps, 6))


def perturb_params(params: np.ndarray, mode: str, delta: float, rng: np.random.Generator) -> np.ndarray:
    """Perturb every entry of a parameter array: maps, noise parameters, warps.

    ``multiplicative`` scales each by ``U(1 - Δ, 1 + Δ)`` (the reference code);
    ``additive`` adds ``U(-Δ/2, Δ/2)`` (the paper's Eq. 9).
    """
    params = np.asarray(params, dtype=np.float64)
    if mode == "multiplicative":
        return params * rng.uniform(1.0 - delta, 1.0 + delta, size=params.shape)
    if mode == "additive":
        return params + rng.uniform(-delta / 2.0, delta / 2.0, size=params.shape)
    raise FracbuildError(f"unknown perturbation mode {mode!r}")


def perturb_maps(maps: np.ndarray, mode: str, delta: float, rng: np.random.Generator) -> np.ndarray:
    """The LIEP classes: every one of the 6·N parameters of a system perturbed (``perturb_params``)."""
    return perturb_params(maps, mode, delta, rng)
