"""Checking and showing a rendered dataset: ``verify`` (shards, card, preview) and ``preview``; its manifest is
read in ``manifest``."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from .card import check_card
from .checks import number
from .durable import write_bytes
from .errors import FracbuildError
from .manifest import MANIFEST, PREVIEW, load_manifest, manifest_digest
from .progress import progress_bar
from .shards import decode_sample, file_sha256, read_shard, sample_key


def check_shard(path: Path, record: dict[str, Any], classes: int, size: int | None = None) -> list[str]:
    """Problems with one shard (an empty list if none): checksums, count, keys, decodability, labels."""
    name = record["file"]
    if not path.is_file():
        return [f"{name}: missing"]
    problems = []
    if path.stat().st_size != record["bytes"]:
        problems.append(f"{name}: {path.stat().st_size} bytes, manifest says {record['bytes']}")
    elif file_sha256(path) != record["sha256"]:
        problems.append(f"{name}: sha256 does not match the manifest")
    pixels = hashlib.sha256()
    count = 0
    first = record.get("first")
    try:
        for sample in read_shard(path):
            where = f"{name}: sample {sample['__key__']}"
            if first is not None and sample["__key__"] != sample_key(first + count):
                problems.append(f"{where}: expected key {sample_key(first + count)}")
            count += 1
            try:
                image, label, _ = decode_sample(sample)
            except (ValueError, OSError, SyntaxError) as e:
                problems.append(f"{where}: undecodable ({e})")
                continue
            if not 0 <= label < classes:
                problems.append(f"{where}: label {label} outside [0, {classes})")
            if size is not None and image.shape[:2] != (size, size):
                problems.append(f"{where}: image {image.shape}, expected ({size}, {size})")
            pixels.update(image.tobytes())
    except (tarfile.TarError, EOFError, OSError) as e:
        problems.append(f"{name}: unreadable tar after {count} samples ({e})")
    if count != record["samples"]:
        problems.append(f"{name}: {count} samples, manifest says {record['samples']}")
    elif "pixels_sha256" in record and pixels.hexdigest() != record["pixels_sha256"]:
        problems.append(f"{name}: decoded pixels do not match the manifest")
    return problems


def verify(out_dir: str | os.PathLike, deep: int = 0, progress: bool | None = False) -> list[str]:
    """Every problem found in a rendered dataset, one line each; an empty list means it is sound.

    ``deep`` > 0 also re-renders that many classes (spread over the dataset) from the manifest's
    recipe and compares their pixels with the stored images.
    """
    out_dir = Path(out_dir)
    manifest = load_manifest(out_dir)
    number("--deep (classes re-rendered)", deep, 0, manifest["classes"], integer=True)
    size = manifest.get("recipe", {}).get("render", {}).get("size")
    problems = []
    if "digest" in manifest and manifest["digest"] != manifest_digest(manifest):
        problems.append(f"{MANIFEST}: its contents do not match its digest (edited or damaged)")
    for record in progress_bar(manifest["shards"], progress=progress, desc="verify", unit="shard"):
        problems += check_shard(out_dir / record["file"], record, manifest["classes"], size)
    listed = {record["file"] for record in manifest["shards"]}
    problems += [f"{path.name}: a shard the manifest does not list" for path in sorted(out_dir.glob("*.tar"))
                 if path.name not in listed]
    counted = sum(r["samples"] for r in manifest["shards"])
    if counted != manifest["samples"]:
        problems.append(f"manifest: shards hold {counted} samples, total says {manifest['samples']}")
    problems += check_card(out_dir, manifest)
    problems += check_preview(out_dir / PREVIEW)
    if deep and not problems:
        problems += _rerender(out_dir, manifest, deep)
    return problems


def check_preview(path: Path) -> list[str]:
    """A problem if ``path`` is there but does not decode whole (none where a render made no preview)."""
    from PIL import Image

    if not path.exists():
        return []
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, ValueError, SyntaxError) as e:
        return [f"{path.name}: does not decode ({e}); run `fracbuild preview` or render again to rewrite it"]
    return []


def _rerender(out_dir: Path, manifest: dict, n: int) -> list[str]:
    from .recipe import counts
    from .sources import create_source

    recipe = manifest["recipe"]
    source = create_source(recipe)
    _, instances = counts(recipe)
    classes, images = _spread(out_dir, manifest, n, instances)
    problems = []
    for cls, stored in zip(classes, images, strict=True):
        image, _ = source.sample(cls, 0)
        if not np.array_equal(image, stored):
            problems.append(f"class {cls}: re-rendered pixels differ from the stored image")
    return problems


def _spread(out_dir: Path, manifest: dict, n: int, instances: int) -> tuple[list[int], list[np.ndarray]]:
    """``n`` classes spread evenly over the dataset, and the stored image of instance 0 of each."""
    classes = sorted({int(c) for c in np.linspace(0, manifest["classes"] - 1, min(n, manifest["classes"]))})
    return classes, images_of(out_dir, manifest, [c * instances for c in classes])


def images_of(out_dir: Path, manifest: dict, indices: list[int]) -> list[np.ndarray]:
    """Decoded images of the samples with these global indices (read shard by shard)."""
    wanted = {sample_key(i): i for i in indices}
    found: dict[int, np.ndarray] = {}
    for record in manifest["shards"]:
        first, n = record["first"], record["samples"]
        if any(first <= i < first + n for i in indices):
            for sample in read_shard(out_dir / record["file"]):
                if sample["__key__"] in wanted:
                    found[wanted[sample["__key__"]]] = decode_sample(sample)[0]
    return [found[i] for i in indices]


def preview(out_dir: str | os.PathLike, output: str | os.PathLike | None = None, n: int = 16,
            tile: int = 160, manifest: dict[str, Any] | None = None) -> Path:
    """A contact sheet of ``n`` classes spread over the dataset (instance 0 of each), as PNG.

    ``manifest``: the dataset's, when the caller has it already (it is read from ``out_dir`` otherwise).
    """
    from PIL import Image, ImageDraw

    out_dir = Path(out_dir)
    manifest = manifest or load_manifest(out_dir)
    if n < 1:
        raise FracbuildError(f"--n must be at least 1, got {n}")
    classes, images = _spread(out_dir, manifest, n, manifest.get("instances", 1))
    cols = int(np.ceil(np.sqrt(len(classes))))
    rows = int(np.ceil(len(classes) / cols))
    label = 14
    rgb = any(image.ndim == 3 for image in images)
    sheet = Image.new("RGB" if rgb else "L", (cols * tile, rows * (tile + label)), (40,) * 3 if rgb else 40)
    draw = ImageDraw.Draw(sheet)
    for k, (cls, image) in enumerate(zip(classes, images, strict=True)):
        x, y = (k % cols) * tile, (k // cols) * (tile + label)
        sheet.paste(Image.fromarray(image).resize((tile - 4, tile - 4), Image.Resampling.BOX), (x + 2, y + 2))
        draw.text((x + 4, y + tile), f"class {cls}", fill=(220,) * 3 if rgb else 220)
    output = Path(output) if output else out_dir / PREVIEW
    png = io.BytesIO()
    sheet.save(png, format="PNG")
    try:  # written aside and renamed in, as every other file: a full disk never leaves half a sheet
        write_bytes(output, png.getvalue())
    except OSError as e:
        raise FracbuildError(f"cannot write {output}: {e.strerror or e}") from None
    return output
