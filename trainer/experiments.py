"""``trainer.experiment``: the paper's Table 2 (and Table 5's collapse, and Figure 3), at two sizes.

``cpu`` (about an hour on 2 cores): renders a small 1p-frac dataset (and its Δ = 0.001 twin) with the
``fracbuild`` command, pre-trains with the ``cpu`` preset (and, on the same data, with the recipe's
RandAugment added), fine-tunes on ``mnist5k`` (few shots per class) and ``digits`` against scratch
with the same budget, probes K = 1..depth frozen blocks, and writes ``REPORT.md`` and a chart.

``gpu`` (about ten minutes on one GPU): renders the default dataset (L = 1000 at the recipe's size)
and its Δ = 0.001 twin, pre-trains ViT-Tiny at 224 px with the paper's recipe for a fixed number of
samples, fine-tunes each and scratch with one budget on ``mnist5k`` (few-shot and full), ``digits``
and, where torchvision can download them, CIFAR-100 and CIFAR-10; probes K = 1..12; writes
``REPORT-gpu.md``.

Every run lands in its own directory under ``out``; a run already finished is not run again, and an
interrupted pre-training resumes, so the whole experiment can be restarted at any point.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import runs
from .errors import TrainerError
from .presets import GPU_EXPERIMENT, PRETRAIN_PRESETS, resolve

DEFAULT_BLOCKS = (1, 2, 3, 4, 5, 6)  # K = 1..depth of the cpu model (the paper: 1, 2, 3, 4, 6 of 12)
RANDAUGMENT = "rand-m9-mstd0.5-inc1"  # the recipe's, which the cpu preset leaves out
SIZES = ("cpu", "gpu", "smoke")


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
        from .distributed import usable_cores

        mnist = mnist_epochs or 10
        tasks = [Task(f"mnist5k ({shots}-shot)", f"mnist5k-{shots}shot", "mnist5k",
                      {"shots": shots, "epochs": 20 * mnist, "eval_every": max(1, round(2 * mnist))}),
                 Task("mnist5k (full)", "mnist5k-full", "mnist5k", {"epochs": mnist, "eval_every": 1}),
                 Task("digits", "digits", "digits", {"epochs": digits_epochs or 30, "eval_every": 5}),
                 Task("CIFAR-100", "cifar100", "torch/cifar100", {"epochs": cifar_epochs or 1}, optional=True),
                 Task("CIFAR-10", "cifar10", "torch/cifar10", {"epochs": cifar_epochs or 1}, optional=True)]
        return {"preset": "paper", "classes": None, "size": None, "pretrain": dict(GPU_EXPERIMENT["pretrain"]),
                "randaugment": False, "tasks": tasks,
                # CIFAR's 50,000 images at 224 px need more loader workers than fine-tuning's default 4.
                "finetune": {**GPU_EXPERIMENT["finetune"], "workers": max(0, min(12, usable_cores() - 1))},
                "probe": dict(GPU_EXPERIMENT["probe"]), "probe_blocks": tuple(range(1, 13)),
                "report": "REPORT-gpu.md", "chart": "results-gpu.png"}
    tasks = [Task(f"mnist5k ({shots}-shot)", "mnist5k", "mnist5k",
                  {"shots": shots, "epochs": mnist_epochs or 100, "eval_every": 10}),
             Task("digits", "digits", "digits", {"epochs": digits_epochs or 10})]
    # Rendered at the size the cpu model sees: downscaling the reference's speckled drawing averages the
    # classes' differences away (REPORT-cpu-diagnosis.md).
    return {"preset": size, "classes": 100, "size": PRETRAIN_PRESETS[size]["img_size"], "pretrain": {},
            "randaugment": True, "tasks": tasks, "finetune": {}, "probe": {}, "probe_blocks": DEFAULT_BLOCKS,
            "report": "REPORT.md", "chart": "results.png"}


@dataclass
class Run:
    """One command of the experiment: its library call and the equivalent command line."""

    kind: str
    name: str
    args: dict[str, Any]
    init: str | None = None
    dataset: str | None = None
    label: str | None = None  # the downstream task's column
    result: dict[str, Any] = field(default_factory=dict)

    def command(self) -> str:
        words = ["python", "-m", "trainer", self.kind]
        if self.init is not None:
            words += ["--init", self.init, "--dataset", self.dataset]
        for key, value in self.args.items():
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                words.append(flag if value else f"--no-{flag[2:]}")
            elif isinstance(value, (list, tuple)):
                words += [flag, *map(str, value)]
            else:
                words += [flag, str(value)]
        return shlex.join(words)


def render(recipe: str, out: Path, *, classes: int | None = None, size: int | None = None,
           delta: float | None = None) -> str:
    """Render with the ``fracbuild`` command (trainer reads shards; it does not import the renderer);
    ``None`` keeps the recipe's value."""
    words = [sys.executable, "-m", "fracbuild", "render", recipe, "-o", str(out)]
    for flag, value in (("--classes", classes), ("--size", size), ("--delta", delta)):
        if value is not None:
            words += [flag, str(value)]
    if not (out / "manifest.json").exists():
        done = subprocess.run(words, capture_output=True, text=True)
        if done.returncode:
            raise TrainerError(f"rendering {out} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return shlex.join(["fracbuild", *words[3:]])


def _finished_pretraining(out: Path) -> bool:
    config, metrics = out / runs.CONFIG, out / runs.METRICS
    if not (config.exists() and metrics.exists() and (out / runs.CHECKPOINT).exists()):
        return False
    total = json.loads(config.read_text()).get("total_steps")
    return any(m.get("step") == total for m in runs.read_metrics(metrics))


def _execute(run: Run, out: Path, progress: bool | None) -> None:
    from .finetuning import finetune, probe
    from .pretraining import pretrain

    where = out / run.name
    run.args["out"] = str(where)
    start = time.perf_counter()
    if run.kind == "pretrain":
        if not _finished_pretraining(where):
            resume = (where / runs.CHECKPOINT).exists()
            args = {k: v for k, v in run.args.items() if k not in ("data", "out")}
            pretrain(run.args["data"], where, resume=resume, progress=progress, **args)
        run.result = {"metrics": runs.read_metrics(where / runs.METRICS),
                      "config": json.loads((where / runs.CONFIG).read_text())}
    else:
        results = where / runs.RESULTS
        if not results.exists():
            func = finetune if run.kind == "finetune" else probe
            args = {k: v for k, v in run.args.items() if k != "out"}
            func(run.init, run.dataset, where, force=True, progress=progress, **args)
        run.result = json.loads(results.read_text())
    run.result["seconds"] = time.perf_counter() - start
    print(f"[experiment] {run.name}: done", file=sys.stderr, flush=True)


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
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run the study of ``size`` (``cpu``, ``gpu``; ``smoke``: the cpu plan with the smoke preset) and
    write its report and chart to ``report``. Settings left as None come from the size's plan
    (``size_plan``); ``preset`` replaces the plan's preset of every run (``smoke`` for a quick check).
    """
    plan = size_plan(size, shots=shots, digits_epochs=digits_epochs, mnist_epochs=mnist_epochs,
                     cifar_epochs=cifar_epochs)
    preset = preset or plan["preset"]
    randaugment = plan["randaugment"] if randaugment is None else randaugment
    probe_blocks = probe_blocks or plan["probe_blocks"]
    out, report, data_dir = Path(out), Path(report), Path(data_dir)
    if not Path(recipe).is_file():
        raise TrainerError(f"recipe {recipe} not found (run from the project root, or pass --recipe)")
    for d in (out, report, data_dir):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrainerError(f"cannot create {d}: {e.strerror or e}") from None
    started = time.perf_counter()
    classes = classes or plan["classes"]
    image_size = image_size or plan["size"]
    recipe_values = json.loads(Path(recipe).read_text())
    name = (f"experiment-L{classes or recipe_values['perturb']['classes']}-"
            f"{image_size or recipe_values['render']['size']}px")
    main = data_dir / name
    render_commands = [render(recipe, main, classes=classes, size=image_size)]
    # Pre-training variants: name -> (run name, data, settings on top of the preset).
    variants = {"1p-frac": ("pretrain-delta0.1", main, {})}
    if collapse:
        collapsed = data_dir / f"{name}-delta0.001"
        render_commands.append(render(recipe, collapsed, classes=classes, size=image_size, delta=0.001))
        variants["1p-frac Δ=0.001"] = ("pretrain-delta0.001", collapsed, {})
    if randaugment:
        variants["1p-frac + RandAugment"] = ("pretrain-randaugment", main, {"auto_augment": RANDAUGMENT})

    common = {"preset": preset, "seed": seed}
    budget = {**plan["pretrain"], **({"samples": pretrain_samples} if pretrain_samples else {})}
    pre = {name: Run("pretrain", run_name, {"data": str(path), **common, **extra, **budget})
           for name, (run_name, path, extra) in variants.items()}
    inits = {**{name: str(out / r.name / runs.CHECKPOINT) for name, r in pre.items()}, "scratch": "scratch"}
    tasks, skipped = _available(plan["tasks"])
    fine = [Run("finetune", f"finetune-{task.slug}-{_slug(init)}", {**common, **plan["finetune"], **task.args},
                path, task.spec, task.label)
            for task in tasks for init, path in inits.items()]
    probes = [Run("probe", f"probe-K{k}-{_slug(init)}", {**common, **plan["probe"], "blocks": k,
                                                          "shots": probe_shots, "epochs": probe_epochs},
                  inits[init], "mnist5k")
              for init in ("1p-frac", "scratch") for k in probe_blocks]
    for run in [*pre.values(), *fine, *probes]:
        _execute(run, out, progress)
    summary = {"size": size, "pretrain": pre, "finetune": fine, "probe": probes,
               "tasks": {t.label: (t.spec, t.args) for t in tasks}, "task_slugs": {t.label: t.slug for t in tasks},
               "skipped": skipped, "inits": inits, "render": render_commands,
               "seconds": time.perf_counter() - started,
               "settings": {"classes": classes, "size": image_size, "shots": shots, "probe_shots": probe_shots,
                            "seed": seed}}
    write_report(summary, report, name=plan["report"], chart=plan["chart"])
    return {"report": str(report / plan["report"]), "chart": str(report / plan["chart"]),
            "finetune": {r.name: r.result["top1"] for r in fine}, "probe": {r.name: r.result["top1"] for r in probes},
            "skipped": skipped}


def _available(tasks: list[Task]) -> tuple[list[Task], dict[str, str]]:
    """The tasks whose data can be loaded; an optional one that cannot (no download) is left out with its reason."""
    from .data.downstream import load_dataset

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


def _slug(init: str) -> str:
    return {"1p-frac": "1p-frac", "1p-frac Δ=0.001": "delta0.001", "1p-frac + RandAugment": "randaugment",
            "scratch": "scratch"}[init]


def _versions() -> str:
    from importlib.metadata import version

    names = ("torch", "timm", "webdataset", "fracbuild")
    return ", ".join(f"{n} {version(n)}" for n in names) + f", Python {platform.python_version()}"


LABELS = {"scratch": "scratch (no pre-training)", "1p-frac": "1p-frac, Δ = 0.1",
          "1p-frac Δ=0.001": "1p-frac, Δ = 0.001", "1p-frac + RandAugment": "1p-frac, Δ = 0.1, + RandAugment"}


def _machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} GPU), {os.cpu_count()} CPU cores"
    return f"{os.cpu_count()} CPU cores ({platform.machine()}), shared with other work"


def write_report(summary: dict[str, Any], report: Path, *, name: str = "REPORT.md", chart: str = "results.png") -> None:
    """The report (tables, commands, settings), a bar chart and the pre-training loss curves, from finished runs."""
    fine: list[Run] = summary["finetune"]
    tasks = list(summary["tasks"])
    inits = list(summary["inits"])
    gpu = summary.get("size") == "gpu"
    table = {(r.label, r.init): r.result for r in fine}
    curves = chart.replace("results", "pretraining")

    title = ("# 1p-frac at GPU scale: does pre-training on one fractal help?" if gpu else
             "# 1p-frac in miniature: does pre-training on one fractal help on this CPU?")
    lines = [title, "",
             "Written by `python -m trainer experiment` (`make experiment`); every number below comes from the runs "
             "it lists. One seed per run: differences of a few points are within run-to-run noise.", "",
             "## Fine-tuning (the paper's Table 2, and Table 5's Δ = 0.001)", "",
             "Top-1 (%) on the fixed test split: best over evaluated epochs (the paper's convention), last epoch in "
             "parentheses.", "",
             "| pre-training | " + " | ".join(tasks) + " |", "| --- | " + " | ".join("---:" for _ in tasks) + " |"]
    for init in inits:
        cells = []
        for task in tasks:
            r = table[(task, summary["inits"][init])]
            cells.append(f"{r['top1']:.1f} ({r['last']['top1']:.1f})")
        lines.append(f"| {LABELS.get(init, init)} | " + " | ".join(cells) + " |")
    scratch = {t: table[(t, "scratch")]["top1"] for t in tasks}
    lines += [""]
    for init in inits[:-1]:
        gains = {t: table[(t, summary["inits"][init])]["top1"] - scratch[t] for t in tasks}
        lines.append(f"- {init} − scratch: " + ", ".join(f"{t} {gains[t]:+.1f} points" for t in tasks) + ".")
    collapsed = summary["pretrain"].get("1p-frac Δ=0.001")
    table5 = collapsed is not None and _at_chance(collapsed)  # the control reproduces Table 5's collapse
    if table5:
        lines.append("- The Δ = 0.001 row is the paper's Table 5 collapse: classes that differ by 0.1 % of each "
                     "parameter cannot be told apart, pre-training learns nothing transferable, and the paper "
                     "fine-tunes such a body to 1.2 % on CIFAR-100 against scratch's 64.2 %. A row below scratch "
                     "here is that direction reproduced.")
    elif collapsed is not None:
        lines.append(f"- The Δ = 0.001 row is not the paper's Table 5 collapse: its pre-training loss fell to "
                     f"{collapsed.result['metrics'][-1]['loss']:.2f} (chance {_chance(collapsed):.2f}), so the "
                     "model told classes apart that differ by 0.1 % of each parameter, by the noise of each "
                     "image's drawing rather than by its shape.")
    for label, why in summary.get("skipped", {}).items():
        lines.append(f"- {label}: not run ({why}).")
    lines.append("")

    probes: list[Run] = summary["probe"]
    blocks = sorted({r.args["blocks"] for r in probes})
    lines += ["## Linear probe (the paper's Figure 3)", "",
              f"Frozen patch embedding and first K blocks, linear classifier on their tokens pooled to 4 x 4; mnist5k, "
              f"{summary['settings']['probe_shots']} images per class; best top-1 (%).", "",
              "| pre-training | " + " | ".join(f"K = {k}" for k in blocks) + " |",
              "| --- | " + " | ".join("---:" for _ in blocks) + " |"]
    for init in ("1p-frac", "scratch"):
        row = {r.args["blocks"]: r.result["top1"] for r in probes if r.init == summary["inits"][init]}
        lines.append(f"| {init} | " + " | ".join(f"{row[k]:.1f}" for k in blocks) + " |")

    gap = [frac_probe - scratch_probe for frac_probe, scratch_probe in zip(
        *([r.result["top1"] for r in sorted(probes, key=lambda r: r.args["blocks"]) if r.init == summary["inits"][i]]
          for i in ("1p-frac", "scratch")), strict=True)]
    lines += ["", f"1p-frac − scratch, mean over K: {sum(gap) / len(gap):+.1f} points; at K = {blocks[0]} "
              f"{gap[0]:+.1f}, at K = {blocks[-1]} {gap[-1]:+.1f} (the paper: the gap grows with depth).", ""]
    first = next(iter(summary["pretrain"].values())).result["config"]
    samples = first["total_steps"] * first["batch_size"]
    paper = 240_000 * 256  # REFERENCE.md: 80,000 epochs of 3 steps at batch 256
    lines += ["## How far this is from the paper", "",
              f"- Pre-training saw {samples:,} samples ({first['num_classes']} classes, {first['img_size']} px, "
              f"{first['total_steps']:,} steps); the paper's saw {paper:,} (1000 classes, 224 px, 240,000 "
              f"steps of 256): {paper / samples:,.0f} times more."]
    if gpu:
        lines += ["- Pre-training follows the paper's recipe (`paper` preset: its augmentation, Mixup/CutMix, AdamW "
                  "lr 1e-3 x batch / 512, cosine) for that many samples only.",
                  "- Fine-tuning uses one short budget for every initialisation (AdamW, light augmentation; see "
                  "Settings), not the paper's 1000-epoch SGD recipe."]
    else:
        lines += ["- The `cpu` preset leaves out random crops, RandAugment, random erasing and Mixup/CutMix, which "
                  "kept the loss at chance here (crops for 19,200 samples, the others for 8,000; see the README and "
                  "REPORT-cpu-diagnosis.md), and the images are rendered at the 32 px the model sees where the "
                  "paper renders 512 px for 224; the paper's Table 9 finds crops and mixing matter most for "
                  "transfer.",
                  "- The downstream sets are digits at 32 px with a few hundred images and short budgets; a ViT from "
                  "scratch is a weak but fast-learning baseline there, while the paper fine-tunes for up to 1000 "
                  "epochs on CIFAR-100 and ImageNet-100."]
    lines += ["- One seed per run."
              + (" The Δ = 0.001 row is a model whose pre-training loss never left chance (Table 5's collapse), so "
                 "it measures what a pre-trained but uninformative body does to fine-tuning."
                 if table5 else ""), ""]
    lines += ["## Pre-training", "", "| run | data | steps | samples | final loss | samples/s | minutes |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for label, run in summary["pretrain"].items():
        cfg, metrics = run.result["config"], run.result["metrics"]
        seconds = _pretrain_seconds(run)
        samples = cfg["total_steps"] * cfg["batch_size"]
        lines.append(f"| {label} | {cfg['dataset']['samples']} images, {cfg['num_classes']} classes | "
                     f"{cfg['total_steps']} | {samples} | {metrics[-1]['loss']:.3f} | "
                     f"{samples / max(seconds, 1e-9):.0f} | {seconds / 60:.1f} |")
    lines += ["", f"Loss at the start ≈ ln {first['num_classes']} = "
              f"{math.log(first['num_classes']):.2f} (chance).", "", f"![pre-training]({curves})", ""]

    lines += ["## Commands", "", "```sh", *summary["render"]]
    for run in [*summary["pretrain"].values(), *fine, *probes]:
        lines.append(run.command())
    lines += ["```", "", "## Settings", "",
              f"Machine: {_machine()}; {_versions()}. "
              f"The runs took {_minutes(summary):.0f} minutes in all (pre-training "
              f"{sum(_pretrain_seconds(r) for r in summary['pretrain'].values()) / 60:.0f}).", "",
              "Presets (`trainer/presets.py`) hold every setting; `config.json` in each run directory has the "
              "effective values. The ones that matter here:", ""]
    c = first
    lines.append(
        f"- pre-training (`{c['preset']}`): {c['model']} with {c['model_kwargs']} at {c['img_size']} px, "
        f"batch {c['batch_size']}, {c['opt']} lr {c['lr']:g} (cosine, {c['warmup_steps']} warm-up steps), "
        f"weight decay {c['weight_decay']}, RandomResizedCrop {c['scale']}, flips h {c['hflip']} v {c['vflip']}, "
        f"RandAugment {c['auto_augment']}, mixup {c['mixup']} / cutmix {c['cutmix']}, smoothing {c['smoothing']}"
        + (f", input {c.get('input') or c['data_path']}." if c.get("input") or c.get("data_path") else "."))
    if "1p-frac + RandAugment" in summary["pretrain"]:
        lines.append(f"- `1p-frac + RandAugment`: the same on the same data with the recipe's RandAugment "
                     f"`{RANDAUGMENT}` added (its intensity operations show the model bright pixels, which the "
                     "fractals, gray 127 on black, never have).")
    lines.append(_loader_note(c))
    for r in fine[:: len(inits)]:
        s = r.result["settings"]
        decay = f", layer decay {s['layer_decay']}" if s.get("layer_decay") else ""
        lines.append(f"- fine-tuning on {r.label} (`{s['preset']}`): {s['dataset']['train']} training / "
                     f"{s['dataset']['test']} test images at {s['img_size']} px, {s['epochs']:g} epochs = "
                     f"{s['total_steps']} steps of {s['batch_size_used']}, {s['opt']} lr {s['lr']:g}{decay}, weight "
                     f"decay {s['weight_decay']}, crops {s['scale']}, smoothing {s['smoothing']}, RandAugment "
                     f"{s['auto_augment']}, mixup {s['mixup']}; the same for every initialisation.")
    s = probes[0].result["settings"]
    lines.append(f"- probes: {s['dataset']['train']} training images, {s['epochs']:g} epochs, SGD lr {s['lr']:g}, "
                 "no weight decay.")
    lines += ["", f"![results]({chart})", ""]
    report.mkdir(parents=True, exist_ok=True)
    (report / name).write_text("\n".join(lines))
    _chart(summary, report / chart)
    plot_pretraining({label: r.result["metrics"] for label, r in summary["pretrain"].items()},
                     report / curves, batch=first["batch_size"])


def plot_pretraining(curves: dict[str, list[dict]], path: Path, *, batch: int) -> None:
    """Pre-training loss against samples seen, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, metrics in curves.items():
        points = [(m["step"] * batch, m["loss"]) for m in metrics if "loss" in m]
        ax.plot(*zip(*points, strict=True), label=label)
    ax.set(xlabel="samples seen", ylabel="training loss", title="pre-training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _loader_note(config: dict[str, Any]) -> str:
    """Whether these runs' batches mixed the whole dataset: with several loader workers, the stream before
    its per-pass shares and rebatching across workers drew every batch from one worker's share."""
    workers = config.get("workers_per_process", 1)
    affected = ("drew each batch from one worker's share; the loader now rebatches across workers, rerun them"
                if workers > 1 else "drew every batch from the whole dataset, as the reference does")
    return (f"- pre-training loader: {workers} worker{'s' if workers != 1 else ''} per process, so these runs "
            f"{affected}. Runs with several workers made before the loader rebatched across them (every GPU run "
            "with the default 8) drew each batch of 256 from one worker's share: one label residue mod 4 and "
            "about 170 distinct images of the 1000.")


def _chance(run: Run) -> float:
    return math.log(run.result["config"]["num_classes"])


def _at_chance(run: Run) -> bool:
    """Whether a pre-training ended within 2 % of the loss of a uniform guess (label smoothing keeps the
    loss of a learnt model far below that)."""
    return run.result["metrics"][-1]["loss"] > 0.98 * _chance(run)


def _pretrain_seconds(run: Run) -> float:
    return sum(m["time"] for m in _segments(run.result["metrics"]))


def _minutes(summary: dict[str, Any]) -> float:
    """Wall minutes of every run: pre-training from its metrics, the others from their files' times
    (config.json is written at the start of a run, results.json at its end)."""
    seconds = sum(_pretrain_seconds(r) for r in summary["pretrain"].values())
    for run in [*summary["finetune"], *summary["probe"]]:
        where = Path(run.args["out"])
        seconds += (where / runs.RESULTS).stat().st_mtime - (where / runs.CONFIG).stat().st_mtime
    return seconds / 60


def _segments(metrics: list[dict]) -> list[dict]:
    """The last record of each uninterrupted segment of a run (``time`` restarts on resume)."""
    ends = [a for a, b in zip(metrics, metrics[1:], strict=False) if b["time"] < a["time"]]
    return [*ends, metrics[-1]] if metrics else []


def _chart(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fine, probes = summary["finetune"], summary["probe"]
    tasks, inits = list(summary["tasks"]), list(summary["inits"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11 + len(tasks), 4), gridspec_kw={"width_ratios": [1.1, 1]})
    width = 0.8 / len(inits)
    colors = {"1p-frac": "tab:blue", "1p-frac Δ=0.001": "tab:gray", "1p-frac + RandAugment": "tab:cyan",
              "scratch": "tab:orange"}
    for i, init in enumerate(inits):
        vals = [next(r.result["top1"] for r in fine if r.label == t and r.init == summary["inits"][init])
                for t in tasks]
        bars = a.bar(np.arange(len(tasks)) + (i - (len(inits) - 1) / 2) * width, vals, width, label=init,
                     color=colors.get(init))
        a.bar_label(bars, fmt="%.1f", fontsize=8)
    a.set(xticks=range(len(tasks)), xticklabels=tasks, ylabel="best top-1 (%)", title="fine-tuning", ylim=(0, 100))
    a.legend(fontsize=8)
    blocks = sorted({r.args["blocks"] for r in probes})
    for i, init in enumerate(("1p-frac", "scratch")):
        vals = [next(r.result["top1"] for r in probes if r.args["blocks"] == k and r.init == summary["inits"][init])
                for k in blocks]
        bars = b.bar(np.arange(len(blocks)) + (i - 0.5) * 0.4, vals, 0.4, label=init, color=colors[init])
        b.bar_label(bars, fmt="%.0f", fontsize=7)
    b.set(xticks=range(len(blocks)), xticklabels=[f"K={k}" for k in blocks], ylabel="best top-1 (%)",
          title=f"linear probe, mnist5k ({summary['settings']['probe_shots']}/class)", ylim=(0, 100))
    b.legend(fontsize=8)
    for ax in (a, b):
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# The CPU diagnosis: why does a learnt 1p-frac body fine-tune below scratch? --------------------------------


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
    progress: bool | None = None,
) -> dict[str, Any]:
    """Pre-train for each of ``lengths`` (and Δ = 0.001 for ``collapse_samples``, default the shortest),
    fine-tune each and scratch on ``digits`` with the preset's budget, sweep that budget (lr, warm-up,
    layer decay) for the body of ``body_samples`` (default the shortest) and scratch, measure the
    bodies (``trainer.inspection``), and write their figures to ``diagnosis-runs.md`` (with ``diagnosis-length.png``,
    ``diagnosis-bodies.png`` and ``.json``)."""
    from . import inspection

    out, report, data_dir = Path(out), Path(report), Path(data_dir)
    for d in (out, report, data_dir):
        d.mkdir(parents=True, exist_ok=True)
    image_size = image_size or resolve("pretrain", preset)["img_size"]  # rendered at the size the model sees
    main = data_dir / f"experiment-L{classes}-{image_size}px"
    collapsed = data_dir / f"experiment-L{classes}-{image_size}px-delta0.001"
    rendered = [render(recipe, main, classes=classes, size=image_size),
                render(recipe, collapsed, classes=classes, size=image_size, delta=0.001)]
    common = {"preset": preset, "seed": seed}
    collapse_samples = collapse_samples or min(lengths)
    body_samples = body_samples or min(lengths)
    pre = {f"delta0.1-{_count(n)}": Run("pretrain", f"pretrain-delta0.1-{_count(n)}",
                                        {"data": str(main), **common, "samples": n}) for n in lengths}
    pre[f"delta0.001-{_count(collapse_samples)}"] = Run(
        "pretrain", f"pretrain-delta0.001-{_count(collapse_samples)}",
        {"data": str(collapsed), **common, "samples": collapse_samples})
    inits = {name: str(out / r.name / runs.CHECKPOINT) for name, r in pre.items()} | {"scratch": "scratch"}
    base = {**common, "epochs": digits_epochs}

    def tune(init: str, tag: str = "", **extra: Any) -> Run:
        return Run("finetune", f"finetune-digits-{init}{tag}", {**base, **extra}, inits[init], "digits",
                   tag or "preset")

    plain = {init: tune(init) for init in inits}
    body = f"delta0.1-{_count(body_samples)}"
    sweep = [tune(init, f"-lr{lr:g}", lr=lr) for init in (body, "scratch") for lr in lrs if lr != 1e-3]
    sweep += [tune(init, f"-warmup{w:g}", warmup_epochs=w) for init in (body, "scratch") for w in warmups]
    sweep += [tune(init, f"-ld{ld:g}", layer_decay=ld) for init in (body, "scratch") for ld in layer_decays]
    for run in [*pre.values(), *plain.values(), *sweep]:
        _execute(run, out, progress)
    measured = inspection.inspect([inits[n] for n in pre] + [f"init:{inits[body]}", "scratch"], dataset="digits",
                                images=images, preset=preset)
    names = {inits[n]: n for n in pre} | {f"init:{inits[body]}": "initialisation", "scratch": "scratch"}
    runs.write_json(report / "diagnosis-bodies.json", measured)
    inspection.plot(measured, str(report / "diagnosis-bodies.png"), labels=names)
    summary = {"pretrain": pre, "plain": plain, "sweep": sweep, "inits": inits, "body": body, "render": rendered,
               "bodies": measured, "names": names, "lengths": lengths}
    _write_diagnosis(summary, report)
    return {"report": str(report / "diagnosis-runs.md"),
            "finetune": {r.name: r.result["top1"] for r in [*plain.values(), *sweep]}}


def _budget(s: dict[str, Any]) -> str:
    return (f"{s['opt']} lr {s['lr']:g}, {s['warmup_epochs']:g} warm-up epochs, layer decay "
            f"{s.get('layer_decay') or 'off'}, {s['epochs']:g} epochs = {s['total_steps']} steps of "
            f"{s['batch_size_used']}")


def _count(samples: int) -> str:
    """15000 -> '15k', 64 -> '64'."""
    return f"{samples // 1000}k" if samples % 1000 == 0 else str(samples)


def _write_diagnosis(summary: dict[str, Any], report: Path) -> None:
    from . import inspection

    plain, sweep, pre = summary["plain"], summary["sweep"], summary["pretrain"]
    scratch = plain["scratch"].result["top1"]
    lines = ["# CPU diagnosis: the runs' figures", "",
             "Written by `python -m trainer experiment --diagnose` (REPORT-cpu-diagnosis.md reads them); every "
             "number comes from the runs it lists "
             "(digits, `cpu` preset, seed 0, one run each: a few points are noise).", "",
             "## Pre-training length", "",
             "| pre-training | samples | final loss | digits top-1 (%) | − scratch |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, run in pre.items():
        cfg, metrics = run.result["config"], run.result["metrics"]
        top1 = plain[name].result["top1"]
        lines.append(f"| {name} | {cfg['total_steps'] * cfg['batch_size']:,} | {metrics[-1]['loss']:.3f} | "
                     f"{top1:.1f} | {top1 - scratch:+.1f} |")
    lines += [f"| scratch | 0 | | {scratch:.1f} | |", "", "![gain against pre-training length](diagnosis-length.png)",
              "", "## Fine-tuning budget", "",
              f"The body {summary['body']} and scratch, each setting changed alone from the preset's "
              f"({_budget(plain['scratch'].result['settings'])}).", "",
              f"| setting | {summary['body']} | scratch | gap |", "| --- | ---: | ---: | ---: |"]
    rows: dict[str, dict[str, float]] = {"preset": {summary["body"]: plain[summary["body"]].result["top1"],
                                                    "scratch": scratch}}
    for run in sweep:
        init = "scratch" if run.init == "scratch" else summary["body"]
        rows.setdefault(run.label.lstrip("-"), {})[init] = run.result["top1"]
    for setting, row in rows.items():
        a, b = row.get(summary["body"]), row.get("scratch")
        lines.append(f"| {setting} | {a:.1f} | {b:.1f} | {a - b:+.1f} |")
    best = {init: max(rows, key=lambda k: rows[k][init]) for init in (summary["body"], "scratch")}
    lines += ["", f"Each at its best setting: {summary['body']} {rows[best[summary['body']]][summary['body']]:.1f} "
              f"({best[summary['body']]}), scratch {rows[best['scratch']]['scratch']:.1f} ({best['scratch']}): "
              f"{rows[best[summary['body']]][summary['body']] - rows[best['scratch']]['scratch']:+.1f} points."]
    lines += ["", "## What pre-training leaves in the body", "",
              f"On {summary['bodies']['images']} digits test images at {summary['bodies']['img_size']} px; "
              "'initialisation' is the weights the pre-training runs started from (same seed).", "",
              inspection.markdown_table(summary["bodies"], summary["names"]), "", "![bodies](diagnosis-bodies.png)", "",
              "## Commands", "", "```sh", *summary["render"]]
    lines += [r.command() for r in [*pre.values(), *plain.values(), *sweep]]
    lines += ["python -m trainer inspect " + " ".join(summary["bodies"]["models"]) + " --dataset digits", "```", ""]
    (report / "diagnosis-runs.md").write_text("\n".join(lines))
    _plot_length(summary, report / "diagnosis-length.png")


def _plot_length(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scratch = summary["plain"]["scratch"].result["top1"]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for prefix, label in (("delta0.1", "1p-frac, Δ = 0.1"), ("delta0.001", "1p-frac, Δ = 0.001")):
        points = sorted((r.result["config"]["total_steps"] * r.result["config"]["batch_size"],
                         summary["plain"][n].result["top1"] - scratch)
                        for n, r in summary["pretrain"].items() if n.startswith(prefix + "-"))
        ax.plot(*zip(*points, strict=True), marker="o", label=label)
    ax.axhline(0, color="gray", lw=1)
    ax.set(xscale="log", xlabel="pre-training samples", ylabel="digits top-1 − scratch (points)",
           title="fine-tuning gain over scratch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
