"""The manifest of a rendered dataset, written and read here: ``manifest.json`` (the effective recipe, the shard
records, the versions, the totals and a digest of them all), timm's ``_info.json`` beside it, and ``info``, the
summary ``fracbuild info`` prints of it."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zlib
from pathlib import Path
from typing import Any

from .errors import FracbuildError
from .jsonfile import save_json
from .recipe import counts

# The files of a rendered dataset directory besides its shards.
MANIFEST = "manifest.json"
INFO = "_info.json"
PREVIEW = "preview.png"
FORMAT = "fracbuild-dataset/1"


def versions() -> dict[str, str]:
    """Versions that decide the output bytes (read from metadata: importing webdataset costs a second).

    A package without metadata (fracbuild run from a source tree) is recorded as "unknown": the
    manifest is written last, and a missing version must not throw the rendered shards away.
    """
    from importlib.metadata import PackageNotFoundError, version

    def of(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    packages = {name: of(name) or "unknown" for name in ("fracbuild", "numpy", "numba", "pillow", "webdataset")}
    # The image source's resampling, when installed.
    packages.update({name: found for name in ("scikit-image", "scipy") if (found := of(name))})
    return {**packages, "python": sys.version.split()[0], "zlib": zlib.ZLIB_RUNTIME_VERSION}


def write_dataset_files(out_dir: Path, recipe: dict, records: list[dict]) -> dict[str, Any]:
    """``manifest.json`` and timm's ``_info.json`` for a complete set of shard records."""
    shards = [{k: r[k] for k in ("file", "first", "samples", "bytes", "sha256", "pixels_sha256", "redraws")}
              for r in records]
    classes, instances = counts(recipe)
    manifest = {
        "format": FORMAT,
        "name": recipe["name"],
        "classes": classes,
        "instances": instances,
        "samples": sum(r["samples"] for r in shards),
        "bytes": sum(r["bytes"] for r in shards),
        "redraws": sum(r["redraws"] for r in shards),
        "shard_size": recipe["render"]["shard_size"],
        "recipe": recipe,
        "shards": shards,
        "versions": versions(),
    }
    manifest["digest"] = manifest_digest(manifest)
    info = {
        "name": recipe["name"],
        "num_classes": manifest["classes"],
        "splits": {"train": {"name": "train", "num_samples": manifest["samples"],
                             "filenames": [r["file"] for r in shards],
                             "shard_lengths": [r["samples"] for r in shards]}},
    }
    save_json(info, out_dir / INFO, force=True)
    save_json(manifest, out_dir / MANIFEST, force=True)
    return manifest


def load_manifest(out_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(out_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise FracbuildError(f"{out_dir} has no {MANIFEST}: not a rendered dataset (or an unfinished render)") from None
    except (OSError, ValueError) as e:
        raise FracbuildError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    if not isinstance(manifest, dict) or not {"samples", "classes", "shards"} <= set(manifest):
        raise FracbuildError(f"{path} is not a fracbuild manifest (needs samples, classes, shards)")
    fields = {"file": str, "samples": int, "bytes": int, "sha256": str}
    shards = manifest["shards"] if isinstance(manifest["shards"], list) else [None]
    for i, record in enumerate(shards):
        if not (isinstance(record, dict) and all(isinstance(record.get(k), t) for k, t in fields.items())):
            raise FracbuildError(f"{path}: shard record {i} is malformed (needs file, samples, bytes, sha256)")
    if not all(isinstance(manifest[k], int) for k in ("samples", "classes")):
        raise FracbuildError(f"{path}: samples and classes must be integers")
    return manifest


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of a manifest's keys other than ``digest``, as sorted compact JSON: a changed byte in
    the recipe or the versions, which no shard check reads, is caught too."""
    rest = {k: v for k, v in manifest.items() if k != "digest"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def info(out_dir: str | os.PathLike) -> str:
    """A short human-readable summary of a rendered dataset; its source module describes its settings."""
    from .sources import DEFAULT_SOURCE, SOURCES, source_module
    from .sources.common import settings_lines

    m = load_manifest(out_dir)
    r = m.get("recipe", {})
    source = r.get("source", DEFAULT_SOURCE)
    # A source this version does not know (a newer fracbuild's dataset): its settings as spelt.
    settings = source_module(source).summary(m) if source in SOURCES else settings_lines(r)
    return "\n".join([
        f"{m.get('name')}: {m['samples']} samples, {m['classes']} classes x {m.get('instances', 1)} instances, "
        f"{len(m['shards'])} shards, {m.get('bytes', 0) / 1e6:.1f} MB",
        f"  source: {source}",
        *settings,
        "  versions: " + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()),
    ])
