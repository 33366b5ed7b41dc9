"""``trainer.finetune`` and ``trainer.probe``: does a pre-trained checkpoint transfer?

``finetune`` trains the whole model with a new head; ``probe`` freezes the patch embedding and the
first K blocks and trains a linear classifier on their output (the paper's Figure 3). Both start
from a checkpoint (head dropped, timm resamples position embeddings for another image size) or
from scratch with the same architecture, and write ``results.json``, ``metrics.jsonl``,
``curves.png`` and the trained weights (``checkpoint.pt``) to the run directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import runs
from .errors import TrainerError
from .presets import resolve
from .settings import takes_settings

if TYPE_CHECKING:
    from . import distributed

FORMAT = "trainer-finetune/1"


@takes_settings("finetune")
def finetune(
    init: str,
    dataset: str,
    out: str | os.PathLike,
    *,
    preset: str = "auto",
    force: bool = False,
    device: str | None = None,
    progress: bool | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Fine-tune ``init`` (a checkpoint path, or ``"scratch"``) on ``dataset`` (a SPEC, see
    ``trainer.data.downstream``); settings left as None come from ``preset``. Returns ``results.json``'s content."""
    return _run("finetune", init, dataset, out, None, preset, settings, force, device, progress)


@takes_settings("probe")
def probe(
    init: str,
    dataset: str,
    out: str | os.PathLike,
    *,
    blocks: int,
    preset: str = "auto",
    force: bool = False,
    device: str | None = None,
    progress: bool | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Linear probe: freeze the patch embedding and the first ``blocks`` blocks of ``init``'s model and
    train a linear classifier on their output. Returns ``results.json``'s content."""
    return _run("probe", init, dataset, out, blocks, preset, settings, force, device, progress)


def _run(kind: str, init: str, dataset: str, out, blocks, preset, overrides, force, device, progress):
    from . import distributed  # torch and timm load when a run starts, not when the command line is built

    with distributed.session(device) as d, runs.released(out):
        return _fit(kind, str(init), dataset, Path(out), blocks, preset, overrides, force, progress, d)


def _fit(kind, init, dataset, out: Path, blocks, preset, overrides, force, progress, d: distributed.Dist):
    from timm.utils import random_seed

    from . import distributed
    from .checkpoints import save_checkpoint
    from .data.downstream import load_dataset
    from .data.inputs import create_eval_input, create_train_input
    from .engine import Steps, create_training, evaluate, train
    from .models import architecture, create_downstream_model
    from .optim import plan_run

    config = resolve(kind, preset, **overrides)
    if init != "scratch" and not os.path.isfile(init):
        raise TrainerError(f"--init {init}: no such checkpoint (or 'scratch')")
    runs.prepare_out(out, False, force, d)
    data = load_dataset(dataset, shots=config["shots"])
    name, kwargs = architecture(init, config, overrides)
    config.update(model=name, model_kwargs=kwargs)
    random_seed(config["seed"])  # torch, numpy and random: timm's crops use random, Mixup numpy
    net = create_downstream_model(kind, init, name, kwargs, num_classes=data.classes, img_size=config["img_size"],
                                  drop_path=config["drop_path"], blocks=blocks).to(d.device)
    train_input = create_train_input(data.train, config, d, num_classes=data.classes)
    plan = plan_run(config, train_input.samples, d.world, fit_batch=True)
    test_input = create_eval_input(data.test, config, d, batch_size=plan.batch_per_process, like=train_input)
    training = create_training(net, config, plan, num_classes=data.classes, d=d, augment=train_input.augment)
    effective = {**config, "kind": kind, "init": init, "blocks": blocks, "dataset": data.describe(),
                 "batch_size_used": plan.global_batch, **plan.as_dict(), **train_input.describe(),
                 "threads": distributed.set_threads(train_input.threads), "precision": training.precision.name,
                 "device": str(d.device), "trainable_params": sum(p.numel() for p in net.parameters()
                                                                  if p.requires_grad)}
    history: list[dict[str, Any]] = []
    metrics = runs.MetricsLog(out / runs.METRICS) if d.main else None

    def log(record: dict[str, Any]) -> None:
        history.append(record)
        if metrics is not None:
            metrics.write(record)

    if d.main:
        runs.write_json(out / runs.CONFIG, effective)
    steps = Steps(plan.total_steps, 0, plan.steps_per_epoch, config["log_every"], eval_every=config["eval_every"])
    batches = train_input.batches(batch_size=plan.batch_per_process, steps=plan.total_steps,
                                  steps_per_epoch=plan.steps_per_epoch)
    try:
        train(training, batches, steps, d=d, global_batch=plan.global_batch, log=log,
              evaluate=lambda: evaluate(training.model, test_input, training.precision, d, data.classes),
              progress=progress, desc=kind)
    finally:
        if metrics is not None:
            metrics.close()
    evals = [h for h in history if "top1" in h]
    best = max(evals, key=lambda h: h["top1"])
    last = evals[-1]
    keep = ("epoch", "step", "top1", "top5", "test_loss")
    results = {"top1": best["top1"], "best": {k: best[k] for k in keep if k in best},
               "last": {k: last[k] for k in keep if k in last}, "kind": kind, "init": init, "blocks": blocks,
               "dataset": data.describe(), "settings": effective}
    if "top5" in best:
        results["top5"] = best["top5"]
    if d.main:
        save_checkpoint(out / runs.CHECKPOINT, {"format": FORMAT, "state_dict": training.net.state_dict(),
                                                "config": effective, "results": results})
        runs.write_json(out / runs.RESULTS, results)
        title = f"{kind} {Path(init).parent.name if init != 'scratch' else 'scratch'} on {dataset}"
        runs.plot_curves(runs.read_metrics(out / runs.METRICS), out / runs.CURVES, title=title)
    distributed.barrier(d)
    return results
