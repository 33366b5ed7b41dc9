"""The studies' charts: every run as a point, and each comparison's mean with its 95 % interval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from .stats import Interval

COLORS = {"1p-frac": "tab:blue", "1p-frac Δ=0.001": "tab:gray", "1p-frac + RandAugment": "tab:cyan",
          "scratch": "tab:orange"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pretraining(curves: Mapping[str, list[dict]], path: Path, *, batch: int,
                     colors: Mapping[str, str] | None = None) -> None:
    """Pre-training loss against samples seen, one line per run (``colors``: label -> colour)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, metrics in curves.items():
        points = [(m["step"] * batch, m["loss"]) for m in metrics if "loss" in m]
        ax.plot(*zip(*points, strict=True), label=label, color=(colors or {}).get(label), lw=1.2)
    ax.set(xlabel="samples seen", ylabel="training loss", title="pre-training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _strip(ax, x: float, values: Sequence[float], color: str | None, width: float) -> None:
    """The runs' values as points spread across ``width`` around ``x``."""
    n = len(values)
    offsets = [0.0] if n == 1 else [width * (i / (n - 1) - 0.5) for i in range(n)]
    ax.scatter([x + o for o in offsets], values, s=12, color=color, alpha=0.75, zorder=3, lw=0)


def _interval(ax, x: float, c: Interval, color: str | None) -> None:
    ax.errorbar([x], [c.mean], yerr=[[c.mean - c.low], [c.high - c.mean]], fmt="D", ms=5, color="black",
                mfc=color, capsize=4, zorder=4)


def plot_results(top1: Mapping[str, Mapping[str, Sequence[float]]],
                 diffs: Mapping[str, Mapping[str, Interval]], probe: Mapping[str, Interval], path: Path, *,
                 probe_title: str) -> None:
    """Three panels: every fine-tuning's top-1 by task and initialisation (``top1[task][init]``); each
    initialisation minus scratch, every paired difference and the mean with its interval
    (``diffs[task][init]``); the probe's 1p-frac minus scratch by depth (``probe[K label]``)."""
    plt = _pyplot()
    tasks = list(top1)
    inits = list(next(iter(top1.values())))
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(14 + len(tasks), 4.2), gridspec_kw={"width_ratios": [1.1, 1.1, 1]})
    width = 0.8 / len(inits)
    for i, init in enumerate(inits):
        for t, task in enumerate(tasks):
            x = t + (i - (len(inits) - 1) / 2) * width
            values = top1[task][init]
            a.bar(x, sum(values) / len(values), width * 0.9, color=COLORS.get(init), alpha=0.35,
                  label=init if t == 0 else None)
            _strip(a, x, values, COLORS.get(init), width * 0.6)
    a.set(xticks=range(len(tasks)), xticklabels=tasks, ylabel="best top-1 (%)", ylim=(0, 100),
          title="fine-tuning: every run, bar = mean")
    a.legend(fontsize=7)
    bodies = [i for i in inits if i != "scratch"]
    width = 0.8 / max(1, len(bodies))
    for i, init in enumerate(bodies):
        for t, task in enumerate(tasks):
            x = t + (i - (len(bodies) - 1) / 2) * width
            cmp = diffs[task][init]
            _strip(b, x, [v for row in cmp.per_seed for v in row], COLORS.get(init), width * 0.6)
            _interval(b, x, cmp, COLORS.get(init))
    b.axhline(0, color="gray", lw=1)
    b.set(xticks=range(len(tasks)), xticklabels=tasks, ylabel="top-1 − scratch (points)",
          title="paired differences, mean and 95 % interval")
    for i, cmp in enumerate(probe.values()):
        _strip(c, i, [v for row in cmp.per_seed for v in row], COLORS["1p-frac"], 0.4)
        _interval(c, i, cmp, COLORS["1p-frac"])
    c.axhline(0, color="gray", lw=1)
    c.set(xticks=range(len(probe)), xticklabels=list(probe), ylabel="1p-frac − scratch (points)", title=probe_title)
    for ax in (a, b, c):
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_length(gains: Mapping[str, Mapping[int, Interval]], path: Path) -> None:
    """The diagnosis: fine-tuning gain over scratch against pre-training length, one line per data
    (``gains[label][samples]``), each point's paired differences and interval."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, by_length in gains.items():
        xs = sorted(by_length)
        color = "tab:blue" if "0.1" in label else "tab:gray"
        ax.plot(xs, [by_length[x].mean for x in xs], marker="o", label=label, color=color)
        for x in xs:
            cmp = by_length[x]
            ax.errorbar([x], [cmp.mean], yerr=[[cmp.mean - cmp.low], [cmp.high - cmp.mean]], color=color, capsize=3)
            values = [v for row in cmp.per_seed for v in row]
            ax.scatter([x] * len(values), values, s=10, color=color, alpha=0.5, lw=0)
    ax.axhline(0, color="gray", lw=1)
    ax.set(xscale="log", xlabel="pre-training samples", ylabel="digits top-1 − scratch (points)",
           title="fine-tuning gain over scratch, 95 % intervals")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
