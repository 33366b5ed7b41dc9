"""The run directory of a render: its lock, its journal and what a resumed render keeps.

A render holds an exclusive lock on ``OUT_DIR`` (``rendering_alone``), refuses another recipe's dataset there
and keeps the shards whose bytes still match their record (``prepare_out_dir``), appends each finished shard's
record to a journal that it makes durable (``open_journal``, ``append``), and on failure leaves no partial
shard behind (``failing_cleanly``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from .card import CARD
from .durable import named
from .errors import FracbuildError
from .manifest import INFO, MANIFEST, PREVIEW
from .recipe import shard_plan
from .shards import matches, shard_name
from .sources import DEFAULT_SOURCE

JOURNAL = ".journal.jsonl"


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
def failing_cleanly(out_dir: Path, recipe: dict, created: bool, done: dict) -> Iterator[None]:
    """A render that fails leaves no partial shard of the workers it stopped, and a worker's death
    (a kill, the kernel's OOM killer) is one line. One that fails before its first shard (a backend
    that cannot start, say) leaves no lone journal either, nor the directory it made; one that kept
    or rendered shards keeps its journal, to resume from."""
    from .forked import WorkerDied

    try:
        yield
    except BaseException as e:
        # loky's error, where loky ran (importing it costs the renders that do not use it a few tenths of a second)
        loky = sys.modules.get("joblib.externals.loky.process_executor")
        died = (WorkerDied, loky.TerminatedWorkerError) if loky else (WorkerDied,)
        _remove_temporary(out_dir, recipe)
        if not done:
            with contextlib.suppress(OSError):
                (out_dir / JOURNAL).unlink()
                if created:
                    out_dir.rmdir()
        if isinstance(e, died):
            raise FracbuildError(f"a render worker died (killed, or out of memory); finished shards are kept in "
                                 f"{out_dir}: run the same command to resume") from None
        raise


def open_journal(out_dir: Path):
    try:
        return open(out_dir / JOURNAL, "w")  # noqa: SIM115 (closed by the caller's with)
    except OSError as e:
        raise FracbuildError(f"cannot write to {out_dir}: {e.strerror or e}") from None


def append(journal, *records: dict) -> None:
    """Append lines to the journal and make them durable: a resumed render trusts what it reads there."""
    try:
        journal.write("".join(json.dumps(r) + "\n" for r in records))
        journal.flush()
        os.fsync(journal.fileno())
    except OSError as e:
        raise named(e, journal.name) from None


def finish(out_dir: Path, recipe: dict) -> None:
    """Once the dataset files are written: the journal and any partial shard go (a worker that died mid-shard
    leaves one; its task ran again)."""
    _remove_temporary(out_dir, recipe)
    with contextlib.suppress(OSError):
        (out_dir / JOURNAL).unlink()
