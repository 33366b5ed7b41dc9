"""Pieces shared by pre-training and fine-tuning, all from timm: optimizer, schedule, mixup, losses,
mixed precision, EMA; and the step that uses them."""

from __future__ import annotations

import contextlib
import math
import random
import signal
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2, param_groups_layer_decay, param_groups_weight_decay
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
    ``layer_decay`` each layer group its lr scale (timm's ``param_groups_layer_decay``; the scheduler applies it).

    The model's no-weight-decay list (a ViT's ``pos_embed`` and ``cls_token``) is honoured unless
    ``embed_decay``: the reference handed the DDP-wrapped model to timm, which then found no such list.
    """
    groups, layer_decay = None, config.get("layer_decay")
    if config.get("embed_decay") and config["weight_decay"]:
        def groups(m: nn.Module):
            if layer_decay is not None:
                return param_groups_layer_decay(m, weight_decay=config["weight_decay"], no_weight_decay_list=(),
                                                layer_decay=layer_decay)
            return param_groups_weight_decay(m, config["weight_decay"], no_weight_decay_list=())
    try:
        return create_optimizer_v2(model, opt=config["opt"], lr=lr, weight_decay=config["weight_decay"],
                                   momentum=config["momentum"], param_group_fn=groups, layer_decay=layer_decay)
    except (ValueError, AssertionError, KeyError) as e:
        raise TrainerError(f"cannot create optimizer {config['opt']!r}: {e}") from None


def create_scheduler(optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int,
                     rates: dict[str, float]) -> CosineLRScheduler:
    """Cosine decay per step from the peak to ``min_lr`` over the run, after a linear warm-up."""
    return CosineLRScheduler(optimizer, t_initial=max(1, total_steps), lr_min=rates["min_lr"],
                             warmup_t=warmup_steps, warmup_lr_init=rates["warmup_lr"], t_in_epochs=False)


class ChunkedMixup(Mixup):
    """timm's Mixup/CutMix applied to every ``chunk`` samples of a batch on its own: one lambda and one
    Mixup-or-CutMix choice per chunk, samples paired within it. The reference mixes each GPU's batch
    (32 of the 256) on its own; ``chunk`` 0 mixes the whole batch at once."""

    def __init__(self, *, chunk: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        self.chunk = chunk

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mix = super().__call__
        if not self.chunk or len(x) <= self.chunk:
            return mix(x, target)
        parts = [mix(xs, ts) for xs, ts in zip(x.split(self.chunk), target.split(self.chunk), strict=True)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def create_criterion(config: dict[str, Any], num_classes: int) -> tuple[ChunkedMixup | None, nn.Module]:
    """timm's Mixup/CutMix (which also smooths the labels) and the matching training loss.

    With mixing on, the targets are soft and the loss is soft-target cross-entropy: over the
    perturbation classes this is the paper's LPCE loss.
    """
    if config["mixup"] > 0 or config["cutmix"] > 0:
        mixup = ChunkedMixup(chunk=config.get("mix_chunk", 0), mixup_alpha=config["mixup"],
                             cutmix_alpha=config["cutmix"], prob=1.0, switch_prob=config["mixup_switch"], mode="batch",
                             label_smoothing=config["smoothing"], num_classes=num_classes)
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

    A second Ctrl-C raises KeyboardInterrupt at once; a second SIGTERM does not (a scheduler or
    torchrun may send more than one, and kills outright when it stops waiting). Once a stop is
    asked for, a loader worker's death no longer raises inside the step (torch's SIGCHLD handler
    would): the loader reports it at the next batch instead, where the loop can still save.
    """
    flag = [False]
    previous = {}

    def handler(signum, frame):
        if flag[0] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not flag[0]:
            with contextlib.suppress(ValueError, AttributeError):  # no SIGCHLD off POSIX
                previous.setdefault(signal.SIGCHLD, signal.signal(signal.SIGCHLD, _ignore))
        flag[0] = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _ignore(signum, frame) -> None:
    """A Python-level no-op handler (SIG_DFL set while a signal is pending makes CPython warn)."""


def _leave_to_parent(signum, frame) -> None:
    # The next signal acts as usual: multiprocessing stops a worker with SIGTERM when it must.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def leave_stops_to_parent(worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: the worker outlives the first SIGINT/SIGTERM.

    Ctrl-C, ``timeout``, Slurm and torchrun signal the whole process group; the main process
    answers by finishing its step and saving, and it needs its workers' batches to get there.
    It then stops them itself.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _leave_to_parent)


class _Batches:
    """An iterator over a loader that can be let go of while its name is still bound."""

    def __init__(self, loader: Iterable):
        self.it: Iterator | None = iter(loader)

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> Any:
        return next(self.it)


@contextlib.contextmanager
def loader_batches(loader: Iterable) -> Iterator[Iterator]:
    """The loader's batches; on leaving, its workers are stopped at once (not when a traceback that
    holds the loop's frame is dropped: workers outlive the first stop signal, so the interpreter's
    exit, which sends them only that, could not stop them)."""
    batches = _Batches(loader)
    try:
        yield batches
    finally:
        batches.it = None


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random state a training step draws from (torch, CUDA, numpy for Mixup, random, and the
    memory path's ``generator``), as tensors and numbers that a ``weights_only`` checkpoint holds."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos,
                                                       has_gauss, gauss],
             "random": [version, torch.tensor(internal, dtype=torch.int64), gauss_next]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Put back what ``rng_state`` saved, so that a resumed run draws what the uninterrupted run drew."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["random"]
    random.setstate((version, tuple(internal.tolist()), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


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
