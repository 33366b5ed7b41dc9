"""``trainer.experiment``: what the paper's Table 2 (and Table 5's Δ = 0.001, and Figure 3) runs, at two sizes.

``cpu``: renders a small 1p-frac dataset and its Δ = 0.001 twin with the ``fracbuild`` command, pre-trains
each with the ``cpu`` preset for every pre-training seed, fine-tunes every body and scratch with the same
budget on ``mnist5k`` (few shots per class) and ``digits`` for every fine-tuning seed, probes K frozen blocks
of the Δ = 0.1 bodies and of scratch, and writes ``REPORT.md`` and its charts (``report``).

``gpu``: the default dataset (L = 1000 at the recipe's size) and its Δ = 0.001 twin, ViT-Tiny at 224 px with
the paper's recipe for a fixed number of samples, fine-tuned on ``mnist5k`` (few-shot and full), ``digits``
and, where torchvision can download them, CIFAR-100 and CIFAR-10; probes K = 1..12; ``REPORT-gpu.md``.

A body of pre-training seed i fine-tuned with seed j is compared with scratch fine-tuned with seed j (same
head initialisation, batches and crops), so each comparison is a grid of paired differences.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import runs
from ..errors import TrainerError
from ..presets import GPU_EXPERIMENT, PRETRAIN_PRESETS
from ..settings import RANDAUGMENT
from .grid import Run, execute, render, seed_range

SIZES = ("cpu", "gpu", "smoke")
# Initialisations: label -> run-name part. Scratch comes last in every table.
SLUGS = {"1p-frac": "delta0.1", "1p-frac Δ=0.001": "delta0.001", "1p-frac + RandAugment": "randaugment",
         "scratch": "scratch"}


@dataclass(frozen=True)
class Task:
    """A downstream fine-tuning column: its label, run-name part, dataset SPEC and settings."""

    label: str
    slug: str
    spec: str
    args: dict[str, Any]
    optional: bool = False  # a download: skipped with a note where it cannot be had


def size_plan(size: str, *, shots: int | None = None, digits_epochs: float | None = None,
              mnist_epochs: float | None = None, cifar_epochs: float | None = None) -> dict[str, Any]:
    """What an experiment size renders, pre-trains, fine-tunes and probes; the epochs and shots given override."""
    if size not in SIZES:
        raise TrainerError(f"unknown experiment size {size!r} (one of {', '.join(SIZES)})")
    shots = shots or 10
    if size == "gpu":
        from ..distributed import usable_cores

        mnist = mnist_epochs or 10
        tasks = [Task(f"mnist5k ({shots}-shot)", f"mnist5k-{shots}shot", "mnist5k",
                      {"shots": shots, "epochs": 20 * mnist, "eval_every": max(1, round(2 * mnist))}),
                 Task("mnist5k (full)", "mnist5k-full", "mnist5k", {"epochs": mnist, "eval_every": 1}),
                 Task("digits", "digits", "digits", {"epochs": digits_epochs or 30, "eval_every": 5}),
                 Task("CIFAR-100", "cifar100", "torch/cifar100", {"epochs": cifar_epochs or 1}, optional=True),
                 Task("CIFAR-10", "cifar10", "torch/cifar10", {"epochs": cifar_epochs or 1}, optional=True)]
        return {"preset": "paper", "classes": None, "size": None, "pretrain": dict(GPU_EXPERIMENT["pretrain"]),
                "randaugment": False, "tasks": tasks, "seeds": 3, "finetune_seeds": 3,
                # CIFAR's 50,000 images at 224 px need more loader workers than fine-tuning's default 4.
                "finetune": {**GPU_EXPERIMENT["finetune"], "workers": max(0, min(12, usable_cores() - 1))},
                "probe": dict(GPU_EXPERIMENT["probe"]), "probe_blocks": tuple(range(1, 13)),
                "report": "REPORT-gpu.md", "chart": "results-gpu.png"}
    tasks = [Task(f"mnist5k ({shots}-shot)", "mnist5k", "mnist5k",
                  {"shots": shots, "epochs": mnist_epochs or 100, "eval_every": 10}),
             Task("digits", "digits", "digits", {"epochs": digits_epochs or 10})]
    # Rendered at the size the cpu model sees: downscaling the reference's speckled drawing averages the
    # classes' differences away (REPORT-cpu-diagnosis.md). Sized for about two hours on 2 cores (measured on
    # one core: 15,000 pre-training samples in 3 minutes, a fine-tune 2.3-2.6, a probe 0.3 at K = 1 to 1.2 at
    # K = 6): 3 x 3 seeds, the RandAugment variant only on request (it pre-trains 2.5 times slower), three depths.
    return {"preset": size, "classes": 100, "size": PRETRAIN_PRESETS[size]["img_size"],
            "pretrain": {"samples": 15_000} if size == "cpu" else {}, "randaugment": False, "tasks": tasks,
            "seeds": 3, "finetune_seeds": 3, "finetune": {}, "probe": {}, "probe_blocks": (1, 3, 6),
            "report": "REPORT.md", "chart": "results.png"}


def experiment(
    out: str | os.PathLike = "runs/experiment",
    *,
    size: str = "cpu",
    report: str | os.PathLike = "experiments",
    recipe: str = "manifests/1p-frac.json",
    data_dir: str | os.PathLike = "shards",
    classes: int | None = None,
    image_size: int | None = None,
    pretrain_samples: int | None = None,
    collapse: bool = True,
    randaugment: bool | None = None,
    shots: int | None = None,
    digits_epochs: float | None = None,
    mnist_epochs: float | None = None,
    cifar_epochs: float | None = None,
    probe_blocks: tuple[int, ...] | None = None,
    probe_shots: int = 50,
    probe_epochs: int = 10,
    preset: str | None = None,
    seed: int = 0,
    seeds: int | None = None,
    finetune_seeds: int | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run the study of ``size`` (``cpu``, ``gpu``; ``smoke``: the cpu plan with the smoke preset) and
    write its report and charts to ``report``. Settings left as None come from the size's plan
    (``size_plan``); ``preset`` replaces the plan's preset of every run (``smoke`` for a quick check).
    Pre-training seeds are ``seed .. seed + seeds - 1``, fine-tuning (and probe) seeds
    ``seed .. seed + finetune_seeds - 1``.
    """
    plan = size_plan(size, shots=shots, digits_epochs=digits_epochs, mnist_epochs=mnist_epochs,
                     cifar_epochs=cifar_epochs)
    preset = preset or plan["preset"]
    randaugment = plan["randaugment"] if randaugment is None else randaugment
    probe_blocks = probe_blocks or plan["probe_blocks"]
    pretrain_seeds = seed_range(seed, plan["seeds"] if seeds is None else seeds, "seeds")
    tune_seeds = seed_range(seed, plan["finetune_seeds"] if finetune_seeds is None else finetune_seeds,
                            "finetune-seeds")
    out, report, data_dir = Path(out), Path(report), Path(data_dir)
    if not Path(recipe).is_file():
        raise TrainerError(f"recipe {recipe} not found (run from the project root, or pass --recipe)")
    # Read before anything is made: a recipe that does not read leaves no folder behind.
    try:
        recipe_values = json.loads(Path(recipe).read_text())
        recipe_classes, recipe_size = recipe_values["perturb"]["classes"], recipe_values["render"]["size"]
    except (OSError, ValueError) as e:
        raise TrainerError(f"recipe {recipe} does not read as JSON: {getattr(e, 'strerror', None) or e}") from None
    except (KeyError, TypeError):
        raise TrainerError(f"recipe {recipe} is not a fracbuild recipe (needs perturb.classes, render.size)") from None
    for d in (out, report, data_dir):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrainerError(f"cannot create {d}: {e.strerror or e}") from None
    started = time.perf_counter()
    # The command line of this grid: the size and the seeds always, every other option where it was given.
    given = {"size": size, "seed": seed or None, "seeds": len(pretrain_seeds), "finetune_seeds": len(tune_seeds),
             "preset": None if preset == plan["preset"] else preset, "classes": classes, "image_size": image_size,
             "pretrain_samples": pretrain_samples, "collapse": None if collapse else False, "randaugment": randaugment
             if randaugment != plan["randaugment"] else None, "shots": shots, "digits_epochs": digits_epochs,
             "mnist_epochs": mnist_epochs, "cifar_epochs": cifar_epochs,
             "probe_blocks": None if probe_blocks == plan["probe_blocks"] else ",".join(map(str, probe_blocks)),
             "probe_shots": None if probe_shots == 50 else probe_shots,
             "probe_epochs": None if probe_epochs == 10 else probe_epochs}
    grid_command = Run("experiment", "", {k: v for k, v in given.items() if v is not None}).command()
    classes = classes or plan["classes"]
    image_size = image_size or plan["size"]
    name = f"experiment-L{classes or recipe_classes}-{image_size or recipe_size}px"
    main = data_dir / name
    render_commands = [render(recipe, main, classes=classes, size=image_size)]
    # Pre-training variants: label -> (data, settings on top of the preset).
    variants = {"1p-frac": (main, {})}
    if collapse:
        collapsed = data_dir / f"{name}-delta0.001"
        render_commands.append(render(recipe, collapsed, classes=classes, size=image_size, delta=0.001))
        variants["1p-frac Δ=0.001"] = (collapsed, {})
    if randaugment:
        variants["1p-frac + RandAugment"] = (main, {"auto_augment": RANDAUGMENT})

    budget = {**plan["pretrain"], **({"samples": pretrain_samples} if pretrain_samples else {})}
    pre = {label: {s: Run("pretrain", f"pretrain-{SLUGS[label]}-seed{s}",
                          {"data": str(path), "preset": preset, "seed": s, **extra, **budget},
                          variant=label, pretrain_seed=s)
                   for s in pretrain_seeds}
           for label, (path, extra) in variants.items()}
    tasks, skipped = _available(plan["tasks"])

    def body(label: str, s: int) -> str:
        return str(out / pre[label][s].name / runs.CHECKPOINT)

    def tune(task: Task, label: str, s: int | None, f: int) -> Run:
        init = "scratch" if s is None else body(label, s)
        part = SLUGS[label] if s is None else f"{SLUGS[label]}-seed{s}"
        return Run("finetune", f"finetune-{task.slug}-{part}-ft{f}",
                   {"preset": preset, "seed": f, **plan["finetune"], **task.args}, init, task.spec, task.label,
                   label, s, f)

    def probe(k: int, label: str, s: int | None, f: int) -> Run:
        init = "scratch" if s is None else body(label, s)
        part = SLUGS[label] if s is None else f"{SLUGS[label]}-seed{s}"
        return Run("probe", f"probe-K{k}-{part}-ft{f}",
                   {"preset": preset, "seed": f, **plan["probe"], "blocks": k, "shots": probe_shots,
                    "epochs": probe_epochs}, init, "mnist5k", f"K = {k}", label, s, f)

    # Scratch first, then one pre-training seed at a time with everything that starts from it, so that an
    # interrupted grid holds whole seeds.
    fine = [tune(t, "scratch", None, f) for f in tune_seeds for t in tasks]
    probes = [probe(k, "scratch", None, f) for f in tune_seeds for k in probe_blocks]
    order: list[Run] = [*fine, *probes]
    for s in pretrain_seeds:
        order += [pre[label][s] for label in variants]
        fine_s = [tune(t, label, s, f) for label in variants for f in tune_seeds for t in tasks]
        probes_s = [probe(k, "1p-frac", s, f) for f in tune_seeds for k in probe_blocks]
        order += fine_s + probes_s
        fine += fine_s
        probes += probes_s
    for run in order:
        execute(run, out, progress)
    summary = {"size": size, "pretrain": pre, "finetune": fine, "probe": probes, "order": order,
               "tasks": [t.label for t in tasks], "variants": [*variants, "scratch"],
               "seeds": pretrain_seeds, "finetune_seeds": tune_seeds, "skipped": skipped,
               "render": render_commands, "command": grid_command, "seconds": time.perf_counter() - started,
               "settings": {"classes": classes, "size": image_size, "shots": shots, "probe_shots": probe_shots,
                            "seed": seed}}
    from .report import write_report  # the report and matplotlib load once the runs are done

    comparisons = write_report(summary, report, name=plan["report"], chart=plan["chart"])
    return {"report": str(report / plan["report"]), "chart": str(report / plan["chart"]),
            "finetune": {r.name: r.result["top1"] for r in fine}, "probe": {r.name: r.result["top1"] for r in probes},
            "comparisons": comparisons, "skipped": skipped}


def _available(tasks: list[Task]) -> tuple[list[Task], dict[str, str]]:
    """The tasks whose data can be loaded; an optional one that cannot (no download) is left out with its reason."""
    from ..data.downstream import load_dataset

    kept, skipped = [], {}
    for task in tasks:
        if task.optional:
            try:
                load_dataset(task.spec)
            except TrainerError as e:
                skipped[task.label] = str(e)
                print(f"[experiment] {task.label}: skipped ({e})", file=sys.stderr, flush=True)
                continue
        kept.append(task)
    return kept, skipped
