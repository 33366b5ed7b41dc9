"""``trainer.pretrain``: a timm model learns to tell a rendered dataset's classes apart (LPCE).

Single process or under torchrun. The loop counts optimiser steps; an epoch is
``samples // global batch`` steps (the reference drops the last partial batch, so its 80,000
epochs over 1000 images at batch 256 are 240,000 steps).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from timm.utils import ModelEmaV3, random_seed

from . import distributed, runs
from .data import memory
from .data.shardlists import ShardList, resolve_data
from .data.stream import ProblemLog, create_loader
from .data.transforms import train_transform
from .engine import (
    Precision,
    check_finite,
    create_criterion,
    create_optimizer,
    create_scheduler,
    learning_rates,
    leave_stops_to_parent,
    loader_batches,
    rng_state,
    set_rng_state,
    stop_requests,
    train_step,
    unwrap,
    wrap,
)
from .errors import TrainerError
from .models import create_model, read_checkpoint
from .presets import preset_name, resolve
from .settings import RENAMED, runtime, takes_settings

# Settings that may change when a run is resumed: they do not change what is learned.
RUNTIME = runtime("pretrain")
FORMAT = "trainer-checkpoint/1"


def plan(config: dict[str, Any], source: ShardList, world: int) -> dict[str, Any]:
    """Steps, batch per rank, warm-up and learning rates of a run: everything derived from the settings."""
    batch = config["batch_size"]
    if batch % world:
        raise TrainerError(f"--batch-size {batch} does not split over {world} processes")
    per_rank = batch // world
    if (config["mixup"] > 0 or config["cutmix"] > 0) and per_rank % 2:
        raise TrainerError(f"mixup/cutmix need an even batch size per process, got {per_rank}")
    per_epoch = max(1, source.samples // batch) if source.samples else None
    if config["samples"] is not None:
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
    return {"total_steps": total, "steps_per_epoch": per_epoch, "warmup_steps": min(warmup, total),
            "batch_per_process": per_rank, "processes": world, **learning_rates(config, batch)}


def _settings(overrides: dict[str, Any], preset: str, checkpoint: dict | None) -> dict[str, Any]:
    if checkpoint is None:
        return resolve("pretrain", preset, **overrides)
    config = dict(checkpoint["config"])
    for old, new in RENAMED.items():  # a checkpoint written before a setting was renamed
        if old in config:
            config.setdefault(new, config.pop(old))
    if preset_name(preset) != config["preset"] and preset != "auto":
        raise TrainerError(f"--preset {preset} differs from the run's {config['preset']}; a resumed run keeps its "
                           "settings")
    given = resolve("pretrain", config["preset"], **overrides)
    for key, value in overrides.items():
        if value is None or given[key] == config.get(key):
            continue
        if key not in RUNTIME:
            raise TrainerError(f"--{key.replace('_', '-')} {value} differs from the run's {config.get(key)}; "
                               "a resumed run keeps its settings")
        config[key] = given[key]
    return config


@takes_settings("pretrain")
def pretrain(
    data: str,
    out: str | os.PathLike,
    *,
    preset: str = "auto",
    resume: bool = False,
    force: bool = False,
    device: str | None = None,
    progress: bool | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Pre-train a timm model on rendered shards (``data``: a dataset directory, shard pattern or URL).

    Settings left as None come from ``preset`` (``auto``: ``paper`` with a GPU, else ``cpu``); see
    ``trainer.settings`` and ``trainer.presets``. Writes ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` (every
    ``save_every`` steps and at the end) and ``curves.png`` to ``out``. ``resume`` continues the run
    in ``out`` from its checkpoint. Returns a summary (steps, final loss, samples/s, paths).
    """
    with distributed.session(device) as d:
        return _pretrain(data, Path(out), preset, settings, resume, force, progress, d)


def _pretrain(data, out: Path, preset, overrides, resume, force, progress, d: distributed.Dist) -> dict[str, Any]:
    runs.check_out(out, resume=resume, force=force)  # the directory is made once every setting is checked
    checkpoint = read_checkpoint(out / runs.CHECKPOINT) if resume else None
    if checkpoint is not None and checkpoint.get("format") != FORMAT:
        raise TrainerError(f"{out / runs.CHECKPOINT} is not a pre-training checkpoint of this trainer")
    config = _settings(overrides, preset, checkpoint)
    source = resolve_data(data)
    num_classes = config["classes"] or source.classes
    if num_classes is None:
        raise TrainerError("the data's class count is unknown (no manifest.json beside the shards): give --classes")
    if source.classes is not None and config["classes"] is not None and config["classes"] != source.classes:
        raise TrainerError(f"--classes {config['classes']} does not match the data's {source.classes} classes")
    if checkpoint is not None and checkpoint["num_classes"] != num_classes:
        raise TrainerError(f"the data has {num_classes} classes but the checkpoint's model has "
                           f"{checkpoint['num_classes']}")
    path = memory.choose_input(config["input"], source, img_size=config["img_size"],
                                   device=d.device, processes_per_device=_processes_per_device(d))
    held = None
    if path == "memory":
        held = memory.decode_source(source, img_size=config["img_size"], device=d.device)
        source = dataclasses.replace(source, samples=held.samples)  # what was read, corrupt samples left out
    steps = plan(config, source, d.world)
    workers, threads = distributed.loader_plan(d.device.type, path, config["workers"])
    precision = Precision(d.device, config["amp"])
    effective = {**config, "data": str(data), "num_classes": num_classes, "dataset": {
        "name": source.name, "samples": source.samples, "shards": len(source.urls)}, **steps,
        "input_used": path, "held_in_memory": memory.summary(held) if held is not None else None,
        "workers_per_process": workers, "threads": distributed.set_threads(threads),
        "cores": distributed.usable_cores(), "precision": precision.name, "device": str(d.device)}

    torch.manual_seed(config["seed"])  # the same initial weights on every rank
    net = create_model(config["model"], num_classes=num_classes, img_size=config["img_size"],
                       drop_path=config["drop_path"], model_kwargs=config["model_kwargs"]).to(d.device)
    ema = ModelEmaV3(net, decay=config["ema"]) if config["ema"] > 0 else None
    optimizer = create_optimizer(net, config, steps["lr"])
    scheduler = create_scheduler(optimizer, total_steps=steps["total_steps"], warmup_steps=steps["warmup_steps"],
                                 rates=steps)
    start = 0
    if checkpoint is not None:
        net.load_state_dict(checkpoint["state_dict"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        precision.scaler.load_state_dict(checkpoint["scaler"])
        if ema is not None:
            ema.load_state_dict(checkpoint["state_dict_ema"])
        start = checkpoint["step"]
    model = wrap(net, config["compile"], d)
    mixup, criterion = create_criterion(config, num_classes)

    # torch, numpy and random (timm's crops and RandAugment use random, Mixup numpy): differ across ranks
    # and after a resume, but are the same from run to run.
    random_seed(config["seed"] + start, d.rank)
    per_epoch = steps["steps_per_epoch"]
    if held is not None:
        loader = memory.create_memory_loader(held, config, batch_size=steps["batch_per_process"],
                                             steps=steps["total_steps"] - start, start=start, rank=d.rank,
                                             world=d.world, num_classes=num_classes)
    else:
        loader = create_loader(source, transform=train_transform(config), batch_size=steps["batch_per_process"],
                               steps=steps["total_steps"] - start, workers=workers, seed=config["seed"],
                               start_pass=start // per_epoch if per_epoch else start, rank=d.rank, world=d.world,
                               shuffle_buffer=config["shuffle_buffer"], pin_memory=d.device.type == "cuda",
                               worker_init_fn=leave_stops_to_parent)

    # One process on the memory path draws everything from states a checkpoint can hold: a resumed run then
    # continues exactly as the uninterrupted run would have (the stream's loader workers hold theirs).
    generator = loader.generator if held is not None else None
    exact = held is not None and d.world == 1
    if exact and checkpoint is not None and "rng" in checkpoint:
        set_rng_state(checkpoint["rng"], generator)

    def state(step: int) -> dict[str, Any]:
        s = {"format": FORMAT, "state_dict": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "scaler": precision.scaler.state_dict(), "step": step,
             "epoch": step / per_epoch if per_epoch else None, "num_classes": num_classes, "config": config}
        if exact:
            s["rng"] = rng_state(generator)
        if ema is not None:
            s["state_dict_ema"] = ema.module.state_dict()
        return s

    metrics = None
    runs.prepare_out(out, resume, force, d)
    if d.main:
        runs.write_json(out / runs.CONFIG, effective)
        metrics = runs.MetricsLog(out / runs.METRICS, keep_until_step=start if resume else None)
    try:
        summary = _loop(model, ema, loader, mixup, criterion, optimizer, scheduler, precision, config, steps,
                        start, num_classes, d, metrics, lambda step: runs.save_checkpoint(out / runs.CHECKPOINT,
                                                                                          state(step)), progress)
    finally:
        if metrics is not None:
            metrics.close()
    if d.main:
        runs.plot_curves(runs.read_metrics(out / runs.METRICS), out / runs.CURVES,
                         title=f"pretrain {config['model']} on {source.name} ({config['preset']})")
    distributed.barrier(d)
    return {**summary, "out": str(out), "checkpoint": str(out / runs.CHECKPOINT), "config": effective}


def _loop(model, ema, loader, mixup, criterion, optimizer, scheduler, precision, config, steps, start, num_classes,
          d: distributed.Dist, metrics, save, progress) -> dict[str, Any]:
    from tqdm.auto import tqdm

    total, per_epoch = steps["total_steps"], steps["steps_per_epoch"]
    problems = ProblemLog()
    bar = tqdm(total=total, initial=start, unit="step", desc="pretrain", dynamic_ncols=True,
               disable=(not d.main) or (None if progress is None else not progress))
    model.train()
    step, last, running, count, waited = start, None, 0.0, 0, 0.0
    losses = torch.zeros((), device=d.device)
    tick = time.perf_counter()
    first_tick = tick
    with stop_requests() as stop, bar, loader_batches(loader) as batches:
        while step < total:
            t0 = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                raise TrainerError("the data stream ended early: every shard is unreadable") from None
            except RuntimeError:  # a loader worker died: after a stop request, a signal that came before it could
                if not stop[0]:   # ignore it
                    raise
                _interrupted(step, total, d, save)
            waited += time.perf_counter() - t0
            problems.update(batch["problems"])
            labels = batch["label"]
            # Batches from the stream are checked here, on the host; the memory path checked its labels once.
            if labels.device.type == "cpu" and (labels.max().item() >= num_classes or labels.min().item() < 0):
                bad = labels[(labels >= num_classes) | (labels < 0)][0].item()
                raise TrainerError(f"label {bad} in the data is outside [0, {num_classes}): the class count "
                                   "does not match the data")
            images = batch["image"].to(d.device, non_blocking=True)
            labels = labels.to(d.device, non_blocking=True)
            targets = labels
            if mixup is not None:
                images, targets = mixup(images, labels)
            losses += train_step(model, images, targets, criterion, optimizer, precision, config["clip_grad"])
            step += 1
            count += 1
            scheduler.step_update(step)
            if ema is not None:
                ema.update(model, step=step)
            bar.update(1)
            # Under DDP the ranks agree on stopping at logging steps only: an all-reduce every step would
            # make the host wait for the GPU every step.
            stopping = stop[0] if d.world == 1 else step % config["log_every"] == 0 and _any(stop[0], d)
            if step % config["log_every"] == 0 or step == total or stopping:
                now = time.perf_counter()
                running = distributed.mean(losses.item() / count, d)
                check_finite(running)
                last = _record(step, per_epoch, running, optimizer, count * config["batch_size"] / (now - tick),
                               distributed.mean(waited / (now - tick), d), problems, d, now - first_tick)
                bar.set_postfix(loss=f"{running:.4f}", lr=f"{last['lr']:.2e}", sps=f"{last['samples_per_s']:.0f}")
                if metrics is not None:
                    metrics.write(last)
                losses.zero_()
                count, waited, tick = 0, 0.0, time.perf_counter()
            if stopping and step < total:
                _interrupted(step, total, d, save)
            if (step % config["save_every"] == 0 or step == total) and d.main:
                save(step)
    return {"steps": step, "loss": last["loss"] if last else None,
            "samples_per_s": (step - start) * config["batch_size"] / max(1e-9, time.perf_counter() - first_tick),
            "corrupt_shards": last["corrupt_shards"] if last else 0}


def _processes_per_device(d: distributed.Dist) -> int:
    """Processes that share this rank's memory: one per GPU, every local rank on a CPU host."""
    return 1 if d.device.type == "cuda" else int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def _interrupted(step: int, total: int, d: distributed.Dist, save) -> None:
    """Save at ``step`` and stop with KeyboardInterrupt (the command line's exit code 130)."""
    if d.main:
        save(step)
        print(f"Interrupted at step {step} of {total}: checkpoint saved; --resume continues the run.", file=sys.stderr)
    raise KeyboardInterrupt


def _any(flag: bool, d: distributed.Dist) -> bool:
    """Whether any rank was asked to stop (so that all ranks stop at the same step)."""
    return bool(distributed.total([float(flag)], d)[0])


def _record(step, per_epoch, loss, optimizer, samples_per_s, data_wait, problems: ProblemLog, d, elapsed):
    shards = set().union(*distributed.gather(sorted(problems.shards), d))
    skipped = distributed.total([float(problems.samples)], d)[0]
    return {"step": step, "epoch": round(step / per_epoch, 4) if per_epoch else None, "loss": round(loss, 5),
            "lr": optimizer.param_groups[0]["lr"], "samples_per_s": round(samples_per_s, 2),
            "data_wait": round(data_wait, 4), "corrupt_shards": len(shards), "skipped_samples": int(skipped),
            "time": round(elapsed, 2)}
