"""One run of a study: its library call, its command line, and running it unless it has finished.

Every run lands in its own directory; a finished one is read back instead of run again, and an interrupted
pre-training resumes, so a study can be restarted at any point.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import runs
from ..errors import TrainerError


@dataclass
class Run:
    """One command of a study: its library call and the equivalent command line."""

    kind: str
    name: str
    args: dict[str, Any]
    init: str | None = None
    dataset: str | None = None
    label: str | None = None  # the downstream task's column (or, in the diagnosis, the setting)
    variant: str | None = None  # which initialisation: "scratch", "1p-frac", ...
    pretrain_seed: int | None = None  # the body's pre-training seed (None: scratch, or a pre-training itself)
    finetune_seed: int | None = None
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
           delta: float | None = None, instances: int | None = None) -> str:
    """Render with the ``fracbuild`` command (trainer reads shards; it does not import the renderer) unless
    ``out`` holds a dataset; ``None`` keeps the recipe's value. Returns the command line."""
    words = [sys.executable, "-m", "fracbuild", "render", recipe, "-o", str(out)]
    for flag, value in (("--classes", classes), ("--instances", instances), ("--size", size), ("--delta", delta)):
        if value is not None:
            words += [flag, str(value)]
    if not (out / "manifest.json").exists():
        done = subprocess.run(words, capture_output=True, text=True)
        if done.returncode:
            raise TrainerError(f"rendering {out} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return shlex.join(["fracbuild", *words[3:]])


def finished_pretraining(out: Path) -> bool:
    config, metrics = out / runs.CONFIG, out / runs.METRICS
    if not (config.exists() and metrics.exists() and (out / runs.CHECKPOINT).exists()):
        return False
    total = json.loads(config.read_text()).get("total_steps")
    return any(m.get("step") == total for m in runs.read_metrics(metrics))


def execute(run: Run, out: Path, progress: bool | None) -> None:
    """Run ``run`` into ``out / run.name`` unless it has finished there, and read its results."""
    from ..finetuning import finetune, probe
    from ..pretraining import pretrain

    where = out / run.name
    run.args["out"] = str(where)
    start = time.perf_counter()
    if run.kind == "pretrain":
        if not finished_pretraining(where):
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


def count(samples: int) -> str:
    """15000 -> '15k', 64 -> '64'."""
    return f"{samples // 1000}k" if samples % 1000 == 0 else str(samples)


def seed_range(first: int, n: int, what: str) -> tuple[int, ...]:
    """``n`` consecutive seeds from ``first``; one clear error for a count below one."""
    if n < 1:
        raise TrainerError(f"--{what} must be at least 1, got {n}")
    return tuple(range(first, first + n))
