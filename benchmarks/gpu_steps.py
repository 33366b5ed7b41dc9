"""What the GPU check's sections work with: the ``Check`` (report, device, deadline), timed steps between two
device syncs, the trainer's training pieces made as its commands make them, and its commands run up to a deadline.

A throughput figure is the samples per second of ``--steps`` timed steps after ``WARMUP`` untimed ones, between two
device syncs, with fewer steps where the deadline would not leave time for them.
"""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from common import STOP_S

from trainer.distributed import Dist

WARMUP = 10  # untimed steps first: cudnn autotuning, compilation, loader start-up
# The least time a part of a section must have left to start (GPU, tiny run): a compiled model's first steps
# compile it, a training input decodes its data or starts its workers.
COMPILE_LEAST_S = 60
PART_LEAST_S = (15, 2)


@dataclass
class Check:
    """What a section works with: the report, the device, its deadline and the failures met so far."""

    report: Any  # gpu_check.Report
    out: Path
    data: Path
    steps: int
    d: Dist
    deadline: float
    failures: list[str] = field(default_factory=list)

    @property
    def tiny(self) -> bool:
        return self.d.device.type != "cuda"

    def left(self) -> float:
        return self.deadline - time.time()

    def part_fits(self, least: float | None = None) -> bool:
        return self.left() >= (least if least is not None else PART_LEAST_S[self.tiny])

    def attempt(self, what: str, fn: Callable, *args, **kwargs) -> Any:
        """``fn``'s result, or None after writing why it failed (the section goes on)."""
        start = time.time()
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 (a failure is a finding: say it and go on)
            traceback.print_exc()
            self.failures.append(what)
            self.report.failed(what, time.time() - start, e)
            return None
        finally:
            release(self.d)


def sync(d: Dist) -> None:
    if d.device.type == "cuda":
        torch.cuda.synchronize(d.device)


def release(d: Dist) -> None:
    gc.collect()
    if d.device.type == "cuda":
        torch.cuda.empty_cache()


def timed(check: Check, run_steps: Callable[[int], object], batch: int) -> tuple[float, int]:
    """``(samples/s, timed steps)`` of ``run_steps(k)`` (k steps of ``batch`` samples): ``WARMUP`` single steps,
    then up to ``--steps`` in one go, as many as fit in half the time the section has left at the slowest of the
    last three warm-up steps."""
    times = []
    for _ in range(WARMUP):
        start = time.perf_counter()
        run_steps(1)
        sync(check.d)
        times.append(time.perf_counter() - start)
    slowest = max(times[-3:])
    n = max(1, min(check.steps, int(check.left() / 2 / max(slowest, 1e-6))))
    sync(check.d)
    start = time.perf_counter()
    run_steps(n)
    sync(check.d)
    return n * batch / (time.perf_counter() - start), n


def trainer_steps(training, batches, batch: int, d: Dist) -> Callable[[int], object]:
    """``k`` steps of the trainer's own loop (``trainer.engine.train``) on ``batches``."""
    from trainer.engine import Steps, train

    def run_steps(k: int) -> None:
        train(training, batches, Steps(k, log_every=k), d=d, global_batch=batch, log=lambda record: None,
              progress=False)

    return run_steps


def drawn(batches, augment=None) -> Callable[[int], object]:
    """``k`` batches of an input alone, with the device augmentation they carry (the memory input's) applied."""
    def run_steps(k: int) -> None:
        for _ in range(k):
            batch = next(batches)
            if augment is not None:
                augment(batch["image"], batch["augment"])

    return run_steps


def preset(kind: str, check: Check, **overrides: Any) -> dict[str, Any]:
    from trainer.presets import resolve

    return resolve(kind, "smoke" if check.tiny else "paper", **overrides)


def pretraining(config: dict[str, Any], classes: int, samples: int | None, d: Dist):
    """The model and training pieces of a pre-training run, made as ``trainer.pretrain`` makes them."""
    from trainer.engine import create_training
    from trainer.models import create_model
    from trainer.optim import plan_run

    torch.manual_seed(config["seed"])
    net = create_model(config["model"], num_classes=classes, img_size=config["img_size"],
                       drop_path=config["drop_path"], model_kwargs=config["model_kwargs"]).to(d.device)
    plan = plan_run({**config, "samples": 10**9, "epochs": None}, samples, d.world)
    return create_training(net, config, plan, num_classes=classes, d=d), plan


def finetuning(config: dict[str, Any], classes: int, samples: int, d: Dist):
    """The model (resolved as ``trainer.finetune`` resolves it from scratch) and training pieces of a fine-tuning
    run."""
    from trainer.engine import create_training
    from trainer.models import architecture, create_downstream_model
    from trainer.optim import plan_run

    name, kwargs = architecture("scratch", config)
    config = {**config, "model": name, "model_kwargs": kwargs}
    torch.manual_seed(config["seed"])
    net = create_downstream_model("finetune", "scratch", name, kwargs, num_classes=classes,
                                  img_size=config["img_size"], drop_path=config["drop_path"], blocks=None).to(d.device)
    plan = plan_run(config, samples, d.world, fit_batch=True)
    return create_training(net, config, plan, num_classes=classes, d=d), plan, config


def synthetic_batch(config: dict[str, Any], classes: int, batch: int, d: Dist) -> dict[str, torch.Tensor]:
    size = config["img_size"]
    return {"image": torch.randn(batch, 3, size, size, device=d.device),
            "label": torch.randint(0, classes, (batch,), device=d.device)}


def command(words: list[str], until: float) -> tuple[float, str]:
    """``python -m trainer WORDS`` until ``until``: then asked to stop (SIGTERM: the trainer ends after its step,
    saving where it can), and killed a few seconds later. Returns its wall time and its last line of output."""
    start = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "trainer", *words], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace")
    stopped = False
    try:
        stdout, stderr = proc.communicate(timeout=max(1.0, until - time.time()))
    except subprocess.TimeoutExpired:
        stopped = True
        proc.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
    sys.stdout.write(stdout + stderr)
    lines = [line for line in (stdout + stderr).strip().splitlines() if line.strip()]
    if stopped:
        return time.time() - start, f"stopped at its deadline: {lines[-1] if lines else ''}"
    if proc.returncode:
        raise RuntimeError(f"exit status {proc.returncode}: {lines[-1] if lines else 'no output'}")
    return time.time() - start, stdout.strip().splitlines()[-1] if stdout.strip() else ""
