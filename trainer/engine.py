"""The training loop that pre-training and fine-tuning share: the pieces a run trains with (timm's model,
optimizer, schedule, Mixup and loss, EMA, mixed precision), one optimisation step, the loop over a run's
steps (logging, checkpoints, evaluations, stopping on a signal) and the evaluation."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from timm.utils import ModelEmaV3
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import distributed
from .distributed import Dist
from .errors import TrainerError
from .loss import Mixing, create_criterion
from .optim import RunPlan, create_optimizer, create_scheduler
from .signals import stop_requests


class Precision:
    """Automatic mixed precision: bf16 where the GPU has it natively, fp16 with loss scaling otherwise."""

    def __init__(self, device: torch.device, enabled: bool | None):
        self.enabled = device.type == "cuda" if enabled is None else bool(enabled)
        if self.enabled and device.type == "cuda":
            native = torch.cuda.is_bf16_supported(including_emulation=False)
            self.dtype = torch.bfloat16 if native else torch.float16
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


def compiles(setting: bool | None, device: torch.device) -> bool:
    """Whether a run compiles its step: as set, or (None) where there is a GPU."""
    return device.type == "cuda" if setting is None else bool(setting)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP and torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


@dataclass
class Training:
    """What a run trains with: the model as it is stepped (in DDP under several processes), the optimizer and its
    lr schedule, mixed precision, the input's device augmentation (if its batches need it), Mixup/CutMix and the
    loss, the weights' EMA and gradient clipping.

    One step: ``forward_loss`` (augmentation, mixing, forward and loss: one ``torch.compile`` graph when
    compiling, its backward compiled with it), the backward pass, then the optimizer (fused where the settings
    ask). Every random number of the augmentation and the mixing is drawn before, as tensors on the device: the
    compiled graph takes them as inputs, and draws nothing but the model's own (drop path) and the erased noise.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    precision: Precision
    criterion: nn.Module
    mixup: Mixing | None = None
    ema: ModelEmaV3 | None = None
    clip_grad: float | None = None
    augment: nn.Module | None = None
    img_size: int = 0
    compiled: bool = False
    compile_backend: str = "inductor"

    def __post_init__(self):
        self.forward_loss = self._forward_loss
        if self.compiled:
            self.forward_loss = torch.compile(self._forward_loss, fullgraph=True, backend=self.compile_backend)

    @property
    def net(self) -> nn.Module:
        return unwrap(self.model)

    def _forward_loss(self, images: torch.Tensor, labels: torch.Tensor, augment: dict[str, torch.Tensor] | None,
                      mix: dict[str, torch.Tensor] | None) -> torch.Tensor:
        if augment is not None:
            images = self.augment(images, augment)
        targets = labels
        if mix is not None:
            images, targets = self.mixup.apply(images, labels, mix)
        with self.precision.autocast():
            return self.criterion(self.model(images), targets)

    def step(self, batch: dict[str, Any], step: int) -> torch.Tensor:
        """One optimisation step on a batch, then the schedule and the EMA at step ``step`` (counted from 1); returns
        the loss as a detached tensor (read it only when logging: ``.item()`` on every step would make the GPU wait
        for the CPU)."""
        images, labels = batch["image"], batch["label"]
        mix = self.mixup.draw(len(labels), self.img_size, labels.device) if self.mixup is not None else None
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.forward_loss(images, labels, batch.get("augment"), mix)
        scaler = self.precision.scaler
        scaler.scale(loss).backward()
        if self.clip_grad:
            scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad)
        scaler.step(self.optimizer)
        scaler.update()
        self.scheduler.step_update(step)
        if self.ema is not None:
            self.ema.update(self.model, step=step)
        return loss.detach()

    def state_dict(self) -> dict[str, Any]:
        state = {"state_dict": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.precision.scaler.state_dict()}
        if self.ema is not None:
            state["state_dict_ema"] = self.ema.module.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.precision.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["state_dict_ema"])  # as saved: the averaged model's weights


def create_training(net: nn.Module, config: dict[str, Any], plan: RunPlan, *, num_classes: int, d: Dist,
                    state: dict[str, Any] | None = None, augment: nn.Module | None = None) -> Training:
    """The pieces to train ``net`` with a run's settings and plan; ``state`` (a checkpoint) restores them
    before the model is put in DDP. ``augment``: the input's device augmentation, for batches that carry its
    parameters (``batch["augment"]``)."""
    backend = config.get("compile_backend") or "inductor"
    if compiles(config["compile"], d.device) and backend not in torch._dynamo.list_backends(exclude_tags=()):
        raise TrainerError(f"unknown --compile-backend {backend!r}; torch has "
                           f"{', '.join(torch._dynamo.list_backends(exclude_tags=()))}")
    if d.device.type == "cuda" and config.get("tf32"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    ema = ModelEmaV3(net, decay=config["ema"]) if config.get("ema", 0) > 0 else None
    optimizer = create_optimizer(net, config, plan.lr)
    mixup, criterion = create_criterion(config, num_classes)
    model = net
    if d.world > 1:
        model = DistributedDataParallel(net, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    training = Training(model, optimizer, create_scheduler(optimizer, plan), Precision(d.device, config["amp"]),
                        criterion, mixup, ema, config["clip_grad"], augment, config["img_size"],
                        compiles(config["compile"], d.device), backend)
    if state is not None:
        training.load_state_dict(state)
    return training


@dataclass(frozen=True)
class Steps:
    """The steps a loop runs, from ``start`` (done already) to ``total``, and what it does along them."""

    total: int
    start: int = 0
    per_epoch: float | None = None  # steps per epoch: a fraction where passes run on into each other
    log_every: int = 50
    save_every: int | None = None  # steps between checkpoints (None: only a stop saves, if the loop can)
    eval_every: int | None = None  # epochs between evaluations (None: none); the last step evaluates too

    def epochs_done(self, step: int) -> int:
        """Epochs ended by the end of ``step`` (the step in which a pass ends ends its epoch)."""
        return math.floor(step / self.per_epoch + 1e-9) if self.per_epoch else 0

    def evaluates_after(self, step: int) -> bool:
        if self.eval_every is None:
            return False
        done = self.epochs_done(step)
        ends_epoch = done > self.epochs_done(step - 1)
        return step == self.total or (ends_epoch and done % self.eval_every == 0)

    def epoch(self, step: int) -> float | None:
        return round(step / self.per_epoch, 4) if self.per_epoch else None


def check_finite(loss: float) -> None:
    if not math.isfinite(loss):
        raise TrainerError(f"the loss is {loss}: training diverged (try a lower --lr or --clip-grad)")


ProblemCounts = Callable[[], tuple[set[str], int, int]]  # damaged shards, skipped samples, shard reconnections


def train(training: Training, batches: Iterable[dict[str, Any]], steps: Steps, *, d: Dist, global_batch: int,
          log: Callable[[dict[str, Any]], None], problems: ProblemCounts = lambda: (set(), 0, 0),
          save: Callable[[int], None] | None = None, evaluate: Callable[[], dict[str, float]] | None = None,
          progress: bool | None = None, desc: str = "train") -> dict[str, Any]:
    """Train from ``steps.start`` to ``steps.total`` on ``batches`` (dicts with ``image`` and ``label`` on the
    device), in the style of timm's ``train_one_epoch`` but counted in steps.

    Every ``log_every`` steps (and at the end) ``log`` gets a record: step, epoch, mean loss, lr, samples/s
    (of the training steps and their time: checkpoints and evaluations left out), the share of that time spent
    waiting for data, the damaged shards, skipped samples and shard reconnections that
    ``problems`` reports, seconds since the loop began. ``save(step)`` runs every ``save_every`` steps and at the
    end, on every rank at the same step (it may gather from the ranks; it writes on rank 0);
    ``evaluate()`` after every ``eval_every`` epochs and at the end, its figures logged with the step and epoch.
    SIGINT/SIGTERM end the loop after the current step (under DDP at the next logging step, where the ranks
    agree), saving first if it can, with KeyboardInterrupt. Returns steps, last loss, samples/s, damaged shards.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=steps.total, initial=steps.start, unit="step", desc=desc, dynamic_ncols=True,
               disable=(not d.main) or (None if progress is None else not progress))
    training.model.train()
    step, last, count, waited = steps.start, None, 0, 0.0
    # Seconds of the current logging interval, and of the whole loop, spent on checkpoints and evaluations:
    # samples/s counts training steps and their time only.
    paused = paused_in_all = 0.0
    losses = torch.zeros((), device=d.device)
    tick = first_tick = time.perf_counter()
    with stop_requests() as stop, bar, _released(batches) as it:
        while step < steps.total:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                raise TrainerError("the data stream ended early: every shard is unreadable") from None
            except RuntimeError:  # a loader worker died: after a stop request, a signal that came before it could
                if not stop[0]:   # ignore it
                    raise
                # Under DDP the other ranks are not at this point: nothing can be gathered from them.
                _interrupted(step, steps.total, d, save if d.world == 1 else None)
            waited += time.perf_counter() - t0
            step += 1
            losses += training.step(batch, step)
            count += 1
            bar.update(1)
            # Under DDP the ranks agree on stopping at logging steps only: an all-reduce every step would
            # make the host wait for the GPU every step.
            stopping = stop[0] if d.world == 1 else step % steps.log_every == 0 and _any(stop[0], d)
            if step % steps.log_every == 0 or step == steps.total or stopping:
                # The loss first: reading it waits for the device's queued steps, which the interval's time
                # must include.
                loss = distributed.mean(losses.item() / count, d)
                now = time.perf_counter()
                check_finite(loss)
                trained = now - tick - paused
                shards, skipped, retries = problems()
                last = {"step": step, "epoch": steps.epoch(step), "loss": round(loss, 5),
                        # the top layer's lr, under layer decay
                        "lr": max(g["lr"] for g in training.optimizer.param_groups),
                        "samples_per_s": round(count * global_batch / trained, 2),
                        "data_wait": round(distributed.mean(waited / trained, d), 4),
                        "corrupt_shards": len(set().union(*distributed.gather(sorted(shards), d))),
                        "skipped_samples": int(distributed.total([float(skipped)], d)[0]),
                        "shard_retries": int(distributed.total([float(retries)], d)[0]),
                        "time": round(now - first_tick, 2)}
                log(last)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{last['lr']:.2e}", sps=f"{last['samples_per_s']:.0f}")
                losses.zero_()
                count, waited, paused, tick = 0, 0.0, 0.0, time.perf_counter()
            if stopping and step < steps.total:
                _interrupted(step, steps.total, d, save)
            saves = save is not None and (step == steps.total or (steps.save_every and step % steps.save_every == 0))
            evaluates = evaluate is not None and steps.evaluates_after(step)
            if not (saves or evaluates):
                continue
            # The steps queued on the device are training time: wait for them before the pause begins (the
            # checkpoint or the evaluation would wait for them anyway).
            _synchronize(d.device)
            p0 = time.perf_counter()
            if saves:
                save(step)
            if evaluates:
                result = evaluate()
                epoch = math.ceil(step / steps.per_epoch - 1e-9) if steps.per_epoch else None
                log({"step": step, "epoch": epoch, **{k: round(v, 4) for k, v in result.items()}})
                bar.set_postfix(top1=f"{result['top1']:.2f}")
                training.model.train()
            paused += time.perf_counter() - p0
            paused_in_all += time.perf_counter() - p0
    trained = max(1e-9, time.perf_counter() - first_tick - paused_in_all)
    return {"steps": step, "loss": last["loss"] if last else None,
            "samples_per_s": (step - steps.start) * global_batch / trained,
            "corrupt_shards": last["corrupt_shards"] if last else 0}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _interrupted(step: int, total: int, d: Dist, save: Callable[[int], None] | None) -> None:
    """Save at ``step`` (where the loop can) and stop with KeyboardInterrupt (the command line's exit code 130)."""
    if save is not None:
        save(step)
    if d.main:
        if save is not None:
            print(f"Interrupted at step {step} of {total}: checkpoint saved; --resume continues the run.",
                  file=sys.stderr)
        else:
            print(f"Interrupted at step {step} of {total}.", file=sys.stderr)
    raise KeyboardInterrupt


def _any(flag: bool, d: Dist) -> bool:
    """Whether any rank was asked to stop (so that all ranks stop at the same step)."""
    return bool(distributed.total([float(flag)], d)[0])


class _Batches:
    """An iterator over a loader that can be let go of while its name is still bound."""

    def __init__(self, batches: Iterable):
        self.it: Iterator | None = iter(batches)

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> Any:
        return next(self.it)


@contextlib.contextmanager
def _released(batches: Iterable) -> Iterator[Iterator]:
    """The batches; on leaving, their loader's workers are stopped at once (not when a traceback that holds
    the loop's frame is dropped: workers outlive the first stop signal, so the interpreter's exit, which sends
    them only that, could not stop them)."""
    it = _Batches(batches)
    try:
        yield it
    finally:
        it.it = None


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], precision: Precision, d: Dist,
             num_classes: int) -> dict[str, float]:
    """Top-1 and top-5 accuracy (%) and mean cross-entropy over ``batches`` (this rank's share of the test split;
    the counts are summed over ranks), as timm's ``validate``."""
    model.eval()
    k = min(5, num_classes)
    # Top-1 hits, top-k hits and loss sum, added up on the device in float64 (exact for the counts, and
    # the same additions as in Python floats for the loss); read once, at the end.
    sums = torch.zeros(3, dtype=torch.float64, device=d.device)
    count = 0
    for batch in batches:
        images, labels = batch["image"], batch["label"]
        with precision.autocast():
            logits = model(images)
        top = logits.topk(k, dim=1).indices
        hits = top == labels[:, None]
        ce = nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
        sums += torch.stack([hits[:, 0].sum().double(), hits.any(dim=1).sum().double(), ce.double()])
        count += len(labels)
    top1, topk, loss, n = distributed.total([*sums.tolist(), float(count)], d)
    result = {"top1": 100 * top1 / n, "test_loss": loss / n}
    if num_classes > 5:  # top-5 says nothing with five classes or fewer
        result["top5"] = 100 * topk / n
    return result
