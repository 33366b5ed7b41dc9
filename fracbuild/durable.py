"""Files that survive a crash or a power loss whole: written aside, fsynced, then renamed in.

A rename alone is atomic for running processes, but after a power loss the file system may hold
the new name with data never written, or may have lost the rename itself. So the data is fsynced
before the rename, and the directory after it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO


def sync_dir(path: str | os.PathLike) -> None:
    """Make the entries of directory ``path`` (files created, renamed, removed) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary(path: Path) -> Path:
    """The hidden sibling that ``path`` is written to first (one per process)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def replace_synced(f: IO, tmp: Path, path: Path) -> None:
    """Rename ``tmp`` (open as ``f``, fully written) to ``path``, durably."""
    f.flush()
    os.fsync(f.fileno())
    os.replace(tmp, path)
    sync_dir(path.parent)


def named(error: BaseException, path: str | os.PathLike) -> BaseException:
    """``error``, an OSError with ``path`` as its file name where it named none (a write or fsync on a full disk
    does not): every write error names its file."""
    if isinstance(error, OSError) and not error.filename:
        return OSError(error.errno, error.strerror or str(error), str(path))
    return error


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` as a whole (``write_text``'s way)."""
    tmp = temporary(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            replace_synced(f, tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise named(e, path) from None
    return path


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` as a whole: a reader, or a crash, sees the old file or the new one."""
    # UTF-8 whatever the locale; a path in another encoding (undecodable bytes) is written escaped, not refused.
    return write_bytes(path, text.encode("utf-8", errors="backslashreplace"))
