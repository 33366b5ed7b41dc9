"""``make pretrain``'s decisions: which preset, which dataset (rendered once, if missing), which launcher.

With GPUs: the ``paper`` preset on the default dataset, as one plain process on one GPU and under
``trainer.launch`` (torchrun) on several. Without: the ``cpu`` preset, on the default recipe rendered at the size
the cpu model sees (shrinking the 512 px speckle to 32 px averages its classes apart: docs/training.md). A run
already in the run directory is resumed. ``plan`` decides, so a test can read the decisions; ``main`` carries
them out.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from . import runs
from .presets import resolve


@dataclass(frozen=True)
class DefaultPretrain:
    preset: str
    data: Path  # the dataset pre-trained on
    size: int | None  # the image size it is rendered at (None: the recipe's)
    command: list[str]  # the pre-training's arguments to python


def plan(recipe: str, data: str | os.PathLike, out: str | os.PathLike, *, gpus: int) -> DefaultPretrain:
    """What ``make pretrain`` runs with ``gpus`` GPUs, pre-training ``recipe``'s dataset (in ``data``, or beside
    it at the cpu size) into ``out``."""
    data = Path(data)
    if gpus > 0:
        preset, size = "paper", None
        launch = ["-m", "trainer.launch", "--standalone", "--nproc_per_node", str(gpus)] if gpus > 1 else []
    else:
        preset, size, launch = "cpu", resolve("pretrain", "cpu")["img_size"], []
        data = data.with_name(f"{data.name}-{size}px")
    resume = ["--resume"] if (Path(out) / runs.CHECKPOINT).exists() else []
    command = [*launch, "-m", "trainer", "pretrain", "--data", str(data), "--out", str(out), "--preset", preset,
               *resume]
    return DefaultPretrain(preset, data, size, command)


def main(recipe: str, data: str | os.PathLike, out: str | os.PathLike) -> None:
    """Render the planned dataset if it is missing, then become the pre-training process (its exit status and
    its handling of a stop signal are the trainer's own)."""
    import torch

    from .experiments.grid import render

    chosen = plan(recipe, data, out, gpus=torch.cuda.device_count())
    if not (chosen.data / "manifest.json").exists():
        print(f"+ {render(recipe, chosen.data, size=chosen.size)}", file=sys.stderr, flush=True)
    print(f"+ python {shlex.join(chosen.command)}", file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, *chosen.command])
