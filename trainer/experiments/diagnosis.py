"""The CPU diagnosis, what it runs: does a learnt 1p-frac body fine-tune above scratch, and on which budget?

Pre-trains for each length (and Δ = 0.001 once) for every pre-training seed, fine-tunes each body and scratch
on ``digits`` with the preset's budget for every fine-tuning seed, sweeps that budget (lr, warm-up, layer
decay) for the body of one length and scratch, and measures the bodies of the first seed
(``trainer.inspection``). ``diagnosis_report`` writes the figures.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import runs
from ..presets import resolve
from .grid import Run, count, execute, render, seed_range


def diagnose(
    out: str | os.PathLike = "runs/diagnosis",
    *,
    report: str | os.PathLike = "experiments",
    recipe: str = "manifests/1p-frac.json",
    data_dir: str | os.PathLike = "shards",
    classes: int = 100,
    image_size: int | None = None,
    lengths: tuple[int, ...] = (15_000, 30_000, 60_000),
    collapse_samples: int | None = None,
    body_samples: int | None = None,
    lrs: tuple[float, ...] = (3e-3, 1e-3, 3e-4),
    warmups: tuple[float, ...] = (5.0,),
    layer_decays: tuple[float, ...] = (0.75, 0.5),
    digits_epochs: float = 10,
    images: int = 256,
    preset: str = "cpu",
    seed: int = 0,
    seeds: int = 1,
    finetune_seeds: int = 3,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Pre-train for each of ``lengths`` (and Δ = 0.001 for ``collapse_samples``, default the shortest) with
    pre-training seeds ``seed .. seed + seeds - 1``, fine-tune each and scratch on ``digits`` with the preset's
    budget and fine-tuning seeds ``seed .. seed + finetune_seeds - 1``, sweep that budget (lr, warm-up, layer
    decay) for the bodies of ``body_samples`` (default the shortest) and scratch, measure the first seed's
    bodies (``trainer.inspection``), and write the figures to ``diagnosis-runs.md`` (with
    ``diagnosis-length.png``, ``diagnosis-bodies.png`` and ``.json``)."""
    from .. import inspection
    from .diagnosis_report import write_diagnosis

    pretrain_seeds = seed_range(seed, seeds, "seeds")
    tune_seeds = seed_range(seed, finetune_seeds, "finetune-seeds")
    out, report, data_dir = Path(out), Path(report), Path(data_dir)
    for d in (out, report, data_dir):
        d.mkdir(parents=True, exist_ok=True)
    image_size = image_size or resolve("pretrain", preset)["img_size"]  # rendered at the size the model sees
    main = data_dir / f"experiment-L{classes}-{image_size}px"
    collapsed = data_dir / f"experiment-L{classes}-{image_size}px-delta0.001"
    rendered = [render(recipe, main, classes=classes, size=image_size),
                render(recipe, collapsed, classes=classes, size=image_size, delta=0.001)]
    collapse_samples = collapse_samples or min(lengths)
    body_samples = body_samples or min(lengths)
    bodies = {f"delta0.1-{count(n)}": (main, n) for n in lengths}
    bodies[f"delta0.001-{count(collapse_samples)}"] = (collapsed, collapse_samples)
    pre = {name: {s: Run("pretrain", f"pretrain-{name}-seed{s}",
                         {"data": str(data), "preset": preset, "seed": s, "samples": n}, variant=name,
                         pretrain_seed=s)
                  for s in pretrain_seeds}
           for name, (data, n) in bodies.items()}
    first = pretrain_seeds[0]

    def init(name: str, s: int | None) -> str:
        return "scratch" if name == "scratch" else str(out / pre[name][s].name / runs.CHECKPOINT)

    def tune(name: str, s: int | None, f: int, tag: str = "", **extra: Any) -> Run:
        part = name if s is None else f"{name}-seed{s}"
        return Run("finetune", f"finetune-digits-{part}-ft{f}{tag}",
                   {"preset": preset, "seed": f, "epochs": digits_epochs, **extra}, init(name, s), "digits",
                   tag.lstrip("-") or "preset", name, s, f)

    def each(name: str, tag: str = "", **extra: Any) -> list[Run]:
        chosen = (None,) if name == "scratch" else pretrain_seeds
        return [tune(name, s, f, tag, **extra) for s in chosen for f in tune_seeds]

    plain = {name: each(name) for name in [*pre, "scratch"]}
    body = f"delta0.1-{count(body_samples)}"
    settings = ([(f"-lr{lr:g}", {"lr": lr}) for lr in lrs if lr != 1e-3]
                + [(f"-warmup{w:g}", {"warmup_epochs": w}) for w in warmups]
                + [(f"-ld{ld:g}", {"layer_decay": ld}) for ld in layer_decays])
    sweep = {tag.lstrip("-"): {name: each(name, tag, **extra) for name in (body, "scratch")}
             for tag, extra in settings}
    for s in pretrain_seeds:  # one pre-training seed at a time, with what starts from it
        for name in pre:
            execute(pre[name][s], out, progress)
    for run in [r for group in plain.values() for r in group] + [
            r for row in sweep.values() for group in row.values() for r in group]:
        execute(run, out, progress)
    models = [init(n, first) for n in pre] + [f"init:{init(body, first)}", "scratch"]
    measured = inspection.inspect(models, dataset="digits", images=images, preset=preset)
    names = {init(n, first): n for n in pre} | {f"init:{init(body, first)}": "initialisation", "scratch": "scratch"}
    runs.write_json(report / "diagnosis-bodies.json", measured)
    inspection.plot(measured, str(report / "diagnosis-bodies.png"), labels=names)
    summary = {"pretrain": pre, "plain": plain, "sweep": sweep, "body": body, "render": rendered,
               "bodies": measured, "names": names, "lengths": lengths, "seeds": pretrain_seeds,
               "finetune_seeds": tune_seeds}
    comparisons = write_diagnosis(summary, report)
    return {"report": str(report / "diagnosis-runs.md"), "comparisons": comparisons,
            "finetune": {r.name: r.result["top1"] for r in [*(r for g in plain.values() for r in g),
                                                            *(r for row in sweep.values() for g in row.values()
                                                              for r in g)]}}
