"""``trainer.pretrain``: a timm model learns to tell a rendered dataset's classes apart (LPCE).

Single process or under torchrun. The loop counts optimiser steps; an epoch is
``samples // global batch`` steps (the reference drops the last partial batch, so its 80,000
epochs over 1000 images at batch 256 are 240,000 steps).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import runs
from .errors import TrainerError
from .presets import preset_name, resolve
from .settings import BY_NAME, RENAMED, runtime, takes_settings

if TYPE_CHECKING:
    from . import distributed

# Settings that may change when a run is resumed: they do not change what is learned.
RUNTIME = runtime("pretrain")
FORMAT = "trainer-checkpoint/1"
# A run whose loss is still within CHANCE_MARGIN of a uniform guess's, ln(classes), once CHANCE_SHARE of its
# steps are done, has likely learnt nothing (label smoothing keeps a learnt model's loss far below that).
# Halfway, not sooner: `make pretrain` on a CPU sits at chance for its first ~400 of 938 steps, then learns
# (its loss 6.80 at step 420, 5.97 at 520, 3.96 at the end).
CHANCE_SHARE, CHANCE_MARGIN = 0.5, 0.02
# A run shorter than this is a check, not training: its loss has had no time to leave chance.
CHANCE_MIN_STEPS = 50


def at_chance(loss: float, classes: int) -> bool:
    """Whether a loss is within ``CHANCE_MARGIN`` of the loss of a uniform guess over ``classes``."""
    return loss > (1 - CHANCE_MARGIN) * math.log(classes)


def chance_causes(config: dict[str, Any], render: dict[str, Any] | None, total_steps: int) -> list[str]:
    """What in a run's settings and data commonly keeps its loss at chance, of what can be checked."""
    causes = []
    size = (render or {}).get("size")
    if size and size >= 4 * config["img_size"] and str((render or {}).get("draw", "")).startswith("patch"):
        causes.append(f"the images are {size} px and the model sees {config['img_size']} px: shrinking the patch "
                      f"drawing's speckle averages its classes apart (render the recipe at --size "
                      f"{config['img_size']}, as make pretrain does on a CPU)")
    heavy = [name for name, on in (("RandAugment", config["auto_augment"]), ("Mixup/CutMix", config["mixup"] > 0
             or config["cutmix"] > 0), ("random erasing", config["re_prob"] > 0),
             (f"crops down to {config['scale'][0]:g} of the area", config["scale"][0] < 0.5)) if on]
    if heavy and total_steps < 20_000:
        causes.append(f"{', '.join(heavy)}, made for the paper's 240,000 steps, in a run of {total_steps} (the cpu "
                      "preset leaves them out)")
    return causes or ["none of the usual ones: try another --lr"]


class ChanceWatch:
    """Says once, on rank 0, when a run's loss is still at chance after ``CHANCE_SHARE`` of its steps."""

    def __init__(self, classes: int, total_steps: int, causes: list[str], main: bool):
        self.classes, self.total, self.causes, self.main = classes, total_steps, causes, main
        self.said = total_steps < CHANCE_MIN_STEPS

    def __call__(self, record: dict[str, Any]) -> None:
        if self.said or "loss" not in record or record["step"] < CHANCE_SHARE * self.total:
            return
        self.said = True  # asked once, at the first record past the share: a later dip does not reopen it
        if at_chance(record["loss"], self.classes) and self.main:
            print(f"Warning: after {record['step']} of {self.total} steps the loss {record['loss']:.3f} is still at "
                  f"chance (ln {self.classes} = {math.log(self.classes):.3f}); likely: {'; '.join(self.causes)}. "
                  "The run goes on.", file=sys.stderr)


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
            raise TrainerError(f"{BY_NAME[key].flag} {value} differs from the run's {config.get(key)}; "
                               "a resumed run keeps its settings")
        config[key] = given[key]
    return config


def _saved_random_state(checkpoint: dict | None, d: distributed.Dist) -> dict[str, Any] | None:
    """This rank's random states in ``checkpoint``, where it holds them for as many processes as there are now."""
    saved = checkpoint.get("rng") if checkpoint is not None else None
    if isinstance(saved, dict):  # written when only one process's states were kept
        saved = [saved]
    if saved is None or len(saved) == d.world:
        return saved[d.rank] if saved else None
    if d.main:
        sys.stderr.write(f"Warning: the run was saved by {len(saved)} processes, not {d.world}: it goes on from its "
                         "step with other random draws, not as it would have\n")
    return None


def _refuse_damage(problems: Callable[[], tuple[set[str], int, int]]) -> None:
    shards, skipped, _ = problems()
    if shards or skipped:
        raise TrainerError(f"--strict: {len(shards)} damaged shard(s) ({', '.join(sorted(shards)[:3])}), "
                           f"{skipped} sample(s) that would be left out")


def _strictly(batches: Iterable[dict[str, Any]], problems: Callable[[], tuple[set[str], int, int]]) -> Iterator[dict]:
    """``batches``, stopped at the first one after which the input reports damage (host-side counts only)."""
    it: Iterator | None = iter(batches)
    del batches
    for batch in it:
        try:
            _refuse_damage(problems)
        except TrainerError:
            it = None  # the loader's workers go with the error, not with its traceback
            raise
        yield batch


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
    from . import distributed  # torch and timm load when a run starts, not when the command line is built

    with distributed.session(device) as d, runs.released(out):
        return _pretrain(data, Path(out), preset, settings, resume, force, progress, d)


def _pretrain(data, out: Path, preset, overrides, resume, force, progress, d: distributed.Dist) -> dict[str, Any]:
    import torch
    from timm.utils import random_seed

    from . import distributed
    from .checkpoints import random_state, read_checkpoint, save_checkpoint, set_random_state
    from .data.inputs import create_train_input
    from .data.shardlists import resolve_data
    from .engine import Steps, create_training, train
    from .models import create_model
    from .optim import plan_run

    runs.check_out(out, resume=resume, force=force)  # the directory is made once every setting is checked
    if resume and d.main:
        runs.hold(out)  # before reading its checkpoint: a run still writing it refuses this one at once
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
    data_input = create_train_input(source, config, d, num_classes=num_classes)
    plan = plan_run(config, data_input.samples, d.world)

    torch.manual_seed(config["seed"])  # the same initial weights on every rank
    net = create_model(config["model"], num_classes=num_classes, img_size=config["img_size"],
                       drop_path=config["drop_path"], model_kwargs=config["model_kwargs"]).to(d.device)
    training = create_training(net, config, plan, num_classes=num_classes, d=d, state=checkpoint,
                               augment=data_input.augment)
    start = checkpoint["step"] if checkpoint is not None else 0
    # torch, numpy and random (timm's crops and RandAugment use random, Mixup numpy): differ across ranks
    # and after a resume, but are the same from run to run. A checkpoint that holds the states the run drew
    # from (an input that can continue its draws) puts them back: the run then continues exactly.
    random_seed(config["seed"] + start, d.rank)
    saved = _saved_random_state(checkpoint, d)
    input_state = set_random_state(saved) if saved is not None else None
    batches = data_input.batches(batch_size=plan.batch_per_process, steps=plan.total_steps - start, start=start,
                                 steps_per_epoch=plan.steps_per_epoch, state=input_state)
    if config.get("strict"):
        _refuse_damage(data_input.problems)  # the memory input has read everything: stop before anything is made
        batches = _strictly(batches, data_input.problems)
    per_epoch = plan.steps_per_epoch
    effective = {**config, "data": str(data), "num_classes": num_classes, "dataset": {
        "name": source.name, "samples": data_input.samples, "shards": len(source.urls)}, **plan.as_dict(),
        **data_input.describe(), "threads": distributed.set_threads(data_input.threads),
        "cores": distributed.usable_cores(), "precision": training.precision.name, "device": str(d.device)}

    def save(step: int) -> None:
        # Every rank's random states (each draws its own augmentation, Mixup and drop path), gathered to rank 0.
        rng = distributed.gather(random_state(data_input.state()), d)
        if not d.main:
            return
        state = {"format": FORMAT, **training.state_dict(), "step": step,
                 "epoch": step / per_epoch if per_epoch else None, "num_classes": num_classes, "config": config,
                 "rng": rng}
        if metrics is not None:
            metrics.sync()
        save_checkpoint(out / runs.CHECKPOINT, state)

    metrics = None
    runs.prepare_out(out, resume, force, d)
    if d.main:
        runs.write_json(out / runs.CONFIG, effective)
        metrics = runs.MetricsLog(out / runs.METRICS, keep_until_step=start if resume else None)
    steps = Steps(plan.total_steps, start, per_epoch, config["log_every"], config["save_every"])
    watch = ChanceWatch(num_classes, plan.total_steps, chance_causes(config, source.render, plan.total_steps), d.main)

    def log(record: dict[str, Any]) -> None:
        if metrics is not None:
            metrics.write(record)
        watch(record)

    try:
        summary = train(training, batches, steps, d=d, global_batch=plan.global_batch, log=log,
                        problems=data_input.problems, save=save, progress=progress, desc="pretrain")
    finally:
        if metrics is not None:
            metrics.close()
    if d.main:
        runs.plot_curves(runs.read_metrics(out / runs.METRICS), out / runs.CURVES,
                         title=f"pretrain {config['model']} on {source.name} ({config['preset']})",
                         chance=math.log(num_classes))
    skipped = int(distributed.total([float(data_input.problems()[1])], d)[0])
    distributed.barrier(d)
    return {**summary, "skipped_samples": skipped, "out": str(out), "checkpoint": str(out / runs.CHECKPOINT),
            "config": effective}
