"""trainer.engine: what the loop logs of its own speed, and how an epoch is counted."""

import pytest
import torch
from torch import nn

from trainer import engine
from trainer.distributed import Dist
from trainer.optim import plan_run


class Clock:
    """A ``time`` whose ``perf_counter`` moves only when told."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


class Stepping:
    """A ``Training`` whose steps take one second each on ``clock``."""

    def __init__(self, clock):
        self.clock, self.model = clock, nn.Linear(1, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)

    def step(self, batch, step):
        self.clock.now += 1.0
        return torch.tensor(1.0)


def test_samples_per_s_counts_the_training_steps_and_their_time_only(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(engine, "time", clock)

    def evaluate():  # evaluations (and checkpoints) take far longer than steps
        clock.now += 100.0
        return {"top1": 50.0}

    def save(step):
        clock.now += 30.0

    records = []
    # Evaluations after steps 2, 4, 6, ...: one inside every logging interval of 4 steps, one at its end.
    steps = engine.Steps(total=12, per_epoch=2, log_every=4, eval_every=1, save_every=3)
    summary = engine.train(Stepping(clock), ({"image": None, "label": None} for _ in range(12)), steps, d=Dist(),
                           global_batch=8, log=records.append, save=save, evaluate=evaluate, progress=False)
    logged = [r for r in records if "loss" in r]
    assert [r["step"] for r in logged] == [4, 8, 12]
    assert [r["samples_per_s"] for r in logged] == [8.0] * 3  # 8 samples a second, as the steps took
    assert summary["samples_per_s"] == pytest.approx(8.0)
    assert [r["epoch"] for r in records if "top1" in r] == [1, 2, 3, 4, 5, 6]


def test_an_epoch_of_passes_that_continue_is_a_fraction_of_steps():
    config = dict(batch_size=64, samples=None, epochs=10, warmup_epochs=2, lr=None, lr_base=1e-3,
                  warmup_lr_base=1e-6, min_lr_base=1e-5, mixup=0, cutmix=0)
    drop = plan_run({**config, "pass_end": "drop"}, 100, 1)
    assert (drop.steps_per_epoch, drop.total_steps, drop.warmup_steps) == (1, 10, 2)
    cont = plan_run({**config, "pass_end": "continue"}, 100, 1)
    assert (cont.steps_per_epoch, cont.total_steps, cont.warmup_steps) == (1.5625, 16, 3)
    # Evaluated after the steps in which a pass ends (every 100 samples), and at the end.
    steps = engine.Steps(total=cont.total_steps, per_epoch=cont.steps_per_epoch, eval_every=1)
    assert [s for s in range(1, 17) if steps.evaluates_after(s)] == [2, 4, 5, 7, 8, 10, 11, 13, 15, 16]
    assert steps.epoch(16) == 10.24
