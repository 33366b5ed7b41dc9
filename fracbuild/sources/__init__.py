"""Sources of images. A source turns ``(class, instance)`` into an image and its metadata.

The render pipeline (shards, manifest, parallelism, resume, verify) only ever calls
``create_source(recipe).sample(cls, instance)``; a new kind of image is one module here.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Source(Protocol):
    def sample(self, cls: int, instance: int) -> tuple[np.ndarray, dict[str, Any]]:
        """The ``size x size`` uint8 image of one sample and its JSON-able metadata."""
        ...


def create_source(recipe: dict[str, Any]) -> Source:
    """The source a (validated) recipe names."""
    from .fractal import FractalSource

    return FractalSource(recipe)
