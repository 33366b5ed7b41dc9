"""Optimisation: the plan of a run (batch per process, steps, warm-up, learning rates), timm's optimizer and
its cosine schedule. Pre-training and fine-tuning plan their runs with the same rules."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from timm.optim import create_optimizer_v2, param_groups_layer_decay, param_groups_weight_decay
from timm.scheduler import CosineLRScheduler
from torch import nn

from .errors import TrainerError


def learning_rates(config: dict[str, Any], global_batch: int) -> dict[str, float]:
    """Peak, warm-up start and final lr: the recipe's per-512 rates scaled to the global batch.

    An explicit ``lr`` sets the peak; warm-up start and floor keep their ratios to it.
    """
    scale = global_batch / 512
    base = config["lr_base"] * scale
    peak = config["lr"] if config.get("lr") is not None else base
    ratio = peak / base
    return {"lr": peak, "warmup_lr": config["warmup_lr_base"] * scale * ratio,
            "min_lr": config["min_lr_base"] * scale * ratio}


def mixes(config: dict[str, Any]) -> bool:
    """Whether the run mixes samples (Mixup or CutMix), which pairs them up within a batch."""
    return config["mixup"] > 0 or config["cutmix"] > 0


def batch_per_process(config: dict[str, Any], world: int, *, data_samples: int | None = None) -> int:
    """The batch of one process: the global batch split over ``world``, even when samples are mixed.

    ``data_samples``: a dataset this small shrinks the batch to fit it (fine-tuning on a few shots), to an
    even size when mixing; a batch given odd with mixing is an error.
    """
    batch = config["batch_size"]
    if batch % world:
        raise TrainerError(f"--batch-size {batch} does not split over {world} processes")
    per = batch // world
    if data_samples is not None and data_samples // world < per:
        per = data_samples // world
        per -= per % 2 if mixes(config) else 0
        if per < 1:
            raise TrainerError(f"--batch-size {batch}: {data_samples} training images do not reach {world} processes")
    elif mixes(config) and per % 2:
        raise TrainerError(f"mixup/cutmix need an even batch size per process, got {per}")
    return per


@dataclass(frozen=True)
class RunPlan:
    """Everything derived from the settings and the data's size: what ``config.json`` records of a run."""

    total_steps: int
    steps_per_epoch: float | None  # a whole number where a pass drops its last partial batch
    warmup_steps: int
    batch_per_process: int
    processes: int
    lr: float
    warmup_lr: float
    min_lr: float

    @property
    def global_batch(self) -> int:
        return self.batch_per_process * self.processes

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_run(config: dict[str, Any], samples: int | None, world: int, *, fit_batch: bool = False) -> RunPlan:
    """Steps, batch per process, warm-up and learning rates of a run over ``samples`` per pass (None: unknown).

    An epoch is one pass over the data. With ``pass_end`` ``drop`` (the reference's: a pass's last partial batch
    is dropped) it is ``samples // global batch`` steps; with ``continue`` (passes run on into each other) it is
    ``samples / global batch`` steps, a fraction: the epochs a log reports are then samples seen / samples, and
    ``epochs`` of training see ``epochs x samples`` samples (to a step). The length is ``samples`` (samples seen)
    where given, else ``epochs``; the warm-up is ``warmup_epochs``, else 5 % of the run. ``fit_batch``: shrink
    the batch to a dataset smaller than it (``batch_per_process``).
    """
    per = batch_per_process(config, world, data_samples=samples if fit_batch else None)
    batch = per * world
    if not samples:
        per_epoch = None
    elif config.get("pass_end", "drop") == "continue":
        per_epoch = samples / batch
    else:
        per_epoch = max(1, samples // batch)
    if config.get("samples") is not None:
        total = math.ceil(config["samples"] / batch)
    elif config["epochs"] is not None:
        if per_epoch is None:
            raise TrainerError("the data's sample count is unknown (no manifest.json): give --samples, not --epochs")
        total = max(1, round(config["epochs"] * per_epoch))
    else:
        raise TrainerError("give --epochs or --samples")
    if config["warmup_epochs"] is not None:
        if per_epoch is None:
            raise TrainerError("--warmup-epochs needs the data's sample count (no manifest.json)")
        warmup = round(config["warmup_epochs"] * per_epoch)
    else:
        warmup = round(0.05 * total)
    return RunPlan(total, per_epoch, min(warmup, total), per, world, **learning_rates(config, batch))


def create_optimizer(model: nn.Module, config: dict[str, Any], lr: float, **options: Any) -> torch.optim.Optimizer:
    """timm's optimizer; biases and norm weights get no weight decay (timm's default grouping), and with
    ``layer_decay`` each layer group its lr scale (timm's ``param_groups_layer_decay``; the scheduler applies it).

    The model's no-weight-decay list (a ViT's ``pos_embed`` and ``cls_token``) is honoured unless
    ``embed_decay``: the reference handed the DDP-wrapped model to timm, which then found no such list.
    ``fused`` (a setting): torch's fused kernel where torch has one for the optimizer (AdamW, Adam, SGD, on CPUs and
    GPUs), the multi-tensor one otherwise. ``options`` go to the optimizer.
    """
    groups, layer_decay = None, config.get("layer_decay")
    if config.get("embed_decay") and config["weight_decay"]:
        def groups(m: nn.Module):
            if layer_decay is not None:
                return param_groups_layer_decay(m, weight_decay=config["weight_decay"], no_weight_decay_list=(),
                                                layer_decay=layer_decay)
            return param_groups_weight_decay(m, config["weight_decay"], no_weight_decay_list=())
    def create(**extra: Any) -> torch.optim.Optimizer:
        return create_optimizer_v2(model, opt=config["opt"], lr=lr, weight_decay=config["weight_decay"],
                                   momentum=config["momentum"], param_group_fn=groups, layer_decay=layer_decay,
                                   **options, **extra)

    try:
        if config.get("fused"):
            try:  # torch's fused kernel (one launch for every tensor), where torch has one for this optimizer
                return create(fused=True)
            except (TypeError, RuntimeError, ValueError):
                pass
        return create()
    except (ValueError, AssertionError, KeyError) as e:
        raise TrainerError(f"cannot create optimizer {config['opt']!r}: {e}") from None


def create_scheduler(optimizer: torch.optim.Optimizer, plan: RunPlan) -> CosineLRScheduler:
    """Cosine decay per step from the peak to ``min_lr`` over the run, after a linear warm-up."""
    return CosineLRScheduler(optimizer, t_initial=max(1, plan.total_steps), lr_min=plan.min_lr,
                             warmup_t=plan.warmup_steps, warmup_lr_init=plan.warmup_lr, t_in_epochs=False)
