"""Differences to a baseline over seeds and their 95 % intervals; an interval's verdict.

A comparison is a grid of paired differences ``d[i, j]``: pre-training seed ``i`` (a body) and
fine-tuning seed ``j``, each against the baseline fine-tuned with the same seed ``j`` (scratch has no
pre-training seed, so its row is shared by every body). The interval is a percentile bootstrap that
resamples pre-training seeds and fine-tuning seeds, both with replacement: a replicate draws N bodies
(each carrying its fine-tuning seeds) and M fine-tuning seeds (drawn once, for the bodies and the
baseline alike, so the pairing holds). It is seeded, so a report is reproducible. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
# What an interval supports: above zero, below zero, or neither.
ABOVE, BELOW, UNDECIDED = "above", "below", "undecided"


@dataclass(frozen=True)
class Interval:
    """A mean difference, its interval and the per-seed differences it came from."""

    mean: float
    low: float
    high: float
    per_seed: tuple[tuple[float, ...], ...]  # [pre-training seed][fine-tuning seed]

    @property
    def seeds(self) -> tuple[int, int]:
        """(pre-training seeds, fine-tuning seeds)."""
        return len(self.per_seed), len(self.per_seed[0])

    @property
    def verdict(self) -> str:
        """ABOVE or BELOW only where the whole interval lies on that side of zero, and only with two seeds or
        more on each axis: with one, the interval leaves out how much that seed alone moves the result."""
        if min(self.seeds) < 2:
            return UNDECIDED
        if self.low > 0:
            return ABOVE
        if self.high < 0:
            return BELOW
        return UNDECIDED


def differences(values: Mapping[tuple[int, int], float], baseline: Mapping, pretrain_seeds: Sequence[int],
                finetune_seeds: Sequence[int]) -> np.ndarray:
    """``values[(i, j)] - baseline[j]`` (or ``- baseline[(i, j)]`` where the baseline has pre-training seeds
    too, as another body does) as an array [pre-training seed, fine-tuning seed]."""
    def base(i: int, j: int) -> float:
        return baseline[(i, j)] if (i, j) in baseline else baseline[j]

    return np.array([[values[(i, j)] - base(i, j) for j in finetune_seeds] for i in pretrain_seeds], dtype=float)


def interval(diffs: np.ndarray | Sequence[np.ndarray], weights: Sequence[float] | None = None, *,
             confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Interval:
    """The mean and percentile-bootstrap interval of ``sum_s weights[s] * mean(diffs[s])``.

    ``diffs`` is one [pre-training seed, fine-tuning seed] array, or several of the same shape measured on
    the same runs' seeds (probe depths of the same bodies); each replicate resamples the seeds once for all of
    them. Default weights: the mean over them. ``weights`` (-1, 1) give the change from the first to the last.
    """
    stack = np.asarray(diffs, dtype=float)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3 or 0 in stack.shape:
        raise ValueError(f"expected [pre-training seed, fine-tuning seed] arrays, got shape {stack.shape}")
    w = np.full(len(stack), 1 / len(stack)) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (len(stack),):
        raise ValueError(f"{len(w)} weights for {len(stack)} arrays")
    n, m = stack.shape[1:]
    combined = np.tensordot(w, stack, axes=1)  # [n, m]: the statistic is linear, so combine first
    rng = np.random.default_rng(seed)
    rows = rng.integers(n, size=(resamples, n))
    cols = rng.integers(m, size=(resamples, m))
    means = combined[rows[:, :, None], cols[:, None, :]].mean(axis=(1, 2))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    per_seed = tuple(tuple(float(x) for x in row) for row in combined)
    return Interval(float(combined.mean()), float(low), float(high), per_seed)
