"""``trainer.experiment``: the paper's Table 2 (and Table 5's collapse, and Figure 3) in miniature.

Renders a small 1p-frac dataset (and its Δ = 0.001 twin) with the ``fracbuild`` command, pre-trains
with the ``cpu`` preset (and, on the same data, with the recipe's RandAugment added), fine-tunes on
``mnist5k`` (few shots per class) and ``digits`` against scratch with the same budget, probes
K = 1..depth frozen blocks, and writes ``REPORT.md`` and a chart. Every run lands in its own
directory under ``out``; a run already finished is not run again, and an interrupted pre-training
resumes, so the whole experiment can be restarted at any point.
"""

from __future__ import annotations

import json
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

DEFAULT_BLOCKS = (1, 2, 3, 4, 5, 6)  # K = 1..depth of the cpu model (the paper: 1, 2, 3, 4, 6 of 12)
RANDAUGMENT = "rand-m9-mstd0.5-inc1"  # the recipe's, which the cpu preset leaves out


@dataclass
class Run:
    """One command of the experiment: its library call and the equivalent command line."""

    kind: str
    name: str
    args: dict[str, Any]
    init: str | None = None
    dataset: str | None = None
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


def render(recipe: str, out: Path, *, classes: int, size: int, delta: float | None = None) -> str:
    """Render with the ``fracbuild`` command (trainer reads shards; it does not import the renderer)."""
    words = [sys.executable, "-m", "fracbuild", "render", recipe, "-o", str(out), "--classes", str(classes),
             "--size", str(size)]
    if delta is not None:
        words += ["--delta", str(delta)]
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
    report: str | os.PathLike = "experiments",
    recipe: str = "manifests/1p-frac.json",
    data_dir: str | os.PathLike = "shards",
    classes: int = 100,
    size: int = 128,
    pretrain_samples: int | None = None,
    collapse: bool = True,
    randaugment: bool = True,
    shots: int = 10,
    digits_epochs: int = 10,
    mnist_epochs: int = 100,
    probe_blocks: tuple[int, ...] = DEFAULT_BLOCKS,
    probe_shots: int = 50,
    probe_epochs: int = 10,
    preset: str = "cpu",
    seed: int = 0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run the miniature study and write ``REPORT.md`` and ``results.png`` to ``report``.

    Every run uses ``preset`` (``cpu``; ``smoke`` for a quick check of the whole chain).
    """
    out, report, data_dir = Path(out), Path(report), Path(data_dir)
    if not Path(recipe).is_file():
        raise TrainerError(f"recipe {recipe} not found (run from the project root, or pass --recipe)")
    for d in (out, report, data_dir):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrainerError(f"cannot create {d}: {e.strerror or e}") from None
    started = time.perf_counter()
    main = data_dir / f"experiment-L{classes}-{size}px"
    render_commands = [render(recipe, main, classes=classes, size=size)]
    # Pre-training variants: name -> (run name, data, settings on top of the preset).
    variants = {"1p-frac": ("pretrain-delta0.1", main, {})}
    if collapse:
        collapsed = data_dir / f"experiment-L{classes}-{size}px-delta0.001"
        render_commands.append(render(recipe, collapsed, classes=classes, size=size, delta=0.001))
        variants["1p-frac Δ=0.001"] = ("pretrain-delta0.001", collapsed, {})
    if randaugment:
        variants["1p-frac + RandAugment"] = ("pretrain-randaugment", main, {"auto_augment": RANDAUGMENT})

    common = {"preset": preset, "seed": seed}
    budget = {"samples": pretrain_samples} if pretrain_samples else {}
    pre = {name: Run("pretrain", run_name, {"data": str(path), **common, **extra, **budget})
           for name, (run_name, path, extra) in variants.items()}
    inits = {**{name: str(out / r.name / runs.CHECKPOINT) for name, r in pre.items()}, "scratch": "scratch"}
    tasks = {f"mnist5k ({shots}-shot)": ("mnist5k", {"shots": shots, "epochs": mnist_epochs, "eval_every": 10}),
             "digits": ("digits", {"epochs": digits_epochs})}
    fine = [Run("finetune", f"finetune-{task.split()[0]}-{_slug(init)}", {**common, **args}, path, spec)
            for task, (spec, args) in tasks.items() for init, path in inits.items()]
    probes = [Run("probe", f"probe-K{k}-{_slug(init)}", {**common, "blocks": k, "shots": probe_shots,
                                                          "epochs": probe_epochs},
                  inits[init], "mnist5k")
              for init in ("1p-frac", "scratch") for k in probe_blocks]
    for run in [*pre.values(), *fine, *probes]:
        _execute(run, out, progress)
    summary = {"pretrain": pre, "finetune": fine, "probe": probes, "tasks": tasks, "inits": inits,
               "render": render_commands, "seconds": time.perf_counter() - started,
               "settings": {"classes": classes, "size": size, "shots": shots, "probe_shots": probe_shots,
                            "seed": seed}}
    write_report(summary, report)
    return {"report": str(report / "REPORT.md"), "chart": str(report / "results.png"),
            "finetune": {r.name: r.result["top1"] for r in fine}, "probe": {r.name: r.result["top1"] for r in probes}}


def _slug(init: str) -> str:
    return {"1p-frac": "1p-frac", "1p-frac Δ=0.001": "delta0.001", "1p-frac + RandAugment": "randaugment",
            "scratch": "scratch"}[init]


def _versions() -> str:
    from importlib.metadata import version

    names = ("torch", "timm", "webdataset", "fracbuild")
    return ", ".join(f"{n} {version(n)}" for n in names) + f", Python {platform.python_version()}"


def write_report(summary: dict[str, Any], report: Path) -> None:
    """``REPORT.md`` (tables, commands, settings) and ``results.png`` (bars) from finished runs."""
    fine: list[Run] = summary["finetune"]
    tasks = list(summary["tasks"])
    inits = list(summary["inits"])
    table = {(r.dataset, r.init): r.result for r in fine}
    specs = [summary["tasks"][t][0] for t in tasks]

    lines = ["# 1p-frac in miniature: does pre-training on one fractal help on this CPU?", "",
             "Written by `python -m trainer experiment` (`make experiment`); every number below comes from the runs "
             "it lists. One seed per run: differences of a few points are within run-to-run noise.", "",
             "## Fine-tuning (the paper's Table 2, and Table 5's Δ = 0.001)", "",
             "Top-1 (%) on the fixed test split: best over evaluated epochs (the paper's convention), last epoch in "
             "parentheses.", "",
             "| pre-training | " + " | ".join(tasks) + " |", "| --- | " + " | ".join("---:" for _ in tasks) + " |"]
    for init in inits:
        cells = []
        for spec in specs:
            r = table[(spec, summary["inits"][init])]
            cells.append(f"{r['top1']:.1f} ({r['last']['top1']:.1f})")
        label = {"scratch": "scratch (no pre-training)", "1p-frac": "1p-frac, Δ = 0.1",
                 "1p-frac Δ=0.001": "1p-frac, Δ = 0.001",
                 "1p-frac + RandAugment": "1p-frac, Δ = 0.1, + RandAugment"}.get(init, init)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    scratch = {spec: table[(spec, "scratch")]["top1"] for spec in specs}
    lines += [""]
    for init in inits[:-1]:
        gains = {s: table[(s, summary["inits"][init])]["top1"] - scratch[s] for s in specs}
        lines.append(f"- {init} − scratch: " + ", ".join(
            f"{t} {gains[s]:+.1f} points" for t, s in zip(tasks, specs, strict=True)) + ".")
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
    lines += ["", f"1p-frac − scratch, mean over K: {sum(gap) / len(gap):+.1f} points.", ""]
    first = next(iter(summary["pretrain"].values())).result["config"]
    samples = first["total_steps"] * first["batch_size"]
    paper = 240_000 * 256  # REFERENCE.md: 80,000 epochs of 3 steps at batch 256
    lines += ["## How far this is from the paper", "",
              f"- Pre-training saw {samples:,} samples ({first['num_classes']} classes, {first['img_size']} px, "
              f"{first['total_steps']:,} steps); the paper's saw {paper:,} (1000 classes, 224 px, 240,000 "
              f"steps of 256): {paper / samples:,.0f} times more.",
              "- The `cpu` preset leaves out RandAugment, random erasing and Mixup/CutMix, which kept the loss at "
              "chance for the first 8,000 samples here (see the README); the paper's Table 9 finds crops and "
              "mixing matter most for transfer.",
              "- The downstream sets are digits at 32 px with a few hundred images and short budgets; a ViT from "
              "scratch is a weak but fast-learning baseline there, while the paper fine-tunes for up to 1000 "
              "epochs on CIFAR-100 and ImageNet-100.",
              "- One seed per run; the Δ = 0.001 row is a model whose pre-training loss never left chance "
              "(Table 5's collapse), so it measures what a pre-trained but uninformative body does to "
              "fine-tuning.", ""]
    lines += ["## Pre-training", "", "| run | data | steps | samples | final loss | samples/s | minutes |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, run in summary["pretrain"].items():
        cfg, metrics = run.result["config"], run.result["metrics"]
        seconds = _pretrain_seconds(run)
        samples = cfg["total_steps"] * cfg["batch_size"]
        lines.append(f"| {name} | {cfg['dataset']['samples']} images, {cfg['num_classes']} classes | "
                     f"{cfg['total_steps']} | {samples} | {metrics[-1]['loss']:.3f} | "
                     f"{samples / max(seconds, 1e-9):.0f} | {seconds / 60:.1f} |")
    lines += ["", f"Loss at the start ≈ ln {first['num_classes']} = "
              f"{__import__('math').log(first['num_classes']):.2f} (chance).", ""]

    lines += ["## Commands", "", "```sh", *summary["render"]]
    for run in [*summary["pretrain"].values(), *fine, *probes]:
        lines.append(run.command())
    lines += ["```", "", "## Settings", "",
              f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}), shared with other work; {_versions()}. "
              f"The runs took {_minutes(summary):.0f} minutes in all (pre-training "
              f"{sum(_pretrain_seconds(r) for r in summary['pretrain'].values()) / 60:.0f}).", "",
              "Presets (`trainer/presets.py`) hold every setting; `config.json` in each run directory has the "
              "effective values. The ones that matter here:", ""]
    c = first
    lines.append(
        f"- pre-training (`{c['preset']}`): {c['model']} with {c['model_kwargs']} at {c['img_size']} px, "
        f"batch {c['batch_size']}, {c['opt']} lr {c['lr']:g} (cosine, {c['warmup_steps']} warm-up steps), "
        f"weight decay {c['weight_decay']}, RandomResizedCrop {c['scale']}, flips h {c['hflip']} v {c['vflip']}, "
        f"RandAugment {c['auto_augment']}, mixup {c['mixup']} / cutmix {c['cutmix']}, smoothing {c['smoothing']}.")
    if "1p-frac + RandAugment" in summary["pretrain"]:
        lines.append(f"- `1p-frac + RandAugment`: the same on the same data with the recipe's RandAugment "
                     f"`{RANDAUGMENT}` added (its intensity operations show the model bright pixels, which the "
                     "fractals, gray 127 on black, never have).")
    lines.append(_loader_note(c))
    for r in fine[:: len(inits)]:
        s = r.result["settings"]
        lines.append(f"- fine-tuning on {r.dataset} (`{s['preset']}`): {s['dataset']['train']} training / "
                     f"{s['dataset']['test']} test images, {s['epochs']:g} epochs = {s['total_steps']} steps of "
                     f"{s['batch_size_used']}, {s['opt']} lr {s['lr']:g}, weight decay {s['weight_decay']}, "
                     f"crops {s['scale']}, smoothing {s['smoothing']}, RandAugment {s['auto_augment']}, mixup "
                     f"{s['mixup']}; the same for every initialisation.")
    s = probes[0].result["settings"]
    lines.append(f"- probes: {s['dataset']['train']} training images, {s['epochs']:g} epochs, SGD lr {s['lr']:g}, "
                 "no weight decay.")
    lines += ["", "![results](results.png)", ""]
    report.mkdir(parents=True, exist_ok=True)
    (report / "REPORT.md").write_text("\n".join(lines))
    _chart(summary, report / "results.png")


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
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1.1, 1]})
    width = 0.8 / len(inits)
    colors = {"1p-frac": "tab:blue", "1p-frac Δ=0.001": "tab:gray", "1p-frac + RandAugment": "tab:cyan",
              "scratch": "tab:orange"}
    for i, init in enumerate(inits):
        vals = [next(r.result["top1"] for r in fine if r.dataset == summary["tasks"][t][0]
                     and r.init == summary["inits"][init]) for t in tasks]
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
