"""Progress bars: shown on a terminal by default (``progress=None``), or as asked."""

from __future__ import annotations

from typing import Any


def progress_bar(iterable: Any = None, *, progress: bool | None = None, **kwargs: Any):
    from tqdm.autonotebook import tqdm  # tqdm.auto adds asyncio support, and its import, unused here

    return tqdm(iterable, disable=None if progress is None else not progress, **kwargs)
