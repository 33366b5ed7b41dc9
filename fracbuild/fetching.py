"""``fracbuild fetch``: download a rendered dataset from an HTTP(S) directory and verify it.

The remote ``manifest.json`` is the source of truth: every shard it lists is downloaded (resuming
a partial download with an HTTP Range request where the server supports one), checked against
its size and sha256, and only then given its name. ``manifest.json`` is written last, so a
directory with a manifest is a complete dataset.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .card import CARD
from .checks import check_out_path
from .durable import replace_synced
from .errors import FracbuildError
from .jsonfile import save_json
from .manifest import INFO, MANIFEST, PREVIEW, manifest_digest
from .progress import progress_bar
from .shards import matches

CHUNK = 1 << 20
TIMEOUT = 60
EXTRAS = (INFO, PREVIEW, CARD)  # copied when the server has them


def _open(url: str, offset: int = 0):
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        raise FracbuildError(f"cannot fetch {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise FracbuildError(f"cannot fetch {url}: {getattr(e, 'reason', None) or e}") from None


def _safe_name(name: Any) -> str:
    """A manifest names files inside the dataset directory, nothing else."""
    if not isinstance(name, str) or not name or name != Path(name).name or name.startswith("."):
        raise FracbuildError(f"manifest lists an unsafe file name {name!r}")
    return name


def read_remote_manifest(base: str) -> dict[str, Any]:
    with _open(base + MANIFEST) as response:
        try:
            manifest = json.loads(response.read())
        except ValueError:
            raise FracbuildError(f"{base}{MANIFEST} is not valid JSON") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), list):
        raise FracbuildError(f"{base}{MANIFEST} is not a fracbuild manifest (no shard list)")
    return manifest


def part_path(path: Path) -> Path:
    """Where ``path`` is downloaded to until it is verified."""
    return path.with_name(f".{path.name}.part")


def download(url: str, path: Path, size: int, sha256: str, bar) -> int:
    """Download ``url`` to ``path`` through ``.NAME.part``, resuming it; return bytes transferred."""
    part = part_path(path)
    offset = part.stat().st_size if part.exists() else 0
    if offset > size:
        part.unlink()
        offset = 0
    digest = hashlib.sha256()
    if offset:
        with open(part, "rb") as f:
            while block := f.read(CHUNK):
                digest.update(block)
    transferred = 0
    with _open(url, offset) as response:
        if offset and response.status != 206:  # the server ignored the Range: start over
            bar.update(-offset)
            offset, digest = 0, hashlib.sha256()
        with open(part, "ab" if offset else "wb") as f:
            while block := response.read(CHUNK):
                f.write(block)
                digest.update(block)
                transferred += len(block)
                bar.update(len(block))
    got = part.stat().st_size
    if got != size or digest.hexdigest() != sha256:
        part.unlink()
        what = f"{got} bytes, manifest says {size}" if got != size else "sha256 does not match the manifest"
        raise FracbuildError(f"{path.name}: {what}; the download was discarded")
    with open(part, "rb") as f:  # checked: now durable, then in place (durable.replace_synced)
        replace_synced(f, part, path)
    return transferred


def fetch(url: str, out_dir: str | os.PathLike, *, progress: bool | None = None) -> dict[str, Any]:
    """Download the dataset at ``url`` (a directory holding ``manifest.json``) into ``out_dir``.

    Shards already present with the right sha256 are kept, partial downloads are resumed, and
    any shard whose bytes do not match the manifest is an error naming it. Returns the manifest,
    with ``run`` stats (bytes transferred, shards kept).
    """
    if not url.startswith(("http://", "https://")):
        raise FracbuildError(f"fetch needs an http(s):// URL, got {url!r}")
    base = url if url.endswith("/") else url + "/"
    out_dir = Path(check_out_path("the output directory (-o)", out_dir))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FracbuildError(f"cannot create {out_dir}: {e.strerror or e}") from None
    manifest = read_remote_manifest(base)
    shards = manifest["shards"]
    names = [_safe_name(s.get("file")) for s in shards]
    if "digest" in manifest and manifest["digest"] != manifest_digest(manifest):
        raise FracbuildError(f"{base}{MANIFEST} does not match its digest: damaged on the server or on the way")
    todo, kept = [], 0
    for name, record in zip(names, shards, strict=True):
        if matches(out_dir / name, record):
            kept += 1
        else:
            todo.append((name, record))
    total = sum(r["bytes"] for _, r in todo)
    parts = [part_path(out_dir / name) for name, _ in todo]
    resumed = sum(p.stat().st_size for p in parts if p.exists())
    transferred = 0
    try:
        with progress_bar(total=total, initial=resumed, unit="B", unit_scale=True, desc="fetch",
                          progress=progress) as bar:
            for name, record in todo:
                transferred += download(base + name, out_dir / name, record["bytes"], record["sha256"], bar)
    except OSError as e:
        raise FracbuildError(f"cannot write to {out_dir}: {e.strerror or e}") from None
    for name in EXTRAS:
        with contextlib.suppress(FracbuildError), _open(base + name) as response:
            (out_dir / name).write_bytes(response.read())
    save_json(manifest, out_dir / MANIFEST, force=True)
    return {**manifest, "run": {"transferred": transferred, "downloaded": len(todo), "kept": kept}}
