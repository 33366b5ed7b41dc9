"""How well a stream of batches mixes a dataset: the statistics every input path must pass.

``batch_mixing_stats`` takes the sample ids of each batch (in order; for a dataset whose labels are
its sample ids, the batches' labels) and says how many distinct samples each batch holds, how
uniform the residues of the ids are in each batch, and how many distinct samples each pass holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy.stats import chisquare


def batch_mixing_stats(batches: Iterable[Sequence[int]], *, num_samples: int, pass_size: int | None = None,
                       moduli: Sequence[int] = (4, 8)) -> dict[str, Any]:
    """Mixing statistics of ``batches`` (sample ids in ``[0, num_samples)``, one sequence per batch).

    ``distinct``: distinct ids in each batch. ``residue_p``: modulus -> the smallest, over batches, of
    the chi-square p-value of "the ids' residues are uniform" (1: uniform; near 0: a batch holds a
    few residues only). ``pass_distinct``: distinct ids in each complete run of ``pass_size``
    consecutive samples (default ``num_samples``): equal to ``pass_size`` when no sample repeats
    within a pass. ``out_of_range``: ids outside ``[0, num_samples)``.
    """
    batches = [np.asarray(list(b), dtype=np.int64) for b in batches]
    stream = np.concatenate(batches) if batches else np.zeros(0, np.int64)
    size = pass_size or num_samples
    residue_p = {}
    for m in moduli:
        pvalues = [chisquare(np.bincount(b % m, minlength=m)).pvalue for b in batches if len(b)]
        residue_p[m] = float(min(pvalues)) if pvalues else 1.0
    return {
        "distinct": [len(set(b.tolist())) for b in batches],
        "residue_p": residue_p,
        "pass_distinct": [len(set(stream[i:i + size].tolist())) for i in range(0, len(stream) - size + 1, size)],
        "out_of_range": int(((stream < 0) | (stream >= num_samples)).sum()),
    }
