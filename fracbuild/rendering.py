"""``fracbuild.render``: a recipe's samples as WebDataset shards, in parallel, resumable.

joblib runs whole shards (``render_shard``) in parallel; each worker renders its samples and
writes its own shard, so memory stays flat whatever the number of classes. The main process
appends each finished shard's record to a journal, so an interrupted render resumes where it
stopped; ``manifest.json`` is written once every shard is in place.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path
from typing import Any

from .backends import exit_with_parent, parallel_backend, worker_count
from .card import CARD, write_card
from .checks import check_jobs, check_out_path
from .dataset import preview as make_preview
from .durable import sync_dir
from .errors import FracbuildError
from .manifest import PREVIEW, write_dataset_files
from .progress import progress_bar
from .recipe import counts, effective_recipe, shard_plan
from .rundir import append, failing_cleanly, finish, open_journal, prepare_out_dir, rendering_alone
from .settings import OVERRIDES, RENDER, takes_settings
from .shards import shard_name, write_shard
from .sources import create_source

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
    workers = worker_count(jobs, shards)
    if workers * worker > memory:
        raise FracbuildError(f"{workers:,} workers need about {gb(workers * worker)}; this machine has "
                             f"{gb(memory)}: use --jobs {max(1, memory // worker)} or fewer")


# The process that called render(): its shard tasks run in this process only on the threading backend.
_render_pid: int | None = None


def render_shard(recipe: dict[str, Any], out_dir: str, shard: int, first: int, count: int) -> dict[str, Any]:
    """Render samples ``[first, first + count)`` and write them as shard number ``shard``."""
    if os.getpid() != _render_pid:  # a worker process (forked, loky, dask, ray), not a thread of render()
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


def warm_up(recipe: dict[str, Any]) -> None:
    """Load (or compile) the kernels the recipe's source uses, with the types its shards pass them: one
    sample drawn, and thrown away (a sample depends on its class and instance alone)."""
    create_source(recipe).sample(0, 0)


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
    rendered. ``jobs`` is the number of worker processes (-1: all cores; never more than the shards to render);
    ``backend`` runs the shard tasks on processes forked from this one (``fork``), joblib's ``loky`` or
    ``threading`` backend or a ``dask`` or ``ray`` cluster (at ``address``, or a local one); neither changes the
    output. The progress bar shows on a terminal (``progress=None``) or as asked. ``command``: the command line
    the dataset card records.
    """
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
            journal = open_journal(out_dir)
            with journal, failing_cleanly(out_dir, recipe, created, done):
                append(journal, {"recipe": recipe}, *done.values())
                sync_dir(out_dir)  # the journal's own entry, before anything it records
                # joblib's task form, (function, args, kwargs), without importing joblib where no backend needs it
                tasks = ((render_shard, (recipe, str(out_dir), *spec), {}) for spec in todo)
                # The workers start before the progress bar's thread: forked ones are forked from one thread.
                workers = parallel_backend(backend, address, jobs, tasks=len(todo), prepare=lambda: warm_up(recipe))
                with workers as run, progress_bar(total=total, initial=total - sum(n for _, _, n in todo), unit="img",
                                                  desc=f"render {recipe['name']}", progress=progress,
                                                  smoothing=0) as bar:
                    for record in run(tasks):
                        done[record["shard"]] = record
                        append(journal, record)
                        bar.update(record["samples"])
        seconds = time.perf_counter() - start
        manifest = write_dataset_files(out_dir, recipe, [done[s] for s, _, _ in plan])
        finish(out_dir, recipe)
        if preview:
            make_preview(out_dir, out_dir / PREVIEW, manifest=manifest)
        if write_card(out_dir, manifest, command=command, preview=preview) is None:
            warnings.warn(f"{out_dir / CARD} is not a fracbuild dataset card: left as it is, no card written",
                          stacklevel=2)
        rendered = sum(n for _, _, n in todo)
        manifest_stats = {"rendered": rendered, "kept": total - rendered, "seconds": seconds,
                          "images_per_second": rendered / seconds if rendered and seconds > 0 else 0.0}
        return {**manifest, "run": manifest_stats}
