"""Pieces shared by pre-training and fine-tuning, all from timm: optimizer, schedule, mixup, losses,
mixed precision, EMA; and the step that uses them."""

from __future__ import annotations

import contextlib
import math
import signal
from collections.abc import Iterator
from typing import Any

import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .distributed import Dist
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


def create_optimizer(model: nn.Module, config: dict[str, Any], lr: float) -> torch.optim.Optimizer:
    """timm's optimizer; biases and norm weights get no weight decay (timm's default grouping), and with
    ``layer_decay`` each layer group its lr scale (timm's ``param_groups_layer_decay``; the scheduler applies it)."""
    try:
        return create_optimizer_v2(model, opt=config["opt"], lr=lr, weight_decay=config["weight_decay"],
                                   momentum=config["momentum"], layer_decay=config.get("layer_decay"))
    except (ValueError, AssertionError, KeyError) as e:
        raise TrainerError(f"cannot create optimizer {config['opt']!r}: {e}") from None


def create_scheduler(optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int,
                     rates: dict[str, float]) -> CosineLRScheduler:
    """Cosine decay per step from the peak to ``min_lr`` over the run, after a linear warm-up."""
    return CosineLRScheduler(optimizer, t_initial=max(1, total_steps), lr_min=rates["min_lr"],
                             warmup_t=warmup_steps, warmup_lr_init=rates["warmup_lr"], t_in_epochs=False)


def create_criterion(config: dict[str, Any], num_classes: int) -> tuple[Mixup | None, nn.Module]:
    """timm's Mixup/CutMix (which also smooths the labels) and the matching training loss.

    With mixing on, the targets are soft and the loss is soft-target cross-entropy: over the
    perturbation classes this is the paper's LPCE loss.
    """
    if config["mixup"] > 0 or config["cutmix"] > 0:
        mixup = Mixup(mixup_alpha=config["mixup"], cutmix_alpha=config["cutmix"], prob=1.0,
                      switch_prob=config["mixup_switch"], mode="batch", label_smoothing=config["smoothing"],
                      num_classes=num_classes)
        return mixup, SoftTargetCrossEntropy()
    if config["smoothing"] > 0:
        return None, LabelSmoothingCrossEntropy(smoothing=config["smoothing"])
    return None, nn.CrossEntropyLoss()


class Precision:
    """Automatic mixed precision: bf16 where the GPU supports it, fp16 with loss scaling otherwise."""

    def __init__(self, device: torch.device, enabled: bool | None):
        self.enabled = device.type == "cuda" if enabled is None else bool(enabled)
        if self.enabled and device.type == "cuda":
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            self.dtype = torch.bfloat16
        self.device = device
        scaling = self.enabled and self.dtype == torch.float16
        self.scaler = torch.amp.GradScaler(device.type, enabled=scaling)

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.") if self.enabled else "fp32"


def train_step(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, criterion: nn.Module,
               optimizer: torch.optim.Optimizer, precision: Precision, clip_grad: float | None) -> torch.Tensor:
    """One optimisation step; returns the loss as a detached tensor (read it only when logging:
    ``.item()`` on every step would make the GPU wait for the CPU)."""
    with precision.autocast():
        loss = criterion(model(images), targets)
    optimizer.zero_grad(set_to_none=True)
    precision.scaler.scale(loss).backward()
    if clip_grad:
        precision.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    precision.scaler.step(optimizer)
    precision.scaler.update()
    return loss.detach()


def check_finite(loss: float) -> None:
    if not math.isfinite(loss):
        raise TrainerError(f"the loss is {loss}: training diverged (try a lower --lr or --clip-grad)")


@contextlib.contextmanager
def stop_requests() -> Iterator[list[bool]]:
    """SIGINT/SIGTERM set a flag instead of raising, so that the loop can finish its step and save.

    A second Ctrl-C raises KeyboardInterrupt at once.
    """
    flag = [False]
    previous = {}

    def handler(signum, frame):
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def wrap(net: nn.Module, compile: bool, d: Dist) -> nn.Module:
    """``net`` compiled if ``compile``, and in DDP when there are several processes."""
    model = torch.compile(net) if compile else net
    if d.world > 1:
        model = DistributedDataParallel(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP and torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)
