"""Shard files: deterministic WebDataset tars written atomically, and read back for checks.

A shard holds the samples with global indices ``[first, first + samples)`` in order; each
sample is ``KEY.cls``, ``KEY.json``, ``KEY.png`` (contiguous, extensions sorted, as webdataset's
``TarWriter`` writes them) with KEY the zero-padded index. Entries are USTAR with a fixed mtime,
owner and mode, so the same samples give the same bytes. The tar is written with the standard
library rather than ``webdataset.TarWriter`` because importing webdataset imports torch, which
costs every render worker about a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .codec import decode_png, encode_png
from .durable import replace_synced, temporary
from .errors import FracbuildError

MTIME = 0
OWNER = "fracbuild"
MODE = 0o644
KEY_DIGITS = 9


def sample_key(index: int) -> str:
    return f"{index:0{KEY_DIGITS}d}"


def shard_name(name: str, shard: int) -> str:
    return f"{name}-{shard:06d}.tar"


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def matches(path: Path, record: dict[str, Any]) -> bool:
    """Whether ``path`` is the shard that ``record`` describes: its size and sha256."""
    return path.is_file() and path.stat().st_size == record.get("bytes") and file_sha256(path) == record.get("sha256")


class _HashingFile:
    """A write-only file wrapper that hashes and counts what passes through it."""

    def __init__(self, f):
        self.f = f
        self.sha = hashlib.sha256()
        self.bytes = 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.bytes += len(data)
        return self.f.write(data)


def encode_sample(image: np.ndarray, meta: dict[str, Any]) -> dict[str, bytes]:
    """The files of one sample, by extension, in the order they are written."""
    return {
        "cls": str(meta["class"]).encode(),
        "json": json.dumps(meta, sort_keys=True, separators=(",", ":")).encode(),
        "png": encode_png(image),
    }


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = MTIME
    info.mode = MODE
    info.uname = info.gname = OWNER
    tar.addfile(info, io.BytesIO(data))


def write_shard(path: Path, samples: Iterator[tuple[int, np.ndarray, dict]]) -> dict[str, Any]:
    """Write ``(index, image, meta)`` samples to ``path`` via a temporary file and a rename.

    Returns the shard's record: samples, bytes, sha256 of the file, and sha256 of the decoded
    pixels (which, unlike the PNG bytes, does not depend on the zlib build).
    """
    tmp = temporary(path)
    pixels = hashlib.sha256()
    count = 0
    try:
        with open(tmp, "wb") as f:
            out = _HashingFile(f)
            with tarfile.open(fileobj=out, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
                for index, image, meta in samples:
                    key = sample_key(index)
                    for ext, data in encode_sample(image, meta).items():
                        _add(tar, f"{key}.{ext}", data)
                    pixels.update(image.tobytes())
                    count += 1
            replace_synced(f, tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise FracbuildError(f"cannot write shard {path}: {e.strerror or e}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return {"file": path.name, "samples": count, "bytes": out.bytes, "sha256": out.sha.hexdigest(),
            "pixels_sha256": pixels.hexdigest()}


def read_shard(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Samples of a shard as dicts ``{"__key__", "png", "cls", "json"}`` of raw bytes, in order.

    Raises ``tarfile.ReadError`` (or ``EOFError``) on a damaged tar.
    """
    sample: dict[str, Any] = {}
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.partition(".")
            if sample and key != sample["__key__"]:
                yield sample
                sample = {}
            sample["__key__"] = key
            sample[ext] = tar.extractfile(member).read()
    if sample:
        yield sample


def decode_sample(sample: dict[str, Any]) -> tuple[np.ndarray, int, dict]:
    """Image, label and metadata of a raw sample; raises ``ValueError`` on anything malformed."""
    missing = {"png", "cls", "json"} - set(sample)
    if missing:
        raise ValueError(f"sample {sample.get('__key__')} lacks {', '.join(sorted(missing))}")
    return decode_png(sample["png"]), int(sample["cls"]), json.loads(sample["json"])
