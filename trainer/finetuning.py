"""``trainer.finetune`` and ``trainer.probe``: does a pre-trained checkpoint transfer?

``finetune`` trains the whole model with a new head; ``probe`` freezes the patch embedding and the
first K blocks and trains a linear classifier on their output (the paper's Figure 3). Both start
from a checkpoint (head dropped, timm resamples position embeddings for another image size) or
from scratch with the same architecture, and write ``results.json``, ``metrics.jsonl``,
``curves.png`` and the trained weights (``checkpoint.pt``) to the run directory.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from timm.utils import random_seed
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from . import distributed, runs
from .data.downstream import Downstream, load_dataset
from .data.transforms import eval_transform, train_transform
from .engine import (
    Precision,
    check_finite,
    create_criterion,
    create_optimizer,
    create_scheduler,
    learning_rates,
    train_step,
    unwrap,
    wrap,
)
from .errors import TrainerError
from .models import LinearProbe, create_model, create_pretrained, read_checkpoint
from .presets import resolve
from .settings import takes_settings

DEFAULT_MODEL = "vit_tiny_patch16_224"
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
    ``trainer.datasets``); settings left as None come from ``preset``. Returns ``results.json``'s content."""
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


def _architecture(init: str, config: dict[str, Any], overrides: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Model name and arguments: a checkpoint's own (none for another ``--model``), with ``--model-kwargs``
    added to them."""
    if init == "scratch":
        return config["model"] or DEFAULT_MODEL, dict(config["model_kwargs"] or {})
    saved = read_checkpoint(init).get("config") or {}
    name = overrides.get("model") or saved.get("model")
    if name is None:
        raise TrainerError(f"{init} records no model name: give --model")
    same = overrides.get("model") is None or overrides["model"] == saved.get("model")
    kwargs = (saved.get("model_kwargs") or {}) if same else {}
    return name, {**kwargs, **(overrides.get("model_kwargs") or {})}


def build_model(kind: str, init: str, name: str, kwargs: dict[str, Any], *, num_classes: int, img_size: int,
                drop_path: float, blocks: int | None) -> nn.Module:
    """The model to train: pre-trained body (or random) with a new head, or the linear probe."""
    args = dict(img_size=img_size, drop_path=0.0 if kind == "probe" else drop_path, model_kwargs=kwargs)
    if init == "scratch":
        net = create_model(name, num_classes=num_classes, **args)
    else:
        net = create_pretrained(init, name, num_classes=num_classes, **args)
    return LinearProbe(net, blocks, num_classes) if kind == "probe" else net


def _loaders(data: Downstream, config: dict[str, Any], batch: int, workers: int, d: distributed.Dist):
    data.train.transform = train_transform(config)
    data.test.transform = eval_transform(config)
    generator = torch.Generator().manual_seed(config["seed"])
    if d.world > 1:
        sampler = DistributedSampler(data.train, num_replicas=d.world, rank=d.rank, shuffle=True,
                                     seed=config["seed"], drop_last=True)
    else:
        sampler = RandomSampler(data.train, generator=generator)
    common = dict(num_workers=workers, pin_memory=d.device.type == "cuda", persistent_workers=workers > 0)
    train = DataLoader(data.train, batch_size=batch, sampler=sampler, drop_last=True, **common)
    # Each rank evaluates every world-th test image; the counts are summed over ranks.
    test_part = data.test.subset(range(d.rank, len(data.test), d.world))
    test = DataLoader(test_part, batch_size=max(batch, 256), shuffle=False, **common)
    return train, test, sampler


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, precision: Precision, d: distributed.Dist,
             num_classes: int) -> dict[str, float]:
    """Top-1 and top-5 accuracy (%) and mean cross-entropy over the whole test split."""
    model.eval()
    k = min(5, num_classes)
    # Top-1 hits, top-k hits and loss sum, added up on the device in float64 (exact for the counts, and
    # the same additions as in Python floats for the loss); read once, at the end.
    sums = torch.zeros(3, dtype=torch.float64, device=d.device)
    count = 0
    for images, labels in loader:
        images, labels = images.to(d.device), labels.to(d.device)
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


def _run(kind: str, init: str, dataset: str, out, blocks, preset, overrides, force, device, progress):
    with distributed.session(device) as d:
        return _fit(kind, str(init), dataset, Path(out), blocks, preset, overrides, force, progress, d)


def _fit(kind, init, dataset, out: Path, blocks, preset, overrides, force, progress, d: distributed.Dist):
    config = resolve(kind, preset, **overrides)
    if init != "scratch" and not os.path.isfile(init):
        raise TrainerError(f"--init {init}: no such checkpoint (or 'scratch')")
    runs.prepare_out(out, False, force, d)
    data = load_dataset(dataset, shots=config["shots"])
    name, kwargs = _architecture(init, config, overrides)
    config.update(model=name, model_kwargs=kwargs)
    random_seed(config["seed"])  # torch, numpy and random: timm's crops use random, Mixup numpy
    net = build_model(kind, init, name, kwargs, num_classes=data.classes, img_size=config["img_size"],
                      drop_path=config["drop_path"], blocks=blocks).to(d.device)

    mixing = config["mixup"] > 0 or config["cutmix"] > 0
    per_rank = min(config["batch_size"] // d.world, len(data.train) // d.world)
    per_rank -= per_rank % 2 if mixing else 0  # timm's batch mixing pairs samples up
    if per_rank < 1 or config["batch_size"] % d.world:
        raise TrainerError(f"--batch-size {config['batch_size']} does not fit {len(data.train)} training images "
                           f"over {d.world} processes")
    batch = per_rank * d.world
    workers = config["workers"] if config["workers"] is not None else min(4, distributed.usable_cores() - 1)
    train, test, sampler = _loaders(data, config, per_rank, workers, d)
    per_epoch = len(train)
    total = max(1, round(config["epochs"] * per_epoch))
    rates = learning_rates(config, batch)
    optimizer = create_optimizer(net, config, rates["lr"])
    scheduler = create_scheduler(optimizer, total_steps=total,
                                 warmup_steps=min(total, round(config["warmup_epochs"] * per_epoch)), rates=rates)
    precision = Precision(d.device, config["amp"])
    model = wrap(net, config["compile"], d)
    mixup, criterion = create_criterion(config, data.classes)
    effective = {**config, "kind": kind, "init": init, "blocks": blocks, "dataset": data.describe(),
                 "batch_size_used": batch, "steps_per_epoch": per_epoch, "total_steps": total, **rates,
                 "processes": d.world, "workers": workers, "threads": distributed.set_cpu_threads(d, workers),
                 "precision": precision.name, "device": str(d.device),
                 "trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad)}
    metrics = runs.MetricsLog(out / runs.METRICS) if d.main else None
    if d.main:
        runs.write_json(out / runs.CONFIG, effective)
    try:
        history = _train(model, train, test, sampler, mixup, criterion, optimizer, scheduler, precision, config,
                         total, per_epoch, data.classes, d, metrics, progress, kind)
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
        runs.save_checkpoint(out / runs.CHECKPOINT, {"format": FORMAT, "state_dict": unwrap(model).state_dict(),
                                                     "config": effective, "results": results})
        runs.write_json(out / runs.RESULTS, results)
        title = f"{kind} {Path(init).parent.name if init != 'scratch' else 'scratch'} on {dataset}"
        runs.plot_curves(runs.read_metrics(out / runs.METRICS), out / runs.CURVES, title=title)
    distributed.barrier(d)
    return results


def _train(model, train, test, sampler, mixup, criterion, optimizer, scheduler, precision, config, total, per_epoch,
           num_classes, d, metrics, progress, kind) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm

    history: list[dict[str, Any]] = []

    def log(record: dict[str, Any]) -> None:
        history.append(record)
        if metrics is not None:
            metrics.write(record)

    epochs = -(-total // per_epoch)
    step, losses, count, waited = 0, torch.zeros((), device=d.device), 0, 0.0
    tick = time.perf_counter()
    bar = tqdm(total=total, unit="step", desc=kind, dynamic_ncols=True,
               disable=(not d.main) or (None if progress is None else not progress))
    with bar:
        for epoch in range(epochs):
            if isinstance(sampler, DistributedSampler):
                sampler.set_epoch(epoch)
            model.train()
            t0 = time.perf_counter()
            for images, labels in train:
                waited += time.perf_counter() - t0
                images, labels = images.to(d.device, non_blocking=True), labels.to(d.device, non_blocking=True)
                targets = labels
                if mixup is not None:
                    images, targets = mixup(images, labels)
                losses += train_step(model, images, targets, criterion, optimizer, precision, config["clip_grad"])
                step += 1
                count += 1
                scheduler.step_update(step)
                bar.update(1)
                if step % config["log_every"] == 0 or step == total:
                    now = time.perf_counter()
                    loss = distributed.mean(losses.item() / count, d)
                    check_finite(loss)
                    log({"step": step, "epoch": round(step / per_epoch, 4), "loss": round(loss, 5),
                         "lr": max(g["lr"] for g in optimizer.param_groups),  # the top layer's, under layer decay
                         "samples_per_s": round(count * train.batch_size * d.world / (now - tick), 2),
                         "data_wait": round(distributed.mean(waited / (now - tick), d), 4)})
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{history[-1]['lr']:.2e}")
                    losses.zero_()
                    count, waited, tick = 0, 0.0, time.perf_counter()
                if step == total:
                    break
                t0 = time.perf_counter()
            if (epoch + 1) % config["eval_every"] == 0 or step == total:
                result = evaluate(model, test, precision, d, num_classes)
                log({"step": step, "epoch": epoch + 1, **{k: round(v, 4) for k, v in result.items()}})
                bar.set_postfix(top1=f"{result['top1']:.2f}")
                tick = time.perf_counter()
            if step == total:
                break
    return history
