"""``fracbuild.render``: a recipe's samples as WebDataset shards, in parallel, resumable.

joblib runs whole shards (``render_shard``) in parallel; each worker renders its samples and
writes its own shard, so memory stays flat whatever the number of classes. The main process
appends each finished shard's record to a journal, so an interrupted render resumes where it
stopped; ``manifest.json`` is written once every shard is in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .backends import exit_with_parent, parallel_backend
from .card import CARD, write_card
from .checks import check_jobs, check_out_path
from .dataset import INFO, MANIFEST, PREVIEW, manifest_digest
from .dataset import preview as make_preview
from .durable import named, sync_dir
from .errors import FracbuildError
from .jsonfile import save_json
from .progress import progress_bar
from .recipe import counts, load_recipe, validate_recipe
from .settings import OVERRIDES, RENDER, takes_settings
from .shards import matches, shard_name, write_shard
from .sources import DEFAULT_SOURCE, create_source

JOURNAL = ".journal.jsonl"
FORMAT = "fracbuild-dataset/1"

def effective_recipe(recipe: dict | str | os.PathLike, **overrides: Any) -> dict[str, Any]:
    """The recipe with every non-None override applied, validated."""
    recipe = load_recipe(recipe) if isinstance(recipe, (str, os.PathLike)) else validate_recipe(recipe)
    recipe = json.loads(json.dumps(recipe))  # a deep copy
    for option, value in overrides.items():
        if value is not None:
            section, key = OVERRIDES[option]
            recipe[section][key] = value
    return validate_recipe(recipe)


# Peak memory of one render worker, measured with every source (ru_maxrss, one shard of two samples):
# 61-78 MB with tiny images; 40-48 bytes per chaos-game point (FractalDB keeps up to 25 traced systems,
# 8 bytes per point each); 4-10 bytes per pixel for fractals, 27 for noise, 67-84 for warped images.
# The bounds below round these up, so that a size that cannot fit fails before any work, in one line.
WORKER_BYTES = 128 << 20
POINT_BYTES = 256
PIXEL_BYTES = 128
SHARD_BYTES = 2048  # a shard's plan, record and manifest entry in the main process


def memory_bytes() -> int:
    """This machine's memory (or its cgroup's limit, if lower)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with contextlib.suppress(OSError, ValueError):
        total = min(total, int(Path("/sys/fs/cgroup/memory.max").read_text()))
    return total


def check_memory(recipe: dict[str, Any], jobs: int) -> None:
    """Refuse sizes that cannot fit in this machine's memory, with ``jobs`` local workers (-1: all cores)."""
    render = recipe["render"]
    classes, instances = counts(recipe)
    shards = -(-classes * instances // render["shard_size"])
    memory = memory_bytes()

    def gb(n: int) -> str:
        return f"{n / 2**30:,.1f} GB"

    if shards * SHARD_BYTES > memory:
        raise FracbuildError(f"{classes * instances:,} samples in {shards:,} shards need about "
                             f"{gb(shards * SHARD_BYTES)} to track; this machine has {gb(memory)} "
                             "(render fewer samples or raise render.shard_size)")
    worker = WORKER_BYTES + POINT_BYTES * render.get("points", 0) + PIXEL_BYTES * render["size"] ** 2
    if worker > memory:
        what = f"render.points {render['points']:,} and " if "points" in render else ""
        raise FracbuildError(f"{what}render.size {render['size']:,} need about {gb(worker)} per worker; this "
                             f"machine has {gb(memory)}")
    workers = jobs if jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + jobs)  # all start, whatever the shards
    if workers * worker > memory:
        raise FracbuildError(f"{workers:,} workers need about {gb(workers * worker)}; this machine has "
                             f"{gb(memory)}: use --jobs {max(1, memory // worker)} or fewer")


def shard_plan(recipe: dict[str, Any]) -> list[tuple[int, int, int]]:
    """``(shard, first index, samples)`` for every shard, in order."""
    classes, instances = counts(recipe)
    total = classes * instances
    size = recipe["render"]["shard_size"]
    return [(s, first, min(size, total - first)) for s, first in enumerate(range(0, total, size))]


# The process that called render(): its shard tasks run in this process only on the threading backend.
_render_pid: int | None = None


def render_shard(recipe: dict[str, Any], out_dir: str, shard: int, first: int, count: int) -> dict[str, Any]:
    """Render samples ``[first, first + count)`` and write them as shard number ``shard``."""
    if os.getpid() != _render_pid:  # a worker process (loky, dask, ray), not a thread of render()
        exit_with_parent()
    source = create_source(recipe)
    _, instances = counts(recipe)
    redraws = 0

    def samples():
        nonlocal redraws
        for index in range(first, first + count):
            cls, instance = divmod(index, instances)
            image, meta = source.sample(cls, instance)
            if instance == 0:  # a class's redraws are counted once, with its first instance
                redraws += meta.get("redraws", 0)
            yield index, image, meta

    record = write_shard(Path(out_dir) / shard_name(recipe["name"], shard), samples())
    return {"shard": shard, "first": first, **record, "redraws": redraws}


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


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            keys += _diff(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            keys.append(prefix + k)
    return keys


def _listing(names: list[str], most: int = 6) -> str:
    """Every name, or the first ``most - 1`` and how many more."""
    if len(names) <= most:
        return ", ".join(names)
    return f"{', '.join(names[:most - 1])} and {len(names) - most + 1} more"


def _previous(out_dir: Path) -> tuple[dict | None, list[dict]]:
    """The recipe and shard records a previous render left in ``out_dir`` (manifest or journal)."""
    manifest = out_dir / MANIFEST
    if manifest.exists():
        with contextlib.suppress(OSError, ValueError, KeyError):
            data = json.loads(manifest.read_text())
            return data["recipe"], data["shards"]
    journal = out_dir / JOURNAL
    if journal.exists():
        with contextlib.suppress(OSError, ValueError, KeyError):
            lines = journal.read_text().splitlines()
            records = []
            for line in lines[1:]:
                with contextlib.suppress(ValueError):  # a line cut short by a kill
                    records.append(json.loads(line))
            return json.loads(lines[0])["recipe"], records
    return None, []


def _remove_previous(out_dir: Path, recipe: dict | None, records: list[dict]) -> None:
    names = {r.get("file") for r in records if isinstance(r.get("file"), str)}
    if recipe:
        names |= {shard_name(recipe["name"], s) for s, _, _ in shard_plan(recipe)}
    for name in [*names, MANIFEST, INFO, PREVIEW, JOURNAL]:
        with contextlib.suppress(OSError):
            (out_dir / Path(name).name).unlink()


def _reusable(out_dir: Path, recipe: dict, records: list[dict]) -> dict[int, dict]:
    """Shards already on disk whose bytes still match their record."""
    plan = {shard_name(recipe["name"], s): (s, first, n) for s, first, n in shard_plan(recipe)}
    kept = {}
    for r in records:
        spec = plan.get(r.get("file"))
        path = out_dir / str(r.get("file"))
        if spec is not None and r.get("first") == spec[1] and r.get("samples") == spec[2] and matches(path, r):
            kept[spec[0]] = {**r, "shard": spec[0]}
    return kept


@contextlib.contextmanager
def rendering_alone(out_dir: Path) -> Iterator[None]:
    """Create ``out_dir`` and hold an exclusive lock on it for the block: a second render into it
    is refused before it reads or removes anything there.

    The lock is ``flock`` on the directory itself, so a killed render leaves no lock file behind
    (the kernel drops the lock with the process). Where the file system cannot lock (some network
    mounts), the render goes on unlocked, as it did before there was a lock.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise FracbuildError(f"{out_dir} is not a directory")
    while True:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FracbuildError(f"cannot create {out_dir}: {e.strerror or e}") from None
        try:
            fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:  # removed meanwhile by a render that failed before its first shard
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FracbuildError(f"{out_dir} is being rendered by another process; wait for it or render "
                                 "elsewhere") from None
        except OSError:
            pass  # no locks here
        # The directory locked may have been removed (and made again) between mkdir and open.
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(fd), os.stat(out_dir)):
                break
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)  # releases the lock


def prepare_out_dir(out_dir: Path, recipe: dict, force: bool) -> dict[int, dict]:
    """In ``out_dir`` (which exists), refuse another recipe's dataset (unless ``force``), clean
    temporary files, and return the records of shards that can be kept."""
    old_recipe, records = _previous(out_dir)
    if isinstance(old_recipe, dict) and "source" not in old_recipe:  # rendered before recipes named it
        old_recipe = {**old_recipe, "source": DEFAULT_SOURCE}
    if old_recipe is not None and old_recipe != recipe:
        if not force:
            changed = _listing(_diff(old_recipe, recipe)) or "its settings"
            raise FracbuildError(
                f"{out_dir} holds a dataset from another recipe (differs in {changed}); pass --force to replace it"
            )
        _remove_previous(out_dir, old_recipe, records)
        records = []
    _remove_temporary(out_dir, recipe)
    return _reusable(out_dir, recipe, records)


def _remove_temporary(out_dir: Path, recipe: dict) -> None:
    """Partial shards left by an interrupted or killed worker, and partial dataset files left by a
    render killed while it wrote them."""
    for pattern in (f"{recipe['name']}-*.tar", MANIFEST, INFO, CARD):
        for tmp in out_dir.glob(f".{pattern}.*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()


@contextlib.contextmanager
def _failing_cleanly(out_dir: Path, recipe: dict, created: bool, done: dict) -> Iterator[None]:
    """A render that fails leaves no partial shard of the workers it stopped, and a worker's death
    (a kill, the kernel's OOM killer) is one line. One that fails before its first shard (a backend
    that cannot start, say) leaves no lone journal either, nor the directory it made; one that kept
    or rendered shards keeps its journal, to resume from."""
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    try:
        yield
    except BaseException as e:
        _remove_temporary(out_dir, recipe)
        if not done:
            with contextlib.suppress(OSError):
                (out_dir / JOURNAL).unlink()
                if created:
                    out_dir.rmdir()
        if isinstance(e, TerminatedWorkerError):
            raise FracbuildError(f"a render worker died (killed, or out of memory); finished shards are kept in "
                                 f"{out_dir}: run the same command to resume") from None
        raise


def _open_journal(out_dir: Path):
    try:
        return open(out_dir / JOURNAL, "w")  # noqa: SIM115 (closed by the caller's with)
    except OSError as e:
        raise FracbuildError(f"cannot write to {out_dir}: {e.strerror or e}") from None


def _append(journal, *records: dict) -> None:
    """Append lines to the journal and make them durable: a resumed render trusts what it reads there."""
    try:
        journal.write("".join(json.dumps(r) + "\n" for r in records))
        journal.flush()
        os.fsync(journal.fileno())
    except OSError as e:
        raise named(e, journal.name) from None


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


@takes_settings(RENDER)
def render(
    recipe: dict | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    force: bool = False,
    preview: bool = True,
    progress: bool | None = None,
    command: list[str] | str | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Render ``recipe`` (a dict or a path) to shards in ``out_dir`` and return the manifest.

    The options of ``settings.RENDER`` that name a recipe key override the recipe's values. Shards already in
    ``out_dir`` from the same recipe whose checksums still match are kept; only missing or damaged ones are
    rendered. ``jobs`` is the number of worker processes (-1: all cores); ``backend`` runs the shard tasks on
    joblib's ``loky`` or ``threading`` backend or on a ``dask`` or ``ray`` cluster (at ``address``, or a local
    one); neither changes the output. The progress bar shows on a
    terminal (``progress=None``) or as asked. ``command``: the command line the dataset card records.
    """
    from joblib import delayed

    global _render_pid
    _render_pid = os.getpid()
    recipe = effective_recipe(recipe, **{name: settings[name] for name in OVERRIDES})
    jobs, backend, address = settings["jobs"], settings["backend"], settings["address"]
    check_out_path("the output directory (-o)", out_dir)
    check_jobs(jobs)
    if address is None:  # local workers: this machine's memory bounds them
        check_memory(recipe, jobs)
    if recipe["perturb"].get("delta") == 0:
        warnings.warn("delta is 0: every class is the same image", stacklevel=2)
    out_dir = Path(out_dir).resolve()  # workers may run elsewhere, on shared storage
    created = not out_dir.exists()
    with rendering_alone(out_dir):
        done = prepare_out_dir(out_dir, recipe, force)
        plan = shard_plan(recipe)
        todo = [spec for spec in plan if spec[0] not in done]
        total = sum(n for _, _, n in plan)
        start = time.perf_counter()
        if todo:
            journal = _open_journal(out_dir)
            bar = progress_bar(total=total, initial=total - sum(n for _, _, n in todo), unit="img",
                               desc=f"render {recipe['name']}", progress=progress, smoothing=0)
            with journal, _failing_cleanly(out_dir, recipe, created, done), bar:
                _append(journal, {"recipe": recipe}, *done.values())
                sync_dir(out_dir)  # the journal's own entry, before anything it records
                tasks = (delayed(render_shard)(recipe, str(out_dir), *spec) for spec in todo)
                with parallel_backend(backend, address, jobs) as run:
                    for record in run(tasks):
                        done[record["shard"]] = record
                        _append(journal, record)
                        bar.update(record["samples"])
        seconds = time.perf_counter() - start
        manifest = write_dataset_files(out_dir, recipe, [done[s] for s, _, _ in plan])
        _remove_temporary(out_dir, recipe)  # a worker that died mid-shard leaves one; its task ran again
        with contextlib.suppress(OSError):
            (out_dir / JOURNAL).unlink()
        if preview:
            make_preview(out_dir, out_dir / PREVIEW, manifest=manifest)
        if write_card(out_dir, manifest, command=command, preview=preview) is None:
            warnings.warn(f"{out_dir / CARD} is not a fracbuild dataset card: left as it is, no card written",
                          stacklevel=2)
        rendered = sum(n for _, _, n in todo)
        manifest_stats = {"rendered": rendered, "kept": total - rendered, "seconds": seconds,
                          "images_per_second": rendered / seconds if rendered and seconds > 0 else 0.0}
        return {**manifest, "run": manifest_stats}
