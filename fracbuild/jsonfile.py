"""JSON files: written atomically, refusing to overwrite unless asked, compactly indented."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .durable import write_text
from .errors import FracbuildError


def check_output(path: str | os.PathLike, force: bool = False) -> Path:
    """Refuse an existing file (without ``force``) or a directory before any work is done."""
    path = Path(path)
    if path.is_dir():
        raise FracbuildError(f"{path} is a directory")
    if path.exists() and not force:
        raise FracbuildError(f"{path} exists; pass --force to overwrite it")
    return path


def save_json(obj: Any, path: str | os.PathLike, force: bool = False) -> Path:
    """Write JSON atomically and durably (temporary file, fsync, rename): a reader, or a crash,
    never leaves half a file."""
    path = check_output(path, force)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, to_json(obj) + "\n")
    except OSError as e:
        raise FracbuildError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def to_json(obj: Any, indent: int = 2, level: int = 0) -> str:
    """JSON indented like ``json.dumps(obj, indent=2)``, except that a list holding no objects or
    lists (a map's six parameters, a shard's fields) stays on one line: a recipe of 1000
    FractalDB categories is a few thousand lines instead of fifty thousand."""
    inner = " " * (indent * (level + 1))
    if isinstance(obj, dict) and obj:
        items = [f"{inner}{json.dumps(str(k))}: {to_json(v, indent, level + 1)}" for k, v in obj.items()]
    elif isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        items = [inner + to_json(v, indent, level + 1) for v in obj]
    else:
        return json.dumps(obj, separators=(", ", ": "))
    brackets = "{}" if isinstance(obj, dict) else "[]"
    return brackets[0] + "\n" + ",\n".join(items) + "\n" + " " * (indent * level) + brackets[1]
