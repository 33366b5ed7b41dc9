"""``trainer.experiment``'s report: tables over seeds, each comparison with scratch as a mean paired difference
and its 95 % interval, the sentences those intervals support (``wording``), the commands and settings.

``compare`` is pure (finished runs' results in, comparisons out), so the wording can be checked on planted
numbers; ``write_report`` adds what only finished run directories know (loss curves, minutes, settings).
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import runs
from . import charts
from .grid import Run
from .stats import ABOVE, BELOW, BOOTSTRAP_SEED, CONFIDENCE, RESAMPLES, Interval, differences, interval
from .wording import UNDECIDED_WORDS, claim, points, trend

LABELS = {"scratch": "scratch", "1p-frac": "1p-frac, Δ = 0.1", "1p-frac Δ=0.001": "1p-frac, Δ = 0.001",
          "1p-frac + RandAugment": "1p-frac, Δ = 0.1, + RandAugment"}
# The paper's direction for a comparison (subject, baseline), with its figures (docs/reference.md). The probe has
# none: the paper's Figure 3 compares 1p-frac with ImageNet-1k pre-training, not with scratch.
PAPER = {("1p-frac", "scratch"): (ABOVE, "Table 2: 84.2 against scratch's 64.2 on CIFAR-100"),
         ("1p-frac Δ=0.001", "scratch"): (BELOW, "Table 5: Δ = 0.001 fine-tunes CIFAR-100 to 1.2, scratch 64.2"),
         ("1p-frac", "1p-frac Δ=0.001"): (ABOVE, "84.2 against 1.2 on CIFAR-100")}


@dataclass(frozen=True)
class Finding:
    """One comparison: ``subject`` minus ``baseline`` on ``where``."""

    subject: str
    baseline: str
    where: str
    interval: Interval
    paper: tuple[str, str] | None = None  # the paper's direction and figures, where it has one

    @property
    def sentence(self) -> str:
        return claim(LABELS.get(self.subject, self.subject), LABELS.get(self.baseline, self.baseline), self.where,
                     self.interval, self.paper)

    @property
    def verdict(self) -> str:
        return self.interval.verdict if self.interval.verdict in (ABOVE, BELOW) else UNDECIDED_WORDS


def _top1(group: list[Run]) -> dict[tuple[str, int | None, int], float]:
    return {(r.variant, r.pretrain_seed, r.finetune_seed): r.result["top1"] for r in group}


def compare(summary: dict[str, Any]) -> dict[str, Any]:
    """Every comparison of a finished (or planted) grid: each body minus scratch per task, Δ = 0.1 minus
    Δ = 0.001 (paired by both seeds), the probe's 1p-frac minus scratch per depth, its mean over depths and its
    change from the first depth to the last."""
    seeds, tune = summary["seeds"], summary["finetune_seeds"]
    bodies = [v for v in summary["variants"] if v != "scratch"]
    fine: list[Finding] = []
    for task in summary["tasks"]:
        top = _top1([r for r in summary["finetune"] if r.label == task])
        scratch = {f: top[("scratch", None, f)] for f in tune}
        grid = {v: {(s, f): top[(v, s, f)] for s in seeds for f in tune} for v in bodies}
        for v in bodies:
            fine.append(Finding(v, "scratch", task, interval(differences(grid[v], scratch, seeds, tune)),
                                PAPER.get((v, "scratch"))))
        if {"1p-frac", "1p-frac Δ=0.001"} <= set(bodies):
            d = differences(grid["1p-frac"], grid["1p-frac Δ=0.001"], seeds, tune)
            fine.append(Finding("1p-frac", "1p-frac Δ=0.001", task, interval(d), PAPER[("1p-frac", "1p-frac Δ=0.001")]))
    depths = sorted({r.args["blocks"] for r in summary["probe"]})
    per_depth = []
    for k in depths:
        top = _top1([r for r in summary["probe"] if r.args["blocks"] == k])
        scratch = {f: top[("scratch", None, f)] for f in tune}
        per_depth.append(differences({(s, f): top[("1p-frac", s, f)] for s in seeds for f in tune}, scratch,
                                     seeds, tune))
    probe = [Finding("1p-frac", "scratch", f"the probe at K = {k}", interval(d)) for k, d in zip(depths, per_depth,
                                                                                               strict=True)]
    if len(depths) > 1:
        probe.append(Finding("1p-frac", "scratch", "the probe, mean over K", interval(per_depth)))
    change = interval(per_depth, [-1.0, *[0.0] * (len(depths) - 2), 1.0]) if len(depths) > 1 else None
    return {"finetune": fine, "probe": probe, "depths": depths, "change": change}


def claims(found: dict[str, Any]) -> list[str]:
    """The sentences of 'In short': every comparison, in the words its interval supports."""
    lines = [f.sentence for f in found["finetune"]] + [f.sentence for f in found["probe"]]
    if found["change"] is not None:
        d = found["depths"]
        lines.append(trend("1p-frac, Δ = 0.1", "scratch", f"K = {d[0]}", f"K = {d[-1]}", found["change"]))
    return lines


def _per_seed(c: Interval, seeds: tuple[int, ...]) -> str:
    return "; ".join(f"seed {s}: " + " / ".join(points(v) for v in row) for s, row in zip(seeds, c.per_seed,
                                                                                         strict=True))


def _difference_rows(findings: list[Finding], seeds: tuple[int, ...], first: str) -> list[str]:
    lines = [f"| comparison | {first} | mean | 95 % interval | per pre-training seed (fine-tuning seeds in order) "
             "| verdict |", "| --- | --- | ---: | --- | --- | --- |"]
    for f in findings:
        c = f.interval
        lines.append(f"| {LABELS.get(f.subject, f.subject)} − {LABELS.get(f.baseline, f.baseline)} | "
                     f"{f.where.removeprefix('the probe, ').removeprefix('the probe at ')} | {points(c.mean)} | "
                     f"{points(c.low)} to {points(c.high)} | {_per_seed(c, seeds)} | {f.verdict} |")
    return lines


def _spread(values: list[float]) -> str:
    return f"{sum(values) / len(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def chance(run: Run) -> float:
    return math.log(run.result["config"]["num_classes"])


def at_chance(run: Run) -> bool:
    """Whether a pre-training ended within 2 % of the loss of a uniform guess (label smoothing keeps the
    loss of a learnt model far below that)."""
    return run.result["metrics"][-1]["loss"] > 0.98 * chance(run)


def _segments(metrics: list[dict]) -> list[dict]:
    """The last record of each uninterrupted segment of a run (``time`` restarts on resume)."""
    ends = [a for a, b in zip(metrics, metrics[1:], strict=False) if b["time"] < a["time"]]
    return [*ends, metrics[-1]] if metrics else []


def pretrain_seconds(run: Run) -> float:
    return sum(m["time"] for m in _segments(run.result["metrics"]))


def _minutes(pre: list[Run], others: list[Run]) -> float:
    """Wall minutes of every run: pre-training from its metrics, the others from their files' times
    (config.json is written at the start of a run, results.json at its end)."""
    seconds = sum(pretrain_seconds(r) for r in pre)
    for run in others:
        where = Path(run.args["out"])
        seconds += (where / runs.RESULTS).stat().st_mtime - (where / runs.CONFIG).stat().st_mtime
    return seconds / 60


def _versions() -> str:
    from importlib.metadata import version

    names = ("torch", "timm", "webdataset", "fracbuild")
    return ", ".join(f"{n} {version(n)}" for n in names) + f", Python {platform.python_version()}"


def _machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} GPU), {os.cpu_count()} CPU cores"
    return f"{os.cpu_count()} CPU cores ({platform.machine()}), shared with other work"


def method(seeds: tuple[int, ...], tune: tuple[int, ...]) -> str:
    """How the intervals are made, in the report's words."""
    return (f"Each body (pre-training seed i) fine-tuned with seed j is paired with scratch fine-tuned with the "
            f"same seed j (same batches and crops; scratch has no pre-training seed). A comparison is the mean of "
            f"its {len(seeds)} × {len(tune)} paired differences; its {CONFIDENCE * 100:.0f} % interval is a percentile "
            f"bootstrap ({RESAMPLES:,} replicates, seed {BOOTSTRAP_SEED}) that resamples the pre-training seeds, "
            "each with its fine-tuning seeds, and the fine-tuning seeds, one draw shared by body and scratch. "
            f"A gain or a loss is stated only where the whole interval lies above or below zero (and with two seeds "
            f"or more on each axis); otherwise the two are {UNDECIDED_WORDS}. With three seeds on an axis the "
            "interval can only be rough: it is about the range of the seeds' means, and it says nothing of "
            "seeds not drawn.")


def write_report(summary: dict[str, Any], report: Path, *, name: str = "REPORT.md",
                 chart: str = "results.png") -> dict[str, dict[str, Any]]:
    """The report, the results chart and the pre-training loss curves, from a finished grid; returns every
    comparison's mean, interval and verdict."""
    found = compare(summary)
    gpu = summary.get("size") == "gpu"
    seeds, tune, tasks = summary["seeds"], summary["finetune_seeds"], summary["tasks"]
    variants = summary["variants"]
    pre: dict[str, dict[int, Run]] = summary["pretrain"]
    pre_runs = [r for by_seed in pre.values() for r in by_seed.values()]
    curves = chart.replace("results", "pretraining")
    title = ("# 1p-frac at GPU scale: does pre-training on one fractal help?" if gpu else
             "# 1p-frac in miniature: does pre-training on one fractal help on this CPU?")
    lines = [title, "",
             "Written by `python -m trainer experiment` (`make experiment`); every number below comes from the runs "
             f"it lists: pre-training seeds {', '.join(map(str, seeds))} for every body, fine-tuning (and probe) "
             f"seeds {', '.join(map(str, tune))} for every body and for scratch.", "",
             "## In short", "", *(f"- {s}" for s in claims(found)), "", "## How the comparisons are made", "",
             method(seeds, tune), "",
             "## Fine-tuning (the paper's Table 2, and Table 5's Δ = 0.001)", "",
             "Top-1 (%) on the fixed test split, best over evaluated epochs (the paper's convention): mean over "
             "every run, lowest to highest in parentheses.", "",
             "| pre-training | runs | " + " | ".join(tasks) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in tasks) + " |"]
    for v in variants:
        group = [r for r in summary["finetune"] if r.variant == v]
        cells = [_spread([r.result["top1"] for r in group if r.label == t]) for t in tasks]
        count = len([r for r in group if r.label == tasks[0]])
        lines.append(f"| {LABELS.get(v, v)} | {count} | " + " | ".join(cells) + " |")
    lines += ["", *_difference_rows(found["finetune"], seeds, "task"), ""]
    collapsed = pre.get("1p-frac Δ=0.001")
    if collapsed:
        losses = ", ".join(f"{r.result['metrics'][-1]['loss']:.2f}" for r in collapsed.values())
        first = next(iter(collapsed.values()))
        if all(at_chance(r) for r in collapsed.values()):
            lines.append(f"- Every Δ = 0.001 pre-training stayed at chance (final losses {losses}; chance "
                         f"{chance(first):.2f}): the paper's Table 5 collapse, a body that learnt nothing "
                         "transferable.")
        else:
            lines.append(f"- The Δ = 0.001 pre-trainings are not the paper's Table 5 collapse: their losses fell to "
                         f"{losses} (chance {chance(first):.2f}), so the model told apart classes that differ by "
                         "0.1 % of each parameter, by the noise of each image's drawing rather than by its shape.")
    for label, why in summary.get("skipped", {}).items():
        lines.append(f"- {label}: not run ({why}).")
    depths = found["depths"]
    lines += ["", "## Linear probe (the paper's Figure 3)", "",
              "Frozen patch embedding and first K blocks, linear classifier on their tokens pooled to 4 x 4; mnist5k, "
              f"{summary['settings']['probe_shots']} images per class; best top-1 (%), mean over runs (lowest to "
              "highest). The paper's Figure 3 compares 1p-frac with ImageNet-1k pre-training, not with scratch "
              "(1p-frac ahead with 1–3 blocks on CIFAR-100), so it gives no direction for the rows below.", "",
              "| pre-training | runs | " + " | ".join(f"K = {k}" for k in depths) + " |",
              "| --- | ---: | " + " | ".join("---:" for _ in depths) + " |"]
    for v in ("1p-frac", "scratch"):
        group = [r for r in summary["probe"] if r.variant == v]
        cells = [_spread([r.result["top1"] for r in group if r.args["blocks"] == k]) for k in depths]
        lines.append(f"| {LABELS[v]} | {len(group) // len(depths)} | " + " | ".join(cells) + " |")
    lines += ["", *_difference_rows(found["probe"], seeds, "K"), ""]
    lines += _distance(pre_runs[0].result["config"], gpu, len(seeds))
    lines += ["## Pre-training", "", "| run | seed | data | steps | samples | final loss | samples/s | minutes |",
              "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for label, by_seed in pre.items():
        for s, run in by_seed.items():
            cfg, metrics = run.result["config"], run.result["metrics"]
            seconds = pretrain_seconds(run)
            samples = cfg["total_steps"] * cfg["batch_size"]
            lines.append(f"| {label} | {s} | {cfg['dataset']['samples']} images, {cfg['num_classes']} classes | "
                         f"{cfg['total_steps']} | {samples} | {metrics[-1]['loss']:.3f} | "
                         f"{samples / max(seconds, 1e-9):.0f} | {seconds / 60:.1f} |")
    first = pre_runs[0].result["config"]
    lines += ["", f"Loss at the start ≈ ln {first['num_classes']} = {math.log(first['num_classes']):.2f} (chance).",
              "", f"![pre-training]({curves})", "", "## Commands", "",
              f"The whole grid is `{summary['command']}` (finished runs are not repeated); it runs these:", "",
              "```sh", *summary["render"],
              *(r.command() for r in summary["order"]), "```", ""]
    others = [*summary["finetune"], *summary["probe"]]
    lines += ["## Settings", "", f"Machine: {_machine()}; {_versions()}. The runs took "
              f"{_minutes(pre_runs, others):.0f} minutes in all (pre-training "
              f"{sum(pretrain_seconds(r) for r in pre_runs) / 60:.0f}).", "",
              "Presets (`trainer/presets.py`) hold every setting; `config.json` in each run directory has the "
              "effective values. The ones that matter here:", "", *_settings(summary, first), "",
              f"![results]({chart})", ""]
    report.mkdir(parents=True, exist_ok=True)
    (report / name).write_text("\n".join(lines))
    _charts(summary, found, report / chart, report / curves, batch=first["batch_size"])
    return {f"{f.subject} − {f.baseline} | {f.where}": {"mean": f.interval.mean, "low": f.interval.low,
                                                        "high": f.interval.high, "verdict": f.verdict}
            for f in [*found["finetune"], *found["probe"]]}


def _distance(c: dict[str, Any], gpu: bool, seeds: int) -> list[str]:
    samples = c["total_steps"] * c["batch_size"]
    paper = 240_000 * 256  # docs/reference.md: 80,000 epochs of 3 steps at batch 256
    lines = ["## How far this is from the paper", "",
             f"- Pre-training saw {samples:,} samples ({c['num_classes']} classes, {c['img_size']} px, "
             f"{c['total_steps']:,} steps); the paper's saw {paper:,} (1000 classes, 224 px, 240,000 "
             f"steps of 256): {paper / samples:,.0f} times more."]
    if gpu:
        lines += ["- Pre-training follows the paper's recipe (`paper` preset: its augmentation, Mixup/CutMix, AdamW "
                  "lr 1e-3 x batch / 512, cosine) for that many samples only.",
                  "- Fine-tuning uses one short budget for every initialisation (AdamW, light augmentation; see "
                  "Settings), not the paper's 1000-epoch SGD recipe."]
    else:
        lines += ["- The `cpu` preset leaves out random crops, RandAugment, random erasing and Mixup/CutMix, which "
                  "kept the loss at chance here (crops for 19,200 samples, the others for 8,000; see docs/training.md "
                  "and REPORT-cpu-diagnosis.md), and the images are rendered at the 32 px the model sees where the "
                  "paper renders 512 px for 224; the paper's Table 9 finds crops and mixing matter most for "
                  "transfer.",
                  "- The downstream sets are digits at 32 px with a few hundred images and short budgets; a ViT from "
                  "scratch is a weak but fast-learning baseline there, while the paper fine-tunes for up to 1000 "
                  "epochs on CIFAR-100 and ImageNet-100."]
    lines.append(f"- {seeds} pre-training seed{'s' if seeds != 1 else ''} per body; the paper reports one run per "
                 "row.")
    return [*lines, ""]


def _settings(summary: dict[str, Any], c: dict[str, Any]) -> list[str]:
    lines = [f"- pre-training (`{c['preset']}`): {c['model']} with {c['model_kwargs']} at {c['img_size']} px, "
             f"batch {c['batch_size']}, {c['opt']} lr {c['lr']:g} (cosine, {c['warmup_steps']} warm-up steps), "
             f"weight decay {c['weight_decay']}, RandomResizedCrop {c['scale']}, flips h {c['hflip']} v {c['vflip']}, "
             f"RandAugment {c['auto_augment']}, mixup {c['mixup']} / cutmix {c['cutmix']}, smoothing {c['smoothing']}"
             + (f", input {c.get('input') or c['data_path']}." if c.get("input") or c.get("data_path") else ".")]
    if "1p-frac + RandAugment" in summary["pretrain"]:
        spec = next(iter(summary["pretrain"]["1p-frac + RandAugment"].values())).result["config"]["auto_augment"]
        lines.append(f"- `1p-frac + RandAugment`: the same on the same data with the recipe's RandAugment "
                     f"`{spec}` added (its intensity operations show the model bright pixels, which the "
                     "fractals, gray 127 on black, never have).")
    for task in summary["tasks"]:
        s = next(r for r in summary["finetune"] if r.label == task).result["settings"]
        decay = f", layer decay {s['layer_decay']}" if s.get("layer_decay") else ""
        lines.append(f"- fine-tuning on {task} (`{s['preset']}`): {s['dataset']['train']} training / "
                     f"{s['dataset']['test']} test images at {s['img_size']} px, {s['epochs']:g} epochs = "
                     f"{s['total_steps']} steps of {s['batch_size_used']}, {s['opt']} lr {s['lr']:g}{decay}, weight "
                     f"decay {s['weight_decay']}, crops {s['scale']}, smoothing {s['smoothing']}, RandAugment "
                     f"{s['auto_augment']}, mixup {s['mixup']}; the same for every initialisation.")
    s = summary["probe"][0].result["settings"]
    lines.append(f"- probes: {s['dataset']['train']} training images, {s['epochs']:g} epochs, SGD lr {s['lr']:g}, "
                 "no weight decay.")
    return lines


def _charts(summary: dict[str, Any], found: dict[str, Any], results: Path, curves: Path, *, batch: int) -> None:
    tasks, variants = summary["tasks"], summary["variants"]
    top1 = {t: {v: [r.result["top1"] for r in summary["finetune"] if r.label == t and r.variant == v]
                for v in variants} for t in tasks}
    diffs = {t: {f.subject: f.interval for f in found["finetune"] if f.where == t and f.baseline == "scratch"}
             for t in tasks}
    probe = {f"K={k}": f.interval for k, f in zip(found["depths"], found["probe"], strict=False)}
    charts.plot_results(top1, diffs, probe, results,
                        probe_title=f"linear probe, mnist5k ({summary['settings']['probe_shots']}/class)")
    lines = {f"{v} seed {s}": r.result["metrics"] for v, by_seed in summary["pretrain"].items()
             for s, r in by_seed.items()}
    colors = {f"{v} seed {s}": charts.COLORS.get(v, "black") for v, by_seed in summary["pretrain"].items()
              for s in by_seed}
    charts.plot_pretraining(lines, curves, batch=batch, colors=colors)


def table_findings(planned: Any) -> list[Finding]:
    """Every row of a finished paper-table plan minus scratch on each of its sets (and probe depths), paired by
    fine-tuning seed, with the paper's direction where the paper gives both numbers for that set."""
    table, seeds, tune = planned.table, planned.seeds, planned.finetune_seeds
    scratch = next((r.label for r in table.rows if r.scratch), "Scratch")
    paper = {r.label: r.paper for r in table.rows}
    found = []
    for where in dict.fromkeys(r.label for r in planned.downstream):
        top = _top1([r for r in planned.downstream if r.label == where])
        base = {f: top[(scratch, None, f)] for f in tune}
        column = where.split(", K = ")[0]
        for row in planned.pretrain:
            d = differences({(s, f): top[(row, s, f)] for s in seeds for f in tune}, base, seeds, tune)
            ours, theirs = paper.get(row, {}).get(column), paper.get(scratch, {}).get(column)
            direction = None
            if ours is not None and theirs is not None and ours != theirs:
                direction = (ABOVE if ours > theirs else BELOW,
                             f"Table {table.number}: {ours} against scratch's {theirs} on {column}")
            found.append(Finding(row, scratch, where, interval(d), direction))
    return found


def write_table_report(planned: Any, report: Path, *, name: str, renders: list[str], minutes: float
                       ) -> dict[str, dict[str, Any]]:
    """A paper table's report: the paper's numbers, ours over seeds beside them, every row minus scratch with its
    interval and the words it supports, what was not run and why, and the commands."""
    table, seeds, tune = planned.table, planned.seeds, planned.finetune_seeds
    found = table_findings(planned)
    wheres = list(dict.fromkeys(r.label for r in planned.downstream))
    scratch = next((r.label for r in table.rows if r.scratch), "Scratch")
    lines = [f"# Table {table.number} of the paper at size {planned.size}: {table.title}", "",
             f"Written by `python -m trainer experiment --table {table.number} --size {planned.size}` from the runs it "
             f"lists: pre-training seeds {', '.join(map(str, seeds))}, fine-tuning seeds "
             f"{', '.join(map(str, tune))}; {minutes:.0f} minutes.", "", "## In short", "",
             *(f"- {f.sentence}" for f in found), "", "## How the comparisons are made", "", method(seeds, tune), "",
             "## The paper's numbers", "", "Top-1 (%) as the paper prints it (ViT-Tiny unless the table says so).", "",
             "| row | " + " | ".join(table.columns) + " |",
             "| --- | " + " | ".join("---:" for _ in table.columns) + " |"]
    for row in table.rows:
        cells = ["–" if row.paper.get(c) is None else f"{row.paper[c]:.1f}" for c in table.columns]
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    lines += ["", "## Ours", "", "Top-1 (%), best over evaluated epochs: mean over every run, lowest to highest in "
              "parentheses" + ("; the paper's sets stand in as " + ", ".join(t.label for t in planned.tasks)
                               if planned.size == "cpu" else "") + ".", "",
              "| row | runs | " + " | ".join(wheres) + " |",
              "| --- | ---: | " + " | ".join("---:" for _ in wheres) + " |"]
    paper = {r.label: r.paper for r in table.rows}
    for label in [scratch, *planned.pretrain]:
        group = [r for r in planned.downstream if r.variant == label]
        cells = [_spread([r.result["top1"] for r in group if r.label == w]) for w in wheres]
        theirs = [paper[label].get(w) for w in wheres]  # on the paper's own sets (not the cpu stand-ins)
        cells = [c if p is None else f"{c}; paper {p:.1f}" for c, p in zip(cells, theirs, strict=True)]
        lines.append(f"| {label} | {len([r for r in group if r.label == wheres[0]])} | " + " | ".join(cells) + " |")
    lines += ["", *_difference_rows(found, seeds, "set"), ""]
    if planned.skipped:
        lines += ["## Not run here", "", *(f"- {k}: {v}." for k, v in planned.skipped.items()), ""]
    lines += ["## Commands", "", "```sh", *renders, *(r.command() for r in planned.order), "```", "",
              f"Machine: {_machine()}; {_versions()}.", ""]
    report.mkdir(parents=True, exist_ok=True)
    (report / name).write_text("\n".join(lines))
    return {f"{f.subject} − {f.baseline} | {f.where}": {"mean": f.interval.mean, "low": f.interval.low,
                                                        "high": f.interval.high, "verdict": f.verdict}
            for f in found}
