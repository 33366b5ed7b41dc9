"""``trainer experiment --table N``: a paper table's plan (``tables``) made into renders and runs at a size, printed
(``--dry-run``, with the hours it would take) or run, and reported beside the paper's numbers.

Sizes: ``cpu`` (a miniature: the cpu preset, small renders, digits and mnist5k standing in for the paper's sets),
``gpu`` (one GPU: the paper's pre-training recipe for a fixed number of samples, short fine-tuning on the paper's
sets where they can be had) and ``paper`` (the paper's schedules and fine-tuning, for a cluster). Every run lands
in its own directory and a finished one is not run again (``grid.execute``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import runs
from ..errors import TrainerError
from ..presets import GPU_EXPERIMENT, PRETRAIN_PRESETS, resolve
from ..settings import BY_NAME
from . import tables
from .grid import Run, execute, render, seed_range
from .plan import Task, _available, size_plan

SIZES = ("cpu", "gpu", "paper")
# (pre-training seeds, fine-tuning seeds) by size: the paper reports one run per row; two seeds on each axis
# are the fewest that give an interval a verdict (stats.Interval.verdict).
SEEDS = {"cpu": (2, 2), "gpu": (3, 3), "paper": (1, 1)}
# What a size renders at most of a recipe (a table may raise them: tables.Table.sizes).
LIMITS = {"cpu": {"max_classes": 100, "max_instances": 4}, "gpu": {"max_instances": 100}, "paper": {}}
# The stand-ins' training images at the cpu size (digits: first 898; mnist5k: 400 per class), 10 classes each.
STAND_IN_IMAGES = {"digits": 898, "mnist5k": 4000}
LAUNCH = "python -m trainer.launch --nproc_per_node 8"  # how the paper size's runs are started on a node
VARIABLE = re.compile(r"\$([A-Z][A-Z0-9_]*)")


@dataclass
class Planned:
    """A table at a size: what it renders and runs, what it leaves out and why, and its estimated hours."""

    table: tables.Table
    size: str
    preset: str
    tasks: list[Task]
    renders: list[tuple[str, Path, list[str]]]  # (recipe, out, options)
    pretrain: dict[str, dict[int, Run]]  # row label -> seed -> run
    downstream: list[Run]
    order: list[Run]
    seeds: tuple[int, ...]
    finetune_seeds: tuple[int, ...]
    skipped: dict[str, str] = field(default_factory=dict)  # row or column label -> why it is not run
    samples: float = 0.0  # training samples of every run, weighted by the model's rate: seconds at RATES
    seconds: float = 0.0

    @property
    def hours(self) -> float:
        return self.seconds / 3600


def slug(label: str) -> str:
    """A run-name part from a row or column label: 'Δ = 0.001' -> 'delta-0-001', 'RCDB◇ (1)' -> 'rcdb-lpce-1'."""
    text = label.replace("Δ", "delta").replace("σ", "sigma").replace("◇", "-lpce").replace("/", "-")
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _need_met(need: str) -> bool:
    kind, _, name = need.partition(":")
    if kind == "setting":
        return name in BY_NAME
    if kind == "dataset":
        from ..data.downstream import FAMILIES

        return any(f.match.rstrip(":/") == name for f in FAMILIES)
    raise TrainerError(f"unknown need {need!r} (setting:NAME or dataset:FAMILY)")


def _unmet(needs: tuple[str, ...]) -> list[str]:
    words = {"setting": "the trainer setting", "dataset": "the dataset family"}
    return [f"{words[n.partition(':')[0]]} {n.partition(':')[2]}" for n in needs if not _need_met(n)]


def _tasks(table: tables.Table, size: str, extra: dict[str, Any], *, shots, digits_epochs, mnist_epochs,
           skipped: dict[str, str], expand: bool) -> list[Task]:
    """The downstream columns of ``table`` at ``size``; ``expand``: fill ``$NAME`` from the environment (a
    column whose copy is not named is left out with its reason)."""
    if size == "cpu":
        if table.probe_blocks:
            return [Task("mnist5k", "mnist5k", "mnist5k", {"shots": 50, "epochs": 10, **extra})]
        stand_ins = size_plan("cpu", shots=shots, digits_epochs=digits_epochs, mnist_epochs=mnist_epochs)["tasks"]
        return [Task(t.label, t.slug, t.spec, {**t.args, **extra}) for t in stand_ins]
    base = (GPU_EXPERIMENT["probe"] if table.probe_blocks else GPU_EXPERIMENT["finetune"]) if size == "gpu" else {}
    kept = []
    for column in table.columns:
        data = tables.SETS[column]
        unmet = _unmet(data.needs)
        if unmet:
            skipped[column] = f"needs {', '.join(unmet)}"
            continue
        spec = data.spec
        missing = [v for v in VARIABLE.findall(spec) if not os.environ.get(v)]
        if expand and missing:
            skipped[column] = f"set {', '.join(missing)} (a copy of the set: {data.note or spec})"
            continue
        if expand:
            spec = VARIABLE.sub(lambda m: os.environ[m.group(1)], spec)
        args = {**base, **(data.gpu if size == "gpu" else data.paper), **extra}
        if table.probe_blocks:
            args = {k: v for k, v in args.items() if k in ("batch_size", "lr_base", "epochs")}
        kept.append(Task(column, slug(column), spec, args, optional=True))
    return kept


def _recipe_counts(recipe: str) -> tuple[int, int, int]:
    values = json.loads(Path(recipe).read_text())
    return values["perturb"]["classes"], values["render"].get("instances", 1), values["render"]["size"]


def _schedule(size: str, images: int, instances: int, batch: int) -> dict[str, Any]:
    """The pre-training length of a dataset at ``size`` (tables: ONE_IMAGE_STEPS, MILLION_IMAGE_EPOCHS)."""
    if size == "cpu":
        return dict(size_plan("cpu")["pretrain"])
    if size == "gpu":
        # The memory input holds a small set on the device; a larger one streams.
        return {"samples": GPU_EXPERIMENT["pretrain"]["samples"], "input": "memory" if images <= 10_000 else "auto"}
    if instances == 1:
        return {"samples": tables.ONE_IMAGE_STEPS * batch}
    return {"samples": tables.MILLION_IMAGE_EPOCHS * images}


def _samples(kind: str, preset: str, args: dict[str, Any], images: int) -> tuple[float, str]:
    """Training samples of one run and its model name, from its effective settings."""
    config = resolve(kind, preset, **{k: v for k, v in args.items() if k in BY_NAME})
    length = config.get("samples") or config["epochs"] * images
    return float(length), config["model"] or "vit_tiny_patch16_224"


def _rate(size: str, model: str) -> float:
    if size == "cpu":
        return tables.CPU_RATE
    return tables.RATES.get(model, tables.RATES["vit_tiny_patch16_224"])


def build(number: str, size: str, *, out: str | os.PathLike, data_dir: str | os.PathLike, preset: str | None = None,
          seed: int = 0, seeds: int | None = None, finetune_seeds: int | None = None,
          pretrain_samples: int | None = None, image_size: int | None = None, classes: int | None = None,
          shots: int | None = None, digits_epochs: float | None = None, mnist_epochs: float | None = None,
          rows: tuple[str, ...] | None = None, expand: bool = False) -> Planned:
    """Table ``number``'s renders and runs at ``size`` (nothing is run). ``preset`` replaces every run's preset
    (``smoke`` for a quick check of the chain); ``rows`` keeps those rows (by ``slug``) and scratch; the other
    options shrink or override the size's values."""
    if size not in SIZES:
        raise TrainerError(f"unknown size {size!r} for --table (one of {', '.join(SIZES)})")
    table = tables.load(number)
    if rows:
        unknown = [r for r in rows if r not in {slug(row.label) for row in table.rows}]
        if unknown:
            raise TrainerError(f"table {number} has no row {unknown[0]!r} (one of "
                               f"{', '.join(slug(row.label) for row in table.rows)})")
        table = replace(table, rows=tuple(r for r in table.rows if r.scratch or slug(r.label) in rows))
    out, data_dir = Path(out), Path(data_dir)
    preset = preset or ("cpu" if size == "cpu" else "paper")
    own = table.sizes.get(size, {})
    limits = {**LIMITS[size], **{k: v for k, v in own.items() if k.startswith("max_")}}
    if classes:
        limits["max_classes"] = classes
    n_pre, n_tune = SEEDS[size]
    pre_seeds = seed_range(seed, n_pre if seeds is None else seeds, "seeds")
    tune_seeds = seed_range(seed, n_tune if finetune_seeds is None else finetune_seeds, "finetune-seeds")
    skipped: dict[str, str] = {}
    tasks = _tasks(table, size, dict(own.get("finetune", {})), shots=shots, digits_epochs=digits_epochs,
                   mnist_epochs=mnist_epochs, skipped=skipped, expand=expand)
    planned = Planned(table, size, preset, tasks, [], {}, [], [], pre_seeds, tune_seeds, skipped)
    px = image_size or (PRETRAIN_PRESETS["cpu"]["img_size"] if size == "cpu" else None)

    def downstream(row: tables.Row, init: str, s: int | None, f: int, task: Task, images: int) -> list[Run]:
        part = slug(row.label) if s is None else f"{slug(row.label)}-seed{s}"
        args = {"preset": preset, "seed": f, **task.args}
        if init == "scratch" and "model" in own.get("pretrain", {}):
            args["model"] = own["pretrain"]["model"]  # scratch is the pre-trained rows' architecture
        made = []
        for k in table.probe_blocks or (None,):
            kind, name = ("finetune", f"finetune-{task.slug}-{part}-ft{f}") if k is None else \
                ("probe", f"probe-K{k}-{part}-ft{f}")
            run_args = args if k is None else {**args, "blocks": k}
            label = task.label if k is None else f"{task.label}, K = {k}"
            made.append(Run(kind, name, run_args, init, task.spec, label, row.label, s, f))
            length, model = _samples(kind, preset, run_args, images)
            planned.seconds += length / _rate(size, model)
        return made

    def images_of(task: Task) -> int:
        if size == "cpu":
            return task.args["shots"] * 10 if task.args.get("shots") else STAND_IN_IMAGES[task.spec]
        return tables.SETS[task.label].train_images

    scratch = next((r for r in table.rows if r.scratch), tables.Row("Scratch", {}))
    planned.downstream += [run for f in tune_seeds for t in tasks
                           for run in downstream(scratch, "scratch", None, f, t, images_of(t))]
    planned.order += planned.downstream
    for row in table.rows:
        if row.scratch:
            continue
        if row.external:
            skipped[row.label] = f"the paper's figure only ({row.external}); not made here"
            continue
        if row.same_as:
            skipped[row.label] = f"trains as {row.same_as}" + (f": {row.note}" if row.note else "")
            continue
        unmet = _unmet(row.needs)
        if not Path(row.recipe).is_file():
            unmet.append(f"the recipe {row.recipe}" + (f" ({row.note})" if row.note else ""))
        if unmet:
            skipped[row.label] = f"needs {', '.join(unmet)}"
            continue
        recipe_classes, recipe_instances, recipe_px = _recipe_counts(row.recipe)
        n = row.render.get("classes", recipe_classes)
        n = min(n, limits.get("max_classes", n))
        k = min(recipe_instances, limits.get("max_instances", recipe_instances))
        options = [*(["--classes", str(n)] if n != recipe_classes else []),
                   *(["--instances", str(k)] if k != recipe_instances else []),
                   *(["--size", str(px)] if px and px != recipe_px else [])]
        data = data_dir / f"{Path(row.recipe).stem}-L{n}-{k}i-{px or recipe_px}px"
        if all(d != data for _, d, _ in planned.renders):
            planned.renders.append((row.recipe, data, options))
        settings = {**_schedule(size, n * k, k, own.get("pretrain", {}).get("batch_size", 256)),
                    **own.get("pretrain", {}), **row.pretrain}
        if pretrain_samples:
            settings.update(samples=pretrain_samples)
        length, model = _samples("pretrain", preset, settings, n * k)
        planned.pretrain[row.label] = {}
        for s in pre_seeds:
            run = Run("pretrain", f"pretrain-{slug(row.label)}-seed{s}",
                      {"data": str(data), "preset": preset, "seed": s, **settings}, variant=row.label, pretrain_seed=s)
            planned.pretrain[row.label][s] = run
            planned.seconds += length / _rate(size, model)
            body = str(out / run.name / runs.CHECKPOINT)
            tuned = [r for f in tune_seeds for t in tasks for r in downstream(row, body, s, f, t, images_of(t))]
            planned.downstream += tuned
            planned.order += [run, *tuned]
    return planned


def _command(run: Run, size: str) -> str:
    text = run.command()
    return text.replace("python -m trainer", LAUNCH + " -m trainer", 1) if size == "paper" else text


def dry_run(planned: Planned) -> str:
    """The plan as text: every command in order, what is left out and why, and the estimated hours."""
    t, size = planned.table, planned.size
    unit = "CPU" if size == "cpu" else "GPU"
    lines = [f"# Table {t.number}: {t.title}; size {size}, preset {planned.preset}; pre-training seeds "
             f"{', '.join(map(str, planned.seeds))}, fine-tuning seeds {', '.join(map(str, planned.finetune_seeds))}"]
    if t.note:
        lines.append(f"# {t.note}")
    if size == "cpu":
        lines.append(f"# the paper's sets ({', '.join(t.columns)}) stand in as: "
                     + ", ".join(task.label for task in planned.tasks))
    for label, why in planned.skipped.items():
        lines.append(f"# not run: {label}: {why}")
    lines += [shlex.join(["fracbuild", "render", recipe, "-o", str(where), *options])
              for recipe, where, options in planned.renders]
    lines += [_command(run, size) for run in planned.order]
    rate = (f"{tables.CPU_RATE:g} samples/s (the cpu preset on this project's machine)" if size == "cpu" else
            ", ".join(f"{m} {r:g}" for m, r in tables.RATES.items()) + " training samples/s (timm's RTX 3090 "
            "benchmark, the model alone)")
    lines.append(f"# estimate: {planned.hours:,.1f} {unit}-hours for {len(planned.order)} runs at {rate}; "
                 "loading, evaluation and start-up not counted")
    return "\n".join(lines)


def run_table(number: str, size: str, *, out: str | os.PathLike | None = None,
              report: str | os.PathLike = "experiments", data_dir: str | os.PathLike = "shards",
              dry: bool = False, progress: bool | None = None, **options: Any) -> dict[str, Any]:
    """Print (``dry``) or run table ``number`` at ``size`` and write its report; returns where it went."""
    out = Path(out or f"runs/table-{number}-{size}")
    planned = build(number, size, out=out, data_dir=data_dir, expand=not dry, **options)
    if dry:
        return {"text": dry_run(planned), "hours": planned.hours, "planned": planned}
    started = time.perf_counter()
    for d in (out, Path(report), Path(data_dir)):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrainerError(f"cannot create {d}: {e.strerror or e}") from None
    kept, missing = _available(planned.tasks) if size != "cpu" else (planned.tasks, {})
    planned.skipped.update(missing)
    if not kept:
        raise TrainerError(f"table {number} at size {size}: none of its sets can be loaded here "
                           f"({'; '.join(f'{k}: {v}' for k, v in planned.skipped.items())})")
    labels = {t.label for t in kept}
    planned.tasks = kept
    planned.order = [r for r in planned.order if r.kind == "pretrain" or r.label.split(", K = ")[0] in labels]
    planned.downstream = [r for r in planned.downstream if r in planned.order]
    commands = []
    for recipe, where, opts in planned.renders:
        classes = int(opts[opts.index("--classes") + 1]) if "--classes" in opts else None
        instances = int(opts[opts.index("--instances") + 1]) if "--instances" in opts else None
        px = int(opts[opts.index("--size") + 1]) if "--size" in opts else None
        commands.append(render(recipe, where, classes=classes, size=px, instances=instances))
    for run in planned.order:
        execute(run, out, progress)
    from .report import write_table_report  # matplotlib and the report load once the runs are done

    name = f"REPORT-table-{number}-{size}.md"
    found = write_table_report(planned, Path(report), name=name, renders=commands,
                               minutes=(time.perf_counter() - started) / 60)
    print(f"[experiment] table {number}: {len(planned.order)} runs", file=sys.stderr, flush=True)
    return {"report": str(Path(report) / name), "comparisons": found, "skipped": dict(planned.skipped)}
