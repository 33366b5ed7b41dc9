"""What ``--data`` names: a rendered dataset directory, a brace pattern of shards, or a dataset URL.

Every form resolves to a ``ShardList``: the shard URLs plus the sample and class counts when a
``manifest.json`` gives them. Remote manifests and shards are read with urllib, so streaming over
HTTP needs no external tool and no download of the dataset first. A dataset repository on the Hugging
Face Hub, ``hf://datasets/OWNER/NAME[@REVISION]``, is the URL of its files (``$HF_ENDPOINT``, default
https://huggingface.co, ``/datasets/OWNER/NAME/resolve/REVISION/``).
"""

from __future__ import annotations

import json
import os
import posixpath
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import braceexpand

from ..errors import TrainerError
from .shards import TIMEOUT, is_url

MANIFEST = "manifest.json"
HUB = "hf://datasets/"


@dataclass(frozen=True)
class ShardList:
    """Shards to read and what is known about them (``None`` where nothing says)."""

    urls: tuple[str, ...]
    samples: int | None
    classes: int | None
    name: str
    # How the images were drawn, where the manifest's recipe says (its "render" section: size, draw, ...).
    render: dict | None = None
    # Each shard's (samples, sha256) from the manifest, by URL; empty where no manifest lists the shards.
    records: tuple[tuple[str, int, str], ...] = ()

    def record(self, url: str) -> tuple[int | None, str | None]:
        """``(samples, sha256)`` that the manifest records for ``url``; ``(None, None)`` where it says nothing."""
        for u, samples, sha256 in self.records:
            if u == url:
                return samples, sha256
        return None, None


def _fetch_json(url: str) -> dict | None:
    """The JSON at a URL, or None if the server says it is not there."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise TrainerError(f"cannot read {url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise TrainerError(f"cannot reach {url}: {e.reason}") from None
    except (OSError, ValueError) as e:
        raise TrainerError(f"cannot read {url}: {e}") from None


def _read_manifest(location: str) -> dict | None:
    """The manifest in a directory or at a URL prefix; None if there is none."""
    if is_url(location):
        manifest = _fetch_json(location.rstrip("/") + "/" + MANIFEST)
    else:
        path = Path(location) / MANIFEST
        if not path.is_file():
            return None
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise TrainerError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    if manifest is None:
        return None
    where = location.rstrip("/") + "/" + MANIFEST
    if not isinstance(manifest, dict) or not {"samples", "classes", "shards"} <= set(manifest):
        raise TrainerError(f"{where} is not a dataset manifest (needs samples, classes, shards)")
    try:
        for i, shard in enumerate(manifest["shards"]):
            str(shard["file"]), int(shard["samples"])
            # What is read is checked against it, as ``fracbuild verify`` checks it: no digest, no check.
            if not isinstance(shard.get("sha256"), str):
                raise TrainerError(f"{where}: shard record {i} has no sha256 (re-render, or fracbuild verify it)")
        int(manifest["classes"])
    except (TypeError, KeyError, ValueError, AttributeError):
        raise TrainerError(f"{where}: malformed shard list (each shard needs file, samples and sha256)") from None
    return manifest


def _check_local(urls: list[str], origin: str) -> None:
    missing = [u for u in urls if not is_url(u) and not os.path.isfile(u)]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise TrainerError(f"{origin}: shard {missing[0]} is missing{more}")


def _scan(urls: list[str]) -> tuple[int, int]:
    """Samples and classes (largest ``cls`` + 1) of local shards that have no manifest."""
    samples, top = 0, -1
    for url in urls:
        try:
            with tarfile.open(url, "r:") as tar:
                for member in tar:
                    if member.name.endswith(".cls"):
                        samples += 1
                        top = max(top, int(tar.extractfile(member).read()))
        except (tarfile.TarError, OSError, ValueError) as e:
            raise TrainerError(f"cannot read shard {url}: {e}") from None
    if samples == 0:
        raise TrainerError(f"no samples with a .cls label in {urls[0]}{' ...' if len(urls) > 1 else ''}")
    return samples, top + 1


def _from_manifest(base: str, manifest: dict, files: list[str] | None = None) -> ShardList:
    shards = manifest["shards"]
    if files is not None:  # a pattern picked some of the manifest's shards
        wanted = set(files)
        shards = [s for s in shards if s["file"] in wanted]
    join = (lambda f: base.rstrip("/") + "/" + f) if is_url(base) else (lambda f: str(Path(base) / f))
    urls = [join(s["file"]) for s in shards]
    recipe = manifest.get("recipe")
    render = recipe.get("render") if isinstance(recipe, dict) and isinstance(recipe.get("render"), dict) else None
    records = tuple((u, int(s["samples"]), s["sha256"]) for u, s in zip(urls, shards, strict=True))
    return ShardList(tuple(urls), sum(int(s["samples"]) for s in shards), int(manifest["classes"]),
                     str(manifest.get("name", Path(base.rstrip("/")).name)), render, records)


def hub_url(data: str) -> str:
    """The URL of the files of ``hf://datasets/OWNER/NAME[@REVISION][/PATH]`` (the repository's main branch
    unless a revision is given); any other text as it is."""
    if not data.startswith("hf://"):
        return data
    parts = data[len(HUB):].split("/") if data.startswith(HUB) else []
    if len(parts) < 2 or not all(parts[:2]):
        raise TrainerError(f"{data}: expected hf://datasets/OWNER/NAME[@REVISION] (a dataset repository)")
    name, _, revision = parts[1].partition("@")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    rest = "/".join(parts[2:])
    return f"{endpoint}/datasets/{parts[0]}/{name}/resolve/{revision or 'main'}/{rest}"


def resolve_data(data: str) -> ShardList:
    """Resolve ``--data``: a dataset directory, a shard pattern (local or URL), a dataset URL, or a Hub dataset."""
    data = hub_url(str(data))
    if not data:
        raise TrainerError("--data is empty")
    if not is_url(data) and Path(data).is_dir():
        return _from_directory(data)
    if ".tar" in data or "{" in data:
        urls = list(braceexpand.braceexpand(data))
        base = posixpath.dirname(urls[0]) if is_url(urls[0]) else os.path.dirname(urls[0]) or "."
        names = [posixpath.basename(u) for u in urls]
        if not is_url(data):
            _check_local(urls, data)
        manifest = _read_manifest(base)
        if manifest is not None and set(names) <= {s["file"] for s in manifest["shards"]}:
            return _from_manifest(base, manifest, names)
        if is_url(data):  # remote shards with no manifest: counts are unknown until read
            return ShardList(tuple(urls), None, None, Path(names[0]).stem.rsplit("-", 1)[0])
        samples, classes = _scan(urls)
        return ShardList(tuple(urls), samples, classes, Path(names[0]).stem.rsplit("-", 1)[0])
    if is_url(data):
        manifest = _read_manifest(data)
        if manifest is None:
            raise TrainerError(f"no {MANIFEST} at {data.rstrip('/')}/ (give a shard pattern instead)")
        return _from_manifest(data, manifest)
    if not Path(data).exists():
        raise TrainerError(f"{data} does not exist")
    raise TrainerError(f"{data} is neither a dataset directory nor a .tar shard pattern")


def _from_directory(data: str) -> ShardList:
    manifest = _read_manifest(data)
    if manifest is None:
        raise TrainerError(f"{data} has no {MANIFEST}: not a rendered dataset (or an unfinished render)")
    source = _from_manifest(data, manifest)
    if not source.urls:
        raise TrainerError(f"{data}/{MANIFEST} lists no shards")
    _check_local(list(source.urls), data)
    return source
