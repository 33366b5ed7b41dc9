"""The CPU diagnosis's figures (``diagnosis-runs.md``): pre-training length and fine-tuning budget against
scratch over seeds, with intervals and the words they support, and what pre-training leaves in the body."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import charts
from .grid import Run
from .report import PAPER, Finding
from .stats import Interval, differences, interval
from .wording import points


def _values(group: list[Run]) -> dict:
    """{(pre-training seed, fine-tuning seed): top-1} of a body's runs, {fine-tuning seed: top-1} of scratch's."""
    return {(r.finetune_seed if r.pretrain_seed is None else (r.pretrain_seed, r.finetune_seed)): r.result["top1"]
            for r in group}


def _mean(group: list[Run]) -> float:
    return sum(r.result["top1"] for r in group) / len(group)


def _gap(body: list[Run], scratch: list[Run], seeds: tuple[int, ...], tune: tuple[int, ...]) -> Interval:
    return interval(differences(_values(body), _values(scratch), seeds, tune))


def _budget(s: dict[str, Any]) -> str:
    return (f"{s['opt']} lr {s['lr']:g}, {s['warmup_epochs']:g} warm-up epochs, layer decay "
            f"{s.get('layer_decay') or 'off'}, {s['epochs']:g} epochs = {s['total_steps']} steps of "
            f"{s['batch_size_used']}")


def _cells(c: Interval, verdict: str) -> str:
    return f"{points(c.mean)} | {points(c.low)} to {points(c.high)} | {verdict}"


def compare(summary: dict[str, Any]) -> dict[str, Any]:
    """Every body and every budget setting against scratch on digits (pure: finished runs' results in)."""
    seeds, tune, plain = summary["seeds"], summary["finetune_seeds"], summary["plain"]
    lengths = {name: Finding(name, "scratch", "digits", _gap(plain[name], plain["scratch"], seeds, tune),
                             PAPER.get(("1p-frac Δ=0.001" if name.startswith("delta0.001") else "1p-frac", "scratch")))
               for name in summary["pretrain"]}
    body = summary["body"]
    budget = {"preset": lengths[body]} | {
        tag: Finding(body, "scratch", f"digits ({tag})", _gap(row[body], row["scratch"], seeds, tune))
        for tag, row in summary["sweep"].items()}
    return {"lengths": lengths, "budget": budget}


def write_diagnosis(summary: dict[str, Any], report: Path) -> dict[str, dict[str, Any]]:
    from .. import inspection

    found = compare(summary)
    plain, pre, body = summary["plain"], summary["pretrain"], summary["body"]
    seeds, tune = summary["seeds"], summary["finetune_seeds"]
    scratch = plain["scratch"]
    lines = ["# CPU diagnosis: the runs' figures", "",
             "Written by `python -m trainer experiment --diagnose` (REPORT-cpu-diagnosis.md reads them); every "
             f"number comes from the runs it lists (digits, `cpu` preset; pre-training seeds "
             f"{', '.join(map(str, seeds))}, fine-tuning seeds {', '.join(map(str, tune))}). Differences are paired "
             "by fine-tuning seed and their 95 % intervals made as in REPORT.md ('How the comparisons are made').",
             "", "## In short", "", *(f"- {f.sentence}" for f in found["lengths"].values()), "",
             "## Pre-training length", "",
             "| pre-training | samples | final loss per seed | digits top-1 (%), mean | − scratch | 95 % interval | "
             "verdict |", "| --- | ---: | --- | ---: | ---: | --- | --- |"]
    for name, by_seed in pre.items():
        cfg = next(iter(by_seed.values())).result["config"]
        losses = " / ".join(f"{r.result['metrics'][-1]['loss']:.3f}" for r in by_seed.values())
        f = found["lengths"][name]
        lines.append(f"| {name} | {cfg['total_steps'] * cfg['batch_size']:,} | {losses} | {_mean(plain[name]):.1f} | "
                     f"{_cells(f.interval, f.verdict)} |")
    lines += [f"| scratch | 0 | | {_mean(scratch):.1f} | | | |", "",
              "![gain against pre-training length](diagnosis-length.png)", "", "## Fine-tuning budget", "",
              f"The body {body} and scratch, each setting changed alone from the preset's "
              f"({_budget(scratch[0].result['settings'])}); top-1 (%), mean over runs.", "",
              f"| setting | {body} | scratch | gap | 95 % interval | verdict |",
              "| --- | ---: | ---: | ---: | --- | --- |"]
    means = {"preset": (_mean(plain[body]), _mean(scratch))} | {
        tag: (_mean(row[body]), _mean(row["scratch"])) for tag, row in summary["sweep"].items()}
    for tag, f in found["budget"].items():
        lines.append(f"| {tag} | {means[tag][0]:.1f} | {means[tag][1]:.1f} | {_cells(f.interval, f.verdict)} |")
    best = {i: max(means, key=lambda k: means[k][i]) for i in (0, 1)}
    lines += ["", f"Each at its best mean: {body} {means[best[0]][0]:.1f} ({best[0]}), scratch "
              f"{means[best[1]][1]:.1f} ({best[1]}).", "", "## What pre-training leaves in the body", "",
              f"On {summary['bodies']['images']} digits test images at {summary['bodies']['img_size']} px, the bodies "
              f"of pre-training seed {seeds[0]}; 'initialisation' is the weights the pre-training runs started from "
              "(same seed).", "", inspection.markdown_table(summary["bodies"], summary["names"]), "",
              "![bodies](diagnosis-bodies.png)", "", "## Commands", "", "```sh", *summary["render"]]
    lines += [r.command() for by_seed in pre.values() for r in by_seed.values()]
    lines += [r.command() for group in plain.values() for r in group]
    lines += [r.command() for row in summary["sweep"].values() for group in row.values() for r in group]
    lines += ["python -m trainer inspect " + " ".join(summary["bodies"]["models"]) + " --dataset digits", "```", ""]
    (report / "diagnosis-runs.md").write_text("\n".join(lines))
    gains: dict[str, dict[int, Interval]] = {}
    for name, by_seed in pre.items():
        cfg = next(iter(by_seed.values())).result["config"]
        label = "1p-frac, Δ = 0.001" if name.startswith("delta0.001") else "1p-frac, Δ = 0.1"
        gains.setdefault(label, {})[cfg["total_steps"] * cfg["batch_size"]] = found["lengths"][name].interval
    charts.plot_length(gains, report / "diagnosis-length.png")
    return {f"{f.subject} − scratch | {f.where}": {"mean": f.interval.mean, "low": f.interval.low,
                                                   "high": f.interval.high, "verdict": f.verdict}
            for f in [*found["lengths"].values(), *found["budget"].values()]}
